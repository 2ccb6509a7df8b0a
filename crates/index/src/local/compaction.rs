//! The local backend's compaction, in the three steps of [`CollectionBackend::begin_compaction`]:
//!
//! 1. **begin** (shared access): copy every document and vector as of batch S, note where record
//!    S ends in the log, mark the handle as compacting.
//! 2. **run** (no access; seconds to minutes — the HNSW build is ~7.5 s per 10k chunks on
//!    2 cores): write `snapshot.bin` at S, build the graph over its slots, write `ann.bin`.
//!    Commits go on meanwhile and append records S+1… to the log.
//! 3. **finish** (exclusive, milliseconds): restart the log from S keeping the records appended
//!    since (copied byte for byte from the offset noted in 1), replay them onto the compacted
//!    contents, swap those in.
//!
//! Every crash point leaves a state that opens to every acknowledged batch: after 2, the
//! snapshot at S sits beside a log whose records up to S are skipped on open; the log restart
//! in 3 is one atomic rename.
//!
//! [`CollectionBackend::begin_compaction`]: crate::CollectionBackend::begin_compaction

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::snapshot::{write_graph, write_snapshot, Snapshot};
use super::state::Contents;
use super::vectors::AnnParams;
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

pub(super) struct LocalCompaction {
    pub dir: PathBuf,
    /// The batch the snapshot reflects.
    pub seq: u64,
    /// Where record `seq` ends in the log: later records are kept by finish.
    pub log_offset: u64,
    pub params: AnnParams,
    /// Taken by run.
    pub snapshot: Option<Snapshot>,
    /// Set by run: the snapshot's contents, slots numbered as the next open numbers them,
    /// with the graph built.
    pub contents: Option<Contents>,
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
        write_snapshot(&snapshot_path, &snapshot)?;
        self.step("snapshot-written");
        self.snapshot_bytes = std::fs::metadata(&snapshot_path).map_or(0, |m| m.len());
        let mut contents = Contents::from_snapshot(snapshot, self.params);
        contents.vectors.rebuild_graph();
        write_graph(
            &self.dir.join("ann.bin"),
            self.seq,
            contents.vectors.graph(),
        )?;
        self.step("graph-written");
        self.contents = Some(contents);
        Ok(())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}
