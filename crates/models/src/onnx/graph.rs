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
//! With [`Precision::Int8`] every linear layer of every transformer layer runs in int8: weights
//! smoothed by the calibrated per-channel divisors ([`super::calibrate`]) and quantized here,
//! symmetrically per output column; activations quantized per token row at run time
//! (`ReduceMax`/`ReduceMin` for the row's range, then `QuantizeLinear` with one block per row);
//! the integer product and its rescaling by ONNX Runtime's `MatMulIntegerToFloat`. Embeddings,
//! layer norms, attention and the classification head stay f32.
//!
//! Why per row: ONNX Runtime's `DynamicQuantizeMatMul` gives a whole activation tensor one
//! uint8 scale, and in BERT-family encoders a few tokens (`[CLS]`, `[SEP]`, punctuation) carry
//! activations tens of times larger than the rest, which leaves ordinary tokens a handful of
//! levels (docs/quality.md measures the cost). With [`GraphSpec::probes`] the f32 graph also
//! outputs the input of every linear layer, which is how the calibration pass observes them.

use candle_core::Tensor;
use ort::editor::{Graph, Node, ONNX_DOMAIN};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::value::{Outlet, Tensor as OrtTensor};
use ort::value::{Shape, SymbolicDimensions, TensorElementType, ValueType};

use super::calibrate::{smoothing, Calibration};
use super::linear_roles::Linear;
use crate::arch::weights::{EncoderWeights, HeadWeights, LayerWeights, LinearWeights, NormWeights};
use crate::config::Activation;

/// Numeric format of the encoder's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// int8 weights (per output column), int8 activations (per token row), both after
    /// calibrated SmoothQuant channel scaling.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

pub(crate) const MS_DOMAIN: &str = "com.microsoft";

/// ONNX operator set of the graph: 21 for `QuantizeLinear`'s `block_size`, which is how the
/// int8 route gets one scale per token row.
pub(crate) const ONNX_OPSET: u32 = 21;

/// The uint8 code of 0.0 for activations: codes are `round(x / scale) + 128`, symmetric so the
/// row scale alone describes the row.
const ACTIVATION_ZERO_POINT: u8 = 128;

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
    /// `[b, t, hidden]` f32.
    pub const HIDDEN: &str = "last_hidden_state";
    /// `[b, labels]` f32.
    pub const LOGITS: &str = "logits";

    /// `[b, t, in]` f32: the input of linear `role` in layer `layer`; only in probe graphs.
    pub fn probe(layer: usize, role: usize) -> String {
        format!("probe_{layer}_{role}")
    }
}

/// What the graph needs to know besides the tensors.
pub(crate) struct GraphSpec<'a> {
    pub weights: &'a EncoderWeights,
    pub head: Option<&'a HeadWeights>,
    pub num_heads: usize,
    pub activation: Activation,
    pub precision: Precision,
    /// Channel maxima for int8 smoothing; `None` quantizes without smoothing.
    pub calibration: Option<&'a Calibration>,
    /// Output every linear layer's input as [`io::probe`] (f32 graphs, for calibration).
    pub probes: bool,
}

