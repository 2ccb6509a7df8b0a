//! The embedded backend: a collection in a local directory.
//!
//! ```text
//! collection.json   what the collection was built with (model, dimension, chunking)
//! wal.log           committed batches since the last snapshot: the source of truth
//! snapshot.bin      every document and chunk as of a batch number, with its vector's slot
//! vectors-E.f32     the chunk vectors of slot epoch E by slot, memory-mapped
//! ann.bin           HNSW graph over the vectors (only for large collections)
//! bm25/             tantivy index; its commit payload says which batch it reflects
//! LOCK              held by the one process writing the collection (readers share it)
//! ```
//!
//! **Commit unit: one batch** ([`LocalCollection::commit`]). A batch is durable once its WAL
//! record is fsynced; then it is applied to memory (which cannot fail) and to the BM25 index.
//! If anything fails after the WAL write began, the handle turns unusable
//! ([`IndexError::Unusable`]) rather than serve a state the log does not describe; reopening
//! replays the log. After a crash at any point, open loads the snapshot, replays the WAL (cutting
//! a torn last record, which was never reported committed), and rebuilds the BM25 index or
//! ignores the graph if they reflect another batch than the WAL does — so every part agrees
//! again, and every acknowledged batch is there.

mod bm25;
mod compaction;
mod files;
mod snapshot;
mod state;
mod vector_file;
mod vectors;
mod wal;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The keyword index of a local collection, public for measuring analyzers on it alone
/// (tests/chinese_known_item.rs).
pub use self::bm25::{Bm25Hit, Bm25Index};
/// Shared with the PostgreSQL backend, so both store and query the same unit vectors.
pub(crate) use vectors::normalized;
use vectors::AnnGraph;
pub use vectors::{AnnParams, Quantization};

use self::compaction::{InFlight, LocalCompaction, SlotPlan};
use self::files::{lock, write_atomic};
use self::snapshot::{read_graph, read_snapshot, write_graph, GraphStamp};
use self::state::Contents;
use self::wal::{Record, Wal};
use crate::analysis::Analyzer;
use crate::backend::{CollectionBackend, CollectionStats, CompactionJob};
use crate::batch::validate_batch;
use crate::document::{
    keyword_passages, Chunk, ChunkHit, Document, HitDetails, IndexedDocument, Operation,
};
use crate::error::{IndexError, Result};
use crate::manifest::{Bm25Params, Manifest, FORMAT_VERSION};

/// When a writer compacts on its own ([`CollectionBackend::compact_if_due`]): once the log is
/// larger than both `min_log_bytes` and `log_to_snapshot` × the snapshot's size. The ratio makes
/// the cost of compaction (rewriting the snapshot, rebuilding the graph) proportional to the
/// bytes written since the last one — amortized O(1) per byte, as in an LSM tree — and the
/// floor keeps small collections from compacting at every write.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    pub min_log_bytes: u64,
    pub log_to_snapshot: f64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            min_log_bytes: 8 << 20,
            log_to_snapshot: 0.5,
        }
    }
}

/// How a local collection is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Exclusive: the one writer; repairs derived parts after a crash.
    Write,
    /// Shared with other readers and no writer; fails with [`IndexError::NeedsRecovery`] when a
    /// crash left derived parts behind.
    ReadOnly,
    /// Read-only when possible, for writing when recovery is needed (what searches use).
    Search,
}

