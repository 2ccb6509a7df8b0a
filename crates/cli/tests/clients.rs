//! The client libraries RAG builders use, against a live `sift serve` with an API key:
//! huggingface_hub's `InferenceClient` (feature extraction and sentence similarity on the base
//! URL), LlamaIndex (OpenAI-like and TEI embeddings; TEI, Cohere and Jina rerank
//! postprocessors) and LangChain (OpenAI embeddings, Cohere rerank). They are installed from PyPI
//! by scripts/test.sh into target/clients-venv (scripts/clients-compat/requirements.txt pins
//! them); what each returns must equal sift's own embeddings and rerank scores.

use std::process::Command;

use serde_json::Value;
use sift_models::{Embedder, EmbedderOptions, LongDocumentPolicy, RerankerOptions, TextRole};

mod common;
use common::{golden, models_dir, venv_python, workspace, Server};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{what}: differs by {worst}");
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn rag_client_libraries_get_sifts_results() {
    let python = venv_python(
        "SIFT_CLIENTS_PYTHON",
        "target/clients-venv",
        "scripts/clients-compat/requirements.txt",
    );
    let embed_path = models_dir().join("all-MiniLM-L6-v2");
    let embed_dir = embed_path.display().to_string();
    let reranker_dir = golden("bert-classifier");
    let server = Server::start(&[
        "--api-key",
        "clients-key",
        "--embed-model",
        &embed_dir,
        "--rerank-model",
        &reranker_dir,
    ]);
    let out = Command::new(&python)
        .arg(workspace().join("scripts/clients-compat/check.py"))
        .args([server.base.as_str(), "clients-key"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client script failed:\n{}",
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
    assert_close(
        &floats(&got["hf_feature_extraction"][0]),
        &want[0],
        "huggingface_hub feature_extraction",
    );
    let similarity = floats(&got["hf_sentence_similarity"]);
    assert_eq!(similarity.len(), 2);
    for (i, s) in similarity.iter().enumerate() {
        assert!(
            (s - dot(&want[0], &want[i + 1])).abs() < 1e-5,
            "sentence_similarity {i}"
        );
    }
    for client in [
        "llamaindex_openai_like",
        "llamaindex_tei",
        "langchain_openai",
    ] {
        let vectors = got[client].as_array().unwrap();
        assert_eq!(vectors.len(), 3, "{client}");
        for (g, w) in vectors.iter().zip(&want) {
            assert_close(&floats(g), w, client);
        }
    }
    let query = "capital of France";
    let query_vector = embedder.embed(&[query], TextRole::Raw).unwrap();
    assert_close(
        &floats(&got["llamaindex_tei_query"]),
        &query_vector[0],
        "llamaindex TEI query embedding",
    );

    let documents = [
        "Paris is the capital of France.",
        "The quick brown fox.",
        "Berlin is in Germany.",
    ];
    let reranker = sift_models::load_reranker(
        std::path::Path::new(&reranker_dir),
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
    for client in [
        "llamaindex_tei_rerank",
        "llamaindex_cohere_rerank",
        "llamaindex_jina_rerank",
    ] {
        let results = got[client].as_array().unwrap();
        assert_eq!(results.len(), 3, "{client}");
        for (r, w) in results.iter().zip(&ranked) {
            assert_eq!(r[0], format!("n{}", w.index), "{client} order");
            assert!(
                (r[1].as_f64().unwrap() as f32 - w.score).abs() < 1e-5,
                "{client} score"
            );
        }
    }
    let langchain = got["langchain_cohere_rerank"].as_array().unwrap();
    for (r, w) in langchain.iter().zip(&ranked) {
        assert_eq!(r[0], w.index);
        assert!((r[1].as_f64().unwrap() as f32 - w.score).abs() < 1e-5);
    }
}
