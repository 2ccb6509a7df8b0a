//! A collection in a local directory.
//!
//! ```text
//! collection.json   what the collection was built with (model, dimension, chunking)
//! wal.log           committed batches since the last snapshot: the source of truth
//! snapshot.bin      every document and chunk vector as of a batch number
//! ann.bin           HNSW graph over the snapshot's vectors (only for large collections)
//! bm25/             tantivy index; its commit payload says which batch it reflects
//! LOCK              held by the one process writing the collection
//! ```
//!
//! **Commit unit: one batch** ([`Collection::commit`]). A batch is durable once its WAL record is
//! fsynced; then it is applied to memory and to the BM25 index. After a crash at any point, open
//! loads the snapshot, replays the WAL (cutting a torn last record, which was never reported
//! committed), and rebuilds the BM25 index or ignores the graph if they reflect another batch
//! than the WAL does — so every part agrees again, and every acknowledged batch is there.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bm25::Bm25Index;
use crate::document::{Chunk, Document, IndexedDocument};
use crate::error::{IndexError, Result};
use crate::vectors::{AnnGraph, AnnParams, VectorIndex};
use crate::wal::{Operation, Record, Wal};

const FORMAT_VERSION: u32 = 1;

/// Identity of the embedding model a collection's vectors come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingModelInfo {
    /// Human-readable name (the model directory's name).
    pub name: String,
    /// Changes whenever the model's weights or tokenizer change.
    pub fingerprint: String,
    pub dim: usize,
}

/// How documents are split into token windows before embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkingConfig {
    /// Tokens of text per window (special tokens excluded).
    pub max_tokens: usize,
    /// Tokens shared by consecutive windows.
    pub overlap_tokens: usize,
}

/// `collection.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub embedding: EmbeddingModelInfo,
    pub chunking: ChunkingConfig,
}

/// A chunk matched by a search, with the leg's own score (cosine similarity or BM25).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    pub doc_id: String,
    pub chunk: u32,
    pub score: f32,
}

struct StoredDoc {
    document: Document,
    hash: u64,
    slots: Vec<u32>,
}

struct SlotInfo {
    doc_id: Arc<str>,
    ordinal: u32,
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    seq: u64,
    docs: Vec<IndexedDocument>,
}

#[derive(Serialize, Deserialize)]
struct AnnFile {
    seq: u64,
    graph: AnnGraph,
}

pub struct Collection {
    dir: PathBuf,
    manifest: Manifest,
    _lock: File,
    /// `None` when opened read-only.
    wal: Option<Wal>,
    seq: u64,
    /// Batch number the snapshot (and the slot numbering) reflects.
    snapshot_seq: u64,
    docs: HashMap<String, StoredDoc>,
    slots: Vec<Option<SlotInfo>>,
    vectors: VectorIndex,
    bm25: Bm25Index,
    wal_records: usize,
}

impl Collection {
    /// Opens the collection in `dir`, creating it with `manifest` if it does not exist. An
    /// existing collection built with another embedding model is refused.
    pub fn open_or_create(dir: &Path, manifest: Manifest, ann: AnnParams) -> Result<Self> {
        let manifest_path = dir.join("collection.json");
        if !manifest_path.is_file() {
            std::fs::create_dir_all(dir).map_err(IndexError::io(dir))?;
            let lock = lock(dir, true)?;
            write_atomic(
                &manifest_path,
                &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
            )?;
            drop(lock);
        }
        let collection = Self::open(dir, ann)?;
        let existing = &collection.manifest.embedding;
        if existing.fingerprint != manifest.embedding.fingerprint
            || existing.dim != manifest.embedding.dim
        {
            return Err(IndexError::ModelMismatch {
                expected: format!("{} (dim {})", existing.name, existing.dim),
                found: format!(
                    "{} (dim {})",
                    manifest.embedding.name, manifest.embedding.dim
                ),
            });
        }
        Ok(collection)
    }

    /// Opens an existing collection for writing, repairing derived parts after a crash.
    pub fn open(dir: &Path, ann: AnnParams) -> Result<Self> {
        Self::open_with(dir, ann, true)
    }

    /// Opens for searching, sharing the collection with other readers. Fails with
    /// [`IndexError::NeedsRecovery`] when a crash left derived parts behind; opening for writing
    /// ([`Collection::open`]) repairs them.
    pub fn open_read_only(dir: &Path, ann: AnnParams) -> Result<Self> {
        Self::open_with(dir, ann, false)
    }

