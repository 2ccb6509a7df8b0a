//! The local backend's compaction, in the three steps of [`CollectionBackend::begin_compaction`]:
//!
//! 1. **begin** (shared access): take the documents as of batch S (shared, no text copied), copy
//!    the vectors added since the last compaction, note where record S ends in the log, mark
//!    the handle as compacting. The graph is copied too (usearch's bytes) — it is updated in
//!    place by commits, so it needs no rebuild.
//! 2. **run** (no access; seconds): write the new vectors to the epoch's vector file, then
//!    `snapshot.bin` at S (naming the vector rows), then `ann.bin`. Commits go on meanwhile and
//!    append records S+1… to the log.
//! 3. **finish** (exclusive, milliseconds): restart the log from S keeping the records appended
//!    since (copied byte for byte from the offset noted in 1), and read the vectors just written
//!    from the file instead of memory. Slots are stable, so the contents in memory already are
//!    what the next open rebuilds from snapshot and log.
//!
//! Two cases rebuild instead. When deleted slots outnumber live ones the snapshot renumbers
//! slots densely in a new slot epoch (reclaiming their memory) with a vector file of its own:
//! run builds new contents and a new graph from it, and finish replays the records appended
//! since onto them, swaps them in and removes the previous epoch's file. When the collection
//! has just grown past the graph threshold, run builds the first graph from the snapshot and
//! finish adopts it (repairing the few slots changed since).
//!
//! Every crash point leaves a state that opens to every acknowledged batch: vector rows past
//! the recorded ones are ignored; after the snapshot, it sits beside a log whose records up to S
//! are skipped on open; the log restart in 3 is one atomic rename. A job that ran but never
//! finished leaves the handle's idea of the files behind the disk's; the next job rewrites the
//! same rows with the same bytes ([`super::vector_file`]) and renumbers into an epoch never used
//! before, so it never changes a byte the snapshot on disk relies on.
//!
//! [`CollectionBackend::begin_compaction`]: crate::CollectionBackend::begin_compaction

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::snapshot::{write_graph, write_snapshot, GraphStamp, Snapshot};
use super::state::{Contents, SnapshotVectors};
use super::vector_file::{self, VectorFile};
use super::vectors::{AnnGraph, AnnParams};
use crate::backend::CompactionJob;
use crate::error::{IndexError, Result};

/// Cleared when the job it belongs to is dropped (finished, failed or abandoned), so a failed
/// compaction never blocks the next one.
pub(super) struct InFlight(Arc<AtomicBool>);

impl InFlight {
    /// `None` when `flag` is already set: another compaction of the handle is running.
    pub fn claim(flag: &Arc<AtomicBool>) -> Option<InFlight> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| InFlight(flag.clone()))
    }

    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What a compaction does to the vector slots.
pub(super) enum SlotPlan {
    /// Slots stay; `graph` is the live graph's bytes as of the snapshot (`None`: no graph).
    Keep { graph: Option<Vec<u8>> },
    /// Slots are renumbered densely in the snapshot's new epoch; contents and graph are rebuilt.
    Renumber,
}

pub(super) struct LocalCompaction {
    pub dir: PathBuf,
    /// The batch the snapshot reflects.
    pub seq: u64,
    /// Where record `seq` ends in the log: later records are kept by finish.
    pub log_offset: u64,
    pub dim: usize,
    pub params: AnnParams,
    /// Taken by run.
    pub snapshot: Option<Snapshot>,
    /// The vector rows to write after those the snapshot already records; taken by run.
    pub rows: Vec<f32>,
    pub plan: SlotPlan,
    /// Set by run for [`SlotPlan::Renumber`]: the snapshot's contents with the graph built.
    pub contents: Option<Contents>,
    /// Set by run for [`SlotPlan::Keep`] when the snapshot needed a first graph: finish adopts it.
    pub new_graph: Option<AnnGraph>,
    /// Set by run for [`SlotPlan::Keep`]: the vector file with the new rows, for finish to read
    /// them from instead of memory.
    pub file: Option<VectorFile>,
    /// Set by run.
    pub ran: bool,
    pub snapshot_bytes: u64,
    pub in_flight: InFlight,
    #[cfg(feature = "failpoints")]
    pub crash_hook: Option<fn(&'static str)>,
}

impl LocalCompaction {
    fn step(&self, _name: &'static str) {
        #[cfg(feature = "failpoints")]
        if let Some(hook) = self.crash_hook {
            hook(_name);
        }
    }
}

impl CompactionJob for LocalCompaction {
    fn run(&mut self) -> Result<()> {
        let mut snapshot = self
            .snapshot
            .take()
            .ok_or_else(|| IndexError::Internal("a compaction job was run twice".into()))?;
        let (epoch, dim) = (snapshot.slot_epoch, self.dim);
        let rows = std::mem::take(&mut self.rows);
        if !rows.is_empty() {
            let start = snapshot.vector_rows.last().map_or(0, |r| r.end);
            let range = vector_file::write_rows(&self.dir, epoch, dim, start, &rows)?;
            snapshot.vector_rows.push(range);
        }
        drop(rows);
        self.step("vectors-written");
        let snapshot_path = self.dir.join("snapshot.bin");
        let graph_path = self.dir.join("ann.bin");
        write_snapshot(&snapshot_path, &snapshot)?;
        self.step("snapshot-written");
        let ranges = snapshot.vector_rows.clone();
        let file = VectorFile::map_written(&self.dir, epoch, dim, ranges.clone())?;
        self.snapshot_bytes =
            std::fs::metadata(&snapshot_path).map_or(0, |m| m.len()) + file.bytes();
        let stamp = GraphStamp {
            seq: snapshot.seq,
            slot_epoch: epoch,
            next_slot: snapshot.next_slot,
        };
        match &mut self.plan {
            SlotPlan::Keep { graph: Some(bytes) } => {
                write_graph(&graph_path, stamp, Some(bytes))?;
                self.file = Some(file);
            }
            SlotPlan::Keep { graph: None } => {
                let vectors = SnapshotVectors::File(file);
                let contents = Contents::from_snapshot(snapshot, vectors, dim, self.params);
                let graph = if contents.vectors.len() >= self.params.exact_below {
                    Some(contents.vectors.build_graph()?)
                } else {
                    None
                };
                let bytes = graph.as_ref().map(AnnGraph::to_bytes).transpose()?;
                write_graph(&graph_path, stamp, bytes.as_deref())?;
                self.new_graph = graph;
                self.file = Some(VectorFile::map_written(&self.dir, epoch, dim, ranges)?);
            }
            SlotPlan::Renumber => {
                let vectors = SnapshotVectors::File(file);
                let mut contents = Contents::from_snapshot(snapshot, vectors, dim, self.params);
                contents.vectors.fit_graph()?;
                let bytes = contents
                    .vectors
                    .graph()
                    .map(AnnGraph::to_bytes)
                    .transpose()?;
                write_graph(&graph_path, stamp, bytes.as_deref())?;
                self.contents = Some(contents);
            }
        }
        self.step("graph-written");
        self.ran = true;
        Ok(())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}