pub struct LocalCollection {
    dir: PathBuf,
    manifest: Manifest,
    /// `None` when opened read-only.
    wal: Option<Wal>,
    seq: u64,
    /// Batch number the snapshot (and the slot numbering) reflects.
    snapshot_seq: u64,
    contents: Contents,
    bm25: Bm25Index,
    wal_records: usize,
    /// Bytes of `snapshot.bin` and its vector rows (0 without one), for the compaction policy.
    snapshot_bytes: u64,
    /// The slot epoch the next renumbering compaction starts: past every epoch this handle
    /// began, finished or not, so it never writes over a vector file a snapshot names.
    next_slot_epoch: AtomicU64,
    compaction: CompactionPolicy,
    /// Set while a compaction job of this handle exists ([`InFlight`]).
    compacting: Arc<AtomicBool>,
    /// Set when a write failed after its WAL record began: memory or BM25 may disagree with
    /// the log, so every call refuses until the collection is reopened.
    unusable: Option<String>,
    /// Called at each named step of a commit or a compaction (feature `failpoints`).
    #[cfg(feature = "failpoints")]
    crash_hook: Option<fn(&'static str)>,
    /// Test hook: BM25 adds to let pass, then how many to fail.
    #[cfg(test)]
    bm25_failpoint: (usize, usize),
    /// The collection's lock. Declared last because fields drop in order: every other part —
    /// the log's file, the BM25 writer and its background threads — is closed before another
    /// process or handle may take the lock and open the files. `None` only for a reader on a
    /// read-only file system without a `LOCK` file.
    _lock: Option<File>,
}

impl LocalCollection {
    /// Creates the collection in `dir` with `manifest` (or opens it if it exists), for writing.
    /// An existing collection built with another embedding model is refused.
    pub fn open_or_create(dir: &Path, manifest: Manifest, ann: AnnParams) -> Result<Self> {
        let manifest_path = dir.join("collection.json");
        if !manifest_path.is_file() {
            std::fs::create_dir_all(dir).map_err(IndexError::io(dir))?;
            let lock = lock(dir, true)?;
            write_manifest(&manifest_path, &manifest)?;
            drop(lock);
        }
        let collection = Self::open(dir, OpenMode::Write, ann)?;
        if !collection.manifest.same_model(&manifest.embedding) {
            return Err(collection.manifest.mismatch(&manifest.embedding));
        }
        Ok(collection)
    }

    /// Opens an existing collection.
    pub fn open(dir: &Path, mode: OpenMode, ann: AnnParams) -> Result<Self> {
        match mode {
            OpenMode::Write => Self::open_with(dir, ann, true),
            OpenMode::ReadOnly => Self::open_with(dir, ann, false),
            OpenMode::Search => match Self::open_with(dir, ann, false) {
                Err(IndexError::NeedsRecovery(_)) => Self::open_with(dir, ann, true),
                other => other,
            },
        }
    }

