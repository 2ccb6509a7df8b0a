//! Fine-tuning a bi-encoder: batches of (query, positive, hard negatives) groups from a
//! [`TrainingSet`] → in-batch contrastive loss → clipped AdamW steps, a dense-retrieval dev
//! evaluation after each epoch (the best epoch is the output), and checkpoints that a resumed
//! run continues exactly (groups are a pure function of seed, epoch and position).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use sift_eval::metrics::{evaluate, Metric};
use sift_eval::{Qrels, Run};
use sift_models::batch::Batch;
use sift_models::{Encoded, ModelDir, TextTokenizer};

use crate::bi_encoder::{DropoutRates, TrainableBiEncoder};
use crate::checkpoint::{read_checkpoint_of, save_checkpoint_of};
use crate::data::{Corpus, GroupRecipe, LabelledQuery, TrainingSet};
use crate::distill::{FirstStageScores, Teacher};
use crate::error::{Result, TrainError};
use crate::grad_cache::{contrastive_gradients, mix, ContrastiveStep, GroupTeacher};
use crate::optim::{clip_grad_norm, learning_rate, AdamW};
use crate::recipe::{Distillation, TeacherModel};
use crate::synthetic::SYNTHETIC_PREFIX;
use crate::units::{units_of, DocumentUnit, DocumentWindows};

/// Texts embedded per forward pass when evaluating, in padded tokens.
const EVAL_BATCH_TOKENS: usize = 16_384;

/// Everything that decides what a run computes; a resumed run must be given the same.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmbedderRecipe {
    pub epochs: usize,
    /// Groups (queries) per optimizer step: each query's positive is every other query's
    /// in-batch negative.
    pub batch_size: usize,
    pub groups: GroupRecipe,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub max_grad_norm: f64,
    /// Tokens per document (queries are cut to the same).
    pub max_length: usize,
    /// Inverse temperature of the contrastive loss.
    pub scale: f64,
    pub seed: u64,
    /// Stop after this many optimizer steps (the schedule still spans every epoch).
    pub max_steps: Option<usize>,
    /// Inverse-cloze examples added to the labelled ones ([`crate::synthetic`]); absent in
    /// checkpoints made before they existed, which had none.
    #[serde(default)]
    pub synthetic_queries: usize,
    /// What a document is to the loss and the dev evaluation ([`crate::units`]); checkpoints
    /// made before the choice trained on whole documents.
    #[serde(default)]
    pub unit: DocumentUnit,
    /// Dropout of the training forward passes; checkpoints made before it existed had none.
    #[serde(default)]
    pub dropout: DropoutRates,
    /// A reranker whose scores of each query's group the bi-encoder also learns
    /// ([`crate::grad_cache::GroupTeacher`]); checkpoints made before it existed had none.
    #[serde(default)]
    pub distillation: Option<Distillation>,
}

impl EmbedderRecipe {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Invalid(m));
        if self.epochs == 0 || self.batch_size < 2 {
            return bad(format!(
                "epochs ({}) must be ≥ 1 and batch size ({}) ≥ 2 (in-batch negatives need a second query)",
                self.epochs, self.batch_size
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!(
                "learning rate {} must be positive",
                self.learning_rate
            ));
        }
        if !(self.scale > 0.0 && self.scale.is_finite()) || self.max_length < 2 {
            return bad("the loss scale must be positive and max length ≥ 2".into());
        }
        // The rates' rule is the masks' own ([`sift_models::arch::Dropout::new`]), checked here
        // before any work.
        self.dropout.masks(0)?;
        if let Some(d) = &self.distillation {
            d.validate()?;
        }
        Ok(())
    }

    pub fn steps_per_epoch(&self, examples: usize) -> usize {
        examples.div_ceil(self.batch_size)
    }
}

/// Dense retrieval quality of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DenseMetrics {
    pub ndcg_at_10: f64,
    pub recall_at_100: f64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EmbedderEval {
    pub epoch: usize,
    pub step: usize,
    pub metrics: DenseMetrics,
}

