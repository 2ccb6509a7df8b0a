//! `sift serve`: the embedding and rerank APIs users already call — Hugging Face TEI (`/embed`,
//! `/rerank`, `/tokenize`), OpenAI (`/v1/embeddings`) and Cohere/Jina (`/v1/rerank`,
//! `/v2/rerank`) — over sift's models, plus sift's own collection routes.
//!
//! A request flows: CORS → request id, log line and metrics ([`middleware::observe`]) → API key
//! check → timeout → body limit → JSON extraction ([`json::ApiJson`]) → handler (`routes/`) →
//! tokenization on a blocking thread → the model's [`batcher::Batcher`], which merges inputs of
//! concurrent requests into token-budgeted forward passes.

#![forbid(unsafe_code)]

pub mod batcher;
mod collections;
mod error;
mod json;
mod metrics;
mod middleware;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::Router;
use sift_index::Location;
use sift_models::{Embedder, LongDocumentPolicy, Reranker};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use batcher::BatcherConfig;
pub use error::ApiError;

use batcher::Batcher;
use collections::Collections;
use metrics::Metrics;

/// Request limits. Exceeding one is a 413 or 422 whose message names the limit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most inputs (texts or documents) in one request.
    pub max_items: usize,
    /// Inputs longer than the model's maximum (in tokens) are cut when true and refused with 413
    /// when false. TEI's per-request `truncate` overrides this on its routes.
    pub auto_truncate: bool,
    /// A request still running after this long is answered with 503 and its queued inputs are
    /// dropped.
    pub request_timeout: Duration,
    /// Collection requests (indexing, search) running at once; more get 429.
    pub max_concurrent_collection_requests: usize,
    /// Collections kept open at once; opening another closes the least recently used idle one.
    pub max_open_collections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 * 1024 * 1024,
            max_items: 2048,
            auto_truncate: false,
            request_timeout: Duration::from_secs(60),
            max_concurrent_collection_requests: 4,
            max_open_collections: 64,
        }
    }
}

/// Everything `sift serve` is started with, models aside.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub limits: Limits,
    pub batching: BatcherConfig,
    /// Accepted `Authorization: Bearer` keys; empty means no authentication.
    pub api_keys: Vec<String>,
    /// Origins allowed by CORS (`*` for any); empty means no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Where the served collections live (a directory of them); `None` disables the
    /// collection routes.
    pub collections: Option<Location>,
    /// How every rerank route and collection search scores long documents.
    pub long_documents: LongDocumentPolicy,
}

/// Models, queues and settings shared by every request.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    embedder: Option<Batcher<Embedder>>,
    token_states: Option<Batcher<batcher::TokenStates>>,
    reranker: Option<Batcher<batcher::RerankModel>>,
    collections: Option<Collections>,
    limits: Limits,
    long_documents: LongDocumentPolicy,
    batching: BatcherConfig,
    metrics: Arc<Metrics>,
}

impl AppState {
    /// Starts one batching worker per model. Fails when the collection store cannot be opened
    /// (created, for a directory) or the long-document policy is invalid.
    pub fn new(
        embedder: Option<Arc<Embedder>>,
        reranker: Option<Arc<dyn Reranker>>,
        config: &ServerConfig,
    ) -> Result<Self, ApiError> {
        config.long_documents.validate()?;
        let metrics = Arc::new(Metrics::default());
        let collections = match &config.collections {
            Some(location) => Some(Collections::new(
                location.clone(),
                embedder.clone(),
                config.limits.max_concurrent_collection_requests,
                config.limits.max_open_collections,
            )?),
            None => None,
        };
        Ok(AppState {
            inner: Arc::new(Inner {
                token_states: embedder.as_ref().map(|m| {
                    let model = Arc::new(batcher::TokenStates(m.clone()));
                    Batcher::start(model, config.batching, metrics.clone(), "embed_all")
                }),
                embedder: embedder
                    .map(|m| Batcher::start(m, config.batching, metrics.clone(), "embed")),
                reranker: reranker.map(|m| {
                    let model = Arc::new(batcher::RerankModel(m));
                    Batcher::start(model, config.batching, metrics.clone(), "rerank")
                }),
                collections,
                limits: config.limits.clone(),
                long_documents: config.long_documents,
                batching: config.batching,
                metrics,
            }),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sift",
        description = "Embedding, rerank and collection search. Embedding and rerank routes follow Hugging Face TEI, OpenAI and Cohere/Jina field for field; errors are {\"error\": {\"type\", \"message\"}}."
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "api_key",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The routes with their OpenAPI description; both come from the same `routes!` calls, so the
/// document cannot list a route the server does not serve.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::meta::health))
        .routes(routes!(routes::meta::root_health, routes::tei::root))
        .routes(routes!(routes::meta::ping))
        .routes(routes!(routes::meta::info))
        .routes(routes!(routes::meta::metrics))
        .routes(routes!(routes::tei::invocations))
        .routes(routes!(routes::tei::embed))
        .routes(routes!(routes::tei::embed_all))
        .routes(routes!(routes::tei::similarity))
        .routes(routes!(routes::tei::rerank))
        .routes(routes!(routes::tei::predict))
        .routes(routes!(routes::tei::tokenize))
        .routes(routes!(routes::tei::decode))
        .routes(routes!(routes::openai::embeddings))
        .routes(routes!(routes::openai::embeddings_unversioned))
        .routes(routes!(routes::cohere::rerank_v1))
        .routes(routes!(routes::cohere::rerank_v2))
        .routes(routes!(routes::collections::list))
        .routes(routes!(
            routes::collections::create,
            routes::collections::drop_collection
        ))
        .routes(routes!(routes::collections::upsert))
        .routes(routes!(routes::collections::delete_document))
        .routes(routes!(routes::collections::search))
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_router().split_for_parts();
    api
}

pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let (routes, api) = api_router().split_for_parts();
    let api = Arc::new(api);
    let mut app = routes
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { axum::Json(api.as_ref().clone()) }
            }),
        )
        .route("/ui", axum::routing::get(routes::playground::page))
        .route("/ui/app.js", axum::routing::get(routes::playground::script))
        .route(
            "/ui/style.css",
            axum::routing::get(routes::playground::style),
        )
        .fallback(routes::meta::not_found)
        .layer(DefaultBodyLimit::max(state.inner.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ));
    if !config.api_keys.is_empty() {
        let keys = Arc::new(middleware::ApiKeys::new(&config.api_keys));
        app = app.layer(axum::middleware::from_fn_with_state(
            keys,
            middleware::require_api_key,
        ));
    }
    app = app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::observe,
    ));
    if !config.cors_origins.is_empty() {
        let origins = if config.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                config
                    .cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
        );
    }
    app.with_state(state)
}

/// Longest a client may take to send a request's headers, and longest an idle keep-alive
/// connection stays open, in seconds. Why sift runs its own accept loop for this: `axum::serve`
/// gives hyper no timer, so neither is enforced there and slow or idle clients hold a
/// connection (and delay a graceful stop) for as long as they like.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves, then finishes in-flight requests (collection writes commit
/// whole batches, so a stop never leaves a collection half-written) and closes idle
/// connections at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    config: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        router(state, config),
        HEADER_READ_TIMEOUT,
        shutdown,
    )
    .await
}

/// [`serve`] for any router, with the header-read (and keep-alive idle) timeout given.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_read_timeout)
        .keep_alive_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service =
            hyper_util::service::TowerToHyperService::new(app.clone().map_request(
                |r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
