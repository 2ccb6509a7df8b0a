//! `GET /ui`: the search playground, a static page compiled into the binary (no build step, no
//! CDN). It calls the same public routes any client calls (`/collections`, `…/search`,
//! `/rerank`), so it needs no privileges of its own: the page is served without a key and asks
//! the user for one when the API answers 401.

use axum::http::header;
use axum::response::IntoResponse;

/// Scripts and styles only from this server, no inline code, no framing: documents are rendered
/// as text, and this makes markup that slipped into one inert anyway.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub async fn page() -> impl IntoResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("../playground/index.html"),
    )
}

pub async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../playground/app.js"),
    )
}

pub async fn style() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../playground/style.css"),
    )
}
