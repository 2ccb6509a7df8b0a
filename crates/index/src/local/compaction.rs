//! The local backend's compaction, in the three steps of [`CollectionBackend::begin_compaction`]:
//!
//! 1. **begin** (shared access): copy every document and vector as of batch S, note where record
//!    S ends in the log, mark the handle as compacting.
//!    The graph is copied too (usearch's bytes) — it is updated in place by commits, so it needs
//!    no rebuild.
//! 2. **run** (no access; seconds): write `snapshot.bin` at S and `ann.bin`. Commits go on
//!    meanwhile and append records S+1… to the log.
//! 3. **finish** (exclusive, milliseconds): restart the log from S keeping the records appended
//!    since (copied byte for byte from the offset noted in 1). Slots are stable, so the contents
//!    in memory already are what the next open rebuilds from snapshot and log.
//!
//! Two cases rebuild instead. When deleted slots outnumber live ones the snapshot renumbers
//! slots densely in a new slot epoch (reclaiming their memory): run builds new contents and a new
//! graph from it, and finish replays the records appended since onto them and swaps them in.
//! When the collection has just grown past the graph threshold, run builds the first graph from
//! the snapshot and finish adopts it (repairing the few slots changed since).
//!
//! Every crash point leaves a state that opens to every acknowledged batch: after 2, the
//! snapshot at S sits beside a log whose records up to S are skipped on open; the log restart
//! in 3 is one atomic rename.
//!
//! [`CollectionBackend::begin_compaction`]: crate::CollectionBackend::begin_compaction

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::snapshot::{write_graph, write_snapshot, GraphStamp, Snapshot};
use super::state::Contents;
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
    pub plan: SlotPlan,
    /// Set by run for [`SlotPlan::Renumber`]: the snapshot's contents with the graph built.
    pub contents: Option<Contents>,
    /// Set by run for [`SlotPlan::Keep`] when the snapshot needed a first graph: finish adopts it.
    pub new_graph: Option<AnnGraph>,
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
        let snapshot = self
            .snapshot
            .take()
            .ok_or_else(|| IndexError::Internal("a compaction job was run twice".into()))?;
        let snapshot_path = self.dir.join("snapshot.bin");
        let graph_path = self.dir.join("ann.bin");
        write_snapshot(&snapshot_path, &snapshot)?;
        self.step("snapshot-written");
        self.snapshot_bytes = std::fs::metadata(&snapshot_path).map_or(0, |m| m.len());
        let stamp = GraphStamp {
            seq: snapshot.seq,
            slot_epoch: snapshot.slot_epoch,
            next_slot: snapshot.next_slot,
        };
        match &mut self.plan {
            SlotPlan::Keep { graph: Some(bytes) } => {
                write_graph(&graph_path, stamp, Some(bytes))?;
            }
            SlotPlan::Keep { graph: None } => {
                let contents = Contents::from_snapshot(snapshot, self.dim, self.params);
                let graph = if contents.vectors.len() >= self.params.exact_below {
                    Some(contents.vectors.build_graph()?)
                } else {
                    None
                };
                let bytes = graph.as_ref().map(AnnGraph::to_bytes).transpose()?;
                write_graph(&graph_path, stamp, bytes.as_deref())?;
                self.new_graph = graph;
            }
            SlotPlan::Renumber => {
                let mut contents = Contents::from_snapshot(snapshot, self.dim, self.params);
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
