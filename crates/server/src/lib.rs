//! `sift serve`: the embedding and rerank APIs users already call — Hugging Face TEI (`/embed`,
//! `/rerank`), OpenAI (`/v1/embeddings`) and Cohere/Jina (`/v1/rerank`, `/v2/rerank`) — over
//! sift's models. Inference runs on blocking threads so the async runtime keeps accepting.

mod error;
mod json;
mod routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use sift_models::{CrossEncoder, Embedder};

pub use error::ApiError;

/// Request limits. Exceeding one is a 413 naming the limit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most inputs (texts or documents) in one request.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 * 1024 * 1024,
            max_items: 2048,
        }
    }
}

/// Models and settings shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub embedder: Option<Arc<Embedder>>,
    pub reranker: Option<Arc<CrossEncoder>>,
    pub limits: Arc<Limits>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/health", get(routes::health))
        .route("/info", get(routes::info))
        .route("/embed", post(routes::tei_embed))
        .route("/rerank", post(routes::tei_rerank))
        .route("/v1/embeddings", post(routes::openai_embeddings))
        .route("/v1/rerank", post(routes::cohere_rerank_v1))
        .route("/v2/rerank", post(routes::cohere_rerank_v2))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
