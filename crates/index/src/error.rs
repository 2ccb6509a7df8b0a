use std::path::PathBuf;

/// Errors of collection storage. None of them leaves a collection inconsistent: a failed write
/// is either fully in the write-ahead log or not at all.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0} is not a sift collection; create it with `sift index`")]
    NotACollection(PathBuf),

    #[error("{path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("collection {0} was interrupted while being written and needs recovery; open it for writing (e.g. `sift index`) to repair it")]
    NeedsRecovery(PathBuf),

    #[error("collection {path} is in use by another sift process")]
    Locked { path: PathBuf },

    #[error("this collection was built with embedding model {expected}; refusing to mix in vectors from {found}")]
    ModelMismatch { expected: String, found: String },

    #[error("{0}")]
    InvalidInput(String),

    /// The keyword index failed (the local backend's tantivy index).
    #[error("BM25 index: {0}")]
    Bm25(String),

    /// A write failed after its batch was durable, leaving this open handle's in-memory state
    /// behind the log. Every later call fails with this until the collection is reopened, which
    /// replays the log and repairs the derived parts.
    #[error("collection {path} is unusable after a failed write ({reason}); reopen it (restart the server, or run the command again) to recover")]
    Unusable { path: String, reason: String },

    /// A collection address this build cannot serve (e.g. a database URL without that backend).
    #[error("{0}")]
    Unsupported(String),

    /// The database holding the collection cannot be reached now (refused or lost connection,
    /// a server shutting down or failing over). Nothing of the failed request was applied
    /// unless it was a write whose commit had reached the server: then all of it was. Retry
    /// when the server is back.
    #[error("{0}")]
    Unavailable(String),

    /// The database refused a statement for a reason other than the input (permissions, a
    /// missing extension, an internal error of the server).
    #[error("PostgreSQL: {0}")]
    Database(String),

    /// A fault of sift itself or its environment (serialization, a poisoned lock), not of the
    /// input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IndexError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IndexError {
        let path = path.into();
        move |source| IndexError::Io { path, source }
    }
}

pub type Result<T> = std::result::Result<T, IndexError>;
