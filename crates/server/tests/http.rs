//! Every route of a live server on loopback, with the real all-MiniLM-L6-v2 as embedder and a
//! tiny cross-encoder fixture as reranker, including each error status.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use sift_models::{CrossEncoder, CrossEncoderOptions, Embedder, EmbedderOptions};
use sift_server::{AppState, Limits};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    std::env::var_os("SIFT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"))
}

/// Starts a server on an ephemeral loopback port; returns its base URL.
async fn start(with_reranker: bool, limits: Limits) -> String {
    let embedder = Embedder::load(
        models_dir().join("all-MiniLM-L6-v2"),
        EmbedderOptions::default(),
    )
    .expect("all-MiniLM-L6-v2 (run scripts/setup.sh)");
    let reranker = with_reranker.then(|| {
        let dir = workspace().join("crates/models/tests/fixtures/golden/bert-classifier");
        Arc::new(CrossEncoder::load(dir, CrossEncoderOptions::default()).unwrap())
    });
    let state = AppState {
        embedder: Some(Arc::new(embedder)),
        reranker,
        limits: Arc::new(limits),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sift_server::serve(listener, state, std::future::pending()));
    format!("http://{addr}")
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_in_message: &str) {
    assert_eq!(status, want_status, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(
        message.contains(want_in_message),
        "{message:?} should mention {want_in_message:?}"
    );
}

fn norm(v: &Value) -> f64 {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt()
}

#[tokio::test]
async fn tei_routes() {
    let base = start(true, Limits::default()).await;
    let health: Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let info: Value = reqwest::get(format!("{base}/info"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["embedding_model"]["dimensions"], 384);
    assert_eq!(info["rerank_model"]["model_id"], "bert-classifier");

    let (s, one) = post(&base, "/embed", json!({"inputs": "hello world"})).await;
    assert_eq!(s, 200);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert!((norm(&one[0]) - 1.0).abs() < 1e-4);
    let (_, many) = post(
        &base,
        "/embed",
        json!({"inputs": ["hello world", "second"], "normalize": false}),
    )
    .await;
    assert_eq!(many.as_array().unwrap().len(), 2);
    assert!(
        (norm(&many[0]) - 1.0).abs() > 1e-3,
        "normalize: false returns the raw pooled vector"
    );

    let long = "word ".repeat(2000);
    let (s, body) = post(&base, "/embed", json!({"inputs": long})).await;
    assert_error(s, &body, 413, "limit is 256");
    let (s, _) = post(&base, "/embed", json!({"inputs": long, "truncate": true})).await;
    assert_eq!(s, 200);

    let (s, ranked) = post(&base, "/rerank", json!({"query": "capital of france", "texts": ["Paris", "Berlin", "fox"], "return_text": true})).await;
    assert_eq!(s, 200);
    let scores: Vec<f64> = ranked
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().all(|s| (0.0..=1.0).contains(s))
    );
    assert!(ranked[0]["text"].is_string());
    let (_, raw) = post(&base, "/rerank", json!({"query": "capital of france", "texts": ["Paris", "Berlin", "fox"], "raw_scores": true})).await;
    assert!(raw[0].get("text").is_none());
    assert_ne!(
        raw[0]["score"], ranked[0]["score"],
        "raw_scores returns logits"
    );
}

#[tokio::test]
async fn openai_and_cohere_routes() {
    let base = start(true, Limits::default()).await;
    let (s, body) = post(
        &base,
        "/v1/embeddings",
        json!({"input": ["a", "b"], "model": "m"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "m");
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][0]["object"], "embedding");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() >= 6);
    let floats: Vec<f32> = body["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();

    let (_, b64) = post(
        &base,
        "/v1/embeddings",
        json!({"input": "a", "model": "m", "encoding_format": "base64"}),
    )
    .await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, floats);
    let (_, short) = post(
        &base,
        "/v1/embeddings",
        json!({"input": "a", "model": "m", "dimensions": 64}),
    )
    .await;
    assert_eq!(short["data"][0]["embedding"].as_array().unwrap().len(), 64);

    let docs = json!(["Paris is the capital", {"text": "Berlin"}, "the fox"]);
    let (s, v1) = post(
        &base,
        "/v1/rerank",
        json!({"query": "capital", "documents": docs, "top_n": 2}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v1["results"].as_array().unwrap().len(), 2);
    assert!(
        v1["results"][0]["document"]["text"].is_string(),
        "v1 returns documents by default"
    );
    assert!(v1["id"].is_string() && v1["meta"]["api_version"]["version"] == "1");
    let (_, v2) = post(
        &base,
        "/v2/rerank",
        json!({"model": "x", "query": "capital", "documents": ["a", "b"]}),
    )
    .await;
    assert!(v2["results"][0].get("document").is_none());
    assert!(v2["results"][0]["relevance_score"].is_f64());
}

#[tokio::test]
async fn bad_requests_get_4xx_json_errors_and_the_server_keeps_serving() {
    let base = start(
        false,
        Limits {
            max_body_bytes: 64 * 1024,
            max_items: 8,
        },
    )
    .await;
    let client = reqwest::Client::new();
    let raw = |path: &'static str, body: Vec<u8>| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let r = client
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = raw("/embed", b"{\"inputs\": ".to_vec()).await;
    assert_error(s, &b, 400, "");
    let (s, b) = raw("/embed", b"{\"inputs\": \"\xff\xfe\"}".to_vec()).await;
    assert_error(s, &b, 400, "");
    let (s, b) = post(&base, "/embed", json!({"inputs": 5})).await;
    assert_error(s, &b, 422, "");
    let (s, b) = post(&base, "/embed", json!({"inputs": []})).await;
    assert_error(s, &b, 422, "empty");
    let (s, b) = post(&base, "/embed", json!({"inputs": vec!["x"; 9]})).await;
    assert_error(s, &b, 413, "limit is 8");
    let (s, b) = raw(
        "/embed",
        format!("{{\"inputs\": \"{}\"}}", "a".repeat(100_000)).into_bytes(),
    )
    .await;
    assert_error(s, &b, 413, "");
    let (s, b) = post(
        &base,
        "/v1/embeddings",
        json!({"input": "a", "encoding_format": "hex"}),
    )
    .await;
    assert_error(s, &b, 422, "encoding_format");
    let (s, b) = post(
        &base,
        "/v1/embeddings",
        json!({"input": "a", "dimensions": -3}),
    )
    .await;
    assert_error(s, &b, 422, "dimensions");
    let (s, b) = post(&base, "/v1/embeddings", json!({"input": ["ok", "  "]})).await;
    assert_error(s, &b, 422, "empty");
    let (s, b) = post(&base, "/rerank", json!({"query": "q", "texts": ["a"]})).await;
    assert_error(s, &b, 404, "rerank-model");
    let (s, b) = post(&base, "/nope", json!({})).await;
    assert_error(s, &b, 404, "no such route");
    // Still serving.
    let (s, _) = post(&base, "/embed", json!({"inputs": "still here"})).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn cohere_top_n_must_be_positive() {
    let base = start(true, Limits::default()).await;
    let (s, b) = post(
        &base,
        "/v1/rerank",
        json!({"query": "q", "documents": ["a"], "top_n": -1}),
    )
    .await;
    assert_error(s, &b, 422, "top_n");
    let (s, b) = post(
        &base,
        "/v1/rerank",
        json!({"query": "q", "documents": ["a"], "top_n": "NaN"}),
    )
    .await;
    assert_error(s, &b, 422, "");
}
