//! `/health`, `/info`, `/metrics` and the 404 fallback.

use std::collections::BTreeMap;

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

/// `GET /`: the health probe, as TEI answers it (Inference Endpoints probe the root).
#[utoipa::path(get, path = "/", tag = "meta", responses((status = 200, body = Health)))]
pub async fn root_health() -> Json<Health> {
    health().await
}

/// `GET /ping`: the health probe SageMaker calls.
#[utoipa::path(get, path = "/ping", tag = "meta", responses((status = 200, body = Health)))]
pub async fn ping() -> Json<Health> {
    health().await
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

/// TEI's `model_type`: `{"embedding": {"pooling"}}` or `{"reranker": {"id2label", "label2id"}}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Embedding {
        pooling: String,
    },
    Reranker {
        id2label: BTreeMap<String, String>,
        label2id: BTreeMap<String, usize>,
    },
}

/// TEI's `/info` fields first (so its clients read them unchanged), then sift's details.
#[derive(Serialize, ToSchema)]
pub struct Info {
    /// The model `POST /` serves by default: the embedding model, else the rerank model.
    model_id: String,
    /// The Hugging Face revision, when the model directory is a hub cache snapshot
    /// (`…/snapshots/<sha>/`); otherwise null.
    model_sha: Option<String>,
    /// `float32`, or `int8` for models quantized at load.
    model_dtype: &'static str,
    served_model_name: String,
    model_type: ModelType,
    /// Most requests that can wait on one model at once: every request holds at least one
    /// queued input, and the queue holds `max_queued_inputs_per_model`.
    max_concurrent_requests: usize,
    /// Longest input of the default model, in tokens (special tokens included).
    max_input_length: usize,
    /// Most real tokens in one forward pass.
    max_batch_tokens: usize,
    /// sift has no cap on requests per batch (only tokens).
    max_batch_requests: Option<usize>,
    /// Most inputs one request may carry.
    max_client_batch_size: usize,
    auto_truncate: bool,
    /// Threads that tokenize at once (requests tokenize on a blocking pool; one per core).
    tokenization_workers: usize,
    version: &'static str,
    sha: Option<&'static str>,
    docker_label: Option<&'static str>,
    embedding_model: Option<ModelInfo>,
    rerank_model: Option<ModelInfo>,
    /// Largest request body, in bytes.
    max_body_bytes: usize,
    /// Most inputs waiting in one model's queue before requests get 429.
    max_queued_inputs_per_model: usize,
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

/// The revision of a Hugging Face cache snapshot directory (`…/snapshots/<40 hex>`).
fn hub_revision(dir: &std::path::Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let parent = dir.parent()?.file_name()?.to_str()?;
    (parent == "snapshots" && name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| name.to_owned())
}

fn dtype(engine: &str) -> &'static str {
    if engine.contains("int8") {
        "int8"
    } else {
        "float32"
    }
}

/// The loaded models and the server's limits: TEI's `/info` fields, then sift's own.
#[utoipa::path(get, path = "/info", tag = "meta", responses((status = 200, body = Info)), security(("api_key" = [])))]
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    let s = &state.inner;
    let embedding_model = s.embedder.as_ref().map(|b| {
        let e = b.model();
        describe(
            e.model_dir(),
            e.engine().name(),
            e.tokenizer().max_length(),
            Some(e.dim()),
        )
    });
    let rerank_model = s.reranker.as_ref().map(|b| {
        let r = b.model();
        describe(r.0.model_dir(), r.0.engine_name(), r.0.max_length(), None)
    });
    // The default model: what `POST /` embeds with, else what it reranks with.
    let (dir, engine, max_input_length, model_type) = match (&s.embedder, &s.reranker) {
        (Some(b), _) => {
            let e = b.model();
            (
                Some(e.model_dir()),
                e.engine().name(),
                e.tokenizer().max_length(),
                ModelType::Embedding {
                    pooling: e.pooling().name().to_owned(),
                },
            )
        }
        (None, Some(b)) => {
            let r = &b.model().0;
            let labels = &r.model_dir().config.labels;
            let labels: Vec<String> = if labels.is_empty() {
                vec!["LABEL_0".to_owned()]
            } else {
                labels.clone()
            };
            (
                Some(r.model_dir()),
                r.engine_name(),
                r.max_length(),
                ModelType::Reranker {
                    id2label: labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (i.to_string(), l.clone()))
                        .collect(),
                    label2id: labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (l.clone(), i))
                        .collect(),
                },
            )
        }
        (None, None) => (
            None,
            "none",
            0,
            ModelType::Embedding {
                pooling: String::new(),
            },
        ),
    };
    let model_id = dir.map(|d| d.name()).unwrap_or_default();
    Json(Info {
        served_model_name: model_id.clone(),
        model_id,
        model_sha: dir.and_then(|d| hub_revision(&d.path)),
        model_dtype: dtype(engine),
        model_type,
        max_concurrent_requests: s.batching.max_queued_inputs,
        max_input_length,
        max_batch_tokens: s.batching.max_batch_tokens,
        max_batch_requests: None,
        max_client_batch_size: s.limits.max_items,
        auto_truncate: s.limits.auto_truncate,
        tokenization_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        version: env!("CARGO_PKG_VERSION"),
        sha: None,
        docker_label: None,
        embedding_model,
        rerank_model,
        max_body_bytes: s.limits.max_body_bytes,
        max_queued_inputs_per_model: s.batching.max_queued_inputs,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_is_read_from_hub_cache_snapshot_paths_only() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let snapshot = std::path::PathBuf::from(format!("/c/models--x--y/snapshots/{sha}"));
        assert_eq!(hub_revision(&snapshot).as_deref(), Some(sha));
        assert_eq!(
            hub_revision(std::path::Path::new("/models/all-MiniLM-L6-v2")),
            None
        );
        assert_eq!(
            hub_revision(std::path::Path::new(&format!("/x/{sha}"))),
            None
        );
    }
}