    fn open_with(dir: &Path, ann: AnnParams, writable: bool) -> Result<Self> {
        let manifest_path = dir.join("collection.json");
        if !manifest_path.is_file() {
            return Err(IndexError::NotACollection(dir.to_owned()));
        }
        let lock = lock(dir, writable)?;
        let manifest: Manifest = serde_json::from_slice(
            &std::fs::read(&manifest_path).map_err(IndexError::io(&manifest_path))?,
        )
        .map_err(|e| IndexError::Corrupt {
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
        if manifest.format != FORMAT_VERSION {
            return Err(IndexError::Corrupt {
                path: manifest_path,
                reason: format!(
                    "format {} is not supported (expected {FORMAT_VERSION})",
                    manifest.format
                ),
            });
        }

        let bm25_dir = dir.join("bm25");
        let started = std::time::Instant::now();
        let bm25 = if !writable {
            Bm25Index::open_read_only(&bm25_dir, manifest.analyzer).map_err(|e| {
                tracing::debug!("{}: {e}", bm25_dir.display());
                IndexError::NeedsRecovery(dir.to_owned())
            })?
        } else {
            match Bm25Index::open_or_create(&bm25_dir, manifest.analyzer) {
                Ok(b) => b,
                Err(IndexError::Bm25(e)) => {
                    tracing::warn!("BM25 index unreadable ({e}); rebuilding it");
                    std::fs::remove_dir_all(&bm25_dir).map_err(IndexError::io(&bm25_dir))?;
                    Bm25Index::open_or_create(&bm25_dir, manifest.analyzer)?
                }
                Err(e) => return Err(e),
            }
        };
        tracing::debug!(
            "{}: BM25 index opened in {:.2} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
        let snapshot_path = dir.join("snapshot.bin");
        let dim = manifest.embedding.dim;
        let started = std::time::Instant::now();
        let (snapshot_seq, mut contents) = match read_snapshot(dir, dim)? {
            Some((s, vectors)) => (s.seq, Contents::from_snapshot(s, vectors, dim, ann)),
            None => (0, Contents::new(dim, ann)),
        };
        let snapshot_bytes = std::fs::metadata(&snapshot_path).map_or(0, |m| m.len())
            + contents.vectors.file().bytes();
        let wal_path = dir.join("wal.log");
        let (wal, log) = if writable {
            let (w, log) = Wal::open(&wal_path, snapshot_seq)?;
            (Some(w), log)
        } else {
            (None, Wal::read(&wal_path)?.unwrap_or_default())
        };
        if let Some(base) = log.base_seq.filter(|&base| base > snapshot_seq) {
            let state = if snapshot_seq == 0 {
                "is missing".to_owned()
            } else {
                format!("reflects only batch {snapshot_seq}")
            };
            return Err(IndexError::Corrupt {
                path: snapshot_path,
                reason: format!(
                    "the log continues from batch {base} but the snapshot {state}: batches up to \
                     {base} would be lost; restore snapshot.bin from a backup, or move the \
                     collection aside and index it again"
                ),
            });
        }
        let mut seq = snapshot_seq;
        let mut wal_records = 0;
        for record in log.records {
            if record.seq <= seq {
                continue; // already in the snapshot (crash between snapshot and WAL reset)
            }
            if record.seq != seq + 1 {
                return Err(IndexError::Corrupt {
                    path: wal_path,
                    reason: format!(
                        "the log resumes at batch {} after batch {seq}: batches are missing",
                        record.seq
                    ),
                });
            }
            seq = record.seq;
            wal_records += 1;
            contents.apply_all(record.operations);
        }
        let wal_path = dir.join("wal.log");
        let loaded = started.elapsed();
        // A reader repairs or builds the graph in memory only; the writer saves it.
        let graph_saved = load_graph(dir, &mut contents, seq, writable) || !writable;
        tracing::debug!(
            "{}: snapshot and log read in {:.2} s, graph in {:.2} s ({} chunks)",
            dir.display(),
            loaded.as_secs_f64(),
            (started.elapsed() - loaded).as_secs_f64(),
            contents.vectors.len()
        );
        let contents_epoch = contents.slot_epoch;
        if writable {
            // Files of a renumbering that crashed before its snapshot, or of the epoch before
            // one whose job never finished.
            vector_file::remove_other_epochs(dir, contents_epoch);
        }
        let mut c = LocalCollection {
            dir: dir.to_owned(),
            manifest,
            _lock: lock,
            wal,
            seq,
            snapshot_seq,
            contents,
            bm25,
            wal_records,
            snapshot_bytes,
            next_slot_epoch: AtomicU64::new(contents_epoch + 1),
            compaction: CompactionPolicy::default(),
            compacting: Arc::new(AtomicBool::new(false)),
            unusable: None,
            #[cfg(feature = "failpoints")]
            crash_hook: None,
            #[cfg(test)]
            bm25_failpoint: (usize::MAX, 0),
        };
        let bm25_seq = c.bm25.committed_seq()?;
        if bm25_seq > c.seq {
            // The keyword index is committed only after a batch is in the log, so a log (and
            // snapshot) that end earlier have lost acknowledged batches.
            return Err(IndexError::Corrupt {
                path: wal_path,
                reason: format!(
                    "the log and snapshot end at batch {} but the BM25 index holds batch \
                     {bm25_seq}: acknowledged batches are missing (was wal.log truncated, emptied \
                     or restored from an older copy?); nothing was changed. Restore the file \
                     from a backup, or remove bm25/ to accept the loss",
                    c.seq
                ),
            });
        }
        if bm25_seq != c.seq {
            if !writable {
                return Err(IndexError::NeedsRecovery(dir.to_owned()));
            }
            c.rebuild_bm25()?;
        }
        if !graph_saved {
            // Built or repaired here: saved so the next open does not redo it. A failure costs
            // only that.
            if let Err(e) = c.save_graph() {
                tracing::warn!("{}: saving the ANN graph failed: {e}", c.dir.display());
            }
        }
        Ok(c)
    }

    /// Writes the in-memory graph (or removes a stale file when there is none), stamped with the
    /// current batch.
    fn save_graph(&self) -> Result<()> {
        let bytes = match self.contents.vectors.graph() {
            Some(g) => Some(g.to_bytes()?),
            None => None,
        };
        write_graph(
            &self.dir.join("ann.bin"),
            self.graph_stamp(),
            bytes.as_deref(),
        )
    }

    fn graph_stamp(&self) -> GraphStamp {
        GraphStamp {
            seq: self.seq,
            slot_epoch: self.contents.slot_epoch,
            next_slot: self.contents.vectors.next_slot(),
        }
    }

    /// Sets the function called at each step of a commit or compaction: `log-appended`,
    /// `bm25-added`, `committed`, `snapshot-written`, `graph-written`, `log-reset`. The
    /// fault suite aborts the process there to test `kill -9` at every step.
    #[cfg(feature = "failpoints")]
    pub fn set_crash_hook(&mut self, hook: fn(&'static str)) {
        self.crash_hook = Some(hook);
    }

    #[inline]
    fn step(&self, _name: &'static str) {
        #[cfg(feature = "failpoints")]
        if let Some(hook) = self.crash_hook {
            hook(_name);
        }
    }

    /// Replaces the compaction policy (the default suits servers; tests use small floors).
    pub fn set_compaction_policy(&mut self, policy: CompactionPolicy) {
        self.compaction = policy;
    }

    /// Bytes of the write-ahead log (0 when opened read-only).
    pub fn log_bytes(&self) -> u64 {
        self.wal.as_ref().map_or(0, Wal::len)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn num_chunks(&self) -> usize {
        self.contents.vectors.len()
    }

    /// Exact nearest chunks, bypassing the graph (the reference for ANN recall).
    pub fn exact_dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>> {
        self.usable()?;
        Ok(self.chunk_hits(self.contents.vectors.exact_search(vector, k)))
    }

    /// Every live chunk vector (unit length), in slot order: the real vectors ANN libraries are
    /// compared on (benches/ann-compare).
    pub fn chunk_vectors(&self) -> impl Iterator<Item = &[f32]> + '_ {
        self.contents.vectors.live_vectors()
    }

    /// Segments of the keyword index (what the scale benchmark reports after a long ingest).
    pub fn bm25_segments(&self) -> usize {
        self.bm25.num_segments()
    }

    /// True when dense search uses the HNSW graph.
    pub fn uses_ann(&self) -> bool {
        self.contents.vectors.has_graph()
    }

    fn usable(&self) -> Result<()> {
        match &self.unusable {
            None => Ok(()),
            Some(reason) => Err(IndexError::Unusable {
                path: self.dir.display().to_string(),
                reason: reason.clone(),
            }),
        }
    }

    fn chunk_hits(&self, hits: Vec<vectors::VectorHit>) -> Vec<ChunkHit> {
        hits.into_iter()
            .filter_map(|h| {
                let info = self.contents.slots.get(h.slot as usize)?.as_ref()?;
                Some(ChunkHit {
                    doc_id: info.doc_id.to_string(),
                    chunk: info.ordinal,
                    score: h.similarity,
                })
            })
            .collect()
    }

    fn writable_wal(&mut self) -> Result<&mut Wal> {
        self.wal
            .as_mut()
            .ok_or_else(|| IndexError::InvalidInput("the collection was opened read-only".into()))
    }

    /// The part of a commit after its record is durable: the BM25 index (memory is already
    /// updated).
    fn apply_durable(&mut self, record: Record) -> Result<()> {
        for op in &record.operations {
            self.bm25.delete_document(op.id())?;
        }
        for d in record.operations.iter().filter_map(|op| match op {
            Operation::Upsert(d) => Some(d),
            Operation::Delete(_) => None,
        }) {
            let chunks: Vec<&str> = d.chunks.iter().map(|c| c.text.as_str()).collect();
            Self::add_document(
                &mut self.bm25,
                #[cfg(test)]
                &mut self.bm25_failpoint,
                &d.document,
                &chunks,
            )?;
        }
        self.step("bm25-added");
        self.bm25.commit(record.seq)
    }

    fn rebuild_bm25(&mut self) -> Result<()> {
        tracing::info!("rebuilding the BM25 index to batch {}", self.seq);
        self.bm25.delete_all()?;
        for d in self.contents.docs.values() {
            let chunks = self.contents.chunk_texts(d);
            Self::add_document(
                &mut self.bm25,
                #[cfg(test)]
                &mut self.bm25_failpoint,
                &d.document,
                &chunks,
            )?;
        }
        self.bm25.commit(self.seq)
    }

    /// One document's [`keyword_passages`] into the keyword index (an associated function so
    /// callers can borrow the documents they add from `self` at the same time).
    fn add_document(
        bm25: &mut Bm25Index,
        #[cfg(test)] failpoint: &mut (usize, usize),
        document: &Document,
        chunks: &[&str],
    ) -> Result<()> {
        for passage in keyword_passages(document, chunks) {
            #[cfg(test)]
            {
                let (pass, fail) = failpoint;
                if *pass > 0 {
                    *pass -= 1;
                } else if *fail > 0 {
                    *fail -= 1;
                    return Err(IndexError::Bm25("injected failure".into()));
                }
            }
            bm25.add_passage(&document.id, passage.chunk, &passage.text)?;
        }
        Ok(())
    }
}

/// The manifest in `dir`, `None` when `dir` holds no collection.
/// Gives `contents` (the vectors as of batch `seq`) the graph saved in `dir/ann.bin`, repaired to
/// agree with them, or builds one when the collection is large enough and none fits. A handle
/// that never writes views a graph that needs no repair in place instead of loading a copy (at
/// a million chunks: 538 MB not allocated, 0.5–5 s less to open). Returns whether `ann.bin`
/// already matches the graph in memory (nothing to save).
fn load_graph(dir: &Path, contents: &mut Contents, seq: u64, writable: bool) -> bool {
    let vectors = &mut contents.vectors;
    let now = GraphStamp {
        seq,
        slot_epoch: contents.slot_epoch,
        next_slot: vectors.next_slot(),
    };
    let path = dir.join("ann.bin");
    let params = vectors.params();
    if vectors.len() >= params.exact_below / 2 {
        if !writable {
            if let Some(graph) = read_graph(&path, now, vectors.dim(), params, true) {
                // Refused when batches were logged since the graph was saved: a copy is then
                // loaded and repaired below.
                if vectors.adopt_graph(graph).is_ok() {
                    return true;
                }
            }
        }
        if let Some(graph) = read_graph(&path, now, vectors.dim(), params, false) {
            let started = std::time::Instant::now();
            let adopted = vectors.adopt_graph(graph);
            tracing::debug!(
                "{}: loaded; checked against the vectors in {:.2} s",
                path.display(),
                started.elapsed().as_secs_f64()
            );
            match adopted {
                Ok(0) => return true,
                Ok(changed) => {
                    tracing::info!("{}: {changed} graph entries repaired", path.display());
                    return false;
                }
                Err(e) => tracing::warn!("{}: {e}; rebuilding the graph", path.display()),
            }
        }
    }
    match vectors.fit_graph() {
        Ok(built) => !built && !path.exists(),
        Err(e) => {
            tracing::warn!(
                "{}: building the graph failed ({e}); searching exactly",
                path.display()
            );
            true
        }
    }
}

pub(crate) fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join("collection.json");
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(IndexError::io(&path))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| IndexError::Corrupt {
            path,
            reason: e.to_string(),
        })
}

/// Replaces the manifest at `path` atomically.
fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| IndexError::Internal(format!("serializing the manifest: {e}")))?;
    write_atomic(path, &bytes)
}

/// The exclusive lock a drop of the collection in `dir` holds while deleting it.
pub(crate) fn lock_for_drop(dir: &Path) -> Result<Option<File>> {
    lock(dir, true)
}

impl CollectionBackend for LocalCollection {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn len(&self) -> Result<usize> {
        self.usable()?;
        Ok(self.contents.docs.len())
    }

