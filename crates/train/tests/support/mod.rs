//! What several of sift-train's integration tests load: the golden tiny models and an
//! `Embedder` over a directory on the candle engine at f32 (the engine training's own forward
//! pass is checked against, without ONNX export or quantization in between).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use sift_models::{Embedder, EmbedderOptions, EngineChoice, EngineOptions, Precision};

/// A tiny random-weight model of `crates/models/tests/fixtures/golden` (scripts/golden).
pub fn golden_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/golden")
        .join(name)
}

/// The embedding model in `dir`, on candle at f32.
pub fn candle_embedder(dir: &Path) -> Embedder {
    Embedder::load(
        dir,
        EmbedderOptions {
            engine: EngineOptions {
                engine: EngineChoice::Candle,
                precision: Precision::F32,
                threads: None,
            },
            ..Default::default()
        },
    )
    .unwrap()
}

/// torch's gradients of one training step on fixture `name` (`file`, written by
/// scripts/golden/make_gradient_fixtures.py), by Hugging Face parameter name.
pub fn reference_gradients(
    name: &str,
    file: &str,
) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(golden_fixture(name).join(file), &candle_core::Device::Cpu)
        .unwrap()
}

/// Every variable's gradient in `got` equals torch's within 1e-3 of the tensor's largest
/// gradient, and exactly the parameters torch's step reached have one. Gradients that are zero
/// in exact arithmetic (a key bias shifts all of a query's attention scores alike) are rounding
/// noise on both sides: they are judged against the whole step's largest gradient instead.
pub fn assert_gradients_equal(
    name: &str,
    got: &[(String, Option<candle_core::Tensor>)],
    reference: &std::collections::HashMap<String, candle_core::Tensor>,
) {
    let flat =
        |t: &candle_core::Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let global = reference
        .values()
        .flat_map(&flat)
        .fold(0f32, |m, x| m.max(x.abs()));
    let mut checked = 0;
    for (var_name, grad) in got {
        let Some(grad) = grad else {
            assert!(
                !reference.contains_key(var_name),
                "{name}: torch has a gradient for {var_name}, sift none"
            );
            continue;
        };
        let want = flat(
            reference
                .get(var_name)
                .unwrap_or_else(|| panic!("{name}: torch has no gradient for {var_name}")),
        );
        let got = flat(grad);
        assert_eq!(got.len(), want.len(), "{name}: {var_name}");
        let largest = want.iter().fold(1e-3 * global, |m, x| m.max(x.abs()));
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-3 * largest,
                "{name}: {var_name}: {a} vs torch {b} (largest {largest})"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, reference.len(), "{name}: parameters compared");
}
