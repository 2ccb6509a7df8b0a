//! The `sift` binary end to end: real processes, real models, real files.

use std::io::Write;
use std::process::{Command, Output, Stdio};

mod common;
use common::{golden, sift_cmd, workspace};

fn sift(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = sift_cmd(args)
        .env("SIFT_THREADS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}
fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn embed_from_arguments_prints_jsonl_vectors() {
    let out = sift(&["embed", "a first text", "a second text"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["index"], 1);
    assert_eq!(lines[0]["embedding"].as_array().unwrap().len(), 384);
}

#[test]
fn embed_from_stdin_jsonl_keeps_ids() {
    let out = sift(
        &["embed"],
        Some(b"{\"id\": \"d1\", \"text\": \"hello\"}\n\"plain string\"\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "d1");
}

#[test]
fn embed_from_a_text_file_with_query_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("texts.txt");
    std::fs::write(&file, "one\n\ntwo\nthree\n").unwrap();
    let plain = sift(&["embed", "--file", file.to_str().unwrap()], None);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(stdout(&plain).lines().count(), 3);
    let prefixed = sift(
        &[
            "embed",
            "--file",
            file.to_str().unwrap(),
            "--query",
            "--query-prefix",
            "query: ",
        ],
        None,
    );
    assert!(prefixed.status.success());
    assert_ne!(
        stdout(&plain),
        stdout(&prefixed),
        "the prefix must change the vectors"
    );
}

#[test]
fn bad_input_gives_clear_errors_not_panics() {
    /// (arguments, stdin, expected part of the error message)
    type Case<'a> = (Vec<&'a str>, Option<&'a [u8]>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["embed"],
            Some(b"\"ok\"\n\xff\xfe\n"),
            "stdin:2: not valid UTF-8",
        ),
        (
            vec!["embed"],
            Some(b"\"ok\"\n{broken\n"),
            "stdin:2: not valid JSON",
        ),
        (vec!["embed", ""], None, "empty"),
        (
            vec!["embed", "--model", "/no/such/dir", "x"],
            None,
            "not found",
        ),
        (vec!["embed"], Some(b""), "no texts"),
        (
            vec!["rerank", "--model", "all-MiniLM-L6-v2", "-q", "q", "d"],
            None,
            "no sequence-classification head",
        ),
        (vec!["embed", "--threads", "0", "x"], None, "--threads"),
        // Sizes are bounded at parse time, before anything is opened or allocated.
        (
            vec!["search", "-c", "/nonexistent", "--depth", "1000000000", "q"],
            None,
            "not in 1..=10000",
        ),
        (
            vec![
                "search",
                "-c",
                "/nonexistent",
                "--depth",
                "18446744073709551615",
                "q",
            ],
            None,
            "not in 1..=10000",
        ),
        (
            vec!["search", "-c", "/nonexistent", "-k", "1000001", "q"],
            None,
            "not in 1..=1000",
        ),
        (
            vec!["serve", "--embed-model", "x", "--request-timeout", "1e300"],
            None,
            "--request-timeout must be between",
        ),
        (
            vec!["serve", "--embed-model", "x", "--request-timeout=-1"],
            None,
            "--request-timeout must be between",
        ),
        (
            vec!["serve", "--embed-model", "x", "--max-items", "0"],
            None,
            "not in 1..=100000",
        ),
    ];
    for (args, input, want) in cases {
        let out = sift(&args, input);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn rerank_sorts_by_score_and_cuts_to_top_k() {
    let model = golden("bert-classifier");
    let out = sift(
        &[
            "rerank",
            "--model",
            &model,
            "-q",
            "capital of france",
            "Paris is the capital.",
            "Berlin",
            "the fox",
            "-k",
            "2",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ranked: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(ranked.len(), 2);
    assert!(ranked[0]["score"].as_f64() >= ranked[1]["score"].as_f64());
    for r in &ranked {
        assert!(r["text"].is_string() && r["index"].is_u64() && r["logit"].is_f64());
    }
    // All three, scored from a JSONL file: same scores as from arguments.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.jsonl");
    std::fs::write(
        &file,
        "\"Paris is the capital.\"\n{\"id\": 9, \"text\": \"Berlin\"}\n\"the fox\"\n",
    )
    .unwrap();
    let from_file = sift(
        &[
            "rerank",
            "--model",
            &model,
            "-q",
            "capital of france",
            "--file",
            file.to_str().unwrap(),
        ],
        None,
    );
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&from_file)).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["score"], ranked[0]["score"]);
    assert!(all.iter().any(|r| r["id"] == 9));
}

#[test]
fn models_lists_what_is_installed() {
    let out = sift(&["models", "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let minilm = rows
        .iter()
        .find(|r| r["name"] == "all-MiniLM-L6-v2")
        .expect("minilm listed");
    assert_eq!(minilm["dims"], 384);
    assert_eq!(minilm["max_length"], 256);
    assert_eq!(minilm["pooling"], "mean");
    assert_eq!(minilm["role"], "embedder");
    let table = sift(&["models"], None);
    assert!(stdout(&table).contains("BertModel"));
}

#[test]
fn help_teaches_with_examples() {
    for cmd in [&["--help"][..], &["embed", "--help"], &["rerank", "--help"]] {
        let out = sift(cmd, None);
        assert!(out.status.success());
        assert!(stdout(&out).contains("Examples:"), "{cmd:?}");
    }
}

/// `sift bench` in its smoke size (what CI affords; the real comparison is
/// scripts/bench/inference.py), on both engines and both precisions.
#[test]
fn bench_reports_throughput_per_engine() {
    for (engine, precision, name) in [
        ("onnx", "f32", "onnx-f32"),
        ("onnx", "int8", "onnx-int8"),
        ("candle", "f32", "candle"),
    ] {
        let out = sift(
            &[
                "bench",
                "--model",
                "all-MiniLM-L6-v2",
                "--task",
                "embed",
                "--synthetic",
                "4x16",
                "--runs",
                "2",
                "--engine",
                engine,
                "--precision",
                precision,
            ],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(report["engine"], name);
        assert_eq!(report["tokens"], 64);
        assert_eq!(report["seconds"].as_array().unwrap().len(), 2);
        assert!(report["tokens_per_second"].as_f64().unwrap() > 0.0);
    }
    let out = sift(
        &[
            "bench",
            "--model",
            &golden("bert-classifier"),
            "--task",
            "rerank",
            "--synthetic",
            "2x8",
            "--runs",
            "1",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A decoder LLM reranker through the same task, with a layerwise cutoff.
    let layerwise = workspace()
        .join("crates/models/tests/fixtures/llm/minicpm-layerwise")
        .display()
        .to_string();
    let out = sift(
        &[
            "bench",
            "--model",
            &layerwise,
            "--task",
            "rerank",
            "--synthetic",
            "3x12",
            "--runs",
            "1",
            "--cutoff-layer",
            "2",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (report["engine"].as_str(), report["tokens"].as_u64()),
        (Some("candle"), Some(36))
    );
    let out = sift(
        &[
            "bench",
            "--model",
            "all-MiniLM-L6-v2",
            "--task",
            "embed",
            "--synthetic",
            "2x9999",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at most 512"), "{}", stderr(&out));

    let out = sift(&["bench", "--peak"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let peak: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(peak["f32_peak_gflops"].as_f64().unwrap() > 0.1);
}

#[test]
fn engine_choices_fail_clearly() {
    let out = sift(
        &[
            "--engine",
            "candle",
            "--embed-precision",
            "int8",
            "embed",
            "x",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the ONNX Runtime engine"),
        "{}",
        stderr(&out)
    );

    let out = sift(&["--engine", "tpu", "embed", "x"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown engine"), "{}", stderr(&out));

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sift"));
    let out = cmd
        .args([
            "--engine",
            "onnx",
            "embed",
            "--model",
            &golden("bert-encoder"),
            "x",
        ])
        .env("SIFT_ONNXRUNTIME", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot load ONNX Runtime from /nonexistent"),
        "{}",
        stderr(&out)
    );
}
