//! LLM rerankers through the same doors as cross-encoders: `sift rerank` and a live
//! `sift serve`'s TEI `/rerank` and Cohere `/v1/rerank` give the scores the published recipes
//! give in transformers (tiny random-weight decoders from scripts/golden/make_llm_fixtures.py).

use std::process::{Command, Output};

use serde_json::{json, Value};

mod common;
use common::{workspace, Server};

const TOLERANCE: f64 = 1e-4;

fn llm_fixture(name: &str) -> String {
    workspace()
        .join("crates/models/tests/fixtures/llm")
        .join(name)
        .display()
        .to_string()
}

fn expected(name: &str) -> Value {
    let path = workspace()
        .join("crates/models/tests/fixtures/llm")
        .join(name)
        .join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sift"))
        .args(args)
        .env("SIFT_THREADS", "2")
        .output()
        .unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every pair of every recipe case of the Qwen3 fixture (its own recipe and bge's, default and
/// custom prompts, one document cut to the max length) scored by `sift rerank`.
#[test]
fn sift_rerank_scores_pairs_as_the_recipes_do() {
    let model = llm_fixture("qwen3");
    for case in expected("qwen3")["cases"].as_array().unwrap() {
        let max_length = case["max_length"].to_string();
        for pair in case["pairs"].as_array().unwrap() {
            let mut args = vec![
                "rerank",
                "--model",
                &model,
                "--rerank-template",
                case["template"].as_str().unwrap(),
                "--max-length",
                &max_length,
                // The recipes cut long documents; sift's default scores their windows.
                "--long-documents",
                "truncate",
                "-q",
                pair["query"].as_str().unwrap(),
                pair["document"].as_str().unwrap(),
            ];
            if let Some(prompt) = case["prompt"].as_str() {
                args.extend(["--rerank-prompt", prompt]);
            }
            let out = sift(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ranked: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            let got = &ranked[0];
            for key in ["logit", "score"] {
                let diff = (f(&got[key]) - f(&pair[key])).abs();
                assert!(
                    diff <= TOLERANCE,
                    "{} {:?}: {key} {} vs {}",
                    case["template"],
                    pair["query"],
                    got[key],
                    pair[key]
                );
            }
        }
    }
}

#[test]
fn a_prompt_for_a_cross_encoder_and_an_unknown_template_are_refused() {
    let cross_encoder = common::golden("bert-classifier");
    let out = sift(&[
        "rerank",
        "--model",
        &cross_encoder,
        "--rerank-prompt",
        "judge",
        "-q",
        "q",
        "d",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LLM rerankers only"), "{err}");

    let out = sift(&[
        "rerank",
        "--model",
        &llm_fixture("gemma"),
        "--rerank-template",
        "gpt",
        "-q",
        "q",
        "d",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("qwen3-reranker, bge-llm"), "{err}");
}

fn post(base: &str, path: &str, body: Value) -> Value {
    common::post_json(base, path, &body)
}

/// A Gemma 2 reranker behind the TEI and Cohere routes: each pair that the recipe does not cut
/// (the server runs at the recipe's default max length, the fixture at 48 tokens) scores as
/// transformers scored it.
#[test]
fn sift_serve_reranks_with_an_llm_on_tei_and_cohere_routes() {
    let model = llm_fixture("gemma2");
    let server = Server::start(&["--rerank-model", &model]);
    // Case 0: the recipe's default prompt (Cohere v1); case 1: a request's own prompt
    // (sift's extension of both APIs; Cohere v2).
    for (case, cohere_route) in expected("gemma2")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["/v1/rerank", "/v2/rerank"])
    {
        let prompt = &case["prompt"];
        let mut checked = 0;
        for pair in case["pairs"].as_array().unwrap() {
            let document = pair["document"].as_str().unwrap();
            if document.len() > 100 {
                continue;
            }
            let query = pair["query"].as_str().unwrap();
            let mut tei_body = json!({"query": query, "texts": [document], "raw_scores": true});
            let mut cohere_body = json!({"query": query, "documents": [document]});
            if !prompt.is_null() {
                tei_body["prompt"] = prompt.clone();
                cohere_body["prompt"] = prompt.clone();
            }
            let logit = f(&post(&server.base, "/rerank", tei_body)[0]["score"]);
            let score =
                f(&post(&server.base, cohere_route, cohere_body)["results"][0]["relevance_score"]);
            assert!(
                (logit - f(&pair["logit"])).abs() <= TOLERANCE,
                "{query} (prompt {prompt}): TEI {logit} vs {}",
                pair["logit"]
            );
            assert!(
                (score - f(&pair["score"])).abs() <= TOLERANCE,
                "{query} (prompt {prompt}): Cohere {score} vs {}",
                pair["score"]
            );
            checked += 1;
        }
        assert!(checked >= 4);
    }
}

/// A prompt sent to a server whose reranker is a cross-encoder is a client error naming why.
#[test]
fn a_prompt_for_a_cross_encoder_server_is_a_422() {
    let server = Server::start(&["--rerank-model", &common::golden("bert-classifier")]);
    let (code, body) = common::curl(
        "POST",
        &format!("{}/rerank", server.base),
        &json!({"query": "q", "texts": ["d"], "prompt": "judge"}),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("no prompt to replace"), "{body}");
}

/// A layerwise MiniCPM behind the TEI and Cohere routes with a per-request `cutoff_layer`:
/// each request stops at its own layer and scores as FlagEmbedding does there; cutoffs without
/// a head, compression on a model without it, and a cutoff for a cross-encoder are 422s.
#[test]
fn a_request_picks_its_own_cutoff_layer() {
    let server = Server::start(&["--rerank-model", &llm_fixture("minicpm-layerwise")]);
    let mut checked = 0;
    for case in expected("minicpm-layerwise")["cases"].as_array().unwrap() {
        let cutoff = case["cutoff_layer"].clone();
        for pair in case["pairs"].as_array().unwrap() {
            let document = pair["document"].as_str().unwrap();
            if document.len() > 100 {
                continue;
            }
            let query = pair["query"].as_str().unwrap();
            let tei = json!({"query": query, "texts": [document], "raw_scores": true, "cutoff_layer": cutoff});
            let logit = f(&post(&server.base, "/rerank", tei)[0]["score"]);
            let cohere = json!({"query": query, "documents": [document], "cutoff_layer": cutoff});
            let score =
                f(&post(&server.base, "/v2/rerank", cohere)["results"][0]["relevance_score"]);
            assert!(
                (logit - f(&pair["logit"])).abs() <= TOLERANCE,
                "cutoff {cutoff}: TEI {logit} vs {}",
                pair["logit"]
            );
            assert!(
                (score - f(&pair["score"])).abs() <= TOLERANCE,
                "cutoff {cutoff}: Cohere {score} vs {}",
                pair["score"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked}");
    for (body, want) in [
        (
            json!({"query": "q", "texts": ["d"], "cutoff_layer": 9}),
            "1..=3",
        ),
        (
            json!({"query": "q", "texts": ["d"], "compress_ratio": 2}),
            "lightweight",
        ),
    ] {
        let (code, answer) = common::curl("POST", &format!("{}/rerank", server.base), &body);
        assert_eq!(code, 422, "{answer}");
        assert!(answer.to_string().contains(want), "{answer}");
    }
    let cross = Server::start(&["--rerank-model", &common::golden("bert-classifier")]);
    let (code, answer) = common::curl(
        "POST",
        &format!("{}/v1/rerank", cross.base),
        &json!({"query": "q", "documents": ["d"], "cutoff_layer": 1}),
    );
    assert_eq!(code, 422, "{answer}");
    assert!(
        answer.to_string().contains("not a layerwise LLM reranker"),
        "{answer}"
    );
}

/// `sift models` lists decoder directories and GGUF files (in the folder's gguf/) with their
/// recipe, layers and weight types, and `--model NAME` finds a GGUF file by its file name.
#[test]
fn sift_models_lists_llm_rerankers_and_gguf_files_resolve_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        llm_fixture("minicpm-layerwise"),
        dir.path().join("layerwise"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("gguf")).unwrap();
    let smol = common::models_dir().join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(smol.is_file(), "run scripts/setup.sh --gguf");
    std::os::unix::fs::symlink(&smol, dir.path().join("gguf/smol.gguf")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sift"))
        .args(["models", "--json"])
        .env("SIFT_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    let layerwise = find("layerwise");
    assert_eq!(layerwise["role"], "llm-reranker");
    assert_eq!(layerwise["recipe"], "bge-llm");
    assert_eq!(layerwise["layerwise_heads"], "1..=3");
    assert_eq!(layerwise["layers"], 3);
    let gguf = find("smol.gguf");
    assert_eq!(gguf["role"], "llm-reranker");
    assert!(gguf["weights"].as_str().unwrap().contains("Q4_1"), "{gguf}");

    let out = Command::new(env!("CARGO_BIN_EXE_sift"))
        .args(["rerank", "--model", "smol.gguf", "-q", "capital of France"])
        .args(["Paris is the capital of France.", "Bananas are yellow."])
        .env("SIFT_MODELS_DIR", dir.path())
        .env("SIFT_THREADS", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ranked: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ranked.len(), 2);
    assert!(ranked.iter().all(|r| f(&r["logit"]).is_finite()));
}

#[test]
fn a_cutoff_layer_outside_the_heads_is_refused_by_the_cli() {
    let out = sift(&[
        "rerank",
        "--model",
        &llm_fixture("minicpm-layerwise"),
        "--cutoff-layer",
        "9",
        "-q",
        "q",
        "d",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cutoff layer 9") && err.contains("1..=3"),
        "{err}"
    );
}
