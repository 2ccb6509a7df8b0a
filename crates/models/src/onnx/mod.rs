//! The ONNX Runtime engine: the same encoders run by ONNX Runtime's CPU kernels.
//!
//! Why a second engine: on CPU, ONNX Runtime's matrix kernels (MLAS) and fused transformer
//! operators run BERT-family models about twice as fast as candle (measured in
//! docs/performance.md, where the decision is written down). sift writes the graph itself from
//! the checkpoint's weights ([`encoder`]), so nothing is exported or converted ahead of time and
//! any model directory sift can load runs on either engine. The runtime is loaded at run time
//! from `libonnxruntime.so` (the one inside the PyPI `onnxruntime` wheel, fetched by
//! `scripts/setup.sh`); without it sift falls back to candle.

mod calibrate;
mod editor;
mod encoder;
mod linear_roles;
mod quantize;
mod runtime;

use std::sync::Mutex;

use candle_core::{Device, Tensor};
use ort::session::Session;
use ort::value::Tensor as OrtTensor;

use crate::arch::weights::{EncoderWeights, HeadWeights};
use crate::arch::{position_ids, relative_buckets, Transformer};
use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::tokenize::Encoded;

pub use quantize::Precision;
pub use runtime::{runtime_library, RuntimeLibrary};

/// One model compiled into an ONNX Runtime session.
pub struct OnnxEncoder {
    session: Mutex<Session>,
    precision: Precision,
    feeds: Feeds,
}

/// What turns a batch of token rows into the graph's inputs.
struct Feeds {
    config: ModelConfig,
    position_offset: usize,
    pad_position: u32,
    has_token_types: bool,
    relative: bool,
}

