//! Cross-encoder reranker: an encoder with a classification head reads the query and the
//! document together and outputs a relevance logit.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::batch::{RowStates, SavedStates};
use crate::calibration_text;
use crate::config::Head;
use crate::engine::Engine;
use crate::error::{ModelError, Result};
use crate::model_dir::ModelDir;
use crate::rerank::{
    score_in_batches, sigmoid, Cascade, CostModel, LatencyBudget, RerankScore, Reranker,
    RerankerOptions,
};
use crate::tokenize::{Encoded, TextTokenizer};
use crate::{resolve_max_length, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_ONNX_BATCH_TOKENS};

pub struct CrossEncoder {
    /// The network, shared with the views [`Reranker::with_exit`] makes.
    model: Arc<Loaded>,
    /// The layer whose head [`CrossEncoder::score_encoded`] scores with: the last, unless a
    /// layerwise model was loaded with an earlier exit.
    exit: usize,
    cascade: Option<Cascade>,
    budget: Option<LatencyBudget>,
}

struct Loaded {
    engine: Engine,
    tokenizer: TextTokenizer,
    dir: ModelDir,
    max_batch_tokens: usize,
    /// The cost model measured for latency budgets, as a budget every view derives its own
    /// from ([`LatencyBudget::with_ms`]): set at load with `--rerank-budget-ms`, else by the
    /// first per-request budget.
    calibrated: OnceLock<LatencyBudget>,
}

impl Loaded {
    /// The calibrated budget, measuring the cost model on first use; `ms` is only the first
    /// caller's budget (each view sets its own with [`LatencyBudget::with_ms`]).
    fn calibrated(&self, ms: f64) -> Result<&LatencyBudget> {
        if let Some(budget) = self.calibrated.get() {
            return Ok(budget);
        }
        // Full-length pairs, the shape reranking sees (a query beside a document cut to
        // fit): short calibration pairs misjudged the per-token cost by 1.3–2×.
        let document = calibration_text::PASSAGES.join(" ");
        let rows = calibration_text::QUERIES
            .iter()
            .take(16)
            .map(|q| self.tokenizer.encode_pair(q, &document))
            .collect::<Result<Vec<_>>>()?;
        let budget = LatencyBudget::new(
            ms,
            measure_cost(self, &rows)?,
            self.dir.config.all_exit_layers(),
        )?;
        // Two first requests may both measure; either result serves.
        Ok(self.calibrated.get_or_init(|| budget))
    }
}

/// The exit layer and cascade a layerwise model scores with, checked against its exits.
fn check_exits(
    dir: &ModelDir,
    exit_layer: Option<usize>,
    cascade: Option<Cascade>,
) -> Result<(usize, Option<Cascade>)> {
    let exits = dir.config.all_exit_layers();
    let exit = match exit_layer {
        Some(layer) if !exits.contains(&layer) => {
            return Err(ModelError::InvalidInput(if exits.len() > 1 {
                format!(
                    "{} has no head after layer {layer}: its exit layers are {exits:?}",
                    dir.name()
                )
            } else {
                format!(
                    "{} scores after its last layer ({}) only: an earlier --rerank-layer needs a layerwise reranker (sift train-reranker --layerwise)",
                    dir.name(),
                    dir.config.num_layers
                )
            }));
        }
        Some(layer) => layer,
        None => dir.config.num_layers,
    };
    if let Some(c) = cascade {
        if exit_layer.is_some() {
            return Err(ModelError::InvalidInput(
                "a cascade and a fixed exit layer exclude each other: give --rerank-cascade or --rerank-layer".into(),
            ));
        }
        c.validate(&dir.name(), &exits)?;
    }
    Ok((exit, cascade))
}

impl CrossEncoder {
    /// Loads a `*ForSequenceClassification` directory. One-label heads score with their only
    /// logit; two-label heads (e.g. some NLI-style rerankers) score with label 1, the
    /// "relevant" class by convention.
    pub fn load(dir: impl AsRef<Path>, options: RerankerOptions) -> Result<Self> {
        Self::from_dir(ModelDir::open(dir)?, options)
    }

