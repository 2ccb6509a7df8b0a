//! A small writer over ONNX Runtime's model editor: fresh value names, initializers copied into
//! runtime-owned memory, and the handful of fused operators every transformer graph uses
//! (layer norms, bias + activation, head `Gemm`s).
//!
//! It knows nothing of a model's topology: the encoder graph ([`super::encoder`]) and the int8
//! linear route ([`super::quantize`]) are written through it, and a decoder graph can be too.

use candle_core::Tensor;
use ort::editor::{Graph, Node, ONNX_DOMAIN};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::value::{Outlet, Tensor as OrtTensor};
use ort::value::{Shape, SymbolicDimensions, TensorElementType, ValueType};

use crate::arch::weights::{LinearWeights, NormWeights};
use crate::config::Activation;

/// Domain of ONNX Runtime's contrib operators (`SkipLayerNormalization`, `MultiHeadAttention`,
/// `MatMulIntegerToFloat`, …).
pub(crate) const MS_DOMAIN: &str = "com.microsoft";

/// ONNX operator set of the graphs: 21 for `QuantizeLinear`'s `block_size`, which is how the
/// int8 route gets one scale per token row.
pub(crate) const ONNX_OPSET: u32 = 21;

/// A graph under construction. Every method adds nodes and returns the name of its output.
pub(crate) struct Editor {
    pub graph: Graph,
    next: usize,
}

impl Editor {
    pub fn new() -> ort::Result<Self> {
        Ok(Editor {
            graph: Graph::new()?,
            next: 0,
        })
    }

    /// A value name no other node has used.
    pub fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }

    /// Adds a node with one output and returns the output's name.
    pub fn op(
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

    /// Splits `x` along `axis` into `sizes.len()` parts; returns their names.
    pub fn split(
        &mut self,
        x: &str,
        sizes: &str,
        parts: usize,
        axis: i64,
    ) -> ort::Result<Vec<String>> {
        let outs: Vec<String> = (0..parts).map(|_| self.fresh("split")).collect();
        let node = Node::new(
            "Split",
            ONNX_DOMAIN,
            format!("{}_node", outs[0]),
            [x, sizes],
            &outs,
            [Attribute::new("axis", axis)?],
        )?;
        self.graph.add_node(node)?;
        Ok(outs)
    }

    /// Gives value `from` the graph-level name `to` (an output or a probe).
    pub fn rename(&mut self, from: &str, to: &str) -> ort::Result<()> {
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

    pub fn constant_f32(&mut self, stem: &str, t: &Tensor) -> ort::Result<String> {
        let dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
        let data = to_vec(t)?;
        self.constant(stem, &dims, &data)
    }

    pub fn constant_i64(&mut self, stem: &str, dims: &[i64], data: &[i64]) -> ort::Result<String> {
        self.constant(stem, dims, data)
    }

    /// An initializer; ONNX Runtime needs it in memory it allocated, so `data` is copied there.
    pub fn constant<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Copy>(
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

    pub fn layer_norm(&mut self, x: &str, n: &NormWeights) -> ort::Result<String> {
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
    pub fn skip_layer_norm(
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
    pub fn gemm(&mut self, x: &str, l: &LinearWeights) -> ort::Result<String> {
        let w = self.constant_f32("head_weight", &l.weight)?;
        let out_dim = l.weight.dims()[0];
        let b = match &l.bias {
            Some(b) => self.constant_f32("head_bias", b)?,
            None => self.constant("head_bias", &[out_dim as i64], &vec![0f32; out_dim])?,
        };
        self.op(
            "Gemm",
            ONNX_DOMAIN,
            &[x, &w, &b],
            vec![Attribute::new("transB", 1i64)?],
        )
    }

    /// `act(x + bias)`, fused where ONNX Runtime has a kernel for it.
    pub fn activate(
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

/// A graph input or output declaration; a dimension that is not a number is symbolic.
pub(crate) fn tensor_outlet(name: &str, ty: TensorElementType, dims: &[&str]) -> Outlet {
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

/// `[out, in]` weight → `[in, out]` row-major values.
pub(crate) fn transposed(weight_out_in: &Tensor) -> ort::Result<Vec<f32>> {
    to_vec(
        &weight_out_in
            .t()
            .map_err(candle_err)?
            .contiguous()
            .map_err(candle_err)?,
    )
}

pub(crate) fn to_vec(t: &Tensor) -> ort::Result<Vec<f32>> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(candle_err)
}

pub(crate) fn candle_err(e: candle_core::Error) -> ort::Error {
    ort::Error::new(format!("preparing weights: {e}"))
}
