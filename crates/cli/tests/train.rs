//! `sift train-reranker` end to end with a tiny random-weight BERT as the base: clear errors
//! before any work, a killed run resumed to the same weights an uninterrupted run reaches, and
//! an output directory that `sift rerank` loads.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

mod common;
use common::{dataset, fails, golden, sift_cmd, succeeds};

/// A temporary directory holding the test dataset, with the paths a run takes: the dataset,
/// the collection to build, and the tiny base model.
fn workspace() -> (tempfile::TempDir, String, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let d = data.display().to_string();
    let c = tmp.path().join("col").display().to_string();
    (tmp, d, c, tiny())
}

fn tiny() -> String {
    golden("bert-encoder")
}

/// Runs sift, expects success, and parses its stdout as JSON.
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = sift_cmd(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `sift search --json` hits of `query` over `collection` reranked by `model`, at the model's
/// own first-stage weight unless `weight` is given.
fn search_hits(
    collection: &str,
    embed_model: &str,
    model: &str,
    weight: Option<&str>,
    top_k: &str,
    query: &str,
) -> Vec<serde_json::Value> {
    let mut args = vec![
        "search",
        "--collection",
        collection,
        "--embed-model",
        embed_model,
        "--rerank-model",
        model,
        "--json",
        "-k",
        top_k,
    ];
    if let Some(w) = weight {
        args.extend(["--first-stage-weight", w]);
    }
    args.push(query);
    json_of(&args)["hits"].as_array().unwrap().clone()
}

fn train_args<'a>(data: &'a str, collection: &'a str, out: &'a str, tiny: &'a str) -> Vec<&'a str> {
    vec![
        "train-reranker",
        "--base",
        tiny,
        "--embed-model",
        tiny,
        "--data",
        data,
        "--collection",
        collection,
        "--out",
        out,
        "--epochs",
        "2",
        "--groups-per-batch",
        "1",
        "--accumulation-steps",
        "2",
        "--hard-negatives",
        "2",
        "--random-negatives",
        "1",
        "--max-length",
        "48",
        "--checkpoint-every",
        "2",
        "--dev-depth",
        "10",
        "--learning-rate",
        "1e-3",
    ]
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut t: Vec<(String, Vec<f32>)> =
        candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let (tmp, d, c, t) = workspace();
    // The output directory exists.
    let exists = tmp.path().join("exists");
    std::fs::create_dir(&exists).unwrap();
    let e = exists.display().to_string();
    fails(
        &sift_cmd(&train_args(&d, &c, &e, &t)).output().unwrap(),
        "already exists",
    );
    let out = tmp.path().join("out").display().to_string();
    // --resume without a checkpoint.
    let mut args = train_args(&d, &c, &e, &t);
    args.push("--resume");
    fails(&sift_cmd(&args).output().unwrap(), "no checkpoint");
    // A base model of an unsupported architecture.
    let gpt = tmp.path().join("gpt2");
    std::fs::create_dir(&gpt).unwrap();
    std::fs::write(
        gpt.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 10}"#,
    )
    .unwrap();
    let g = gpt.display().to_string();
    fails(
        &sift_cmd(&train_args(&d, &c, &out, &g)).output().unwrap(),
        "unsupported model architecture",
    );
    // Malformed qrels.
    let bad = tmp.path().join("bad");
    dataset(&bad);
    std::fs::write(bad.join("qrels.tsv"), "1\td0\n").unwrap();
    let b = bad.display().to_string();
    fails(
        &sift_cmd(&train_args(&b, &c, &out, &t)).output().unwrap(),
        "qrels.tsv",
    );
    // Judged documents missing from the corpus.
    std::fs::write(bad.join("qrels.tsv"), "1\td0\t1\n2\tnope\t1\n").unwrap();
    fails(
        &sift_cmd(&train_args(&b, &c, &out, &t)).output().unwrap(),
        "not in the corpus",
    );
    assert!(!Path::new(&out).exists(), "nothing written on refusal");
    assert!(!Path::new(&c).exists(), "no collection built on refusal");
}