impl OnnxEncoder {
    /// Builds the graph from a loaded candle network (its weights are copied; the network can
    /// be dropped afterwards). `with_head` selects logits instead of token states as output.
    /// Int8 first runs the f32 graph over `calibration` (token rows shaped like the model's real
    /// inputs) to measure its activations; f32 ignores it.
    pub fn from_transformer(
        model: &Transformer,
        with_head: bool,
        precision: Precision,
        threads: usize,
        calibration: &[Encoded],
    ) -> Result<Self> {
        let weights: EncoderWeights = model.encoder.weights();
        let head: Option<HeadWeights> = if with_head {
            Some(
                model
                    .head
                    .as_ref()
                    .ok_or_else(|| {
                        ModelError::Internal("model was loaded without its head".into())
                    })?
                    .weights(),
            )
        } else {
            None
        };
        let feeds = Feeds {
            config: model.config.clone(),
            position_offset: weights.position_offset,
            pad_position: weights.pad_position,
            has_token_types: weights.token_type_embeddings.is_some(),
            relative: weights.relative_attention_bias.is_some(),
        };
        let mut spec = encoder::GraphSpec {
            weights: &weights,
            head: head.as_ref(),
            num_heads: model.config.num_heads,
            activation: model.config.activation,
            precision,
            calibration: None,
            probes: false,
        };
        let calibrated = match precision {
            Precision::F32 => None,
            Precision::Int8 => Some(calibrate(&spec, &feeds, threads, calibration)?),
        };
        spec.calibration = calibrated.as_ref();
        let session = runtime::session(&spec, threads)?;
        Ok(OnnxEncoder {
            session: Mutex::new(session),
            precision,
            feeds,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Token states `[b, t, hidden]` and the padded batch they belong to (for pooling).
    pub fn hidden_states(&self, rows: &[&Encoded]) -> Result<(Tensor, Batch)> {
        let batch = Batch::new(rows, self.feeds.config.pad_token_id, &Device::Cpu)?;
        let (dims, data) = self.run(rows, &batch, encoder::io::HIDDEN)?;
        let hidden = Tensor::from_vec(data, dims, &Device::Cpu)?;
        Ok((hidden, batch))
    }

    /// Classification logits, one row per input.
    pub fn logits(&self, rows: &[&Encoded]) -> Result<Vec<Vec<f32>>> {
        let batch = Batch::new(rows, self.feeds.config.pad_token_id, &Device::Cpu)?;
        let (dims, data) = self.run(rows, &batch, encoder::io::LOGITS)?;
        let labels = dims.last().copied().unwrap_or(1).max(1);
        Ok(data.chunks(labels).map(<[f32]>::to_vec).collect())
    }

    fn run(
        &self,
        rows: &[&Encoded],
        batch: &Batch,
        output: &str,
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let mut session = self.session.lock().map_err(|_| {
            ModelError::Internal("ONNX Runtime session poisoned by an earlier panic".into())
        })?;
        let mut out = self.feeds.run(&mut session, rows, batch, &[output])?;
        Ok(out.remove(0))
    }
}

impl Feeds {
    /// Runs `session` on the padded `batch` of `rows`; returns the named outputs as
    /// (dims, row-major data), in order.
    fn run(
        &self,
        session: &mut Session,
        rows: &[&Encoded],
        batch: &Batch,
        outputs: &[&str],
    ) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let (b, t) = (batch.size(), batch.seq_len());
        let mut ids = vec![self.config.pad_token_id as i64; b * t];
        let mut types = vec![0i64; b * t];
        let mut mask = vec![0i32; b * t];
        for (r, e) in rows.iter().enumerate() {
            let base = r * t;
            for (j, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                ids[base + j] = id as i64;
                types[base + j] = ty as i64;
                mask[base + j] = 1;
            }
        }
        let positions: Vec<i64> =
            position_ids(&batch.lengths, t, self.position_offset, self.pad_position)
                .into_iter()
                .map(i64::from)
                .collect();
        let shape = vec![b as i64, t as i64];
        let mut inputs: Vec<(&str, ort::session::SessionInputValue)> = vec![
            (
                encoder::io::INPUT_IDS,
                OrtTensor::from_array((shape.clone(), ids))
                    .map_err(ort_err)?
                    .into(),
            ),
            (
                encoder::io::POSITION_IDS,
                OrtTensor::from_array((shape.clone(), positions))
                    .map_err(ort_err)?
                    .into(),
            ),
        ];
        inputs.push((
            encoder::io::ATTENTION_MASK,
            OrtTensor::from_array((vec![b as i64, t as i64], mask))
                .map_err(ort_err)?
                .into(),
        ));
        if self.has_token_types {
            inputs.push((
                encoder::io::TOKEN_TYPE_IDS,
                OrtTensor::from_array((shape, types))
                    .map_err(ort_err)?
                    .into(),
            ));
        }
        if self.relative {
            let buckets: Vec<i64> = relative_buckets(t, self.config.relative_attention_num_buckets)
                .into_iter()
                .map(i64::from)
                .collect();
            inputs.push((
                encoder::io::RELATIVE_BUCKETS,
                OrtTensor::from_array((vec![t as i64, t as i64], buckets))
                    .map_err(ort_err)?
                    .into(),
            ));
        }
        let results = session.run(inputs).map_err(ort_err)?;
        outputs
            .iter()
            .map(|&name| {
                let value = results
                    .get(name)
                    .ok_or_else(|| ModelError::Runtime(format!("graph has no output {name}")))?;
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
                Ok((shape.iter().map(|&d| d as usize).collect(), data.to_vec()))
            })
            .collect()
    }
}

/// Runs `spec`'s network in f32, with probes, over the calibration rows and returns the input
/// channel maxima of every linear layer.
fn calibrate(
    spec: &encoder::GraphSpec,
    feeds: &Feeds,
    threads: usize,
    rows: &[Encoded],
) -> Result<calibrate::Calibration> {
    if rows.is_empty() {
        return Err(ModelError::Internal(
            "int8 needs calibration text and none was given".into(),
        ));
    }
    let probe_spec = encoder::GraphSpec {
        head: None,
        precision: Precision::F32,
        calibration: None,
        probes: true,
        ..*spec
    };
    let mut session = runtime::session(&probe_spec, threads)?;
    let layers = spec.weights.layers.len();
    let names: Vec<String> = (0..layers)
        .flat_map(|l| {
            (0..linear_roles::LINEAR_ROLES).map(move |r| linear_roles::probe_output(l, r))
        })
        .collect();
    let mut wanted: Vec<&str> = vec![encoder::io::HIDDEN];
    wanted.extend(names.iter().map(String::as_str));
    let mut calibration = calibrate::Calibration::new(layers);
    // Small batches keep the probe outputs (every layer's activations) a few MiB.
    for chunk in rows.chunks(8) {
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let batch = Batch::new(&refs, feeds.config.pad_token_id, &Device::Cpu)?;
        let outputs = feeds.run(&mut session, &refs, &batch, &wanted)?;
        for (i, (_, data)) in outputs.iter().skip(1).enumerate() {
            let (layer, role) = (
                i / linear_roles::LINEAR_ROLES,
                i % linear_roles::LINEAR_ROLES,
            );
            calibration.observe(layer, role, data, batch.seq_len(), &batch.lengths);
        }
    }
    Ok(calibration)
}

pub(crate) fn ort_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Runtime(e.to_string())
}
