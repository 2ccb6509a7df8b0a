//! How much one text's int8 error is chance: Gemma 3 270M Q4_K_M (`scripts/setup.sh --gguf`)
//! run in int8 on the GGUF fixture's texts, first as read, then with one f32 matrix (layer 0's
//! query projection) multiplied by 1 + ε, ε ~ N(0, 1e-6) — a few units in the last place, the
//! order of the rounding differences between f32 kernels. Prints each text's root-mean-square
//! difference from transformers' logits over their spread (crates/models/tests/gguf.rs's
//! measure) and the mean over texts.
//!
//!     cargo run --release -p sift-models --example int8_sensitivity -- 5
//!
//! Argument: how many perturbed runs (default 5).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sift_models::decoder::{Decoder, DecoderWeights, GgufModel};
use sift_models::Precision;

const MODEL: &str = "models/gguf/gemma-3-270m-q4_k_m.gguf";
const FIXTURE: &str = "crates/models/tests/fixtures/gguf/gemma-3-270m-q4_k_m.json";
const PERTURBED: &str = "model.layers.0.self_attn.q_proj.weight";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args().nth(1).map_or(Ok(5), |a| a.parse())?;
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE)?)?;
    let rows: Vec<u32> = serde_json::from_value(fixture["rows"].clone())?;
    let cases = fixture["cases"].as_array().ok_or("fixture without cases")?;
    for run in 0..=runs {
        let mut model = GgufModel::read_for(Path::new(MODEL), Precision::Int8)?;
        if run > 0 {
            // Q5_0 in the file: dequantized, then run in f32 (640-wide inputs have no int8 kernel).
            let w = model
                .blocks
                .remove(PERTURBED)
                .ok_or("no such tensor")?
                .dequantize(&Device::Cpu)?;
            let noise = Tensor::randn(0f32, 1e-6, w.shape(), &Device::Cpu)?;
            model
                .tensors
                .insert(PERTURBED.to_string(), (&w + (&w * noise)?)?);
        }
        let config = model.config.clone();
        let vb = VarBuilder::from_tensors(model.tensors, DType::F32, &Device::Cpu);
        let decoder = Decoder::load(
            config,
            DecoderWeights::new(vb, model.blocks, Precision::Int8),
            &rows,
        )?;
        let mut distances = Vec::new();
        for case in cases {
            let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone())?;
            let want: Vec<f32> = serde_json::from_value(case["logits"].clone())?;
            let input = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let layers = decoder.config().num_layers();
            let got = decoder
                .last_token_logits(&input, &[ids.len()], None, layers)?
                .to_vec2::<f32>()?
                .remove(0);
            let n = want.len() as f32;
            let mean = want.iter().sum::<f32>() / n;
            let spread = (want.iter().map(|b| (b - mean).powi(2)).sum::<f32>() / n).sqrt();
            let squares: f32 = got.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum();
            distances.push((squares / n).sqrt() / spread);
        }
        let label = if run == 0 { "as read" } else { "perturbed" };
        let texts: Vec<String> = distances.iter().map(|d| format!("{d:.4}")).collect();
        let mean = distances.iter().sum::<f32>() / distances.len() as f32;
        println!("{label:>9}: {}  mean {mean:.4}", texts.join(" "));
    }
    Ok(())
}
