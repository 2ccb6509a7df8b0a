//! Real models against sentence-transformers' embeddings of the same sentences (committed by
//! scripts/golden/make_fixtures.py --minilm/--mpnet): all-MiniLM-L6-v2 (fetched by
//! scripts/setup.sh, always tested) and all-mpnet-base-v2 (scripts/setup.sh --all; run with
//! `cargo test -p sift-models --test real_models -- --ignored`).

mod common;

use std::path::PathBuf;

use common::{fixture, floats, minilm, models_dir, read_json};
use sift_models::{Embedder, EmbedderOptions, EngineChoice, EngineOptions, Precision, TextRole};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn on(engine: EngineChoice, precision: Precision) -> EmbedderOptions {
    EmbedderOptions {
        engine: EngineOptions {
            engine,
            precision,
            threads: None,
        },
        ..Default::default()
    }
}

fn check_against_reference(
    model: PathBuf,
    reference: &str,
    dim: usize,
    engine: EngineChoice,
) -> (Vec<String>, Vec<Vec<f32>>) {
    let reference = read_json(fixture(reference));
    let sentences: Vec<String> = serde_json::from_value(reference["sentences"].clone()).unwrap();
    assert!(sentences.len() >= 8);
    let embedder = Embedder::load(model, on(engine, Precision::F32)).unwrap();
    assert_eq!(embedder.dim(), dim);
    let got = embedder.embed(&sentences, TextRole::Raw).unwrap();
    for (i, want) in reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let want = floats(want);
        let c = cosine(&got[i], &want);
        assert!(c >= 0.9999, "sentence {i} ({:?}): cosine {c}", sentences[i]);
        let norm: f32 = got[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised");
    }
    (sentences, got)
}

#[test]
fn minilm_on_onnx_runtime_matches_sentence_transformers() {
    check_against_reference(minilm(), "minilm_reference.json", 384, EngineChoice::Onnx);
}

/// SciFact abstracts (title + text, the first 48 of the corpus: 100–256+ tokens, truncated at
/// the model's 256) through the int8 path and the f32 path.
#[test]
fn minilm_int8_embeddings_stay_within_cosine_0995_of_f32() {
    let corpus =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/scifact/corpus.jsonl");
    let text = std::fs::read_to_string(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared SciFact data)", corpus.display()));
    let docs: Vec<String> = text
        .lines()
        .take(48)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                v["title"].as_str().unwrap_or(""),
                v["text"].as_str().unwrap()
            )
        })
        .collect();
    let f32 = Embedder::load(minilm(), on(EngineChoice::Onnx, Precision::F32)).unwrap();
    let int8 = Embedder::load(minilm(), on(EngineChoice::Onnx, Precision::Int8)).unwrap();
    assert_eq!(int8.engine().name(), "onnx-int8");
    let a = f32.embed(&docs, TextRole::Passage).unwrap();
    let b = int8.embed(&docs, TextRole::Passage).unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| cosine(x, y))
        .fold(1f32, f32::min);
    assert!(worst >= 0.995, "worst cosine int8 vs f32: {worst}");
    // Quantized, not identical: the int8 path really ran.
    assert!(worst < 0.99999, "int8 vectors equal f32 ones ({worst})");
}

#[test]
fn minilm_matches_sentence_transformers() {
    let (sentences, got) =
        check_against_reference(minilm(), "minilm_reference.json", 384, EngineChoice::Candle);
    let embedder = Embedder::load(minilm(), EmbedderOptions::default()).unwrap();
    // Batching must not change results: one at a time equals all at once.
    let single = embedder.embed(&sentences[7..8], TextRole::Raw).unwrap();
    assert!(cosine(&single[0], &got[7]) > 0.99999);
}

#[test]
fn minilm_ranks_a_paraphrase_above_an_unrelated_sentence() {
    let embedder = Embedder::load(minilm(), EmbedderOptions::default()).unwrap();
    let v = embedder
        .embed(
            &[
                "How do I bake bread?",
                "A recipe for baking a loaf of bread",
                "The stock market fell today",
            ],
            TextRole::Raw,
        )
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.3);
}

/// Needs `scripts/setup.sh --all` (all-mpnet-base-v2, ~420 MB); includes a 384-token input so
/// MPNet's relative-position buckets are exercised far beyond the golden fixtures' lengths.
#[test]
#[ignore = "needs all-mpnet-base-v2: scripts/setup.sh --all"]
fn mpnet_matches_sentence_transformers() {
    let dir = models_dir().join("all-mpnet-base-v2");
    check_against_reference(
        dir.clone(),
        "mpnet_reference.json",
        768,
        EngineChoice::Candle,
    );
    check_against_reference(dir, "mpnet_reference.json", 768, EngineChoice::Onnx);
}
