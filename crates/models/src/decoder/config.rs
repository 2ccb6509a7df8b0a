//! `config.json` of a decoder LLM, in both layouts transformers writes.
//!
//! transformers 4.x keeps the rotary base at the top level (`rope_theta`, Gemma 3's
//! `rope_local_base_freq`, `rope_scaling`) and names the dtype `torch_dtype`; 5.x moves them into
//! `rope_parameters` (one dict, or one per attention kind for Gemma 3), writes `dtype` and
//! spells out `layer_types`. Both are read here into one [`DecoderConfig`]; the dtype is not
//! needed (weights are converted to f32 on load).
//!
//! What a config leaves implicit is filled in as transformers does for that family; each
//! default is written next to the family below and in docs/design.md.

use std::path::Path;

use serde_json::Value;

use crate::config::Activation;
use crate::error::{ModelError, Result};

/// The decoder families sift implements. They share one skeleton (pre-norm layers, rotary
/// positions, grouped-query attention, a gated MLP) and differ in the switches of
/// [`DecoderConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderFamily {
    /// Llama 2/3 and Mistral (`llama`, `mistral`).
    Llama,
    /// Qwen2 / Qwen2.5: biases on the q, k, v projections.
    Qwen2,
    /// Qwen3 (and Qwen3-Reranker): RMS norm on each head's queries and keys.
    Qwen3,
    /// Gemma (1): scaled embeddings, `1 + w` norms, tanh-GELU.
    Gemma,
    /// Gemma 2: Gemma plus norms after attention and MLP, soft-capped attention scores and
    /// logits, sliding-window layers alternating with global ones.
    Gemma2,
    /// Gemma 3 (text): Gemma 2 without soft-capping, with query/key norms and a different
    /// rotary base for local (sliding) and global layers.
    Gemma3,
    /// MiniCPM: Llama with scaled embeddings (`scale_emb`) and depth-scaled residuals
    /// (`scale_depth / sqrt(layers)`); FlagEmbedding's layerwise reranker adds a one-output head
    /// per layer from `start_layer` on.
    MiniCpm,
}

impl DecoderFamily {
    /// The family a config's `model_type` names, if sift implements it.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Some(match model_type {
            "llama" | "mistral" => DecoderFamily::Llama,
            "qwen2" => DecoderFamily::Qwen2,
            "qwen3" => DecoderFamily::Qwen3,
            "gemma" => DecoderFamily::Gemma,
            // FlagEmbedding's lightweight reranker: Gemma 2 with layerwise heads.
            "gemma2" | "cost_wise_gemma" => DecoderFamily::Gemma2,
            "gemma3_text" => DecoderFamily::Gemma3,
            "minicpm" => DecoderFamily::MiniCpm,
            _ => return None,
        })
    }

    fn is_gemma(self) -> bool {
        matches!(
            self,
            DecoderFamily::Gemma | DecoderFamily::Gemma2 | DecoderFamily::Gemma3
        )
    }
}

/// Rotary position embedding of one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// Linear position interpolation: positions are divided by this (1 = none).
    pub linear_factor: f64,
}

/// One layer's attention span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerSpec {
    /// `Some(w)`: a token sees itself and the `w - 1` tokens before it (transformers'
    /// `sliding_attention`); `None`: every earlier token.
    pub window: Option<usize>,
    pub rope: Rope,
}

/// FlagEmbedding's layerwise heads: one one-output head (`lm_head.{i}.linear_head`) per layer in
/// `start_layer..=num_layers` (every `layer_sep`-th), scoring the final-normed hidden state
/// after that many layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerwiseHeads {
    /// The shallowest layer with a head.
    pub start_layer: usize,
    /// Layers between two heads (1: every layer).
    pub layer_sep: usize,
    /// Which head scores a cutoff.
    pub head_for_cutoff: HeadIndexing,
    /// Whether the model can compress document tokens mid-network (the lightweight Gemma 2).
    pub token_compression: bool,
}

