//! `snapshot.bin` (every document and chunk as of a batch, with the slot of each chunk's
//! vector), `vectors-E.f32` (the vectors by slot, [`super::vector_file`]) and `ann.bin` (the
//! HNSW graph over live slots), each replaced or extended atomically and checksummed:
//!
//! ```text
//! snapshot.bin: [magic: 8 bytes] [payload length: u64 LE] [crc32 of payload: u32 LE] [bincode payload]
//! ann.bin:      [magic: 8 bytes] [batch: u64] [slot epoch: u64] [next slot: u64]
//!               [graph length: u64] [crc32 of graph: u32] [usearch graph]
//! ```
//!
//! A snapshot that fails its checksum, or whose vector file fails its own, is refused: they are
//! the only copy of the batches before it. A graph that fails its checksum, or belongs to another
//! slot epoch, is ignored and rebuilt: it is derived from the vectors. Older snapshots hold the
//! vectors inline (`SIFTSNP3`), and before that no slots either (`SIFTSNP2`, and bare bincode
//! before framing): their chunks are numbered densely, as the code that wrote them numbered
//! them, and the next compaction moves their vectors to a vector file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::files::{map_read_only, write_atomic_parts, write_atomic_with};
use super::state::{ChunkText, SnapshotVectors};
use super::vector_file::{RowRange, VectorFile};
use super::vectors::{AnnGraph, AnnParams};
use crate::document::{Document, IndexedDocument};
use crate::error::{IndexError, Result};

/// Every document as of batch `seq`, with the slot and text of each chunk.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    /// Slots name vectors only within an epoch; a compaction that renumbers slots densely (to
    /// reclaim deleted ones) starts the next epoch, so a graph saved before it is not misread.
    pub slot_epoch: u64,
    /// One past the highest slot the epoch has used, deleted ones included: never handed out
    /// again.
    pub next_slot: u32,
    /// The ranges of `vectors-E.f32` that hold slots `0..next_slot`, with their checksums.
    pub vector_rows: Vec<RowRange>,
    pub docs: Vec<SnapshotDoc>,
}

#[derive(Serialize, Deserialize)]
pub struct SnapshotDoc {
    #[serde(with = "shared_document")]
    pub document: Arc<Document>,
    pub chunks: Vec<SnapshotChunk>,
}

#[derive(Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub slot: u32,
    pub text: ChunkText,
}

/// An `Arc<Document>` encoded as the document itself (serde's `rc` feature would do the same
/// for the whole workspace).
mod shared_document {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::document::Document;

    pub fn serialize<S: Serializer>(d: &Arc<Document>, s: S) -> Result<S::Ok, S::Error> {
        d.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Document>, D::Error> {
        Document::deserialize(d).map(Arc::new)
    }
}

/// Snapshots with the vectors inline (magic `SIFTSNP3`).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(super) struct SnapshotWithVectors {
    pub seq: u64,
    pub slot_epoch: u64,
    pub next_slot: u32,
    pub docs: Vec<IndexedDocument>,
    pub slots: Vec<u32>,
}

/// Writes `old` as the code before vector files did (the tests of reading it).
#[cfg(test)]
pub(super) fn write_snapshot_with_vectors(path: &Path, old: &SnapshotWithVectors) {
    let payload = bincode::serialize(old).unwrap();
    let mut bytes = SNAPSHOT_MAGIC_WITH_VECTORS.to_vec();
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    std::fs::write(path, bytes).unwrap();
}

/// Snapshots before slots were recorded (magic `SIFTSNP2`, or none).
#[derive(Deserialize)]
struct SnapshotWithoutSlots {
    seq: u64,
    docs: Vec<IndexedDocument>,
}

impl SnapshotWithVectors {
    fn dense(seq: u64, docs: Vec<IndexedDocument>) -> Self {
        let chunks: usize = docs.iter().map(|d| d.chunks.len()).sum();
        SnapshotWithVectors {
            seq,
            slot_epoch: 0,
            next_slot: chunks as u32,
            docs,
            slots: (0..chunks as u32).collect(),
        }
    }

