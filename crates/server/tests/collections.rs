//! Collection routes on a live server: upsert, search in every mode, delete, errors, and a
//! shutdown in the middle of an upsert that leaves the collection whole.

mod common;

use std::time::Duration;

use common::{assert_error, post};
use serde_json::{json, Value};
use sift_index::store::{self, Access};
use sift_index::Location;
use sift_server::Limits;

/// A server over `dir` with default limits; the sender stops it gracefully.
async fn start(
    dir: &std::path::Path,
    with_reranker: bool,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let s = common::start_collections(dir, with_reranker, Limits::default()).await;
    (s.base, s.stop, s.task)
}

fn docs() -> Value {
    json!({"documents": [
        {"id": "paris", "title": "Paris", "text": "Paris is the capital and largest city of France.", "metadata": {"lang": "en"}},
        {"id": "berlin", "title": "Berlin", "text": "Berlin is the capital of Germany and its largest city."},
        {"id": "tides", "text": "Ocean tides are caused by the gravitational pull of the moon and the sun."},
        {"id": "photo", "text": "Photosynthesis converts light energy into chemical energy in plants."}
    ]})
}

#[tokio::test]
async fn upsert_search_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (base, stop, handle) = start(dir.path(), true).await;
    let (s, b) = post(&base, "/collections/geo/documents", docs()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["added"].as_u64(), b["chunks"].as_u64()),
        (Some(4), Some(4))
    );
    let (_, again) = post(&base, "/collections/geo/documents", docs()).await;
    assert_eq!(again["unchanged"], 4);

    let list: Value = reqwest::get(format!("{base}/collections"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["collections"], json!(["geo"]));

    for mode in ["dense", "bm25", "hybrid"] {
        let (s, r) = post(
            &base,
            "/collections/geo/search",
            json!({"query": "what causes the tides of the ocean", "mode": mode, "rerank": false, "top_k": 2}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["hits"][0]["id"], "tides", "{mode}: {r}");
        // BM25 finds only documents sharing a word with the query once stop words are gone
        // ("caus", "tide", "ocean"): one here.
        let want = if mode == "bm25" { 1 } else { 2 };
        assert_eq!(r["hits"].as_array().unwrap().len(), want, "{mode}: {r}");
        assert_eq!(r["reranked"], false);
    }
    let (_, r) = post(
        &base,
        "/collections/geo/search",
        json!({"query": "capital of France", "mode": "hybrid"}),
    )
    .await;
    assert_eq!(r["reranked"], true);
    let hit = r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == "paris")
        .unwrap();
    assert!(hit["rerank_score"].is_f64() && hit["fused_rank"].is_u64());
    assert_eq!(hit["metadata"]["lang"], "en");
    assert!(r["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    // A request's latency budget: one every candidate fits reranks them all, as without one;
    // one that is not a positive number of milliseconds is refused.
    let (s, budgeted) = post(
        &base,
        "/collections/geo/search",
        json!({"query": "capital of France", "mode": "hybrid", "rerank_budget_ms": 1e9}),
    )
    .await;
    assert_eq!(s, 200, "{budgeted}");
    let scores = |r: &Value| -> Vec<(String, f64)> {
        r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["id"].as_str().unwrap().to_owned(),
                    h["rerank_score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (got, want) = (scores(&budgeted), scores(&r));
    assert_eq!(got.len(), want.len());
    for ((id, score), (want_id, want_score)) in got.iter().zip(&want) {
        assert_eq!(id, want_id, "{got:?} vs {want:?}");
        assert!((score - want_score).abs() < 1e-4, "{got:?} vs {want:?}");
    }
    for ms in [json!(0), json!(-3.5)] {
        let (s, b) = post(
            &base,
            "/collections/geo/search",
            json!({"query": "capital of France", "rerank_budget_ms": ms}),
        )
        .await;
        assert_eq!(s, 422, "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("positive number"),
            "{b}"
        );
    }
    // The first stage's weight in the reranked order: 1 keeps its order, 0 the reranker's.
    for (weight, key) in [(1.0, "fused_rank"), (0.0, "rerank_score")] {
        let (s, r) = post(
            &base,
            "/collections/geo/search",
            json!({"query": "capital of France", "first_stage_weight": weight}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        let hits = r["hits"].as_array().unwrap();
        let keys: Vec<f64> = hits.iter().map(|h| h[key].as_f64().unwrap()).collect();
        let ordered = if key == "fused_rank" {
            keys.windows(2).all(|p| p[0] < p[1])
        } else {
            keys.windows(2).all(|p| p[0] >= p[1])
        };
        assert!(ordered, "weight {weight}: {keys:?}");
    }

    // The fusion is the request's to choose: plain RRF scores are sums of 1/(60 + rank), the
    // default convex combination's lie in 0–1 with 1 only for a document first in both legs.
    for (fusion, top) in [("rrf", 2.0 / 61.0), ("convex:dense=0.5", 1.0)] {
        let (s, r) = post(
            &base,
            "/collections/geo/search",
            json!({"query": "capital of France", "rerank": false, "fusion": fusion}),
        )
        .await;
        assert_eq!(s, 200, "{r}");
        let first = r["hits"][0]["fused_score"].as_f64().unwrap();
        assert!(first <= top + 1e-6 && first > top / 3.0, "{fusion}: {r}");
    }

    let client = reqwest::Client::new();
    let r = client
        .delete(format!("{base}/collections/geo/documents/tides"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .delete(format!("{base}/collections/geo/documents/tides"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, r) = post(
        &base,
        "/collections/geo/search",
        json!({"query": "ocean tides moon", "mode": "bm25"}),
    )
    .await;
    assert!(r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["id"] != "tides"));

    // Errors.
    let (s, b) = post(&base, "/collections/nope/search", json!({"query": "x"})).await;
    assert_error(s, &b, 404, "no collection named");
    let (s, b) = post(&base, "/collections/..%2Fetc/search", json!({"query": "x"})).await;
    assert_error(s, &b, 422, "collection name");
    let (s, b) = post(
        &base,
        "/collections/geo/search",
        json!({"query": "x", "top_k": 0}),
    )
    .await;
    assert_error(s, &b, 422, "top_k");
    // Sizes are bounded before any work (an unbounded depth once allocated 72 GB).
    for (field, value) in [
        ("depth", json!(1_000_000_000u64)),
        ("depth", json!(i64::MAX)),
        ("candidates", json!(1_000_000)),
        ("top_k", json!(1_000_000)),
        ("first_stage_weight", json!(1.5)),
        ("first_stage_weight", json!(-0.1)),
        ("fusion", json!("bm25")),
        ("fusion", json!("rrf:k=-1")),
        ("fusion", json!("convex:dense=2")),
        ("fusion", json!(3)),
    ] {
        let (s, b) = post(
            &base,
            "/collections/geo/search",
            json!({"query": "x", field: value}),
        )
        .await;
        assert_error(s, &b, 422, field);
    }
    let (s, b) = post(
        &base,
        "/collections/geo/search",
        json!({"query": "x", "mode": "fuzzy"}),
    )
    .await;
    assert_error(s, &b, 422, "");
    let (s, b) = post(&base, "/collections/geo/search", json!({"query": "  "})).await;
    assert_error(s, &b, 422, "empty");
    let (s, b) = post(
        &base,
        "/collections/geo/documents",
        json!({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}),
    )
    .await;
    assert_error(s, &b, 422, "twice");
    let (s, b) = post(
        &base,
        "/collections/geo/documents",
        json!({"documents": [{"id": "", "text": "x"}]}),
    )
    .await;
    assert_error(s, &b, 422, "empty id");
    let (s, b) = post(
        &base,
        "/collections/geo/documents",
        json!({"documents": [{"id": "x".repeat(sift_index::MAX_ID_BYTES + 1), "text": "x"}]}),
    )
    .await;
    assert_error(s, &b, 422, "at most 1024 bytes");
    // A rejected batch wrote nothing.
    let (_, r) = post(
        &base,
        "/collections/geo/search",
        json!({"query": "x y", "mode": "dense", "top_k": 100}),
    )
    .await;
    assert_eq!(r["hits"].as_array().unwrap().len(), 3);

    stop.send(()).unwrap();
    handle.await.unwrap();
    // Reopened by a new server: everything committed is there.
    let (base, _stop, _h) = start(dir.path(), false).await;
    let (_, r) = post(
        &base,
        "/collections/geo/search",
        json!({"query": "capital city", "mode": "bm25", "top_k": 10}),
    )
    .await;
    assert_eq!(r["hits"].as_array().unwrap().len(), 2);
}

/// Graceful shutdown while an upsert is running: the request completes, and the collection on
/// disk is consistent and complete.
#[tokio::test]
async fn shutdown_during_upsert_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (base, stop, handle) = start(dir.path(), false).await;
    let documents: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("d{i}"), "text": format!("document {i} about subject {} with several words", i % 11)}))
        .collect();
    let upsert = {
        let base = base.clone();
        tokio::spawn(async move {
            post(
                &base,
                "/collections/c/documents",
                json!({ "documents": documents }),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    let (s, b) = upsert.await.unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["added"], 300);
    handle.await.unwrap();
    let collection = store::open(&Location::Local(dir.path().join("c")), Access::Write).unwrap();
    collection.verify().unwrap();
    assert_eq!(collection.len().unwrap(), 300);
}

#[tokio::test]
async fn collection_routes_without_a_collections_dir_say_how_to_enable_them() {
    let base = common::start(false, Limits::default()).await;
    let (s, b) = post(&base, "/collections/x/search", json!({"query": "q"})).await;
    assert_error(s, &b, 404, "--collections");
}

/// A collection built with another embedding model is refused with 409, not searched with
/// incompatible vectors.
#[tokio::test]
async fn a_collection_of_another_model_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let other = sift_models::Embedder::load(
        common::workspace().join("crates/models/tests/fixtures/golden/bert-encoder"),
        sift_models::EmbedderOptions::default(),
    )
    .unwrap();
    let manifest =
        sift_pipeline::manifest_for(&other, None, sift_index::Analyzer::English).unwrap();
    drop(store::open_or_create(&Location::Local(dir.path().join("old")), manifest).unwrap());
    let (base, _stop, _h) = start(dir.path(), false).await;
    let (s, b) = post(&base, "/collections/old/search", json!({"query": "q"})).await;
    assert_error(s, &b, 409, "bert-encoder");
    let (s, b) = post(
        &base,
        "/collections/old/documents",
        json!({"documents": [{"id": "a", "text": "b"}]}),
    )
    .await;
    assert_error(s, &b, 409, "");
}
