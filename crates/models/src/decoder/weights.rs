//! How a decoder's weights are held and multiplied.
//!
//! Two ways, chosen per model at load ([`crate::Precision`]):
//! - **f32**: every projection is an f32 matrix and runs as an f32 GEMM. A GGUF file's blocks
//!   are dequantized first. This is what the golden tests hold to transformers within 1e-4.
//! - **int8**: projections run as block-quantized weights against activations quantized to
//!   int8 per 256-value block (llama.cpp's k-quant scheme; candle's `QMatMul`, whose x86
//!   kernels use AVX-512 VNNI here), wherever such a kernel exists for the shape
//!   ([`int8_kernel_applies`]); other projections stay f32. A GGUF file's Q4_K, Q6_K and Q8_0
//!   blocks run as stored, its legacy types in f32 ([`runs_as_stored`]); a directory's
//!   f32/f16/bf16 weights are quantized to Q8_0 (one f16 scale per 32 weights). A GGUF file's
//!   embedding table stays in its blocks and is dequantized a row at a time (Gemma 3's
//!   262,144 × 640 table: 178 MB as Q8_0, 671 MB as f32).

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::Precision;

/// The weights a [`super::Decoder`] is built from: tensors by Hugging Face name, some of them
/// (from a GGUF file read for int8) still in their quantized blocks.
pub struct DecoderWeights<'a> {
    vb: VarBuilder<'a>,
    blocks: HashMap<String, QTensor>,
    precision: Precision,
}

impl<'a> DecoderWeights<'a> {
    /// f32 weights (a directory's, or a GGUF file's dequantized): f32 GEMMs.
    pub fn f32(vb: VarBuilder<'a>) -> Self {
        DecoderWeights {
            vb,
            blocks: HashMap::new(),
            precision: Precision::F32,
        }
    }

    /// `vb`'s tensors, plus `blocks` kept quantized; `precision` says how projections run.
    pub fn new(vb: VarBuilder<'a>, blocks: HashMap<String, QTensor>, precision: Precision) -> Self {
        DecoderWeights {
            vb,
            blocks,
            precision,
        }
    }

    pub(super) fn vb(&self) -> &VarBuilder<'a> {
        &self.vb
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.blocks.contains_key(name) || self.vb.contains_tensor(name)
    }

    /// A projection `in_dim → out_dim` whose weight is `{prefix}.weight` (and bias
    /// `{prefix}.bias` when `bias`).
    pub(super) fn projection(
        &mut self,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> candle_core::Result<Projection> {
        let name = format!("{prefix}.weight");
        let bias = if bias {
            Some(self.vb.get(out_dim, &format!("{prefix}.bias"))?)
        } else {
            None
        };
        let int8 = self.precision == Precision::Int8 && int8_kernel_applies(in_dim, out_dim);
        if let Some(q) = self.blocks.remove(&name) {
            check_shape(&name, q.shape().dims(), &[out_dim, in_dim])?;
            if int8 && runs_as_stored(q.dtype()) {
                return Projection::blocks(q, bias);
            }
            let w = q.dequantize(&q.device())?;
            return Ok(Projection::Dense(Linear::new(w, bias)));
        }
        let w = self.vb.get((out_dim, in_dim), &name)?;
        if int8 {
            return Projection::blocks(QTensor::quantize(&w, GgmlDType::Q8_0)?, bias);
        }
        Ok(Projection::Dense(Linear::new(w, bias)))
    }

    /// A `[rows, cols]` table read by row (token embeddings, the output projection).
    pub(super) fn table(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> candle_core::Result<RowTable> {
        if let Some(q) = self.blocks.remove(name) {
            check_shape(name, q.shape().dims(), &[rows, cols])?;
            if self.precision == Precision::Int8 {
                return Ok(RowTable::Blocks(q));
            }
            return Ok(RowTable::Dense(q.dequantize(&q.device())?));
        }
        Ok(RowTable::Dense(self.vb.get((rows, cols), name)?))
    }
}

fn check_shape(name: &str, got: &[usize], want: &[usize]) -> candle_core::Result<()> {
    if got != want {
        candle_core::bail!("{name} has shape {got:?}, the config says {want:?}");
    }
    Ok(())
}

/// Whether candle has a fast int8 kernel for a projection of this shape: its x86 kernels
/// that beat an f32 GEMM (AVX-512 VNNI / AVX-VNNI dot products over weights repacked 16 rows at
/// a time) take inputs in whole 256-value superblocks and outputs in tiles of 16. Elsewhere it
/// falls back to one dot product per (row, column), ~5× slower than f32 (Gemma 3 270M's width of
/// 640 is such a shape), so those projections stay f32. Measured on this CPU (2 threads, 512
/// rows, `examples/int8_kernels.rs`): 1,024 → 3,072 runs at 1.9× f32 as Q8_0, 2.3× as Q4_K;
/// 640 → 2,048 at 0.21× as Q8_0.
fn int8_kernel_applies(in_dim: usize, out_dim: usize) -> bool {
    in_dim.is_multiple_of(256) && out_dim.is_multiple_of(16)
}

/// GGUF block types run as stored in int8: those with repacked kernels. Those kernels quantize
/// activations per 256 values (llama.cpp does the same for k-quants); the legacy types
/// (Q4_0/Q4_1/Q5_0/Q5_1) get per-32 activations in llama.cpp, and re-quantizing them to Q8_0
/// for these kernels doubled the distance from the f32 reference on SmolLM2 (root-mean-square
/// logit difference over spread 0.18 against llama.cpp's 0.085: one outlier in an MLP input
/// coarsens its whole 256-value block), so they are dequantized to f32 instead.
fn runs_as_stored(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K | GgmlDType::Q8_0)
}