    /// The snapshot and its vectors, one per chunk in order.
    fn split(self) -> (Snapshot, Vec<Vec<f32>>) {
        let mut vectors = Vec::with_capacity(self.slots.len());
        let mut slots = self.slots.into_iter();
        let docs = self
            .docs
            .into_iter()
            .map(|d| {
                let text = &d.document.text;
                let chunks = d
                    .chunks
                    .into_iter()
                    .map(|c| {
                        vectors.push(c.vector);
                        SnapshotChunk {
                            slot: slots.next().unwrap_or(u32::MAX),
                            text: ChunkText::of(text, c.text, 0),
                        }
                    })
                    .collect();
                SnapshotDoc {
                    document: Arc::new(d.document),
                    chunks,
                }
            })
            .collect();
        let snapshot = Snapshot {
            seq: self.seq,
            slot_epoch: self.slot_epoch,
            next_slot: self.next_slot,
            vector_rows: Vec::new(),
            docs,
        };
        (snapshot, vectors)
    }
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"SIFTSNP4";
const SNAPSHOT_MAGIC_WITH_VECTORS: &[u8; 8] = b"SIFTSNP3";
const SNAPSHOT_MAGIC_WITHOUT_SLOTS: &[u8; 8] = b"SIFTSNP2";
const GRAPH_MAGIC: &[u8; 8] = b"SIFTANN3";
const GRAPH_HEADER_BYTES: usize = 8 + 8 * 4 + 4;
const HEADER_BYTES: usize = 8 + 8 + 4;

/// The payload of a framed file, or why it is damaged. Files without `magic` are returned whole
/// (the bare bincode written before framing); `None` then.
fn payload<'b>(magic: &[u8; 8], bytes: &'b [u8]) -> std::result::Result<Option<&'b [u8]>, String> {
    if !bytes.starts_with(magic) {
        return Ok(None);
    }
    let header = bytes
        .get(8..HEADER_BYTES)
        .ok_or_else(|| "truncated header".to_owned())?;
    let len = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(header[8..].try_into().unwrap_or_default());
    let body = &bytes[HEADER_BYTES..];
    if body.len() as u64 != len {
        return Err(format!(
            "{} bytes of payload, the header says {len}",
            body.len()
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(Some(body))
}

/// A writer that checksums what passes through it.
struct Crc32Writer<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for Crc32Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `snapshot` framed as the module documentation says, streamed to the file: at a million
/// chunks the encoded snapshot is hundreds of megabytes that need not be held in memory.
pub fn write_snapshot(path: &Path, snapshot: &Snapshot) -> Result<()> {
    let len = bincode::serialized_size(snapshot)
        .map_err(|e| IndexError::Internal(format!("serializing: {e}")))?;
    write_atomic_with(path, |w| {
        w.write_all(SNAPSHOT_MAGIC)?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        let mut hashing = Crc32Writer {
            inner: &mut *w,
            hasher: crc32fast::Hasher::new(),
        };
        bincode::serialize_into(&mut hashing, snapshot).map_err(std::io::Error::other)?;
        let crc = hashing.hasher.finalize();
        w.seek(SeekFrom::Start(16))?;
        w.write_all(&crc.to_le_bytes())
    })
}

/// The snapshot in `dir` with its vectors, or `None` when there is none yet; every vector
/// must have `dim` finite values.
pub fn read_snapshot(dir: &Path, dim: usize) -> Result<Option<(Snapshot, SnapshotVectors)>> {
    let path = dir.join("snapshot.bin");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IndexError::Io { path, source: e }),
    };
    let corrupt = |reason: String| IndexError::Corrupt {
        path: path.clone(),
        reason: format!(
            "{reason}; it is the only copy of the collection's older batches: restore it from \
             a backup, or move the collection aside and index it again"
        ),
    };
    let (snapshot, inline) =
        if let Some(body) = payload(SNAPSHOT_MAGIC, &bytes).map_err(&corrupt)? {
            let s = bincode::deserialize::<Snapshot>(body).map_err(|e| corrupt(e.to_string()))?;
            (s, None)
        } else if let Some(body) = payload(SNAPSHOT_MAGIC_WITH_VECTORS, &bytes).map_err(&corrupt)? {
            let s: SnapshotWithVectors =
                bincode::deserialize(body).map_err(|e| corrupt(e.to_string()))?;
            if s.slots.len() != s.docs.iter().map(|d| d.chunks.len()).sum::<usize>() {
                return Err(corrupt(format!(
                    "{} chunk slots for the chunks",
                    s.slots.len()
                )));
            }
            let (s, v) = s.split();
            (s, Some(v))
        } else {
            let body = payload(SNAPSHOT_MAGIC_WITHOUT_SLOTS, &bytes).map_err(&corrupt)?;
            let old: SnapshotWithoutSlots =
                bincode::deserialize(body.unwrap_or(&bytes)).map_err(|e| corrupt(e.to_string()))?;
            let (s, v) = SnapshotWithVectors::dense(old.seq, old.docs).split();
            (s, Some(v))
        };
    drop(bytes);
    let chunks: usize = snapshot.docs.iter().map(|d| d.chunks.len()).sum();
    // A compaction renumbers slots once deleted ones outnumber live ones (and 1,024), so a
    // snapshot never records more; a larger count is damage, and must not size an allocation.
    if snapshot.next_slot as usize > 2 * chunks + 1024 {
        return Err(corrupt(format!(
            "{} slots recorded for {chunks} chunks",
            snapshot.next_slot
        )));
    }
    let mut used = vec![false; snapshot.next_slot as usize];
    for d in &snapshot.docs {
        for c in &d.chunks {
            match used.get_mut(c.slot as usize) {
                Some(u) if !*u => *u = true,
                _ => {
                    return Err(corrupt(format!(
                        "chunk slot {} is out of range or repeated",
                        c.slot
                    )))
                }
            }
            if !c.text.fits(&d.document.text) {
                return Err(corrupt(format!(
                    "a chunk of {:?} lies outside its text",
                    d.document.id
                )));
            }
        }
    }
    let vectors = match inline {
        Some(vectors) => {
            if let Some(v) = vectors.iter().find(|v| v.len() != dim) {
                return Err(corrupt(format!(
                    "a vector of {} dimensions, the collection {dim}",
                    v.len()
                )));
            }
            if vectors.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
                return Err(corrupt("a vector with NaN or infinite values".into()));
            }
            SnapshotVectors::Inline(vectors)
        }
        None => {
            let file =
                VectorFile::open(dir, snapshot.slot_epoch, dim, snapshot.vector_rows.clone())?;
            if file.rows() != snapshot.next_slot {
                return Err(corrupt(format!(
                    "vector rows recorded for {} slots, {} used",
                    file.rows(),
                    snapshot.next_slot
                )));
            }
            SnapshotVectors::File(file)
        }
    };
    Ok(Some((snapshot, vectors)))
}

