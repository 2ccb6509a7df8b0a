use std::path::PathBuf;

/// Every way loading or running a model can fail. Callers (CLI, server) map these to messages and
/// status codes; nothing in this crate panics on user input.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model directory {0} does not exist (run scripts/setup.sh, or pass the path of a Hugging Face model directory)")]
    DirectoryNotFound(PathBuf),

    #[error("{dir}: no {what} found (looked for {looked_for})")]
    MissingFile {
        dir: PathBuf,
        what: &'static str,
        looked_for: String,
    },

    #[error("{path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },

    #[error("unsupported model architecture {found:?} in {path}; sift supports the encoders BERT (BertModel, BertForSequenceClassification), XLM-RoBERTa/RoBERTa (XLMRobertaModel, XLMRobertaForSequenceClassification) and MPNet (MPNetModel, MPNetForSequenceClassification), and as LLM rerankers the decoders Llama/Mistral, Qwen2, Qwen3, Gemma, Gemma2 and Gemma3 (*ForCausalLM)")]
    UnsupportedArchitecture { found: String, path: PathBuf },

    #[error("cannot load weights from {path}: {reason}")]
    Weights { path: PathBuf, reason: String },

    #[error("{path}: model has no sequence-classification head (architectures: {architectures}); a cross-encoder needs a *ForSequenceClassification checkpoint such as cross-encoder/ms-marco-MiniLM-L-6-v2 or BAAI/bge-reranker-base")]
    NotACrossEncoder {
        path: PathBuf,
        architectures: String,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("{0}")]
    InvalidInput(String),

    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),

    /// A fault of sift itself (a poisoned session, a broken invariant), not of the input or the
    /// model files. Servers report it as 500, never as a client error.
    #[error("internal error: {0}")]
    Internal(String),

    /// ONNX Runtime could not be loaded, or rejected or failed a graph.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;