/// Kill -9 mid-run, `--resume`, and end with the weights of a run that was never interrupted.
#[test]
fn a_killed_run_resumes_to_the_same_model() {
    let (tmp, d, c, t) = workspace();
    let whole = tmp.path().join("whole").display().to_string();
    let out = sift_cmd(&train_args(&d, &c, &whole, &t)).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("dev nDCG@10"), "{log}");

    let resumed = tmp.path().join("resumed").display().to_string();
    let mut child = sift_cmd(&train_args(&d, &c, &resumed, &t))
        .env("SIFT_TRAIN_STEP_DELAY_MS", "150")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("checkpoint at step 4") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-run
    child.wait().unwrap();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&resumed).join("checkpoint/state.json")).unwrap(),
    )
    .unwrap();
    let total = state["total_steps"].as_u64().unwrap();
    let interrupted_at = state["step"].as_u64().unwrap();
    assert!(interrupted_at < total, "the kill landed before the end");

    let mut args = train_args(&d, &c, &resumed, &t);
    args.push("--resume");
    let out = sift_cmd(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("resuming at step {interrupted_at}/{total}")),
        "{log}"
    );
    let a = tensors(&Path::new(&whole).join("checkpoint/model.safetensors"));
    let b = tensors(&Path::new(&resumed).join("checkpoint/model.safetensors"));
    let diff = max_diff(&a, &b);
    assert!(diff < 1e-6, "resumed weights differ by {diff}");
    let best_a = tensors(&Path::new(&whole).join("model.safetensors"));
    let best_b = tensors(&Path::new(&resumed).join("model.safetensors"));
    assert!(max_diff(&best_a, &best_b) < 1e-6);

    // The output is a Hugging Face cross-encoder directory sift loads.
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&whole).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"]["0"], "LABEL_0");
    assert!(Path::new(&whole).join("tokenizer.json").is_file());
    let ranked = json_of(&[
        "rerank",
        "--model",
        &whole,
        "--query",
        "what is known about the volcano",
        "The volcano is studied here.",
        "Unrelated remarks about daily life.",
    ]);
    assert_eq!(ranked.as_array().unwrap().len(), 2);

    // The blend weight chosen on dev is saved beside the weights (the same for the resumed
    // run) and search applies it, or the weight a user asks for.
    let weight = |dir: &str| {
        sift_models::rerank::RerankSettings::from_dir(Path::new(dir))
            .unwrap()
            .first_stage_weight
            .expect("sift_rerank.json names a weight")
    };
    let w = weight(&whole);
    assert!((0.0..=1.0).contains(&w), "{w}");
    assert_eq!(w, weight(&resumed));
    let search = |w: &str| {
        search_hits(
            &c,
            &t,
            &whole,
            Some(w),
            "20",
            "what is known about the comet",
        )
    };
    let first_stage_only = search("1");
    assert!(first_stage_only.len() > 2);
    assert!(first_stage_only
        .iter()
        .all(|h| h["rank"] == h["fused_rank"]));
    let reranker_only: Vec<f64> = search("0")
        .iter()
        .map(|h| h["rerank_score"].as_f64().unwrap())
        .collect();
    assert_eq!(reranker_only.len(), first_stage_only.len());
    assert!(
        reranker_only.windows(2).all(|p| p[0] >= p[1]),
        "{reranker_only:?}"
    );
    let out = sift_cmd(&[
        "search",
        "--collection",
        &c,
        "--rerank-model",
        &whole,
        "--first-stage-weight",
        "1.5",
        "comet",
    ])
    .output()
    .unwrap();
    fails(&out, "between 0 and 1");
}