/// Where a saved graph came from: it reflects batch `seq` of slot epoch `slot_epoch`, whose
/// slots were all below `next_slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphStamp {
    pub seq: u64,
    pub slot_epoch: u64,
    pub next_slot: u32,
}

/// Writes `graph` (usearch bytes) stamped with `stamp`, or removes a stale file when there is no
/// graph.
pub fn write_graph(path: &Path, stamp: GraphStamp, graph: Option<&[u8]>) -> Result<()> {
    let Some(graph) = graph else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IndexError::Io {
                path: path.to_owned(),
                source: e,
            }),
            _ => Ok(()),
        };
    };
    let mut header = Vec::with_capacity(GRAPH_HEADER_BYTES);
    header.extend_from_slice(GRAPH_MAGIC);
    for n in [
        stamp.seq,
        stamp.slot_epoch,
        u64::from(stamp.next_slot),
        graph.len() as u64,
    ] {
        header.extend_from_slice(&n.to_le_bytes());
    }
    header.extend_from_slice(&crc32fast::hash(graph).to_le_bytes());
    write_atomic_parts(path, &[&header, graph])
}

/// The graph saved at `path` if it can serve a collection whose vectors are at `now` (same slot
/// epoch, no slot or batch beyond it) with `dim` and `params`: viewed in place when `in_place`
/// (for handles that never write), else loaded into memory. A missing, foreign or damaged graph
/// is not an error — it is rebuilt from the vectors — and a damaged one is never handed to the
/// graph library (the checksum is verified first, by a streaming read when viewing, so that
/// nothing of the file stays resident).
pub fn read_graph(
    path: &Path,
    now: GraphStamp,
    dim: usize,
    params: AnnParams,
    in_place: bool,
) -> Option<AnnGraph> {
    let started = std::time::Instant::now();
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{}: unreadable ({e}); rebuilding the graph", path.display());
            return None;
        }
    };
    let decoded = (|| {
        let io = |e: std::io::Error| e.to_string();
        let mut header = [0u8; GRAPH_HEADER_BYTES];
        file.read_exact(&mut header)
            .map_err(|_| "truncated header".to_owned())?;
        if !header.starts_with(GRAPH_MAGIC) {
            return Err("not a graph of this version".to_owned());
        }
        let word = |i: usize| {
            u64::from_le_bytes(header[8 + i * 8..16 + i * 8].try_into().unwrap_or_default())
        };
        let stamp = GraphStamp {
            seq: word(0),
            slot_epoch: word(1),
            next_slot: u32::try_from(word(2)).map_err(|_| "bad slot count".to_owned())?,
        };
        let len = word(3);
        let crc = u32::from_le_bytes(header[40..44].try_into().unwrap_or_default());
        let file_len = file.metadata().map_err(io)?.len();
        if file_len != GRAPH_HEADER_BYTES as u64 + len {
            return Err(format!(
                "{} bytes of graph, the header says {len}",
                file_len.saturating_sub(GRAPH_HEADER_BYTES as u64)
            ));
        }
        if stamp.slot_epoch != now.slot_epoch
            || stamp.next_slot > now.next_slot
            || stamp.seq > now.seq
        {
            return Err(format!("saved for {stamp:?}, the collection is at {now:?}"));
        }
        let body = if in_place {
            let mut hasher = crc32fast::Hasher::new();
            let mut buf = vec![0u8; 4 << 20];
            loop {
                let n = file.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            (hasher.finalize(), None)
        } else {
            let mut body = Vec::with_capacity(len as usize);
            file.read_to_end(&mut body).map_err(io)?;
            (crc32fast::hash(&body), Some(body))
        };
        if body.0 != crc {
            return Err("checksum mismatch".into());
        }
        tracing::debug!(
            "{}: read and checked in {:.2} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        let graph = match body.1 {
            Some(bytes) => AnnGraph::from_bytes(&bytes, dim, params),
            None => {
                let map = map_read_only(&file, file_len).map_err(io)?;
                AnnGraph::view(map, GRAPH_HEADER_BYTES, dim, params)
            }
        };
        graph.map_err(|e| e.to_string())
    })();
    match decoded {
        Ok(graph) => Some(graph),
        Err(e) => {
            tracing::warn!("{}: {e}; rebuilding the graph", path.display());
            None
        }
    }
}