/// How FlagEmbedding picks the head that scores cutoff layer N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadIndexing {
    /// `lm_head[(N − start_layer) / layer_sep]`: the head trained for layer N
    /// (`LayerWiseMiniCPMForCausalLM`).
    ByLayer,
    /// `lm_head[i]` with i the cutoff's position in the request — for one cutoff always the
    /// first head, whatever N (`CostWiseGemmaForCausalLM`'s indexing, reproduced for parity).
    FirstRequested,
}

impl LayerwiseHeads {
    /// The layers that have a head.
    pub fn layers(&self, num_layers: usize) -> impl Iterator<Item = usize> {
        (self.start_layer..=num_layers).step_by(self.layer_sep.max(1))
    }

    /// The head (index into `lm_head`) that scores cutoff `layer`.
    pub fn head_index(&self, layer: usize) -> usize {
        match self.head_for_cutoff {
            HeadIndexing::ByLayer => (layer - self.start_layer) / self.layer_sep.max(1),
            HeadIndexing::FirstRequested => 0,
        }
    }
}

/// Everything that decides how a decoder is built and run.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    pub family: DecoderFamily,
    /// `model_type` as written.
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub activation: Activation,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub layers: Vec<LayerSpec>,
    /// Biases on the q, k and v projections (Qwen2 always; others with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (`attention_bias` in Llama and Qwen3).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// RMS norm over each head's queries and keys before the rotation (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Gemma stores norm weights as offsets from 1: the scale is `1 + w`.
    pub norm_adds_one: bool,
    /// Embeddings multiplied by this: `sqrt(hidden_size)` (Gemma), `scale_emb` (MiniCPM).
    pub embedding_scale: Option<f64>,
    /// Each layer's attention and MLP outputs are multiplied by this before the residual add:
    /// MiniCPM's `scale_depth / sqrt(num_layers)`; 1 elsewhere.
    pub residual_scale: f64,
    /// The final hidden state is multiplied by this before the vocabulary projection:
    /// MiniCPM's `dim_model_base / hidden_size`; 1 elsewhere.
    pub head_input_scale: f64,
    /// Per-layer one-output heads instead of the vocabulary projection.
    pub layerwise: Option<LayerwiseHeads>,
    /// Norms after attention and after the MLP too (Gemma 2 and 3).
    pub sandwich_norms: bool,
    /// Multiplies attention scores: `head_dim^-0.5`, or Gemma 2/3's
    /// `query_pre_attn_scalar^-0.5`.
    pub attention_scale: f64,
    /// `cap · tanh(score / cap)` on attention scores (Gemma 2).
    pub attention_softcap: Option<f64>,
    /// `cap · tanh(logit / cap)` on output logits (Gemma 2).
    pub final_logit_softcap: Option<f64>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

