//! The training loop: groups → tokenized batch → logits → loss → gradients (accumulated) →
//! clipped AdamW step; checkpoints every N steps; dev evaluation each epoch, keeping the best
//! model in the output directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use sift_models::batch::Batch;
use sift_models::{ModelDir, TextTokenizer};

use crate::data::{GroupRecipe, TrainingSet};
use crate::error::{Result, TrainError};
use crate::evaluate::{DevMetrics, DevSet};
use crate::model::{write_atomic, TrainableCrossEncoder};
use crate::optim::{clip_grad_norm, learning_rate, AdamW};

/// How the model learns from a group (one positive, then negatives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Softmax cross-entropy over the group's logits, the positive as the target (listwise,
    /// "multiple negatives ranking"): learns to rank the positive above every negative.
    Listwise,
    /// Binary cross-entropy per pair: positive → 1, negatives → 0 (pointwise).
    Bce,
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "listwise" => Ok(Loss::Listwise),
            "bce" => Ok(Loss::Bce),
            _ => Err(format!("unknown loss {s:?}; expected listwise or bce")),
        }
    }
}

/// Everything that determines the run. Saved with each checkpoint; `--resume` refuses a
/// checkpoint made with a different recipe.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Recipe {
    /// Longest (query, document) pair in tokens; longer pairs cut the document.
    pub max_length: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    /// Learning-rate multiplier for freshly initialised parameters (a new classification
    /// head): starting from random weights, they need larger steps than the pretrained encoder.
    pub fresh_lr_scale: f64,
    pub weight_decay: f64,
    /// Share of the steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    /// Groups in one forward/backward pass.
    pub groups_per_batch: usize,
    /// Passes whose gradients are summed before one optimizer step.
    pub accumulation_steps: usize,
    pub groups: GroupRecipe,
    pub loss: Loss,
    pub seed: u64,
    pub max_grad_norm: f64,
    /// Stop after this many optimizer steps (a shorter run; the schedule still spans all).
    pub max_steps: Option<usize>,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            max_length: 160,
            epochs: 2,
            learning_rate: 1e-4,
            fresh_lr_scale: 25.0,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            groups_per_batch: 2,
            accumulation_steps: 2,
            groups: GroupRecipe {
                hard_negatives: 6,
                random_negatives: 1,
                negative_depth: 30,
            },
            loss: Loss::Listwise,
            seed: 42,
            max_grad_norm: 1.0,
            max_steps: None,
        }
    }
}

impl Recipe {
    pub fn groups_per_step(&self) -> usize {
        self.groups_per_batch * self.accumulation_steps
    }

    /// Optimizer steps the schedule spans.
    pub fn total_steps(&self, examples: usize) -> usize {
        (examples * self.epochs)
            .div_ceil(self.groups_per_step())
            .max(1)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Invalid(m.to_owned()));
        if self.max_length < 8 {
            return bad("--max-length must be at least 8 tokens");
        }
        if self.epochs == 0 || self.groups_per_batch == 0 || self.accumulation_steps == 0 {
            return bad("--epochs, --groups-per-batch and --accumulation-steps must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("--learning-rate must be a positive number");
        }
        if !(self.fresh_lr_scale > 0.0 && self.fresh_lr_scale.is_finite()) {
            return bad("--fresh-lr-scale must be a positive number");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("--warmup-ratio must be in [0, 1)");
        }
        if self.groups.hard_negatives + self.groups.random_negatives == 0 {
            return bad(
                "a group needs at least one negative (--hard-negatives, --random-negatives)",
            );
        }
        Ok(())
    }
}

