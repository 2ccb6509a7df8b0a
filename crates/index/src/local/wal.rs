//! The write-ahead log: the collection's source of truth between snapshots.
//!
//! ```text
//! header   "SIFTWAL2" [base seq: u64 LE] [crc32 of base seq: u32 LE]
//! record   [len: u32 LE] [crc32 of payload: u32 LE] [bincode payload: Record]   (repeated)
//! ```
//!
//! `base seq` is the batch the snapshot beside the log reflects when the log was started: its
//! first record is batch `base + 1`, so a missing or older snapshot is detected instead of
//! silently dropping batches. (`SIFTWAL1` logs, without a base, are still read.)
//!
//! A record is appended and fsynced before its batch is acknowledged. What a damaged log means
//! depends on where the damage is:
//! - **A torn tail** — the last record fails to verify and nothing after it does — is what a
//!   crash in the middle of an append leaves. That batch was never acknowledged: the writer cuts
//!   it off on open; readers ignore it and change nothing.
//! - **A damaged record followed by records that verify** is not a crash: it is corruption, and
//!   cutting there would drop acknowledged batches. Opening is refused, in every mode, with the
//!   byte offset, and the file is left as it is.
//!
//! An append that fails (a full disk, an I/O error) is rolled back: the file is cut back to the
//! end of the last good record before the error is returned, so later appends never land after
//! torn bytes. If even the rollback fails, the log refuses every later append until reopened.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::write_atomic;
use crate::document::Operation;
use crate::error::{IndexError, Result};

const MAGIC_V1: &[u8; 8] = b"SIFTWAL1";
const MAGIC: &[u8; 8] = b"SIFTWAL2";
/// Magic, base seq, its checksum.
const HEADER_BYTES: usize = 8 + 8 + 4;
/// Length and checksum before each payload.
const FRAME_BYTES: usize = 8;

/// A batch of operations: the commit unit. It is applied entirely or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Strictly increasing batch number; consecutive within a log.
    pub seq: u64,
    pub operations: Vec<Operation>,
}

/// What a log holds.
#[derive(Debug, Default)]
pub struct LogContents {
    /// The batch the log continues from (`None` for a `SIFTWAL1` log).
    pub base_seq: Option<u64>,
    pub records: Vec<Record>,
    /// Bytes of an unacknowledged torn tail after the last record (0 when clean).
    pub torn_bytes: usize,
}

pub struct Wal {
    file: File,
    path: PathBuf,
    /// Length of the verified content: header and whole records.
    len: u64,
    /// An append failed and could not be rolled back: bytes of unknown state follow `len`.
    torn: Option<String>,
}

impl Wal {
    /// Opens the log for appending, creating it (continuing from `base_seq`) when it does not
    /// exist or is empty, and returns what it holds. A torn tail is cut off.
    pub fn open(path: &Path, base_seq: u64) -> Result<(Wal, LogContents)> {
        let io = IndexError::io(path);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(IndexError::io(path))?;
        if bytes.is_empty() {
            let header = header(base_seq);
            file.write_all(&header).map_err(IndexError::io(path))?;
            file.sync_all().map_err(IndexError::io(path))?;
            let wal = Wal {
                file,
                path: path.to_owned(),
                len: header.len() as u64,
                torn: None,
            };
            let contents = LogContents {
                base_seq: Some(base_seq),
                records: Vec::new(),
                torn_bytes: 0,
            };
            return Ok((wal, contents));
        }
        let (contents, end) = parse(path, &bytes)?;
        if contents.torn_bytes > 0 {
            tracing::warn!(
                "{}: cutting {} bytes of a batch that was never acknowledged (an interrupted write)",
                path.display(),
                contents.torn_bytes
            );
            file.set_len(end as u64).map_err(IndexError::io(path))?;
            file.sync_all().map_err(IndexError::io(path))?;
        }
        let wal = Wal {
            file,
            path: path.to_owned(),
            len: end as u64,
            torn: None,
        };
        Ok((wal, contents))
    }

