/// Errors of the retrieval pipeline: a model failed, the storage failed, or the request was bad.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] sift_models::ModelError),
    #[error(transparent)]
    Index(#[from] sift_index::IndexError),
    #[error("{0}")]
    InvalidInput(String),
    /// The deadline passed before a batch's commit point: that batch (and every later one) was
    /// not written; `committed` earlier batches were.
    #[error("the deadline passed before the commit; {committed} earlier batch(es) were committed, nothing after them was written")]
    DeadlineExceeded { committed: usize },
    /// A fault of sift itself (a broken invariant between stages), not of the input.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, PipelineError>;