/// The checkpoint's `state.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EmbedderState {
    pub recipe: EmbedderRecipe,
    pub base: PathBuf,
    pub step: usize,
    pub total_steps: usize,
    /// The base model's dev metrics, measured before the first step.
    pub baseline: Option<DenseMetrics>,
    pub evals: Vec<EmbedderEval>,
    pub best: Option<EmbedderEval>,
    pub losses: Vec<f64>,
    pub seconds: f64,
}

/// Dev queries and the corpus their retrieval is measured on: exact search over every
/// document, each scored by its best window when `windows` is given (what sift's index
/// computes), else as one text cut at the recipe's max length.
pub struct EmbedderDev<'a> {
    pub queries: &'a [LabelledQuery],
    pub corpus: &'a Corpus,
    pub windows: Option<&'a DocumentWindows>,
}

impl EmbedderDev<'_> {
    fn qrels(&self) -> Qrels {
        let mut q = Qrels::default();
        for query in self.queries {
            q.judgements.insert(
                query.id.clone(),
                query.relevant.iter().map(|d| (d.clone(), 1)).collect(),
            );
        }
        q
    }
}

/// Unit vectors of `texts` through the fused kernels, `[n, hidden]` rows in input order.
fn embed_all(
    model: &TrainableBiEncoder,
    tokenizer: &TextTokenizer,
    prefix: &str,
    texts: &[&str],
) -> Result<Vec<Vec<f32>>> {
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| tokenizer.encode(&format!("{prefix}{t}")))
        .collect::<sift_models::Result<_>>()?;
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].len());
    let mut out = vec![Vec::new(); encoded.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len()
            && (end - start + 1) * encoded[order[end]].len() <= EVAL_BATCH_TOKENS
        {
            end += 1;
        }
        let rows: Vec<&Encoded> = order[start..end].iter().map(|&i| &encoded[i]).collect();
        let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu)?;
        let vectors: Vec<Vec<f32>> = model.embed(&batch, false, None)?.to_vec2()?;
        for (&i, v) in order[start..end].iter().zip(vectors) {
            out[i] = v;
        }
        start = end;
    }
    Ok(out)
}

/// Dense retrieval of the dev queries over the whole corpus with `model`.
pub fn dense_metrics(
    model: &TrainableBiEncoder,
    tokenizer: &TextTokenizer,
    prompts: (&str, &str),
    dev: &EmbedderDev,
) -> Result<DenseMetrics> {
    let ids: Vec<&String> = dev.corpus.keys().collect();
    // Every document's units, flattened; `owner[u]` is unit u's document.
    let mut texts: Vec<&str> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (i, (id, text)) in dev.corpus.iter().enumerate() {
        let units = units_of(dev.windows, id, text);
        owner.extend(std::iter::repeat_n(i, units.len()));
        texts.extend(units);
    }
    let units = embed_all(model, tokenizer, prompts.1, &texts)?;
    let qtexts: Vec<&str> = dev.queries.iter().map(|q| q.text.as_str()).collect();
    let queries = embed_all(model, tokenizer, prompts.0, &qtexts)?;
    let mut run = Run::default();
    for (q, v) in dev.queries.iter().zip(&queries) {
        let mut best = vec![f32::NEG_INFINITY; ids.len()];
        for (u, &i) in units.iter().zip(&owner) {
            let score: f32 = u.iter().zip(v).map(|(a, b)| a * b).sum();
            best[i] = best[i].max(score);
        }
        let mut scored: Vec<(usize, f32)> = best.into_iter().enumerate().collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(100);
        let n = scored.len();
        run.results.insert(
            q.id.clone(),
            scored
                .into_iter()
                .enumerate()
                .map(|(rank, (i, _))| (ids[i].clone(), (n - rank) as f64))
                .collect(),
        );
    }
    let e = evaluate(&dev.qrels(), &run, &[Metric::Ndcg(10), Metric::Recall(100)]);
    let get = |m: Metric| e.mean.get(&m.name()).copied().unwrap_or(0.0);
    Ok(DenseMetrics {
        ndcg_at_10: get(Metric::Ndcg(10)),
        recall_at_100: get(Metric::Recall(100)),
    })
}

