//! Route handlers, one module per API family. Request and response shapes follow the original
//! APIs field for field (docs/api.md cites them).

pub mod cohere;
pub mod collections;
pub mod inputs;
pub mod meta;
pub mod openai;
pub mod playground;
pub mod tei;

use std::sync::Arc;

use axum::http::StatusCode;
use serde::Deserialize;
use sift_models::{Embedder, Encoded, LongDocumentPolicy, RerankScore, Reranker, TextTokenizer};
use utoipa::ToSchema;

use crate::batcher::{Batcher, RerankModel};
use crate::error::ApiError;
use crate::AppState;

/// A string or a list of strings (`inputs` / `input`).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

fn embedder(state: &AppState) -> Result<&Batcher<Embedder>, ApiError> {
    state
        .inner
        .embedder
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("embedding model"))
}

fn reranker(state: &AppState) -> Result<&Batcher<RerankModel>, ApiError> {
    state
        .inner
        .reranker
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("rerank model"))
}

fn check_items(state: &AppState, n: usize, what: &str) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::invalid(format!("{what} is empty")));
    }
    let max = state.inner.limits.max_items;
    if n > max {
        return Err(ApiError::too_large(format!(
            "{n} {what} in one request; the limit is {max} (max_items)"
        )));
    }
    Ok(())
}

/// Runs CPU-bound work (tokenizing, opening collections, searching) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

fn too_long(i: usize, tokens: usize, max: usize) -> ApiError {
    ApiError::too_large(format!(
        "input {i} has {tokens} tokens; the model's limit is {max} (send \"truncate\": true, or start the server with --auto-truncate)"
    ))
}

/// Tokenizes text `i` of a request; with `truncate` off, refuses it when longer than the
/// model's maximum (413 naming the limit and the text's real token count) instead of silently
/// cutting it. Whether a text was cut is read from the tokenizer's own output.
fn encode_text(
    tokenizer: &TextTokenizer,
    i: usize,
    text: &str,
    truncate: bool,
) -> Result<Encoded, ApiError> {
    if sift_models::is_blank(text) {
        return Err(ApiError::invalid(format!(
            "text {i} is empty; there is nothing to embed"
        )));
    }
    let (encoded, cut) = tokenizer.encode_checked(text)?;
    if cut && !truncate {
        let tokens = tokenizer.len_untruncated(text)?;
        return Err(too_long(i, tokens, tokenizer.max_length()));
    }
    Ok(encoded)
}

/// Scores `documents` for `query` under `policy` through the rerank batching queue: one score
/// per document, in input order, and the tokens scored. With `refuse_cut`, a document of which
/// any text would go unscored is refused with 413 (TEI's `truncate: false`). `prompt` replaces
/// an LLM reranker's instruction or prompt for this request (422 for a cross-encoder).
async fn rerank_documents(
    state: &AppState,
    query: String,
    documents: Arc<Vec<String>>,
    policy: LongDocumentPolicy,
    refuse_cut: bool,
    scoring: ScoringOverrides,
) -> Result<(Vec<RerankScore>, usize), ApiError> {
    let batcher = reranker(state)?;
    let model: Arc<dyn Reranker> = batcher.model().0.clone();
    let (prepared, tokens) = blocking(move || {
        // A request's own prompt: a view of the same model encodes the pairs; the batching
        // worker scores them with the shared weights like any other pairs.
        let model = match scoring.prompt.as_deref() {
            Some(p) => model.with_prompt(p)?,
            None => model,
        };
        // Its own exit or cascade (cross-encoders) or depth (layerwise LLMs): a view that
        // scores differently, so it scores its pairs itself, outside the batching queue.
        let own_exit = scoring.layer.is_some() || scoring.cascade.is_some();
        let model = if own_exit {
            model.with_exit(scoring.layer, scoring.cascade)?
        } else {
            model
        };
        // Its own budget: planned per query like a cascade.
        let model = match scoring.budget_ms {
            Some(ms) => model.with_budget(ms)?,
            None => model,
        };
        let own_depth = !scoring.depth.is_unset();
        let model = if own_depth {
            model.with_depth(&scoring.depth)?
        } else {
            model
        };
        let own_exit = own_exit || own_depth;
        // A cascade or a budget plans per query.
        let cascade = model.cascade().is_some() || model.budget().is_some();
        let prepared = sift_models::rerank::prepare(model.as_ref(), &query, &documents, &policy)?;
        if refuse_cut {
            if let Some(i) = prepared.first_truncated() {
                let tokens = model
                    .tokenizer()
                    .pair_len_untruncated(&query, &documents[i])?;
                return Err(too_long(i, tokens, model.max_length()));
            }
        }
        let tokens = prepared.tokens();
        if cascade || own_exit {
            // A cascade decides per query which candidates to finish, so it cannot share
            // forward passes with other requests: it runs here, outside the batching queue.
            let scores =
                sift_models::rerank::score_prepared(model.as_ref(), &prepared, &mut |_| {})?;
            return Ok((Prepared::Scored(scores), tokens));
        }
        Ok((Prepared::ToQueue(prepared), tokens))
    })
    .await?;
    let prepared = match prepared {
        Prepared::ToQueue(p) => p,
        Prepared::Scored(scores) => return Ok((scores, tokens)),
    };
    let (pairs, owners) = prepared.into_pairs();
    let windows = batcher
        .submit(pairs)
        .await
        .map_err(|e| ApiError::from_batch("rerank", e))?;
    Ok((owners.document_scores(&windows)?, tokens))
}

/// What one rerank request changes about how the model scores (sift's extensions to the
/// TEI, Cohere and Jina rerank bodies).
#[derive(Debug, Default)]
pub(crate) struct ScoringOverrides {
    /// An LLM reranker's instruction or prompt.
    pub prompt: Option<String>,
    /// A layerwise cross-encoder's exit layer.
    pub layer: Option<usize>,
    /// A layerwise cross-encoder's cascade.
    pub cascade: Option<sift_models::rerank::Cascade>,
    /// A cross-encoder's latency budget in milliseconds (it picks the exit or cascade).
    pub budget_ms: Option<f64>,
    /// A layerwise LLM reranker's cutoff layer and token compression.
    pub depth: sift_models::rerank::LlmDepth,
}

impl ScoringOverrides {
    /// From the request's fields; a malformed cascade, or a budget beside an exit or cascade
    /// (the budget chooses those itself), is a 422.
    pub fn new(
        prompt: Option<String>,
        layer: Option<usize>,
        cascade: Option<String>,
        budget_ms: Option<f64>,
        depth: sift_models::rerank::LlmDepth,
    ) -> Result<Self, ApiError> {
        let cascade = cascade.map(|c| c.parse()).transpose()?;
        if budget_ms.is_some() && (layer.is_some() || cascade.is_some()) {
            return Err(ApiError::invalid(
                "rerank_budget_ms chooses the exit layer and cascade itself: send it without rerank_layer or rerank_cascade",
            ));
        }
        Ok(ScoringOverrides {
            prompt,
            layer,
            cascade,
            budget_ms,
            depth,
        })
    }
}

/// A rerank request after its blocking part: scored already (a cascade), or pairs for the
/// batching queue.
enum Prepared {
    Scored(Vec<RerankScore>),
    ToQueue(sift_models::rerank::PreparedPairs),
}

/// L2-normalises in place (zero vectors stay zero).
fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
