//! MPNet encoder: BERT-like layers without token types, plus a relative-position bias shared by
//! all layers (T5-style log buckets).

use candle_core::{Device, Module, Tensor};
use candle_nn::{Embedding, VarBuilder};

use super::bert::position_ids;
use super::encoder_layer::{load_layers, EncoderLayer, MPNET_NAMES};
use super::layers::{layer_norm, Kernels, Norm};
use super::weights::EncoderWeights;
use crate::batch::Batch;
use crate::config::ModelConfig;

pub struct MpNetEncoder {
    word: Embedding,
    position: Embedding,
    norm: Norm,
    relative_attention_bias: Embedding,
    layers: Vec<EncoderLayer>,
    num_heads: usize,
    kernels: Kernels,
    num_buckets: usize,
    pad_token_id: u32,
}

/// Longest relative distance with its own buckets, as in MPNet.
const MAX_DISTANCE: f32 = 128.0;

impl MpNetEncoder {
    pub fn load(cfg: &ModelConfig, vb: VarBuilder, kernels: Kernels) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let e = vb.pp("embeddings");
        let layers = load_layers(cfg, &vb, &MPNET_NAMES, kernels)?;
        Ok(MpNetEncoder {
            word: candle_nn::embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                cfg.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            norm: layer_norm(h, cfg.layer_norm_eps, e.pp("LayerNorm"), kernels)?,
            relative_attention_bias: candle_nn::embedding(
                cfg.relative_attention_num_buckets,
                cfg.num_heads,
                vb.pp("encoder.relative_attention_bias"),
            )?,
            layers,
            num_heads: cfg.num_heads,
            kernels,
            num_buckets: cfg.relative_attention_num_buckets,
            pad_token_id: cfg.pad_token_id,
        })
    }

    pub fn weights(&self) -> EncoderWeights {
        EncoderWeights {
            word_embeddings: self.word.embeddings().clone(),
            position_embeddings: self.position.embeddings().clone(),
            token_type_embeddings: None,
            embedding_norm: (&self.norm).into(),
            relative_attention_bias: Some(self.relative_attention_bias.embeddings().clone()),
            layers: self.layers.iter().map(EncoderLayer::weights).collect(),
            position_offset: self.pad_token_id as usize + 1,
            pad_position: self.pad_token_id,
        }
    }

    /// Layer-normed embeddings `[b*t, hidden]`, the first layer's input.
    pub fn embed(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let (b, t) = batch.input_ids.dims2()?;
        let device = batch.input_ids.device();
        let offset = self.pad_token_id as usize + 1;
        let positions = position_ids(&batch.lengths, t, offset, self.pad_token_id);
        let positions = Tensor::from_vec(positions, (b, t), device)?;
        let x = (self.word.forward(&batch.input_ids)? + self.position.forward(&positions)?)?;
        let hidden = x.dim(2)?;
        self.norm.forward(&x)?.reshape((b * t, hidden))
    }

    /// The `[1, heads, t, t]` relative-position bias every layer adds to its attention scores
    /// for sequences of `t` tokens.
    pub fn position_bias(&self, t: usize, device: &Device) -> candle_core::Result<Tensor> {
        let buckets = Tensor::from_vec(relative_buckets(t, self.num_buckets), (t, t), device)?;
        // [t, t, heads] → [1, heads, t, t]
        self.relative_attention_bias
            .forward(&buckets)?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()
    }

    pub(crate) fn layers(&self) -> &[EncoderLayer] {
        &self.layers
    }

    pub(crate) fn num_heads(&self) -> usize {
        self.num_heads
    }

    pub(crate) fn kernels(&self) -> Kernels {
        self.kernels
    }
}

/// Bucket of each (query i, key j) relative distance, row-major `[t, t]`: half the buckets for
/// each direction, exact for small distances, log-spaced up to [`MAX_DISTANCE`]. Arithmetic is
/// done in f32 like the reference so bucket edges agree.
pub(crate) fn relative_buckets(t: usize, num_buckets: usize) -> Vec<u32> {
    let half = num_buckets / 2;
    let max_exact = half / 2;
    let log_ratio = (MAX_DISTANCE / max_exact as f32).ln();
    let mut out = Vec::with_capacity(t * t);
    for i in 0..t as i64 {
        for j in 0..t as i64 {
            let n = i - j; // -(memory - context)
            let mut bucket = if n < 0 { half } else { 0 };
            let n = n.unsigned_abs() as usize;
            bucket += if n < max_exact {
                n
            } else {
                let scaled =
                    (n as f32 / max_exact as f32).ln() / log_ratio * (half - max_exact) as f32;
                (max_exact + scaled as usize).min(half - 1)
            };
            out.push(bucket as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::relative_buckets;

    #[test]
    fn buckets_are_exact_near_and_log_spaced_far() {
        let t = 200;
        let b = relative_buckets(t, 32);
        let at = |i: usize, j: usize| b[i * t + j];
        assert_eq!(at(0, 0), 0);
        assert_eq!(at(5, 0), 5); // key 5 before the query
        assert_eq!(at(0, 5), 16 + 5); // key after the query: other half
        assert_eq!(at(16, 0), 10); // 8 + ln(2)/ln(16)*8 = 10
        assert_eq!(at(199, 0), 15); // capped
    }
}