/// What the loop reports as it runs.
pub enum EmbedderEvent {
    /// A dev evaluation starts: embedding `documents` documents takes minutes on a CPU.
    Evaluating {
        documents: usize,
    },
    Step {
        step: usize,
        total: usize,
        loss: f64,
    },
    Evaluated {
        eval: EmbedderEval,
        best: bool,
    },
}

/// What scores each query's group when a run distils.
enum GroupScorer<'a> {
    Reranker(Teacher),
    /// The first stage's normalized scores, times the student's contrastive scale.
    FirstStage(&'a FirstStageScores, f32),
}

impl GroupScorer<'_> {
    /// Logits of each (query id, query, document id, document), in order.
    fn logits(&mut self, pairs: &[(&str, &str, &str, &str)]) -> Result<Vec<f32>> {
        match self {
            GroupScorer::Reranker(teacher) => {
                let texts: Vec<(&str, &str)> = pairs.iter().map(|p| (p.1, p.3)).collect();
                teacher.logits(&texts)
            }
            // An inverse-cloze positive (`ict:ID`) is document ID less its query sentence: the
            // first stage, searching that sentence, scored document ID.
            GroupScorer::FirstStage(scores, scale) => Ok(pairs
                .iter()
                .map(|(q, _, d, _)| {
                    let d = d.strip_prefix(SYNTHETIC_PREFIX).unwrap_or(d);
                    scores.score(q, d) * *scale
                })
                .collect()),
        }
    }
}

