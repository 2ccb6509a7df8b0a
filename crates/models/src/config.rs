//! `config.json` of a Hugging Face model directory: which architecture, how big, which head.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};

/// The encoder families sift implements. Each covers several published model lines; see
/// [`ModelError::UnsupportedArchitecture`] for the list shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT: BGE-en/zh, MiniLM, E5, text2vec, ms-marco MiniLM cross-encoders.
    Bert,
    /// XLM-RoBERTa and RoBERTa: bge-m3, bge-reranker-base/large/v2-m3, multilingual E5.
    XlmRoberta,
    /// MPNet: all-mpnet-base-v2 and its fine-tunes.
    MpNet,
    /// A decoder LLM (Llama/Mistral, Qwen2/3, Gemma 1–3): used as an LLM reranker; the family
    /// and its switches are in [`ModelConfig::decoder`].
    Decoder,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::XlmRoberta => "xlm-roberta",
            Architecture::MpNet => "mpnet",
            Architecture::Decoder => "decoder",
        }
    }
}

/// What sits on top of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A bare encoder (`BertModel`, ...): token states, pooled into an embedding.
    Encoder,
    /// `*ForSequenceClassification`: one logit per label, used as a cross-encoder.
    SequenceClassification,
    /// `*ForCausalLM`: next-token logits, used as an LLM reranker (the logit of "yes").
    CausalLm,
}

/// Activation of the feed-forward block (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf (`"gelu"`), what BERT checkpoints were trained with.
    GeluErf,
    /// Tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    GeluTanh,
    Relu,
    Silu,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default)]
    type_vocab_size: Option<usize>,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    relative_attention_num_buckets: Option<usize>,
    #[serde(default)]
    position_embedding_type: Option<String>,
    #[serde(default)]
    sift_layerwise: Option<LayerwiseSection>,
}

/// `"sift_layerwise"` in a layerwise cross-encoder's config.json (docs/design.md, "Layerwise
/// cross-encoders").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerwiseSection {
    exit_layers: Vec<usize>,
}

/// The exit layers before the last, sorted; every listed layer must exist, and only a
/// cross-encoder can have them.
fn exit_layers(
    section: &Option<LayerwiseSection>,
    num_layers: usize,
    head: Head,
) -> std::result::Result<Vec<usize>, String> {
    let Some(section) = section else {
        return Ok(Vec::new());
    };
    if head != Head::SequenceClassification {
        return Err(
            "sift_layerwise applies to cross-encoders (*ForSequenceClassification) only".into(),
        );
    }
    let mut layers = section.exit_layers.clone();
    layers.sort_unstable();
    layers.dedup();
    if let Some(&bad) = layers.iter().find(|&&l| l == 0 || l > num_layers) {
        return Err(format!(
            "sift_layerwise.exit_layers names layer {bad}; layers are counted from 1 to {num_layers}"
        ));
    }
    layers.retain(|&l| l != num_layers);
    Ok(layers)
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}

