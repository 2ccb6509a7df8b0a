//! The rerank stage's seam: one [`Reranker`] interface that every caller (the pipeline,
//! `sift rerank`, `sift eval`, the server's TEI, Cohere and Jina routes) scores through, one
//! long-document policy ([`LongDocumentPolicy`]) applied the same way for all of them, and one
//! loader ([`load_reranker`]) that picks the implementation from the model directory.
//!
//! A caller goes: [`prepare`] the (query, document) pairs — windows of long documents under the
//! policy — then score the pairs (directly with [`Reranker::score_pairs`], or through the
//! server's batching queue), then [`PreparedPairs::document_scores`] folds window scores back
//! into one score per document (the best window's).

mod budget;
mod cascade;
mod load;
mod long_documents;
mod settings;

pub use budget::{BudgetChoice, CostModel, LatencyBudget, RerankPlan, MIN_CASCADE_KEEP};
pub use cascade::Cascade;
pub use load::load_reranker;
pub use long_documents::{
    prepare, LongDocumentMode, LongDocumentPolicy, PairOwners, PreparedPairs,
    DEFAULT_MAX_DOCUMENT_TOKENS, DEFAULT_MAX_WINDOWS,
};
pub use settings::{RerankSettings, RERANK_SETTINGS_FILE};

use crate::batch::RowStates;
use crate::error::Result;
use crate::model_dir::ModelDir;
use crate::tokenize::{Encoded, TextTokenizer};
use crate::EngineOptions;

/// How to load a rerank model; `None` keeps what the model directory says.
#[derive(Debug, Clone, Default)]
pub struct RerankerOptions {
    /// Tokens per scored pair, special tokens and template included; the document is cut first.
    pub max_length: Option<usize>,
    /// Padded tokens per forward pass.
    pub max_batch_tokens: Option<usize>,
    pub engine: EngineOptions,
    /// LLM rerankers: the scoring recipe; `None` picks the one the model was published with.
    pub template: Option<crate::llm_reranker::RerankTemplate>,
    /// LLM rerankers: the recipe's instruction (Qwen3) or prompt (bge) instead of its default.
    pub prompt: Option<String>,
    /// LLM rerankers: run the prefix a batch's pairs share once (default on; off only to
    /// measure what it saves).
    pub share_prefix: Option<bool>,
    /// Layerwise LLM rerankers: stop after this many layers and score with that layer's head
    /// (default: all layers).
    pub cutoff_layer: Option<usize>,
    /// Lightweight LLM rerankers (bge-reranker-v2.5-gemma2-lightweight): average the document's
    /// tokens in groups of this many (1, 2, 4 or 8; default 1: no compression) ...
    pub compress_ratio: Option<usize>,
    /// ... before each of these layers (default: 8, FlagEmbedding's).
    pub compress_layers: Option<Vec<usize>>,
    /// Layerwise cross-encoders (`sift train-reranker --layerwise`): score with this many
    /// layers and that exit's head (default: all layers).
    pub exit_layer: Option<usize>,
    /// Layerwise cross-encoders: rerank each query's candidates through this cascade.
    pub cascade: Option<Cascade>,
    /// Cross-encoders: a latency budget per query in milliseconds; each query's candidates
    /// get the deepest plan (full model, cascade, early exit) whose estimated time fits, by a
    /// cost model measured when the model loads.
    pub budget_ms: Option<f64>,
}

/// How deep a layerwise LLM reranker runs for one request (see [`Reranker::with_depth`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmDepth {
    /// Stop after this many layers and score with that layer's head.
    pub cutoff_layer: Option<usize>,
    /// Average the document's tokens in groups of this many (1: no compression).
    pub compress_ratio: Option<usize>,
    /// ... before each of these layers.
    pub compress_layers: Option<Vec<usize>>,
}

impl LlmDepth {
    /// Whether nothing is asked of the model's loaded setting.
    pub fn is_unset(&self) -> bool {
        *self == LlmDepth::default()
    }
}

