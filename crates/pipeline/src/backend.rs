//! The storage seam: what the pipeline needs from wherever a collection lives.
//!
//! The embedded default is [`sift_index::Collection`] (a local directory). The trait exists
//! because the planned scale-out path keeps the same pipeline over PostgreSQL + pgvector
//! (vectors and `tsvector` keyword search in the database), swapping only this layer.

use sift_index::{ChunkHit, Collection, Document, Manifest, Operation};

use crate::error::Result;

pub trait SearchBackend {
    /// The embedding model and chunking the stored vectors were made with.
    fn manifest(&self) -> &Manifest;
    /// Number of documents.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn document(&self, id: &str) -> Option<Document>;
    fn chunk_text(&self, id: &str, chunk: u32) -> Option<String>;
    /// True when `doc` is stored with identical content (re-indexing can skip it).
    fn is_unchanged(&self, doc: &Document) -> bool;
    /// Applies a batch atomically; returns its sequence number once durable.
    fn commit(&mut self, operations: Vec<Operation>) -> Result<u64>;
    /// Housekeeping after bulk changes (snapshots, index rebuilds).
    fn compact(&mut self) -> Result<()>;
    /// Nearest chunks by cosine similarity, best first.
    fn dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>>;
    /// Best chunks by BM25, best first.
    fn keyword_search(&self, query: &str, k: usize) -> Result<Vec<ChunkHit>>;
}

impl SearchBackend for Collection {
    fn manifest(&self) -> &Manifest {
        Collection::manifest(self)
    }
    fn len(&self) -> usize {
        Collection::len(self)
    }
    fn document(&self, id: &str) -> Option<Document> {
        self.get(id).cloned()
    }
    fn chunk_text(&self, id: &str, chunk: u32) -> Option<String> {
        Collection::chunk_text(self, id, chunk).map(str::to_owned)
    }
    fn is_unchanged(&self, doc: &Document) -> bool {
        Collection::is_unchanged(self, doc)
    }
    fn commit(&mut self, operations: Vec<Operation>) -> Result<u64> {
        Ok(Collection::commit(self, operations)?)
    }
    fn compact(&mut self) -> Result<()> {
        Ok(Collection::compact(self)?)
    }
    fn dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>> {
        Ok(Collection::dense_search(self, vector, k)?)
    }
    fn keyword_search(&self, query: &str, k: usize) -> Result<Vec<ChunkHit>> {
        Ok(Collection::keyword_search(self, query, k)?)
    }
}
