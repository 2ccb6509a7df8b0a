//! Cohere (and Jina, which shares the shape) `POST /v1/rerank` and `POST /v2/rerank`.
//!
//! Documents longer than the model's window are not just truncated: they are split into token
//! windows, every window is scored with the query, and the document gets its best window's
//! score — as Cohere documents for its own long-document handling. `max_chunks_per_doc` (v1,
//! default 10) caps the windows per document; `max_tokens_per_doc` (v2, default 4096) caps the
//! tokens considered per document.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sift_models::{CrossEncoder, Encoded, RerankScore};
use sift_pipeline::chunking::token_windows;
use utoipa::ToSchema;

use super::{blocking, check_items, reranker};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::middleware::RequestId;
use crate::AppState;

const DEFAULT_MAX_CHUNKS_PER_DOC: usize = 10;
const DEFAULT_MAX_TOKENS_PER_DOC: usize = 4096;

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RerankDocument {
    Text(String),
    Object { text: String },
}

#[derive(Deserialize, ToSchema)]
pub struct RerankRequest {
    /// Echoed back; the server reranks with the model it was started with.
    #[serde(default)]
    model: Option<String>,
    query: String,
    documents: Vec<RerankDocument>,
    /// Return only the best `top_n` (at least 1).
    #[serde(default)]
    top_n: Option<i64>,
    /// Include each document's text (default: true on v1, false on v2).
    #[serde(default)]
    return_documents: Option<bool>,
    /// v1: most windows scored per long document.
    #[serde(default)]
    max_chunks_per_doc: Option<i64>,
    /// v2: most tokens of each document considered.
    #[serde(default)]
    max_tokens_per_doc: Option<i64>,
    /// Accepted for compatibility (structured documents are not supported).
    #[serde(default)]
    #[allow(dead_code)]
    rank_fields: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ReturnedDocument {
    text: String,
}

#[derive(Serialize, ToSchema)]
pub struct RerankResult {
    index: usize,
    /// Sigmoid (or two-label softmax) of the model's logit, in [0, 1].
    relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<ReturnedDocument>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiVersion {
    version: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct BilledUnits {
    search_units: u32,
}

#[derive(Serialize, ToSchema)]
pub struct Meta {
    api_version: ApiVersion,
    billed_units: BilledUnits,
}

/// Jina's usage block.
#[derive(Serialize, ToSchema)]
pub struct TokenUsage {
    total_tokens: usize,
}

#[derive(Serialize, ToSchema)]
pub struct RerankResponse {
    id: String,
    model: Option<String>,
    results: Vec<RerankResult>,
    meta: Meta,
    usage: TokenUsage,
}

fn positive(name: &str, v: Option<i64>) -> Result<Option<usize>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::invalid(format!(
            "{name} must be at least 1, got {n}"
        ))),
    }
}

/// Tokenized (query, window) pairs and, for each, the document it came from.
fn chunked_pairs(
    model: &CrossEncoder,
    query: &str,
    docs: &[String],
    max_chunks: usize,
    max_tokens: usize,
) -> Result<(Vec<Encoded>, Vec<usize>), ApiError> {
    let tok = model.tokenizer();
    let max = tok.max_length();
    let query_tokens = tok.count_tokens(query)?;
    // Room for the document beside the query and up to four special tokens; a query that
    // leaves less than 16 tokens is cut by the pair tokenizer anyway.
    let room = max.saturating_sub(query_tokens + 4).max(16);
    let mut pairs = Vec::new();
    let mut owners = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if doc.trim().is_empty() {
            return Err(ApiError::invalid(format!("document {i} is empty")));
        }
        let offsets = tok.token_offsets(doc)?;
        let windows = if offsets.len() <= room {
            vec![(0, doc.len())]
        } else {
            let considered = &offsets[..offsets.len().min(max_tokens)];
            let end = considered.last().map_or(doc.len(), |o| o.1);
            let mut w = token_windows(&doc[..end], considered, room, room / 8);
            w.truncate(max_chunks);
            w
        };
        for (s, e) in windows {
            pairs.push(tok.encode_pair(query, &doc[s..e])?);
            owners.push(i);
        }
    }
    Ok((pairs, owners))
}