    fn seq(&self) -> Result<u64> {
        self.usable()?;
        Ok(self.seq)
    }

    fn documents(&self, ids: &[&str]) -> Result<Vec<Option<Document>>> {
        self.usable()?;
        Ok(ids
            .iter()
            .map(|id| {
                self.contents
                    .docs
                    .get(*id)
                    .map(|d| Document::clone(&d.document))
            })
            .collect())
    }

    fn hit_details(&self, chunks: &[(&str, u32)]) -> Result<Vec<Option<HitDetails>>> {
        self.usable()?;
        Ok(chunks
            .iter()
            .map(|&(id, chunk)| {
                let document = Document::clone(&self.contents.docs.get(id)?.document);
                let chunk_text = self.contents.chunk_text(id, chunk)?.to_owned();
                Some(HitDetails {
                    document,
                    chunk_text,
                })
            })
            .collect())
    }

    fn unchanged(&self, documents: &[&Document]) -> Result<Vec<bool>> {
        self.usable()?;
        Ok(documents
            .iter()
            .map(|doc| {
                self.contents
                    .docs
                    .get(&doc.id)
                    .is_some_and(|d| d.hash == doc.content_hash())
            })
            .collect())
    }

    /// The manifest first, then the keyword index rebuilt in place from memory. A crash in
    /// between leaves an index whose schema names the old analyzer: opening finds it does not
    /// match the manifest and rebuilds it.
    fn set_analyzer(&mut self, analyzer: Analyzer) -> Result<()> {
        self.usable()?;
        self.writable_wal()?;
        if self.manifest.analyzer == analyzer {
            return Ok(());
        }
        let mut manifest = self.manifest.clone();
        manifest.analyzer = analyzer;
        write_manifest(&self.dir.join("collection.json"), &manifest)?;
        self.manifest = manifest;
        let rebuilt = (|| {
            // The old index holds tantivy's writer lock in its directory: close it first.
            drop(std::mem::replace(
                &mut self.bm25,
                Bm25Index::empty_in_memory(analyzer)?,
            ));
            let bm25_dir = self.dir.join("bm25");
            std::fs::remove_dir_all(&bm25_dir).map_err(IndexError::io(&bm25_dir))?;
            self.bm25 = Bm25Index::open_or_create(&bm25_dir, analyzer)?;
            self.rebuild_bm25()
        })();
        if let Err(e) = &rebuilt {
            // The manifest is already the new one; reopening rebuilds the index to match it.
            self.unusable = Some(format!("rebuilding the BM25 index: {e}"));
        }
        rebuilt
    }

