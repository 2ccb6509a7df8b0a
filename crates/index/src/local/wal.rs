//! The write-ahead log: the collection's source of truth between snapshots.
//!
//! A record is `[len: u32][crc32: u32][bincode payload]`, appended and fsynced before the write
//! is acknowledged. On open, a torn or corrupt tail (a crash mid-append) is cut off: the batch
//! it held was never reported committed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::document::Operation;
use crate::error::{IndexError, Result};

const MAGIC: &[u8; 8] = b"SIFTWAL1";

/// A batch of operations: the commit unit. It is applied entirely or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Strictly increasing batch number.
    pub seq: u64,
    pub operations: Vec<Operation>,
}

pub struct Wal {
    file: File,
    path: PathBuf,
}

impl Wal {
    /// Opens (creating if needed) the log and returns every intact record in it.
    pub fn open(path: &Path) -> Result<(Wal, Vec<Record>)> {
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
            file.write_all(MAGIC).map_err(IndexError::io(path))?;
            file.sync_all().map_err(IndexError::io(path))?;
            return Ok((
                Wal {
                    file,
                    path: path.to_owned(),
                },
                Vec::new(),
            ));
        }
        let (records, pos) = parse(path, &bytes)?;
        if pos < bytes.len() {
            tracing::warn!(
                "{}: discarding {} bytes of an uncommitted batch (interrupted write)",
                path.display(),
                bytes.len() - pos
            );
            file.set_len(pos as u64).map_err(IndexError::io(path))?;
            file.sync_all().map_err(IndexError::io(path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(IndexError::io(path))?;
        Ok((
            Wal {
                file,
                path: path.to_owned(),
            },
            records,
        ))
    }

    /// Reads the intact records without opening for writing (readers). A torn tail is ignored,
    /// not cut: only the writer may change the file.
    pub fn read(path: &Path) -> Result<(Option<Wal>, Vec<Record>)> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
            Err(e) => {
                return Err(IndexError::Io {
                    path: path.to_owned(),
                    source: e,
                })
            }
        };
        let (records, _) = parse(path, &bytes)?;
        Ok((None, records))
    }

    /// Appends `record` and returns once it is on disk.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let payload =
            bincode::serialize(record).map_err(|e| IndexError::InvalidInput(e.to_string()))?;
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        self.file
            .write_all(&frame)
            .map_err(IndexError::io(&self.path))?;
        self.file.sync_data().map_err(IndexError::io(&self.path))
    }

    /// Empties the log after a snapshot made its records redundant.
    pub fn reset(&mut self) -> Result<()> {
        let io = || IndexError::io(&self.path);
        self.file.set_len(0).map_err(io())?;
        self.file.seek(SeekFrom::Start(0)).map_err(io())?;
        self.file.write_all(MAGIC).map_err(io())?;
        self.file.sync_all().map_err(io())
    }
}

/// Intact records of a log and the byte offset where they end.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Record>, usize)> {
    if bytes.is_empty() {
        return Ok((Vec::new(), 0));
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(IndexError::Corrupt {
            path: path.to_owned(),
            reason: "not a sift write-ahead log".into(),
        });
    }
    let mut records = Vec::new();
    let mut pos = MAGIC.len();
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
        let end = pos + 8 + len;
        if end > bytes.len() || crc32fast::hash(&bytes[pos + 8..end]) != crc {
            break;
        }
        match bincode::deserialize::<Record>(&bytes[pos + 8..end]) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        pos = end;
    }
    Ok((records, pos))
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

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (mut wal, existing) = Wal::open(&path).unwrap();
            assert!(existing.is_empty());
            wal.append(&record(1)).unwrap();
            wal.append(&record(2)).unwrap();
        }
        // Simulate a crash in the middle of appending record 3.
        let full = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![record(1), record(2)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        wal.append(&record(3)).unwrap();
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn a_flipped_bit_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&record(1)).unwrap();
        wal.append(&record(2)).unwrap();
        drop(wal);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![record(1)]);
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        std::fs::write(&path, b"hello world, not a log").unwrap();
        assert!(matches!(Wal::open(&path), Err(IndexError::Corrupt { .. })));
    }
}