/// The parts of `config.json` that decide how the network is built.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub head: Head,
    /// The `architectures` entry as written, for messages and `sift models`.
    pub architecture_name: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub max_position_embeddings: usize,
    /// 0 when the model has no token-type embeddings (MPNet).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// Labels of the classification head, ordered by id; empty for bare encoders.
    pub labels: Vec<String>,
    /// MPNet's relative position buckets.
    pub relative_attention_num_buckets: usize,
    /// Everything a decoder needs; `Some` exactly when `architecture` is `Decoder`.
    pub decoder: Option<crate::decoder::DecoderConfig>,
    /// The dtype the weights are stored in, as the config says it (`dtype` in transformers 5,
    /// `torch_dtype` in 4.x); `None` when it does not (weights load as f32 either way).
    pub stored_dtype: Option<String>,
    /// Layerwise cross-encoders: the layers before the last (counted from 1) that have their
    /// own scoring head (`"sift_layerwise": {"exit_layers": [...]}` in config.json); empty for
    /// every other model.
    pub exit_layers: Vec<usize>,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::InvalidConfig {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text, path)
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_owned(),
            reason,
        };
        // Peek at the type first so an unsupported model gets the architecture error, not a
        // complaint about a missing field its config happens not to have.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let architectures: Vec<String> = value
            .get("architectures")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        let model_type = value
            .get("model_type")
            .and_then(|m| m.as_str())
            .map(str::to_owned);
        let stored_dtype = value
            .get("dtype")
            .or_else(|| value.get("torch_dtype"))
            .and_then(|d| d.as_str())
            .map(str::to_owned);
        if model_type
            .as_deref()
            .and_then(crate::decoder::DecoderFamily::from_model_type)
            .is_some()
        {
            return Ok(ModelConfig {
                stored_dtype,
                ..Self::from_decoder(&value, &architectures, path)?
            });
        }
        let (architecture, head, architecture_name) =
            classify(&architectures, model_type.as_deref()).ok_or_else(|| {
                ModelError::UnsupportedArchitecture {
                    found: architectures
                        .first()
                        .cloned()
                        .or(model_type.clone())
                        .unwrap_or_else(|| "<none given>".into()),
                    path: path.to_owned(),
                }
            })?;

        let raw: RawConfig =
            serde_json::from_value(value).map_err(|e| invalid(format!("bad field: {e}")))?;
        if let Some(kind) = raw.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(invalid(format!(
                    "position_embedding_type {kind:?} is not supported (only \"absolute\")"
                )));
            }
        }
        if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads)
        {
            return Err(invalid(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        let activation = match raw.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => return Err(invalid(format!("hidden_act {other:?} is not supported"))),
        };
        let labels = match (&raw.id2label, raw.num_labels) {
            (Some(map), _) => {
                let mut pairs: Vec<(usize, String)> = map
                    .iter()
                    .map(|(k, v)| {
                        k.parse::<usize>()
                            .map(|id| (id, v.clone()))
                            .map_err(|_| invalid(format!("id2label key {k:?} is not an integer")))
                    })
                    .collect::<Result<_>>()?;
                pairs.sort();
                pairs.into_iter().map(|(_, v)| v).collect()
            }
            (None, Some(n)) => (0..n).map(|i| format!("LABEL_{i}")).collect(),
            // transformers' default when neither is given.
            (None, None) => vec!["LABEL_0".into(), "LABEL_1".into()],
        };
        let default_pad = match architecture {
            Architecture::Bert | Architecture::Decoder => 0,
            Architecture::XlmRoberta | Architecture::MpNet => 1,
        };
        let type_vocab_size = match architecture {
            Architecture::MpNet => 0,
            _ => raw.type_vocab_size.unwrap_or(2),
        };
        let buckets = raw.relative_attention_num_buckets.unwrap_or(32);
        // MPNet's bucketing halves the buckets per direction and keeps a quarter exact; fewer
        // than 4 leaves no exact bucket and the log-spaced ones divide by zero.
        if architecture == Architecture::MpNet && buckets < 4 {
            return Err(invalid(format!(
                "relative_attention_num_buckets {buckets} is too small (MPNet needs at least 4)"
            )));
        }
        if raw.num_hidden_layers == 0 || raw.vocab_size == 0 || raw.max_position_embeddings == 0 {
            return Err(invalid(
                "num_hidden_layers, vocab_size and max_position_embeddings must be at least 1"
                    .into(),
            ));
        }
        let exit_layers =
            exit_layers(&raw.sift_layerwise, raw.num_hidden_layers, head).map_err(invalid)?;
        Ok(ModelConfig {
            architecture,
            head,
            architecture_name,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            activation,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            pad_token_id: raw.pad_token_id.unwrap_or(default_pad),
            labels: if head == Head::SequenceClassification {
                labels
            } else {
                Vec::new()
            },
            relative_attention_num_buckets: buckets,
            decoder: None,
            stored_dtype,
            exit_layers,
        })
    }

    fn from_decoder(
        value: &serde_json::Value,
        architectures: &[String],
        path: &Path,
    ) -> Result<Self> {
        let d = crate::decoder::DecoderConfig::from_value(value, path)?;
        let name = architectures
            .first()
            .cloned()
            .unwrap_or_else(|| d.model_type.clone());
        Ok(Self::for_decoder(d, name))
    }

    /// The encoder-shaped summary of a decoder's config (what listings, `/info` and length
    /// checks read), with the decoder's own config inside.
    pub fn for_decoder(d: crate::decoder::DecoderConfig, architecture_name: String) -> Self {
        ModelConfig {
            architecture: Architecture::Decoder,
            head: Head::CausalLm,
            architecture_name,
            vocab_size: d.vocab_size,
            hidden_size: d.hidden_size,
            num_layers: d.num_layers(),
            num_heads: d.num_heads,
            intermediate_size: d.intermediate_size,
            activation: d.activation,
            max_position_embeddings: d.max_position_embeddings,
            type_vocab_size: 0,
            layer_norm_eps: d.rms_norm_eps,
            pad_token_id: d.pad_token_id.unwrap_or(0),
            labels: Vec::new(),
            relative_attention_num_buckets: 0,
            decoder: Some(d),
            stored_dtype: None,
            exit_layers: Vec::new(),
        }
    }

    /// Every layer a cross-encoder can score after: its exit layers, then the last.
    pub fn all_exit_layers(&self) -> Vec<usize> {
        let mut layers = self.exit_layers.clone();
        layers.push(self.num_layers);
        layers
    }

    /// Longest input in tokens the position embeddings allow. RoBERTa-style models reserve the
    /// first `pad_token_id + 1` positions, so XLM-R's 514 embeddings give 512 tokens.
    pub fn max_tokens(&self) -> usize {
        match self.architecture {
            Architecture::Bert | Architecture::Decoder => self.max_position_embeddings,
            Architecture::XlmRoberta | Architecture::MpNet => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
        }
    }
}