async fn rerank(
    state: AppState,
    request_id: String,
    req: RerankRequest,
    version: &'static str,
    documents_by_default: bool,
) -> Result<Json<RerankResponse>, ApiError> {
    let batcher = reranker(&state)?;
    let top_n = positive("top_n", req.top_n)?;
    let max_chunks = positive("max_chunks_per_doc", req.max_chunks_per_doc)?
        .unwrap_or(DEFAULT_MAX_CHUNKS_PER_DOC);
    let max_tokens = positive("max_tokens_per_doc", req.max_tokens_per_doc)?
        .unwrap_or(DEFAULT_MAX_TOKENS_PER_DOC);
    if req.query.trim().is_empty() {
        return Err(ApiError::invalid("query is empty"));
    }
    let docs: Vec<String> = req
        .documents
        .into_iter()
        .map(|d| match d {
            RerankDocument::Text(t) | RerankDocument::Object { text: t } => t,
        })
        .collect();
    check_items(&state, docs.len(), "documents")?;
    let model = batcher.model().clone();
    let model_name = req.model.or_else(|| Some(model.model_dir().name()));
    let n_docs = docs.len();
    let (pairs, owners, docs) = blocking(move || {
        let (pairs, owners) = chunked_pairs(&model, &req.query, &docs, max_chunks, max_tokens)?;
        Ok((pairs, owners, docs))
    })
    .await?;
    let tokens: usize = pairs.iter().map(|p| p.len()).sum();
    let window_scores = batcher
        .submit(pairs)
        .await
        .map_err(|e| ApiError::from_batch("rerank", e))?;
    // Each document keeps its best window.
    let mut best: Vec<Option<RerankScore>> = vec![None; n_docs];
    for (owner, s) in owners.into_iter().zip(window_scores) {
        let slot = &mut best[owner];
        if slot.as_ref().is_none_or(|b| s.logit > b.logit) {
            *slot = Some(RerankScore { index: owner, ..s });
        }
    }
    let mut scores: Vec<RerankScore> = best.into_iter().flatten().collect();
    sift_models::cross_encoder::sort_by_score(&mut scores);
    if let Some(n) = top_n {
        scores.truncate(n);
    }
    let return_documents = req.return_documents.unwrap_or(documents_by_default);
    let results = scores
        .iter()
        .map(|s| RerankResult {
            index: s.index,
            relevance_score: s.score,
            document: return_documents.then(|| ReturnedDocument {
                text: docs[s.index].clone(),
            }),
        })
        .collect();
    Ok(Json(RerankResponse {
        id: request_id,
        model: model_name,
        results,
        meta: Meta {
            api_version: ApiVersion { version },
            billed_units: BilledUnits { search_units: 1 },
        },
        usage: TokenUsage {
            total_tokens: tokens,
        },
    }))
}

/// Cohere v1 / Jina rerank: documents returned by default.
#[utoipa::path(post, path = "/v1/rerank", tag = "Cohere/Jina", request_body = RerankRequest,
    responses(
        (status = 200, body = RerankResponse),
        (status = 413, description = "too many documents or body too large", body = ErrorBody),
        (status = 422, description = "invalid request (e.g. top_n < 1)", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn rerank_v1(
    State(state): State<AppState>,
    axum::Extension(id): axum::Extension<RequestId>,
    ApiJson(req): ApiJson<RerankRequest>,
) -> Result<Json<RerankResponse>, ApiError> {
    rerank(state, id.0, req, "1", true).await
}

/// Cohere v2 rerank: documents not returned unless asked.
#[utoipa::path(post, path = "/v2/rerank", tag = "Cohere/Jina", request_body = RerankRequest,
    responses(
        (status = 200, body = RerankResponse),
        (status = 413, description = "too many documents or body too large", body = ErrorBody),
        (status = 422, description = "invalid request (e.g. top_n < 1)", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn rerank_v2(
    State(state): State<AppState>,
    axum::Extension(id): axum::Extension<RequestId>,
    ApiJson(req): ApiJson<RerankRequest>,
) -> Result<Json<RerankResponse>, ApiError> {
    rerank(state, id.0, req, "2", false).await
}
