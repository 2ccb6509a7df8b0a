//! Real quantized weights through the GGUF path: SmolLM2-135M-Instruct (Llama, Q4_1, byte-level
//! BPE) and Gemma 3 270M (Q4_K_M: Q4_K, Q5_0, Q6_K, Q8_0 and F32 tensors; SentencePiece)
//! against transformers loading the same files (fixtures from
//! scripts/golden/make_gguf_fixtures.py; the models from `scripts/setup.sh --gguf`).
//!
//! Both sides dequantize the same blocks to the same f32 values; what differs is the order of
//! floating-point sums over 30 (SmolLM2) and 18 (Gemma 3) layers of width 576/640 with logits
//! up to ~25 in magnitude. The tolerance is therefore relative: |a − b| ≤ 1e-4 · max(1, |b|)
//! (measured: at most 2.6e-5, about the fixture's rounding to 5 decimals).

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{fixture, models_dir, read_json};
use sift_models::decoder::{Decoder, GgufModel};
use sift_models::{LlmReranker, Reranker, RerankerOptions};

fn gguf_file(file: &str) -> PathBuf {
    let path = models_dir().join("gguf").join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh --gguf (the README's test command does)",
        path.display()
    );
    path
}

fn check(fixture_name: &str) {
    let expected = read_json(fixture("gguf").join(format!("{fixture_name}.json")));
    let path = gguf_file(expected["file"].as_str().unwrap());
    let model = GgufModel::read(&path).unwrap();
    assert_eq!(
        model.config.model_type,
        expected["transformers_config"].as_str().unwrap()
    );
    let rows: Vec<u32> = serde_json::from_value(expected["rows"].clone()).unwrap();
    let config = model.config.clone();
    let vb = VarBuilder::from_tensors(model.tensors, DType::F32, &Device::Cpu);
    let decoder = Decoder::load(config, vb, &rows).unwrap();
    for case in expected["cases"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let got = decoder
            .last_token_logits(&input, &[ids.len()], None, decoder.config().num_layers())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
            .remove(0);
        let want: Vec<f32> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4,
            "{fixture_name} {:?}: worst relative difference {worst}",
            case["text"]
        );
    }
}

#[test]
fn smollm2_q4_1_matches_transformers() {
    check("smollm2-135m-instruct-q4_1");
}

#[test]
fn gemma3_q4_k_m_matches_transformers() {
    check("gemma-3-270m-q4_k_m");
}

/// A GGUF file is a rerank model like a directory: `load_reranker` takes the path, the recipe
/// comes from the family, and scores are finite and ordered as logits.
#[test]
fn a_gguf_file_loads_as_an_llm_reranker() {
    let path = gguf_file("SmolLM2-135M-Instruct.Q4_1.gguf");
    let reranker = LlmReranker::load(&path, RerankerOptions::default()).unwrap();
    assert_eq!(reranker.template(), sift_models::RerankTemplate::BgeLlm);
    assert!(reranker.model_dir().name().ends_with(".gguf"));
    let docs = ["Paris is the capital of France.", "Bananas are yellow."];
    let pairs: Vec<_> = docs
        .iter()
        .map(|d| reranker.encode_pair("capital of France", d).unwrap().0)
        .collect();
    let scores = reranker.score_pairs(&pairs, &mut |_| {}).unwrap();
    assert!(scores
        .iter()
        .all(|s| s.logit.is_finite() && (0.0..=1.0).contains(&s.score)));
}

/// The tokenizer rebuilt from GGUF metadata splits text as llama.cpp does: byte-level BPE with
/// SmolLM's digit rule, and SentencePiece BPE for Gemma 3 (merged by piece score; transformers'
/// own GGUF conversion of Gemma builds a Unigram model from the same scores and splits words
/// into pieces, so its ids are not the reference there — its logits still are, on its ids).
#[test]
fn gguf_tokenizers_split_text_as_llama_cpp_does() {
    for name in ["smollm2-135m-instruct-q4_1", "gemma-3-270m-q4_k_m"] {
        let expected = read_json(fixture("gguf").join(format!("{name}.json")));
        let summary = GgufModel::inspect(&gguf_file(expected["file"].as_str().unwrap())).unwrap();
        assert!(
            summary.tensor_types.iter().any(|t| t.starts_with('Q')),
            "{:?}",
            summary.tensor_types
        );
        let model = GgufModel::read(&gguf_file(expected["file"].as_str().unwrap())).unwrap();
        for case in expected["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(case["llama_cpp_ids"].clone()).unwrap();
            let got = model.tokenizer.encode(text, false).unwrap();
            assert_eq!(got.get_ids(), want.as_slice(), "{name}: {text:?}");
        }
    }
}