/// The score of one document (or one window of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RerankScore {
    /// Position of the document in the input.
    pub index: usize,
    /// The relevant label's raw logit (unbounded; comparable within one model).
    pub logit: f32,
    /// Probability of relevance in [0, 1]: sigmoid of the logit for one-label models, softmax
    /// of the relevant label for two-label models.
    pub score: f32,
    /// A rerank cascade ([`Cascade`]) scored this candidate at its early exit only and did not
    /// finish it: `logit` and `score` are the early head's (from exit 0, the lowest a scored
    /// candidate got), and it ranks below every finished candidate whatever they say. Always
    /// `false` without a cascade.
    pub dropped: bool,
}

/// A model that scores how relevant a document is to a query.
///
/// Contract, for every implementation:
/// - [`Reranker::encode_pair`] is pure and deterministic: the same (query, document) gives the
///   same tokens, so a pair prepared on one thread can be scored on another (the server
///   tokenizes on request threads and scores on its batching worker).
/// - [`Reranker::score_pairs`] returns exactly one score per input pair, in input order, with
///   `index` = the pair's position; the score of a pair does not depend on which other pairs
///   share its forward pass (padding is masked), so batching across requests is invisible.
/// - Higher `logit` means more relevant; `score` is a monotone map of `logit` into [0, 1].
/// - Failures are typed errors, never panics; an empty query or document is
///   [`crate::ModelError::InvalidInput`].
///
/// It is a trait, not an enum, because implementations differ in everything but this surface
/// (encoder cross-encoders today; decoder LLM rerankers with prompt templates next) and the
/// callers — pipeline, server, CLI, eval — must not change when one is added: they hold an
/// `Arc<dyn Reranker>` from [`load_reranker`].
pub trait Reranker: Send + Sync {
    /// The directory the model was loaded from (its name is what APIs report).
    fn model_dir(&self) -> &ModelDir;

    /// Weight of the first stage's ranking in the final order that this model's directory
    /// recommends ([`RerankSettings`]); 0 (the reranker alone) when it says nothing.
    fn first_stage_weight(&self) -> f32 {
        self.model_dir()
            .rerank_settings
            .first_stage_weight
            .unwrap_or(0.0)
    }

    /// `candle`, `onnx-f32` or `onnx-int8`.
    fn engine_name(&self) -> &'static str;

    /// The tokenizer, with this model's max length.
    fn tokenizer(&self) -> &TextTokenizer;

    /// Most tokens of one scored pair, everything included.
    fn max_length(&self) -> usize {
        self.tokenizer().max_length()
    }

    /// Tokens one pair with `query` spends besides the document's own tokens (the query,
    /// special tokens, any prompt template): what the long-document policy subtracts from
    /// [`Reranker::max_length`] to size windows.
    fn pair_overhead(&self, query: &str) -> Result<usize>;

    /// Tokens of one (query, document) input, the document cut to fit first; `true` when
    /// anything was cut.
    fn encode_pair(&self, query: &str, document: &str) -> Result<(Encoded, bool)>;

    /// This model with its recipe's instruction or prompt replaced, sharing its weights (LLM
    /// rerankers: the per-request `prompt` of the server's rerank routes). Pairs it encodes are
    /// scored by either model alike. Models without a prompt refuse.
    fn with_prompt(&self, prompt: &str) -> Result<std::sync::Arc<dyn Reranker>> {
        let _ = prompt;
        Err(crate::ModelError::InvalidInput(format!(
            "{} reads the query and the document alone: it has no prompt to replace (prompts apply to LLM rerankers)",
            self.model_dir().name()
        )))
    }