    /// Reads the log without changing it (readers). `None` when there is no log file.
    pub fn read(path: &Path) -> Result<Option<LogContents>> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.is_empty() => Ok(Some(LogContents::default())),
            Ok(bytes) => Ok(Some(parse(path, &bytes)?.0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IndexError::Io {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    /// Appends `record` and returns once it is on disk. On failure nothing of it remains in the
    /// log (or, if that cannot be ensured, the log refuses further appends).
    pub fn append(&mut self, record: &Record) -> Result<()> {
        if let Some(reason) = &self.torn {
            return Err(IndexError::Unusable {
                path: self.path.display().to_string(),
                reason: reason.clone(),
            });
        }
        let payload = bincode::serialize(record)
            .map_err(|e| IndexError::Internal(format!("serializing a batch: {e}")))?;
        let len = u32::try_from(payload.len()).map_err(|_| {
            IndexError::InvalidInput(format!(
                "a batch of {} bytes is too large for one log record (4 GiB); send smaller batches",
                payload.len()
            ))
        })?;
        let mut frame = Vec::with_capacity(payload.len() + FRAME_BYTES);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let written = self
            .file
            .write_all(&frame)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // The frame may be partly on disk (or in the page cache, unsynced): cut it off so
            // that no later record follows torn bytes.
            let rolled_back = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all());
            if let Err(rollback) = rolled_back {
                self.torn = Some(format!(
                    "an append failed ({e}) and its partial record could not be removed ({rollback})"
                ));
            }
            return Err(IndexError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Bytes of the log on disk (header and records).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The partial record a failed append may have left, when it could not be removed.
    pub fn torn(&self) -> Option<&str> {
        self.torn.as_deref()
    }

    /// Replaces the log with one continuing from `base_seq` that keeps the records from byte
    /// `keep_from` on (a compaction snapshotted batch `base_seq`, whose record ends there, while
    /// later batches were committed); returns those records. Atomic: a crash leaves the old log
    /// or the new one. The kept bytes (only they are read) are copied as they are, after
    /// checking that they are whole records continuing from `base_seq`.
    pub fn restart_from(&mut self, base_seq: u64, keep_from: u64) -> Result<Vec<Record>> {
        if let Some(reason) = &self.torn {
            return Err(IndexError::Unusable {
                path: self.path.display().to_string(),
                reason: reason.clone(),
            });
        }
        if keep_from < HEADER_BYTES as u64 || keep_from > self.len {
            return Err(IndexError::Internal(format!(
                "{}: compaction kept the log from byte {keep_from}, but it holds {} bytes",
                self.path.display(),
                self.len
            )));
        }
        let mut tail = vec![0u8; (self.len - keep_from) as usize];
        let read = File::open(&self.path).and_then(|mut f| {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(keep_from))?;
            f.read_exact(&mut tail)
        });
        read.map_err(IndexError::io(&self.path))?;
        let tail = tail.as_slice();
        let mut records = Vec::new();
        let mut pos = 0;
        while pos < tail.len() {
            let expected = base_seq + records.len() as u64 + 1;
            match record_at(tail, pos) {
                Some((record, end)) if record.seq == expected => {
                    records.push(record);
                    pos = end;
                }
                _ => {
                    return Err(IndexError::Internal(format!(
                        "{}: byte {} is not batch {expected}, which compaction expected there",
                        self.path.display(),
                        keep_from as usize + pos
                    )))
                }
            }
        }
        let mut restarted = header(base_seq);
        restarted.extend_from_slice(tail);
        write_atomic(&self.path, &restarted)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(IndexError::io(&self.path))?;
        self.len = restarted.len() as u64;
        Ok(records)
    }
}

fn header(base_seq: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_BYTES);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&base_seq.to_le_bytes());
    h.extend_from_slice(&crc32fast::hash(&base_seq.to_le_bytes()).to_le_bytes());
    h
}

fn u32_at(bytes: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(pos..pos + 4)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], pos: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(pos..pos + 8)?.try_into().ok()?,
    ))
}

