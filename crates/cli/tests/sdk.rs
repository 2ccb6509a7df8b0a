//! The official Python SDKs against a live `sift serve` process: OpenAI
//! (`client.embeddings.create`) and Cohere (`Client.rerank`, `ClientV2.rerank`), installed from
//! PyPI by scripts/test.sh into target/sdk-venv (scripts/sdk-compat/requirements.txt pins them).
//! What the SDKs return must equal sift's own results; the server must then stop cleanly on
//! SIGTERM.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sift_models::{Embedder, EmbedderOptions, LongDocumentPolicy, RerankerOptions, TextRole};

mod common;
use common::{golden, models_dir, venv_python, workspace, Server};

fn sdk_python() -> PathBuf {
    venv_python(
        "SIFT_SDK_PYTHON",
        "target/sdk-venv",
        "scripts/sdk-compat/requirements.txt",
    )
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn openai_and_cohere_sdks_get_sifts_results() {
    let python = sdk_python();
    let embed_path = models_dir().join("all-MiniLM-L6-v2");
    let embed_dir = embed_path.display().to_string();
    let mut server = Server::start(&[
        "--api-key",
        "test-key",
        "--embed-model",
        &embed_dir,
        "--rerank-model",
        &golden("bert-classifier"),
    ]);
    let base = server.base.clone();

    let out = Command::new(&python)
        .arg(workspace().join("scripts/sdk-compat/check.py"))
        .args([&base, "test-key"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();

    let texts = [
        "The cat sat on the mat.",
        "Quantum tunnelling in semiconductors",
        "Paris",
    ];
    let embedder = Embedder::load(&embed_path, EmbedderOptions::default()).unwrap();
    let want = embedder.embed(&texts, TextRole::Raw).unwrap();
    let default: Vec<Vec<f32>> = got["openai_default"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    assert_eq!(default.len(), 3);
    for (g, w) in default.iter().zip(&want) {
        assert!(close(g, w), "OpenAI SDK (base64) vector differs");
    }
    assert!(close(&floats(&got["openai_float_one"]), &want[0]));
    assert_eq!(got["openai_model"], "all-MiniLM-L6-v2");
    let tokens: usize = embedder
        .encode(&texts, TextRole::Raw)
        .unwrap()
        .iter()
        .map(|e| e.len())
        .sum();
    assert_eq!(got["openai_prompt_tokens"], tokens);
    for (g, w) in got["openai_dim64"].as_array().unwrap().iter().zip(&want) {
        let g = floats(g);
        let norm = w[..64].iter().map(|x| x * x).sum::<f32>().sqrt();
        let w: Vec<f32> = w[..64].iter().map(|x| x / norm).collect();
        assert!(close(&g, &w), "dimensions=64 is the re-normalised prefix");
    }
    assert_eq!(got["openai_wrong_key"], 401);

    let query = "capital of France";
    let documents = [
        "Paris is the capital of France.",
        "Berlin is in Germany.",
        "Cats purr.",
    ];
    let reranker = sift_models::load_reranker(
        std::path::Path::new(&golden("bert-classifier")),
        RerankerOptions::default(),
    )
    .unwrap();
    let ranked = sift_models::rerank::rerank(
        reranker.as_ref(),
        query,
        &documents,
        &LongDocumentPolicy::default(),
        None,
    )
    .unwrap();
    let v1 = got["cohere_v1"].as_array().unwrap();
    assert_eq!(v1.len(), 2, "top_n = 2");
    let v2 = got["cohere_v2"].as_array().unwrap();
    assert_eq!(v2.len(), 3);
    for (i, want) in ranked.iter().enumerate() {
        assert_eq!(v2[i]["index"], want.index);
        assert!((v2[i]["relevance_score"].as_f64().unwrap() as f32 - want.score).abs() < 1e-6);
        if i < 2 {
            assert_eq!(v1[i]["index"], want.index);
            assert_eq!(v1[i]["text"], documents[want.index]);
        }
    }

    // SIGTERM: graceful stop, exit status 0.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    // The reader thread ends at the pipe's end of file, which ends the channel.
    let logs: String = server.logs.iter().map(|l| l + "\n").collect();
    assert!(exit.success(), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
    assert!(
        logs.contains("request_id") && logs.contains("route=/v1/embeddings"),
        "one log line per request with its id:\n{logs}"
    );
}