    /// Read-only when possible, for writing when recovery is needed.
    pub fn open_for_search(dir: &Path, ann: AnnParams) -> Result<Self> {
        match Self::open_read_only(dir, ann) {
            Err(IndexError::NeedsRecovery(_)) => Self::open(dir, ann),
            other => other,
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
        let bm25 = if !writable {
            Bm25Index::open_read_only(&bm25_dir)
                .map_err(|_| IndexError::NeedsRecovery(dir.to_owned()))?
        } else {
            match Bm25Index::open_or_create(&bm25_dir) {
                Ok(b) => b,
                Err(IndexError::Bm25(e)) => {
                    tracing::warn!("BM25 index unreadable ({e}); rebuilding it");
                    std::fs::remove_dir_all(&bm25_dir).map_err(IndexError::io(&bm25_dir))?;
                    Bm25Index::open_or_create(&bm25_dir)?
                }
                Err(e) => return Err(e),
            }
        };
        let wal_path = dir.join("wal.log");
        let (wal, records) = if writable {
            let (w, r) = Wal::open(&wal_path)?;
            (Some(w), r)
        } else {
            Wal::read(&wal_path)?
        };
        let mut c = Collection {
            dir: dir.to_owned(),
            manifest,
            _lock: lock,
            wal,
            seq: 0,
            snapshot_seq: 0,
            docs: HashMap::new(),
            slots: Vec::new(),
            vectors: VectorIndex::new(ann),
            bm25,
            wal_records: 0,
        };
        c.load_snapshot()?;
        for record in records {
            if record.seq <= c.seq {
                continue; // already in the snapshot (crash between snapshot and WAL reset)
            }
            c.seq = record.seq;
            c.wal_records += 1;
            for op in record.operations {
                c.apply_to_memory(op);
            }
        }
        c.load_graph();
        if c.bm25.committed_seq()? != c.seq {
            if !writable {
                return Err(IndexError::NeedsRecovery(dir.to_owned()));
            }
            c.rebuild_bm25()?;
        }
        Ok(c)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn num_chunks(&self) -> usize {
        self.vectors.len()
    }

    /// Number of the last committed batch.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn get(&self, id: &str) -> Option<&Document> {
        self.docs.get(id).map(|d| &d.document)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.docs.keys().map(|k| k.as_str())
    }

    /// True when `doc` is stored with exactly this content (re-indexing it would change nothing).
    pub fn is_unchanged(&self, doc: &Document) -> bool {
        self.docs
            .get(&doc.id)
            .is_some_and(|d| d.hash == doc.content_hash())
    }

    /// Text of chunk `ordinal` of `doc_id`.
    pub fn chunk_text(&self, doc_id: &str, ordinal: u32) -> Option<&str> {
        let slot = *self.docs.get(doc_id)?.slots.get(ordinal as usize)?;
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|s| s.text.as_str())
    }

    /// Commits one batch atomically and returns its number. Rejects the whole batch (writing
    /// nothing) on duplicate ids, empty ids, documents without chunks, or vectors of the wrong
    /// dimension or with non-finite values.
    pub fn commit(&mut self, operations: Vec<Operation>) -> Result<u64> {
        self.validate(&operations)?;
        if operations.is_empty() {
            return Ok(self.seq);
        }
        let record = Record {
            seq: self.seq + 1,
            operations,
        };
        self.writable_wal()?.append(&record)?;
        self.seq = record.seq;
        self.wal_records += 1;
        for op in &record.operations {
            let id = match op {
                Operation::Upsert(d) => &d.document.id,
                Operation::Delete(id) => id,
            };
            self.bm25.delete_document(id)?;
        }
        for op in record.operations {
            if let Operation::Upsert(d) = &op {
                for (i, chunk) in d.chunks.iter().enumerate() {
                    self.bm25.add_chunk(
                        &d.document.id,
                        i as u32,
                        d.document.title.as_deref(),
                        &chunk.text,
                    )?;
                }
            }
            self.apply_to_memory(op);
        }
        self.bm25.commit(self.seq)?;
        Ok(self.seq)
    }

    /// Writes a snapshot, rebuilds the ANN graph when the collection is large enough, and empties
    /// the WAL. Search results do not change; opening gets faster and deleted vectors are freed.
    pub fn compact(&mut self) -> Result<()> {
        self.writable_wal()?;
        if self.wal_records == 0
            && self.snapshot_seq == self.seq
            && self.dir.join("snapshot.bin").is_file()
        {
            return Ok(());
        }
        let mut ids: Vec<&String> = self.docs.keys().collect();
        ids.sort();
        let docs: Vec<IndexedDocument> = ids
            .iter()
            .map(|id| {
                let d = &self.docs[*id];
                IndexedDocument {
                    document: d.document.clone(),
                    chunks: d
                        .slots
                        .iter()
                        .map(|&s| Chunk {
                            text: self.slots[s as usize]
                                .as_ref()
                                .map(|i| i.text.clone())
                                .unwrap_or_default(),
                            vector: self.vectors.get(s).map(|v| v.to_vec()).unwrap_or_default(),
                        })
                        .collect(),
                }
            })
            .collect();
        let snapshot = Snapshot {
            seq: self.seq,
            docs,
        };
        let bytes =
            bincode::serialize(&snapshot).map_err(|e| IndexError::InvalidInput(e.to_string()))?;
        write_atomic(&self.dir.join("snapshot.bin"), &bytes)?;
        // Renumber slots densely, in snapshot order, exactly as the next open will.
        let seq = self.seq;
        self.install_snapshot(snapshot);
        self.vectors.rebuild_graph();
        let ann_path = self.dir.join("ann.bin");
        match self.vectors.graph() {
            Some(graph) => {
                let file = AnnFileRef { seq, graph };
                let bytes = bincode::serialize(&file)
                    .map_err(|e| IndexError::InvalidInput(e.to_string()))?;
                write_atomic(&ann_path, &bytes)?;
            }
            None => {
                if ann_path.exists() {
                    std::fs::remove_file(&ann_path).map_err(IndexError::io(&ann_path))?;
                }
            }
        }
        self.writable_wal()?.reset()?;
        self.wal_records = 0;
        Ok(())
    }

