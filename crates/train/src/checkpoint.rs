//! Resumable state on disk: `out/checkpoint/` holds the model weights, the optimizer moments
//! and `state.json`; it is replaced by a directory swap so that some complete checkpoint exists
//! at every moment, whenever the process dies.

use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::evaluate::DevMetrics;
use crate::model::{write_atomic, TrainableCrossEncoder};
use crate::optim::AdamW;
use crate::recipe::Recipe;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EvalRecord {
    pub epoch: usize,
    pub step: usize,
    /// The reranker alone.
    pub metrics: DevMetrics,
    /// Blended with the first stage at `first_stage_weight` (absent in checkpoints written
    /// before blending was measured: they read as weight 0, the reranker alone).
    #[serde(default)]
    pub first_stage_weight: f32,
    #[serde(default)]
    pub blended: Option<DevMetrics>,
}

impl EvalRecord {
    /// What a user of the saved model gets by default: the blend its settings file names.
    pub fn delivered(&self) -> DevMetrics {
        self.blended.unwrap_or(self.metrics)
    }
}

/// The checkpoint's `state.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    pub recipe: Recipe,
    pub base: PathBuf,
    /// Optimizer steps completed.
    pub step: usize,
    pub total_steps: usize,
    pub evals: Vec<EvalRecord>,
    pub best: Option<EvalRecord>,
    /// Mean loss of each completed step.
    pub losses: Vec<f64>,
    /// Seconds spent training before this checkpoint (across resumes).
    pub seconds: f64,
}

/// Checkpoint layout inside the output directory.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

pub(crate) fn save_checkpoint(
    out: &Path,
    model: &TrainableCrossEncoder,
    opt: &AdamW,
    state: &TrainState,
) -> Result<()> {
    save_checkpoint_of(out, &model.varmap, opt, state)
}

/// Writes `varmap`, `opt` and `state` as `out`'s checkpoint (any trainer's: the cross-encoder's
/// and the bi-encoder's share the layout).
pub(crate) fn save_checkpoint_of(
    out: &Path,
    varmap: &candle_nn::VarMap,
    opt: &AdamW,
    state: &impl serde::Serialize,
) -> Result<()> {
    let dir = checkpoint_dir(out);
    let tmp = out.join("checkpoint.tmp");
    let old = out.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    varmap.save(tmp.join("model.safetensors"))?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    let json =
        serde_json::to_string_pretty(state).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_atomic(&tmp.join("state.json"), json.as_bytes())?;
    // Swap directories so some complete checkpoint exists at every moment.
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(|e| TrainError::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&tmp, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Reads the newest complete checkpoint (`checkpoint/`, or `checkpoint.old/` when a crash hit
/// between the two renames).
pub fn read_checkpoint(out: &Path) -> Result<Option<(PathBuf, TrainState)>> {
    read_checkpoint_of(out)
}

/// [`read_checkpoint`] for any trainer's state.
pub(crate) fn read_checkpoint_of<T: serde::de::DeserializeOwned>(
    out: &Path,
) -> Result<Option<(PathBuf, T)>> {
    for dir in [checkpoint_dir(out), out.join("checkpoint.old")] {
        let path = dir.join("state.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let state: T = serde_json::from_str(&text)
                .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
            return Ok(Some((dir, state)));
        }
    }
    Ok(None)
}
