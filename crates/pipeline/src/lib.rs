//! sift's retrieval pipeline.
//!
//! A query flows: [`Pipeline::search`] → query embedding → dense leg (ANN over chunk vectors)
//! and BM25 leg → per-document best chunk → [`fusion::fuse`] → rerank of
//! the top candidates through the [`sift_models::Reranker`] seam → top k. Documents flow: [`ingest::ingest`] → token windows
//! ([`chunking`]) → embeddings → one committed batch at a time into a
//! [`sift_index::CollectionBackend`].

#![forbid(unsafe_code)]

pub mod build;
pub use sift_models::windows as chunking;
pub mod error;
pub mod fusion;
pub mod ingest;
pub mod search;

pub use error::{PipelineError, Result};
pub use ingest::{default_chunking, manifest_for, IngestReport, NewDocument};
pub use search::{
    Candidates, Pipeline, SearchHit, SearchMode, SearchOptions, SearchResults, Timings,
};