    /// Like [`CrossEncoder::load`], for a directory already opened.
    pub fn from_dir(dir: ModelDir, options: RerankerOptions) -> Result<Self> {
        if dir.config.head != Head::SequenceClassification {
            return Err(ModelError::NotACrossEncoder {
                path: dir.path.clone(),
                architectures: dir.config.architecture_name.clone(),
            });
        }
        if options.template.is_some()
            || options.prompt.is_some()
            || options.cutoff_layer.is_some()
            || options.compress_ratio.is_some()
            || options.compress_layers.is_some()
        {
            return Err(ModelError::InvalidInput(format!(
                "{} is a cross-encoder: a rerank template, prompt, cutoff layer or compression applies to LLM rerankers only",
                dir.name()
            )));
        }
        let (exit, cascade) = check_exits(&dir, options.exit_layer, options.cascade)?;
        if options.budget_ms.is_some() && (options.exit_layer.is_some() || cascade.is_some()) {
            return Err(ModelError::InvalidInput(
                "a latency budget chooses the exit layer and cascade itself: give --rerank-budget-ms without --rerank-layer or --rerank-cascade".into(),
            ));
        }
        let labels = dir.config.labels.len();
        if !(1..=2).contains(&labels) {
            return Err(ModelError::InvalidConfig {
                path: dir.path.join("config.json"),
                reason: format!("a cross-encoder needs 1 or 2 labels, this head has {labels}"),
            });
        }
        let max_length = resolve_max_length(&dir, options.max_length)?;
        let tokenizer =
            TextTokenizer::from_dir(&dir.path, max_length, dir.config.type_vocab_size > 1)?;
        let calibration_rows = |tokenizer: &TextTokenizer| -> Result<Vec<Encoded>> {
            let (queries, passages) = (calibration_text::QUERIES, calibration_text::PASSAGES);
            let mut rows = Vec::new();
            for (i, q) in queries.iter().enumerate() {
                rows.push(tokenizer.encode_pair(q, passages[i])?);
                rows.push(tokenizer.encode_pair(q, passages[(i + 3) % passages.len()])?);
            }
            Ok(rows)
        };
        let engine = Engine::load(&dir, true, options.engine, || calibration_rows(&tokenizer))?;
        let model = Loaded {
            max_batch_tokens: options
                .max_batch_tokens
                .unwrap_or(match engine {
                    Engine::Candle(_) => DEFAULT_MAX_BATCH_TOKENS,
                    Engine::Onnx(_) => DEFAULT_ONNX_BATCH_TOKENS,
                })
                .max(1),
            engine,
            tokenizer,
            dir,
            calibrated: OnceLock::new(),
        };
        let budget = match options.budget_ms {
            Some(ms) => Some(model.calibrated(ms)?.clone()),
            None => None,
        };
        Ok(CrossEncoder {
            model: Arc::new(model),
            exit,
            cascade,
            budget,
        })
    }

    pub fn model_dir(&self) -> &ModelDir {
        &self.model.dir
    }

    /// The engine running this model.
    pub fn engine(&self) -> &Engine {
        &self.model.engine
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.model.tokenizer
    }