pub(crate) fn build(spec: &GraphSpec) -> ort::Result<Graph> {
    let mut g = Builder {
        graph: Graph::new()?,
        next: 0,
        precision: spec.precision,
        calibration: spec.calibration,
        probes: spec.probes.then(Vec::new),
        layer: 0,
        row_zero_points: None,
    };
    let w = spec.weights;
    let hidden = w.word_embeddings.dims()[1];

    let mut inputs = vec![
        dyn_input(io::INPUT_IDS, TensorElementType::Int64, &["batch", "seq"]),
        dyn_input(
            io::POSITION_IDS,
            TensorElementType::Int64,
            &["batch", "seq"],
        ),
        dyn_input(
            io::ATTENTION_MASK,
            TensorElementType::Int32,
            &["batch", "seq"],
        ),
    ];
    if w.token_type_embeddings.is_some() {
        inputs.push(dyn_input(
            io::TOKEN_TYPE_IDS,
            TensorElementType::Int64,
            &["batch", "seq"],
        ));
    }
    if w.relative_attention_bias.is_some() {
        inputs.push(dyn_input(
            io::RELATIVE_BUCKETS,
            TensorElementType::Int64,
            &["seq", "seq"],
        ));
    }
    g.graph.set_inputs(inputs)?;

    // Embeddings: word + position (+ token type), layer-normed.
    let word = g.constant_f32("word_embeddings", &w.word_embeddings)?;
    let pos = g.constant_f32("position_embeddings", &w.position_embeddings)?;
    let x_word = g.op("Gather", ONNX_DOMAIN, &[&word, io::INPUT_IDS], vec![])?;
    let x_pos = g.op("Gather", ONNX_DOMAIN, &[&pos, io::POSITION_IDS], vec![])?;
    let mut x = g.op("Add", ONNX_DOMAIN, &[&x_word, &x_pos], vec![])?;
    if let Some(tt) = &w.token_type_embeddings {
        let tt = g.constant_f32("token_type_embeddings", tt)?;
        let x_tt = g.op("Gather", ONNX_DOMAIN, &[&tt, io::TOKEN_TYPE_IDS], vec![])?;
        x = g.op("Add", ONNX_DOMAIN, &[&x, &x_tt], vec![])?;
    }
    x = g.layer_norm(&x, &w.embedding_norm)?;

    // MPNet: one `[1, heads, t, t]` position bias shared by every layer.
    let position_bias = match &w.relative_attention_bias {
        Some(table) => {
            let table = g.constant_f32("relative_attention_bias", table)?;
            let per_pair = g.op(
                "Gather",
                ONNX_DOMAIN,
                &[&table, io::RELATIVE_BUCKETS],
                vec![],
            )?;
            let heads_first = g.op(
                "Transpose",
                ONNX_DOMAIN,
                &[&per_pair],
                vec![Attribute::new("perm", vec![2i64, 0, 1])?],
            )?;
            let axes = g.constant_i64("axis0", &[1], &[0])?;
            Some(g.op("Unsqueeze", ONNX_DOMAIN, &[&heads_first, &axes], vec![])?)
        }
        None => None,
    };
    // "" leaves MultiHeadAttention's optional bias input empty.
    let position_bias = position_bias.unwrap_or_default();

    let head_dim = hidden / spec.num_heads;
    let shapes = Shapes {
        qkv_split: g.constant_i64("qkv_split", &[3], &[hidden as i64; 3])?,
    };
    for (i, layer) in w.layers.iter().enumerate() {
        g.layer = i;
        x = g.layer(
            &x,
            layer,
            &position_bias,
            &shapes,
            head_dim,
            spec.activation,
        )?;
    }

    let output = match spec.head {
        None => {
            g.rename(&x, io::HIDDEN)?;
            dyn_input(
                io::HIDDEN,
                TensorElementType::Float32,
                &["batch", "seq", "hidden"],
            )
        }
        Some(head) => {
            let zero = g.constant_i64("first_token", &[], &[0])?;
            let first = g.op(
                "Gather",
                ONNX_DOMAIN,
                &[&x, &zero],
                vec![Attribute::new("axis", 1i64)?],
            )?;
            let pooled = g.gemm(&first, &head.dense)?;
            let pooled = g.op("Tanh", ONNX_DOMAIN, &[&pooled], vec![])?;
            let logits = g.gemm(&pooled, &head.out)?;
            g.rename(&logits, io::LOGITS)?;
            dyn_input(io::LOGITS, TensorElementType::Float32, &["batch", "labels"])
        }
    };
    let mut outputs = vec![output];
    outputs.extend(g.probes.take().unwrap_or_default());
    g.graph.set_outputs(outputs)?;
    Ok(g.graph)
}

fn dyn_input(name: &str, ty: TensorElementType, dims: &[&str]) -> Outlet {
    let shape: Vec<i64> = dims
        .iter()
        .map(|d| d.parse::<i64>().unwrap_or(-1))
        .collect();
    let symbols = dims.iter().map(|d| {
        if d.parse::<i64>().is_ok() {
            String::new()
        } else {
            d.to_string()
        }
    });
    Outlet::new(
        name,
        ValueType::Tensor {
            ty,
            shape: Shape::new(shape),
            dimension_symbols: SymbolicDimensions::new(symbols),
        },
    )
}