    fn set_bm25(&mut self, params: Bm25Params) -> Result<()> {
        params.validate()?;
        self.usable()?;
        self.writable_wal()?;
        if self.manifest.bm25 == params {
            return Ok(());
        }
        let mut manifest = self.manifest.clone();
        manifest.bm25 = params;
        write_manifest(&self.dir.join("collection.json"), &manifest)?;
        self.manifest = manifest;
        Ok(())
    }

    /// Rejects the whole batch (writing nothing) when [`validate_batch`] does.
    fn commit(&mut self, operations: Vec<Operation>) -> Result<u64> {
        self.usable()?;
        validate_batch(&operations, self.manifest.embedding.dim)?;
        if operations.is_empty() {
            return Ok(self.seq);
        }
        let record = Record {
            seq: self.seq + 1,
            operations,
        };
        let wal = self.writable_wal()?;
        if let Err(e) = wal.append(&record) {
            // Rolled back: nothing of the batch is in the log or in memory, unless the rollback
            // itself failed, and then only reopening tells what is on disk.
            if let Some(torn) = wal.torn() {
                self.unusable = Some(torn.to_owned());
            }
            return Err(e);
        }
        // Committed: from here on the batch is acknowledged whatever else fails.
        self.step("log-appended");
        self.seq = record.seq;
        self.wal_records += 1;
        self.contents.apply_all(record.operations.iter().cloned());
        if let Err(e) = self.apply_durable(record) {
            // The keyword index lags the log: rebuild it from memory, which holds the batch.
            tracing::warn!(
                "{}: updating the BM25 index failed ({e}); rebuilding it",
                self.dir.display()
            );
            if let Err(e) = self.bm25.rollback().and_then(|()| self.rebuild_bm25()) {
                // Reopening replays the log and rebuilds the index again.
                self.unusable = Some(format!("rebuilding the BM25 index: {e}"));
            }
        }
        self.step("committed");
        Ok(self.seq)
    }

