//! TEI's whole public surface, token-id inputs and Cohere's structured documents on a live
//! server (real all-MiniLM-L6-v2, tiny cross-encoder fixture): each answer is checked against
//! another route's, so a route cannot return the right shape with the wrong numbers.

mod common;

use common::{assert_error, get_json, minilm, post, start, tiny_reranker};
use serde_json::{json, Value};
use sift_server::{AppState, Limits, ServerConfig};

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The ids of one input's tokens in a `/tokenize` answer.
fn token_ids(tokens: &Value) -> Vec<u64> {
    tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect()
}

/// A server with the models asked for (at least one).
async fn start_models(embedder: bool, reranker: bool, config: ServerConfig) -> String {
    let state =
        AppState::new(embedder.then(minilm), reranker.then(tiny_reranker), &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        sift_server::serve(listener, state, &config, std::future::pending()).await
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn post_root_is_routed_by_the_body_and_get_root_is_health() {
    let base = start(true, Limits::default()).await;
    assert_eq!(get_json(&format!("{base}/")).await["status"], "ok");
    assert_eq!(get_json(&format!("{base}/ping")).await["status"], "ok");

    let (_, embed) = post(&base, "/embed", json!({"inputs": "a cross-encoder"})).await;
    for path in ["/", "/invocations"] {
        let (s, body) = post(&base, path, json!({"inputs": "a cross-encoder"})).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body, embed, "{path} with inputs embeds");
    }
    let rerank_body = json!({"query": "capital of France", "texts": ["Paris", "fox"]});
    let (_, reranked) = post(&base, "/rerank", rerank_body.clone()).await;
    let (s, body) = post(&base, "/", rerank_body).await;
    assert_eq!((s, &body), (200, &reranked), "a query reranks");
    let similarity_body =
        json!({"inputs": {"source_sentence": "a cat", "sentences": ["a kitten", "stocks"]}});
    let (_, similar) = post(&base, "/similarity", similarity_body.clone()).await;
    let (s, body) = post(&base, "/invocations", similarity_body).await;
    assert_eq!(
        (s, &body),
        (200, &similar),
        "source_sentence is a similarity"
    );
    let (s, body) = post(&base, "/", json!({"texts": ["x"]})).await;
    assert_error(s, &body, 422, "neither `inputs`");

    // A server with only a rerank model predicts on `inputs`, as TEI's classifier route does.
    let rerank_only = start_models(false, true, ServerConfig::default()).await;
    let (s, body) = post(&rerank_only, "/", json!({"inputs": ["capital", "Paris"]})).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body[0]["score"].is_f64() && body[0]["label"].is_string(),
        "{body}"
    );
    let info = get_json(&format!("{rerank_only}/info")).await;
    assert_eq!(info["model_id"], "bert-classifier");
    assert!(
        info["model_type"]["reranker"]["id2label"]["0"].is_string(),
        "{info}"
    );
}

#[tokio::test]
async fn info_carries_teis_fields() {
    let base = start(true, Limits::default()).await;
    let info = get_json(&format!("{base}/info")).await;
    assert_eq!(info["model_id"], "all-MiniLM-L6-v2");
    assert_eq!(info["served_model_name"], "all-MiniLM-L6-v2");
    assert!(
        info["model_sha"].is_null(),
        "a plain directory has no hub revision"
    );
    assert_eq!(info["model_dtype"], "float32");
    assert_eq!(info["model_type"]["embedding"]["pooling"], "mean");
    assert_eq!(info["max_input_length"], 256);
    assert_eq!(info["max_batch_tokens"], 16_384);
    assert!(info["max_batch_requests"].is_null());
    assert_eq!(info["max_client_batch_size"], 2048);
    assert_eq!(info["max_concurrent_requests"], 4096);
    assert!(info["tokenization_workers"].as_u64().unwrap() >= 1);
    assert!(info["version"].is_string());
    // sift's own details stay beside them.
    assert_eq!(info["rerank_model"]["model_id"], "bert-classifier");
}

