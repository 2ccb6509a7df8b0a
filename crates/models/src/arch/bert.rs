//! BERT and (XLM-)RoBERTa encoders. RoBERTa is BERT with positions counted from
//! `pad_token_id + 1` and (in practice) a single token type, so one implementation serves both.

use candle_core::{Module, Tensor};
use candle_nn::{Embedding, VarBuilder};

use super::encoder_layer::{load_layers, EncoderLayer, BERT_NAMES};
use super::layers::{layer_norm, Kernels, Norm};
use super::weights::EncoderWeights;
use crate::batch::Batch;
use crate::config::{Architecture, ModelConfig};

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Option<Embedding>,
    norm: Norm,
}

pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    num_heads: usize,
    kernels: Kernels,
    /// First position id; 0 for BERT, `pad_token_id + 1` for RoBERTa.
    position_offset: usize,
    pad_position: u32,
}

impl BertEncoder {
    /// `vb` points at the encoder's root (the one holding `embeddings.` and `encoder.`).
    pub fn load(cfg: &ModelConfig, vb: VarBuilder, kernels: Kernels) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let e = vb.pp("embeddings");
        let embeddings = Embeddings {
            word: candle_nn::embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                cfg.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_type: if cfg.type_vocab_size > 0 {
                Some(candle_nn::embedding(
                    cfg.type_vocab_size,
                    h,
                    e.pp("token_type_embeddings"),
                )?)
            } else {
                None
            },
            norm: layer_norm(h, cfg.layer_norm_eps, e.pp("LayerNorm"), kernels)?,
        };
        let layers = load_layers(cfg, &vb, &BERT_NAMES, kernels)?;
        let (position_offset, pad_position) = match cfg.architecture {
            Architecture::XlmRoberta => (cfg.pad_token_id as usize + 1, cfg.pad_token_id),
            _ => (0, 0),
        };
        Ok(BertEncoder {
            embeddings,
            layers,
            num_heads: cfg.num_heads,
            kernels,
            position_offset,
            pad_position,
        })
    }

    pub fn weights(&self) -> EncoderWeights {
        EncoderWeights {
            word_embeddings: self.embeddings.word.embeddings().clone(),
            position_embeddings: self.embeddings.position.embeddings().clone(),
            token_type_embeddings: self
                .embeddings
                .token_type
                .as_ref()
                .map(|e| e.embeddings().clone()),
            embedding_norm: (&self.embeddings.norm).into(),
            relative_attention_bias: None,
            layers: self.layers.iter().map(EncoderLayer::weights).collect(),
            position_offset: self.position_offset,
            pad_position: self.pad_position,
        }
    }

    /// Layer-normed embeddings `[b*t, hidden]`, the first layer's input.
    pub fn embed(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let (b, t) = batch.input_ids.dims2()?;
        let device = batch.input_ids.device();
        let positions = position_ids(&batch.lengths, t, self.position_offset, self.pad_position);
        let positions = Tensor::from_vec(positions, (b, t), device)?;

        let mut x = self.embeddings.word.forward(&batch.input_ids)?;
        x = (x + self.embeddings.position.forward(&positions)?)?;
        if let Some(tt) = &self.embeddings.token_type {
            x = (x + tt.forward(&batch.type_ids)?)?;
        }
        let hidden = x.dim(2)?;
        self.embeddings.norm.forward(&x)?.reshape((b * t, hidden))
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

/// Position ids for right-padded rows. BERT numbers every slot from 0; RoBERTa numbers real
/// tokens from `offset` and gives padding the pad position (transformers'
/// `create_position_ids_from_input_ids`).
pub(crate) fn position_ids(lengths: &[usize], t: usize, offset: usize, pad: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(lengths.len() * t);
    for &len in lengths {
        for j in 0..t {
            out.push(if offset == 0 || j < len {
                (offset + j) as u32
            } else {
                pad
            });
        }
    }
    out
}
