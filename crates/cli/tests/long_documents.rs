//! One long-document policy everywhere: the same (query, long document) scored by `sift rerank`,
//! `sift search`, and a live `sift serve`'s TEI `/rerank`, Cohere `/v1/rerank` and `/v2/rerank`
//! and Jina `/v1/rerank` gets the same score, under the default rule (windows, best window)
//! and under `--long-documents truncate` — and the two rules really differ on it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

mod common;
use common::{golden, Server};

fn sift(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_sift"))
        .args(args)
        .env("SIFT_THREADS", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sift {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

const QUERY: &str = "which proteins bind the receptor";

/// ~400 words: several windows of the 64-token test reranker.
fn long_document() -> String {
    let sentences = [
        "The receptor is expressed in many tissues and its ligands vary.",
        "Several proteins were screened for binding in cell culture.",
        "Kinase activity rose after the treatment in most samples.",
        "A second assay measured how strongly each protein bound the receptor.",
        "Mice lacking the gene developed normally but aged faster.",
        "The structure shows a pocket where small molecules attach.",
    ];
    (0..12)
        .flat_map(|i| sentences.iter().map(move |s| format!("{s} ({i})")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn serve(extra: &[&str]) -> Server {
    let model = golden("bert-classifier");
    let mut args = vec!["--rerank-model", model.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn post(base: &str, path: &str, body: Value) -> Value {
    common::post_json(base, path, &body)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The score of the long document from every interface, under `policy_flags`.
fn scores_everywhere(collection: &Path, doc: &str, policy_flags: &[&str]) -> Vec<(String, f64)> {
    let mut scores = Vec::new();
    let rerank_model = golden("bert-classifier");

    let mut args = vec!["rerank", "--model", &rerank_model, "--query", QUERY, doc];
    args.extend_from_slice(policy_flags);
    let ranked = json_out(&sift(&args));
    scores.push(("sift rerank".to_string(), f(&ranked[0]["score"])));

    let col = collection.to_str().unwrap();
    let mut args = vec![
        "search",
        "--collection",
        col,
        "--mode",
        "bm25",
        "--rerank-model",
        &rerank_model,
        "--json",
        QUERY,
    ];
    args.extend_from_slice(policy_flags);
    let results = json_out(&sift(&args));
    let hit = results["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == "long")
        .expect("the long document is recalled");
    scores.push(("sift search".to_string(), f(&hit["rerank_score"])));

    let server = serve(policy_flags);
    let b = &server.base;
    // `truncate: true`: TEI's own flag for accepting text beyond what is scored (here, windows
    // past the default limit of 10).
    let tei = post(
        b,
        "/rerank",
        json!({"query": QUERY, "texts": [doc, "short text"], "truncate": true}),
    );
    let tei = tei
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["index"] == 0)
        .unwrap()
        .clone();
    scores.push(("TEI /rerank".to_string(), f(&tei["score"])));
    let v1 = post(b, "/v1/rerank", json!({"query": QUERY, "documents": [doc]}));
    scores.push((
        "Cohere /v1/rerank".to_string(),
        f(&v1["results"][0]["relevance_score"]),
    ));
    let v2 = post(
        b,
        "/v2/rerank",
        json!({"model": "r", "query": QUERY, "documents": [doc]}),
    );
    scores.push((
        "Cohere /v2/rerank".to_string(),
        f(&v2["results"][0]["relevance_score"]),
    ));
    let jina = post(
        b,
        "/v1/rerank",
        json!({"model": "jina-reranker", "query": QUERY, "documents": [{"text": doc}], "top_n": 1}),
    );
    scores.push((
        "Jina /v1/rerank".to_string(),
        f(&jina["results"][0]["relevance_score"]),
    ));
    scores
}

fn assert_all_equal(scores: &[(String, f64)]) {
    let (first, want) = &scores[0];
    for (who, got) in scores {
        assert!(
            (got - want).abs() < 1e-5,
            "{who} scored {got}, {first} {want}: {scores:?}"
        );
    }
}

#[test]
fn every_interface_scores_a_long_document_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let doc = long_document();
    let corpus = dir.path().join("docs.jsonl");
    std::fs::write(
        &corpus,
        format!(
            "{}\n{}\n",
            json!({"id": "long", "text": doc}),
            json!({"id": "other", "text": "the receptor binds nothing here"})
        ),
    )
    .unwrap();
    let col = dir.path().join("col");
    sift(&[
        "index",
        "--collection",
        col.to_str().unwrap(),
        "--embed-model",
        &golden("bert-encoder"),
        corpus.to_str().unwrap(),
    ]);

    let windows = scores_everywhere(&col, &doc, &[]);
    assert_all_equal(&windows);
    let truncated = scores_everywhere(&col, &doc, &["--long-documents", "truncate"]);
    assert_all_equal(&truncated);
    assert!(
        (windows[0].1 - truncated[0].1).abs() > 1e-6,
        "the document spans several windows, so the rules must differ: {} vs {}",
        windows[0].1,
        truncated[0].1
    );
}

/// `--long-documents best` scores the windows sharing the most query tokens: the first window
/// when the query's words open the document (then it equals truncation), a later one when they
/// close it (then it does not), and every window when it may keep them all (then it equals the
/// windows rule).
#[test]
fn the_best_rule_scores_the_windows_that_match_the_query() {
    let filler = (0..20)
        .map(|i| format!("Weather notes from station {i} mention wind and rain."))
        .collect::<Vec<_>>()
        .join(" ");
    let matching = "Which proteins bind the receptor was settled by a binding assay.";
    let score = |doc: &str, flags: &[&str]| -> f64 {
        let model = golden("bert-classifier");
        let mut args = vec!["rerank", "--model", &model, "--query", QUERY, doc];
        args.extend_from_slice(flags);
        f(&json_out(&sift(&args))[0]["logit"])
    };
    let best1 = ["--long-documents", "best", "--max-windows", "1"];
    let truncate = ["--long-documents", "truncate"];

    let opening = format!("{matching} {filler}");
    assert!((score(&opening, &best1) - score(&opening, &truncate)).abs() < 1e-6);

    let closing = format!("{filler} {matching}");
    assert!(
        (score(&closing, &best1) - score(&closing, &truncate)).abs() > 1e-6,
        "the matching window is the last one, not the first"
    );
    let all = ["--long-documents", "best", "--max-windows", "10"];
    assert!((score(&closing, &all) - score(&closing, &[])).abs() < 1e-6);
}