impl DecoderConfig {
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn from_value(v: &Value, path: &Path) -> Result<Self> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_owned(),
            reason,
        };
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let family = DecoderFamily::from_model_type(&model_type).ok_or_else(|| {
            ModelError::UnsupportedArchitecture {
                found: model_type.clone(),
                path: path.to_owned(),
            }
        })?;
        let usize_field = |name: &str| -> Result<Option<usize>> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| invalid(format!("{name} must be a whole number, not {x}"))),
            }
        };
        let f64_field = |name: &str| -> Result<Option<f64>> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| invalid(format!("{name} must be a number, not {x}"))),
            }
        };
        let bool_field = |name: &str| -> Option<bool> { v.get(name).and_then(Value::as_bool) };
        let required = |name: &str| -> Result<usize> {
            usize_field(name)?.ok_or_else(|| invalid(format!("{name} is missing")))
        };

        let vocab_size = required("vocab_size")?;
        let hidden_size = required("hidden_size")?;
        let intermediate_size = required("intermediate_size")?;
        let num_layers = required("num_hidden_layers")?;
        let num_heads = required("num_attention_heads")?;
        if vocab_size == 0 || hidden_size == 0 || num_layers == 0 || num_heads == 0 {
            return Err(invalid(
                "vocab_size, hidden_size, num_hidden_layers and num_attention_heads must be at least 1"
                    .into(),
            ));
        }
        let num_kv_heads = usize_field("num_key_value_heads")?.unwrap_or(num_heads);
        if num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
            return Err(invalid(format!(
                "num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}"
            )));
        }
        // Qwen3 and the Gemmas write head_dim; Llama/Mistral/Qwen2 derive it.
        let head_dim = match usize_field("head_dim")? {
            Some(d) => d,
            None if hidden_size.is_multiple_of(num_heads) => hidden_size / num_heads,
            None => {
                return Err(invalid(format!(
                    "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"
                )))
            }
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(invalid(format!(
                "head_dim {head_dim} must be even (rotary embeddings rotate pairs)"
            )));
        }

        // Gemma: transformers reads `hidden_activation` (Gemma 2/3) or `hidden_act` (Gemma), and
        // the legacy `"gelu"` of the first Gemma releases means the tanh approximation.
        let act_name = if family.is_gemma() {
            v.get("hidden_activation")
                .and_then(Value::as_str)
                .or_else(|| v.get("hidden_act").and_then(Value::as_str))
                .unwrap_or("gelu_pytorch_tanh")
        } else {
            v.get("hidden_act")
                .and_then(Value::as_str)
                .unwrap_or("silu")
        };
        let activation = match act_name {
            "gelu" if family.is_gemma() => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            other => return Err(invalid(format!("hidden_act {other:?} is not supported"))),
        };

        let layer_types = layer_types(v, family, num_layers, &invalid, &usize_field)?;
        let sliding_window = usize_field("sliding_window")?;
        let ropes = ropes(v, family, &invalid, &f64_field)?;
        let mut layers = Vec::with_capacity(num_layers);
        for kind in layer_types {
            let (window, rope) = match kind {
                LayerKind::Full => (None, ropes.full),
                LayerKind::Sliding => {
                    let w = sliding_window.ok_or_else(|| {
                        invalid("a sliding_attention layer needs sliding_window".into())
                    })?;
                    if w == 0 {
                        return Err(invalid("sliding_window must be at least 1".into()));
                    }
                    (Some(w), ropes.sliding)
                }
            };
            layers.push(LayerSpec { window, rope });
        }

        let attention_bias = bool_field("attention_bias").unwrap_or(false);
        let (qkv_bias, o_bias) = match family {
            // transformers' Qwen2 attention always has q/k/v biases and never an output bias.
            DecoderFamily::Qwen2 => (true, false),
            _ => (attention_bias, attention_bias),
        };
        let gemma23 = matches!(family, DecoderFamily::Gemma2 | DecoderFamily::Gemma3);
        let attention_scale = if gemma23 {
            let scalar = f64_field("query_pre_attn_scalar")?.unwrap_or(256.0);
            if scalar <= 0.0 {
                return Err(invalid("query_pre_attn_scalar must be positive".into()));
            }
            scalar.powf(-0.5)
        } else {
            (head_dim as f64).powf(-0.5)
        };
        let softcap = |name: &str, default: Option<f64>| -> Result<Option<f64>> {
            let cap = match v.get(name) {
                Some(Value::Null) => None,
                None => default,
                Some(_) => f64_field(name)?,
            };
            match cap {
                Some(c) if c <= 0.0 => Err(invalid(format!("{name} must be positive"))),
                c => Ok(c),
            }
        };
        let (attention_softcap, final_logit_softcap) = match family {
            DecoderFamily::Gemma2 => (
                softcap("attn_logit_softcapping", Some(50.0))?,
                softcap("final_logit_softcapping", Some(30.0))?,
            ),
            DecoderFamily::Gemma3 => (
                softcap("attn_logit_softcapping", None)?,
                softcap("final_logit_softcapping", None)?,
            ),
            _ => (None, None),
        };
        let id =
            |name: &str| -> Option<u32> { v.get(name).and_then(Value::as_u64).map(|n| n as u32) };
        Ok(DecoderConfig {
            family,
            model_type,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_heads,
            num_kv_heads,
            head_dim,
            activation,
            rms_norm_eps: f64_field("rms_norm_eps")?.unwrap_or(1e-6),
            max_position_embeddings: usize_field("max_position_embeddings")?.unwrap_or(
                match family {
                    DecoderFamily::Llama | DecoderFamily::MiniCpm => 2048,
                    DecoderFamily::Gemma | DecoderFamily::Gemma2 => 8192,
                    DecoderFamily::Gemma3 => 131_072,
                    DecoderFamily::Qwen2 | DecoderFamily::Qwen3 => 32_768,
                },
            ),
            layers,
            qkv_bias,
            o_bias,
            mlp_bias: bool_field("mlp_bias").unwrap_or(false),
            qk_norm: matches!(family, DecoderFamily::Qwen3 | DecoderFamily::Gemma3),
            norm_adds_one: family.is_gemma(),
            embedding_scale: match family {
                _ if family.is_gemma() => Some((hidden_size as f64).sqrt()),
                DecoderFamily::MiniCpm => Some(f64_field("scale_emb")?.unwrap_or(1.0)),
                _ => None,
            },
            residual_scale: match family {
                DecoderFamily::MiniCpm => {
                    f64_field("scale_depth")?.unwrap_or(1.0) / (num_layers as f64).sqrt()
                }
                _ => 1.0,
            },
            head_input_scale: match family {
                DecoderFamily::MiniCpm => {
                    f64_field("dim_model_base")?.unwrap_or(1.0) / hidden_size as f64
                }
                _ => 1.0,
            },
            layerwise: layerwise_heads(v, family, num_layers, &invalid)?,
            sandwich_norms: gemma23,
            attention_scale,
            attention_softcap,
            final_logit_softcap,
            // Gemma and MiniCPM tie by default; Llama, Mistral and Qwen do not (Qwen3-0.6B's config says so).
            tie_word_embeddings: bool_field("tie_word_embeddings")
                .unwrap_or(family.is_gemma() || family == DecoderFamily::MiniCpm),
            bos_token_id: id("bos_token_id"),
            pad_token_id: id("pad_token_id"),
        })
    }
}

