//! Helpers shared by the server's end-to-end tests: a live server on a loopback port with the
//! real all-MiniLM-L6-v2 as embedder and a tiny random-weight cross-encoder as reranker.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use sift_models::{Embedder, EmbedderOptions, Reranker, RerankerOptions};
use sift_server::{AppState, Limits, ServerConfig};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("SIFT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"))
}

pub fn minilm() -> Arc<Embedder> {
    Arc::new(
        Embedder::load(
            models_dir().join("all-MiniLM-L6-v2"),
            EmbedderOptions::default(),
        )
        .expect("all-MiniLM-L6-v2 (run scripts/setup.sh)"),
    )
}

pub fn tiny_reranker() -> Arc<dyn Reranker> {
    let dir = workspace().join("crates/models/tests/fixtures/golden/bert-classifier");
    sift_models::load_reranker(dir, RerankerOptions::default()).unwrap()
}

/// Starts a server on an ephemeral loopback port; returns its base URL.
pub async fn start_with(with_reranker: bool, config: ServerConfig) -> String {
    let reranker = with_reranker.then(tiny_reranker);
    let state = AppState::new(Some(minilm()), reranker, &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        sift_server::serve(listener, state, &config, std::future::pending()).await
    });
    format!("http://{addr}")
}

pub async fn start(with_reranker: bool, limits: Limits) -> String {
    start_with(
        with_reranker,
        ServerConfig {
            limits,
            ..Default::default()
        },
    )
    .await
}

/// A running server over the collections directory `dir`: its base URL, the sender that stops
/// it gracefully, and the task to await for the stop to finish.
pub struct CollectionServer {
    pub base: String,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts a server with all-MiniLM-L6-v2 (and the tiny reranker when asked) over the
/// collections directory `dir`.
pub async fn start_collections(
    dir: &std::path::Path,
    with_reranker: bool,
    limits: Limits,
) -> CollectionServer {
    let config = ServerConfig {
        collections: Some(sift_index::Location::Local(dir.to_owned())),
        limits,
        ..Default::default()
    };
    let state = AppState::new(Some(minilm()), with_reranker.then(tiny_reranker), &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        sift_server::serve(listener, state, &config, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    CollectionServer {
        base: format!("http://{addr}"),
        stop,
        task,
    }
}

/// GETs `url` and parses the body as JSON.
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

pub async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub fn assert_error(status: u16, body: &Value, want_status: u16, want_in_message: &str) {
    assert_eq!(status, want_status, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(
        message.contains(want_in_message),
        "{message:?} should mention {want_in_message:?}"
    );
}

pub fn norm(v: &Value) -> f64 {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt()
}
