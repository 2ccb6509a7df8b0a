//! `snapshot.bin` (every document, chunk vector and chunk slot as of a batch) and `ann.bin`
//! (the HNSW graph over live slots), both replaced atomically and both checksummed:
//!
//! ```text
//! snapshot.bin: [magic: 8 bytes] [payload length: u64 LE] [crc32 of payload: u32 LE] [bincode payload]
//! ann.bin:      [magic: 8 bytes] [batch: u64] [slot epoch: u64] [next slot: u64]
//!               [graph length: u64] [crc32 of graph: u32] [usearch graph]
//! ```
//!
//! A snapshot that fails its checksum, or holds a vector that is not finite, is refused: it is
//! the only copy of the batches before it. A graph that fails its checksum, or belongs to another
//! slot epoch, is ignored and rebuilt: it is derived from the vectors. Older snapshots (`SIFTSNP2`,
//! and bare bincode before framing) hold no slots: their chunks are numbered densely, as the
//! code that wrote them numbered them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::{write_atomic, write_atomic_parts};
use super::vectors::{AnnGraph, AnnParams};
use crate::document::IndexedDocument;
use crate::error::{IndexError, Result};

/// Every document as of batch `seq`, with the slot of each chunk.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    /// Slots name vectors only within an epoch; a compaction that renumbers slots densely (to
    /// reclaim deleted ones) starts the next epoch, so a graph saved before it is not misread.
    pub slot_epoch: u64,
    /// One past the highest slot the epoch has used, deleted ones included: never handed out
    /// again.
    pub next_slot: u32,
    pub docs: Vec<IndexedDocument>,
    /// The slot of every chunk, in document then chunk order.
    pub slots: Vec<u32>,
}

/// Snapshots before slots were recorded (magic `SIFTSNP2`, or none).
#[derive(Deserialize)]
struct SnapshotWithoutSlots {
    seq: u64,
    docs: Vec<IndexedDocument>,
}

impl Snapshot {
    /// `docs` numbered densely from 0 in order, in epoch `slot_epoch`.
    pub fn dense(seq: u64, slot_epoch: u64, docs: Vec<IndexedDocument>) -> Snapshot {
        let chunks: usize = docs.iter().map(|d| d.chunks.len()).sum();
        Snapshot {
            seq,
            slot_epoch,
            next_slot: chunks as u32,
            docs,
            slots: (0..chunks as u32).collect(),
        }
    }
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"SIFTSNP3";
const SNAPSHOT_MAGIC_WITHOUT_SLOTS: &[u8; 8] = b"SIFTSNP2";
const GRAPH_MAGIC: &[u8; 8] = b"SIFTANN3";
const GRAPH_HEADER_BYTES: usize = 8 + 8 * 4 + 4;
const HEADER_BYTES: usize = 8 + 8 + 4;

/// `value` framed as the module documentation says.
fn encode<T: Serialize>(magic: &[u8; 8], value: &T) -> Result<Vec<u8>> {
    let payload =
        bincode::serialize(value).map_err(|e| IndexError::Internal(format!("serializing: {e}")))?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

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

pub fn write_snapshot(path: &Path, snapshot: &Snapshot) -> Result<()> {
    debug_assert_eq!(
        snapshot.slots.len(),
        snapshot.docs.iter().map(|d| d.chunks.len()).sum::<usize>()
    );
    write_atomic(path, &encode(SNAPSHOT_MAGIC, snapshot)?)
}

/// The snapshot at `path`, or `None` when there is none yet; every vector must have `dim`
/// finite values.
pub fn read_snapshot(path: &Path, dim: usize) -> Result<Option<Snapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(IndexError::Io {
                path: path.to_owned(),
                source: e,
            })
        }
    };
    let corrupt = |reason: String| IndexError::Corrupt {
        path: path.to_owned(),
        reason: format!(
            "{reason}; it is the only copy of the collection's older batches: restore it from \
             a backup, or move the collection aside and index it again"
        ),
    };
    let snapshot = match payload(SNAPSHOT_MAGIC, &bytes).map_err(&corrupt)? {
        Some(body) => bincode::deserialize::<Snapshot>(body).map_err(|e| corrupt(e.to_string()))?,
        None => {
            let body = payload(SNAPSHOT_MAGIC_WITHOUT_SLOTS, &bytes).map_err(&corrupt)?;
            let old: SnapshotWithoutSlots =
                bincode::deserialize(body.unwrap_or(&bytes)).map_err(|e| corrupt(e.to_string()))?;
            Snapshot::dense(old.seq, 0, old.docs)
        }
    };
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
    if snapshot.slots.len() != chunks {
        return Err(corrupt(format!(
            "{} chunk slots for {chunks} chunks",
            snapshot.slots.len()
        )));
    }
    for &slot in &snapshot.slots {
        match used.get_mut(slot as usize) {
            Some(u) if !*u => *u = true,
            _ => {
                return Err(corrupt(format!(
                    "chunk slot {slot} is out of range or repeated"
                )))
            }
        }
    }
    for d in &snapshot.docs {
        if d.chunks
            .iter()
            .any(|c| c.vector.iter().any(|x| !x.is_finite()))
        {
            return Err(corrupt(format!(
                "document {:?} has a vector with NaN or infinite values",
                d.document.id
            )));
        }
        if let Some(c) = d.chunks.iter().find(|c| c.vector.len() != dim) {
            return Err(corrupt(format!(
                "document {:?} has a vector of {} dimensions, the collection {dim}",
                d.document.id,
                c.vector.len()
            )));
        }
    }
    Ok(Some(snapshot))
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
/// epoch, no slot or batch beyond it) with `dim` and `params`. A missing, foreign or damaged
/// graph is not an error — it is rebuilt from the vectors — and a damaged one is never handed to
/// the graph library (the checksum is verified first).
pub fn read_graph(path: &Path, now: GraphStamp, dim: usize, params: AnnParams) -> Option<AnnGraph> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{}: unreadable ({e}); rebuilding the graph", path.display());
            return None;
        }
    };
    let decoded = (|| {
        if !bytes.starts_with(GRAPH_MAGIC) {
            return Err("not a graph of this version".to_owned());
        }
        let header = bytes
            .get(8..GRAPH_HEADER_BYTES)
            .ok_or_else(|| "truncated header".to_owned())?;
        let word =
            |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let stamp = GraphStamp {
            seq: word(0),
            slot_epoch: word(1),
            next_slot: u32::try_from(word(2)).map_err(|_| "bad slot count".to_owned())?,
        };
        let body = &bytes[GRAPH_HEADER_BYTES..];
        if body.len() as u64 != word(3) {
            return Err(format!(
                "{} bytes of graph, the header says {}",
                body.len(),
                word(3)
            ));
        }
        let crc = u32::from_le_bytes(header[32..36].try_into().unwrap_or_default());
        if crc32fast::hash(body) != crc {
            return Err("checksum mismatch".into());
        }
        if stamp.slot_epoch != now.slot_epoch
            || stamp.next_slot > now.next_slot
            || stamp.seq > now.seq
        {
            return Err(format!("saved for {stamp:?}, the collection is at {now:?}"));
        }
        AnnGraph::from_bytes(body, dim, params).map_err(|e| e.to_string())
    })();
    match decoded {
        Ok(graph) => Some(graph),
        Err(e) => {
            tracing::warn!("{}: {e}; rebuilding the graph", path.display());
            None
        }
    }
}
