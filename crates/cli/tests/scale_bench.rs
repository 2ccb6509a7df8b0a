//! The scale benchmark's smoke size: `sift bench --task search` builds, updates, reopens and
//! queries a small collection end to end and reports every measure (the real sizes are run by
//! hand: docs/performance.md, "A million chunks").

mod common;

use common::{sift_cmd, succeeds};
use serde_json::Value;

#[test]
fn the_search_benchmark_runs_at_smoke_size() {
    let corpus = common::scifact().join("corpus.jsonl");
    let out = succeeds(
        &sift_cmd(&[
            "bench",
            "--task",
            "search",
            "--chunks",
            "3000",
            "--dim",
            "64",
            "--exact-below",
            "1000",
            "--add-chunks",
            "500",
            "--batch-chunks",
            "700",
            "--queries",
            "40",
            "--sentences",
            corpus.to_str().unwrap(),
        ])
        .output()
        .unwrap(),
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["chunks"], 3_500, "{report}");
    assert_eq!(report["graph"], true, "{report}");
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"))
    };
    for key in [
        "ingest_chunks_per_s",
        "open_s",
        "hybrid_p50_ms",
        "hybrid_p99_ms",
        "disk_mib",
        "rss_after_search_mib",
        "anon_rss_after_search_mib",
        "bm25_segments",
    ] {
        assert!(number(key) > 0.0, "{key}: {report}");
    }
    assert!(number("hybrid_p99_ms") >= number("hybrid_p50_ms"));
    // Recall is the graph's quality, not a timing: it must hold at any size.
    assert!(number("ann_recall_at_10") >= 0.9, "{report}");
}

/// Graph settings usearch would silently replace by its defaults are refused before any work.
#[test]
fn graph_settings_usearch_would_ignore_are_refused() {
    for (flag, value) in [("--connectivity", "0"), ("--ef-construction", "0")] {
        let out = sift_cmd(&["bench", "--task", "search", "--chunks", "100", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--connectivity must be at least 2"), "{err}");
    }
}
