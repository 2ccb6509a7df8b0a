//! Turning a `--model` argument into a directory.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The folder scripts/setup.sh fills: `$SIFT_MODELS_DIR`, else `./models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SIFT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// A path that exists is used as is; otherwise the name is looked up in [`models_dir`].
pub fn resolve(model: &str) -> Result<PathBuf> {
    let direct = PathBuf::from(model);
    if direct.is_dir() {
        return Ok(direct);
    }
    let named = models_dir().join(model);
    if named.is_dir() {
        return Ok(named);
    }
    bail!(
        "model {model:?} not found: it is neither a directory nor a model in {} (run `sift models` to list installed ones, or scripts/setup.sh to fetch the defaults)",
        models_dir().display()
    )
}
