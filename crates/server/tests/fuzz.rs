//! A time-boxed property run over the HTTP bodies of every route: JSON shaped like what the
//! routes expect (their field names, wrong types, extreme numbers, unicode, nesting) and raw
//! bytes, sent to an in-process server with real models and a collections directory.
//!
//! The property: no input is answered 500 or crashes the server; every refusal is a 4xx with the
//! JSON error body `{"error": {"type", "message"}}`. The run is deterministic (a fixed seed) and
//! lasts `SIFT_FUZZ_SECONDS` (default 20) — a fixed budget in CI whatever the machine's speed.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use common::{minilm, tiny_reranker};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value};
use sift_index::Location;
use sift_server::{AppState, ServerConfig};
use tower::ServiceExt;

/// Field names the routes read, so generated objects reach their validation, not only serde's.
const FIELDS: &[&str] = &[
    "inputs",
    "input",
    "texts",
    "query",
    "documents",
    "model",
    "top_n",
    "top_k",
    "truncate",
    "raw_scores",
    "return_text",
    "return_documents",
    "max_chunks_per_doc",
    "max_tokens_per_doc",
    "encoding_format",
    "dimensions",
    "normalize",
    "prompt_name",
    "truncation_direction",
    "add_special_tokens",
    "id",
    "text",
    "title",
    "metadata",
    "mode",
    "depth",
    "candidates",
    "rerank",
    "rank_fields",
    "user",
    "ids",
    "skip_special_tokens",
    "source_sentence",
    "sentences",
    "parameters",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(0i64), Just(1), Just(-1), Just(10_000), Just(i64::MAX)]
            .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(Value::String(String::new())),
        Just(Value::String("  ".into())),
        Just(Value::String("word ".repeat(300))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        proptest::sample::select(FIELDS).prop_map(str::to_owned),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid body for each route of [`ROUTES`] (same order): mutating one field of it reaches the
/// route's own checks and its model, where random JSON mostly stops at deserialization.
fn template(route: usize) -> Value {
    let docs = serde_json::json!([{"id": "a", "text": "rivers and lakes"}, {"id": "b", "text": "mountains"}]);
    match route {
        0 => serde_json::json!({"inputs": ["a river", "a lake"]}),
        1 => serde_json::json!({"query": "water", "texts": ["a river", "rock"]}),
        2 => serde_json::json!({"inputs": "a river"}),
        3 => serde_json::json!({"input": ["a river"], "model": "m"}),
        4 | 5 => {
            serde_json::json!({"model": "m", "query": "water", "documents": ["a river", "rock"]})
        }
        6 => serde_json::json!({"documents": docs}),
        7 => serde_json::json!({"query": "rivers", "top_k": 3}),
        12 => serde_json::json!({"inputs": "a river"}),
        13 => serde_json::json!({"inputs": ["a river", [101, 2314, 102]]}),
        14 => {
            serde_json::json!({"inputs": {"source_sentence": "water", "sentences": ["a river", "rock"]}})
        }
        15 => serde_json::json!({"inputs": [["water", "a river"], ["water", "rock"]]}),
        16 => serde_json::json!({"ids": [101, 2314, 102]}),
        17 => serde_json::json!({"query": "water", "texts": ["a river", "rock"]}),
        _ => serde_json::json!({}),
    }
}

/// A body for `route`: a template with one field replaced, added or removed (half), random JSON,
/// or raw bytes.
fn body(route: usize) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        proptest::sample::select(FIELDS),
        proptest::option::of(json_value()),
    )
        .prop_map(move |(field, value)| {
            let mut v = template(route);
            if let Value::Object(map) = &mut v {
                match value {
                    Some(value) => map.insert(field.to_owned(), value),
                    None => map.remove(field),
                };
            }
            v.to_string().into_bytes()
        });
    prop_oneof![
        6 => mutated,
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/embed"),
    ("POST", "/rerank"),
    ("POST", "/tokenize"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"),
    ("POST", "/v2/rerank"),
    ("POST", "/collections/fuzz/documents"),
    ("POST", "/collections/fuzz/search"),
    ("DELETE", "/collections/fuzz/documents/x"),
    ("PUT", "/collections/fuzz"),
    ("GET", "/collections"),
    ("GET", "/info"),
    ("POST", "/"),
    ("POST", "/embed_all"),
    ("POST", "/similarity"),
    ("POST", "/predict"),
    ("POST", "/decode"),
    ("POST", "/invocations"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_makes_any_route_fail_inside() {
    let budget = Duration::from_secs(
        std::env::var("SIFT_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        collections: Some(Location::Local(dir.path().to_owned())),
        ..Default::default()
    };
    let state = AppState::new(Some(minilm()), Some(tiny_reranker()), &config).unwrap();
    let app = sift_server::router(state, &config);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (0..ROUTES.len())
        .prop_flat_map(|route| (Just(route), body(route), proptest::bool::weighted(0.9)));
    let started = Instant::now();
    let (mut requests, mut accepted) = (0, 0);
    while started.elapsed() < budget {
        let (route, bytes, json_type) = strategy.new_tree(&mut runner).unwrap().current();
        let (method, path) = ROUTES[route];
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if json_type {
            request = request.header("content-type", "application/json");
        }
        let shown = String::from_utf8_lossy(&bytes)
            .chars()
            .take(300)
            .collect::<String>();
        let response = app
            .clone()
            .oneshot(request.body(Body::from(bytes)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 26)
            .await
            .unwrap();
        assert!(
            status < 500,
            "{method} {path} {shown:?} → {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if status >= 400 {
            let v: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("{method} {path} {shown:?} → {status}: not JSON"));
            assert!(
                v["error"]["type"].is_string() && v["error"]["message"].is_string(),
                "{method} {path} {shown:?} → {status}: {v}"
            );
        }
        requests += 1;
        accepted += usize::from(status < 300);
    }
    eprintln!(
        "{requests} requests in {:.1} s, {accepted} answered 2xx",
        started.elapsed().as_secs_f64()
    );
    assert!(
        accepted > requests / 20,
        "only {accepted} of {requests} reached a model"
    );
    assert!(requests > 50, "only {requests} requests in the budget");
}