/// FlagEmbedding's layerwise heads when the config declares them (`head_type`, `start_layer`):
/// only the published kind, one output per layer (`head_type: "simple"`, `head_multi: true`).
fn layerwise_heads(
    v: &Value,
    family: DecoderFamily,
    num_layers: usize,
    invalid: &dyn Fn(String) -> ModelError,
) -> Result<Option<LayerwiseHeads>> {
    let start = |default: u64| -> Result<usize> {
        let start_layer = v
            .get("start_layer")
            .and_then(Value::as_u64)
            .unwrap_or(default) as usize;
        if start_layer == 0 || start_layer > num_layers {
            return Err(invalid(format!(
                "start_layer {start_layer} must be within 1..={num_layers}"
            )));
        }
        Ok(start_layer)
    };
    if family == DecoderFamily::Gemma2 {
        // CostWiseGemma: heads only with `layer_wise`, else an ordinary vocabulary head.
        if !v
            .get("layer_wise")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let layer_sep = v.get("layer_sep").and_then(Value::as_u64).unwrap_or(28) as usize;
        if layer_sep == 0 {
            return Err(invalid("layer_sep must be at least 1".into()));
        }
        return Ok(Some(LayerwiseHeads {
            start_layer: start(28)?,
            layer_sep,
            head_for_cutoff: HeadIndexing::FirstRequested,
            token_compression: true,
        }));
    }
    let declared = v.get("head_type").is_some() || v.get("start_layer").is_some();
    if family != DecoderFamily::MiniCpm || !declared {
        return Ok(None);
    }
    let head_type = v
        .get("head_type")
        .and_then(Value::as_str)
        .unwrap_or("simple");
    let multi = v.get("head_multi").and_then(Value::as_bool).unwrap_or(true);
    if head_type != "simple" || !multi {
        return Err(invalid(format!(
            "layerwise head_type {head_type:?} with head_multi {multi} is not supported (the published bge-reranker-v2-minicpm-layerwise uses \"simple\" heads, one per layer)"
        )));
    }
    Ok(Some(LayerwiseHeads {
        start_layer: start(8)?,
        layer_sep: 1,
        head_for_cutoff: HeadIndexing::ByLayer,
        token_compression: false,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerKind {
    Full,
    Sliding,
}

/// Which layers attend through a sliding window: `layer_types` when written (5.x), else each
/// family's rule in transformers.
fn layer_types(
    v: &Value,
    family: DecoderFamily,
    num_layers: usize,
    invalid: &dyn Fn(String) -> ModelError,
    usize_field: &dyn Fn(&str) -> Result<Option<usize>>,
) -> Result<Vec<LayerKind>> {
    if let Some(types) = v.get("layer_types").filter(|t| !t.is_null()) {
        let types = types
            .as_array()
            .ok_or_else(|| invalid("layer_types must be a list".into()))?;
        if types.len() != num_layers {
            return Err(invalid(format!(
                "layer_types has {} entries for {num_layers} layers",
                types.len()
            )));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(LayerKind::Full),
                Some("sliding_attention") => Ok(LayerKind::Sliding),
                _ => Err(invalid(format!(
                    "layer type {t} is not supported (full_attention, sliding_attention)"
                ))),
            })
            .collect();
    }
    let has_window = usize_field("sliding_window")?.is_some();
    let kinds = (0..num_layers).map(|i| match family {
        // Mistral's sliding window spans every layer; Llama configs carry none.
        DecoderFamily::Llama if has_window => LayerKind::Sliding,
        DecoderFamily::Llama | DecoderFamily::Gemma | DecoderFamily::MiniCpm => LayerKind::Full,
        // Qwen: only with use_sliding_window, and then from max_window_layers on.
        DecoderFamily::Qwen2 | DecoderFamily::Qwen3 => {
            let used = v
                .get("use_sliding_window")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let from = v
                .get("max_window_layers")
                .and_then(Value::as_u64)
                .unwrap_or(28) as usize;
            if used && has_window && i >= from {
                LayerKind::Sliding
            } else {
                LayerKind::Full
            }
        }
        // Gemma 2: even layers slide.
        DecoderFamily::Gemma2 if i % 2 == 0 => LayerKind::Sliding,
        DecoderFamily::Gemma2 => LayerKind::Full,
        // Gemma 3: every `sliding_window_pattern`-th layer (default 6) is global.
        DecoderFamily::Gemma3 => {
            let pattern = v
                .get("sliding_window_pattern")
                .and_then(Value::as_u64)
                .unwrap_or(6)
                .max(1) as usize;
            if (i + 1) % pattern != 0 {
                LayerKind::Sliding
            } else {
                LayerKind::Full
            }
        }
    });
    Ok(kinds.collect())
}

struct Ropes {
    full: Rope,
    sliding: Rope,
}

/// Rotary settings for global and sliding layers, from either layout.
fn ropes(
    v: &Value,
    family: DecoderFamily,
    invalid: &dyn Fn(String) -> ModelError,
    f64_field: &dyn Fn(&str) -> Result<Option<f64>>,
) -> Result<Ropes> {
    let default_theta = match family {
        DecoderFamily::Gemma3 => 1_000_000.0,
        _ => 10_000.0,
    };
    let parse = |params: Option<&Value>, theta: Option<f64>, base: f64| -> Result<Rope> {
        let theta = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(theta)
            .unwrap_or(base);
        if theta <= 0.0 {
            return Err(invalid("rope_theta must be positive".into()));
        }
        let kind = params
            .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let linear_factor = match kind {
            "default" => 1.0,
            "linear" => {
                let f = params
                    .and_then(|p| p.get("factor"))
                    .and_then(Value::as_f64)
                    .ok_or_else(|| invalid("linear rope scaling needs a factor".into()))?;
                if f <= 0.0 {
                    return Err(invalid("rope scaling factor must be positive".into()));
                }
                f
            }
            other => {
                return Err(invalid(format!(
                    "rope_type {other:?} is not supported (default, linear)"
                )))
            }
        };
        Ok(Rope {
            theta,
            linear_factor,
        })
    };
    let top_theta = f64_field("rope_theta")?;
    let scaling = v.get("rope_scaling").filter(|s| !s.is_null());
    match v.get("rope_parameters").filter(|p| !p.is_null()) {
        // 5.x, one dict per attention kind (Gemma 3).
        Some(p) if p.get("full_attention").is_some() || p.get("sliding_attention").is_some() => {
            let full = parse(p.get("full_attention"), None, default_theta)?;
            let sliding = parse(p.get("sliding_attention"), None, 10_000.0)?;
            Ok(Ropes { full, sliding })
        }
        // 5.x, one dict for every layer.
        Some(p) => {
            let rope = parse(Some(p), None, default_theta)?;
            Ok(Ropes {
                full: rope,
                sliding: rope,
            })
        }
        // 4.x: top-level theta, `rope_scaling` for global layers, Gemma 3's local base.
        None => {
            let full = parse(scaling, top_theta, default_theta)?;
            let sliding = if family == DecoderFamily::Gemma3 {
                Rope {
                    theta: f64_field("rope_local_base_freq")?.unwrap_or(10_000.0),
                    linear_factor: 1.0,
                }
            } else {
                full
            };
            Ok(Ropes { full, sliding })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<DecoderConfig> {
        let v: Value = serde_json::from_str(json).unwrap();
        DecoderConfig::from_value(&v, Path::new("config.json"))
    }

    const QWEN3: &str = r#"{"model_type":"qwen3","vocab_size":100,"hidden_size":32,
        "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"head_dim":16,"rope_theta":1000000.0,"tie_word_embeddings":true}"#;

    #[test]
    fn both_layouts_give_the_same_rope() {
        let old = parse(QWEN3).unwrap();
        let new = parse(&QWEN3.replace(
            "\"rope_theta\":1000000.0",
            "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1000000.0}",
        ))
        .unwrap();
        assert_eq!(old.layers, new.layers);
        assert_eq!(old.layers[0].rope.theta, 1e6);
        assert!(old.qk_norm && old.tie_word_embeddings && !old.qkv_bias);
        assert_eq!(old.head_dim, 16);
    }

    #[test]
    fn gemma3_local_and_global_layers() {
        let base = r#"{"model_type":"gemma3_text","vocab_size":100,"hidden_size":32,
            "intermediate_size":64,"num_hidden_layers":7,"num_attention_heads":2,"head_dim":16,
            "sliding_window":4,"query_pre_attn_scalar":16,ROPE}"#;
        let old = parse(&base.replace(
            "ROPE",
            r#""rope_theta":1000000.0,"rope_local_base_freq":10000.0,"rope_scaling":{"rope_type":"linear","factor":8.0}"#,
        ))
        .unwrap();
        let new = parse(&base.replace(
            "ROPE",
            r#""rope_parameters":{"full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1000000.0},"sliding_attention":{"rope_type":"default","rope_theta":10000.0}}"#,
        ))
        .unwrap();
        assert_eq!(old.layers, new.layers);
        let windows: Vec<_> = old.layers.iter().map(|l| l.window).collect();
        assert_eq!(windows[5], None);
        assert_eq!(windows[0], Some(4));
        assert_eq!(windows[6], Some(4));
        assert_eq!(old.layers[5].rope.linear_factor, 8.0);
        assert_eq!(old.layers[0].rope.theta, 10_000.0);
        assert_eq!(old.attention_scale, 0.25);
        assert!(old.norm_adds_one && old.sandwich_norms && old.qk_norm);
    }

    #[test]
    fn legacy_gemma_gelu_means_tanh() {
        let c = parse(
            r#"{"model_type":"gemma","vocab_size":100,"hidden_size":32,"intermediate_size":64,
            "num_hidden_layers":1,"num_attention_heads":2,"head_dim":16,"hidden_act":"gelu"}"#,
        )
        .unwrap();
        assert_eq!(c.activation, Activation::GeluTanh);
        assert!(c.tie_word_embeddings);
    }

    #[test]
    fn bad_configs_are_refused() {
        for (from, to, what) in [
            (
                "\"num_key_value_heads\":2",
                "\"num_key_value_heads\":3",
                "num_key_value_heads",
            ),
            ("\"head_dim\":16", "\"head_dim\":15", "head_dim"),
            (
                "\"rope_theta\":1000000.0",
                "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}",
                "yarn",
            ),
            ("\"vocab_size\":100,", "", "vocab_size"),
        ] {
            let e = parse(&QWEN3.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        assert!(matches!(
            parse(&QWEN3.replace("qwen3", "falcon")),
            Err(ModelError::UnsupportedArchitecture { .. })
        ));
    }
}
