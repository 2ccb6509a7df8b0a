//! Retrieval evaluation: relevance judgements (qrels), ranked runs, and the metrics IR and RAG
//! practitioners report, defined exactly as trec_eval (and so pytrec_eval / ir-measures) defines
//! them — tested against ir-measures on committed fixtures.

pub mod beir;
pub mod metrics;
pub mod trec;

pub use beir::{Dataset, DatasetError, Split};
pub use metrics::{evaluate, Evaluation, Metric};
pub use trec::{Qrels, Run, TrecError};