    /// Nearest chunks to `vector` by cosine similarity.
    pub fn dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>> {
        if vector.len() != self.manifest.embedding.dim {
            return Err(IndexError::InvalidInput(format!(
                "query vector has {} dimensions, the collection {}",
                vector.len(),
                self.manifest.embedding.dim
            )));
        }
        Ok(self
            .vectors
            .search(vector, k)
            .into_iter()
            .filter_map(|h| {
                let info = self.slots.get(h.slot as usize)?.as_ref()?;
                Some(ChunkHit {
                    doc_id: info.doc_id.to_string(),
                    chunk: info.ordinal,
                    score: h.similarity,
                })
            })
            .collect())
    }

    /// Exact nearest chunks, bypassing the graph (the reference for ANN recall).
    pub fn exact_dense_search(&self, vector: &[f32], k: usize) -> Vec<ChunkHit> {
        self.vectors
            .exact_search(vector, k)
            .into_iter()
            .filter_map(|h| {
                let info = self.slots.get(h.slot as usize)?.as_ref()?;
                Some(ChunkHit {
                    doc_id: info.doc_id.to_string(),
                    chunk: info.ordinal,
                    score: h.similarity,
                })
            })
            .collect()
    }

    /// Every live chunk vector (unit length), for export and benchmarks.
    pub fn chunk_vectors(&self) -> impl Iterator<Item = &[f32]> {
        (0..self.vectors.slots() as u32).filter_map(|s| self.vectors.get(s))
    }

    /// True when dense search uses the HNSW graph.
    pub fn uses_ann(&self) -> bool {
        self.vectors.has_graph()
    }

    /// Best chunks for `query` by BM25.
    pub fn keyword_search(&self, query: &str, k: usize) -> Result<Vec<ChunkHit>> {
        Ok(self
            .bm25
            .search(query, k)?
            .into_iter()
            .map(|h| ChunkHit {
                doc_id: h.doc_id,
                chunk: h.chunk,
                score: h.score,
            })
            .collect())
    }

    /// Checks that every part agrees: documents, chunk slots, vectors and BM25 entries.
    /// Used by tests after crashes; cheap enough to run on demand.
    pub fn verify(&self) -> Result<()> {
        let corrupt = |reason: String| IndexError::Corrupt {
            path: self.dir.clone(),
            reason,
        };
        let chunks: usize = self.docs.values().map(|d| d.slots.len()).sum();
        if chunks != self.vectors.len() {
            return Err(corrupt(format!(
                "{chunks} chunks but {} vectors",
                self.vectors.len()
            )));
        }
        if self.bm25.num_chunks() as usize != chunks {
            return Err(corrupt(format!(
                "{chunks} chunks but {} in the BM25 index",
                self.bm25.num_chunks()
            )));
        }
        if self.bm25.committed_seq()? != self.seq {
            return Err(corrupt("BM25 index reflects another batch".into()));
        }
        for (id, d) in &self.docs {
            for (i, &slot) in d.slots.iter().enumerate() {
                let info = self.slots.get(slot as usize).and_then(|s| s.as_ref());
                if !info.is_some_and(|s| &*s.doc_id == id.as_str() && s.ordinal == i as u32)
                    || self.vectors.get(slot).is_none()
                {
                    return Err(corrupt(format!("chunk {i} of {id} is missing")));
                }
            }
        }
        Ok(())
    }

    fn writable_wal(&mut self) -> Result<&mut Wal> {
        self.wal
            .as_mut()
            .ok_or_else(|| IndexError::InvalidInput("the collection was opened read-only".into()))
    }

