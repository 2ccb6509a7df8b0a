//! Sequence-classification heads: what turns a cross-encoder's token states into logits.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::layers::linear;
use crate::config::{Architecture, ModelConfig};

/// `BertForSequenceClassification` applies the pooler (dense + tanh on `[CLS]`) then a linear
/// classifier; RoBERTa and MPNet use a two-layer head on `<s>` (`classifier.dense`,
/// `classifier.out_proj`) instead.
pub enum ClassificationHead {
    Bert { pooler: Linear, classifier: Linear },
    Roberta { dense: Linear, out_proj: Linear },
}

impl ClassificationHead {
    /// `encoder_vb` points at the encoder root (holds `pooler.`), `root_vb` at the checkpoint
    /// root (holds `classifier.`).
    pub fn load(
        cfg: &ModelConfig,
        encoder_vb: VarBuilder,
        root_vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let n = cfg.labels.len();
        Ok(match cfg.architecture {
            Architecture::Bert => ClassificationHead::Bert {
                pooler: linear(h, h, encoder_vb.pp("pooler.dense"))?,
                classifier: linear(h, n, root_vb.pp("classifier"))?,
            },
            Architecture::XlmRoberta | Architecture::MpNet => ClassificationHead::Roberta {
                dense: linear(h, h, root_vb.pp("classifier.dense"))?,
                out_proj: linear(h, n, root_vb.pp("classifier.out_proj"))?,
            },
            Architecture::Decoder => candle_core::bail!("a decoder has no classification head"),
        })
    }

    /// An exit head of a layerwise checkpoint (`vb` at `exits.{layer}`): `dense` then `out`,
    /// the same computation as the final head whatever the family.
    pub fn load_exit(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(ClassificationHead::Roberta {
            dense: linear(h, h, vb.pp("dense"))?,
            out_proj: linear(h, cfg.labels.len(), vb.pp("out"))?,
        })
    }

    pub fn weights(&self) -> super::weights::HeadWeights {
        let (dense, out) = match self {
            ClassificationHead::Bert { pooler, classifier } => (pooler, classifier),
            ClassificationHead::Roberta { dense, out_proj } => (dense, out_proj),
        };
        super::weights::HeadWeights {
            dense: dense.into(),
            out: out.into(),
        }
    }

    /// `hidden`: `[b, t, h]` → logits `[b, num_labels]`.
    pub fn forward(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        match self {
            ClassificationHead::Bert { pooler, classifier } => {
                classifier.forward(&pooler.forward(&first)?.tanh()?)
            }
            ClassificationHead::Roberta { dense, out_proj } => {
                out_proj.forward(&dense.forward(&first)?.tanh()?)
            }
        }
    }
}
