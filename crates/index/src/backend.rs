//! The storage seam: what the retrieval pipeline needs from wherever a collection lives.
//!
//! The local directory ([`crate::local::LocalCollection`]) is the embedded default; a database
//! backend (PostgreSQL + pgvector) implements the same trait. Callers reach a backend only
//! through [`crate::store`], which returns a `Box<dyn CollectionBackend>` for an address.

use crate::analysis::Analyzer;
use crate::document::{ChunkHit, Document, HitDetails, IndexedDocument, Operation};
use crate::error::{IndexError, Result};
use crate::manifest::{Bm25Params, Manifest};

/// The expensive middle of a compaction ([`CollectionBackend::begin_compaction`]). It owns
/// copies of what it needs and reaches the collection only through its files, so it runs on any
/// thread without the caller's lock.
pub trait CompactionJob: Send {
    fn run(&mut self) -> Result<()>;

    /// For [`CollectionBackend::finish_compaction`] to recover its own job type.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// The two legs of [`CollectionBackend::hybrid_search`], each with its time in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridHits {
    pub dense: Vec<ChunkHit>,
    pub keyword: Vec<ChunkHit>,
    pub dense_ms: f64,
    pub keyword_ms: f64,
}

impl HybridHits {
    /// From each leg's hits and milliseconds, as [`timed`] gives them.
    pub fn from_legs(
        (dense, dense_ms): (Vec<ChunkHit>, f64),
        (keyword, keyword_ms): (Vec<ChunkHit>, f64),
    ) -> Self {
        HybridHits {
            dense,
            keyword,
            dense_ms,
            keyword_ms,
        }
    }
}

/// `f`'s result and how long it took (ms), for [`HybridHits`].
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = std::time::Instant::now();
    let out = f()?;
    Ok((out, t.elapsed().as_secs_f64() * 1e3))
}

/// What `sift index` reports about a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionStats {
    pub documents: usize,
    pub chunks: usize,
    /// Dense search uses an approximate index (HNSW) rather than an exact scan.
    pub approximate_vectors: bool,
}

/// A collection: documents, their embedded chunks, a vector index and a keyword index.
///
/// # Contract
/// Every implementation passes [`crate::conformance`] and guarantees:
///
/// - **Batches are the unit of change.** [`CollectionBackend::commit`] applies a batch of
///   operations entirely or not at all. It validates the whole batch first
///   ([`crate::batch::validate_batch`]) and refuses it with [`crate::IndexError::InvalidInput`]
///   without writing anything. Within a batch, operations apply in order; ids are unique.
/// - **Durable when acknowledged.** When `commit` returns `Ok(seq)` the batch survives a crash,
///   `kill -9` or power loss of the process; after an error, the batch is either entirely
///   durable (then it is visible after reopening) or entirely absent.
/// - **Sequence numbers.** Each non-empty committed batch gets the next number, strictly
///   increasing by one from 1 in a new collection; an empty batch writes nothing and returns the
///   current number. [`CollectionBackend::seq`] is the number of the last committed batch: two
///   handles that report the same `seq` hold the same content.
/// - **Visibility.** A committed batch is visible to every read of the handle that committed it
///   as soon as `commit` returns; other handles see it when they reopen (the local backend) or at
///   once (a database backend) — never a part of it.
/// - **Reads are batched and fallible.** One search makes a constant number of calls whatever
///   its depth (two searches, one [`CollectionBackend::hit_details`]), so a network backend does
///   not pay a round trip per hit. Results come back in the order of the request, `None` where
///   a document or chunk does not exist.
/// - **Ordering of search results.** Best first: descending cosine similarity (dense) or BM25
///   score (keyword), at most `k` chunks; equal scores in an unspecified but deterministic
///   order.
/// - **Errors are typed.** Bad input is `InvalidInput`; another process holding the collection
///   is `Locked`; vectors of another model are `ModelMismatch`; a handle whose in-memory state
///   may disagree with the log after a failed write is `Unusable` until reopened. Nothing
///   panics on input.
pub trait CollectionBackend: Send + Sync {
    /// The embedding model and chunking the stored vectors were made with, and the keyword
    /// analyzer.
    fn manifest(&self) -> &Manifest;

    /// Where the collection lives, for messages (a path, or a URL without credentials).
    fn location(&self) -> String;

    /// Number of documents.
    fn len(&self) -> Result<usize>;

    /// Number of the last committed batch (0 for a new collection).
    fn seq(&self) -> Result<u64>;

    /// The stored documents with these ids, in request order.
    fn documents(&self, ids: &[&str]) -> Result<Vec<Option<Document>>>;

    /// For each `(document id, chunk)` the document and that chunk's text, in request order.
    fn hit_details(&self, chunks: &[(&str, u32)]) -> Result<Vec<Option<HitDetails>>>;