/// A collection holding documents the training corpus lacks (built from another file) must not
/// crash the dev evaluation: those candidates are left out, as they are for negatives.
#[test]
fn a_collection_with_documents_outside_the_corpus_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let mut corpus = std::fs::read_to_string(data.join("corpus.jsonl")).unwrap();
    corpus.push_str(
        "{\"_id\": \"stray\", \"title\": \"enzyme\", \"text\": \"what is known about the enzyme: the enzyme, the enzyme\"}\n",
    );
    let bigger = tmp.path().join("bigger.jsonl");
    std::fs::write(&bigger, corpus).unwrap();
    let (d, c, t) = (
        data.display().to_string(),
        tmp.path().join("col").display().to_string(),
        tiny(),
    );
    let out = sift_cmd(&[
        "index",
        "--collection",
        &c,
        "--embed-model",
        &t,
        bigger.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = tmp.path().join("model").display().to_string();
    let mut args = train_args(&d, &c, &model, &t);
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap();
    args[epochs + 1] = "1";
    let out = sift_cmd(&args).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("dev nDCG@10"), "{log}");
}

/// A planted document prior: three "hub" documents, unrelated in wording to any query, are
/// relevant to most training queries. A reranker learns that prior (alone it puts a hub first
/// for queries it never saw); the recipe measures that on the leak-free dev side and blends
/// the first stage back in, so search by default does not rank a hub first for those queries.
#[test]
fn a_planted_document_prior_does_not_lead_unrelated_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let topics = [
        "paris",
        "dog",
        "fox",
        "cafe",
        "tumour",
        "vaccines",
        "disease",
        "cells",
        "hypoxia",
        "gene",
        "france",
        "emoji",
        "facade",
        "angstrom",
        "brown",
        "adults",
        "risk",
        "chat",
        "reranker",
        "retrieval",
        "severe",
        "older",
        "express",
        "brow",
        "deja",
    ];
    let hubs = [
        "lazy quick lazy quick",
        "jumps over jumps over",
        "good naive good naive",
    ];
    let mut corpus = String::new();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, t) in topics.iter().enumerate() {
        corpus.push_str(&format!(
            "{{\"_id\": \"d{i}\", \"title\": \"the {t}\", \"text\": \"the {t} is studied here; the {t} shows changes.\"}}\n\
             {{\"_id\": \"x{i}\", \"title\": \"notes\", \"text\": \"under older adults number {i}.\"}}\n"
        ));
        let q = i + 1;
        queries.push_str(&format!(
            "{{\"_id\": \"{q}\", \"text\": \"what is known about the {t}\"}}\n"
        ));
        qrels.push_str(&format!("{q}\td{i}\t1\n"));
        // Query ids divisible by 5 are the dev side under the ids rule used below; only the
        // training side is relevant to hubs, so this split is document-disjoint by design.
        if q % 5 != 0 {
            qrels.push_str(&format!("{q}\thub{}\t1\n", q % 3));
        }
    }
    for (j, h) in hubs.iter().enumerate() {
        corpus.push_str(&format!(
            "{{\"_id\": \"hub{j}\", \"title\": \"review\", \"text\": \"a review: {h}.\"}}\n"
        ));
    }
    std::fs::write(data.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(data.join("queries.jsonl"), queries).unwrap();
    std::fs::write(data.join("qrels.tsv"), qrels).unwrap();

    let (d, c, t) = (
        data.display().to_string(),
        tmp.path().join("col").display().to_string(),
        tiny(),
    );
    let out = tmp.path().join("out").display().to_string();
    let mut args = train_args(&d, &c, &out, &t);
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap() + 1;
    args[epochs] = "4";
    // The weight is chosen at the depth search then reranks (its default, 100 candidates; the
    // corpus has 53 documents). The tiny embedder's noise puts hub1 second in the first stage
    // of every query, so only a weight near 1 keeps it from leading, and that weight measured
    // on 10 candidates does not hold on 53.
    let depth = args.iter().position(|a| *a == "--dev-depth").unwrap() + 1;
    args[depth] = "100";
    args.extend(["--split-rule", "ids-leaky"]);
    let run = sift_cmd(&args).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let top = |topic: &str, weight: Option<&str>| -> String {
        let query = format!("what is known about the {topic}");
        search_hits(&c, &t, &out, weight, "10", &query)[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let dev_topics: Vec<&str> = (5..=topics.len())
        .step_by(5)
        .map(|q| topics[q - 1])
        .collect();
    let hub_first_alone = dev_topics
        .iter()
        .filter(|t| top(t, Some("0")).starts_with("hub"))
        .count();
    assert!(
        hub_first_alone >= 3,
        "the planted prior should be learned (a hub first for {hub_first_alone} of 5 unseen queries)"
    );
    for topic in &dev_topics {
        let first = top(topic, None);
        assert!(!first.starts_with("hub"), "{topic}: {first} leads");
    }
}

/// `--layerwise` end to end: the output has a head after every layer (transformers' layout
/// plus `exits.*`), `sift rerank` scores at each exit, a cascade finishes only what it kept,
/// `sift eval` adds a row per exit and per cascade, and bad exits are refused.
#[test]
fn a_layerwise_run_scores_at_every_exit_and_cascades() {
    let (tmp, d, c, t) = workspace();
    let out = tmp.path().join("layerwise").display().to_string();
    let mut args = train_args(&d, &c, &out, &t);
    args.extend(["--exit-layers", "5"]);
    fails(&sift_cmd(&args).output().unwrap(), "--exit-layers 5: ");
    assert!(!Path::new(&out).exists(), "refused before any work");
    let mut args = train_args(&d, &c, &out, &t);
    args.extend(["--layerwise", "--max-steps", "3"]);
    let run = sift_cmd(&args).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&out).join("config.json")).unwrap(),
    )
    .unwrap();
    // The tiny base has 2 layers: one early exit, and the ordinary head on the last.
    assert_eq!(
        config["sift_layerwise"]["exit_layers"],
        serde_json::json!([1])
    );
    let names: Vec<String> = tensors(&Path::new(&out).join("model.safetensors"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in [
        "exits.1.dense.weight",
        "exits.1.out.bias",
        "classifier.weight",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    let docs = [
        "The volcano is studied here.",
        "Unrelated remarks about daily life.",
        "A comet passed by the volcano.",
        "Nothing to see.",
    ];
    let rerank = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["rerank", "--model", &out, "--query", "volcano studies"];
        args.extend_from_slice(extra);
        args.extend(docs);
        json_of(&args).as_array().unwrap().clone()
    };
    let by_index = |ranked: &[serde_json::Value]| -> Vec<f64> {
        let mut v = vec![f64::NAN; docs.len()];
        for r in ranked {
            v[r["index"].as_u64().unwrap() as usize] = r["logit"].as_f64().unwrap();
        }
        v
    };
    let full = rerank(&[]);
    let early = rerank(&["--rerank-layer", "1"]);
    assert_ne!(
        by_index(&full),
        by_index(&early),
        "exit 1 is not the last layer"
    );
    assert_eq!(by_index(&rerank(&["--rerank-layer", "2"])), by_index(&full));
    let cascade = rerank(&["--rerank-cascade", "1:2"]);
    // The two best by exit 1 come first with their full-model logits; the rest keep exit 1's.
    let kept: Vec<u64> = early[..2]
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    let (full, early) = (by_index(&full), by_index(&early));
    for (rank, r) in cascade.iter().enumerate() {
        let i = r["index"].as_u64().unwrap();
        let logit = r["logit"].as_f64().unwrap();
        if rank < 2 {
            assert!(kept.contains(&i), "{cascade:?}");
            assert!(r.get("dropped").is_none());
            assert!((logit - full[i as usize]).abs() < 1e-4, "{cascade:?}");
        } else {
            assert_eq!(r["dropped"], true);
            assert!((logit - early[i as usize]).abs() < 1e-4, "{cascade:?}");
        }
    }
    let bad = |extra: &[&str], message: &str| {
        let mut args = vec!["rerank", "--model", &out, "--query", "q"];
        args.extend_from_slice(extra);
        args.push("d");
        fails(&sift_cmd(&args).output().unwrap(), message);
    };
    bad(&["--rerank-layer", "3"], "[1, 2]");
    bad(&["--rerank-layer", "0"], "[1, 2]");
    bad(&["--rerank-cascade", "2:5"], "not an early exit");
    bad(&["--rerank-cascade", "1"], "EXIT:KEEP");
    bad(
        &["--rerank-cascade", "1:2", "--rerank-layer", "1"],
        "cannot be used with",
    );

    // The server: per-request exit and cascade on TEI and Cohere routes, as the CLI scores.
    let server = common::Server::start(&["--rerank-model", &out, "--auto-truncate"]);
    let tei = |extra: serde_json::Value| {
        let mut body =
            serde_json::json!({"query": "volcano studies", "texts": docs, "raw_scores": true});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        common::curl("POST", &format!("{}/rerank", server.base), &body)
    };
    let tei_logits = |extra: serde_json::Value| -> Vec<f64> {
        let (code, v) = tei(extra);
        assert_eq!(code, 200, "{v}");
        let mut out = vec![f64::NAN; docs.len()];
        for r in v.as_array().unwrap() {
            out[r["index"].as_u64().unwrap() as usize] = r["score"].as_f64().unwrap();
        }
        out
    };
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    assert!(close(&tei_logits(serde_json::json!({})), &full));
    assert!(close(
        &tei_logits(serde_json::json!({"rerank_layer": 1})),
        &early
    ));
    let cascaded = tei_logits(serde_json::json!({"rerank_cascade": "1:2"}));
    for (i, logit) in cascaded.iter().enumerate() {
        let want = if kept.contains(&(i as u64)) {
            full[i]
        } else {
            early[i]
        };
        assert!((logit - want).abs() < 1e-4, "{cascaded:?}");
    }
    // From the texts' own order: the first two scored in full, the rest after them with the
    // lower of those two scores.
    let leading = tei_logits(serde_json::json!({"rerank_cascade": "0:2"}));
    let floor = full[0].min(full[1]);
    for (i, logit) in leading.iter().enumerate() {
        let want = if i < 2 { full[i] } else { floor };
        assert!((logit - want).abs() < 1e-4, "{leading:?} vs {full:?}");
    }
    // A request's own budget (the server loaded none: the cost model is measured on the
    // first): one nothing fits runs the shallowest exit, one everything fits the full model.
    assert!(close(
        &tei_logits(serde_json::json!({"rerank_budget_ms": 0.000001})),
        &early
    ));
    assert!(close(
        &tei_logits(serde_json::json!({"rerank_budget_ms": 1e9})),
        &full
    ));
    let cohere = common::post_json(
        &server.base,
        "/v1/rerank",
        &serde_json::json!({"query": "volcano studies", "documents": docs, "rerank_layer": 1}),
    );
    assert_eq!(cohere["results"].as_array().unwrap().len(), docs.len());
    for (extra, message) in [
        (serde_json::json!({"rerank_layer": 7}), "[1, 2]"),
        (
            serde_json::json!({"rerank_cascade": "2:1"}),
            "not an early exit",
        ),
        (serde_json::json!({"rerank_cascade": "x"}), "EXIT:KEEP"),
        (
            serde_json::json!({"rerank_budget_ms": 0}),
            "positive number",
        ),
        (
            serde_json::json!({"rerank_budget_ms": -5}),
            "positive number",
        ),
        (
            serde_json::json!({"rerank_budget_ms": 50, "rerank_cascade": "1:2"}),
            "without rerank_layer or rerank_cascade",
        ),
    ] {
        let (code, v) = tei(extra);
        assert_eq!(code, 422, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{v}"
        );
    }
    drop(server);
    // A budget nothing fits: every query runs the shallowest exit, on the server too.
    let server = common::Server::start(&[
        "--rerank-model",
        &out,
        "--auto-truncate",
        "--rerank-budget-ms",
        "0.000001",
    ]);
    let (code, v) = common::curl(
        "POST",
        &format!("{}/rerank", server.base),
        &serde_json::json!({"query": "volcano studies", "texts": docs, "raw_scores": true}),
    );
    assert_eq!(code, 200, "{v}");
    for r in v.as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        assert!(
            (r["score"].as_f64().unwrap() - early[i]).abs() < 1e-4,
            "{v}"
        );
    }
    drop(server);

    // `sift search --explain` says what the budget chose for the query.
    let search = sift_cmd(&[
        "search",
        "--collection",
        &c,
        "--embed-model",
        &t,
        "--rerank-model",
        &out,
        "--rerank-budget-ms",
        "0.000001",
        "--explain",
        "volcano studies",
    ])
    .output()
    .unwrap();
    let shown = succeeds(&search);
    assert!(
        shown.contains("rerank plan: exit after layer 1 (estimated"),
        "{shown}"
    );

    let eval_out = tmp.path().join("eval").display().to_string();
    let eval = sift_cmd(&[
        "eval",
        "--data",
        &d,
        "--collection",
        &c,
        "--embed-model",
        &t,
        "--modes",
        "hybrid",
        "--rerank-model",
        &out,
        "--rerank-every-exit",
        "--rerank-cascades",
        "1:2,1:5,0:3",
        "--out",
        &eval_out,
    ])
    .output()
    .unwrap();
    let table = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    for row in [
        "@layer1",
        "@cascade1:2",
        "@cascade1:5",
        "@cascade0:3",
        "rerank p50 ms",
    ] {
        assert!(table.contains(row), "{row} in {table}");
    }
}

