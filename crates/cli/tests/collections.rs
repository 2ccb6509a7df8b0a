//! `sift index` / `sift search` / `sift delete` end to end with the real all-MiniLM-L6-v2 on a
//! subset of SciFact (read from ../shared/data/scifact, never copied into the repo).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use sift_index::store::{self, Access};
use sift_index::{CollectionBackend, Location};

mod common;
use common::{fails, kill_sift_index, scifact, sift_cmd, succeeds, workspace};

/// Opens the collection in `dir` for writing, through the store as the CLI does.
fn open_collection(dir: &std::path::Path) -> Box<dyn CollectionBackend> {
    store::open(&Location::Local(dir.to_owned()), Access::Write).unwrap()
}

fn sift(args: &[&str]) -> Output {
    sift_cmd(args).output().unwrap()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// Queries with their relevant documents, and a corpus subset holding those documents plus
/// `extra` others.
struct Subset {
    queries: Vec<(String, HashSet<String>)>,
    corpus_lines: Vec<String>,
}

fn subset(num_queries: usize, extra: usize) -> Subset {
    let dir = scifact();
    let qrels = std::fs::read_to_string(dir.join("qrels.train.tsv"))
        .unwrap_or_else(|e| panic!("{}: {e} (the shared SciFact data is needed)", dir.display()));
    let mut relevant: Vec<(String, HashSet<String>)> = Vec::new();
    for line in qrels.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        match relevant.last_mut() {
            Some((q, docs)) if q == f[0] => {
                docs.insert(f[1].to_owned());
            }
            _ => relevant.push((f[0].to_owned(), HashSet::from([f[1].to_owned()]))),
        }
    }
    relevant.truncate(num_queries);
    let texts: HashMap<String, String> = std::fs::read_to_string(dir.join("queries.train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["_id"].as_str().unwrap().to_owned(),
                v["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let wanted: HashSet<&String> = relevant.iter().flat_map(|(_, d)| d.iter()).collect();
    let mut corpus_lines = Vec::new();
    let mut others = 0;
    for line in std::fs::read_to_string(dir.join("corpus.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["_id"].as_str().unwrap().to_owned();
        if wanted.contains(&id) {
            corpus_lines.push(line.to_owned());
        } else if others < extra {
            others += 1;
            corpus_lines.push(line.to_owned());
        }
    }
    Subset {
        queries: relevant
            .into_iter()
            .map(|(q, d)| (texts[&q].clone(), d))
            .collect(),
        corpus_lines,
    }
}

struct Indexed {
    _dir: tempfile::TempDir,
    collection: PathBuf,
    subset: Subset,
}

/// One SciFact-subset collection shared by the read-only tests (readers share a collection).
fn indexed() -> &'static Indexed {
    static INDEXED: OnceLock<Indexed> = OnceLock::new();
    INDEXED.get_or_init(|| {
        let subset = subset(5, 40);
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus.jsonl");
        std::fs::write(&corpus, subset.corpus_lines.join("\n")).unwrap();
        let collection = dir.path().join("col");
        succeeds(&sift(&[
            "index",
            "--collection",
            collection.to_str().unwrap(),
            corpus.to_str().unwrap(),
        ]));
        Indexed {
            _dir: dir,
            collection,
            subset,
        }
    })
}

fn search_json(collection: &Path, query: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "search",
        "--collection",
        collection.to_str().unwrap(),
        "--json",
        query,
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&succeeds(&sift(&args))).unwrap()
}

fn hit_ids(results: &serde_json::Value) -> Vec<String> {
    results["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Each mode finds a relevant document in its top 10 for at least 4 of the 5 queries (in a
/// 45-document collection a broken ranking would hit about 1 in 5). BM25 is allowed its classic
/// vocabulary-mismatch miss ("0-dimensional biomaterials" vs the paper's wording).
#[test]
fn each_mode_finds_known_relevant_documents() {
    let ix = indexed();
    for mode in ["dense", "bm25", "hybrid"] {
        let mut found = 0;
        let mut misses = Vec::new();
        for (query, relevant) in &ix.subset.queries {
            let results = search_json(&ix.collection, query, &["--mode", mode, "--top-k", "10"]);
            if hit_ids(&results).iter().any(|id| relevant.contains(id)) {
                found += 1;
            } else {
                misses.push(query.clone());
            }
        }
        assert!(
            found >= 4,
            "{mode}: relevant documents found for only {found}/5 queries; missed {misses:?}"
        );
    }
}

#[test]
fn hybrid_explains_its_ranks_and_times_its_stages() {
    let ix = indexed();
    let (query, _) = &ix.subset.queries[0];
    let out = sift(&[
        "search",
        "--collection",
        ix.collection.to_str().unwrap(),
        query,
        "--explain",
        "--timings",
    ]);
    let table = succeeds(&out);
    assert!(
        table.contains("DENSE") && table.contains("BM25") && table.contains("FUSED"),
        "{table}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for stage in ["query embedding", "ANN", "BM25", "fusion", "rerank"] {
        assert!(stderr.contains(stage), "{stderr}");
    }
    let results = search_json(&ix.collection, query, &["--timings"]);
    let first = &results["hits"][0];
    assert_eq!(first["fused_rank"], 1);
    assert!(first["dense_rank"].is_u64() || first["bm25_rank"].is_u64());
    assert!(results["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    assert!(!first["snippet"].as_str().unwrap().is_empty());
}

#[test]
fn rerank_reorders_candidates_by_cross_encoder_score() {
    let ix = indexed();
    let reranker = workspace().join("crates/models/tests/fixtures/golden/bert-classifier");
    let (query, _) = &ix.subset.queries[1];
    let results = search_json(
        &ix.collection,
        query,
        &[
            "--rerank-model",
            reranker.to_str().unwrap(),
            "--candidates",
            "20",
            "--top-k",
            "20",
        ],
    );
    assert_eq!(results["reranked"], true);
    let hits = results["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 20);
    let scores: Vec<f64> = hits
        .iter()
        .map(|h| h["rerank_score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "sorted by rerank score: {scores:?}"
    );
    let fused: Vec<u64> = hits
        .iter()
        .map(|h| h["fused_rank"].as_u64().unwrap())
        .collect();
    let mut sorted = fused.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (1..=20).collect::<Vec<u64>>(),
        "the same 20 candidates"
    );
    assert_ne!(fused, sorted, "this (random-weight) reranker reorders them");
}

#[test]
fn bad_searches_give_clear_errors() {
    let ix = indexed();
    let col = ix.collection.to_str().unwrap();
    assert!(err(&sift(&[
        "search",
        "--collection",
        "/no/such/collection",
        "q"
    ]))
    .contains("not a sift collection"));
    assert!(err(&sift(&["search", "--collection", col, "  "])).contains("query is empty"));
    let other = workspace().join("crates/models/tests/fixtures/golden/bert-encoder");
    let e = err(&sift(&[
        "search",
        "--collection",
        col,
        "--embed-model",
        other.to_str().unwrap(),
        "q",
    ]));
    assert!(
        e.contains("built with embedding model all-MiniLM-L6-v2"),
        "{e}"
    );
    assert!(err(&sift(&[
        "search",
        "--collection",
        col,
        "--mode",
        "fuzzy",
        "q"
    ]))
    .contains("unknown mode"));
}

fn write_docs(path: &Path, docs: &[(&str, &str)]) {
    let lines: Vec<String> = docs
        .iter()
        .map(|(id, text)| serde_json::json!({"id": id, "text": text}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

#[test]
fn reindexing_is_idempotent_and_upserts_and_deletes_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let col = dir.path().join("col");
    let col_s = col.to_str().unwrap();
    let file = dir.path().join("docs.jsonl");
    let docs = [
        ("a", "Penguins live in the southern hemisphere."),
        ("b", "The mitochondria is the powerhouse of the cell."),
        ("c", "Rust has no garbage collector."),
    ];
    write_docs(&file, &docs);
    let first = sift(&["index", "--collection", col_s, file.to_str().unwrap()]);
    succeeds(&first);
    assert!(String::from_utf8_lossy(&first.stderr).contains("3 added, 0 updated, 0 unchanged"));
    let again = sift(&["index", "--collection", col_s, file.to_str().unwrap()]);
    succeeds(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 added, 0 updated, 3 unchanged"));

    write_docs(
        &file,
        &[
            ("b", "Chloroplasts turn sunlight into sugar."),
            ("d", "Volcanoes erupt lava."),
        ],
    );
    let upsert = sift(&["index", "--collection", col_s, file.to_str().unwrap()]);
    succeeds(&upsert);
    assert!(String::from_utf8_lossy(&upsert.stderr).contains("1 added, 1 updated"));
    let r = search_json(
        &col,
        "powerhouse of the cell mitochondria",
        &["--mode", "bm25"],
    );
    assert!(
        !hit_ids(&r).contains(&"b".to_string()),
        "old text of b is gone"
    );
    let r = search_json(&col, "sunlight sugar", &["--top-k", "1"]);
    assert_eq!(hit_ids(&r), vec!["b"]);

    let del = sift(&["delete", "--collection", col_s, "a", "zzz"]);
    succeeds(&del);
    let stderr = String::from_utf8_lossy(&del.stderr);
    assert!(
        stderr.contains("not found: zzz") && stderr.contains("deleted 1"),
        "{stderr}"
    );
    let r = search_json(&col, "penguins southern hemisphere", &["--top-k", "10"]);
    assert!(!hit_ids(&r).contains(&"a".to_string()));
    let e = err(&sift(&[
        "index",
        "--collection",
        col_s,
        file.to_str().unwrap(),
        "--chunk-tokens",
        "50",
    ]));
    assert!(e.contains("chunking is fixed"), "{e}");
    let c = open_collection(&col);
    assert_eq!(c.len().unwrap(), 3);
    c.verify().unwrap();
}

#[test]
fn malformed_input_indexes_nothing_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let col = dir.path().join("col");
    let file = dir.path().join("docs.jsonl");
    std::fs::write(&file, "{\"id\":\"a\",\"text\":\"fine\"}\n{\"id\":\"b\",\"text\":\n{\"id\":\"a\",\"text\":\"again\"}\n").unwrap();
    let e = err(&sift(&[
        "index",
        "--collection",
        col.to_str().unwrap(),
        file.to_str().unwrap(),
    ]));
    assert!(
        e.contains("docs.jsonl:2") && e.contains("docs.jsonl:3: duplicate id"),
        "{e}"
    );
    assert!(e.contains("nothing was indexed"), "{e}");
    assert!(!col.exists(), "no collection was created");
    let out = sift(&[
        "index",
        "--collection",
        col.to_str().unwrap(),
        file.to_str().unwrap(),
        "--skip-invalid",
    ]);
    succeeds(&out);
    assert_eq!(open_collection(&col).len().unwrap(), 1);
    // A collection refuses another embedding model.
    let other = workspace().join("crates/models/tests/fixtures/golden/bert-encoder");
    let e = err(&sift(&[
        "index",
        "--collection",
        col.to_str().unwrap(),
        "--embed-model",
        other.to_str().unwrap(),
        file.to_str().unwrap(),
        "--skip-invalid",
    ]));
    assert!(e.contains("refusing to mix"), "{e}");
}

/// Kills `sift index` with SIGKILL at several moments; every batch reported committed must be
/// there afterwards, and every part of the collection must agree. Then a re-run completes it.
#[test]
fn sigkill_during_ingest_loses_no_committed_batch() {
    let s = subset(0, 36);
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(&corpus, s.corpus_lines.join("\n")).unwrap();
    let col = dir.path().join("col");
    let args = [
        "index",
        "--collection",
        col.to_str().unwrap(),
        corpus.to_str().unwrap(),
        "--batch-size",
        "3",
    ];
    // Kill after this many committed batches, plus a delay, so kills land mid-embedding and
    // mid-commit alike; None kills before the first commit.
    let plans: [(Option<usize>, u64); 4] =
        [(None, 300), (Some(1), 0), (Some(2), 170), (Some(1), 40)];
    let mut last_reported = 0;
    for (after, delay_ms) in plans {
        last_reported = kill_sift_index(&args, after, delay_ms, last_reported);
        if !col.join("collection.json").exists() {
            assert_eq!(last_reported, 0);
            continue;
        }
        let c = open_collection(&col);
        c.verify().unwrap();
        assert!(
            c.len().unwrap() >= last_reported,
            "reported {last_reported} committed, found {}",
            c.len().unwrap()
        );
    }
    assert!(last_reported > 0, "at least one kill landed after a commit");
    succeeds(&sift(&args));
    let c = open_collection(&col);
    c.verify().unwrap();
    assert_eq!(c.len().unwrap(), s.corpus_lines.len());
}

/// `sift eval` on a small BEIR folder built from SciFact, with the problems real data has:
/// a judged query id without query text, a judged document missing from the corpus, and an
/// empty query. They are counted and reported; the evaluation still runs.
#[test]
fn eval_reports_metrics_runs_and_data_problems() {
    let s = subset(4, 30);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("beir");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("corpus.jsonl"), s.corpus_lines.join("\n")).unwrap();
    let mut queries = Vec::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, (text, relevant)) in s.queries.iter().enumerate() {
        queries.push(serde_json::json!({"_id": i.to_string(), "text": text}).to_string());
        for d in relevant {
            qrels.push_str(&format!("{i}\t{d}\t1\n"));
        }
    }
    queries.push(serde_json::json!({"_id": "90", "text": "   "}).to_string());
    qrels.push_str("90\tnot-in-corpus\t1\n");
    qrels.push_str("91\t4983\t1\n"); // no query text for 91
    std::fs::write(data.join("queries.jsonl"), queries.join("\n")).unwrap();
    std::fs::write(data.join("qrels.test.tsv"), qrels).unwrap();

    let out = dir.path().join("out");
    let collection = dir.path().join("col");
    // `sift eval` of this dataset and collection, writing to `out`, with `extra` flags.
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--data",
            data.to_str().unwrap(),
            "--collection",
            collection.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        sift(&args)
    };
    let reranker = workspace().join("crates/models/tests/fixtures/golden/bert-classifier");
    // An LLM reranker beside the cross-encoder: one table, a row per reranker.
    let llm = workspace().join("crates/models/tests/fixtures/llm/gemma2");
    let result = eval(&[
        "--modes",
        "bm25,hybrid",
        "--rerank-model",
        reranker.to_str().unwrap(),
        "--rerank-model",
        llm.to_str().unwrap(),
        "--candidates",
        "10",
        "--first-stage-weights",
        "1",
    ]);
    let table = succeeds(&result);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("1 judged query ids without query text"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 judged documents not in the collection"),
        "{stderr}"
    );
    assert!(stderr.contains("1 empty queries"), "{stderr}");
    assert!(
        table.contains("| bm25 | none |")
            && table.contains("bert-classifier")
            && table.contains("| gemma2"),
        "{table}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        10,
        "2 modes × (no reranker + 2 rerankers × (alone + blended at weight 1))"
    );
    // Weight 1 keeps the first stage's order, and only the top 10 are reranked: past them the
    // reranker alone leaves the first stage's order too.
    let ranking = |file: &str| -> Vec<String> {
        std::fs::read_to_string(out.join(file))
            .unwrap()
            .lines()
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let first_stage = ranking("hybrid-all-MiniLM-L6-v2.trec");
    assert_eq!(
        ranking("hybrid-all-MiniLM-L6-v2+bert-classifier+first1.00.trec"),
        first_stage
    );
    let alone = ranking("hybrid-all-MiniLM-L6-v2+bert-classifier.trec");
    let per_query = |r: &[String], q: &str| -> Vec<String> {
        r.iter()
            .filter(|l| l.starts_with(&format!("{q} ")))
            .cloned()
            .collect()
    };
    let (a, f) = (per_query(&alone, "0"), per_query(&first_stage, "0"));
    assert!(a.len() > 10, "{a:?}");
    assert_eq!(a[10..], f[10..]);
    for r in runs {
        for (name, v) in r["metrics"].as_object().unwrap() {
            let v = v.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{name} = {v}");
        }
        let file = out.join(r["run_file"].as_str().unwrap());
        let lines = std::fs::read_to_string(file).unwrap();
        assert!(lines.lines().next().unwrap().ends_with(" sift"));
    }
    // Hybrid recall over 34 documents finds relevant ones: hit rate@10 well above chance.
    let hybrid = runs
        .iter()
        .find(|r| r["run_file"] == "hybrid-all-MiniLM-L6-v2.trec")
        .unwrap();
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(report.matches("<svg").count(), 8, "a bar chart per metric");
    assert!(
        !report.contains("src=") && !report.contains("href="),
        "no external assets"
    );
    assert!(
        hybrid["metrics"]["Success@10"].as_f64().unwrap() >= 0.6,
        "{hybrid}"
    );
    assert!(
        summary["seen_unseen"].is_null(),
        "no training judgements given"
    );

    // Given training judgements, every run is also reported on the queries whose relevant
    // documents were training positives ("seen") and the others.
    let train_qrels = dir.path().join("train.tsv");
    let first = s.queries[0].1.iter().min().unwrap();
    std::fs::write(&train_qrels, format!("t1\t{first}\t1\n")).unwrap();
    let result = eval(&[
        "--modes",
        "bm25",
        "--train-qrels",
        train_qrels.to_str().unwrap(),
    ]);
    let table = succeeds(&result);
    assert!(
        table.contains("seen: 1 queries, unseen: 4") && table.contains("unseen nDCG@10"),
        "{table}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["seen_queries"], 1);
    assert_eq!(summary["seen_unseen"].as_array().unwrap().len(), 1);

    // A window of the queries by id: the first two skipped, then one.
    let result = eval(&[
        "--modes",
        "bm25",
        "--skip-queries",
        "2",
        "--max-queries",
        "1",
    ]);
    succeeds(&result);
    let run = std::fs::read_to_string(out.join("bm25.trec")).unwrap();
    let queries: std::collections::BTreeSet<&str> =
        run.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(queries.into_iter().collect::<Vec<_>>(), ["2"]);

    // The fusion sweep scores each setting on one retrieval per query with the pipeline's own
    // fusion: its rows for plain RRF and for the default are what the grid's hybrid run gives
    // under the same --fusion.
    let hybrid_ndcg = |fusion: &str| -> f64 {
        succeeds(&eval(&["--modes", "hybrid", "--fusion", fusion]));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        summary["runs"][0]["metrics"]["nDCG@10"].as_f64().unwrap()
    };
    let (rrf, convex) = (hybrid_ndcg("rrf"), hybrid_ndcg("convex:dense=0.5"));
    let table = succeeds(&eval(&["--fusion-sweep"]));
    assert!(table.contains("best: "), "{table}");
    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fusion_sweep.json")).unwrap())
            .unwrap();
    let rows = sweep[0]["rows"].as_array().unwrap();
    assert!(rows.len() > 40, "{} settings", rows.len());
    let row = |fusion: &str| -> f64 {
        rows.iter()
            .find(|r| r["fusion"] == fusion && r["depth"] == 100)
            .unwrap_or_else(|| panic!("no row for {fusion}"))["metrics"]["nDCG@10"]
            .as_f64()
            .unwrap()
    };
    // Rows name their fusion as --fusion spells it.
    assert!((row("rrf:k=60,dense=0.5") - rrf).abs() < 1e-9, "{rrf}");
    assert!((row("convex:dense=0.5") - convex).abs() < 1e-9, "{convex}");
    assert!(rows.iter().any(|r| r["fusion"] == "convex:dense=0.4"));
    let ndcgs: Vec<f64> = rows
        .iter()
        .map(|r| r["metrics"]["nDCG@10"].as_f64().unwrap())
        .collect();
    assert!(ndcgs.windows(2).all(|w| w[0] >= w[1]), "best first");
}

/// Chinese through the binary: `--language auto` (the default) picks the Chinese analyzer for
/// People's Daily paragraphs (scripts/setup.sh fetches them), records it in the manifest, and
/// `sift search` cuts the query the same way, so a phrase from a paragraph finds it.
#[test]
fn chinese_documents_get_the_chinese_analyzer_and_phrases_find_their_paragraph() {
    let corpus = std::env::var_os("SIFT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"))
        .join("corpora/peoples-daily-199801.txt");
    let text = std::fs::read_to_string(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", corpus.display()));
    let paragraphs: Vec<String> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.rsplit_once('/').map_or(t, |(w, _)| w))
                .collect::<String>()
        })
        .filter(|p| (80..=400).contains(&p.chars().count()))
        .take(150)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs.jsonl");
    let lines: Vec<String> = paragraphs
        .iter()
        .enumerate()
        .map(|(i, p)| serde_json::json!({"id": format!("p{i}"), "text": p}).to_string())
        .collect();
    std::fs::write(&docs, lines.join("\n")).unwrap();
    let col = dir.path().join("col");
    let (c, d) = (col.to_str().unwrap(), docs.to_str().unwrap());
    succeeds(&sift(&["index", "--collection", c, d]));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(col.join("collection.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["analyzer"], "chinese", "{manifest}");
    assert_eq!(
        manifest["bm25"],
        serde_json::json!({"k1": 1.5, "b": 0.75}),
        "{manifest}"
    );

    // BM25's parameters: bad ones refused before any work, new ones recorded without
    // re-indexing and used by the next search.
    let bm25_search = |query: &str| -> serde_json::Value {
        serde_json::from_str(&succeeds(&sift(&[
            "search",
            "--collection",
            c,
            "--mode",
            "bm25",
            "--json",
            query,
        ])))
        .unwrap()
    };
    let opening: String = paragraphs[3].chars().take(10).collect();
    let top_score = || bm25_search(&opening)["hits"][0]["score"].as_f64().unwrap();
    let before = top_score();
    fails(
        &sift(&["index", "--collection", c, "--bm25-b", "1.5", d]),
        "--bm25-k1/--bm25-b",
    );
    let out = sift(&[
        "index",
        "--collection",
        c,
        "--bm25-k1",
        "0.9",
        "--bm25-b",
        "0.4",
        d,
    ]);
    succeeds(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("0 added, 0 updated, 150 unchanged"), "{log}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(col.join("collection.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["bm25"]["k1"], 0.9, "{manifest}");
    assert_ne!(
        top_score(),
        before,
        "the next search scores with the new parameters"
    );
    succeeds(&sift(&[
        "index",
        "--collection",
        c,
        "--bm25-k1",
        "1.5",
        "--bm25-b",
        "0.75",
        d,
    ]));
    assert_eq!(top_score(), before);

    // A 10-character phrase from the middle of every tenth paragraph.
    let mut reciprocal_ranks = Vec::new();
    for (i, p) in paragraphs.iter().enumerate().step_by(10) {
        let chars: Vec<char> = p.chars().collect();
        let phrase: String = chars[chars.len() / 2..chars.len() / 2 + 10]
            .iter()
            .collect();
        let out = bm25_search(&phrase);
        let want = format!("p{i}");
        let rank = out["hits"]
            .as_array()
            .unwrap()
            .iter()
            .position(|h| h["id"] == want.as_str());
        reciprocal_ranks.push(rank.map_or(0.0, |r| 1.0 / (r as f64 + 1.0)));
    }
    let mrr = reciprocal_ranks.iter().sum::<f64>() / reciprocal_ranks.len() as f64;
    assert!(mrr >= 0.9, "MRR@10 {mrr:.3} over {reciprocal_ranks:?}");
}