/// The record framed at `pos`, if it verifies, and where it ends.
fn record_at(bytes: &[u8], pos: usize) -> Option<(Record, usize)> {
    let len = u32_at(bytes, pos)? as usize;
    let crc = u32_at(bytes, pos + 4)?;
    let start = pos + FRAME_BYTES;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = bincode::deserialize::<Record>(payload).ok()?;
    Some((record, start + len))
}

/// Largest jump in batch numbers a later record may show and still count as evidence that the
/// damage is not a torn tail. Batches are consecutive, so any real later record is within
/// `number of records lost + 1`; the bound only keeps random bytes from passing as one.
const MAX_SEQ_GAP: u64 = 1 << 32;

/// Whether a record that verifies and continues the numbering starts anywhere after `from`:
/// the proof that damage at `from` is corruption rather than a torn tail. Cheap per offset (the
/// batch number is checked before any checksum is computed).
fn later_record(bytes: &[u8], from: usize, last_seq: u64) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME_BYTES + 8)).find(|&pos| {
        // bincode writes `Record::seq` first, as a little-endian u64.
        let seq = u64_at(bytes, pos + FRAME_BYTES).unwrap_or(0);
        seq > last_seq
            && seq - last_seq <= MAX_SEQ_GAP
            && record_at(bytes, pos).is_some_and(|(r, _)| r.seq == seq)
    })
}

