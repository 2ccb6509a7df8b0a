//! `snapshot.bin` (every document and chunk vector as of a batch) and `ann.bin` (the HNSW graph
//! built over that snapshot), both bincode, both replaced atomically.

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

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| IndexError::Internal(format!("serializing: {e}")))
}

pub fn write_snapshot(path: &Path, snapshot: &Snapshot) -> Result<()> {
    write_atomic(path, &encode(snapshot)?)
}

/// The snapshot at `path`, or `None` when there is none yet.
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>> {
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(IndexError::io(path))?;
    bincode::deserialize(&bytes)
        .map(Some)
        .map_err(|e| IndexError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Writes the graph for snapshot `seq`, or removes a stale file when there is no graph.
pub fn write_graph(path: &Path, seq: u64, graph: Option<&AnnGraph>) -> Result<()> {
    match graph {
        Some(graph) => write_atomic(path, &encode(&AnnFileRef { seq, graph })?),
        None if path.exists() => std::fs::remove_file(path).map_err(IndexError::io(path)),
        None => Ok(()),
    }
}

/// The graph built for snapshot `seq`, if `path` holds one. A missing, older or unreadable
/// graph is not an error: search is exact until the next compaction builds one.
pub fn read_graph(path: &Path, seq: u64) -> Option<AnnGraph> {
    let bytes = std::fs::read(path).ok()?;
    match bincode::deserialize::<AnnFile>(&bytes) {
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
