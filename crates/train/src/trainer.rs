//! The training loop as a value: a [`Trainer`] takes one optimizer step at a time (groups →
//! tokenized batch → logits → loss → accumulated gradients → clipped AdamW step), evaluates on
//! the dev queries, and writes checkpoints; [`train`] drives it to the end of the schedule and
//! keeps the best model by dev nDCG@10 in the output directory.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use sift_models::batch::Batch;
use sift_models::rerank::RerankSettings;
use sift_models::{ModelDir, TextTokenizer};

use crate::checkpoint::{read_checkpoint, save_checkpoint, EvalRecord, TrainState};
use crate::data::TrainingSet;
use crate::distill::{mix_with_label, Teacher};
use crate::error::{Result, TrainError};
use crate::evaluate::{DevEvaluation, DevSet};
use crate::model::{write_atomic, TrainableCrossEncoder};
use crate::optim::{clip_grad_norm, learning_rate, AdamW};
use crate::recipe::{Distillation, Loss, Recipe};

/// Pairs scored per forward pass when evaluating on the dev queries, in tokens.
const DEV_BATCH_TOKENS: usize = 8192;

/// What a run trains on and where it writes.
pub struct Job<'a> {
    /// The encoder or cross-encoder to start from.
    pub base: &'a ModelDir,
    pub data: &'a TrainingSet,
    /// Dev queries scored after each epoch; empty means the last model is the output.
    pub dev: &'a DevSet,
    pub recipe: Recipe,
    pub out: PathBuf,
    /// Continue from `out`'s checkpoint (made with the same recipe) instead of starting over.
    pub resume: bool,
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
        evaluation: DevEvaluation,
        best: bool,
    },
}

/// One optimizer step's outcome.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Optimizer steps completed, this one included.
    pub step: usize,
    /// Mean loss over the step's passes.
    pub loss: f64,
    pub learning_rate: f64,
}

/// One dev evaluation's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation {
    pub epoch: usize,
    pub metrics: DevEvaluation,
    /// Better than every earlier evaluation: the model in `out` is now this one.
    pub best: bool,
}

/// Step counts fixed by the recipe and the data.
struct Schedule {
    /// Optimizer steps the learning-rate schedule spans.
    total: usize,
    /// Where this run stops (`max_steps` may end it early).
    stop_at: usize,
    steps_per_epoch: usize,
    warmup: usize,
    group_size: usize,
}

/// A training run in progress.
pub struct Trainer<'a> {
    base: &'a ModelDir,
    data: &'a TrainingSet,
    dev: &'a DevSet,
    recipe: Recipe,
    out: PathBuf,
    model: TrainableCrossEncoder,
    tokenizer: TextTokenizer,
    opt: AdamW,
    vars: Vec<(String, Var)>,
    state: TrainState,
    schedule: Schedule,
    /// Each epoch's example order, made when the epoch is first reached.
    orders: Vec<Option<Vec<usize>>>,
    teacher: Option<Teacher>,
    started: Instant,
    seconds_before: f64,
}

