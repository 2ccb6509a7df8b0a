//! sift's retrieval pipeline.
//!
//! A query flows: [`Pipeline::search`] → query embedding → dense leg (ANN over chunk vectors)
//! and BM25 leg → per-document best chunk → [`fusion::reciprocal_rank_fusion`] → cross-encoder
//! rerank of the top candidates → top k. Documents flow: [`ingest::ingest`] → token windows
//! ([`chunking`]) → embeddings → one committed batch at a time into a [`SearchBackend`].

pub mod backend;
pub mod chunking;
pub mod error;
pub mod fusion;
pub mod ingest;
pub mod search;

pub use backend::SearchBackend;
pub use error::{PipelineError, Result};
pub use ingest::{manifest_for, IngestReport};
pub use search::{Pipeline, SearchHit, SearchMode, SearchOptions, SearchResults, Timings};
