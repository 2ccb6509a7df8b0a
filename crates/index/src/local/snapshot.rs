//! `snapshot.bin` (every document and chunk vector as of a batch) and `ann.bin` (the HNSW graph
//! built over that snapshot), both replaced atomically and both checksummed:
//!
//! ```text
//! [magic: 8 bytes] [payload length: u64 LE] [crc32 of payload: u32 LE] [bincode payload]
//! ```
//!
//! A snapshot that fails its checksum, or holds a vector that is not finite, is refused: it is
//! the only copy of the batches before it. A graph that fails is ignored (search is exact until
//! the next compaction rebuilds it): it is derived from the snapshot. Snapshots written before
//! the checksum (bare bincode) are still read.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::write_atomic;
use super::vectors::AnnGraph;
use crate::document::IndexedDocument;
use crate::error::{IndexError, Result};

#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub docs: Vec<IndexedDocument>,
}

#[derive(Deserialize)]
struct AnnFile {
    seq: u64,
    graph: AnnGraph,
}

/// Serialises a borrowed graph with the same layout as [`AnnFile`].
#[derive(Serialize)]
struct AnnFileRef<'a> {
    seq: u64,
    graph: &'a AnnGraph,
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"SIFTSNP2";
const GRAPH_MAGIC: &[u8; 8] = b"SIFTANN2";
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
    let body = payload(SNAPSHOT_MAGIC, &bytes).map_err(corrupt)?;
    let snapshot: Snapshot =
        bincode::deserialize(body.unwrap_or(&bytes)).map_err(|e| corrupt(e.to_string()))?;
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

/// Writes the graph for snapshot `seq`, or removes a stale file when there is no graph.
pub fn write_graph(path: &Path, seq: u64, graph: Option<&AnnGraph>) -> Result<()> {
    match graph {
        Some(graph) => write_atomic(path, &encode(GRAPH_MAGIC, &AnnFileRef { seq, graph })?),
        None if path.exists() => std::fs::remove_file(path).map_err(IndexError::io(path)),
        None => Ok(()),
    }
}

/// The graph built for snapshot `seq`, if `path` holds one. A missing, older or unreadable
/// graph is not an error: search is exact until the next compaction builds one.
pub fn read_graph(path: &Path, seq: u64) -> Option<AnnGraph> {
    let bytes = std::fs::read(path).ok()?;
    let decoded = payload(GRAPH_MAGIC, &bytes).and_then(|body| {
        bincode::deserialize::<AnnFile>(body.unwrap_or(&bytes)).map_err(|e| e.to_string())
    });
    match decoded {
        Ok(file) if file.seq == seq => Some(file.graph),
        Ok(_) => {
            tracing::info!(
                "{}: graph is older than the snapshot; searching exactly until the next compaction",
                path.display()
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                "{}: unreadable ({e}); searching exactly until the next compaction",
                path.display()
            );
            None
        }
    }
}
