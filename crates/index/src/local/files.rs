//! File-system primitives of the local backend: the collection lock and atomic replacement.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use memmap2::{Mmap, MmapOptions};

use crate::error::{IndexError, Result};

/// Writers hold `dir/LOCK` exclusively, readers share it; the lock lives as long as the file.
///
/// A reader on a read-only file system (a read-only mount, a snapshot, a container layer)
/// cannot create or open the file for writing: it takes the shared lock through a read-only
/// handle, and when there is no `LOCK` at all (no writer ever opened the collection there) it
/// reads without one — `None`. Writers always need the lock.
pub fn lock(dir: &Path, exclusive: bool) -> Result<Option<File>> {
    let path = dir.join("LOCK");
    let opened = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if !exclusive && read_only_fs(&e) => match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IndexError::Io { path, source: e }),
        },
        Err(e) => return Err(IndexError::Io { path, source: e }),
    };
    let locked = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(IndexError::Locked {
            path: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(IndexError::Io { path, source: e }),
    }
}

/// The first `len` bytes of `file`, mapped read-only, for reading in place (advised random
/// access: searches read scattered rows and graph nodes, and read-ahead would only fill memory).
///
/// Sound because sift never changes the bytes of a file it maps: graphs are replaced by rename
/// (a map keeps the old file), and a vector file only grows, its rows rewritten only with the
/// bytes they already hold ([`super::vector_file`]). The checksums verified before mapping guard
/// against damage at rest; another program writing into a collection's files is outside what
/// any collection format can defend against.
#[allow(unsafe_code)]
pub fn map_read_only(file: &File, len: u64) -> std::io::Result<Mmap> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: see above; the map owns its reference to the file's pages.
    let map = unsafe { MmapOptions::new().len(len).map(file)? };
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Random);
    Ok(map)
}

fn read_only_fs(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
    )
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file. A failed
/// write removes its temporary file (on a full disk it holds the space the next write needs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// [`write_atomic`] of the concatenation of `parts` (a header and a large body need not be
/// copied into one buffer first).
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> Result<()> {
    write_atomic_with(path, |w| {
        for part in parts {
            w.write_all(part)?;
        }
        Ok(())
    })
}

/// [`write_atomic`] of what `write` writes to the (buffered) file, which it may seek in.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp).and_then(|f| {
        let mut w = BufWriter::with_capacity(1 << 20, f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(IndexError::Io {
            path: tmp,
            source: e,
        });
    }
    std::fs::rename(&tmp, path).map_err(IndexError::io(path))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
