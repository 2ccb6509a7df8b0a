//! File-system primitives of the local backend: the collection lock and atomic replacement.

use std::fs::File;
use std::path::Path;

use crate::error::{IndexError, Result};

/// Writers hold `dir/LOCK` exclusively, readers share it; the lock lives as long as the file.
pub fn lock(dir: &Path, exclusive: bool) -> Result<File> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(IndexError::io(&path))?;
    let locked = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(IndexError::Locked {
            path: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(IndexError::Io { path, source: e }),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file. A failed
/// write removes its temporary file (on a full disk it holds the space the next write needs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
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
