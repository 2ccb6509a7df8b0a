//! Transformer inference for sift.
//!
//! Loads ordinary Hugging Face model directories (`config.json`, `tokenizer.json`,
//! `*.safetensors` or `pytorch_model.bin`, plus sentence-transformers metadata) and runs them on
//! candle or ONNX Runtime: an [`Embedder`] (bi-encoder, the recall stage) and a [`Reranker`]
//! (the rerank stage's seam; [`CrossEncoder`] and [`LlmReranker`] implement it), loaded by
//! [`load_reranker`]. BERT, XLM-RoBERTa/RoBERTa and MPNet are supported, each as a bare encoder
//! and as a sequence classifier; decoder LLMs (Llama/Mistral, Qwen2/3, Gemma 1–3) as rerankers.

pub mod arch;
pub mod batch;
mod calibration_text;
pub mod config;
pub mod cross_encoder;
pub mod decoder;
pub mod embedder;
pub mod engine;
pub mod error;
pub mod llm_reranker;
pub mod model_dir;
pub mod onnx;
pub mod pooling;
pub mod rerank;
pub mod sentence_transformers;
pub mod tokenize;
pub mod windows;

pub use config::{Architecture, Head, ModelConfig};

/// The one meaning of "empty" for a text anywhere in sift — a query, a document, an input to
/// embed, rerank or index: nothing but whitespace (Unicode `White_Space`, as `str::trim`).
/// Such a text is refused where it is an input and skipped where it is a line of a file.
pub fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}
pub use cross_encoder::CrossEncoder;
pub use embedder::{Embedder, EmbedderOptions, TextRole};
pub use engine::{Engine, EngineChoice, EngineOptions};
pub use error::{ModelError, Result};
pub use llm_reranker::{LlmReranker, RerankTemplate};
pub use model_dir::ModelDir;
pub use onnx::Precision;
pub use pooling::Pooling;
pub use rerank::{
    load_reranker, LongDocumentMode, LongDocumentPolicy, RerankScore, Reranker, RerankerOptions,
};
pub use tokenize::{Encoded, TextTokenizer};

/// Default padded tokens per forward pass. 8,192 keeps a BERT-base batch's activations around
/// 100 MB while giving matrix products enough rows to run at full speed.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 8192;

/// Default padded tokens per forward pass on ONNX Runtime. Its kernels run fastest when a
/// batch's activations stay in cache: 1,024 beat 8,192 by 15% (embedding) to 30% (reranking)
/// on MiniLM-L6 (docs/performance.md).
pub const DEFAULT_ONNX_BATCH_TOKENS: usize = 1024;

/// The max length to tokenize at: the caller's, else sentence-transformers' `max_seq_length`,
/// never beyond what the position embeddings allow.
fn resolve_max_length(dir: &ModelDir, requested: Option<usize>) -> Result<usize> {
    let limit = dir.config.max_tokens();
    match requested {
        Some(0) | Some(1) | Some(2) => Err(ModelError::InvalidInput(
            "max length must leave room for text besides the special tokens (at least 3)".into(),
        )),
        Some(n) if n > limit => Err(ModelError::InvalidInput(format!(
            "max length {n} exceeds what {} supports ({limit} tokens)",
            dir.name()
        ))),
        Some(n) => Ok(n),
        None => Ok(dir
            .sentence_transformers
            .max_seq_length
            .unwrap_or(limit)
            .min(limit)),
    }
}

fn load_transformer(
    dir: &ModelDir,
    device: &candle_core::Device,
    with_head: bool,
) -> Result<arch::Transformer> {
    let vb = dir.var_builder(device)?;
    arch::Transformer::load(dir.config.clone(), vb, with_head, arch::Kernels::Fused).map_err(|e| {
        ModelError::Weights {
            path: dir.path.clone(),
            reason: e.to_string(),
        }
    })
}