impl<'a> Trainer<'a> {
    /// Loads the base model (and, when resuming, the checkpoint's weights and optimizer state).
    pub fn new(job: Job<'a>) -> Result<Self> {
        let Job {
            base,
            data,
            dev,
            recipe,
            out,
            resume,
        } = job;
        recipe.validate()?;
        let mut model = TrainableCrossEncoder::from_base(
            base,
            recipe.seed,
            &recipe.exit_layers,
            recipe.pooler,
        )?;
        let tokenizer = TextTokenizer::from_dir(
            &base.path,
            recipe.max_length.min(model.config.max_tokens()),
            model.config.type_vocab_size > 1,
        )?;
        let mut opt = AdamW::new(model.variables(), recipe.learning_rate, recipe.weight_decay)?;
        opt.scale_learning_rate(&model.fresh, recipe.fresh_lr_scale);
        let total = recipe.total_steps(data.examples.len());
        let state = if resume {
            let (dir, saved) = read_checkpoint(&out)?.ok_or_else(|| {
                TrainError::Invalid(format!(
                    "{} has no checkpoint to resume from",
                    out.display()
                ))
            })?;
            let (was, now) = (saved.recipe.normalized(), recipe.normalized());
            if was != now {
                return Err(TrainError::Invalid(format!(
                    "the checkpoint in {} was made with different settings; resume with the same flags ({})",
                    dir.display(),
                    crate::recipe::differences(&was, &now)
                )));
            }
            model.load_weights(&dir.join("model.safetensors"))?;
            opt.load(&dir.join("optimizer.safetensors"), saved.step)?;
            saved
        } else {
            std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
            TrainState {
                recipe: recipe.clone(),
                base: base.path.clone(),
                step: 0,
                total_steps: total,
                evals: Vec::new(),
                best: None,
                losses: Vec::new(),
                seconds: 0.0,
            }
        };
        let schedule = Schedule {
            total,
            stop_at: recipe.max_steps.map_or(total, |m| m.min(total)),
            steps_per_epoch: data.examples.len().div_ceil(recipe.groups_per_step()),
            warmup: ((total as f64) * recipe.warmup_ratio).round() as usize,
            group_size: TrainingSet::group_size(&recipe.groups),
        };
        let vars = opt.vars().to_vec();
        let teacher = match recipe.distillation.as_ref().map(|d| &d.teacher) {
            None => None,
            Some(crate::recipe::TeacherModel::Reranker(path)) => {
                Some(Teacher::load(path, recipe.max_length)?)
            }
            // A reranker's groups are the first stage's candidates: the order it is trained to
            // improve on cannot also be its teacher.
            Some(crate::recipe::TeacherModel::FirstStage(_)) => {
                return Err(TrainError::Invalid(
                    "--teacher first-stage teaches embedders (train-embedder); a reranker learns \
                     to reorder the first stage, so give it a rerank model as teacher"
                        .into(),
                ))
            }
        };
        Ok(Trainer {
            teacher,
            base,
            data,
            dev,
            orders: vec![None; recipe.epochs],
            recipe,
            out,
            model,
            tokenizer,
            opt,
            vars,
            seconds_before: state.seconds,
            state,
            schedule,
            started: Instant::now(),
        })
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Optimizer steps the learning-rate schedule spans.
    pub fn total_steps(&self) -> usize {
        self.schedule.total
    }

    /// The run has taken every step it will take.
    pub fn is_done(&self) -> bool {
        self.state.step >= self.schedule.stop_at
    }

    /// The last step completed an epoch (or the schedule).
    pub fn at_epoch_end(&self) -> bool {
        let step = self.state.step;
        step > 0
            && (step.is_multiple_of(self.schedule.steps_per_epoch) || step == self.schedule.total)
    }

    /// Takes one optimizer step over `groups_per_batch × accumulation_steps` groups; `None`
    /// when the data has no complete group left.
    pub fn step(&mut self) -> Result<Option<StepReport>> {
        let recipe = self.recipe.clone();
        let step = self.state.step;
        let lr = learning_rate(
            step,
            self.schedule.total,
            self.schedule.warmup,
            recipe.learning_rate,
        );
        self.opt.learning_rate = lr;
        let mut grads: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let mut step_loss = 0.0;
        let mut passes = 0;
        for pass in 0..recipe.accumulation_steps {
            let first = (step * recipe.accumulation_steps + pass) * recipe.groups_per_batch;
            let (pairs, texts, groups) = self.batch_pairs(first)?;
            if groups == 0 {
                continue;
            }
            let size = self.schedule.group_size;
            let teacher = match (&mut self.teacher, &recipe.distillation) {
                (Some(teacher), Some(d)) => {
                    let text_pairs: Vec<(&str, &str)> = texts
                        .iter()
                        .map(|(q, d)| (q.as_str(), d.as_str()))
                        .collect();
                    let logits = teacher.logits(&text_pairs)?;
                    Some((Tensor::from_vec(logits, (groups, size), &Device::Cpu)?, d))
                }
                _ => None,
            };
            let rows: Vec<_> = pairs.iter().collect();
            let batch = Batch::new(&rows, self.model.config.pad_token_id, &Device::Cpu)?;
            // A layerwise model learns every exit from one pass: the exits' losses weighed
            // by the recipe (an ordinary model has one exit, the last layer).
            let exits = self.model.train.logits_at_every_exit(&batch)?;
            let layers: Vec<usize> = exits.iter().map(|(l, _)| *l).collect();
            let weights = self.recipe.exit_weighting.weights(&layers);
            let mut loss: Option<Tensor> = None;
            for ((_, logits), w) in exits.iter().zip(weights) {
                let logits = logits.reshape((groups, size))?;
                let term = (exit_loss(&logits, self.recipe.loss, teacher.as_ref())? * w)?;
                loss = Some(match loss {
                    Some(sum) => (sum + term)?,
                    None => term,
                });
            }
            let loss = loss.ok_or_else(|| TrainError::Invalid("the model has no exit".into()))?;
            step_loss += loss.to_scalar::<f32>()? as f64;
            passes += 1;
            let scaled = (loss / self.recipe.accumulation_steps as f64)?;
            let g = scaled.backward()?;
            for (slot, (_, var)) in grads.iter_mut().zip(&self.vars) {
                if let Some(grad) = g.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(acc) => (acc + grad)?,
                        None => grad.clone(),
                    });
                }
            }
        }
        if passes == 0 {
            return Ok(None);
        }
        clip_grad_norm(&mut grads, self.recipe.max_grad_norm)?;
        self.opt.step(&grads)?;
        self.state.step += 1;
        let loss = step_loss / passes as f64;
        self.state.losses.push(loss);
        Ok(Some(StepReport {
            step: self.state.step,
            loss,
            learning_rate: lr,
        }))
    }

    /// Tokenized pairs of the `groups_per_batch` groups starting at `first` in the
    /// concatenation of all epochs' orders, their (query, document) texts, and how many
    /// complete groups they make.
    #[allow(clippy::type_complexity)]
    fn batch_pairs(
        &mut self,
        first: usize,
    ) -> Result<(Vec<sift_models::Encoded>, Vec<(String, String)>, usize)> {
        let examples = self.data.examples.len();
        let mut pairs = Vec::new();
        let mut texts = Vec::new();
        let mut groups = 0;
        for position in first..first + self.recipe.groups_per_batch {
            let epoch = position / examples;
            if epoch >= self.recipe.epochs {
                break;
            }
            let (data, seed) = (self.data, self.recipe.seed);
            let order = self.orders[epoch].get_or_insert_with(|| data.epoch_order(seed, epoch));
            let index = order[position % examples];
            let group = data.group(index, epoch, seed, &self.recipe.groups);
            if group.documents.len() != self.schedule.group_size {
                continue;
            }
            for d in &group.documents {
                pairs.push(self.tokenizer.encode_pair(group.query, d)?);
                if self.teacher.is_some() {
                    texts.push((group.query.to_owned(), d.to_string()));
                }
            }
            groups += 1;
        }
        Ok((pairs, texts, groups))
    }

    /// Scores the dev queries with the current weights; when they beat every earlier
    /// evaluation the model is saved to `out` in the Hugging Face layout. `None` without dev
    /// queries.
    pub fn evaluate(&mut self) -> Result<Option<Evaluation>> {
        if self.dev.queries.is_empty() {
            return Ok(None);
        }
        let metrics = self.dev.rerank_metrics(
            &self.model.infer,
            &self.tokenizer,
            &self.data.corpus,
            DEV_BATCH_TOKENS,
        )?;
        let record = EvalRecord {
            epoch: self.state.step.div_ceil(self.schedule.steps_per_epoch),
            step: self.state.step,
            metrics: metrics.alone,
            first_stage_weight: metrics.first_stage_weight,
            blended: Some(metrics.blended),
        };
        // Models compete on what a user gets from them: each with its own best blend.
        let best = self
            .state
            .best
            .as_ref()
            .is_none_or(|b| record.delivered().ndcg_at_10 > b.delivered().ndcg_at_10);
        if best {
            self.save_model()?;
            self.save_settings(&record)?;
            self.state.best = Some(record.clone());
        }
        self.state.evals.push(record.clone());
        Ok(Some(Evaluation {
            epoch: record.epoch,
            metrics,
            best,
        }))
    }

    /// Writes the resumable state (weights, optimizer, `state.json`) to `out/checkpoint/`.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.state.seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
        save_checkpoint(&self.out, &self.model, &self.opt, &self.state)
    }

    /// Ends the run: without dev queries the final weights are the output model.
    pub fn finish(mut self) -> Result<TrainState> {
        if self.state.best.is_none() {
            self.save_model()?;
        }
        self.state.seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
        Ok(self.state)
    }

    fn save_model(&self) -> Result<()> {
        self.model
            .save_pretrained(&self.out, &self.base.path, self.tokenizer.max_length())
    }

    /// `sift_rerank.json`: the blend weight chosen on dev, which search then applies by default.
    fn save_settings(&self, record: &EvalRecord) -> Result<()> {
        let depth = self
            .dev
            .candidates
            .values()
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let settings = RerankSettings {
            first_stage_weight: Some(record.first_stage_weight),
            candidates: Some(depth),
            chosen_by: Some(format!(
                "dev nDCG@10 over {} queries (top {depth} first-stage candidates), epoch {}: {:.4} alone, {:.4} blended",
                self.dev.queries.len(),
                record.epoch,
                record.metrics.ndcg_at_10,
                record.delivered().ndcg_at_10,
            )),
        };
        write_atomic(
            &self.out.join(sift_models::rerank::RERANK_SETTINGS_FILE),
            settings.to_json().as_bytes(),
        )
    }
}