    /// Scores prepared pairs in input order, calling `progress(n)` after each forward pass of
    /// `n` pairs.
    fn score_pairs(
        &self,
        pairs: &[Encoded],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<RerankScore>>;

    /// This model scoring at another exit layer or through a cascade (`None`, `None`: its
    /// last layer), sharing its weights: the per-request `rerank_layer` / `rerank_cascade` of
    /// the server's rerank routes. Models without early exits refuse anything but the last
    /// layer.
    fn with_exit(
        &self,
        exit_layer: Option<usize>,
        cascade: Option<Cascade>,
    ) -> Result<std::sync::Arc<dyn Reranker>> {
        let _ = (exit_layer, cascade);
        Err(crate::ModelError::InvalidInput(format!(
            "{} has no early exits: rerank_layer and rerank_cascade apply to layerwise cross-encoders",
            self.model_dir().name()
        )))
    }

    /// This model planning each query under a latency budget of `ms` milliseconds (the
    /// server's per-request `rerank_budget_ms`), sharing its weights and its cost model:
    /// measured when the model loaded with a budget, else on the first call (a few forward
    /// passes of 16 full-length pairs). Models without a cost model (LLM rerankers) refuse.
    fn with_budget(&self, ms: f64) -> Result<std::sync::Arc<dyn Reranker>> {
        let _ = ms;
        Err(crate::ModelError::InvalidInput(format!(
            "{} plans no latency budget: rerank_budget_ms applies to cross-encoders",
            self.model_dir().name()
        )))
    }

    /// This layerwise LLM reranker stopping at another layer and/or compressing the document
    /// tokens differently (the server's per-request `cutoff_layer`, `compress_ratio`,
    /// `compress_layers`), sharing its weights; fields left `None` keep the loaded setting.
    /// Models without layerwise heads refuse.
    fn with_depth(&self, depth: &LlmDepth) -> Result<std::sync::Arc<dyn Reranker>> {
        let _ = depth;
        Err(crate::ModelError::InvalidInput(format!(
            "{} is not a layerwise LLM reranker: cutoff_layer, compress_ratio and compress_layers apply to bge-reranker-v2-minicpm-layerwise and bge-reranker-v2.5-gemma2-lightweight",
            self.model_dir().name()
        )))
    }

    /// The layers this model can score after, counted from 1, the last included: more than
    /// one for layerwise cross-encoders, none for models without exit heads.
    fn exit_layers(&self) -> Vec<usize> {
        Vec::new()
    }

    /// The cascade each query's candidates go through ([`score_prepared`] runs it); `None`
    /// scores every candidate the same way.
    fn cascade(&self) -> Option<Cascade> {
        None
    }

    /// The latency budget each query's candidates are planned under ([`score_prepared`]);
    /// `None` without one.
    fn budget(&self) -> Option<&LatencyBudget> {
        None
    }

    /// A cascade's first stage: scores at exit layer `exit` (an early one), in input order,
    /// with each pair's token states there for [`Reranker::finish_pairs`].
    fn score_pairs_partway(
        &self,
        pairs: &[Encoded],
        exit: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Vec<RerankScore>, Vec<RowStates>)> {
        let _ = (pairs, exit, progress);
        Err(crate::ModelError::InvalidInput(format!(
            "{} has no early exits (train a layerwise reranker with sift train-reranker --layerwise)",
            self.model_dir().name()
        )))
    }

    /// A cascade's second stage: runs the layers after `from` over saved token states and
    /// scores with the last layer's head, in input order. A pair's score equals what
    /// [`Reranker::score_pairs`] gives it at the last layer (to float rounding).
    fn finish_pairs(
        &self,
        states: &[&RowStates],
        from: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<RerankScore>> {
        let _ = (states, from, progress);
        Err(crate::ModelError::InvalidInput(format!(
            "{} has no early exits to finish from",
            self.model_dir().name()
        )))
    }
}

/// How one query's prepared pairs will be scored: the model's budget's choice, else its
/// cascade, else every pair through every layer; with the budget's estimate when it chose.
pub fn plan_for(reranker: &dyn Reranker, prepared: &PreparedPairs) -> BudgetChoice {
    match (reranker.budget(), reranker.cascade()) {
        (Some(budget), _) => budget.choose_for(prepared),
        (None, cascade) => BudgetChoice {
            plan: cascade.map_or(RerankPlan::Full, RerankPlan::Cascade),
            estimated_ms: f64::NAN,
        },
    }
}

/// One query's document scores from its prepared pairs as `choice` ([`plan_for`]) says;
/// windows folded into their documents. A budget's choice reports the query's observed time —
/// tokenizing and scoring — back to the budget ([`LatencyBudget::record`]).
pub fn score_planned(
    reranker: &dyn Reranker,
    prepared: &PreparedPairs,
    choice: BudgetChoice,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RerankScore>> {
    let started = std::time::Instant::now();
    let scores = score_plan(reranker, prepared, choice.plan, progress)?;
    if let Some(budget) = reranker.budget() {
        let scoring = started.elapsed().as_secs_f64() * 1000.0;
        budget.record(choice.estimated_ms, prepared.prepare_ms() + scoring);
    }
    Ok(scores)
}

fn score_plan(
    reranker: &dyn Reranker,
    prepared: &PreparedPairs,
    plan: RerankPlan,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RerankScore>> {
    match plan {
        RerankPlan::Cascade(c) => cascade::cascade_document_scores(reranker, prepared, c, progress),
        RerankPlan::Exit(layer) => {
            let early = reranker.with_exit(Some(layer), None)?;
            let windows = early.score_pairs(prepared.pairs(), progress)?;
            prepared.document_scores(&windows)
        }
        RerankPlan::Full => {
            let windows = reranker.score_pairs(prepared.pairs(), progress)?;
            prepared.document_scores(&windows)
        }
    }
}

/// One query's document scores from its prepared pairs, as the model plans them
/// ([`plan_for`], [`score_planned`]).
pub fn score_prepared(
    reranker: &dyn Reranker,
    prepared: &PreparedPairs,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RerankScore>> {
    score_planned(reranker, prepared, plan_for(reranker, prepared), progress)
}

/// The one map from a logit to a probability-like score, `1 / (1 + e^-x)`.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// What every [`Reranker::score_pairs`] does around its forward passes: plans batches of at
/// most `max_batch_tokens` padded tokens within each group of pair indices (every pair in
/// exactly one group), calls `score(slots)` for each batch — one score per slot, in slot
/// order — puts each score at its pair's position, and reports progress per batch.
pub(crate) fn score_in_batches(
    lengths: &[usize],
    groups: Vec<Vec<usize>>,
    max_batch_tokens: usize,
    mut score: impl FnMut(&[usize]) -> Result<Vec<RerankScore>>,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RerankScore>> {
    let unscored = RerankScore {
        index: 0,
        logit: f32::NAN,
        score: f32::NAN,
        dropped: false,
    };
    let mut out = vec![unscored; lengths.len()];
    for group in groups {
        let group_lengths: Vec<usize> = group.iter().map(|&i| lengths[i]).collect();
        for batch in crate::batch::plan_batches(&group_lengths, max_batch_tokens) {
            let slots: Vec<usize> = batch.iter().map(|&j| group[j]).collect();
            for (&slot, s) in slots.iter().zip(score(&slots)?) {
                out[slot] = RerankScore { index: slot, ..s };
            }
            progress(slots.len());
        }
    }
    Ok(out)
}

/// Scores of `documents` for `query` under `policy`, one per document in input order.
pub fn score_documents(
    reranker: &dyn Reranker,
    query: &str,
    documents: &[impl AsRef<str>],
    policy: &LongDocumentPolicy,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RerankScore>> {
    let prepared = prepare(reranker, query, documents, policy)?;
    score_prepared(reranker, &prepared, progress)
}

/// Documents sorted by descending score ([`sort_by_score`]), cut to `top_k`.
pub fn rerank(
    reranker: &dyn Reranker,
    query: &str,
    documents: &[impl AsRef<str>],
    policy: &LongDocumentPolicy,
    top_k: Option<usize>,
) -> Result<Vec<RerankScore>> {
    let mut scores = score_documents(reranker, query, documents, policy, &mut |_| {})?;
    sort_by_score(&mut scores);
    if let Some(k) = top_k {
        scores.truncate(k);
    }
    Ok(scores)
}

/// The one order of reranked results everywhere: candidates a cascade finished before those
/// it dropped, then descending logit, NaN last, ties by input position.
pub fn sort_by_score(scores: &mut [RerankScore]) {
    scores.sort_by(|a, b| {
        a.dropped
            .cmp(&b.dropped)
            .then(compare_logits(a.logit, b.logit))
            .then(a.index.cmp(&b.index))
    });
}

/// Descending order of two logits with NaN after every number (and equal to another NaN).
pub fn compare_logits(a: f32, b: f32) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.total_cmp(&a),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorting_is_descending_and_stable_with_nan_last() {
        let mk = |index, logit| RerankScore {
            index,
            logit,
            score: 0.0,
            dropped: false,
        };
        let mut v = vec![
            mk(0, 1.0),
            mk(1, f32::NAN),
            mk(2, 5.0),
            mk(3, 1.0),
            mk(4, -f32::NAN),
            mk(5, f32::NEG_INFINITY),
        ];
        sort_by_score(&mut v);
        let order: Vec<usize> = v.iter().map(|s| s.index).collect();
        assert_eq!(order, vec![2, 0, 3, 5, 1, 4]);
    }
}
