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

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use ort::session::Session;
use ort::value::Tensor as OrtTensor;

use crate::arch::weights::{EncoderWeights, HeadWeights};
use crate::arch::{position_ids, relative_buckets, Transformer};
use crate::batch::{Batch, SavedStates};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::tokenize::Encoded;

pub use quantize::Precision;
pub use runtime::{runtime_library, RuntimeLibrary};

/// One model compiled into an ONNX Runtime session.
pub struct OnnxEncoder {
    /// The graph plain calls run: every layer, then the last head (or the token states).
    session: Mutex<Session>,
    precision: Precision,
    feeds: Feeds,
    /// What another graph of the same weights needs (a layerwise model's exits, a cascade's
    /// stages).
    parts: GraphParts,
    /// Those graphs, compiled on first use: a layerwise model's callers use one or two exits,
    /// so compiling all of them at load would cost time and memory for nothing.
    partial: Mutex<HashMap<PartialGraph, Session>>,
}

/// The weights and settings every graph of one model is built from.
struct GraphParts {
    weights: EncoderWeights,
    /// Every exit's head by layer (counted from 1), the last layer's included; empty without a
    /// head.
    heads: BTreeMap<usize, HeadWeights>,
    num_heads: usize,
    activation: crate::config::Activation,
    threads: usize,
    /// Int8: the activations measured once on the whole model; layer `i` sees the same inputs
    /// in every graph that runs it, so every graph reuses them.
    calibration: Option<calibrate::Calibration>,
}

/// A graph running part of the layers, by what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PartialGraph {
    /// Layers run before it (0: it starts from the token ids).
    from: usize,
    /// Its last layer, counted from 1; the head of that layer scores.
    until: usize,
    /// It also outputs the token states after `until`.
    states: bool,
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
        let heads: BTreeMap<usize, HeadWeights> = match &head {
            Some(last) => model
                .exits
                .iter()
                .map(|(&layer, h)| (layer, h.weights()))
                .chain([(weights.layers.len(), last.clone())])
                .collect(),
            None => BTreeMap::new(),
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
            layers: 0..weights.layers.len(),
            head: head.as_ref(),
            hidden_output: false,
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
        let parts = GraphParts {
            num_heads: model.config.num_heads,
            activation: model.config.activation,
            threads,
            calibration: calibrated,
            heads,
            weights,
        };
        Ok(OnnxEncoder {
            session: Mutex::new(session),
            precision,
            feeds,
            parts,
            partial: Mutex::new(HashMap::new()),
        })
    }

    /// Logits of the head after layer `exit` (counted from 1), running only the layers up to
    /// it.
    pub fn logits_at(&self, rows: &[&Encoded], exit: usize) -> Result<Vec<Vec<f32>>> {
        if exit == self.parts.weights.layers.len() {
            return self.logits(rows);
        }
        let batch = Batch::new(rows, self.feeds.config.pad_token_id, &Device::Cpu)?;
        let graph = PartialGraph {
            from: 0,
            until: exit,
            states: false,
        };
        let mut out = self.run_partial(graph, |feeds, session| {
            feeds.run(session, rows, &batch, &[encoder::io::LOGITS])
        })?;
        Ok(logit_rows(out.remove(0)))
    }

    /// Logits of the head after layer `exit` and the token states there, for a cascade's
    /// second stage ([`OnnxEncoder::finish`]).
    pub fn exit_states(
        &self,
        rows: &[&Encoded],
        exit: usize,
    ) -> Result<(Vec<Vec<f32>>, SavedStates)> {
        let batch = Batch::new(rows, self.feeds.config.pad_token_id, &Device::Cpu)?;
        let graph = PartialGraph {
            from: 0,
            until: exit,
            states: true,
        };
        let mut out = self.run_partial(graph, |feeds, session| {
            feeds.run(
                session,
                rows,
                &batch,
                &[encoder::io::LOGITS, encoder::io::HIDDEN],
            )
        })?;
        let (dims, data) = out.remove(1);
        let dims: [usize; 3] = dims
            .try_into()
            .map_err(|_| ModelError::Internal("token states are not [b, t, hidden]".into()))?;
        let states = SavedStates {
            dims,
            data,
            lengths: batch.lengths.clone(),
        };
        Ok((logit_rows(out.remove(0)), states))
    }

    /// Runs the layers after `from` over saved token states and scores with the last head.
    pub fn finish(&self, states: &SavedStates, from: usize) -> Result<Vec<Vec<f32>>> {
        let graph = PartialGraph {
            from,
            until: self.parts.weights.layers.len(),
            states: false,
        };
        let mut out = self.run_partial(graph, |feeds, session| {
            feeds.run_states(session, states, &[encoder::io::LOGITS])
        })?;
        Ok(logit_rows(out.remove(0)))
    }

    fn run_partial(
        &self,
        graph: PartialGraph,
        run: impl FnOnce(&Feeds, &mut Session) -> Result<Vec<(Vec<usize>, Vec<f32>)>>,
    ) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let layers = self.parts.weights.layers.len();
        let head = self.parts.heads.get(&graph.until).ok_or_else(|| {
            ModelError::InvalidInput(format!(
                "the model has no head after layer {} (exits: {:?})",
                graph.until,
                self.parts.heads.keys().collect::<Vec<_>>()
            ))
        })?;
        if graph.from >= graph.until || graph.until > layers {
            return Err(ModelError::Internal(format!(
                "no graph runs layers {}..{} of {layers}",
                graph.from, graph.until
            )));
        }
        let mut sessions = self.partial.lock().map_err(|_| {
            ModelError::Internal("ONNX Runtime session poisoned by an earlier panic".into())
        })?;
        let session = match sessions.entry(graph) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let spec = encoder::GraphSpec {
                    weights: &self.parts.weights,
                    layers: graph.from..graph.until,
                    head: Some(head),
                    hidden_output: graph.states,
                    num_heads: self.parts.num_heads,
                    activation: self.parts.activation,
                    precision: self.precision,
                    calibration: self.parts.calibration.as_ref(),
                    probes: false,
                };
                v.insert(runtime::session(&spec, self.parts.threads)?)
            }
        };
        run(&self.feeds, session)
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
        Ok(logit_rows(self.run(rows, &batch, encoder::io::LOGITS)?))
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

