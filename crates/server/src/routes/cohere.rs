//! Cohere (and Jina, which shares the shape) `POST /v1/rerank` and `POST /v2/rerank`.
//!
//! Long documents follow the server's one long-document policy
//! ([`sift_models::LongDocumentPolicy`], by default: score every window, keep the best — as
//! Cohere documents for its own API). `max_chunks_per_doc` (v1) overrides its windows per
//! document and `max_tokens_per_doc` (v2) its tokens per document, for one request.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

use utoipa::ToSchema;

use super::{check_items, rerank_documents, reranker, ScoringOverrides};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::middleware::RequestId;
use crate::AppState;

/// A document: a string, or an object of fields (Cohere's semi-structured documents), which is
/// returned whole.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RerankDocument {
    Text(String),
    #[schema(value_type = Object)]
    Object(Map<String, Value>),
}

/// What the model reads of document `i`. Without `rank_fields`: a string, or an object's `text`
/// field. With them: the named fields present in the object, in the order named — one field's
/// value alone (so `["text"]` scores as the default does), several as `name: value` lines (the
/// YAML-like form Cohere recommends for structured documents). Non-string values are written
/// as compact JSON.
fn text_to_score(
    i: usize,
    document: &RerankDocument,
    rank_fields: Option<&[String]>,
) -> Result<String, ApiError> {
    let fields = match (document, rank_fields) {
        (RerankDocument::Text(t), _) => return Ok(t.clone()),
        (RerankDocument::Object(fields), _) => fields,
    };
    let value_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let Some(names) = rank_fields else {
        return match fields.get("text") {
            Some(Value::String(t)) => Ok(t.clone()),
            Some(_) => Err(ApiError::invalid(format!(
                "document {i}: its text field must be a string"
            ))),
            None => Err(ApiError::invalid(format!(
                "document {i} has no text field; name the fields to rank with rank_fields"
            ))),
        };
    };
    let present: Vec<(&String, &Value)> = names
        .iter()
        .filter_map(|n| fields.get(n).map(|v| (n, v)))
        .collect();
    match present.as_slice() {
        [] => Err(ApiError::invalid(format!(
            "document {i} has none of the rank_fields {names:?}"
        ))),
        [(_, v)] => Ok(value_text(v)),
        many => Ok(many
            .iter()
            .map(|(n, v)| format!("{n}: {}", value_text(v)))
            .collect::<Vec<_>>()
            .join("\n")),
    }
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
    /// Fields of object documents the model reads (default: `text`).
    #[serde(default)]
    rank_fields: Option<Vec<String>>,
    /// LLM rerankers (sift's extension): this request's instruction (qwen3-reranker) or prompt
    /// (bge-llm) instead of the recipe's default or the server's --rerank-prompt.
    #[serde(default)]
    prompt: Option<String>,
    /// Layerwise cross-encoders (sift's extension): score with this many layers.
    #[serde(default)]
    rerank_layer: Option<usize>,
    /// Cross-encoders (sift's extension): `EXIT:KEEP`, score every document after layer EXIT
    /// of a layerwise model and finish the best KEEP; EXIT 0 scores the first KEEP in the
    /// order given and returns the rest after them, `dropped`.
    #[serde(default)]
    rerank_cascade: Option<String>,
    /// Cross-encoders (sift's extension): a latency budget in milliseconds for this request's
    /// reranking, as `--rerank-budget-ms`: the server picks how many candidates the full model
    /// scores (the rest keep their order) or, for a layerwise model, an exit or cascade.
    #[serde(default)]
    rerank_budget_ms: Option<f64>,
    /// Layerwise LLM rerankers (sift's extension): stop after this many layers and score with
    /// that layer's head, as `--cutoff-layer`.
    #[serde(default)]
    cutoff_layer: Option<usize>,
    /// Lightweight LLM rerankers (sift's extension): average the document's tokens in groups
    /// of this many (1, 2, 4 or 8; 1 turns compression off), as `--compress-ratio`.
    #[serde(default)]
    compress_ratio: Option<usize>,
    /// ... before each of these layers, as `--compress-layers`.
    #[serde(default)]
    compress_layers: Option<Vec<usize>>,
}

/// The document as it was sent: `{"text": …}` for a string, every field of an object.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ReturnedDocument {
    Text {
        text: String,
    },
    #[schema(value_type = Object)]
    Object(Map<String, Value>),
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
    check_items(&state, req.documents.len(), "documents")?;
    if req.rank_fields.as_ref().is_some_and(|f| f.is_empty()) {
        return Err(ApiError::invalid("rank_fields is empty"));
    }
    let docs: Vec<String> = req
        .documents
        .iter()
        .enumerate()
        .map(|(i, d)| text_to_score(i, d, req.rank_fields.as_deref()))
        .collect::<Result<_, _>>()?;
    let model_name = req
        .model
        .clone()
        .or_else(|| Some(batcher.model().0.model_dir().name()));
    let docs = Arc::new(docs);
    let (mut scores, tokens) = rerank_documents(
        &state,
        req.query.clone(),
        docs,
        policy,
        false,
        ScoringOverrides::new(
            req.prompt.clone(),
            req.rerank_layer,
            req.rerank_cascade.clone(),
            req.rerank_budget_ms,
            sift_models::rerank::LlmDepth {
                cutoff_layer: req.cutoff_layer,
                compress_ratio: req.compress_ratio,
                compress_layers: req.compress_layers.clone(),
            },
        )?,
    )
    .await?;
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
            document: return_documents.then(|| match &req.documents[s.index] {
                RerankDocument::Text(t) => ReturnedDocument::Text { text: t.clone() },
                RerankDocument::Object(fields) => ReturnedDocument::Object(fields.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> RerankDocument {
        match v {
            Value::Object(m) => RerankDocument::Object(m),
            _ => unreachable!("a test object"),
        }
    }

    #[test]
    fn rank_fields_choose_and_join_the_fields_scored() {
        let doc =
            object(serde_json::json!({"title": "Statins", "text": "Lower LDL.", "year": 2019}));
        assert_eq!(text_to_score(0, &doc, None).unwrap(), "Lower LDL.");
        let text = ["text".to_string()];
        assert_eq!(text_to_score(0, &doc, Some(&text)).unwrap(), "Lower LDL.");
        let both = ["title".to_string(), "missing".into(), "year".into()];
        assert_eq!(
            text_to_score(0, &doc, Some(&both)).unwrap(),
            "title: Statins\nyear: 2019"
        );
        let no_text = object(serde_json::json!({"title": "only a title"}));
        let e = text_to_score(3, &no_text, None).unwrap_err();
        assert!(
            e.message.contains("document 3 has no text field"),
            "{}",
            e.message
        );
        let title = ["title".to_string()];
        assert_eq!(
            text_to_score(3, &no_text, Some(&title)).unwrap(),
            "only a title"
        );
        let absent = ["body".to_string()];
        assert_eq!(
            text_to_score(1, &no_text, Some(&absent))
                .unwrap_err()
                .status,
            422
        );
        let plain = RerankDocument::Text("a string".into());
        assert_eq!(text_to_score(0, &plain, Some(&title)).unwrap(), "a string");
    }
}