#[tokio::test]
async fn embed_all_similarity_tokenize_and_decode_agree_with_embed() {
    let base = start(false, Limits::default()).await;
    let text = "Statins lower LDL cholesterol.";
    let (_, pooled) = post(&base, "/embed", json!({"inputs": text})).await;
    let pooled = floats(&pooled[0]);

    let (s, states) = post(&base, "/embed_all", json!({"inputs": [text]})).await;
    assert_eq!(s, 200, "{states}");
    let rows: Vec<Vec<f64>> = states[0].as_array().unwrap().iter().map(floats).collect();
    let (_, tokens) = post(&base, "/tokenize", json!({"inputs": text})).await;
    assert_eq!(
        rows.len(),
        tokens[0].as_array().unwrap().len(),
        "one row per token"
    );
    assert_eq!(rows[0].len(), 384);
    // all-MiniLM-L6-v2 mean-pools every token: the mean of /embed_all's rows, normalised, is
    // /embed's vector.
    let mut mean = vec![0.0; 384];
    for r in &rows {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += x / rows.len() as f64;
        }
    }
    let n = dot(&mean, &mean).sqrt();
    mean.iter_mut().for_each(|m| *m /= n);
    assert!(max_abs_diff(&mean, &pooled) < 1e-4);

    let sentences = ["LDL is lowered by statins.", "The stock market fell."];
    let (s, cosines) = post(
        &base,
        "/similarity",
        json!({"inputs": {"source_sentence": text, "sentences": sentences}, "parameters": {"truncate": true}}),
    )
    .await;
    assert_eq!(s, 200, "{cosines}");
    let (_, vectors) = post(&base, "/embed", json!({"inputs": sentences})).await;
    for (i, c) in floats(&cosines).iter().enumerate() {
        assert!((c - dot(&pooled, &floats(&vectors[i]))).abs() < 1e-4);
    }
    assert!(floats(&cosines)[0] > floats(&cosines)[1]);

    // /tokenize counts every token (it does not truncate); /decode inverts it.
    let long = "word ".repeat(600);
    let (_, long_tokens) = post(&base, "/tokenize", json!({"inputs": long})).await;
    assert_eq!(long_tokens[0].as_array().unwrap().len(), 602);
    let ids = token_ids(&tokens[0]);
    let (s, decoded) = post(&base, "/decode", json!({"ids": ids})).await;
    assert_eq!(s, 200, "{decoded}");
    assert_eq!(decoded[0], "statins lower ldl cholesterol.");
    let (_, with_special) = post(
        &base,
        "/decode",
        json!({"ids": [ids.clone(), ids[1..3]], "skip_special_tokens": false}),
    )
    .await;
    assert!(with_special[0].as_str().unwrap().starts_with("[CLS]"));
    assert_eq!(with_special.as_array().unwrap().len(), 2);
    let (s, body) = post(&base, "/decode", json!({"ids": [1, 999_999]})).await;
    assert_error(s, &body, 422, "token id 999999");
    let (s, body) = post(&base, "/decode", json!({"ids": []})).await;
    assert_error(s, &body, 422, "empty");
}

