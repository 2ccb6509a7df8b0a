//! Retrieval evaluation: relevance judgements (qrels), ranked runs, and the metrics IR and RAG
//! practitioners report, defined exactly as trec_eval (and so pytrec_eval / ir-measures) defines
//! them — tested against ir-measures on committed fixtures — and the experiment grid `sift eval`
//! runs through the retrieval pipeline ([`experiment`], [`report`]).

#![forbid(unsafe_code)]

pub mod beir;
pub mod experiment;
pub mod fusion_sweep;
pub mod metrics;
pub mod report;
pub mod split;
pub mod trec;

pub use beir::{Dataset, DatasetError};
pub use metrics::{evaluate, Evaluation, Metric};
pub use split::{seen_queries, DevSplit, Split, SplitRule};
pub use trec::{Qrels, Run, TrecError};
