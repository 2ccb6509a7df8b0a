//! Which implementation runs the forward pass: candle or ONNX Runtime.

use std::str::FromStr;

use crate::arch::Transformer;
use crate::batch::{Batch, SavedStates};
use crate::error::{ModelError, Result};
use crate::model_dir::ModelDir;
use crate::onnx::{self, OnnxEncoder, Precision};
use crate::tokenize::Encoded;

/// The engine a user asks for. `Auto` (the default) picks ONNX Runtime when its library is
/// found and candle otherwise. The library never reads this from the environment: callers
/// (the CLI's `--engine`) pass it in [`EngineOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    #[default]
    Auto,
    Candle,
    Onnx,
}

impl FromStr for EngineChoice {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(EngineChoice::Auto),
            "candle" => Ok(EngineChoice::Candle),
            "onnx" | "ort" | "onnxruntime" => Ok(EngineChoice::Onnx),
            other => Err(ModelError::InvalidInput(format!(
                "unknown engine {other:?}: use auto, candle or onnx"
            ))),
        }
    }
}

impl FromStr for Precision {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "int8" | "i8" | "q8" => Ok(Precision::Int8),
            other => Err(ModelError::InvalidInput(format!(
                "unknown precision {other:?}: use f32 or int8"
            ))),
        }
    }
}

/// How to run a model: engine, numeric precision and threads. A plain value: what the caller
/// sets is what runs, whatever the process environment says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    pub engine: EngineChoice,
    /// `Int8` needs ONNX Runtime.
    pub precision: Precision,
    /// Intra-op threads for ONNX Runtime; `None`: one per physical core ([`default_threads`]).
    pub threads: Option<usize>,
}

/// A loaded network on one engine.
pub enum Engine {
    Candle(Transformer),
    Onnx(OnnxEncoder),
}

impl Engine {
    /// `calibration` makes the token rows int8 calibrates on (see `onnx::calibrate`); it is
    /// called only for int8.
    pub(crate) fn load(
        dir: &ModelDir,
        with_head: bool,
        options: EngineOptions,
        calibration: impl FnOnce() -> Result<Vec<Encoded>>,
    ) -> Result<Self> {
        let precision = options.precision;
        let wants_onnx = match options.engine {
            EngineChoice::Onnx => true,
            EngineChoice::Candle => false,
            EngineChoice::Auto => precision != Precision::F32 || onnx::runtime_library().is_some(),
        };
        if !wants_onnx && precision != Precision::F32 {
            return Err(ModelError::InvalidInput(format!(
                "{} precision needs the ONNX Runtime engine",
                precision.name()
            )));
        }
        let model = crate::load_transformer(dir, &candle_core::Device::Cpu, with_head)?;
        if !wants_onnx {
            return Ok(Engine::Candle(model));
        }
        let threads = options.threads.unwrap_or_else(default_threads).max(1);
        let rows = match precision {
            Precision::Int8 => calibration()?,
            Precision::F32 => Vec::new(),
        };
        let encoder = OnnxEncoder::from_transformer(&model, with_head, precision, threads, &rows)?;
        tracing::debug!(model = %dir.name(), precision = precision.name(), threads, "running on ONNX Runtime");
        Ok(Engine::Onnx(encoder))
    }

    /// `candle`, `onnx-f32` or `onnx-int8`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Candle(_) => "candle",
            Engine::Onnx(e) => match e.precision() {
                Precision::F32 => "onnx-f32",
                Precision::Int8 => "onnx-int8",
            },
        }
    }

    /// Token states `[b, t, hidden]` of a padded batch of `rows`, and that batch.
    pub fn hidden_states(
        &self,
        rows: &[&Encoded],
        pad_id: u32,
    ) -> Result<(candle_core::Tensor, Batch)> {
        match self {
            Engine::Candle(m) => {
                let batch = Batch::new(rows, pad_id, &candle_core::Device::Cpu)?;
                Ok((m.hidden_states(&batch)?, batch))
            }
            Engine::Onnx(e) => e.hidden_states(rows),
        }
    }

    /// Logits of the head after layer `exit` (counted from 1; layerwise cross-encoders),
    /// running only the layers up to it.
    pub fn logits_at(&self, rows: &[&Encoded], pad_id: u32, exit: usize) -> Result<Vec<Vec<f32>>> {
        match self {
            Engine::Candle(m) => {
                let batch = Batch::new(rows, pad_id, &candle_core::Device::Cpu)?;
                Ok(m.logits_at(&batch, exit)?.to_vec2()?)
            }
            Engine::Onnx(e) => e.logits_at(rows, exit),
        }
    }

    /// Logits of the head after layer `exit` and the token states there, which
    /// [`Engine::finish`] continues.
    pub fn exit_states(
        &self,
        rows: &[&Encoded],
        pad_id: u32,
        exit: usize,
    ) -> Result<(Vec<Vec<f32>>, SavedStates)> {
        match self {
            Engine::Candle(m) => {
                let batch = Batch::new(rows, pad_id, &candle_core::Device::Cpu)?;
                let state = m.encoder.run(m.encoder.start(&batch)?, exit)?;
                let logits = m.exit_logits(&state)?.to_vec2()?;
                let hidden = state.hidden()?;
                let (b, t, h) = hidden.dims3()?;
                let states = SavedStates {
                    dims: [b, t, h],
                    data: hidden.flatten_all()?.to_vec1()?,
                    lengths: batch.lengths,
                };
                Ok((logits, states))
            }
            Engine::Onnx(e) => e.exit_states(rows, exit),
        }
    }

    /// Continues token states saved after layer `from` through the remaining layers and
    /// scores them with the last head.
    pub fn finish(&self, states: &SavedStates, from: usize) -> Result<Vec<Vec<f32>>> {
        match self {
            Engine::Candle(m) => {
                let device = candle_core::Device::Cpu;
                let [b, t, _] = states.dims;
                let hidden =
                    candle_core::Tensor::from_slice(&states.data, (b, t, states.dims[2]), &device)?;
                let mut mask = vec![0f32; b * t];
                for (r, &len) in states.lengths.iter().enumerate() {
                    mask[r * t..r * t + len.min(t)].fill(1.0);
                }
                let mask = candle_core::Tensor::from_vec(mask, (b, t), &device)?;
                let state = m.encoder.resume(&hidden, &mask, from)?;
                let state = m.encoder.run(state, m.encoder.num_layers())?;
                Ok(m.exit_logits(&state)?.to_vec2()?)
            }
            Engine::Onnx(e) => e.finish(states, from),
        }
    }

    /// Classification logits, one row per input.
    pub fn logits(&self, rows: &[&Encoded], pad_id: u32) -> Result<Vec<Vec<f32>>> {
        match self {
            Engine::Candle(m) => {
                let batch = Batch::new(rows, pad_id, &candle_core::Device::Cpu)?;
                Ok(m.logits(&batch)?.to_vec2()?)
            }
            Engine::Onnx(e) => e.logits(rows),
        }
    }
}

/// One thread per physical core this process may use: hyper-threads share a core's FMA units,
/// so a second thread per core only adds contention to matrix kernels. The smaller of the
/// CPUs available to the process (affinity, cgroup quota) and the physical cores in
/// `/proc/cpuinfo`.
pub fn default_threads() -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    match physical_cores() {
        Some(cores) if cores > 0 => available.min(cores),
        _ => available,
    }
}

fn physical_cores() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::HashSet::new();
    let mut package = None;
    for line in info.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "physical id" => package = Some(value.trim().to_string()),
            "core id" => {
                cores.insert((package.clone(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}
