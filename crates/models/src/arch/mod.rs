//! Network definitions. Built with candle-nn layers from a `VarBuilder`, so the same code runs
//! inference over memory-mapped checkpoints and training over a `VarMap`.

mod bert;
mod encoder_layer;
mod heads;
mod layers;
mod mpnet;
pub mod weights;

use candle_core::Tensor;
use candle_nn::VarBuilder;

pub(crate) use bert::position_ids;
pub use heads::ClassificationHead;
pub(crate) use layers::activate;
pub use layers::Kernels;
pub(crate) use mpnet::relative_buckets;

use crate::batch::Batch;
use crate::config::{Architecture, Head, ModelConfig};

/// The encoder of one of the supported families.
pub enum Encoder {
    Bert(bert::BertEncoder),
    MpNet(mpnet::MpNetEncoder),
}

impl Encoder {
    pub fn weights(&self) -> weights::EncoderWeights {
        match self {
            Encoder::Bert(e) => e.weights(),
            Encoder::MpNet(e) => e.weights(),
        }
    }

    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        match self {
            Encoder::Bert(e) => e.forward(batch),
            Encoder::MpNet(e) => e.forward(batch),
        }
    }
}

/// Encoder plus, for cross-encoders, its classification head.
pub struct Transformer {
    pub config: ModelConfig,
    pub encoder: Encoder,
    pub head: Option<ClassificationHead>,
}

/// Where checkpoints put the encoder: bare (`BertModel.save_pretrained`) or under the task
/// model's attribute name (`bert.`, `roberta.`, `mpnet.`).
const ENCODER_PREFIXES: [&str; 5] = ["", "bert.", "roberta.", "mpnet.", "model."];

impl Transformer {
    /// Builds the network named by `config` from the tensors in `vb`. The head is loaded only
    /// when `with_head` is set, so a cross-encoder checkpoint can also serve as an embedder.
    pub fn load(
        config: ModelConfig,
        vb: VarBuilder,
        with_head: bool,
        kernels: Kernels,
    ) -> candle_core::Result<Self> {
        let prefix = ENCODER_PREFIXES
            .iter()
            .find(|p| vb.contains_tensor(&format!("{p}embeddings.word_embeddings.weight")))
            .copied()
            .unwrap_or(match (config.head, config.architecture) {
                (Head::Encoder, _) => "",
                (_, Architecture::Bert) => "bert.",
                (_, Architecture::XlmRoberta) => "roberta.",
                (_, Architecture::MpNet) => "mpnet.",
                (_, Architecture::Decoder) => "model.",
            });
        let encoder_vb = if prefix.is_empty() {
            vb.clone()
        } else {
            vb.pp(prefix.trim_end_matches('.'))
        };
        let encoder = match config.architecture {
            Architecture::Bert | Architecture::XlmRoberta => Encoder::Bert(
                bert::BertEncoder::load(&config, encoder_vb.clone(), kernels)?,
            ),
            Architecture::MpNet => Encoder::MpNet(mpnet::MpNetEncoder::load(
                &config,
                encoder_vb.clone(),
                kernels,
            )?),
            Architecture::Decoder => candle_core::bail!(
                "{} is a decoder LLM: it can rerank (sift rerank, --rerank-model) but not embed",
                config.architecture_name
            ),
        };
        let head = if with_head {
            Some(ClassificationHead::load(&config, encoder_vb, vb)?)
        } else {
            None
        };
        Ok(Transformer {
            config,
            encoder,
            head,
        })
    }

    /// Token states `[b, t, hidden]`.
    pub fn hidden_states(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        self.encoder.forward(batch)
    }

    /// Classification logits `[b, num_labels]`; an error when loaded without a head.
    pub fn logits(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let head = self.head.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("model was loaded without its classification head".into())
        })?;
        head.forward(&self.encoder.forward(batch)?)
    }
}
