//! `sift` against PostgreSQL + pgvector, end to end: the CLI indexes, searches and deletes in a
//! database exactly as in a directory; `kill -9` of `sift index` loses no acknowledged batch;
//! two `sift serve` processes share one database. Each test starts its own server through
//! `scripts/postgres.sh`.

mod common;

use std::process::Output;

use common::{curl, kill_sift_index, sift_cmd, workspace, Server};
use serde_json::{json, Value};
use sift_index::store::{self, Access};
use sift_index::test_postgres::TestPostgres;
use sift_index::Location;

fn sift(args: &[&str]) -> Output {
    sift_cmd(args).output().unwrap()
}

fn succeeds(out: &Output) -> String {
    assert!(
        out.status.success(),
        "sift failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sample_corpus() -> String {
    workspace()
        .join("examples/sample-corpus.jsonl")
        .display()
        .to_string()
}

/// (id, score) of each hit of `sift search --json`.
fn hits(collection: &str, query: &str, mode: &str) -> Vec<(String, f64)> {
    let out = succeeds(&sift(&[
        "search",
        "--collection",
        collection,
        query,
        "--json",
        "--mode",
        mode,
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_owned(),
                h["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The same corpus indexed into a directory and into PostgreSQL answers every query the same
/// in each mode — same documents, same order, same scores — and after a delete the same
/// documents in the same order. (BM25 scores may then differ: tantivy keeps counting a
/// deleted document in N and the document frequencies until its segment is merged;
/// PostgreSQL's statistics are exact at once.)
#[test]
fn index_search_and_delete_match_the_local_backend() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local").display().to_string();
    let remote = format!("{}?collection=sample", pg.primary);
    for collection in [&local, &remote] {
        let out = sift(&["index", "--collection", collection, &sample_corpus()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("30 added"), "{stderr}");
    }
    assert!(
        !succeeds(&sift(&["index", "--collection", &remote, &sample_corpus()])).contains("added"),
    );
    let compare = |when: &str, scores: bool| {
        for query in [
            "how do penguins stay warm",
            "ranking documents by keyword frequency",
            "coffee brewing pressure",
            "vaccines and the immune system",
        ] {
            for mode in ["dense", "bm25", "hybrid"] {
                let (a, b) = (hits(&local, query, mode), hits(&remote, query, mode));
                assert_eq!(a.len(), b.len(), "{when} {mode} {query:?}: {a:?} vs {b:?}");
                for (x, y) in a.iter().zip(&b) {
                    assert_eq!(x.0, y.0, "{when} {mode} {query:?}: {a:?} vs {b:?}");
                    if scores || mode == "dense" {
                        assert!(
                            (x.1 - y.1).abs() < 1e-3,
                            "{when} {mode} {query:?}: {a:?} vs {b:?}"
                        );
                    }
                }
            }
        }
    };
    compare("after indexing", true);
    for collection in [&local, &remote] {
        succeeds(&sift(&[
            "delete",
            "--collection",
            collection,
            "espresso",
            "bm25",
        ]));
    }
    compare("after deleting", false);
    let c = store::open(&Location::parse(&remote).unwrap(), Access::Search).unwrap();
    assert_eq!(c.len().unwrap(), 28);
    c.verify().unwrap();
}

/// `kill -9` of `sift index` into PostgreSQL at several moments: every batch it reported
/// committed is there, the collection verifies, and a re-run completes the corpus.
#[test]
fn sigkill_of_sift_index_loses_no_acknowledged_batch() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let mut lines = String::new();
    for i in 0..60 {
        lines.push_str(
            &json!({"_id": format!("d{i}"), "title": format!("Note {i}"),
                    "text": format!("Observation number {i} of the tide pools, anemones and crabs seen at low water.")})
            .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(&corpus, lines).unwrap();
    let collection = format!("{}?collection=killed", pg.primary);
    let args = [
        "index",
        "--collection",
        collection.as_str(),
        corpus.to_str().unwrap(),
        "--batch-size",
        "3",
    ];
    let location = Location::parse(&collection).unwrap();
    let mut last_reported = 0;
    for (after, delay_ms) in [(1usize, 0u64), (3, 40), (2, 150)] {
        last_reported = kill_sift_index(&args, Some(after), delay_ms, last_reported);
        let c = store::open(&location, Access::Search).unwrap();
        c.verify().unwrap();
        assert!(
            c.len().unwrap() >= last_reported,
            "reported {last_reported} committed, found {}",
            c.len().unwrap()
        );
    }
    assert!(last_reported > 0);
    // The killed writer's lock went with its connection: a new run writes at once.
    succeeds(&sift(&args));
    let c = store::open(&location, Access::Search).unwrap();
    c.verify().unwrap();
    assert_eq!(c.len().unwrap(), 60);
}

fn ids(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `host:port` of a test server's URL.
fn host_port(url: &str) -> &str {
    let rest = &url[url.find('@').unwrap() + 1..];
    &rest[..rest.find('/').unwrap()]
}

/// Two stateless `sift serve` processes on one primary and one replica: a write through either
/// is seen by a search through the other when the search carries the write's `seq`
/// (read-your-writes, whatever the replica's lag), both answer the same searches, a collection
/// one drops is gone for the other (404, not a server error), and both keep serving after
/// PostgreSQL is killed and restarted.
#[test]
fn two_servers_share_one_database() {
    let pg = TestPostgres::start_with_replica();
    let url = format!(
        "postgres://postgres@{},{}/sift?connect_timeout=3",
        host_port(&pg.primary),
        host_port(pg.replica.as_deref().unwrap())
    );
    let args = [
        "--collections",
        url.as_str(),
        "--embed-model",
        "all-MiniLM-L6-v2",
    ];
    let (a, b) = (Server::start(&args), Server::start(&args));
    let docs = |s: &Server| format!("{}/collections/tides/documents", s.base);
    let search_after = |s: &Server, q: &str, seq: &Value| {
        let (code, v) = curl(
            "POST",
            &format!("{}/collections/tides/search", s.base),
            Some(&json!({"query": q, "top_k": 3, "min_seq": seq})),
        );
        assert_eq!(code, 200, "{v}");
        v
    };
    let upsert = |s: &Server, docs_json: Value| {
        let (code, v) = curl("POST", &docs(s), Some(&json!({ "documents": docs_json })));
        assert_eq!(code, 200, "{v}");
        v["seq"].clone()
    };
    let seq = upsert(
        &a,
        json!([
            {"id": "moon", "text": "The moon's gravity raises the ocean tides twice a day."},
            {"id": "bread", "text": "Sourdough bread rises with wild yeast and lactobacilli."},
        ]),
    );
    assert_eq!(seq, json!(1));
    assert_eq!(ids(&search_after(&b, "what causes tides", &seq))[0], "moon");
    let seq = upsert(
        &b,
        json!([{"id": "storm", "text": "A storm surge floods the coast when wind piles water ashore."}]),
    );
    assert_eq!(seq, json!(2));
    let q = "coastal flooding from wind";
    assert_eq!(ids(&search_after(&a, q, &seq))[0], "storm");
    assert_eq!(
        search_after(&a, q, &seq)["hits"],
        search_after(&b, q, &seq)["hits"]
    );
    let (code, v) = curl(
        "DELETE",
        &format!("{}/collections/tides/documents/moon", a.base),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert!(!ids(&search_after(&b, "what causes tides", &v["seq"])).contains(&"moon".to_owned()));
    // A batch number the collection has not reached.
    let (code, v) = curl(
        "POST",
        &format!("{}/collections/tides/search", b.base),
        Some(&json!({"query": "tides", "min_seq": 99})),
    );
    assert_eq!(code, 422, "{v}");

    // PostgreSQL goes down and comes back: writes fail cleanly meanwhile, then work again.
    pg.kill(sift_index::test_postgres::Node::Primary);
    let (code, v) = curl(
        "POST",
        &docs(&a),
        Some(&json!({"documents": [{"id": "x", "text": "lost while down"}]})),
    );
    assert_eq!(code, 503, "{v}");
    pg.restart(sift_index::test_postgres::Node::Primary);
    let seq = upsert(
        &a,
        json!([{"id": "x", "text": "an ebb tide after the storm"}]),
    );
    assert_eq!(seq, json!(4));
    assert!(ids(&search_after(&b, "ebb tide", &seq)).contains(&"x".to_owned()));

    let (code, v) = curl("GET", &format!("{}/collections", b.base), None);
    assert_eq!(code, 200, "{v}");
    assert!(v.to_string().contains("tides"), "{v}");
    let (code, v) = curl("DELETE", &format!("{}/collections/tides", a.base), None);
    assert_eq!(code, 200, "{v}");
    let (code, v) = curl(
        "POST",
        &format!("{}/collections/tides/search", b.base),
        Some(&json!({"query": "tides"})),
    );
    assert_eq!(code, 404, "{v}");
}
