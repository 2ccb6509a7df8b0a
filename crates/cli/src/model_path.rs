//! Turning a `--model` argument into a directory.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The folder scripts/setup.sh fills: `$SIFT_MODELS_DIR`, else `./models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SIFT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// A path that exists is used as is (a model directory, or a `.gguf` file); otherwise the name
/// is looked up in [`models_dir`] and its `gguf/` folder.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let is_model = |p: &std::path::Path| p.is_dir() || (p.is_file() && is_gguf(p));
    let direct = PathBuf::from(model);
    if is_model(&direct) {
        return Ok(direct);
    }
    for named in [
        models_dir().join(model),
        models_dir().join("gguf").join(model),
    ] {
        if is_model(&named) {
            return Ok(named);
        }
    }
    bail!(
        "model {model:?} not found: it is neither a directory nor a model in {} (run `sift models` to list installed ones, or scripts/setup.sh to fetch the defaults)",
        models_dir().display()
    )
}

/// A llama.cpp model file.
pub fn is_gguf(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The embedding model a collection was built with, as a model argument: its name when that
/// resolves ([`resolve`]), else the directory the collection recorded when it was made (a
/// fine-tuned model kept outside the models directory). Opening the collection still checks
/// the model's fingerprint, so a different model at either place is refused, not used.
pub fn collection_embedder(info: &sift_index::EmbeddingModelInfo) -> String {
    if resolve(&info.name).is_err() {
        if let Some(path) = info
            .path
            .as_deref()
            .filter(|p| std::path::Path::new(p).is_dir())
        {
            return path.to_owned();
        }
    }
    info.name.clone()
}

/// Loads the embedding model named `model` on `engine`.
pub fn load_embedder(
    model: &str,
    engine: sift_models::EngineOptions,
) -> Result<std::sync::Arc<sift_models::Embedder>> {
    use anyhow::Context;
    let dir = resolve(model)?;
    let options = sift_models::EmbedderOptions {
        engine,
        ..Default::default()
    };
    Ok(std::sync::Arc::new(
        sift_models::Embedder::load(&dir, options)
            .with_context(|| format!("loading {}", dir.display()))?,
    ))
}

/// Loads the rerank model named `model`; the implementation comes from its config.json.
pub fn load_reranker(
    model: &str,
    options: sift_models::RerankerOptions,
) -> Result<std::sync::Arc<dyn sift_models::Reranker>> {
    use anyhow::Context;
    let dir = resolve(model)?;
    sift_models::load_reranker(&dir, options).with_context(|| format!("loading {}", dir.display()))
}
