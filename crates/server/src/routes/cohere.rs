//! Cohere (and Jina, which shares the shape) `POST /v1/rerank` and `POST /v2/rerank`.
//!
//! Long documents follow the server's one long-document policy
//! ([`sift_models::LongDocumentPolicy`], by default: score every window, keep the best — as
//! Cohere documents for its own API). `max_chunks_per_doc` (v1) overrides its windows per
//! document and `max_tokens_per_doc` (v2) its tokens per document, for one request.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use utoipa::ToSchema;

use super::{check_items, rerank_documents, reranker};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::middleware::RequestId;
use crate::AppState;

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

async fn rerank(
    state: AppState,
    request_id: String,
    req: RerankRequest,
    version: &'static str,
    documents_by_default: bool,
) -> Result<Json<RerankResponse>, ApiError> {
    let batcher = reranker(&state)?;
    let top_n = positive("top_n", req.top_n)?;
    let mut policy = state.inner.long_documents;
    if let Some(n) = positive("max_chunks_per_doc", req.max_chunks_per_doc)? {
        policy.max_windows = n;
    }
    if let Some(n) = positive("max_tokens_per_doc", req.max_tokens_per_doc)? {
        policy.max_document_tokens = n;
    }
    if sift_models::is_blank(&req.query) {
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
    let model_name = req
        .model
        .or_else(|| Some(batcher.model().0.model_dir().name()));
    let docs = Arc::new(docs);
    let (mut scores, tokens) =
        rerank_documents(&state, req.query, docs.clone(), policy, false).await?;
    sift_models::rerank::sort_by_score(&mut scores);
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
