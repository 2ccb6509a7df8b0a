//! Network definitions. Built with candle-nn layers from a `VarBuilder`, so the same code runs
//! inference over memory-mapped checkpoints and training over a `VarMap`.

mod bert;
mod dropout;
mod encoder_layer;
mod heads;
mod layers;
mod mpnet;
pub mod weights;

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_nn::VarBuilder;

pub(crate) use bert::position_ids;
pub use dropout::Dropout;
pub use heads::ClassificationHead;
pub(crate) use layers::activate;
pub use layers::Kernels;
pub(crate) use mpnet::relative_buckets;

use crate::batch::Batch;
use crate::config::{Architecture, Head, ModelConfig};
use layers::attention_bias;

/// Where a layerwise checkpoint keeps the head of exit layer `layer`: `exits.{layer}.dense`
/// and `exits.{layer}.out` at its root, names transformers does not know (it loads such a
/// checkpoint as the ordinary model, the last layer's head, and ignores them).
pub fn exit_head_name(layer: usize) -> String {
    format!("exits.{layer}")
}

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

    /// Token states `[b, t, hidden]` after every layer.
    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let state = self.start(batch)?;
        self.run(state, self.num_layers())?.hidden()
    }

    pub fn num_layers(&self) -> usize {
        self.layers().len()
    }

    /// The embeddings of `batch`: the state before the first layer.
    pub fn start(&self, batch: &Batch) -> candle_core::Result<EncoderState> {
        self.start_with_dropout(batch, None)
    }

    /// [`Encoder::start`] for training: `dropout` applies to the embeddings here and to every
    /// layer the state is run through.
    pub fn start_with_dropout(
        &self,
        batch: &Batch,
        mut dropout: Option<Dropout>,
    ) -> candle_core::Result<EncoderState> {
        let mut x = match self {
            Encoder::Bert(e) => e.embed(batch)?,
            Encoder::MpNet(e) => e.embed(batch)?,
        };
        if let Some(d) = dropout.as_mut() {
            x = d.hidden(&x)?;
        }
        let mut state = self.state(x, &batch.mask, 0)?;
        state.dropout = dropout;
        Ok(state)
    }

    /// A state saved after `layers_done` layers (`hidden`: `[b, t, hidden]`, `mask`: `[b, t]`
    /// f32, 1 for real tokens), ready to run the layers after it. Rows may come from different
    /// batches: padding is masked, so a row's states do not depend on its neighbours.
    pub fn resume(
        &self,
        hidden: &Tensor,
        mask: &Tensor,
        layers_done: usize,
    ) -> candle_core::Result<EncoderState> {
        let (b, t, h) = hidden.dims3()?;
        if layers_done > self.num_layers() {
            candle_core::bail!(
                "cannot resume after layer {layers_done} of a {}-layer encoder",
                self.num_layers()
            );
        }
        self.state(hidden.reshape((b * t, h))?, mask, layers_done)
    }

    fn state(
        &self,
        x: Tensor,
        mask: &Tensor,
        layers_done: usize,
    ) -> candle_core::Result<EncoderState> {
        let (b, t) = mask.dims2()?;
        let position_bias = match self {
            Encoder::Bert(_) => None,
            Encoder::MpNet(e) => Some(e.position_bias(t, x.device())?),
        };
        Ok(EncoderState {
            x,
            b,
            t,
            bias: attention_bias(mask)?,
            position_bias,
            layers_done,
            dropout: None,
        })
    }

    /// Runs the layers after `state.layers_done` up to and including layer `until` (counted
    /// from 1); the rest are never touched.
    pub fn run(&self, mut state: EncoderState, until: usize) -> candle_core::Result<EncoderState> {
        if until < state.layers_done || until > self.num_layers() {
            candle_core::bail!(
                "cannot run from layer {} to layer {until} of a {}-layer encoder",
                state.layers_done,
                self.num_layers()
            );
        }
        let (num_heads, kernels) = match self {
            Encoder::Bert(e) => (e.num_heads(), e.kernels()),
            Encoder::MpNet(e) => (e.num_heads(), e.kernels()),
        };
        for layer in &self.layers()[state.layers_done..until] {
            state.x = layer.forward(
                &state.x,
                (state.b, state.t),
                num_heads,
                &state.bias,
                state.position_bias.as_ref(),
                kernels,
                state.dropout.as_mut(),
            )?;
        }
        state.layers_done = until;
        Ok(state)
    }

    fn layers(&self) -> &[encoder_layer::EncoderLayer] {
        match self {
            Encoder::Bert(e) => e.layers(),
            Encoder::MpNet(e) => e.layers(),
        }
    }
}