/// Runs (or resumes) `job` to the end of its schedule, checkpointing every `checkpoint_every`
/// steps and at the end. The best model by dev nDCG@10 is written to `job.out` in the Hugging
/// Face layout; `out/checkpoint/` holds the latest resumable state.
pub fn train(
    job: Job,
    checkpoint_every: usize,
    on_event: &mut dyn FnMut(Event),
) -> Result<TrainState> {
    let mut trainer = Trainer::new(job)?;
    let total = trainer.total_steps();
    while !trainer.is_done() {
        let Some(report) = trainer.step()? else {
            break;
        };
        on_event(Event::Step {
            step: report.step,
            total,
            loss: report.loss,
            learning_rate: report.learning_rate,
        });
        if trainer.at_epoch_end() {
            if let Some(e) = trainer.evaluate()? {
                on_event(Event::Evaluated {
                    epoch: e.epoch,
                    step: report.step,
                    evaluation: e.metrics,
                    best: e.best,
                });
            }
        }
        if report.step.is_multiple_of(checkpoint_every.max(1)) || trainer.is_done() {
            trainer.checkpoint()?;
            on_event(Event::Checkpoint { step: report.step });
        }
    }
    trainer.finish()
}

/// One exit's loss over `logits` `[groups, group_size]` (each group's positive first): the
/// label loss, mixed with the distillation term where a teacher's logits of the same pairs are
/// given — `(1 − weight) · label + weight · KL(teacher ‖ student)`.
pub fn exit_loss(
    logits: &Tensor,
    loss: Loss,
    teacher: Option<&(Tensor, &Distillation)>,
) -> candle_core::Result<Tensor> {
    let label = group_loss(logits, loss)?;
    match teacher {
        Some((teacher, d)) => mix_with_label(label, logits, teacher, d),
        None => Ok(label),
    }
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