    /// For each document, whether it is stored with exactly this content (id, title, text,
    /// metadata), so re-indexing it can be skipped.
    fn unchanged(&self, documents: &[&Document]) -> Result<Vec<bool>>;

    /// Re-cuts the keyword index with `analyzer` and records it in the manifest (a no-op when
    /// it is the collection's already). Vectors and documents are untouched. Durable when it
    /// returns; a crash part-way leaves the collection answering with the old analyzer or the
    /// new one, never a mix of both, and nothing committed is lost.
    fn set_analyzer(&mut self, analyzer: Analyzer) -> Result<()>;

    /// Records `params` as how BM25 scores this collection from the next query on (the index
    /// itself does not change: k1 and b are applied at query time). Refuses invalid values
    /// ([`Bm25Params::validate`]); durable when it returns.
    fn set_bm25(&mut self, params: Bm25Params) -> Result<()>;

    /// Applies a batch atomically and durably; returns its sequence number.
    fn commit(&mut self, operations: Vec<Operation>) -> Result<u64>;

    /// Starts a compaction (housekeeping after bulk changes: snapshots, index rebuilds) and
    /// returns its expensive part as a [`CompactionJob`]; `None` when there is nothing to do,
    /// when `only_if_due` and the backend's own policy says it is not yet worth its cost (for
    /// the local backend: the log outgrew a share of the snapshot), or when another compaction
    /// of this handle is in flight.
    ///
    /// Compaction is split so that a caller sharing the collection behind a lock (the server)
    /// holds it only briefly: `begin` needs shared access (it copies what is to be written),
    /// [`CompactionJob::run`] needs none (it writes files and builds indexes while commits and
    /// searches go on), [`CollectionBackend::finish_compaction`] needs exclusive access and is
    /// cheap. Commits made while the job runs are kept. Never changes results; a failure at any
    /// step, or a job that is dropped, leaves every committed batch in place.
    fn begin_compaction(&self, only_if_due: bool) -> Result<Option<Box<dyn CompactionJob>>>;

    /// Puts a job's result in place (a job of another handle is refused).
    fn finish_compaction(&mut self, job: Box<dyn CompactionJob>) -> Result<()>;

    /// Compacts now, all three steps in the caller's hands.
    fn compact(&mut self) -> Result<()> {
        if let Some(mut job) = self.begin_compaction(false)? {
            job.run()?;
            self.finish_compaction(job)?;
        }
        Ok(())
    }

    /// Compacts when the backend's policy says so; returns whether it did. Long-lived writers
    /// call it (or its split form) after their writes, so what a collection keeps on disk stays
    /// proportional to what it holds.
    fn compact_if_due(&mut self) -> Result<bool> {
        match self.begin_compaction(true)? {
            Some(mut job) => {
                job.run()?;
                self.finish_compaction(job)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Nearest chunks to `vector` (the manifest's dimension) by cosine similarity.
    fn dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>>;

    /// Best chunks for `query` by BM25 over chunk title and text, both cut by the manifest's
    /// [`Analyzer`]. Any string is a valid query.
    fn keyword_search(&self, query: &str, k: usize) -> Result<Vec<ChunkHit>>;

    /// Both recall legs of a hybrid search — `dense_search(vector, k)` and
    /// `keyword_search(query, k)` — from one committed state. Where other processes commit
    /// between two calls (a database), the backend runs both in one snapshot, so the legs never
    /// disagree about which batches exist. Each leg is timed on its own.
    fn hybrid_search(&self, vector: &[f32], query: &str, k: usize) -> Result<HybridHits> {
        Ok(HybridHits::from_legs(
            timed(|| self.dense_search(vector, k))?,
            timed(|| self.keyword_search(query, k))?,
        ))
    }

    /// Makes this handle's later reads see at least batch `seq`: read-your-writes for a batch
    /// acknowledged through another handle or process, whose number the client carries. A
    /// backend that reads from replicas waits (bounded) for one that has replayed it, or reads
    /// the primary. A number beyond the collection's last batch is `InvalidInput`. The local
    /// backend's reads come from the writer's own state, so there it only checks the number.
    fn require_seq(&self, seq: u64) -> Result<()> {
        let current = self.seq()?;
        if seq > current {
            return Err(IndexError::InvalidInput(format!(
                "batch {seq} has not been committed to {} (its last batch is {current})",
                self.location()
            )));
        }
        Ok(())
    }

    /// Calls `each` with every document and its chunks (texts and unit vectors), once each
    /// in an order of the backend's choosing, from one committed state: how a collection moves to another location
    /// (`sift copy`) without embedding anything again. An error from `each` stops the export
    /// and is returned.
    fn export(&self, each: &mut dyn FnMut(IndexedDocument) -> Result<()>) -> Result<()>;

    /// Sizes and the vector search in use, for reports.
    fn stats(&self) -> Result<CollectionStats>;

    /// Checks that every derived part agrees with the documents (tests, `sift` diagnostics).
    fn verify(&self) -> Result<()>;

    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}
