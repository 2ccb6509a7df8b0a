//! The search playground (`GET /ui`) in a real browser: a live `sift serve` over a small
//! collection, driven in headless Chromium (Debian's chromium + chromedriver, installed by
//! scripts/browser/install.sh) through Selenium (pinned in scripts/sdk-compat/requirements.txt).
//! The page must show the same hybrid and reranked lists `sift search` prints, with and without
//! an API key, render hostile document text as text, and leave a screenshot in
//! target/playground.png.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{golden, models_dir, sift_cmd, succeeds, venv_python, workspace, Server};

fn python() -> PathBuf {
    let python = venv_python(
        "SIFT_SDK_PYTHON",
        "target/sdk-venv",
        "scripts/sdk-compat/requirements.txt",
    );
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: run scripts/browser/install.sh (apt-get install chromium chromium-driver); this test does not skip"
        );
    }
    python
}

/// Ids `sift search` returns for `query`, reranked with `rerank` when given.
fn search_ids(collection: &Path, query: &str, rerank: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "search",
        "--collection",
        collection.to_str().unwrap(),
        query,
        "--json",
    ];
    if let Some(model) = rerank {
        args.extend(["--rerank-model", model]);
    }
    let out: Value = serde_json::from_str(&succeeds(&sift_cmd(&args).output().unwrap())).unwrap();
    out["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_playground_shows_recall_and_reranked_lists_in_a_real_browser() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let collections = dir.path().join("collections");
    let collection = collections.join("demo");
    // Twenty topics with one relevant abstract each, and one document whose title and text
    // are markup: the page must show it as text.
    let data = dir.path().join("data");
    common::dataset(&data);
    let mut corpus = std::fs::read_to_string(data.join("corpus.jsonl")).unwrap();
    corpus.push_str(
        &serde_json::json!({
            "_id": "evil",
            "title": "<img src=x onerror=alert(1)><b>volcano</b>",
            "text": "<script>document.title='owned'</script> notes on a volcano",
        })
        .to_string(),
    );
    corpus.push('\n');
    std::fs::write(data.join("corpus.jsonl"), corpus).unwrap();
    let embed = models_dir().join("all-MiniLM-L6-v2").display().to_string();
    succeeds(
        &sift_cmd(&[
            "index",
            "--collection",
            collection.to_str().unwrap(),
            "--embed-model",
            &embed,
            data.join("corpus.jsonl").to_str().unwrap(),
        ])
        .output()
        .unwrap(),
    );
    let reranker = golden("bert-classifier");
    let query = "what is known about the volcano";
    let want_recall = search_ids(&collection, query, None);
    let want_reranked = search_ids(&collection, query, Some(&reranker));
    assert_ne!(
        want_recall, want_reranked,
        "the fixture's reranker must change the order, or the page's two lists prove nothing"
    );

    let screenshot = workspace().join("target/playground.png");
    for key in ["playground-key", "-"] {
        let mut args = vec![
            "--collections",
            collections.to_str().unwrap(),
            "--embed-model",
            &embed,
            "--rerank-model",
            &reranker,
        ];
        if key != "-" {
            args.extend(["--api-key", key]);
        }
        let server = Server::start(&args);
        let out = Command::new(&python)
            .arg(workspace().join("scripts/browser/playground.py"))
            .args([
                server.base.as_str(),
                key,
                "demo",
                query,
                screenshot.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "browser script failed (key {key}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        if key != "-" {
            assert!(
                seen["status_without_key"]
                    .as_str()
                    .unwrap()
                    .contains("needs an API key"),
                "{seen}"
            );
        }
        assert_eq!(strings(&seen["recall"]), want_recall, "{seen}");
        assert_eq!(strings(&seen["reranked"]), want_reranked, "{seen}");
        assert_eq!(strings(&seen["recall_without_rerank"]), want_recall);
        assert_eq!(seen["moves"].as_array().unwrap().len(), want_reranked.len());
        assert!(strings(&seen["marks"])
            .iter()
            .any(|m| m.eq_ignore_ascii_case("volcano")));
        // The hostile document is listed, as its literal text, with no element made from it.
        let evil = strings(&seen["recall_texts"])
            .into_iter()
            .find(|t| t.contains("evil"))
            .expect("the markup document is recalled for 'volcano'");
        assert!(
            evil.contains("<img src=x onerror=alert(1)><b>volcano</b>"),
            "{evil}"
        );
        assert_eq!(seen["injected_elements"], 0);
        assert!(seen["timings"].as_str().unwrap().contains("rerank"));
        // The direct panel: every pasted line ranked, the tag shown as text.
        assert_eq!(strings(&seen["direct"]).len(), 3);
        assert!(strings(&seen["direct_texts"])
            .iter()
            .any(|t| t.contains("<i>tagged</i>")));
        assert_eq!(seen["status"], "", "no error shown: {seen}");
    }
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