/// Token states of one padded batch between two layers: what an exit head reads and what a
/// rerank cascade carries from its first stage to its second.
pub struct EncoderState {
    /// `[b*t, hidden]`.
    x: Tensor,
    b: usize,
    t: usize,
    /// `[b, 1, 1, t]` padding bias.
    bias: Tensor,
    /// MPNet's `[1, heads, t, t]` relative-position bias.
    position_bias: Option<Tensor>,
    /// Layers run so far (0: the embeddings).
    pub layers_done: usize,
    /// Training only: the masks of the layers still to run.
    dropout: Option<Dropout>,
}

impl EncoderState {
    /// `[b, t, hidden]`.
    pub fn hidden(&self) -> candle_core::Result<Tensor> {
        let h = self.x.dim(1)?;
        self.x.reshape((self.b, self.t, h))
    }
}

/// Encoder plus, for cross-encoders, its classification head — and for layerwise
/// cross-encoders (`sift train-reranker --layerwise`) one more head per exit layer.
pub struct Transformer {
    pub config: ModelConfig,
    pub encoder: Encoder,
    pub head: Option<ClassificationHead>,
    /// Heads of the exit layers before the last, by layer (counted from 1); loaded with the
    /// head. The last layer's head is `head`, the one transformers loads.
    pub exits: BTreeMap<usize, ClassificationHead>,
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
        let (head, exits) = if with_head {
            let exits = config
                .exit_layers
                .iter()
                .map(|&layer| {
                    let head =
                        ClassificationHead::load_exit(&config, vb.pp(exit_head_name(layer)))?;
                    Ok((layer, head))
                })
                .collect::<candle_core::Result<_>>()?;
            (
                Some(ClassificationHead::load(&config, encoder_vb, vb)?),
                exits,
            )
        } else {
            (None, BTreeMap::new())
        };
        Ok(Transformer {
            config,
            encoder,
            head,
            exits,
        })
    }

    /// Token states `[b, t, hidden]`.
    pub fn hidden_states(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        self.encoder.forward(batch)
    }

    /// Token states `[b, t, hidden]` of a training forward pass with `dropout`.
    pub fn hidden_states_with_dropout(
        &self,
        batch: &Batch,
        dropout: Dropout,
    ) -> candle_core::Result<Tensor> {
        let state = self.encoder.start_with_dropout(batch, Some(dropout))?;
        self.encoder.run(state, self.encoder.num_layers())?.hidden()
    }

    /// Classification logits `[b, num_labels]`; an error when loaded without a head.
    pub fn logits(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        self.logits_at(batch, self.encoder.num_layers())
    }

    /// Logits of the head at exit layer `layer` (counted from 1), running only the layers up
    /// to it.
    pub fn logits_at(&self, batch: &Batch, layer: usize) -> candle_core::Result<Tensor> {
        let state = self.encoder.run(self.encoder.start(batch)?, layer)?;
        self.exit_logits(&state)
    }

    /// Logits of the head at the layer `state` has reached; an error where it has none.
    pub fn exit_logits(&self, state: &EncoderState) -> candle_core::Result<Tensor> {
        self.exit_head(state.layers_done)?.forward(&state.hidden()?)
    }

    /// The head scoring after `layer` layers.
    pub fn exit_head(&self, layer: usize) -> candle_core::Result<&ClassificationHead> {
        let head = if layer == self.encoder.num_layers() {
            self.head.as_ref()
        } else {
            self.exits.get(&layer)
        };
        head.ok_or_else(|| {
            candle_core::Error::Msg(if self.head.is_none() {
                "model was loaded without its classification head".into()
            } else {
                format!("the model has no head after layer {layer}")
            })
        })
    }

    /// Logits of every exit head `[b, num_labels]`, shallowest first, from one pass (training
    /// a layerwise model reads them all).
    pub fn logits_at_every_exit(&self, batch: &Batch) -> candle_core::Result<Vec<(usize, Tensor)>> {
        let mut state = self.encoder.start(batch)?;
        let mut out = Vec::new();
        for layer in self.config.all_exit_layers() {
            state = self.encoder.run(state, layer)?;
            out.push((layer, self.exit_logits(&state)?));
        }
        Ok(out)
    }
}
