//! Writes the ONNX graph of a BERT-family encoder from its weights.
//!
//! The graph is built in memory through ONNX Runtime's model editor API: no `.onnx` file, no
//! Python, no exporter. It is the standard post-norm encoder written with the fused operators
//! ONNX Runtime's CPU kernels run fastest: one Q/K/V matrix product per layer (the 1/√d
//! attention scale folded into the query weights) feeding `MultiHeadAttention` (padding mask and
//! MPNet's relative-position bias as inputs), `SkipLayerNormalization` for residual + bias +
//! layer norm, and `BiasGelu`/`FastGelu` for bias + activation. Linear weights are stored
//! pre-transposed (`[in, out]`) so ONNX Runtime pre-packs them once at session start.
//!
//! The linear layers go through [`super::quantize`], which writes them in f32 or int8; the
//! generic node-writing helpers are in [`super::editor`].

use candle_core::Tensor;
use ort::editor::{Graph, ONNX_DOMAIN};
use ort::operator::Attribute;
use ort::value::TensorElementType;

use super::calibrate::Calibration;
use super::editor::{candle_err, tensor_outlet, transposed, Editor};
use super::linear_roles::Linear;
use super::quantize::{Linears, Precision, Smoothing};
use crate::arch::weights::{EncoderWeights, HeadWeights, LayerWeights};
use crate::config::Activation;

/// Names of the graph's inputs and outputs.
pub(crate) mod io {
    /// `[b, t]` i64.
    pub const INPUT_IDS: &str = "input_ids";
    /// `[b, t]` i64; only when the model has token-type embeddings.
    pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
    /// `[b, t]` i64.
    pub const POSITION_IDS: &str = "position_ids";
    /// `[b, t]` i32: 1 for real tokens, 0 for padding.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// `[t, t]` i64 relative-position buckets; only MPNet.
    pub const RELATIVE_BUCKETS: &str = "relative_buckets";
    /// `[b, t, hidden]` f32: the token states after the graph's last layer.
    pub const HIDDEN: &str = "last_hidden_state";
    /// `[b, t, hidden]` f32: token states saved after an earlier layer, the input of a graph
    /// that continues from there (a rerank cascade's second stage).
    pub const HIDDEN_IN: &str = "hidden_states_in";
    /// `[b, labels]` f32.
    pub const LOGITS: &str = "logits";
}

/// What the graph needs to know besides the tensors.
pub(crate) struct GraphSpec<'a> {
    pub weights: &'a EncoderWeights,
    /// The layers the graph runs, as indices into `weights.layers`: `0..n` starts from the
    /// token ids; a later start reads [`io::HIDDEN_IN`], the states after layer `start`.
    pub layers: std::ops::Range<usize>,
    /// The head scoring after the last layer run: outputs [`io::LOGITS`].
    pub head: Option<&'a HeadWeights>,
    /// Output the token states after the last layer run ([`io::HIDDEN`]); always so without
    /// a head.
    pub hidden_output: bool,
    pub num_heads: usize,
    pub activation: Activation,
    pub precision: Precision,
    /// Channel maxima for int8 smoothing; `None` quantizes without smoothing.
    pub calibration: Option<&'a Calibration>,
    /// Output every linear layer's input as a probe output (f32 graphs, for calibration).
    pub probes: bool,
}

