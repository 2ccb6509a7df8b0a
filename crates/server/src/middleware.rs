//! Cross-cutting request handling: request ids, logs and metrics; API keys; timeouts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

const REQUEST_ID: &str = "x-request-id";

/// A request's id: the client's `x-request-id` when it is short and printable, else a fresh one.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub fn new_request_id() -> String {
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

/// Assigns the request id, echoes it in the response, logs one line per request and records
/// the route's count and latency.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state
        .inner
        .metrics
        .request(&route, &method, status, seconds);
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        latency_ms = seconds * 1000.0,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// Routes that write a collection. The timeout layer leaves them alone: they check the deadline
/// themselves at their commit point, so a timed-out write is one that wrote nothing, and a
/// commit that began is always answered with its outcome (an answer of 503 after the batch
/// committed would tell the client the opposite of what happened).
pub const WRITE_ROUTES: [&str; 2] = [
    "/collections/{name}/documents",
    "/collections/{name}/documents/{id}",
];

/// Answers 503 when the handler runs past the request timeout. Dropping the handler's future
/// drops its place in the batching queue, so abandoned inputs are not computed.
pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.inner.limits.request_timeout;
    let writes = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| WRITE_ROUTES.contains(&p.as_str()));
    if writes {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request did not finish within {} ms (request_timeout)",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// SHA-256 digests of the accepted keys. Comparing digests of equal length in constant time
/// leaks neither a key's bytes nor its length through response timing.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        ApiKeys {
            digests: keys.iter().map(|k| Sha256::digest(k).into()).collect(),
        }
    }

    fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Fold over every key without short-circuiting.
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest))
            .into()
    }
}

/// Routes that answer without a key: the health probes (`/health`, and `GET /` and `GET /ping`
/// as TEI serves them to Inference Endpoints and SageMaker), which load balancers call without
/// credentials, and the playground's static files (the page asks for the key). They reveal
/// nothing but that the server is up and what the page's code is.
fn is_public(req: &Request) -> bool {
    let path = req.uri().path();
    path == "/health"
        || (req.method() == axum::http::Method::GET
            && (matches!(path, "/" | "/ping" | "/ui") || path.starts_with("/ui/")))
}

/// Requires `Authorization: Bearer <key>` on every route but the public ones ([`is_public`]).
/// Failures get a 401 that does not say which part was wrong.
pub async fn require_api_key(
    State(keys): State<Arc<ApiKeys>>,
    req: Request,
    next: Next,
) -> Response {
    if is_public(&req) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(key) if keys.accepts(key) => next.run(req).await,
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API key",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}
