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