pub(crate) fn build(spec: &GraphSpec) -> ort::Result<Graph> {
    let mut e = Editor::new()?;
    let mut linears = Linears::new(spec.precision, spec.calibration, spec.probes);
    let w = spec.weights;
    let hidden = w.word_embeddings.dims()[1];

    let from_tokens = spec.layers.start == 0;
    let mut inputs = if from_tokens {
        vec![
            tensor_outlet(io::INPUT_IDS, TensorElementType::Int64, &["batch", "seq"]),
            tensor_outlet(
                io::POSITION_IDS,
                TensorElementType::Int64,
                &["batch", "seq"],
            ),
        ]
    } else {
        vec![tensor_outlet(
            io::HIDDEN_IN,
            TensorElementType::Float32,
            &["batch", "seq", "hidden"],
        )]
    };
    inputs.push(tensor_outlet(
        io::ATTENTION_MASK,
        TensorElementType::Int32,
        &["batch", "seq"],
    ));
    if from_tokens && w.token_type_embeddings.is_some() {
        inputs.push(tensor_outlet(
            io::TOKEN_TYPE_IDS,
            TensorElementType::Int64,
            &["batch", "seq"],
        ));
    }
    if w.relative_attention_bias.is_some() {
        inputs.push(tensor_outlet(
            io::RELATIVE_BUCKETS,
            TensorElementType::Int64,
            &["seq", "seq"],
        ));
    }
    e.graph.set_inputs(inputs)?;

    let mut x = if from_tokens {
        // Embeddings: word + position (+ token type), layer-normed.
        let word = e.constant_f32("word_embeddings", &w.word_embeddings)?;
        let pos = e.constant_f32("position_embeddings", &w.position_embeddings)?;
        let x_word = e.op("Gather", ONNX_DOMAIN, &[&word, io::INPUT_IDS], vec![])?;
        let x_pos = e.op("Gather", ONNX_DOMAIN, &[&pos, io::POSITION_IDS], vec![])?;
        let mut x = e.op("Add", ONNX_DOMAIN, &[&x_word, &x_pos], vec![])?;
        if let Some(tt) = &w.token_type_embeddings {
            let tt = e.constant_f32("token_type_embeddings", tt)?;
            let x_tt = e.op("Gather", ONNX_DOMAIN, &[&tt, io::TOKEN_TYPE_IDS], vec![])?;
            x = e.op("Add", ONNX_DOMAIN, &[&x, &x_tt], vec![])?;
        }
        e.layer_norm(&x, &w.embedding_norm)?
    } else {
        io::HIDDEN_IN.to_owned()
    };

    // MPNet: one `[1, heads, t, t]` position bias shared by every layer.
    let position_bias = match &w.relative_attention_bias {
        Some(table) => {
            let table = e.constant_f32("relative_attention_bias", table)?;
            let per_pair = e.op(
                "Gather",
                ONNX_DOMAIN,
                &[&table, io::RELATIVE_BUCKETS],
                vec![],
            )?;
            let heads_first = e.op(
                "Transpose",
                ONNX_DOMAIN,
                &[&per_pair],
                vec![Attribute::new("perm", vec![2i64, 0, 1])?],
            )?;
            let axes = e.constant_i64("axis0", &[1], &[0])?;
            Some(e.op("Unsqueeze", ONNX_DOMAIN, &[&heads_first, &axes], vec![])?)
        }
        None => None,
    };
    // "" leaves MultiHeadAttention's optional bias input empty.
    let position_bias = position_bias.unwrap_or_default();

    let layer_shape = LayerShape {
        head_dim: hidden / spec.num_heads,
        qkv_split: e.constant_i64("qkv_split", &[3], &[hidden as i64; 3])?,
        activation: spec.activation,
    };
    for (i, layer) in w.layers[spec.layers.clone()]
        .iter()
        .enumerate()
        .map(|(i, l)| (spec.layers.start + i, l))
    {
        x = encoder_layer(
            &mut e,
            &mut linears,
            i,
            &x,
            layer,
            &position_bias,
            &layer_shape,
        )?;
    }

    let mut outputs = Vec::new();
    if spec.head.is_none() || spec.hidden_output {
        e.rename(&x, io::HIDDEN)?;
        outputs.push(tensor_outlet(
            io::HIDDEN,
            TensorElementType::Float32,
            &["batch", "seq", "hidden"],
        ));
    }
    if let Some(head) = spec.head {
        let zero = e.constant_i64("first_token", &[], &[0])?;
        let first = e.op(
            "Gather",
            ONNX_DOMAIN,
            &[&x, &zero],
            vec![Attribute::new("axis", 1i64)?],
        )?;
        let pooled = e.gemm(&first, &head.dense)?;
        let pooled = e.op("Tanh", ONNX_DOMAIN, &[&pooled], vec![])?;
        let logits = e.gemm(&pooled, &head.out)?;
        e.rename(&logits, io::LOGITS)?;
        outputs.push(tensor_outlet(
            io::LOGITS,
            TensorElementType::Float32,
            &["batch", "labels"],
        ));
    }
    outputs.extend(linears.take_probes());
    e.graph.set_outputs(outputs)?;
    Ok(e.graph)
}