#[tokio::test]
async fn token_id_inputs_embed_like_the_text_they_came_from() {
    let base = start(false, Limits::default()).await;
    let text = "rerankers read query and document together";
    let (_, tokens) = post(&base, "/tokenize", json!({"inputs": text})).await;
    let ids = token_ids(&tokens[0]);
    let (_, from_text) = post(&base, "/embed", json!({"inputs": text})).await;
    let from_text = floats(&from_text[0]);
    let (s, from_ids) = post(&base, "/embed", json!({"inputs": ids})).await;
    assert_eq!(s, 200, "{from_ids}");
    assert!(max_abs_diff(&floats(&from_ids[0]), &from_text) < 1e-5);
    // A batch mixing ids and text; OpenAI's shapes (one id list, a list of them).
    let (_, mixed) = post(&base, "/embed", json!({"inputs": [ids, "another text"]})).await;
    assert_eq!(mixed.as_array().unwrap().len(), 2);
    for input in [json!(ids), json!([ids, ids])] {
        let (s, body) = post(
            &base,
            "/v1/embeddings",
            json!({"input": input, "model": "m"}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert!(max_abs_diff(&floats(&body["data"][0]["embedding"]), &from_text) < 1e-5);
        assert_eq!(
            body["usage"]["prompt_tokens"],
            ids.len() * body["data"].as_array().unwrap().len()
        );
    }
    let (s, body) = post(&base, "/embeddings", json!({"input": text})).await;
    assert_eq!(s, 200, "/embeddings is /v1/embeddings: {body}");

    let (s, body) = post(&base, "/embed", json!({"inputs": [101, 30_522, 102]})).await;
    assert_error(s, &body, 422, "token id 30522");
    let (s, body) = post(&base, "/v1/embeddings", json!({"input": [[101, -4]]})).await;
    assert_error(s, &body, 422, "token id -4");
    let too_many: Vec<u64> = vec![1037; 300];
    let (s, body) = post(&base, "/embed", json!({"inputs": too_many})).await;
    assert_error(s, &body, 413, "300 tokens");
    let (s, _) = post(
        &base,
        "/embed",
        json!({"inputs": too_many, "truncate": true}),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn predict_scores_pairs_like_rerank() {
    let base = start(true, Limits::default()).await;
    let (_, raw) = post(
        &base,
        "/rerank",
        json!({"query": "capital", "texts": ["Paris"], "raw_scores": true}),
    )
    .await;
    let (s, one) = post(
        &base,
        "/predict",
        json!({"inputs": ["capital", "Paris"], "raw_scores": true}),
    )
    .await;
    assert_eq!(s, 200, "{one}");
    assert!((one[0]["score"].as_f64().unwrap() - raw[0]["score"].as_f64().unwrap()).abs() < 1e-5);
    let (_, batch) = post(
        &base,
        "/predict",
        json!({"inputs": [["capital", "Paris"], ["capital", "fox"]]}),
    )
    .await;
    assert_eq!(batch.as_array().unwrap().len(), 2);
    let p = batch[1][0]["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    let (s, body) = post(&base, "/predict", json!({"inputs": "a single text"})).await;
    assert_error(s, &body, 422, "pairs");
    let (s, body) = post(&base, "/predict", json!({"inputs": [["a", "b", "c"]]})).await;
    assert_error(s, &body, 422, "3 texts");
}

#[tokio::test]
async fn cohere_object_documents_keep_their_fields_and_rank_fields_choose_the_text() {
    let base = start(true, Limits::default()).await;
    let docs = json!([
        {"title": "Paris", "text": "Paris is the capital of France.", "id": "d1", "year": 2020},
        {"title": "Foxes", "text": "The quick brown fox.", "id": "d2"},
        "a plain string document",
    ]);
    let (s, body) = post(
        &base,
        "/v1/rerank",
        json!({"query": "capital of France", "documents": docs}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    for r in body["results"].as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        let sent = &docs[i];
        let want = if sent.is_string() {
            json!({"text": sent})
        } else {
            sent.clone()
        };
        assert_eq!(r["document"], want, "every field comes back");
    }
    // rank_fields: ["text"] scores what the default scores; other fields change the text read.
    let with = |fields: Value| json!({"query": "capital of France", "documents": docs, "rank_fields": fields, "return_documents": false});
    let score_of = |body: &Value, index: u64| {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"] == index)
            .unwrap()["relevance_score"]
            .as_f64()
            .unwrap()
    };
    let (_, text_only) = post(&base, "/v2/rerank", with(json!(["text"]))).await;
    assert!((score_of(&text_only, 0) - score_of(&body, 0)).abs() < 1e-6);
    let (_, titled) = post(&base, "/v2/rerank", with(json!(["title", "text"]))).await;
    assert_ne!(score_of(&titled, 0), score_of(&body, 0));
    // Documents without `text` are valid when rank_fields names what they have.
    let untitled = json!({"query": "q", "documents": [{"title": "a"}, {"title": "b"}], "rank_fields": ["title"]});
    let (s, body) = post(&base, "/v1/rerank", untitled).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["results"][0]["document"]["title"]
            .as_str()
            .unwrap()
            .len(),
        1
    );
    let (s, body) = post(
        &base,
        "/v1/rerank",
        json!({"query": "q", "documents": [{"title": "a"}]}),
    )
    .await;
    assert_error(s, &body, 422, "no text field");
}

#[tokio::test]
async fn health_probes_are_public_and_post_root_needs_the_key() {
    let base = start_models(
        true,
        false,
        ServerConfig {
            api_keys: vec!["s3cret".into()],
            ..Default::default()
        },
    )
    .await;
    for path in ["/", "/ping", "/health"] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let (s, _) = post(&base, "/", json!({"inputs": "x"})).await;
    assert_eq!(s, 401);
    let r = reqwest::Client::new()
        .post(format!("{base}/"))
        .bearer_auth("s3cret")
        .json(&json!({"inputs": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
