//! Every route of a live server on loopback, with the real all-MiniLM-L6-v2 as embedder and a
//! tiny cross-encoder fixture as reranker, including each error status.

mod common;

use base64::Engine;
use common::{assert_error, norm, post, start};
use serde_json::{json, Value};
use sift_server::Limits;

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
    // scripts/setup.sh installs ONNX Runtime, so the default engine is it.
    assert_eq!(info["embedding_model"]["engine"], "onnx-f32");
    assert_eq!(info["rerank_model"]["engine"], "onnx-f32");

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
            ..Default::default()
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

#[tokio::test]
async fn tokenize_shows_the_tokens_the_model_sees() {
    let base = start(false, Limits::default()).await;
    let (s, body) = post(&base, "/tokenize", json!({"inputs": "Héllo world"})).await;
    assert_eq!(s, 200, "{body}");
    let tokens = body[0].as_array().unwrap();
    assert_eq!(tokens.first().unwrap()["text"], "[CLS]");
    assert_eq!(tokens.first().unwrap()["special"], true);
    assert_eq!(tokens.last().unwrap()["text"], "[SEP]");
    let words: Vec<&str> = tokens[1..tokens.len() - 1]
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(words.concat(), "Héllo world".replace(' ', ""));
    // Offsets are byte ranges of the input.
    let input = "Héllo world";
    for t in &tokens[1..tokens.len() - 1] {
        let (a, b) = (
            t["start"].as_u64().unwrap() as usize,
            t["stop"].as_u64().unwrap() as usize,
        );
        assert_eq!(&input[a..b], t["text"].as_str().unwrap());
    }
    let (_, plain) = post(
        &base,
        "/tokenize",
        json!({"inputs": ["a b", "c"], "add_special_tokens": false}),
    )
    .await;
    assert_eq!(plain[0].as_array().unwrap().len(), 2);
    assert!(plain[1][0]["id"].as_u64().unwrap() > 0);
    let (s, b) = post(&base, "/tokenize", json!({"inputs": "x", "bogus": 1})).await;
    assert_error(s, &b, 422, "bogus");
}

/// Cohere-style long documents: every window is scored and the document gets its best window,
/// so a relevant passage past the model's window still counts.
#[tokio::test]
async fn cohere_scores_long_documents_by_their_best_window() {
    let base = start(true, Limits::default()).await;
    let rerank = |docs: Value, extra: Value| {
        let base = base.clone();
        async move {
            let mut body = json!({"query": "ocean tides", "documents": docs});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (s, b) = post(&base, "/v1/rerank", body).await;
            assert_eq!(s, 200, "{b}");
            b["results"][0]["relevance_score"].as_f64().unwrap()
        }
    };
    // Two filler phrases; the tiny random model prefers one of them for this query.
    let (p, q) = ("alpha beta gamma ", "delta epsilon zeta ");
    let sp = rerank(json!([p.repeat(30)]), json!({})).await;
    let sq = rerank(json!([q.repeat(30)]), json!({})).await;
    let (worse, better) = if sp < sq { (p, q) } else { (q, p) };
    // The tiny model's window is 64 tokens: the better phrase sits well past it.
    let long = format!("{}{}", worse.repeat(40), better.repeat(40));
    let first_window_only = rerank(json!([long]), json!({"max_chunks_per_doc": 1})).await;
    let all_windows = rerank(json!([long]), json!({})).await;
    assert!(
        all_windows > first_window_only,
        "best window {all_windows} should beat the first window {first_window_only}"
    );
    // v2 caps the tokens considered: with only the first 100 tokens, the better part is unseen.
    let (s, capped) = post(
        &base,
        "/v2/rerank",
        json!({"query": "ocean tides", "documents": [long], "max_tokens_per_doc": 100}),
    )
    .await;
    assert_eq!(s, 200);
    assert!(capped["results"][0]["relevance_score"].as_f64().unwrap() < all_windows);
    let (s, b) = post(
        &base,
        "/v1/rerank",
        json!({"query": "q", "documents": ["a"], "max_chunks_per_doc": 0}),
    )
    .await;
    assert_error(s, &b, 422, "max_chunks_per_doc");
}

/// The inputs the issue names: each gets the right 4xx with a JSON error, and the server stays up.
#[tokio::test]
async fn hostile_inputs_with_default_limits() {
    let base = start(true, Limits::default()).await;
    let client = reqwest::Client::new();
    // 10,000 documents: over max_items (2048).
    let docs: Vec<String> = (0..10_000).map(|i| format!("doc {i}")).collect();
    let (s, b) = post(
        &base,
        "/v1/rerank",
        json!({"query": "q", "documents": docs}),
    )
    .await;
    assert_error(s, &b, 413, "max_items");
    // A 10 MB string: over the 2 MiB body limit.
    let big = "x".repeat(10 * 1024 * 1024);
    let (s, b) = post(&base, "/embed", json!({"inputs": big})).await;
    assert_error(s, &b, 413, "limit");
    // NaN is not JSON; a float or negative top_n is a type or range error.
    let r = client
        .post(format!("{base}/v2/rerank"))
        .header("content-type", "application/json")
        .body(r#"{"query": "q", "documents": ["a"], "top_n": NaN}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (s, b) = post(
        &base,
        "/v2/rerank",
        json!({"query": "q", "documents": ["a"], "top_n": 1.5}),
    )
    .await;
    assert_error(s, &b, 422, "");
    // Invalid UTF-8 inside a JSON string.
    let r = client
        .post(format!("{base}/v1/rerank"))
        .header("content-type", "application/json")
        .body(b"{\"query\": \"\xc3\x28\", \"documents\": [\"a\"]}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_json");
    // Wrong types, missing fields, no content type.
    let (s, b) = post(&base, "/v1/rerank", json!({"query": 3, "documents": ["a"]})).await;
    assert_error(s, &b, 422, "");
    let (s, b) = post(&base, "/v1/rerank", json!({"documents": ["a"]})).await;
    assert_error(s, &b, 422, "query");
    // Token ids nest one level at most.
    let (s, b) = post(&base, "/v1/embeddings", json!({"input": [[[1, 2, 3]]]})).await;
    assert_error(s, &b, 422, "");
    let r = client
        .post(format!("{base}/embed"))
        .body(r#"{"inputs": "a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Still serving.
    let (s, _) = post(
        &base,
        "/v1/rerank",
        json!({"query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(s, 200);
}