    /// A snapshot, the ANN graph rebuilt when the collection is large enough, and a log that
    /// keeps only the batches after the snapshot (see [`compaction`]). Search results do not
    /// change; opening gets faster and deleted vectors are freed.
    fn begin_compaction(&self, only_if_due: bool) -> Result<Option<Box<dyn CompactionJob>>> {
        self.usable()?;
        let log_offset = match &self.wal {
            Some(wal) => wal.len(),
            None => {
                return Err(IndexError::InvalidInput(
                    "the collection was opened read-only".into(),
                ))
            }
        };
        let nothing_to_do = self.wal_records == 0
            && self.snapshot_seq == self.seq
            && self.dir.join("snapshot.bin").is_file();
        let log = self.log_bytes();
        let due = log > self.compaction.min_log_bytes
            && log as f64 > self.compaction.log_to_snapshot * self.snapshot_bytes as f64;
        if nothing_to_do || (only_if_due && !due) {
            return Ok(None);
        }
        let Some(in_flight) = InFlight::claim(&self.compacting) else {
            return Ok(None);
        };
        let vectors = &self.contents.vectors;
        // Deleted slots cost memory until renumbered; renumbering costs a graph rebuild, so it
        // waits until they outnumber the live ones (amortized O(1) per delete).
        let renumber = vectors.dead() > vectors.len().max(1024);
        let (snapshot, rows, plan) = if renumber {
            let epoch = self.next_slot_epoch.fetch_add(1, Ordering::Relaxed);
            let (snapshot, rows) = self.contents.to_dense_snapshot(self.seq, epoch);
            (snapshot, rows, SlotPlan::Renumber)
        } else {
            let graph = vectors.graph().map(AnnGraph::to_bytes).transpose()?;
            (
                self.contents.to_snapshot(self.seq),
                vectors.rows_past_file(),
                SlotPlan::Keep { graph },
            )
        };
        Ok(Some(Box::new(LocalCompaction {
            dir: self.dir.clone(),
            seq: self.seq,
            log_offset,
            dim: vectors.dim(),
            params: vectors.params(),
            snapshot: Some(snapshot),
            rows,
            plan,
            contents: None,
            new_graph: None,
            file: None,
            ran: false,
            snapshot_bytes: 0,
            in_flight,
            #[cfg(feature = "failpoints")]
            crash_hook: self.crash_hook,
        })))
    }

