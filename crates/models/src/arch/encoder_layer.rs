//! The post-norm transformer layer BERT, (XLM-)RoBERTa and MPNet share. The families differ
//! only in what their checkpoints call the tensors ([`LayerNames`]) and in the position bias
//! MPNet adds to the attention scores.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::dropout::Dropout;
use super::layers::{layer_norm, linear, multi_head_attention, FeedForward, Kernels, Norm};
use super::weights::LayerWeights;
use crate::config::ModelConfig;

/// Checkpoint names of one layer's tensors, relative to `encoder.layer.{i}`.
pub(crate) struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_output: &'static str,
    pub attention_norm: &'static str,
}

/// `BertLayer` and `RobertaLayer` in transformers.
pub(crate) const BERT_NAMES: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
};

/// `MPNetLayer` in transformers.
pub(crate) const MPNET_NAMES: LayerNames = LayerNames {
    query: "attention.attn.q",
    key: "attention.attn.k",
    value: "attention.attn.v",
    attention_output: "attention.attn.o",
    attention_norm: "attention.LayerNorm",
};

pub(crate) struct EncoderLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: Norm,
    feed_forward: FeedForward,
}

impl EncoderLayer {
    /// `vb` points at `encoder.layer.{i}`.
    pub fn load(
        cfg: &ModelConfig,
        vb: VarBuilder,
        names: &LayerNames,
        kernels: Kernels,
    ) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(EncoderLayer {
            query: linear(h, h, vb.pp(names.query))?,
            key: linear(h, h, vb.pp(names.key))?,
            value: linear(h, h, vb.pp(names.value))?,
            attention_output: linear(h, h, vb.pp(names.attention_output))?,
            attention_norm: layer_norm(
                h,
                cfg.layer_norm_eps,
                vb.pp(names.attention_norm),
                kernels,
            )?,
            feed_forward: FeedForward {
                intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate.dense"))?,
                output: linear(cfg.intermediate_size, h, vb.pp("output.dense"))?,
                norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("output.LayerNorm"), kernels)?,
                activation: cfg.activation,
            },
        })
    }

    /// `x` is `[b*t, hidden]`; `bias` the `[b, 1, 1, t]` padding bias; `position_bias` MPNet's
    /// `[1, heads, t, t]` relative-position bias; `dropout` (training) is applied where
    /// transformers applies it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &Tensor,
        (b, t): (usize, usize),
        num_heads: usize,
        bias: &Tensor,
        position_bias: Option<&Tensor>,
        kernels: Kernels,
        mut dropout: Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let ctx = multi_head_attention(
            &self.query.forward(x)?,
            &self.key.forward(x)?,
            &self.value.forward(x)?,
            b,
            t,
            num_heads,
            bias,
            position_bias,
            kernels,
            dropout.as_deref_mut(),
        )?;
        let mut projected = self.attention_output.forward(&ctx)?;
        if let Some(d) = dropout.as_deref_mut() {
            projected = d.hidden(&projected)?;
        }
        let attended = self.attention_norm.forward(&(projected + x)?)?;
        self.feed_forward.forward(&attended, dropout)
    }

    pub fn weights(&self) -> LayerWeights {
        LayerWeights {
            query: (&self.query).into(),
            key: (&self.key).into(),
            value: (&self.value).into(),
            attention_output: (&self.attention_output).into(),
            attention_norm: (&self.attention_norm).into(),
            intermediate: (&self.feed_forward.intermediate).into(),
            output: (&self.feed_forward.output).into(),
            output_norm: (&self.feed_forward.norm).into(),
        }
    }
}

/// The `num_layers` layers under `vb`'s `encoder.layer.{i}`.
pub(crate) fn load_layers(
    cfg: &ModelConfig,
    vb: &VarBuilder,
    names: &LayerNames,
    kernels: Kernels,
) -> candle_core::Result<Vec<EncoderLayer>> {
    (0..cfg.num_layers)
        .map(|i| EncoderLayer::load(cfg, vb.pp(format!("encoder.layer.{i}")), names, kernels))
        .collect()
}
