//! An architecture-neutral view of a loaded encoder's tensors.
//!
//! The candle network owns its weights; the ONNX Runtime engine rebuilds the same computation as
//! an ONNX graph. This view is the seam between the two, so the runtime graph writer knows
//! nothing about checkpoint names, prefixes or `gamma`/`beta` spellings.

use candle_core::Tensor;
use candle_nn::Linear;

use super::layers::Norm;

/// A dense layer: `weight` is `[out, in]` as PyTorch stores it.
#[derive(Clone)]
pub struct LinearWeights {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl From<&Linear> for LinearWeights {
    fn from(l: &Linear) -> Self {
        LinearWeights {
            weight: l.weight().clone(),
            bias: l.bias().cloned(),
        }
    }
}

#[derive(Clone)]
pub struct NormWeights {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl From<&Norm> for NormWeights {
    fn from(n: &Norm) -> Self {
        NormWeights {
            weight: n.weight.clone(),
            bias: n.bias.clone(),
            eps: n.eps,
        }
    }
}

/// One post-norm transformer layer.
#[derive(Clone)]
pub struct LayerWeights {
    pub query: LinearWeights,
    pub key: LinearWeights,
    pub value: LinearWeights,
    pub attention_output: LinearWeights,
    pub attention_norm: NormWeights,
    pub intermediate: LinearWeights,
    pub output: LinearWeights,
    pub output_norm: NormWeights,
}

/// Everything an encoder computes with, plus how positions are numbered.
#[derive(Clone)]
pub struct EncoderWeights {
    /// `[vocab, hidden]`.
    pub word_embeddings: Tensor,
    /// `[max_positions, hidden]`.
    pub position_embeddings: Tensor,
    /// `[type_vocab, hidden]`; `None` for MPNet.
    pub token_type_embeddings: Option<Tensor>,
    pub embedding_norm: NormWeights,
    /// MPNet's `[num_buckets, heads]` relative-position bias, shared by all layers.
    pub relative_attention_bias: Option<Tensor>,
    pub layers: Vec<LayerWeights>,
    /// First position id of real tokens (0 for BERT, `pad + 1` for RoBERTa and MPNet).
    pub position_offset: usize,
    /// Position id given to padding when `position_offset > 0`.
    pub pad_position: u32,
}

/// Classification head: the first token's state → `dense` → tanh → `out` (BERT's pooler and
/// classifier, RoBERTa's `classifier.dense`/`out_proj` compute the same thing).
#[derive(Clone)]
pub struct HeadWeights {
    pub dense: LinearWeights,
    pub out: LinearWeights,
}