/// What every layer of one encoder shares.
struct LayerShape {
    head_dim: usize,
    /// `[3]` i64 initializer: the Q/K/V widths the fused product is split into.
    qkv_split: String,
    activation: Activation,
}

/// One post-norm transformer layer: fused Q/K/V, attention, output projection with
/// residual + layer norm, feed-forward with residual + layer norm.
fn encoder_layer(
    e: &mut Editor,
    linears: &mut Linears,
    index: usize,
    x: &str,
    l: &LayerWeights,
    position_bias: &str,
    shape: &LayerShape,
) -> ort::Result<String> {
    // int8: the attention output's smoothing divisors go into V's output channels, which
    // the attention-weighted context inherits channel for channel; no scaling pass needed.
    let hidden = l.query.weight.dims()[0];
    let attention_out = transposed(&l.attention_output.weight)?;
    let attention_out_dim = l.attention_output.weight.dims()[0];
    let out_smooth = linears.smoothing(
        index,
        Linear::AttentionOutput,
        &attention_out,
        attention_out_dim,
    );
    let (value_weight, value_bias) = match &out_smooth {
        Some(s) => {
            let s = Tensor::from_slice(s, hidden, &candle_core::Device::Cpu).map_err(candle_err)?;
            let weight = l
                .value
                .weight
                .broadcast_div(&s.unsqueeze(1).map_err(candle_err)?)
                .map_err(candle_err)?;
            let bias = match &l.value.bias {
                Some(b) => Some(b.div(&s).map_err(candle_err)?),
                None => None,
            };
            (weight, bias)
        }
        None => (l.value.weight.clone(), l.value.bias.clone()),
    };

    // Q, K, V as one product; the attention scale is folded into Q.
    let scale = 1.0 / (shape.head_dim as f64).sqrt();
    let qkv_weight = Tensor::cat(
        &[
            (&l.query.weight * scale).map_err(candle_err)?,
            l.key.weight.clone(),
            value_weight,
        ],
        0,
    )
    .map_err(candle_err)?;
    let zeros = || Tensor::zeros(hidden, candle_core::DType::F32, &candle_core::Device::Cpu);
    let qkv_bias = Tensor::cat(
        &[
            match &l.query.bias {
                Some(b) => (b * scale).map_err(candle_err)?,
                None => zeros().map_err(candle_err)?,
            },
            l.key
                .bias
                .clone()
                .map_or_else(zeros, Ok)
                .map_err(candle_err)?,
            value_bias.map_or_else(zeros, Ok).map_err(candle_err)?,
        ],
        0,
    )
    .map_err(candle_err)?;
    let qkv = linears.matmul(e, index, x, &qkv_weight, Linear::Qkv)?;
    let qkv = e.split(&qkv, &shape.qkv_split, 3, 2)?;
    let bias = e.constant_f32("qkv_bias", &qkv_bias)?;
    let ctx = e.op(
        "MultiHeadAttention",
        super::editor::MS_DOMAIN,
        &[
            &qkv[0],
            &qkv[1],
            &qkv[2],
            &bias,
            io::ATTENTION_MASK,
            position_bias,
        ],
        vec![
            Attribute::new("num_heads", (hidden / shape.head_dim) as i64)?,
            // Already folded into the query weights.
            Attribute::new("scale", 1.0f32)?,
        ],
    )?;

    let smooth = match &out_smooth {
        Some(s) => Smoothing::Folded(s),
        None => Smoothing::None,
    };
    let attended = linears.linear(
        e,
        index,
        &ctx,
        attention_out,
        (hidden, attention_out_dim),
        Linear::AttentionOutput,
        smooth,
    )?;
    let x1 = e.skip_layer_norm(
        &attended,
        x,
        l.attention_output.bias.as_ref(),
        &l.attention_norm,
    )?;

    let inner = linears.matmul(e, index, &x1, &l.intermediate.weight, Linear::FfnIn)?;
    let inner = e.activate(&inner, l.intermediate.bias.as_ref(), shape.activation)?;
    let out = linears.matmul(e, index, &inner, &l.output.weight, Linear::FfnOut)?;
    e.skip_layer_norm(&out, &x1, l.output.bias.as_ref(), &l.output_norm)
}
