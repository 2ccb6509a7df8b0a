//! Hugging Face text-embeddings-inference: `/embed`, `/rerank`, `/tokenize`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    blocking, check_items, embedder, encode_texts, l2_normalize, rerank_documents, OneOrMany,
};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    inputs: OneOrMany,
    /// L2-normalise the vectors (default true).
    #[serde(default = "yes")]
    normalize: bool,
    /// Cut inputs longer than the model's limit instead of answering 413 (default: the server's
    /// --auto-truncate).
    #[serde(default)]
    truncate: Option<bool>,
    /// Accepted for compatibility; sift's models have no named prompts.
    #[serde(default)]
    #[allow(dead_code)]
    prompt_name: Option<String>,
    /// Accepted for compatibility; TEI ignores it for non-Matryoshka models too.
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
}

fn yes() -> bool {
    true
}

/// One vector per input, in input order.
#[utoipa::path(post, path = "/embed", tag = "TEI", request_body = EmbedRequest,
    responses(
        (status = 200, description = "one vector per input", body = Vec<Vec<f32>>),
        (status = 413, description = "too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn embed(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    let batcher = embedder(&state)?;
    let texts = req.inputs.into_vec();
    check_items(&state, texts.len(), "inputs")?;
    let truncate = req.truncate.unwrap_or(state.inner.limits.auto_truncate);
    let model = batcher.model().clone();
    let encoded = blocking(move || encode_texts(&model, &texts, truncate)).await?;
    let mut vectors = batcher
        .submit(encoded)
        .await
        .map_err(|e| ApiError::from_batch("embedding", e))?;
    if req.normalize {
        vectors.iter_mut().for_each(|v| l2_normalize(v));
    }
    Ok(Json(vectors))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    query: String,
    texts: Vec<String>,
    /// Return logits instead of sigmoid probabilities.
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    /// Accept documents of which some text goes unscored (beyond the server's long-document
    /// limits, or past the window under `--long-documents truncate`) instead of answering 413
    /// (default: the server's --auto-truncate).
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Rank {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// Scores every text against the query; sorted by descending score.
#[utoipa::path(post, path = "/rerank", tag = "TEI", request_body = RerankRequest,
    responses(
        (status = 200, description = "texts by descending score", body = Vec<Rank>),
        (status = 413, description = "too many texts, body too large, or a pair too long", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn rerank(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RerankRequest>,
) -> Result<Json<Vec<Rank>>, ApiError> {
    check_items(&state, req.texts.len(), "texts")?;
    let truncate = req.truncate.unwrap_or(state.inner.limits.auto_truncate);
    let texts = Arc::new(req.texts);
    let policy = state.inner.long_documents;
    // TEI's `truncate: false` refuses what the model cannot score whole; under the windows
    // rule a long text is scored whole (by windows), so only text beyond the window limits is.
    let (mut scores, _) =
        rerank_documents(&state, req.query, texts.clone(), policy, !truncate).await?;
    sift_models::rerank::sort_by_score(&mut scores);
    Ok(Json(
        scores
            .into_iter()
            .map(|s| Rank {
                index: s.index,
                score: if req.raw_scores { s.logit } else { s.score },
                text: req.return_text.then(|| texts[s.index].clone()),
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    inputs: OneOrMany,
    #[serde(default = "yes")]
    add_special_tokens: bool,
    #[serde(default)]
    #[allow(dead_code)]
    prompt_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SimpleToken {
    id: u32,
    text: String,
    special: bool,
    /// Byte offset of the token's first byte in the input (absent for special tokens).
    start: Option<usize>,
    /// Byte offset one past the token's last byte.
    stop: Option<usize>,
}

/// The tokens the model would see for each input (the embedding model's tokenizer, else the
/// rerank model's), truncated as the model truncates.
#[utoipa::path(post, path = "/tokenize", tag = "TEI", request_body = TokenizeRequest,
    responses(
        (status = 200, description = "tokens per input", body = Vec<Vec<SimpleToken>>),
        (status = 413, description = "too many inputs or body too large", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<Vec<Vec<SimpleToken>>>, ApiError> {
    let tokenizer = match (&state.inner.embedder, &state.inner.reranker) {
        (Some(e), _) => e.model().tokenizer().clone(),
        (None, Some(r)) => r.model().0.tokenizer().clone(),
        (None, None) => return Err(ApiError::unavailable("embedding model")),
    };
    let texts = req.inputs.into_vec();
    check_items(&state, texts.len(), "inputs")?;
    let add_special = req.add_special_tokens;
    let out = blocking(move || {
        texts
            .iter()
            .map(|t| {
                let enc = tokenizer
                    .inner()
                    .encode(t.as_str(), add_special)
                    .map_err(|e| ApiError::invalid(format!("tokenizer: {e}")))?;
                Ok(enc
                    .get_ids()
                    .iter()
                    .zip(enc.get_tokens())
                    .zip(enc.get_offsets())
                    .zip(enc.get_special_tokens_mask())
                    .map(|(((&id, token), &(start, stop)), &special)| {
                        let special = special == 1;
                        SimpleToken {
                            id,
                            text: if special {
                                token.clone()
                            } else {
                                t.get(start..stop).unwrap_or(token).to_owned()
                            },
                            special,
                            start: (!special).then_some(start),
                            stop: (!special).then_some(stop),
                        }
                    })
                    .collect())
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Json(out))
}