/// `[b, labels]` logits as one row per input.
fn logit_rows((dims, data): (Vec<usize>, Vec<f32>)) -> Vec<Vec<f32>> {
    let labels = dims.last().copied().unwrap_or(1).max(1);
    data.chunks(labels).map(<[f32]>::to_vec).collect()
}

impl Feeds {
    /// Runs a graph that continues from saved token states.
    fn run_states(
        &self,
        session: &mut Session,
        states: &SavedStates,
        outputs: &[&str],
    ) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let [b, t, h] = states.dims;
        let mut mask = vec![0i32; b * t];
        for (r, &len) in states.lengths.iter().enumerate() {
            mask[r * t..r * t + len.min(t)].fill(1);
        }
        let mut inputs: Vec<(&str, ort::session::SessionInputValue)> = vec![
            (
                encoder::io::HIDDEN_IN,
                OrtTensor::from_array((vec![b as i64, t as i64, h as i64], states.data.clone()))
                    .map_err(ort_err)?
                    .into(),
            ),
            (
                encoder::io::ATTENTION_MASK,
                OrtTensor::from_array((vec![b as i64, t as i64], mask))
                    .map_err(ort_err)?
                    .into(),
            ),
        ];
        if self.relative {
            inputs.push(self.relative_buckets(t)?);
        }
        let results = session.run(inputs).map_err(ort_err)?;
        extract(&results, outputs)
    }

    fn relative_buckets(
        &self,
        t: usize,
    ) -> Result<(&'static str, ort::session::SessionInputValue<'static>)> {
        let buckets: Vec<i64> = relative_buckets(t, self.config.relative_attention_num_buckets)
            .into_iter()
            .map(i64::from)
            .collect();
        Ok((
            encoder::io::RELATIVE_BUCKETS,
            OrtTensor::from_array((vec![t as i64, t as i64], buckets))
                .map_err(ort_err)?
                .into(),
        ))
    }

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
            inputs.push(self.relative_buckets(t)?);
        }
        let results = session.run(inputs).map_err(ort_err)?;
        extract(&results, outputs)
    }
}

/// The named outputs as (dims, row-major data), in order.
fn extract(
    results: &ort::session::SessionOutputs,
    outputs: &[&str],
) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
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
        layers: spec.layers.clone(),
        head: None,
        hidden_output: true,
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
