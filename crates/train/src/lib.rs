//! Fine-tuning cross-encoders (rerankers) in Rust on CPU.
//!
//! Training pairs come from labelled queries (qrels); negatives are mined with sift's own first
//! stage (hybrid recall) plus random documents; the model is any supported encoder or
//! cross-encoder with a one-label head, trained with candle's autograd through the
//! differentiable kernels of `sift-models`; the result is a Hugging Face
//! `*ForSequenceClassification` directory that `sift rerank`, `sift search --rerank-model` and
//! transformers load.

#![forbid(unsafe_code)]

pub mod bi_encoder;
pub mod checkpoint;
pub mod data;
pub mod distill;
pub mod embedder_trainer;
pub mod error;
pub mod evaluate;
pub mod grad_cache;
pub mod model;
pub mod optim;
pub mod recipe;
pub mod synthetic;
pub mod trainer;
pub mod units;

pub use checkpoint::{read_checkpoint, TrainState};
pub use data::{
    first_stage, first_stage_scored, held_out_documents, labelled_queries, read_corpus, Corpus,
    GroupRecipe, LabelledQuery, TrainingSet,
};
pub use error::{Result, TrainError};
pub use evaluate::{DevEvaluation, DevMetrics, DevSet, BLEND_WEIGHTS};
pub use model::TrainableCrossEncoder;
pub use recipe::{Distillation, ExitWeighting, FirstStageTag, Loss, Pooler, Recipe, TeacherModel};
pub use synthetic::{inverse_cloze, SyntheticQuery};
pub use trainer::{train, Evaluation, Event, Job, StepReport, Trainer};