fn classify(
    architectures: &[String],
    model_type: Option<&str>,
) -> Option<(Architecture, Head, String)> {
    let family = |name: &str| -> Option<Architecture> {
        let lower = name.to_ascii_lowercase().replace(['-', '_'], "");
        if lower.starts_with("xlmroberta") || lower.starts_with("roberta") {
            Some(Architecture::XlmRoberta)
        } else if lower.starts_with("mpnet") {
            Some(Architecture::MpNet)
        } else if lower.starts_with("bert") {
            Some(Architecture::Bert)
        } else {
            None
        }
    };
    if let Some(name) = architectures.first() {
        let arch = family(name)?;
        let head = if name.ends_with("ForSequenceClassification") {
            Head::SequenceClassification
        } else if name.ends_with("Model") || name.ends_with("ForMaskedLM") {
            Head::Encoder
        } else {
            return None;
        };
        return Some((arch, head, name.clone()));
    }
    let arch = family(model_type?)?;
    Some((arch, Head::Encoder, model_type?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ModelConfig> {
        ModelConfig::from_json(json, Path::new("config.json"))
    }

    const BERT: &str = r#"{"architectures":["BertForSequenceClassification"],"model_type":"bert",
        "vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
        "intermediate_size":16,"max_position_embeddings":32,"id2label":{"0":"LABEL_0"}}"#;

    #[test]
    fn configs_that_would_underflow_are_refused() {
        let mpnet = BERT
            .replace("BertFor", "MPNetFor")
            .replace("\"bert\"", "\"mpnet\"");
        assert!(parse(&mpnet).is_ok());
        for buckets in [0, 1, 3] {
            let bad = mpnet.replace(
                "\"vocab_size\"",
                &format!("\"relative_attention_num_buckets\":{buckets},\"vocab_size\""),
            );
            let e = parse(&bad).unwrap_err().to_string();
            assert!(e.contains("relative_attention_num_buckets"), "{e}");
        }
        let e = parse(&BERT.replace("\"num_hidden_layers\":1", "\"num_hidden_layers\":0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_hidden_layers"), "{e}");
    }

    #[test]
    fn reads_a_bert_classifier() {
        let c = parse(BERT).unwrap();
        assert_eq!(c.architecture, Architecture::Bert);
        assert_eq!(c.head, Head::SequenceClassification);
        assert_eq!(c.labels, vec!["LABEL_0"]);
        assert_eq!(c.activation, Activation::GeluErf);
        assert_eq!(c.max_tokens(), 32);
    }

    #[test]
    fn xlm_roberta_reserves_padding_positions() {
        let c = parse(
            &BERT
                .replace("BertFor", "XLMRobertaFor")
                .replace("\"bert\"", "\"xlm-roberta\""),
        )
        .unwrap();
        assert_eq!(c.architecture, Architecture::XlmRoberta);
        assert_eq!(c.max_tokens(), 30);
    }

    #[test]
    fn unsupported_architecture_names_the_supported_ones() {
        let err =
            parse(&BERT.replace("BertForSequenceClassification", "FalconForCausalLM")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ModelError::UnsupportedArchitecture { .. }));
        assert!(
            msg.contains("FalconForCausalLM") && msg.contains("MPNet") && msg.contains("Qwen3"),
            "{msg}"
        );
    }

    #[test]
    fn decoders_are_read_with_their_own_config() {
        let c = parse(
            r#"{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","vocab_size":100,
            "hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
            "head_dim":8,"max_position_embeddings":128}"#,
        )
        .unwrap();
        assert_eq!(c.architecture, Architecture::Decoder);
        assert_eq!(c.head, Head::CausalLm);
        assert_eq!(c.max_tokens(), 128);
        assert_eq!(c.decoder.unwrap().num_layers(), 2);
    }

    #[test]
    fn bad_json_and_missing_fields_are_errors() {
        assert!(matches!(parse("{"), Err(ModelError::InvalidConfig { .. })));
        assert!(matches!(
            parse(r#"{"architectures":["BertModel"]}"#),
            Err(ModelError::InvalidConfig { .. })
        ));
    }
}
