//! Building blocks shared by the BERT-family encoders.

use candle_core::{Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use super::dropout::Dropout;
use crate::config::Activation;

/// Which implementation of layer norm and softmax the forward pass uses.
///
/// candle's fused CPU kernels for both are fast but have no backward pass; training builds the
/// same functions from differentiable primitives. Tests check the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    #[default]
    Fused,
    Differentiable,
}

/// Layer normalisation over the last dimension.
pub struct Norm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) eps: f64,
    kernels: Kernels,
    fused: candle_nn::LayerNorm,
}

impl Norm {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.kernels {
            Kernels::Fused => self.fused.forward(x),
            Kernels::Differentiable => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let centered = x.broadcast_sub(&mean)?;
                let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
                centered
                    .broadcast_div(&(var + self.eps)?.sqrt()?)?
                    .broadcast_mul(&self.weight)?
                    .broadcast_add(&self.bias)
            }
        }
    }
}

/// Loads a LayerNorm stored as `weight`/`bias`, or as `gamma`/`beta` in checkpoints converted
/// from the original TensorFlow BERT.
pub fn layer_norm(
    size: usize,
    eps: f64,
    vb: VarBuilder,
    kernels: Kernels,
) -> candle_core::Result<Norm> {
    let (w, b) = if !vb.contains_tensor("weight") && vb.contains_tensor("gamma") {
        ("gamma", "beta")
    } else {
        ("weight", "bias")
    };
    let (weight, bias) = (vb.get(size, w)?, vb.get(size, b)?);
    Ok(Norm {
        fused: candle_nn::LayerNorm::new(weight.clone(), bias.clone(), eps),
        weight,
        bias,
        eps,
        kernels,
    })
}

pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb)
}

pub fn activate(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::GeluErf => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
}

/// `[b, t]` 0/1 mask → `[b, 1, 1, t]` additive bias: 0 for real tokens, the most negative f32
/// for padding, as transformers does.
pub fn attention_bias(mask: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t) = mask.dims2()?;
    ((1.0 - mask)? * f32::MIN as f64)?.reshape((b, 1, 1, t))
}

/// Scaled dot-product attention over `[b*t, h]` projections.
///
/// `bias`: `[b, 1, 1, t]` padding bias; `position_bias`: optional `[1|b, heads, t, t]` (MPNet's
/// relative positions); `dropout` (training) drops attention probabilities. Returns the
/// context `[b*t, h]`.
#[allow(clippy::too_many_arguments)]
pub fn multi_head_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: usize,
    seq: usize,
    num_heads: usize,
    bias: &Tensor,
    position_bias: Option<&Tensor>,
    kernels: Kernels,
    dropout: Option<&mut Dropout>,
) -> candle_core::Result<Tensor> {
    let hidden = q.dim(1)?;
    let head_dim = hidden / num_heads;
    let split = |x: &Tensor| {
        x.reshape((batch, seq, num_heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let mut scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
    if let Some(pb) = position_bias {
        scores = scores.broadcast_add(pb)?;
    }
    let scores = scores.broadcast_add(bias)?;
    let mut probs = match kernels {
        Kernels::Fused => candle_nn::ops::softmax_last_dim(&scores)?,
        Kernels::Differentiable => candle_nn::ops::softmax(&scores, D::Minus1)?,
    };
    if let Some(d) = dropout {
        probs = d.attention(&probs)?;
    }
    probs
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((batch * seq, hidden))
}

/// The feed-forward half of a transformer layer: `LN(x + dropout(W2·act(W1·x)))`.
pub struct FeedForward {
    pub intermediate: Linear,
    pub output: Linear,
    pub norm: Norm,
    pub activation: Activation,
}

impl FeedForward {
    pub fn forward(
        &self,
        x: &Tensor,
        dropout: Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let h = activate(&self.intermediate.forward(x)?, self.activation)?;
        let mut h = self.output.forward(&h)?;
        if let Some(d) = dropout {
            h = d.hidden(&h)?;
        }
        self.norm.forward(&(h + x)?)
    }
}