/// What the loop reports as it runs.
pub enum Event {
    Step {
        step: usize,
        total: usize,
        loss: f64,
        learning_rate: f64,
    },
    Checkpoint {
        step: usize,
    },
    Evaluated {
        epoch: usize,
        step: usize,
        metrics: DevMetrics,
        best: bool,
    },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EvalRecord {
    pub epoch: usize,
    pub step: usize,
    pub metrics: DevMetrics,
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

fn save_checkpoint(
    out: &Path,
    model: &TrainableCrossEncoder,
    opt: &AdamW,
    state: &TrainState,
) -> Result<()> {
    let dir = checkpoint_dir(out);
    let tmp = out.join("checkpoint.tmp");
    let old = out.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    model.save_weights(&tmp.join("model.safetensors"))?;
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
    for dir in [checkpoint_dir(out), out.join("checkpoint.old")] {
        let path = dir.join("state.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let state: TrainState = serde_json::from_str(&text)
                .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
            return Ok(Some((dir, state)));
        }
    }
    Ok(None)
}

/// Group-level loss of `[groups, group_size]` logits, positive in column 0.
fn group_loss(logits: &Tensor, loss: Loss) -> candle_core::Result<Tensor> {
    let (groups, size) = logits.dims2()?;
    match loss {
        Loss::Listwise => {
            let targets = Tensor::zeros(groups, DType::U32, logits.device())?;
            candle_nn::loss::cross_entropy(logits, &targets)
        }
        Loss::Bce => {
            // Stable BCE with logits: max(x, 0) - x·y + log(1 + e^-|x|).
            let mut labels = vec![0f32; groups * size];
            for g in 0..groups {
                labels[g * size] = 1.0;
            }
            let y = Tensor::from_vec(labels, (groups, size), logits.device())?;
            let per_pair = ((logits.relu()? - (logits * &y)?)?
                + ((logits.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
            per_pair.mean_all()
        }
    }
}

/// Peak resident memory of this process so far, in bytes (Linux; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs (or resumes) training. The best model by dev nDCG@10 is written to `out` in the Hugging
/// Face layout; `out/checkpoint/` holds the latest resumable state.
#[allow(clippy::too_many_arguments)]
pub fn train(
    base: &ModelDir,
    data: &TrainingSet,
    dev: &DevSet,
    recipe: &Recipe,
    out: &Path,
    resume: bool,
    checkpoint_every: usize,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainState> {
    recipe.validate()?;
    let mut model = TrainableCrossEncoder::from_base(base, recipe.seed)?;
    let tokenizer = TextTokenizer::from_dir(
        &base.path,
        recipe.max_length.min(model.config.max_tokens()),
        model.config.type_vocab_size > 1,
    )?;
    let mut opt = AdamW::new(model.variables(), recipe.learning_rate, recipe.weight_decay)?;
    opt.scale_learning_rate(&model.fresh, recipe.fresh_lr_scale);
    let total = recipe.total_steps(data.examples.len());
    let mut state = TrainState {
        recipe: recipe.clone(),
        base: base.path.clone(),
        step: 0,
        total_steps: total,
        evals: Vec::new(),
        best: None,
        losses: Vec::new(),
        seconds: 0.0,
    };
    if resume {
        let (dir, saved) = read_checkpoint(out)?.ok_or_else(|| {
            TrainError::Invalid(format!(
                "{} has no checkpoint to resume from",
                out.display()
            ))
        })?;
        if saved.recipe != *recipe {
            return Err(TrainError::Invalid(format!(
                "the checkpoint in {} was made with different settings; resume with the same flags (saved: {:?})",
                dir.display(),
                saved.recipe
            )));
        }
        model.load_weights(&dir.join("model.safetensors"))?;
        opt.load(&dir.join("optimizer.safetensors"), saved.step)?;
        state = saved;
    } else {
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    }

    let stop_at = recipe.max_steps.map_or(total, |m| m.min(total));
    let steps_per_epoch = data.examples.len().div_ceil(recipe.groups_per_step());
    let warmup = ((total as f64) * recipe.warmup_ratio).round() as usize;
    let group_size = TrainingSet::group_size(&recipe.groups);
    let vars: Vec<_> = opt.vars().to_vec();
    let started = Instant::now();
    let seconds_before = state.seconds;
    // Position in the concatenation of all epochs' orders.
    let mut orders: Vec<Option<Vec<usize>>> = vec![None; recipe.epochs];

    while state.step < stop_at {
        let step = state.step;
        let lr = learning_rate(step, total, warmup, recipe.learning_rate);
        opt.learning_rate = lr;
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut step_loss = 0.0;
        let mut passes = 0;
        for pass in 0..recipe.accumulation_steps {
            let mut pairs = Vec::new();
            let mut groups = 0;
            for g in 0..recipe.groups_per_batch {
                let position =
                    (step * recipe.accumulation_steps + pass) * recipe.groups_per_batch + g;
                let epoch = position / data.examples.len();
                if epoch >= recipe.epochs {
                    break;
                }
                let order =
                    orders[epoch].get_or_insert_with(|| data.epoch_order(recipe.seed, epoch));
                let index = order[position % data.examples.len()];
                let group = data.group(index, epoch, recipe.seed, &recipe.groups);
                if group.documents.len() != group_size {
                    continue;
                }
                for d in &group.documents {
                    pairs.push(tokenizer.encode_pair(group.query, d)?);
                }
                groups += 1;
            }
            if groups == 0 {
                continue;
            }
            let rows: Vec<_> = pairs.iter().collect();
            let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu)?;
            let logits = model.train.logits(&batch)?.reshape((groups, group_size))?;
            let loss = group_loss(&logits, recipe.loss)?;
            step_loss += loss.to_scalar::<f32>()? as f64;
            passes += 1;
            let scaled = (loss / recipe.accumulation_steps as f64)?;
            let g = scaled.backward()?;
            for (slot, (_, var)) in grads.iter_mut().zip(&vars) {
                if let Some(grad) = g.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(acc) => (acc + grad)?,
                        None => grad.clone(),
                    });
                }
            }
        }
        if passes == 0 {
            break;
        }
        clip_grad_norm(&mut grads, recipe.max_grad_norm)?;
        opt.step(&grads)?;
        state.step += 1;
        let mean_loss = step_loss / passes as f64;
        state.losses.push(mean_loss);
        on_event(Event::Step {
            step: state.step,
            total,
            loss: mean_loss,
            learning_rate: lr,
        });

        let epoch_done = state.step.is_multiple_of(steps_per_epoch) || state.step == total;
        if epoch_done && !dev.queries.is_empty() {
            let metrics = dev.rerank_metrics(&model.infer, &tokenizer, &data.corpus, 8192)?;
            let record = EvalRecord {
                epoch: state.step.div_ceil(steps_per_epoch),
                step: state.step,
                metrics,
            };
            let best = state
                .best
                .as_ref()
                .is_none_or(|b| metrics.ndcg_at_10 > b.metrics.ndcg_at_10);
            if best {
                model.save_pretrained(out, &base.path, tokenizer.max_length())?;
                state.best = Some(record.clone());
            }
            on_event(Event::Evaluated {
                epoch: record.epoch,
                step: state.step,
                metrics,
                best,
            });
            state.evals.push(record);
        }
        let last = state.step == stop_at;
        if state.step.is_multiple_of(checkpoint_every.max(1)) || last {
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            save_checkpoint(out, &model, &opt, &state)?;
            on_event(Event::Checkpoint { step: state.step });
        }
    }
    if state.best.is_none() {
        // No dev queries: the final model is the output.
        model.save_pretrained(out, &base.path, tokenizer.max_length())?;
    }
    state.seconds = seconds_before + started.elapsed().as_secs_f64();
    Ok(state)
}

/// Mean of the last `n` losses (for progress display).
pub fn recent_loss(losses: &[f64], n: usize) -> f64 {
    let tail = &losses[losses.len().saturating_sub(n)..];
    if tail.is_empty() {
        f64::NAN
    } else {
        tail.iter().sum::<f64>() / tail.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listwise_loss_is_low_when_the_positive_leads() {
        let good = Tensor::new(&[[5.0f32, 0.0, 0.0]], &Device::Cpu).unwrap();
        let bad = Tensor::new(&[[0.0f32, 5.0, 0.0]], &Device::Cpu).unwrap();
        for loss in [Loss::Listwise, Loss::Bce] {
            let g = group_loss(&good, loss).unwrap().to_scalar::<f32>().unwrap();
            let b = group_loss(&bad, loss).unwrap().to_scalar::<f32>().unwrap();
            assert!(g < b, "{loss:?}: {g} vs {b}");
        }
        // BCE against a direct formula.
        let x = Tensor::new(&[[2.0f32, -1.0]], &Device::Cpu).unwrap();
        let v = group_loss(&x, Loss::Bce)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let sig = |z: f32| 1.0 / (1.0 + (-z).exp());
        let want = (-(sig(2.0)).ln() - (1.0 - sig(-1.0)).ln()) / 2.0;
        assert!((v - want).abs() < 1e-6);
    }
}