    fn finish_compaction(&mut self, job: Box<dyn CompactionJob>) -> Result<()> {
        self.usable()?;
        let job = job
            .into_any()
            .downcast::<LocalCompaction>()
            .map_err(|_| IndexError::InvalidInput("a compaction of another backend".into()))?;
        // The in-flight flag is the handle's own: sharing it means the job was begun here.
        if !Arc::ptr_eq(job.in_flight.flag(), &self.compacting) {
            return Err(IndexError::InvalidInput(format!(
                "a compaction of another handle ({}) cannot finish on {}",
                job.dir.display(),
                self.dir.display()
            )));
        }
        let LocalCompaction {
            seq,
            log_offset,
            contents,
            new_graph,
            file,
            ran,
            snapshot_bytes,
            in_flight: _in_flight,
            ..
        } = *job;
        if !ran {
            return Err(IndexError::Internal(
                "a compaction was finished before it was run".into(),
            ));
        }
        let kept = self.writable_wal()?.restart_from(seq, log_offset)?;
        self.step("log-reset");
        self.wal_records = kept.len();
        if let Some(mut contents) = contents {
            // Renumbered: the batches committed while the job ran, onto the compacted contents —
            // what the next open rebuilds from snapshot and log, so memory and disk agree slot
            // for slot.
            for record in kept {
                contents.apply_all(record.operations);
            }
            vector_file::remove_other_epochs(&self.dir, contents.slot_epoch);
            self.contents = contents;
        } else {
            if let Some(file) = file {
                self.contents.vectors.adopt_file(file);
            }
            if let Some(graph) = new_graph {
                if let Err(e) = self.contents.vectors.adopt_graph(graph) {
                    tracing::warn!(
                        "{}: {e}; the graph is rebuilt at the next open",
                        self.dir.display()
                    );
                }
            }
        }
        self.snapshot_seq = seq;
        self.snapshot_bytes = snapshot_bytes;
        Ok(())
    }

