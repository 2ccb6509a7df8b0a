//! Collection storage for sift.
//!
//! The root holds the seam every backend shares: the [`CollectionBackend`] trait and its
//! contract ([`backend`]), the vocabulary it speaks ([`document`], [`manifest`], and the keyword
//! [`analysis`] every backend applies the same way), the batch checks
//! ([`batch`]), the [`store`] that callers open collections through, and the [`conformance`]
//! suite every backend must pass. [`local`] is the embedded backend (a directory: write-ahead
//! log, snapshot, exact + HNSW vectors, tantivy BM25) and [`postgres`] the shared one (a schema
//! in a PostgreSQL database with pgvector, BM25 in SQL); nothing at the root depends on either
//! except the store.

// One exception, allowed where it stands: mapping the vector file (local/vector_file.rs).
#![deny(unsafe_code)]

pub mod analysis;
pub mod backend;
pub mod batch;
pub mod conformance;
pub mod document;
pub mod error;
pub mod local;
pub mod manifest;
pub mod postgres;
pub mod store;
pub mod synthetic;
#[cfg(feature = "failpoints")]
pub mod test_postgres;
#[cfg(feature = "failpoints")]
pub mod tmpfs;

pub use analysis::Analyzer;
pub use backend::{CollectionBackend, CollectionStats, CompactionJob, HybridHits};
pub use document::{
    keyword_passages, Chunk, ChunkHit, Document, HitDetails, IndexedDocument, KeywordPassage,
    Operation, MAX_ID_BYTES, PASSAGE_BYTES,
};
pub use error::{IndexError, Result};
pub use manifest::{Bm25Params, ChunkingConfig, EmbeddingModelInfo, Manifest, FORMAT_VERSION};
pub use store::{Access, CollectionStore, Location};
