//! Collections for sift: documents, their chunk embeddings, a vector index and a BM25 index in
//! one local directory, kept consistent across crashes by a write-ahead log.

pub mod bm25;
pub mod collection;
pub mod document;
pub mod error;
pub mod vectors;
pub mod wal;

pub use collection::{ChunkHit, ChunkingConfig, Collection, EmbeddingModelInfo, Manifest};
pub use document::{Chunk, Document, IndexedDocument};
pub use error::{IndexError, Result};
pub use vectors::AnnParams;
pub use wal::Operation;
