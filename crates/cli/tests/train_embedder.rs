//! `sift train-embedder` end to end with a tiny random-weight BERT encoder as the base: clear
//! errors before any work, and a run whose output `sift embed` and `sift index` load, with a
//! training summary that says what dev measured.

use std::path::Path;

mod common;
use common::{dataset, fails, golden, sift_cmd, succeeds};

fn args<'a>(data: &'a str, collection: &'a str, out: &'a str, base: &'a str) -> Vec<&'a str> {
    vec![
        "train-embedder",
        "--base",
        base,
        "--data",
        data,
        "--collection",
        collection,
        "--out",
        out,
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--learning-rate",
        "1e-3",
        "--max-length",
        "32",
        "--embed-model",
        base,
    ]
}

/// A temporary directory holding the toy dataset (`data/`), with the dataset's path, a
/// collection path (`col`, not built yet) and the tiny encoder to train as strings.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf, [String; 3]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let paths = [
        data.display().to_string(),
        tmp.path().join("col").display().to_string(),
        golden("bert-encoder"),
    ];
    (tmp, data, paths)
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let (tmp, _, [d, c, t]) = workspace();
    let out = tmp.path().join("out").display().to_string();
    let exists = tmp.path().join("exists");
    std::fs::create_dir(&exists).unwrap();
    let e = exists.display().to_string();
    fails(
        &sift_cmd(&args(&d, &c, &e, &t)).output().unwrap(),
        "already exists",
    );
    let mut resume = args(&d, &c, &e, &t);
    resume.push("--resume");
    fails(&sift_cmd(&resume).output().unwrap(), "no checkpoint");
    // A cross-encoder is not an embedding model to start from.
    let cross = golden("bert-classifier");
    fails(
        &sift_cmd(&args(&d, &c, &out, &cross)).output().unwrap(),
        "cross-encoder",
    );
    // Judged documents missing from the corpus; no positive at all.
    let bad = tmp.path().join("bad");
    dataset(&bad);
    let b = bad.display().to_string();
    std::fs::write(bad.join("qrels.tsv"), "1\td0\t1\n2\tnope\t1\n").unwrap();
    fails(
        &sift_cmd(&args(&b, &c, &out, &t)).output().unwrap(),
        "not in the corpus",
    );
    std::fs::write(bad.join("qrels.tsv"), "1\td0\t0\n2\td1\t0\n").unwrap();
    fails(
        &sift_cmd(&args(&b, &c, &out, &t)).output().unwrap(),
        "no training pairs",
    );
    // A batch of one has no in-batch negative.
    let mut one = args(&d, &c, &out, &t);
    let at = one.iter().position(|a| *a == "--batch-size").unwrap() + 1;
    one[at] = "1";
    fails(&sift_cmd(&one).output().unwrap(), "batch size");
    // A dropout rate of 1 drops everything.
    let mut all = args(&d, &c, &out, &t);
    all.extend(["--dropout", "1"]);
    fails(&sift_cmd(&all).output().unwrap(), "--dropout");
    // A teacher that is not a model, and a distillation weight outside [0, 1].
    let mut teacher = args(&d, &c, &out, &t);
    teacher.extend(["--teacher", "/nonexistent/teacher"]);
    fails(&sift_cmd(&teacher).output().unwrap(), "teacher");
    let mut weight = args(&d, &c, &out, &t);
    weight.extend(["--teacher", &cross, "--distill-weight", "2"]);
    fails(&sift_cmd(&weight).output().unwrap(), "--distill-weight");
    assert!(!Path::new(&out).exists(), "nothing written on refusal");
    assert!(!Path::new(&c).exists(), "no collection built on refusal");
}

/// `--teacher first-stage`: the run saves the first stage's scores beside the mined negatives,
/// records its teacher, and resumes from them.
#[test]
fn the_first_stage_teaches_and_a_run_resumes_with_its_scores() {
    let (tmp, _, [d, c, t]) = workspace();
    let out = tmp.path().join("out");
    let o = out.display().to_string();
    let mut first = args(&d, &c, &o, &t);
    first.extend([
        "--teacher",
        "first-stage",
        "--dev-queries",
        "0",
        "--max-steps",
        "1",
    ]);
    let run = sift_cmd(&first).output().unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("distilling the first stage"), "{log}");
    let scores: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("first_stage_scores.json")).unwrap(),
    )
    .unwrap();
    let by_query = scores["by_query"].as_object().unwrap();
    assert!(!by_query.is_empty(), "{scores}");
    for hits in by_query.values() {
        let best = hits
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(best, 1.0, "normalized per query: {hits}");
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["recipe"]["distillation"]["teacher"], "first-stage");
    // The same flags go on from the checkpoint; another teacher is refused.
    let mut resume = args(&d, &c, &o, &t);
    resume.extend(["--teacher", "first-stage", "--dev-queries", "0", "--resume"]);
    succeeds(&sift_cmd(&resume).output().unwrap());
    let mut other = args(&d, &c, &o, &t);
    other.extend(["--dev-queries", "0", "--resume"]);
    fails(&sift_cmd(&other).output().unwrap(), "different settings");
}

#[test]
fn a_run_writes_a_model_that_embeds_and_indexes() {
    let (tmp, data, [d, c, t]) = workspace();
    let out = tmp.path().join("out");
    let o = out.display().to_string();
    let run = sift_cmd(&args(&d, &c, &o, &t)).output().unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("epoch 2: dev nDCG@10"), "{log}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(summary["dev_evals"].as_array().unwrap().len(), 2);
    assert!(
        summary["dev_base_model"]["ndcg_at_10"].is_f64(),
        "{summary}"
    );
    for f in [
        "modules.json",
        "1_Pooling/config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let embedded = sift_cmd(&["embed", "--model", &o, "what is known about the comet"])
        .output()
        .unwrap();
    succeeds(&embedded);
    // A collection built with the fine-tuned model searches with it (a model outside
    // $SIFT_MODELS_DIR is named by its path).
    let col2 = tmp.path().join("col2").display().to_string();
    let corpus = data.join("corpus.jsonl").display().to_string();
    let index = sift_cmd(&["index", "--collection", &col2, "--embed-model", &o, &corpus])
        .output()
        .unwrap();
    succeeds(&index);
    let search = |model: &[&str]| {
        let mut args = vec!["search", "--collection", &col2];
        args.extend(model);
        args.extend(["--mode", "dense", "--json", "comet"]);
        succeeds(&sift_cmd(&args).output().unwrap())
    };
    let with_flag = search(&["--embed-model", &o]);
    // The collection recorded where its model lives: the same search without --embed-model
    // finds it (the model is not in $SIFT_MODELS_DIR).
    assert_eq!(search(&[]), with_flag);
    let eval_out = tmp.path().join("eval").display().to_string();
    let eval = sift_cmd(&[
        "eval",
        "--data",
        &d,
        "--collection",
        &col2,
        "--embed-model",
        &o,
        "--modes",
        "dense",
        "--out",
        &eval_out,
    ])
    .output()
    .unwrap();
    succeeds(&eval);
}