    /// Tokenizes each (query, document) pair; rejects an empty query or document.
    pub fn encode(&self, query: &str, documents: &[impl AsRef<str>]) -> Result<Vec<Encoded>> {
        if crate::is_blank(query) {
            return Err(ModelError::InvalidInput("the query is empty".into()));
        }
        documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d = d.as_ref();
                if crate::is_blank(d) {
                    return Err(ModelError::InvalidInput(format!("document {i} is empty")));
                }
                self.model.tokenizer.encode_pair(query, d)
            })
            .collect()
    }

    /// Scores in input order.
    pub fn score(&self, query: &str, documents: &[impl AsRef<str>]) -> Result<Vec<RerankScore>> {
        let pairs = self.encode(query, documents)?;
        self.score_encoded(&pairs, &mut |_| {})
    }

    /// Scores pre-tokenized pairs in input order, calling `progress(n)` after each batch.
    pub fn score_encoded(
        &self,
        pairs: &[Encoded],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<RerankScore>> {
        let lengths: Vec<usize> = pairs.iter().map(|e| e.len()).collect();
        let everything = vec![(0..pairs.len()).collect()];
        score_in_batches(
            &lengths,
            everything,
            self.model.max_batch_tokens,
            |slots| {
                let rows: Vec<&Encoded> = slots.iter().map(|&i| &pairs[i]).collect();
                let logits = self.model.engine.logits_at(
                    &rows,
                    self.model.dir.config.pad_token_id,
                    self.exit,
                )?;
                Ok(scores_of(slots, logits))
            },
            progress,
        )
    }

    /// Raw logits `[b, num_labels]` of prepared pairs; the golden tests compare these.
    pub fn logits(&self, pairs: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        let rows: Vec<&Encoded> = pairs.iter().collect();
        self.model
            .engine
            .logits(&rows, self.model.dir.config.pad_token_id)
    }
}

/// Times `rows` at the shallowest exit and through every layer (one batch, best of 3 after a
/// warm-up) and fits the budget's cost model to the two timings. ~1 s at load for MiniLM-L6
/// int8 (16 pairs of 160 tokens).
fn measure_cost(model: &Loaded, rows: &[Encoded]) -> Result<CostModel> {
    let exits = model.dir.config.all_exit_layers();
    let (shallow, deep) = (exits[0], *exits.last().unwrap_or(&exits[0]));
    let refs: Vec<&Encoded> = rows.iter().collect();
    let tokens: usize = rows.iter().map(Encoded::len).sum();
    let pad = model.dir.config.pad_token_id;
    let time = |layer: usize| {
        CostModel::time(3, || {
            model.engine.logits_at(&refs, pad, layer)?;
            Ok(())
        })
    };
    let deep_ms = time(deep)?;
    let shallow_ms = if shallow == deep {
        deep_ms
    } else {
        time(shallow)?
    };
    Ok(CostModel::fit(
        tokens,
        (shallow, shallow_ms),
        (deep, deep_ms),
    ))
}

/// One score per slot from its logits row.
fn scores_of(slots: &[usize], logits: Vec<Vec<f32>>) -> Vec<RerankScore> {
    slots
        .iter()
        .zip(logits)
        .map(|(&slot, row)| score_from_logits(slot, &row))
        .collect()
}

fn score_from_logits(index: usize, logits: &[f32]) -> RerankScore {
    match logits {
        [l] => RerankScore {
            index,
            logit: *l,
            score: sigmoid(*l),
            dropped: false,
        },
        [l0, l1, ..] => RerankScore {
            index,
            logit: *l1,
            // softmax over two labels == sigmoid of their difference
            score: sigmoid(l1 - l0),
            dropped: false,
        },
        [] => RerankScore {
            index,
            logit: f32::NAN,
            score: f32::NAN,
            dropped: false,
        },
    }
}

impl Reranker for CrossEncoder {
    fn model_dir(&self) -> &ModelDir {
        &self.model.dir
    }

