//! How `sift train-reranker` builds a cross-encoder from a base: which tensors come from the
//! checkpoint and which are drawn fresh (and so trained at the fresh head's rate), on the tiny
//! random-weight encoders of the golden fixtures.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use sift_models::ModelDir;
use sift_train::{Pooler, TrainableCrossEncoder};

fn fixture(name: &str) -> ModelDir {
    ModelDir::open(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/tests/fixtures/golden")
            .join(name),
    )
    .unwrap()
}

fn base_tensors(base: &ModelDir) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(base.path.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn variable(model: &TrainableCrossEncoder, name: &str) -> Vec<f32> {
    let vars = model.variables();
    let (_, var) = vars
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no variable {name}"));
    values(var.as_tensor())
}

#[test]
fn a_bert_bi_encoder_keeps_its_pooler_unless_asked_for_a_fresh_one() {
    let base = fixture("bert-encoder");
    let checkpoint = base_tensors(&base);
    let pretrained = values(&checkpoint["pooler.dense.weight"]);
    let pooler = ["bert.pooler.dense.weight", "bert.pooler.dense.bias"];

    let kept = TrainableCrossEncoder::from_base(&base, 7, &[], Pooler::Base).unwrap();
    assert_eq!(variable(&kept, pooler[0]), pretrained);
    assert!(kept.fresh.iter().all(|n| !n.contains("pooler")));
    assert!(kept.fresh.iter().any(|n| n.starts_with("classifier.")));

    let fresh = TrainableCrossEncoder::from_base(&base, 7, &[], Pooler::Fresh).unwrap();
    for name in pooler {
        assert!(fresh.fresh.iter().any(|n| n == name), "{name} is not fresh");
    }
    let drawn = variable(&fresh, pooler[0]);
    assert_ne!(drawn, pretrained);
    // Drawn as transformers initialises a head: N(0, 0.02) weights, zero bias.
    let n = drawn.len() as f32;
    let std = (drawn.iter().map(|x| x * x).sum::<f32>() / n).sqrt();
    assert!((0.015..0.025).contains(&std), "std {std}");
    assert!(variable(&fresh, pooler[1]).iter().all(|&b| b == 0.0));
    // The encoder itself still comes from the checkpoint.
    let embeddings = "bert.embeddings.word_embeddings.weight";
    assert_eq!(
        variable(&fresh, embeddings),
        values(&checkpoint["embeddings.word_embeddings.weight"])
    );
}

#[test]
fn a_cross_encoder_base_keeps_its_whole_head_whatever_the_pooler_choice() {
    let base = fixture("bert-classifier");
    let checkpoint = base_tensors(&base);
    let model = TrainableCrossEncoder::from_base(&base, 7, &[], Pooler::Fresh).unwrap();
    assert!(model.fresh.is_empty(), "fresh: {:?}", model.fresh);
    let pooler = checkpoint
        .iter()
        .find(|(n, _)| n.ends_with("pooler.dense.weight"))
        .map(|(_, t)| values(t))
        .unwrap();
    assert_eq!(variable(&model, "bert.pooler.dense.weight"), pooler);
}