struct Shapes {
    qkv_split: String,
}

/// How an int8 linear layer's input is smoothed (see [`super::calibrate`]).
#[derive(Clone, Copy)]
enum Smoothing<'s> {
    None,
    /// Divide input channel `j` by `s[j]` in the graph; weight row `j` is multiplied by it.
    Input(&'s [f32]),
    /// The producer of the input already divided channel `j` by `s[j]`; only the weight
    /// row is multiplied.
    Folded(&'s [f32]),
}

struct Builder<'a> {
    graph: Graph,
    next: usize,
    precision: Precision,
    calibration: Option<&'a Calibration>,
    /// Probe outputs declared so far, when probing.
    probes: Option<Vec<Outlet>>,
    /// Index of the transformer layer being written.
    layer: usize,
    /// `[b, t, 1]` of [`ACTIVATION_ZERO_POINT`], made once and shared by every int8 layer.
    row_zero_points: Option<String>,
}

impl Builder<'_> {
    fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }

    /// Adds a node with one output and returns the output's name.
    fn op(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
    ) -> ort::Result<String> {
        let out = self.fresh(op);
        let node = Node::new(
            op,
            domain,
            format!("{out}_node"),
            inputs,
            [&out],
            attributes,
        )?;
        self.graph.add_node(node)?;
        Ok(out)
    }

    fn rename(&mut self, from: &str, to: &str) -> ort::Result<()> {
        let node = Node::new(
            "Identity",
            ONNX_DOMAIN,
            format!("{to}_node"),
            [from],
            [to],
            [],
        )?;
        self.graph.add_node(node)
    }

    fn constant_f32(&mut self, stem: &str, t: &Tensor) -> ort::Result<String> {
        let dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
        let data = to_vec(t)?;
        self.constant(stem, &dims, &data)
    }

    fn constant_raw_f32(
        &mut self,
        stem: &str,
        dims: &[i64],
        data: Vec<f32>,
    ) -> ort::Result<String> {
        self.constant(stem, dims, &data)
    }

    fn constant_i64(&mut self, stem: &str, dims: &[i64], data: &[i64]) -> ort::Result<String> {
        self.constant(stem, dims, data)
    }

    /// An initializer; ONNX Runtime needs it in memory it allocated, so `data` is copied there.
    fn constant<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Copy>(
        &mut self,
        stem: &str,
        dims: &[i64],
        data: &[T],
    ) -> ort::Result<String> {
        let name = self.fresh(stem);
        let mut value = OrtTensor::<T>::new(&Allocator::default(), dims.to_vec())?;
        value.extract_tensor_mut().1.copy_from_slice(data);
        self.graph.add_initializer(&name, value, false)?;
        Ok(name)
    }

    fn layer_norm(&mut self, x: &str, n: &NormWeights) -> ort::Result<String> {
        let gamma = self.constant_f32("ln_weight", &n.weight)?;
        let beta = self.constant_f32("ln_bias", &n.bias)?;
        self.op(
            "LayerNormalization",
            ONNX_DOMAIN,
            &[x, &gamma, &beta],
            vec![
                Attribute::new("axis", -1i64)?,
                Attribute::new("epsilon", n.eps as f32)?,
            ],
        )
    }

    /// `LN(x + skip + bias)` in one kernel.
    fn skip_layer_norm(
        &mut self,
        x: &str,
        skip: &str,
        bias: Option<&Tensor>,
        n: &NormWeights,
    ) -> ort::Result<String> {
        let gamma = self.constant_f32("ln_weight", &n.weight)?;
        let beta = self.constant_f32("ln_bias", &n.bias)?;
        let mut inputs = vec![x.to_string(), skip.to_string(), gamma, beta];
        if let Some(b) = bias {
            inputs.push(self.constant_f32("bias", b)?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.op(
            "SkipLayerNormalization",
            MS_DOMAIN,
            &refs,
            vec![Attribute::new("epsilon", n.eps as f32)?],
        )
    }

    /// `x · Wᵀ` with `weight` given as `[out, in]`; f32 `MatMul`, or the int8 route by
    /// precision. The bias is left to the caller's fused op.
    fn matmul(&mut self, x: &str, weight_out_in: &Tensor, kind: Linear) -> ort::Result<String> {
        let (out_dim, in_dim) = weight_out_in.dims2().map_err(candle_err)?;
        let w_in_out = transposed(weight_out_in)?;
        let smooth = match (self.precision, self.calibration) {
            (Precision::Int8, Some(c)) => Some(smoothing(
                &c.layers[self.layer][kind as usize],
                &w_in_out,
                out_dim,
            )),
            _ => None,
        };
        let smooth = match &smooth {
            Some(s) => Smoothing::Input(s),
            None => Smoothing::None,
        };
        self.linear(x, w_in_out, (in_dim, out_dim), kind, smooth)
    }

    /// `x · W` for `w_in_out` stored `[in, out]` row-major, smoothed as `smooth` says.
    fn linear(
        &mut self,
        x: &str,
        mut w_in_out: Vec<f32>,
        (in_dim, out_dim): (usize, usize),
        kind: Linear,
        smooth: Smoothing,
    ) -> ort::Result<String> {
        if self.probes.is_some() {
            let name = io::probe(self.layer, kind as usize);
            self.rename(x, &name)?;
            let probe = dyn_input(
                &name,
                TensorElementType::Float32,
                &["batch", "seq", &in_dim.to_string()],
            );
            self.probes.get_or_insert_with(Vec::new).push(probe);
        }
        if self.precision == Precision::F32 {
            let w = self.constant_raw_f32("weight", &[in_dim as i64, out_dim as i64], w_in_out)?;
            return self.op("MatMul", ONNX_DOMAIN, &[x, &w], vec![]);
        }
        if let Smoothing::Input(smooth) | Smoothing::Folded(smooth) = smooth {
            for (row, s) in w_in_out.chunks_exact_mut(out_dim).zip(smooth) {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        let x = match smooth {
            Smoothing::Input(smooth) => {
                let inv: Vec<f32> = smooth.iter().map(|s| 1.0 / s).collect();
                let inv = self.constant_raw_f32("inv_smooth", &[in_dim as i64], inv)?;
                self.op("Mul", ONNX_DOMAIN, &[x, &inv], vec![])?
            }
            Smoothing::None | Smoothing::Folded(_) => x.to_string(),
        };
        let (codes, row_scales) = self.quantize_rows(&x, in_dim)?;
        let (q, scales) = quantize_per_column(&w_in_out, in_dim, out_dim);
        let w = self.constant("weight_int8", &[in_dim as i64, out_dim as i64], &q)?;
        let s = self.constant_raw_f32("weight_scale", &[out_dim as i64], scales)?;
        let zp = self.constant("codes_zero_point", &[], &[ACTIVATION_ZERO_POINT])?;
        // No bias input: given per-row `a_scale` and a bias, ONNX Runtime 1.32 returns wrong
        // rows (seen in a Python probe); the callers' fused ops add the bias.
        self.op(
            "MatMulIntegerToFloat",
            MS_DOMAIN,
            &[&codes, &w, &row_scales, &s, &zp],
            vec![],
        )
    }

    /// Symmetric uint8 codes of `x` `[b, t, k]` with one scale per token row: returns
    /// `(codes [b, t, k], scales [b, t, 1])`, `scale = max |x_row| / 127`.
    fn quantize_rows(&mut self, x: &str, k: usize) -> ort::Result<(String, String)> {
        let last = self.constant_i64("last_axis", &[1], &[-1])?;
        let keep =
            || -> ort::Result<Vec<Attribute>> { Ok(vec![Attribute::new("keepdims", 1i64)?]) };
        let max = self.op("ReduceMax", ONNX_DOMAIN, &[x, &last], keep()?)?;
        let min = self.op("ReduceMin", ONNX_DOMAIN, &[x, &last], keep()?)?;
        let neg_min = self.op("Neg", ONNX_DOMAIN, &[&min], vec![])?;
        let abs_max = self.op("Max", ONNX_DOMAIN, &[&max, &neg_min], vec![])?;
        // An all-zero row would get scale 0; the floor keeps its codes at the zero point.
        let floor = self.constant_raw_f32("scale_floor", &[], vec![f32::MIN_POSITIVE * 127.0])?;
        let abs_max = self.op("Max", ONNX_DOMAIN, &[&abs_max, &floor], vec![])?;
        let step = self.constant_raw_f32("inv_127", &[], vec![1.0 / 127.0])?;
        let scales = self.op("Mul", ONNX_DOMAIN, &[&abs_max, &step], vec![])?;
        let zero_points = match &self.row_zero_points {
            Some(z) => z.clone(),
            None => {
                let zp = self.constant("row_zero_point", &[], &[ACTIVATION_ZERO_POINT])?;
                let shape = self.op("Shape", ONNX_DOMAIN, &[&scales], vec![])?;
                let z = self.op("Expand", ONNX_DOMAIN, &[&zp, &shape], vec![])?;
                self.row_zero_points = Some(z.clone());
                z
            }
        };
        let codes = self.op(
            "QuantizeLinear",
            ONNX_DOMAIN,
            &[x, &scales, &zero_points],
            vec![
                Attribute::new("axis", -1i64)?,
                Attribute::new("block_size", k as i64)?,
            ],
        )?;
        Ok((codes, scales))
    }

    fn add_bias(&mut self, x: &str, bias: Option<&Tensor>) -> ort::Result<String> {
        match bias {
            Some(b) => {
                let b = self.constant_f32("bias", b)?;
                self.op("Add", ONNX_DOMAIN, &[x, &b], vec![])
            }
            None => Ok(x.to_string()),
        }
    }

    /// `x · Wᵀ + b` for the small `[b, hidden]` head layers.
    fn gemm(&mut self, x: &str, l: &LinearWeights) -> ort::Result<String> {
        let w = self.constant_f32("head_weight", &l.weight)?;
        let out_dim = l.weight.dims()[0];
        let b = match &l.bias {
            Some(b) => self.constant_f32("head_bias", b)?,
            None => self.constant_raw_f32("head_bias", &[out_dim as i64], vec![0.0; out_dim])?,
        };
        self.op(
            "Gemm",
            ONNX_DOMAIN,
            &[x, &w, &b],
            vec![Attribute::new("transB", 1i64)?],
        )
    }

    fn layer(
        &mut self,
        x: &str,
        l: &LayerWeights,
        position_bias: &str,
        shapes: &Shapes,
        head_dim: usize,
        activation: Activation,
    ) -> ort::Result<String> {
        // int8: the attention output's smoothing divisors go into V's output channels, which
        // the attention-weighted context inherits channel for channel; no scaling pass needed.
        let hidden = l.query.weight.dims()[0];
        let attention_out = transposed(&l.attention_output.weight)?;
        let out_smooth = match (self.precision, self.calibration) {
            (Precision::Int8, Some(c)) => Some(smoothing(
                &c.layers[self.layer][Linear::AttentionOutput as usize],
                &attention_out,
                l.attention_output.weight.dims()[0],
            )),
            _ => None,
        };
        let (value_weight, value_bias) = match &out_smooth {
            Some(s) => {
                let s =
                    Tensor::from_slice(s, hidden, &candle_core::Device::Cpu).map_err(candle_err)?;
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
        let scale = 1.0 / (head_dim as f64).sqrt();
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
        let qkv = self.matmul(x, &qkv_weight, Linear::Qkv)?;
        let outs = [self.fresh("q"), self.fresh("k"), self.fresh("v")];
        let node = Node::new(
            "Split",
            ONNX_DOMAIN,
            format!("{}_node", outs[0]),
            [qkv.as_str(), shapes.qkv_split.as_str()],
            &outs,
            [Attribute::new("axis", 2i64)?],
        )?;
        self.graph.add_node(node)?;
        let bias = self.constant_f32("qkv_bias", &qkv_bias)?;
        let ctx = self.op(
            "MultiHeadAttention",
            MS_DOMAIN,
            &[
                &outs[0],
                &outs[1],
                &outs[2],
                &bias,
                io::ATTENTION_MASK,
                position_bias,
            ],
            vec![
                Attribute::new("num_heads", (hidden / head_dim) as i64)?,
                // Already folded into the query weights.
                Attribute::new("scale", 1.0f32)?,
            ],
        )?;

        let smooth = match &out_smooth {
            Some(s) => Smoothing::Folded(s),
            None => Smoothing::None,
        };
        let attended = self.linear(
            &ctx,
            attention_out,
            (hidden, l.attention_output.weight.dims()[0]),
            Linear::AttentionOutput,
            smooth,
        )?;
        let x1 = self.skip_layer_norm(
            &attended,
            x,
            l.attention_output.bias.as_ref(),
            &l.attention_norm,
        )?;

        let inner = self.matmul(&x1, &l.intermediate.weight, Linear::FfnIn)?;
        let inner = self.activate(&inner, l.intermediate.bias.as_ref(), activation)?;
        let out = self.matmul(&inner, &l.output.weight, Linear::FfnOut)?;
        self.skip_layer_norm(&out, &x1, l.output.bias.as_ref(), &l.output_norm)
    }

    /// `act(x + bias)`, fused where ONNX Runtime has a kernel for it.
    fn activate(
        &mut self,
        x: &str,
        bias: Option<&Tensor>,
        activation: Activation,
    ) -> ort::Result<String> {
        match (activation, bias) {
            (Activation::GeluErf, Some(b)) => {
                let b = self.constant_f32("bias", b)?;
                self.op("BiasGelu", MS_DOMAIN, &[x, &b], vec![])
            }
            (Activation::GeluTanh, Some(b)) => {
                let b = self.constant_f32("bias", b)?;
                self.op("FastGelu", MS_DOMAIN, &[x, &b], vec![])
            }
            (act, bias) => {
                let x = self.add_bias(x, bias)?;
                match act {
                    Activation::GeluErf => self.op("Gelu", MS_DOMAIN, &[&x], vec![]),
                    Activation::GeluTanh => self.op("FastGelu", MS_DOMAIN, &[&x], vec![]),
                    Activation::Relu => self.op("Relu", ONNX_DOMAIN, &[&x], vec![]),
                    Activation::Silu => {
                        let s = self.op("Sigmoid", ONNX_DOMAIN, &[&x], vec![])?;
                        self.op("Mul", ONNX_DOMAIN, &[&x, &s], vec![])
                    }
                }
            }
        }
    }
}

/// Symmetric per-column int8: column `j` of the row-major `[rows, cols]` matrix is scaled by
/// `max |w[·, j]| / 127`. Returns the quantized matrix and one scale per column.
pub(crate) fn quantize_per_column(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; cols];
    for r in 0..rows {
        for (c, s) in scales.iter_mut().enumerate() {
            *s = s.max(w[r * cols + c].abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[i % cols]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// `[out, in]` weight → `[in, out]` row-major values.
fn transposed(weight_out_in: &Tensor) -> ort::Result<Vec<f32>> {
    to_vec(
        &weight_out_in
            .t()
            .map_err(candle_err)?
            .contiguous()
            .map_err(candle_err)?,
    )
}

fn to_vec(t: &Tensor) -> ort::Result<Vec<f32>> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(candle_err)
}

fn candle_err(e: candle_core::Error) -> ort::Error {
    ort::Error::new(format!("preparing weights: {e}"))
}

#[cfg(test)]
mod tests {
    use super::quantize_per_column;

    #[test]
    fn per_column_quantization_round_trips_within_half_a_step() {
        let w = [0.5f32, -2.0, 0.25, 1.0, 0.0, -0.001];
        let (q, s) = quantize_per_column(&w, 3, 2);
        assert_eq!(s.len(), 2);
        assert!((s[0] - 0.5 / 127.0).abs() < 1e-9 && (s[1] - 2.0 / 127.0).abs() < 1e-9);
        for (i, &v) in w.iter().enumerate() {
            let back = q[i] as f32 * s[i % 2];
            assert!((back - v).abs() <= s[i % 2] / 2.0 + 1e-7, "{v} -> {back}");
        }
        assert_eq!(q[1], -127);
    }
}
