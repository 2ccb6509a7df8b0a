//! `vectors-E.f32`: the unit f32 vectors of slot epoch E, one row per slot, memory-mapped.
//!
//! ```text
//! [magic "SIFTVEC1"] [slot epoch: u64 LE] [dimensions: u64 LE] [zeros up to byte 64]
//! [row of slot 0: dim × f32 LE] [row of slot 1] …
//! ```
//!
//! Why a file of its own, mapped: at a million 384-dimensional chunks the vectors are 1.5 GB,
//! two thirds of a snapshot that used to hold them inline and was read whole on every open
//! (9 s, and 1.5 GB of resident memory) although a search rescores only a few hundred of them.
//! Mapped, a search faults in the pages of the candidates it rescores and nothing else, and the
//! kernel may drop them again under memory pressure (they are clean file pages).
//!
//! Slots are never reused within an epoch and a slot's vector never changes, so the file only
//! grows: a compaction writes the rows of the slots added since the previous one after the rows
//! it knows are there. Writing is idempotent — a row is always written with the same bytes (a
//! deleted slot keeps its vector, as it stays in the graph as a tombstone, until a renumbering)
//! — and the file is never cut short, so a compaction that repeats rows an unfinished one wrote,
//! or overwrites what a crashed one left past the last recorded row, changes no byte any
//! snapshot or map (another reader's, or the writer's own) relies on. The snapshot records how
//! many rows are valid and a CRC32 of each written range ([`RowRange`]); open verifies them all
//! with a streaming read (nothing kept in memory) and that every value is finite, because this
//! file and the snapshot are the only copy of the batches before it. A renumbering compaction
//! writes a file for a slot epoch never used before; the previous one is removed once the
//! snapshot naming the new epoch is in place.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::files::map_read_only;
use crate::error::{IndexError, Result};

#[cfg(target_endian = "big")]
compile_error!("vector files are little-endian f32 and are mapped as they are");

const MAGIC: &[u8; 8] = b"SIFTVEC1";
/// Bytes before row 0; a multiple of 4 keeps every row f32-aligned in a page-aligned map.
const HEADER_BYTES: usize = 64;

/// Rows `start..end` of a vector file were written together and checksum to `crc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRange {
    pub start: u32,
    pub end: u32,
    pub crc: u32,
}

pub fn path(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("vectors-{epoch}.f32"))
}

fn row_bytes(dim: usize) -> u64 {
    dim as u64 * 4
}

/// Where row `row` starts: also the length of a file holding `row` rows.
fn row_offset(row: u32, dim: usize) -> u64 {
    HEADER_BYTES as u64 + u64::from(row) * row_bytes(dim)
}

fn header(epoch: u64, dim: usize) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    h[16..24].copy_from_slice(&(dim as u64).to_le_bytes());
    h
}

/// Why the header of `file` does not belong to epoch `epoch` with `dim` dimensions, if it does
/// not.
fn header_problem(file: &mut File, epoch: u64, dim: usize) -> std::io::Result<Option<String>> {
    let mut h = [0u8; HEADER_BYTES];
    file.seek(SeekFrom::Start(0))?;
    if let Err(e) = file.read_exact(&mut h) {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Ok(Some("truncated header".into())),
            _ => Err(e),
        };
    }
    let expected = header(epoch, dim);
    Ok((h[..24] != expected[..24])
        .then(|| format!("the header is not that of slot epoch {epoch} with {dim} dimensions")))
}

/// Writes `rows` (whole rows of `dim` values, in slot order) as rows `start…` of epoch
/// `epoch`'s file and makes them durable; rows before `start` must be there already (the file
/// is created when `start` is 0). Returns the range written.
pub fn write_rows(
    dir: &Path,
    epoch: u64,
    dim: usize,
    start: u32,
    rows: &[f32],
) -> Result<RowRange> {
    let path = path(dir, epoch);
    let io = |e| IndexError::io(&path)(e);
    let count = (rows.len() / dim.max(1)) as u32;
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let at = row_offset(start, dim);
    if start == 0 {
        file.write_all(&header(epoch, dim)).map_err(io)?;
    } else {
        let len = file.metadata().map_err(io)?.len();
        let problem = match header_problem(&mut file, epoch, dim).map_err(io)? {
            Some(p) => Some(p),
            None if len < at => Some(format!(
                "{len} bytes, the snapshot records {start} rows ({at} bytes)"
            )),
            None => None,
        };
        if let Some(reason) = problem {
            return Err(IndexError::Corrupt { path, reason });
        }
        file.seek(SeekFrom::Start(at)).map_err(io)?;
    }
    let bytes: &[u8] = bytemuck::cast_slice(rows);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
    w.write_all(bytes).map_err(io)?;
    w.flush().map_err(io)?;
    drop(w);
    file.sync_all().map_err(io)?;
    if start == 0 {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(RowRange {
        start,
        end: start + count,
        crc: crc32fast::hash(bytes),
    })
}

/// Removes the vector files of every epoch but `keep` (a renumbering compaction's predecessor,
/// or the file of a renumbering that crashed before its snapshot). Failures only cost disk.
pub fn remove_other_epochs(dir: &Path, keep: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let keep_name = path(dir, keep);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("vectors-") && name.ends_with(".f32") && entry.path() != keep_name {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!("{}: not removed: {e}", entry.path().display());
            }
        }
    }
}