/// The teacher's logits `[queries, g]` of each query's own group and the score-matrix columns
/// they are about. Documents are laid out as the step lays them out: every group's positive
/// first (column i = query i's), then each group's negatives in turn. `g` is the smallest
/// group's size (groups of a tiny corpus may fall short of the recipe's negatives).
fn group_teacher_logits(
    teacher: &mut GroupScorer<'_>,
    query_ids: &[&str],
    groups: &[crate::data::Group<'_>],
) -> Result<(Tensor, Tensor)> {
    let b = groups.len();
    let g = groups.iter().map(|x| x.documents.len()).min().unwrap_or(1);
    let mut pairs = Vec::with_capacity(b * g);
    let mut columns = Vec::with_capacity(b * g);
    let mut first_negative = b;
    for (i, group) in groups.iter().enumerate() {
        for (k, (document, id)) in group.documents.iter().zip(&group.ids).take(g).enumerate() {
            pairs.push((query_ids[i], group.query, *id, *document));
            columns.push(if k == 0 {
                i as u32
            } else {
                (first_negative + k - 1) as u32
            });
        }
        first_negative += group.documents.len() - 1;
    }
    let logits = teacher.logits(&pairs)?;
    Ok((
        Tensor::from_vec(logits, (b, g), &Device::Cpu)?,
        Tensor::from_vec(columns, (b, g), &Device::Cpu)?,
    ))
}

/// Runs (or resumes) a fine-tune of `base` to the end of `recipe`'s schedule. The best model by
/// dev nDCG@10 (the last one without dev queries) is written to `out` as a sentence-transformers
/// directory; `out/checkpoint/` holds the latest resumable state, written every
/// `checkpoint_every` steps and at each epoch's end.
#[allow(clippy::too_many_arguments)]
pub fn train_embedder(
    base: &ModelDir,
    data: &TrainingSet,
    dev: &EmbedderDev,
    recipe: EmbedderRecipe,
    out: &Path,
    resume: bool,
    checkpoint_every: usize,
    on_event: &mut dyn FnMut(EmbedderEvent),
) -> Result<EmbedderState> {
    recipe.validate()?;
    let model = TrainableBiEncoder::from_base(base)?;
    let max_length = recipe.max_length.min(model.config.max_tokens());
    let tokenizer =
        TextTokenizer::from_dir(&base.path, max_length, model.config.type_vocab_size > 1)?;
    let st = &base.sentence_transformers;
    let prompts = (
        st.query_prompt.clone().unwrap_or_default(),
        st.passage_prompt.clone().unwrap_or_default(),
    );
    let mut teacher = match recipe.distillation.as_ref().map(|d| &d.teacher) {
        None => None,
        Some(TeacherModel::Reranker(path)) => {
            Some(GroupScorer::Reranker(Teacher::load(path, max_length)?))
        }
        Some(TeacherModel::FirstStage(_)) => {
            let scores = data.first_stage_scores().ok_or_else(|| {
                TrainError::Invalid(
                    "the first stage teaches, but the training set has no first-stage scores"
                        .into(),
                )
            })?;
            Some(GroupScorer::FirstStage(scores, recipe.scale as f32))
        }
    };
    let mut opt = AdamW::new(model.variables(), recipe.learning_rate, recipe.weight_decay)?;
    let steps_per_epoch = recipe.steps_per_epoch(data.examples.len());
    let total = steps_per_epoch * recipe.epochs;
    let mut state = if resume {
        let (dir, saved): (PathBuf, EmbedderState) = read_checkpoint_of(out)?.ok_or_else(|| {
            TrainError::Invalid(format!(
                "{} has no checkpoint to resume from",
                out.display()
            ))
        })?;
        // Where a run stops is not part of what it computes: a run cut short by --max-steps
        // resumes without it.
        let saved_recipe = EmbedderRecipe {
            max_steps: recipe.max_steps,
            ..saved.recipe.clone()
        };
        if saved_recipe != recipe {
            return Err(TrainError::Invalid(format!(
                "the checkpoint in {} was made with different settings; resume with the same flags ({})",
                dir.display(),
                crate::recipe::differences(&saved_recipe, &recipe)
            )));
        }
        model.varmap.clone().load(dir.join("model.safetensors"))?;
        opt.load(&dir.join("optimizer.safetensors"), saved.step)?;
        saved
    } else {
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        EmbedderState {
            recipe: recipe.clone(),
            base: base.path.clone(),
            step: 0,
            total_steps: total,
            baseline: None,
            evals: Vec::new(),
            best: None,
            losses: Vec::new(),
            seconds: 0.0,
        }
    };
    let started = Instant::now();
    let seconds_before = state.seconds;
    let (qp, pp) = (prompts.0.as_str(), prompts.1.as_str());
    let has_dev = !dev.queries.is_empty();
    if has_dev && state.baseline.is_none() {
        on_event(EmbedderEvent::Evaluating {
            documents: dev.corpus.len(),
        });
        state.baseline = Some(dense_metrics(&model, &tokenizer, (qp, pp), dev)?);
    }
    let stop_at = recipe.max_steps.map_or(total, |m| m.min(total));
    let warmup = ((total as f64) * recipe.warmup_ratio).round() as usize;
    let vars: Vec<Var> = opt.vars().iter().map(|(_, v)| v.clone()).collect();
    let mut orders: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let encode = |t: &str, prefix: &str| tokenizer.encode(&format!("{prefix}{t}"));
    while state.step < stop_at {
        let epoch = state.step / steps_per_epoch;
        let within = state.step % steps_per_epoch;
        let order = orders
            .entry(epoch)
            .or_insert_with(|| data.epoch_order(recipe.seed, epoch));
        let picked: Vec<usize> = order
            .iter()
            .skip(within * recipe.batch_size)
            .take(recipe.batch_size)
            .copied()
            .collect();
        let groups: Vec<_> = picked
            .iter()
            .map(|&i| data.group(i, epoch, recipe.seed, &recipe.groups))
            .collect();
        // What a step trained on, for replaying it elsewhere (`SIFT_LOG=sift_train=debug`):
        // scripts/eval/embedder_recipe_replica.py --replay reads these lines.
        tracing::debug!(
            step = state.step + 1,
            queries = ?picked.iter().map(|&i| data.examples[i].0.id.as_str()).collect::<Vec<_>>(),
            documents = ?groups.iter().map(|g| &g.ids).collect::<Vec<_>>(),
            "embedder step"
        );
        // Documents: every group's positive first (column i = query i's), then the negatives;
        // each document is `spans[j]` of the flattened units.
        let mut documents: Vec<&Vec<&str>> = groups.iter().map(|g| &g.units[0]).collect();
        for g in &groups {
            documents.extend(&g.units[1..]);
        }
        let mut unit_texts: Vec<&str> = Vec::new();
        let mut spans = Vec::with_capacity(documents.len());
        for units in documents {
            spans.push((unit_texts.len(), units.len()));
            unit_texts.extend(units);
        }
        let mut not_negatives = Vec::new();
        for (qi, &i) in picked.iter().enumerate() {
            let relevant = &data.examples[i].0.relevant;
            for (di, &j) in picked.iter().enumerate() {
                if di != qi && relevant.contains(&data.examples[j].1) {
                    not_negatives.push((qi, di));
                }
            }
        }
        let q_enc: Vec<Encoded> = groups
            .iter()
            .map(|g| encode(g.query, qp))
            .collect::<sift_models::Result<_>>()?;
        let d_enc: Vec<Encoded> = unit_texts
            .iter()
            .map(|t| encode(t, pp))
            .collect::<sift_models::Result<_>>()?;
        let teacher_view = match (&mut teacher, &recipe.distillation) {
            (Some(t), Some(d)) => {
                let query_ids: Vec<&str> = picked
                    .iter()
                    .map(|&i| data.examples[i].0.id.as_str())
                    .collect();
                Some((group_teacher_logits(t, &query_ids, &groups)?, d))
            }
            _ => None,
        };
        let (loss_value, mut g) = contrastive_gradients(
            &model,
            &vars,
            &ContrastiveStep {
                queries: &q_enc,
                units: &d_enc,
                spans: &spans,
                not_negatives: &not_negatives,
                scale: recipe.scale,
                dropout: Some((recipe.dropout, mix(recipe.seed, state.step as u64))),
                teacher: teacher_view
                    .as_ref()
                    .map(|((logits, columns), d)| GroupTeacher {
                        logits,
                        columns,
                        distillation: d,
                    }),
            },
        )?;
        if !loss_value.is_finite() {
            return Err(TrainError::Invalid(format!(
                "the loss became {loss_value} at step {}; lower --learning-rate",
                state.step + 1
            )));
        }
        clip_grad_norm(&mut g, recipe.max_grad_norm)?;
        opt.learning_rate = learning_rate(state.step, total, warmup, recipe.learning_rate);
        opt.step(&g)?;
        state.step += 1;
        state.losses.push(loss_value);
        on_event(EmbedderEvent::Step {
            step: state.step,
            total,
            loss: loss_value,
        });

        let epoch_end = state.step % steps_per_epoch == 0 || state.step == total;
        if epoch_end {
            if has_dev {
                on_event(EmbedderEvent::Evaluating {
                    documents: dev.corpus.len(),
                });
                let metrics = dense_metrics(&model, &tokenizer, (qp, pp), dev)?;
                let eval = EmbedderEval {
                    epoch: state.step.div_ceil(steps_per_epoch),
                    step: state.step,
                    metrics,
                };
                let best = state
                    .best
                    .as_ref()
                    .is_none_or(|b| metrics.ndcg_at_10 > b.metrics.ndcg_at_10);
                if best {
                    model.save_sentence_transformers(out, &base.path, max_length)?;
                    state.best = Some(eval.clone());
                }
                state.evals.push(eval.clone());
                on_event(EmbedderEvent::Evaluated { eval, best });
            } else {
                model.save_sentence_transformers(out, &base.path, max_length)?;
            }
        }
        if epoch_end || state.step % checkpoint_every.max(1) == 0 || state.step == stop_at {
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            save_checkpoint_of(out, &model.varmap, &opt, &state)?;
        }
    }
    state.seconds = seconds_before + started.elapsed().as_secs_f64();
    Ok(state)
}