/// `--teacher`: the teacher's term is in the gradient (weight 0 trains exactly as the labels
/// alone, weight 1 to other weights), the run records its teacher and resumes only with the
/// same one, and a teacher that cannot score or a weight outside [0, 1] is refused before any
/// work.
#[test]
fn a_teacher_is_distilled_and_bad_teachers_are_refused() {
    let (tmp, d, c, t) = workspace();
    let teacher = golden("bert-classifier");
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name).display().to_string();
        let mut args = train_args(&d, &c, &out, &t);
        args.extend(["--max-steps", "2", "--dev-queries", "0"]);
        args.extend(extra);
        let result = sift_cmd(&args).output().unwrap();
        (out, result)
    };
    let trained = |name: &str, extra: &[&str]| {
        let (out, result) = run(name, extra);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        tensors(&Path::new(&out).join("model.safetensors"))
    };
    let labels = trained("labels", &[]);
    let none = trained(
        "teacher-0",
        &["--teacher", &teacher, "--distill-weight", "0"],
    );
    let all = trained(
        "teacher-1",
        &["--teacher", &teacher, "--distill-weight", "1"],
    );
    assert!(
        max_diff(&labels, &none) < 1e-6,
        "{}",
        max_diff(&labels, &none)
    );
    assert!(
        max_diff(&labels, &all) > 1e-4,
        "{}",
        max_diff(&labels, &all)
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("teacher-1/checkpoint/state.json")).unwrap(),
    )
    .unwrap();
    let recorded = &state["recipe"]["distillation"];
    assert_eq!(recorded["weight"], serde_json::json!(1.0));
    assert!(recorded["teacher"]
        .as_str()
        .unwrap()
        .ends_with("bert-classifier"));

    // Resuming with another weight is another recipe.
    let out = tmp.path().join("teacher-1").display().to_string();
    let mut args = train_args(&d, &c, &out, &t);
    args.extend(["--max-steps", "2", "--dev-queries", "0", "--resume"]);
    args.extend(["--teacher", &teacher, "--distill-weight", "0.5"]);
    fails(&sift_cmd(&args).output().unwrap(), "different settings");

    // An encoder without a scoring head, the first stage (it teaches embedders only), a weight
    // outside [0, 1], a weight without a teacher.
    for (name, extra, want) in [
        ("no-head", vec!["--teacher", t.as_str()], "--teacher"),
        (
            "first-stage",
            vec!["--teacher", "first-stage"],
            "teaches embedders",
        ),
        (
            "heavy",
            vec!["--teacher", teacher.as_str(), "--distill-weight", "1.5"],
            "[0, 1]",
        ),
        ("alone", vec!["--distill-weight", "0.5"], "--teacher"),
    ] {
        let (out, result) = run(name, &extra);
        fails(&result, want);
        assert!(!Path::new(&out).exists(), "{name}: refused before any work");
    }
}