/// The rows of an epoch's vector file that its ranges cover, mapped read-only.
pub struct VectorFile {
    /// The map, and the file for [`VectorFile::read_row`]; `None` without rows.
    mapped: Option<(Mmap, File)>,
    dim: usize,
    /// The checksummed ranges that make up the rows (contiguous from row 0), for the next
    /// snapshot to record.
    ranges: Vec<RowRange>,
}

impl VectorFile {
    /// No rows (a collection without a vector file yet).
    pub fn empty(dim: usize) -> VectorFile {
        VectorFile {
            mapped: None,
            dim,
            ranges: Vec::new(),
        }
    }

    /// `file`, whose rows `ranges` describe, mapped.
    fn mapped(file: File, dim: usize, ranges: Vec<RowRange>) -> std::io::Result<VectorFile> {
        let rows = ranges.last().map_or(0, |r| r.end);
        let map = map_read_only(&file, row_offset(rows, dim))?;
        Ok(VectorFile {
            mapped: Some((map, file)),
            dim,
            ranges,
        })
    }

    /// The rows `ranges` describe (contiguous from row 0) of epoch `epoch`'s file in `dir`,
    /// after checking their checksums and that every value is finite.
    pub fn open(dir: &Path, epoch: u64, dim: usize, ranges: Vec<RowRange>) -> Result<VectorFile> {
        let path = path(dir, epoch);
        let corrupt = |reason: String| IndexError::Corrupt {
            path: path.clone(),
            reason: format!(
                "{reason}; with snapshot.bin it is the only copy of the collection's older \
                 batches: restore both from a backup, or move the collection aside and index it \
                 again"
            ),
        };
        let mut rows = 0u32;
        for r in &ranges {
            if r.start != rows || r.end < r.start {
                return Err(corrupt(format!("row ranges are not contiguous at {r:?}")));
            }
            rows = r.end;
        }
        if rows == 0 {
            return Ok(VectorFile::empty(dim));
        }
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("missing".into()))
            }
            Err(e) => return Err(IndexError::Io { path, source: e }),
        };
        let io = |e| IndexError::io(&path)(e);
        if let Some(reason) = header_problem(&mut file, epoch, dim).map_err(io)? {
            return Err(corrupt(reason));
        }
        let needed = row_offset(rows, dim);
        let len = file.metadata().map_err(io)?.len();
        if len < needed {
            return Err(corrupt(format!(
                "{len} bytes, the snapshot records {rows} rows ({needed} bytes)"
            )));
        }
        // Verified through a small buffer, not the map, so that opening leaves no pages of
        // the file resident in this process.
        let started = std::time::Instant::now();
        let mut buf = vec![0f32; dim.max(1) * 4096];
        for r in &ranges {
            let mut hasher = crc32fast::Hasher::new();
            let mut left = (r.end - r.start) as usize * dim;
            while left > 0 {
                let n = left.min(buf.len());
                let chunk = &mut buf[..n];
                file.read_exact(bytemuck::cast_slice_mut(chunk))
                    .map_err(io)?;
                hasher.update(bytemuck::cast_slice(chunk));
                if chunk.iter().any(|x| !x.is_finite()) {
                    return Err(corrupt(format!(
                        "rows {}..{} hold NaN or infinite values",
                        r.start, r.end
                    )));
                }
                left -= n;
            }
            if hasher.finalize() != r.crc {
                return Err(corrupt(format!(
                    "rows {}..{}: checksum mismatch",
                    r.start, r.end
                )));
            }
        }
        tracing::debug!(
            "{}: {rows} rows verified in {:.2} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        VectorFile::mapped(file, dim, ranges).map_err(io)
    }

    /// The rows a compaction of this process has just written and synced (`ranges`), mapped
    /// without reading them again: the rows before were verified when the collection was
    /// opened, the new ones come from memory.
    pub fn map_written(
        dir: &Path,
        epoch: u64,
        dim: usize,
        ranges: Vec<RowRange>,
    ) -> Result<VectorFile> {
        let rows = ranges.last().map_or(0, |r| r.end);
        if rows == 0 {
            return Ok(VectorFile::empty(dim));
        }
        let path = path(dir, epoch);
        let io = |e| IndexError::io(&path)(e);
        let file = File::open(&path).map_err(io)?;
        if file.metadata().map_err(io)?.len() < row_offset(rows, dim) {
            return Err(IndexError::Internal(format!(
                "{}: shorter than the rows just written",
                path.display()
            )));
        }
        VectorFile::mapped(file, dim, ranges).map_err(io)
    }

    pub fn rows(&self) -> u32 {
        self.ranges.last().map_or(0, |r| r.end)
    }

    pub fn ranges(&self) -> &[RowRange] {
        &self.ranges
    }

    /// Bytes on disk that the rows take (header included).
    pub fn bytes(&self) -> u64 {
        match self.rows() {
            0 => 0,
            rows => row_offset(rows, self.dim),
        }
    }

    /// Copies row `row` into `out` (`dim` values) with one positioned read instead of through
    /// the map. Why: a rescore reads a few hundred scattered rows per query, and a fault on the
    /// map also maps the cached pages around the row (the kernel's fault-around, 64 KiB, which
    /// `MADV_RANDOM` does not turn off) — measured at 1M chunks, 200 hybrid searches through the
    /// map left the whole 1.5 GB file resident in the process. A read copies 1.5 KB instead.
    pub fn read_row(&self, row: u32, out: &mut [f32]) -> std::io::Result<()> {
        let (Some((_, file)), true) = (&self.mapped, row < self.rows() && out.len() == self.dim)
        else {
            return Err(std::io::Error::other(format!(
                "no row {row} of {} values",
                out.len()
            )));
        };
        let at = row_offset(row, self.dim);
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            file.read_exact_at(bytemuck::cast_slice_mut(out), at)
        }
        #[cfg(not(unix))]
        {
            let _ = (file, at);
            out.copy_from_slice(self.row(row).unwrap_or_default());
            Ok(())
        }
    }

    /// Row `row` (< [`VectorFile::rows`]), through the map: for reading many rows in order
    /// (exact scans, graph builds), where mapping pages around a row is what is wanted.
    pub fn row(&self, row: u32) -> Option<&[f32]> {
        let (map, _) = self.mapped.as_ref()?;
        if row >= self.rows() {
            return None;
        }
        let start = usize::try_from(row_offset(row, self.dim)).ok()?;
        bytemuck::try_cast_slice(map.get(start..start + self.dim * 4)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, dim: usize, offset: f32) -> Vec<f32> {
        (0..n * dim).map(|i| i as f32 + offset).collect()
    }

    #[test]
    fn appended_rows_are_mapped_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_rows(dir.path(), 3, 4, 0, &rows(5, 4, 0.0)).unwrap();
        assert_eq!((a.start, a.end), (0, 5));
        // A crashed compaction's leftovers past row 5 are overwritten, or ignored past the end.
        write_rows(dir.path(), 3, 4, 5, &rows(4, 4, 1000.0)).unwrap();
        let b = write_rows(dir.path(), 3, 4, 5, &rows(3, 4, 100.0)).unwrap();
        let file = VectorFile::open(dir.path(), 3, 4, vec![a, b]).unwrap();
        assert_eq!(file.rows(), 8);
        assert_eq!(file.row(1).unwrap(), &[4.0, 5.0, 6.0, 7.0]);
        assert_eq!(file.row(5).unwrap(), &[100.0, 101.0, 102.0, 103.0]);
        let mut out = [0f32; 4];
        file.read_row(5, &mut out).unwrap();
        assert_eq!(out, [100.0, 101.0, 102.0, 103.0]);
        assert!(file.read_row(8, &mut out).is_err());
        assert!(file.row(8).is_none());
        assert_eq!(file.bytes(), 64 + 8 * 16);
        // Rewriting rows with the same bytes (an unfinished compaction's, repeated) keeps
        // the map and the checksums valid.
        assert_eq!(
            write_rows(dir.path(), 3, 4, 0, &rows(5, 4, 0.0)).unwrap(),
            a
        );
        assert_eq!(file.row(1).unwrap(), &[4.0, 5.0, 6.0, 7.0]);
        drop(file);

        // Another epoch, another dimension, a flipped byte, a missing range: refused.
        assert!(VectorFile::open(dir.path(), 4, 4, vec![a]).is_err());
        assert!(VectorFile::open(dir.path(), 3, 2, vec![a]).is_err());
        assert!(VectorFile::open(dir.path(), 3, 4, vec![b]).is_err());
        let mut bytes = std::fs::read(path(dir.path(), 3)).unwrap();
        bytes[HEADER_BYTES + 17] ^= 1;
        std::fs::write(path(dir.path(), 3), &bytes).unwrap();
        assert!(matches!(
            VectorFile::open(dir.path(), 3, 4, vec![a, b]),
            Err(IndexError::Corrupt { .. })
        ));
    }

    #[test]
    fn other_epochs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        write_rows(dir.path(), 1, 2, 0, &rows(1, 2, 0.0)).unwrap();
        write_rows(dir.path(), 2, 2, 0, &rows(1, 2, 0.0)).unwrap();
        std::fs::write(dir.path().join("snapshot.bin"), b"x").unwrap();
        remove_other_epochs(dir.path(), 2);
        assert!(!path(dir.path(), 1).exists());
        assert!(path(dir.path(), 2).exists());
        assert!(dir.path().join("snapshot.bin").exists());
    }
}