    fn engine_name(&self) -> &'static str {
        self.model.engine.name()
    }

    fn tokenizer(&self) -> &TextTokenizer {
        &self.model.tokenizer
    }

    /// Measured on this query with a one-token probe document, so the special tokens of any
    /// pair template (`[CLS] q [SEP] d [SEP]`, `<s> q </s></s> d </s>`) are counted by the
    /// tokenizer itself.
    fn pair_overhead(&self, query: &str) -> Result<usize> {
        const PROBE: &str = "a";
        let pair = self.model.tokenizer.pair_len_untruncated(query, PROBE)?;
        let probe = self.model.tokenizer.token_offsets(PROBE)?.len();
        Ok(pair.saturating_sub(probe))
    }

    fn encode_pair(&self, query: &str, document: &str) -> Result<(Encoded, bool)> {
        if crate::is_blank(query) {
            return Err(ModelError::InvalidInput("the query is empty".into()));
        }
        if crate::is_blank(document) {
            return Err(ModelError::InvalidInput("a document is empty".into()));
        }
        self.model.tokenizer.encode_pair_checked(query, document)
    }

    fn score_pairs(
        &self,
        pairs: &[Encoded],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<RerankScore>> {
        self.score_encoded(pairs, progress)
    }

    fn with_exit(
        &self,
        exit_layer: Option<usize>,
        cascade: Option<Cascade>,
    ) -> Result<Arc<dyn Reranker>> {
        let (exit, cascade) = check_exits(&self.model.dir, exit_layer, cascade)?;
        Ok(Arc::new(CrossEncoder {
            model: self.model.clone(),
            exit,
            cascade,
            budget: None,
        }))
    }

    fn with_budget(&self, ms: f64) -> Result<Arc<dyn Reranker>> {
        LatencyBudget::check_ms(ms)?;
        let budget = self.model.calibrated(ms)?.with_ms(ms)?;
        let (exit, cascade) = check_exits(&self.model.dir, None, None)?;
        Ok(Arc::new(CrossEncoder {
            model: self.model.clone(),
            exit,
            cascade,
            budget: Some(budget),
        }))
    }

    fn exit_layers(&self) -> Vec<usize> {
        self.model.dir.config.all_exit_layers()
    }

    fn cascade(&self) -> Option<Cascade> {
        self.cascade
    }

    fn budget(&self) -> Option<&LatencyBudget> {
        self.budget.as_ref()
    }

    fn score_pairs_partway(
        &self,
        pairs: &[Encoded],
        exit: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Vec<RerankScore>, Vec<RowStates>)> {
        Cascade { exit, keep: 1 }.validate(&self.model.dir.name(), &self.exit_layers())?;
        let lengths: Vec<usize> = pairs.iter().map(|e| e.len()).collect();
        let mut states: Vec<Option<RowStates>> = vec![None; pairs.len()];
        let scores = score_in_batches(
            &lengths,
            vec![(0..pairs.len()).collect()],
            self.model.max_batch_tokens,
            |slots| {
                let rows: Vec<&Encoded> = slots.iter().map(|&i| &pairs[i]).collect();
                let (logits, saved) = self.model.engine.exit_states(
                    &rows,
                    self.model.dir.config.pad_token_id,
                    exit,
                )?;
                for (&slot, row) in slots.iter().zip(saved.into_rows()) {
                    states[slot] = Some(row);
                }
                Ok(scores_of(slots, logits))
            },
            progress,
        )?;
        let states = states
            .into_iter()
            .map(|s| s.ok_or_else(|| ModelError::Internal("a pair kept no token states".into())))
            .collect::<Result<_>>()?;
        Ok((scores, states))
    }

    fn finish_pairs(
        &self,
        states: &[&RowStates],
        from: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<RerankScore>> {
        Cascade {
            exit: from,
            keep: 1,
        }
        .validate(&self.model.dir.name(), &self.exit_layers())?;
        let hidden = self.model.dir.config.hidden_size;
        if let Some(bad) = states.iter().find(|s| s.data.len() != s.len * hidden) {
            return Err(ModelError::InvalidInput(format!(
                "saved token states of {} values for {} tokens of width {hidden}",
                bad.data.len(),
                bad.len
            )));
        }
        let lengths: Vec<usize> = states.iter().map(|s| s.len).collect();
        score_in_batches(
            &lengths,
            vec![(0..states.len()).collect()],
            self.model.max_batch_tokens,
            |slots| {
                let rows: Vec<&RowStates> = slots.iter().map(|&i| states[i]).collect();
                let logits = self
                    .model
                    .engine
                    .finish(&SavedStates::from_rows(&rows, hidden), from)?;
                Ok(scores_of(slots, logits))
            },
            progress,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_label_heads_score_the_relevant_label() {
        let s = score_from_logits(3, &[1.0, 3.0]);
        assert_eq!(s.logit, 3.0);
        let softmax1 = 3f32.exp() / (1f32.exp() + 3f32.exp());
        assert!((s.score - softmax1).abs() < 1e-6);
        let one = score_from_logits(0, &[0.0]);
        assert_eq!(one.score, 0.5);
    }
}
