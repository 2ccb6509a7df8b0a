//! Route handlers. Request and response shapes follow the original APIs field for field.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sift_models::{CrossEncoder, Embedder, RerankScore, TextRole};

use crate::error::ApiError;
use crate::json::ApiJson;
use crate::AppState;

type ApiResult = Result<Json<Value>, ApiError>;

/// A string or a list of strings (`inputs` / `input`).
#[derive(Deserialize)]
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

fn embedder(state: &AppState) -> Result<Arc<Embedder>, ApiError> {
    state
        .embedder
        .clone()
        .ok_or_else(|| ApiError::unavailable("embedding model"))
}

fn reranker(state: &AppState) -> Result<Arc<CrossEncoder>, ApiError> {
    state
        .reranker
        .clone()
        .ok_or_else(|| ApiError::unavailable("rerank model"))
}

fn check_items(state: &AppState, n: usize, what: &str) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::invalid(format!("{what} is empty")));
    }
    if n > state.limits.max_items {
        return Err(ApiError::too_large(format!(
            "{n} {what} in one request; the limit is {} (max_items)",
            state.limits.max_items
        )));
    }
    Ok(())
}

/// Runs CPU-bound inference off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:016x}-{:08x}",
        nanos as u64,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see GET /info",
    )
}

pub async fn info(State(state): State<AppState>) -> Json<Value> {
    let describe = |dir: &sift_models::ModelDir, max: usize| json!({ "model_id": dir.name(), "architecture": dir.config.architecture_name, "max_input_length": max });
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "embedding_model": state.embedder.as_ref().map(|e| {
            let mut v = describe(e.model_dir(), e.tokenizer().max_length());
            v["dimensions"] = json!(e.dim());
            v
        }),
        "rerank_model": state.reranker.as_ref().map(|r| describe(r.model_dir(), r.tokenizer().max_length())),
        "max_client_batch_size": state.limits.max_items,
        "max_body_bytes": state.limits.max_body_bytes,
    }))
}

// ---- TEI -------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeiEmbedRequest {
    inputs: OneOrMany,
    #[serde(default = "yes")]
    normalize: bool,
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    #[allow(dead_code)]
    prompt_name: Option<String>,
}

fn yes() -> bool {
    true
}

/// TEI rejects over-long inputs unless `truncate` is set; so does sift on this route.
fn check_lengths(texts: &[String], embedder: &Embedder, truncate: bool) -> Result<(), ApiError> {
    if truncate {
        return Ok(());
    }
    let max = embedder.tokenizer().max_length();
    for (i, t) in texts.iter().enumerate() {
        let tokens = embedder.tokenizer().count_tokens(t)? + 2;
        if tokens > max {
            return Err(ApiError::too_large(format!(
                "input {i} has {tokens} tokens; the model's limit is {max} (send \"truncate\": true to cut it)"
            )));
        }
    }
    Ok(())
}