/// One linear projection of a decoder layer.
pub(super) enum Projection {
    Dense(Linear),
    /// Block-quantized weight `[out, in]` (int8 activations), f32 bias.
    Blocks {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Projection {
    pub(super) fn is_blocks(&self) -> bool {
        matches!(self, Projection::Blocks { .. })
    }

    fn blocks(q: QTensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        Ok(Projection::Blocks {
            weight: QMatMul::from_qtensor(q)?,
            bias,
        })
    }
}

impl Module for Projection {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Projection::Dense(linear) => linear.forward(x),
            Projection::Blocks { weight, bias } => {
                let y = weight.forward(&x.contiguous()?)?;
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// A table read a row at a time: token embeddings, or the output rows a recipe reads.
pub(super) enum RowTable {
    Dense(Tensor),
    /// Dequantized row by row on lookup.
    Blocks(QTensor),
}

impl RowTable {
    /// Rows `ids` (`[n]`, u32) as f32 `[n, cols]`.
    pub(super) fn rows(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            RowTable::Dense(t) => t.index_select(ids, 0),
            RowTable::Blocks(q) => q.embedding(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Module, Tensor};
    use candle_nn::VarBuilder;

    use super::*;

    fn weights(precision: Precision) -> DecoderWeights<'static> {
        let device = Device::Cpu;
        let mut tensors = HashMap::new();
        for (name, (o, i)) in [("wide", (32, 512)), ("narrow", (32, 96))] {
            let w = Tensor::randn(0f32, 0.05, (o, i), &device).unwrap();
            tensors.insert(format!("{name}.weight"), w);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        DecoderWeights::new(vb, HashMap::new(), precision)
    }

    /// int8 runs a projection as Q8_0 blocks only where the shape has a kernel, and stays
    /// within int8's rounding of the f32 product there.
    #[test]
    fn int8_quantizes_the_shapes_with_kernels_and_stays_close() {
        let mut f32_weights = weights(Precision::F32);
        let mut int8_weights = weights(Precision::Int8);
        // The same random weights in both: copy f32's tensors over.
        int8_weights.vb = f32_weights.vb.clone();
        let x = Tensor::randn(0f32, 1.0, (3, 5, 512), &Device::Cpu).unwrap();
        let dense = f32_weights.projection("wide", 512, 32, false).unwrap();
        let blocks = int8_weights.projection("wide", 512, 32, false).unwrap();
        assert!(matches!(dense, Projection::Dense(_)));
        assert!(matches!(blocks, Projection::Blocks { .. }));
        let want = dense.forward(&x).unwrap();
        let got = blocks.forward(&x).unwrap();
        assert_eq!(got.dims(), &[3, 5, 32]);
        let err = (&got - &want).unwrap().sqr().unwrap().mean_all().unwrap();
        let scale = want.sqr().unwrap().mean_all().unwrap();
        let relative = (err.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()).sqrt();
        assert!(relative < 0.02, "relative rms error {relative}");
        // 96 inputs are no whole superblock: f32.
        let narrow = int8_weights.projection("narrow", 96, 32, false).unwrap();
        assert!(matches!(narrow, Projection::Dense(_)));
    }

    #[test]
    fn a_weight_of_the_wrong_shape_is_an_error() {
        assert!(weights(Precision::Int8)
            .projection("wide", 256, 32, false)
            .is_err());
    }
}
