//! Picking the [`Reranker`] implementation for a model directory.

use std::path::Path;
use std::sync::Arc;

use super::{Reranker, RerankerOptions};
use crate::config::Head;
use crate::cross_encoder::CrossEncoder;
use crate::error::{ModelError, Result};
use crate::llm_reranker::LlmReranker;
use crate::model_dir::ModelDir;

/// Loads the rerank model in `dir`, choosing the implementation from its `config.json`:
/// `*ForSequenceClassification` checkpoints are cross-encoders, decoder LLMs (`*ForCausalLM`)
/// are LLM rerankers, and so is a `.gguf` file.
pub fn load_reranker(dir: impl AsRef<Path>, options: RerankerOptions) -> Result<Arc<dyn Reranker>> {
    // A single file is a GGUF model (llama.cpp's format); only decoders come that way.
    if dir.as_ref().is_file() {
        return Ok(Arc::new(LlmReranker::from_gguf(dir.as_ref(), options)?));
    }
    let dir = ModelDir::open(dir)?;
    match dir.config.head {
        Head::SequenceClassification => Ok(Arc::new(CrossEncoder::from_dir(dir, options)?)),
        Head::CausalLm => Ok(Arc::new(LlmReranker::from_dir(dir, options)?)),
        Head::Encoder => Err(ModelError::NotACrossEncoder {
            path: dir.path.clone(),
            architectures: dir.config.architecture_name.clone(),
        }),
    }
}