pub async fn tei_embed(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TeiEmbedRequest>,
) -> ApiResult {
    let embedder = embedder(&state)?;
    let texts = req.inputs.into_vec();
    check_items(&state, texts.len(), "inputs")?;
    let vectors = blocking(move || {
        check_lengths(&texts, &embedder, req.truncate)?;
        let encoded = embedder.encode(&texts, TextRole::Raw)?;
        Ok(embedder.embed_encoded_with(&encoded, req.normalize, &mut |_| {})?)
    })
    .await?;
    Ok(Json(json!(vectors)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeiRerankRequest {
    query: String,
    texts: Vec<String>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    #[serde(default)]
    #[allow(dead_code)]
    truncate: bool,
}

async fn score(
    state: &AppState,
    query: String,
    docs: Vec<String>,
) -> Result<Vec<RerankScore>, ApiError> {
    let reranker = reranker(state)?;
    check_items(state, docs.len(), "documents")?;
    blocking(move || {
        let mut scores = reranker.score(&query, &docs)?;
        sift_models::cross_encoder::sort_by_score(&mut scores);
        Ok(scores)
    })
    .await
}

pub async fn tei_rerank(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TeiRerankRequest>,
) -> ApiResult {
    let texts = req.texts.clone();
    let scores = score(&state, req.query, req.texts).await?;
    let out: Vec<Value> = scores
        .iter()
        .map(|s| {
            let mut v = json!({ "index": s.index, "score": if req.raw_scores { s.logit } else { s.score } });
            if req.return_text {
                v["text"] = json!(texts[s.index]);
            }
            v
        })
        .collect();
    Ok(Json(json!(out)))
}

// ---- OpenAI ----------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct OpenAiEmbeddingsRequest {
    input: OneOrMany,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<i64>,
}

pub async fn openai_embeddings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<OpenAiEmbeddingsRequest>,
) -> ApiResult {
    let embedder = embedder(&state)?;
    let texts = req.input.into_vec();
    check_items(&state, texts.len(), "input")?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "encoding_format {other:?}: expected \"float\" or \"base64\""
            )))
        }
    };
    let dim = embedder.dim();
    let dimensions = match req.dimensions {
        None => None,
        Some(d) if d >= 1 && (d as usize) <= dim => Some(d as usize),
        Some(d) => {
            return Err(ApiError::invalid(format!(
                "dimensions must be between 1 and {dim}, got {d}"
            )))
        }
    };
    let model_name = req.model.unwrap_or_else(|| embedder.model_dir().name());
    let (vectors, tokens) = blocking(move || {
        let encoded = embedder.encode(&texts, TextRole::Raw)?;
        let tokens: usize = encoded.iter().map(|e| e.len()).sum();
        Ok((embedder.embed_encoded(&encoded, &mut |_| {})?, tokens))
    })
    .await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            if let Some(d) = dimensions {
                // Shortened embeddings are re-normalised, as OpenAI's `dimensions` are.
                v.truncate(d);
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model_name,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}

// ---- Cohere / Jina ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(untagged)]
pub enum RerankDocument {
    Text(String),
    Object { text: String },
}

#[derive(Deserialize)]
pub struct CohereRerankRequest {
    #[serde(default)]
    model: Option<String>,
    query: String,
    documents: Vec<RerankDocument>,
    #[serde(default)]
    top_n: Option<i64>,
    #[serde(default)]
    return_documents: Option<bool>,
}

async fn cohere_rerank(
    state: AppState,
    req: CohereRerankRequest,
    version: &str,
    documents_by_default: bool,
) -> ApiResult {
    let top_n = match req.top_n {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "top_n must be at least 1, got {n}"
            )))
        }
    };
    let docs: Vec<String> = req
        .documents
        .into_iter()
        .map(|d| match d {
            RerankDocument::Text(t) | RerankDocument::Object { text: t } => t,
        })
        .collect();
    let texts = docs.clone();
    let reranker_name = state.reranker.as_ref().map(|r| r.model_dir().name());
    let mut scores = score(&state, req.query, docs).await?;
    if let Some(n) = top_n {
        scores.truncate(n);
    }
    let return_documents = req.return_documents.unwrap_or(documents_by_default);
    let results: Vec<Value> = scores
        .iter()
        .map(|s| {
            let mut v = json!({ "index": s.index, "relevance_score": s.score });
            if return_documents {
                v["document"] = json!({ "text": texts[s.index] });
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "id": request_id(),
        "model": req.model.or(reranker_name),
        "results": results,
        "meta": { "api_version": { "version": version }, "billed_units": { "search_units": 1 } },
    })))
}

pub async fn cohere_rerank_v1(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CohereRerankRequest>,
) -> ApiResult {
    cohere_rerank(state, req, "1", true).await
}

pub async fn cohere_rerank_v2(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CohereRerankRequest>,
) -> ApiResult {
    cohere_rerank(state, req, "2", false).await
}
