//! The differentiable forward path (training) computes what the fused one (inference) does.

use candle_core::Device;
use sift_models::arch::{Kernels, Transformer};
use sift_models::batch::Batch;
use sift_models::{ModelDir, TextTokenizer};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name)
}

#[test]
fn fused_and_differentiable_kernels_agree() {
    for name in ["bert-classifier", "xlmr-classifier", "mpnet-classifier"] {
        let dir = ModelDir::open(fixture(name)).unwrap();
        let device = Device::Cpu;
        let load = |k| {
            Transformer::load(
                dir.config.clone(),
                dir.var_builder(&device).unwrap(),
                true,
                k,
            )
            .unwrap()
        };
        let (fused, diff) = (load(Kernels::Fused), load(Kernels::Differentiable));
        let tok = TextTokenizer::from_dir(&dir.path, 64, dir.config.type_vocab_size > 1).unwrap();
        let pairs = [
            tok.encode_pair(
                "what is a cross-encoder?",
                "It reads query and document together.",
            )
            .unwrap(),
            tok.encode_pair(
                "short",
                "a much longer document that forces padding in the batch",
            )
            .unwrap(),
        ];
        let rows: Vec<_> = pairs.iter().collect();
        let batch = Batch::new(&rows, dir.config.pad_token_id, &device).unwrap();
        let a: Vec<Vec<f32>> = fused.logits(&batch).unwrap().to_vec2().unwrap();
        let b: Vec<Vec<f32>> = diff.logits(&batch).unwrap().to_vec2().unwrap();
        assert_eq!(a.len(), pairs.len(), "{name}: one logit row per pair");
        assert_eq!(
            a.iter().map(Vec::len).collect::<Vec<_>>(),
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            "{name}: both kernels give the same shape"
        );
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{name}: {x} vs {y}");
        }
        let ha = fused
            .hidden_states(&batch)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let hb = diff
            .hidden_states(&batch)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(ha.len(), hb.len(), "{name}: hidden state shapes");
        assert!(!ha.is_empty(), "{name}: no hidden states");
        let worst = ha
            .iter()
            .zip(&hb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "{name}: hidden states differ by {worst}");
    }
}
