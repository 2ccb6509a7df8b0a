//! What an operator relies on: dynamic batching across requests, 429 backpressure, timeouts,
//! API keys, CORS, Prometheus metrics and an OpenAPI document that matches the routes.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, minilm, post, start, start_with};
use serde_json::{json, Value};
use sift_models::TextRole;
use sift_server::{BatcherConfig, Limits, ServerConfig};

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first metric line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in\n{text}"))
}

fn vectors(body: &Value) -> Vec<Vec<f32>> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// A request of 1,000 texts is split into token-budgeted passes, and concurrent requests share
/// passes; every request still gets exactly its own vectors.
#[tokio::test]
async fn requests_are_split_and_merged_into_token_budgeted_batches() {
    let base = start_with(
        false,
        ServerConfig {
            batching: BatcherConfig {
                max_queued_inputs: 4096,
                max_batch_tokens: 512,
            },
            ..Default::default()
        },
    )
    .await;
    let texts: Vec<String> = (0..1000)
        .map(|i| format!("document number {i} about topic {}", i % 7))
        .collect();
    let (s, body) = post(&base, "/embed", json!({"inputs": texts})).await;
    assert_eq!(s, 200);
    let served = vectors(&body);
    let expected = minilm().embed(&texts, TextRole::Raw).unwrap();
    assert!(max_abs_diff(&served, &expected) < 1e-4);
    let m = metrics(&base).await;
    let passes = metric(&m, "sift_batch_inputs_count{model=\"embed\"}");
    assert!(
        passes >= 10.0,
        "1,000 texts of ~10 tokens in 512-token passes need ≥ 10 passes, saw {passes}"
    );

    // While a long request keeps the worker busy, 12 small requests queue behind it; they are
    // then run together in one or two passes, not twelve.
    let before = passes;
    let long: Vec<String> = (0..20)
        .map(|i| format!("{i} {}", "lorem ipsum dolor sit amet ".repeat(60)))
        .collect();
    let long_request = {
        let base = base.clone();
        let long = long.clone();
        tokio::spawn(async move {
            let (s, body) = post(&base, "/embed", json!({"inputs": long, "truncate": true})).await;
            assert_eq!(s, 200);
            vectors(&body).len()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut handles = Vec::new();
    for r in 0..12 {
        let base = base.clone();
        handles.push(tokio::spawn(async move {
            let texts: Vec<String> = (0..3).map(|i| format!("request {r} text {i}")).collect();
            let (s, body) = post(&base, "/embed", json!({"inputs": texts.clone()})).await;
            assert_eq!(s, 200);
            (texts, vectors(&body))
        }));
    }
    let model = minilm();
    let count = |texts: &[String]| -> usize {
        model
            .encode(texts, TextRole::Raw)
            .unwrap()
            .iter()
            .map(|e| e.len())
            .sum()
    };
    let mut expected_tokens = count(&texts) + 20 * 256;
    for h in handles {
        let (texts, got) = h.await.unwrap();
        let want = model.embed(&texts, TextRole::Raw).unwrap();
        assert!(
            max_abs_diff(&got, &want) < 1e-4,
            "a request got another's vectors"
        );
        expected_tokens += count(&texts);
    }
    assert_eq!(long_request.await.unwrap(), 20);
    let after = metric(
        &metrics(&base).await,
        "sift_batch_inputs_count{model=\"embed\"}",
    );
    // 20 inputs of 256 tokens in 512-token passes: 10 passes; the 36 small inputs (~250
    // tokens) fit one more, two if a request arrived while the last long pass was running.
    let small_passes = after - before - 10.0;
    assert!(
        (1.0..=2.0).contains(&small_passes),
        "12 queued requests ran in {small_passes} passes"
    );
    let tokens = metric(
        &metrics(&base).await,
        "sift_tokens_processed_total{model=\"embed\"}",
    );
    assert_eq!(tokens, expected_tokens as f64);
}

/// Over capacity: a full queue answers 429 with Retry-After at once, admitted work completes.
#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let base = start_with(
        false,
        ServerConfig {
            limits: Limits {
                max_items: 64,
                ..Default::default()
            },
            batching: BatcherConfig {
                max_queued_inputs: 64,
                // One long input per pass: the first request occupies the worker for a while.
                max_batch_tokens: 256,
            },
            ..Default::default()
        },
    )
    .await;
    let long: Vec<String> = (0..64)
        .map(|i| format!("{i} {}", "lorem ipsum dolor sit amet ".repeat(40)))
        .collect();
    let first = {
        let base = base.clone();
        let long = long.clone();
        tokio::spawn(async move {
            post(&base, "/embed", json!({"inputs": long, "truncate": true})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{base}/embed"))
        .json(&json!({"inputs": long, "truncate": true}))
        .send()
        .await
        .unwrap();
    let refused_in = started.elapsed();
    assert_eq!(r.status().as_u16(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded");
    assert!(refused_in < Duration::from_millis(500), "{refused_in:?}");
    let (s, vectors) = first.await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(vectors.as_array().unwrap().len(), 64);
    let m = metrics(&base).await;
    assert!(metric(&m, "sift_queue_rejections_total{model=\"embed\"}") >= 1.0);
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let base = start(
        false,
        Limits {
            request_timeout: Duration::from_millis(1),
            ..Default::default()
        },
    )
    .await;
    let texts: Vec<String> = (0..200).map(|i| format!("text {i}")).collect();
    let (s, b) = post(&base, "/embed", json!({"inputs": texts})).await;
    assert_error(s, &b, 503, "request_timeout");
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let base = start_with(
        false,
        ServerConfig {
            api_keys: vec!["k-one".into(), "k-two".into()],
            ..Default::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let call = |key: Option<&'static str>| {
        let mut r = client
            .post(format!("{base}/embed"))
            .json(&json!({"inputs": "hi"}));
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        r.send()
    };
    for key in [None, Some("k-on"), Some("k-one2"), Some("")] {
        let r = call(key).await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{key:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], "missing or invalid API key");
    }
    for key in ["k-one", "k-two"] {
        assert_eq!(call(Some(key)).await.unwrap().status().as_u16(), 200);
    }
    // Load balancers probe /health without credentials.
    let r = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn cors_is_off_unless_asked() {
    let preflight = |base: String| async move {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{base}/embed"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap()
    };
    let closed = start(false, Limits::default()).await;
    let r = preflight(closed).await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let open = start_with(
        false,
        ServerConfig {
            cors_origins: vec!["https://app.example".into()],
            ..Default::default()
        },
    )
    .await;
    let r = preflight(open).await;
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn every_request_has_an_id_and_is_counted() {
    let base = start(false, Limits::default()).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/embed"))
        .header("x-request-id", "trace-123")
        .json(&json!({"inputs": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-123");
    let r = reqwest::get(format!("{base}/health")).await.unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
    let _ = post(&base, "/embed", json!({"inputs": []})).await;
    let m = metrics(&base).await;
    assert_eq!(
        metric(
            &m,
            "sift_http_requests_total{route=\"/embed\",method=\"POST\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "sift_http_requests_total{route=\"/embed\",method=\"POST\",status=\"422\"}"
        ),
        1.0
    );
    assert!(m.contains("sift_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/embed\"}"));
    assert!(m.contains("sift_queue_depth{model=\"embed\"}"));
}

/// The OpenAPI document lists exactly the routes the server answers.
#[tokio::test]
async fn openapi_matches_the_routes() {
    let base = start(true, Limits::default()).await;
    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for want in [
        "/embed",
        "/rerank",
        "/tokenize",
        "/info",
        "/health",
        "/metrics",
        "/v1/embeddings",
        "/v1/rerank",
        "/v2/rerank",
        "/collections",
        "/collections/{name}/documents",
        "/collections/{name}/documents/{id}",
        "/collections/{name}/search",
    ] {
        assert!(
            paths.contains_key(want),
            "{want} missing from the OpenAPI document"
        );
    }
    let client = reqwest::Client::new();
    for (path, ops) in paths {
        let concrete = path.replace("{name}", "c").replace("{id}", "d");
        for method in ops.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = client
                .request(m, format!("{base}{concrete}"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(json!({"error": {"message": ""}}));
            // The route exists: whatever it answers, it is not the unknown-route fallback, and a
            // 405 would mean the documented method is not served.
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no such route"),
                "{method} {path} is documented but not served"
            );
        }
    }
    let (s, _) = post(&base, "/v3/rerank", json!({})).await;
    assert_eq!(s, 404);
}