/// What a non-empty log holds and where its verified content ends.
fn parse(path: &Path, bytes: &[u8]) -> Result<(LogContents, usize)> {
    let corrupt = |reason: String| IndexError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let (base_seq, mut pos) = if bytes.starts_with(MAGIC) {
        let base = u64_at(bytes, 8)
            .zip(u32_at(bytes, 16))
            .filter(|(base, crc)| crc32fast::hash(&base.to_le_bytes()) == *crc)
            .map(|(base, _)| base)
            .ok_or_else(|| corrupt("the log's header is damaged".into()))?;
        (Some(base), HEADER_BYTES)
    } else if bytes.starts_with(MAGIC_V1) {
        (None, MAGIC_V1.len())
    } else {
        return Err(corrupt("not a sift write-ahead log".into()));
    };
    let mut records: Vec<Record> = Vec::new();
    while pos < bytes.len() {
        let last_seq = records.last().map_or(base_seq.unwrap_or(0), |r| r.seq);
        match record_at(bytes, pos) {
            Some((record, end)) => {
                if let Some(prev) = records.last() {
                    if record.seq != prev.seq + 1 {
                        return Err(corrupt(format!(
                            "batch {} follows batch {} at byte {pos}: batches are missing",
                            record.seq, prev.seq
                        )));
                    }
                }
                records.push(record);
                pos = end;
            }
            None => {
                if let Some(at) = later_record(bytes, pos + 1, last_seq) {
                    return Err(corrupt(format!(
                        "the record at byte {pos} (after batch {last_seq}) is damaged, but a later \
                         record at byte {at} is intact, so this is not an interrupted write; \
                         nothing was changed. Restore wal.log from a backup, or move the \
                         collection aside and index it again"
                    )));
                }
                break;
            }
        }
    }
    let contents = LogContents {
        base_seq,
        records,
        torn_bytes: bytes.len() - pos,
    };
    Ok((contents, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq,
            operations: vec![Operation::Delete(format!("doc-{seq}"))],
        }
    }

    fn seqs(c: &LogContents) -> Vec<u64> {
        c.records.iter().map(|r| r.seq).collect()
    }

    /// A log holding records `1..=n`, and the byte offset where each record starts.
    fn log_with(path: &Path, n: u64) -> Vec<usize> {
        let (mut wal, _) = Wal::open(path, 0).unwrap();
        let mut starts = Vec::new();
        for seq in 1..=n {
            starts.push(wal.len as usize);
            wal.append(&record(seq)).unwrap();
        }
        starts
    }

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        log_with(&path, 2);
        // A crash in the middle of appending record 3.
        let full = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        // Readers see the two records and change nothing.
        let read = Wal::read(&path).unwrap().unwrap();
        assert_eq!(seqs(&read), [1, 2]);
        assert_eq!(read.torn_bytes, 7);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full + 7);
        // The writer cuts the tail and appends after the last good record.
        let (mut wal, contents) = Wal::open(&path, 0).unwrap();
        assert_eq!(seqs(&contents), [1, 2]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        wal.append(&record(3)).unwrap();
        let (_, contents) = Wal::open(&path, 0).unwrap();
        assert_eq!(seqs(&contents), [1, 2, 3]);
    }

    #[test]
    fn a_damaged_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        log_with(&path, 2);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (_, contents) = Wal::open(&path, 0).unwrap();
        assert_eq!(seqs(&contents), [1]);
    }

    /// Every single-byte flip inside any record but the last is refused, by readers and the
    /// writer alike, and the file is left exactly as it was.
    #[test]
    fn damage_before_intact_records_is_corruption_not_a_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let starts = log_with(&path, 3);
        let clean = std::fs::read(&path).unwrap();
        for at in HEADER_BYTES..starts[2] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x5a;
            std::fs::write(&path, &bytes).unwrap();
            for result in [
                Wal::read(&path).map(|_| ()),
                Wal::open(&path, 0).map(|_| ()),
            ] {
                let err = result.expect_err(&format!("flip at byte {at} was accepted"));
                assert!(
                    matches!(&err, IndexError::Corrupt { reason, .. } if reason.contains("intact")),
                    "byte {at}: {err}"
                );
            }
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "byte {at}: file changed"
            );
        }
    }

    #[test]
    fn a_damaged_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        log_with(&path, 1);
        for at in 0..HEADER_BYTES {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[at] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
            assert!(
                matches!(Wal::read(&path), Err(IndexError::Corrupt { .. })),
                "byte {at}"
            );
            bytes[at] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
        }
    }

    #[test]
    fn a_restarted_log_keeps_the_records_after_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let starts = log_with(&path, 5);
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        // A compaction snapshotted batch 3, whose record ends where record 4 starts.
        let kept = wal.restart_from(3, starts[3] as u64).unwrap();
        assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 5]);
        wal.append(&record(6)).unwrap();
        let c = Wal::read(&path).unwrap().unwrap();
        assert_eq!(c.base_seq, Some(3));
        assert_eq!(seqs(&c), vec![4, 5, 6]);
        // An offset that is not a record boundary is refused and changes nothing.
        let before = std::fs::read(&path).unwrap();
        assert!(wal.restart_from(3, 5).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_reset_log_remembers_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let (mut wal, _) = Wal::open(&path, 0).unwrap();
        wal.append(&record(1)).unwrap();
        let end = wal.len();
        assert!(wal.restart_from(1, end).unwrap().is_empty());
        wal.append(&record(2)).unwrap();
        drop(wal);
        let contents = Wal::read(&path).unwrap().unwrap();
        assert_eq!(contents.base_seq, Some(1));
        assert_eq!(seqs(&contents), [2]);
    }

    #[test]
    fn version_1_logs_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut bytes = MAGIC_V1.to_vec();
        for seq in 1..=2 {
            let payload = bincode::serialize(&record(seq)).unwrap();
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut wal, contents) = Wal::open(&path, 0).unwrap();
        assert_eq!((contents.base_seq, seqs(&contents)), (None, vec![1, 2]));
        wal.append(&record(3)).unwrap();
        assert_eq!(seqs(&Wal::read(&path).unwrap().unwrap()), [1, 2, 3]);
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        std::fs::write(&path, b"hello world, not a log").unwrap();
        assert!(matches!(
            Wal::open(&path, 0),
            Err(IndexError::Corrupt { .. })
        ));
    }
}