    fn validate(&self, operations: &[Operation]) -> Result<()> {
        let mut seen = HashSet::new();
        let dim = self.manifest.embedding.dim;
        for op in operations {
            let id = match op {
                Operation::Upsert(d) => &d.document.id,
                Operation::Delete(id) => id,
            };
            if id.is_empty() {
                return Err(IndexError::InvalidInput("a document id is empty".into()));
            }
            if !seen.insert(id.as_str()) {
                return Err(IndexError::InvalidInput(format!(
                    "document id {id:?} appears twice in one batch"
                )));
            }
            if let Operation::Upsert(d) = op {
                if d.chunks.is_empty() {
                    return Err(IndexError::InvalidInput(format!(
                        "document {id:?} has no chunks"
                    )));
                }
                for c in &d.chunks {
                    if c.vector.len() != dim {
                        return Err(IndexError::InvalidInput(format!(
                            "document {id:?}: vector has {} dimensions, the collection {dim}",
                            c.vector.len()
                        )));
                    }
                    if c.vector.iter().any(|x| !x.is_finite()) {
                        return Err(IndexError::InvalidInput(format!(
                            "document {id:?}: vector has NaN or infinite values"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_to_memory(&mut self, op: Operation) {
        match op {
            Operation::Delete(id) => self.remove_doc(&id),
            Operation::Upsert(d) => {
                self.remove_doc(&d.document.id);
                self.insert_doc(d);
            }
        }
    }

    fn remove_doc(&mut self, id: &str) {
        if let Some(old) = self.docs.remove(id) {
            for slot in old.slots {
                self.vectors.remove(slot);
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = None;
                }
            }
        }
    }

    fn insert_doc(&mut self, d: IndexedDocument) {
        let id: Arc<str> = Arc::from(d.document.id.as_str());
        let mut slots = Vec::with_capacity(d.chunks.len());
        for (ordinal, chunk) in d.chunks.into_iter().enumerate() {
            let slot = self.vectors.push(&chunk.vector);
            debug_assert_eq!(slot as usize, self.slots.len());
            self.slots.push(Some(SlotInfo {
                doc_id: id.clone(),
                ordinal: ordinal as u32,
                text: chunk.text,
            }));
            slots.push(slot);
        }
        let hash = d.document.content_hash();
        self.docs.insert(
            d.document.id.clone(),
            StoredDoc {
                document: d.document,
                hash,
                slots,
            },
        );
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        self.docs.clear();
        self.slots.clear();
        self.vectors = VectorIndex::new(self.vectors.params());
        for d in snapshot.docs {
            self.insert_doc(d);
        }
        self.seq = snapshot.seq;
        self.snapshot_seq = snapshot.seq;
    }

    fn load_snapshot(&mut self) -> Result<()> {
        let path = self.dir.join("snapshot.bin");
        if !path.is_file() {
            return Ok(());
        }
        let bytes = std::fs::read(&path).map_err(IndexError::io(&path))?;
        let snapshot: Snapshot = bincode::deserialize(&bytes).map_err(|e| IndexError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.install_snapshot(snapshot);
        Ok(())
    }

    fn load_graph(&mut self) {
        let path = self.dir.join("ann.bin");
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        match bincode::deserialize::<AnnFile>(&bytes) {
            Ok(file) if file.seq == self.snapshot_seq => {
                if !self.vectors.attach_graph(file.graph) {
                    tracing::warn!(
                        "{}: graph does not fit the snapshot; searching exactly",
                        path.display()
                    );
                }
            }
            Ok(_) => tracing::info!(
                "{}: graph is older than the snapshot; searching exactly until the next compaction",
                path.display()
            ),
            Err(e) => tracing::warn!(
                "{}: unreadable ({e}); searching exactly until the next compaction",
                path.display()
            ),
        }
    }

    fn rebuild_bm25(&mut self) -> Result<()> {
        tracing::info!("rebuilding the BM25 index to batch {}", self.seq);
        self.bm25.delete_all()?;
        for (id, d) in &self.docs {
            for (i, &slot) in d.slots.iter().enumerate() {
                if let Some(info) = self.slots[slot as usize].as_ref() {
                    self.bm25
                        .add_chunk(id, i as u32, d.document.title.as_deref(), &info.text)?;
                }
            }
        }
        self.bm25.commit(self.seq)
    }
}

/// Serialises a borrowed graph with the same layout as [`AnnFile`].
#[derive(Serialize)]
struct AnnFileRef<'a> {
    seq: u64,
    graph: &'a AnnGraph,
}

/// Writers hold the lock exclusively, readers share it.
fn lock(dir: &Path, exclusive: bool) -> Result<File> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(IndexError::io(&path))?;
    let locked = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(IndexError::Locked {
            path: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(IndexError::Io { path, source: e }),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(IndexError::io(&tmp))?;
    f.write_all(bytes).map_err(IndexError::io(&tmp))?;
    f.sync_all().map_err(IndexError::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(IndexError::io(path))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
