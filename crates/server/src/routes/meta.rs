//! `/health`, `/info`, `/metrics` and the 404 fallback.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the server answers once its models are loaded.
    status: &'static str,
}

/// Liveness probe; needs no API key.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; GET /openapi.json lists them")
}

#[derive(Serialize, ToSchema)]
pub struct ModelInfo {
    model_id: String,
    architecture: String,
    /// Longest input the model sees, in tokens (special tokens included).
    max_input_length: usize,
    /// Embedding dimensions (embedding model only).
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
    /// What runs the forward pass: `onnx-f32`, `onnx-int8` or `candle`.
    engine: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Info {
    version: &'static str,
    embedding_model: Option<ModelInfo>,
    rerank_model: Option<ModelInfo>,
    /// Most inputs one request may carry.
    max_client_batch_size: usize,
    /// Largest request body, in bytes.
    max_body_bytes: usize,
    /// Most inputs waiting in one model's queue before requests get 429.
    max_queued_inputs_per_model: usize,
    auto_truncate: bool,
    /// Request timeout, in milliseconds.
    request_timeout_ms: u128,
    collections_enabled: bool,
    /// Collections open now, and the most kept open.
    open_collections: usize,
    max_open_collections: usize,
}

fn describe(
    dir: &sift_models::ModelDir,
    engine: &'static str,
    max: usize,
    dimensions: Option<usize>,
) -> ModelInfo {
    ModelInfo {
        engine,
        model_id: dir.name(),
        architecture: dir.config.architecture_name.clone(),
        max_input_length: max,
        dimensions,
    }
}

/// The loaded models and the server's limits (TEI's `/info`, extended).
#[utoipa::path(get, path = "/info", tag = "meta", responses((status = 200, body = Info)), security(("api_key" = [])))]
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    let s = &state.inner;
    Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        embedding_model: s.embedder.as_ref().map(|b| {
            let e = b.model();
            describe(
                e.model_dir(),
                e.engine().name(),
                e.tokenizer().max_length(),
                Some(e.dim()),
            )
        }),
        rerank_model: s.reranker.as_ref().map(|b| {
            let r = b.model();
            describe(r.0.model_dir(), r.0.engine_name(), r.0.max_length(), None)
        }),
        max_client_batch_size: s.limits.max_items,
        max_body_bytes: s.limits.max_body_bytes,
        max_queued_inputs_per_model: s.batching.max_queued_inputs,
        auto_truncate: s.limits.auto_truncate,
        request_timeout_ms: s.limits.request_timeout.as_millis(),
        collections_enabled: s.collections.is_some(),
        open_collections: s.collections.as_ref().map_or(0, |c| c.open_count()),
        max_open_collections: s.limits.max_open_collections,
    })
}

/// OpenMetrics text (what Prometheus scrapes): requests and latency per route, queue depth, batch sizes, tokens.
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, content_type = "application/openmetrics-text", body = String)), security(("api_key" = [])))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.inner.metrics.render(),
    )
}
