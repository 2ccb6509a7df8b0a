/// Training failures. Everything a user can get wrong (data, paths, base model) is reported
/// before the first training step.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] sift_models::ModelError),
    #[error(transparent)]
    Pipeline(#[from] sift_pipeline::PipelineError),
    #[error(transparent)]
    Dataset(#[from] sift_eval::DatasetError),
    #[error("tensor computation: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