    fn dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>> {
        self.usable()?;
        let dim = self.manifest.embedding.dim;
        if vector.len() != dim {
            return Err(IndexError::InvalidInput(format!(
                "query vector has {} dimensions, the collection {dim}",
                vector.len()
            )));
        }
        if let Some(problem) = crate::batch::vector_problem(vector) {
            return Err(IndexError::InvalidInput(format!("query vector {problem}")));
        }
        Ok(self.chunk_hits(self.contents.vectors.search(vector, k)))
    }

    fn keyword_search(&self, query: &str, k: usize) -> Result<Vec<ChunkHit>> {
        self.usable()?;
        Ok(self
            .bm25
            .search(query, k, self.manifest.bm25)?
            .into_iter()
            .map(|h| ChunkHit {
                doc_id: h.doc_id,
                chunk: h.chunk,
                score: h.score,
            })
            .collect())
    }

    fn export(&self, each: &mut dyn FnMut(IndexedDocument) -> Result<()>) -> Result<()> {
        self.usable()?;
        let mut ids: Vec<&String> = self.contents.docs.keys().collect();
        ids.sort();
        for id in ids {
            let stored = &self.contents.docs[id];
            let texts = self.contents.chunk_texts(stored);
            let mut chunks = Vec::with_capacity(stored.slots.len());
            for (&slot, text) in stored.slots.iter().zip(texts) {
                let vector = self.contents.vectors.get(slot).ok_or_else(|| {
                    IndexError::Internal(format!(
                        "document {id:?}: chunk slot {slot} has no vector"
                    ))
                })?;
                chunks.push(Chunk {
                    text: text.to_owned(),
                    vector: vector.to_vec(),
                });
            }
            each(IndexedDocument {
                document: Document::clone(&stored.document),
                chunks,
            })?;
        }
        Ok(())
    }

    fn stats(&self) -> Result<CollectionStats> {
        self.usable()?;
        Ok(CollectionStats {
            documents: self.contents.docs.len(),
            chunks: self.contents.vectors.len(),
            approximate_vectors: self.uses_ann(),
        })
    }

    /// Checks that every part agrees: documents, chunk slots, vectors and BM25 entries.
    fn verify(&self) -> Result<()> {
        self.usable()?;
        let corrupt = |reason: String| IndexError::Corrupt {
            path: self.dir.clone(),
            reason,
        };
        let c = &self.contents;
        let chunks: usize = c.docs.values().map(|d| d.slots.len()).sum();
        if chunks != c.vectors.len() {
            return Err(corrupt(format!(
                "{chunks} chunks but {} vectors",
                c.vectors.len()
            )));
        }
        let passages: usize = c
            .docs
            .values()
            .map(|d| keyword_passages(&d.document, &c.chunk_texts(d)).len())
            .sum();
        let indexed = self.bm25.num_passages()?;
        if indexed as usize != passages {
            return Err(corrupt(format!(
                "{passages} keyword passages but {indexed} in the BM25 index"
            )));
        }
        if self.bm25.committed_seq()? != self.seq {
            return Err(corrupt("BM25 index reflects another batch".into()));
        }
        for (id, d) in &c.docs {
            for (i, &slot) in d.slots.iter().enumerate() {
                let info = c.slots.get(slot as usize).and_then(|s| s.as_ref());
                if !info.is_some_and(|s| &*s.doc_id == id.as_str() && s.ordinal == i as u32)
                    || c.vectors.get(slot).is_none()
                {
                    return Err(corrupt(format!("chunk {i} of {id} is missing")));
                }
            }
        }
        if let Some(missing) = c.vectors.missing_from_graph() {
            return Err(corrupt(format!(
                "chunk slot {missing} is not in the ANN graph"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
