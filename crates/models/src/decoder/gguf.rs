//! Decoders from a GGUF file (llama.cpp's format): the config from its metadata, the weights
//! under their Hugging Face names (dequantized to f32, or for int8 the quantized matrices kept
//! in their blocks: [`super::DecoderWeights`]), and the tokenizer rebuilt from the vocabulary
//! it carries — so the rest of sift sees the same model a Hugging Face directory gives.
//!
//! Two things llama.cpp's converter does to weights are undone here, as transformers' GGUF
//! loader undoes them: Llama's query and key rows are permuted for llama.cpp's interleaved
//! rotation (sift rotates halves; quantized rows are moved as whole byte runs), and Gemma's
//! norm weights are stored as `1 + w`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};
use serde_json::{json, Map, Value};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::{AddedToken, Tokenizer};

use super::config::{DecoderConfig, DecoderFamily};
use crate::error::{ModelError, Result};
use crate::Precision;

/// Everything read from one GGUF file.
pub struct GgufModel {
    /// The config as a Hugging Face directory's would read (BOS and padding ids included).
    pub config: DecoderConfig,
    /// Weights in f32 under Hugging Face names (`model.layers.0.self_attn.q_proj.weight`, …).
    pub tensors: HashMap<String, Tensor>,
    /// Read for int8 execution: the projections and tables still in their quantized blocks,
    /// under the same names (empty when read for f32).
    pub blocks: HashMap<String, QTensor>,
    pub tokenizer: Tokenizer,
}

/// GGUF tensor types sift dequantizes (candle's k-quants and legacy quants).
pub const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K (not the IQ* or TQ* types)";

/// The header of a GGUF file read: its metadata and tensor index, no tensor data.
struct Header {
    file: std::fs::File,
    content: Content,
    family: DecoderFamily,
    tokens: Vec<String>,
    config: DecoderConfig,
}

/// What a GGUF file holds, from its header alone (what listings need; no weights read).
pub struct GgufSummary {
    pub config: DecoderConfig,
    /// The tensor types present, most tensors first (`Q4_K`, `Q5_0`, `F32`, …).
    pub tensor_types: Vec<String>,
}

impl GgufModel {
    pub fn inspect(path: &Path) -> Result<GgufSummary> {
        let header = Self::header(path)?;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for info in header.content.tensor_infos.values() {
            *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
        }
        let mut types: Vec<(String, usize)> = counts.into_iter().collect();
        types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(GgufSummary {
            config: header.config,
            tensor_types: types.into_iter().map(|(t, _)| t).collect(),
        })
    }

    fn header(path: &Path) -> Result<Header> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_owned(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(|e| invalid(e.to_string()))?;
        let content = Content::read(&mut file).map_err(|e| {
            invalid(format!(
                "not a readable GGUF file: {e} (sift reads the tensor types {SUPPORTED_TYPES})"
            ))
        })?;
        let meta = &content.metadata;
        let arch = meta
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| invalid("general.architecture is missing".into()))?;
        let model_type = match arch.as_str() {
            "gemma3" => "gemma3_text".to_owned(),
            other => other.to_owned(),
        };
        let family = DecoderFamily::from_model_type(&model_type).ok_or_else(|| {
            ModelError::UnsupportedArchitecture {
                found: format!("GGUF architecture {arch} (sift reads llama, qwen2, qwen3, gemma, gemma2, gemma3)"),
                path: path.to_owned(),
            }
        })?;
        let tokens: Vec<String> = strings(meta, "tokenizer.ggml.tokens")
            .ok_or_else(|| invalid("tokenizer.ggml.tokens is missing".into()))?;
        let config_json = hf_config(meta, &arch, &model_type, tokens.len(), &content);
        let config = DecoderConfig::from_value(&config_json, path)?;
        Ok(Header {
            file,
            content,
            family,
            tokens,
            config,
        })
    }

    /// Reads the whole file: config, tokenizer, and every tensor dequantized to f32.
    pub fn read(path: &Path) -> Result<Self> {
        Self::read_for(path, Precision::F32)
    }

    /// Reads the whole file for `precision`: f32 dequantizes every tensor; int8 keeps the
    /// quantized matrices (projections, embeddings, output) in their blocks.
    pub fn read_for(path: &Path, precision: Precision) -> Result<Self> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_owned(),
            reason,
        };
        let Header {
            mut file,
            content,
            family,
            tokens,
            config,
        } = Self::header(path)?;
        let meta = &content.metadata;
        let device = Device::Cpu;
        let mut tensors = HashMap::new();
        let mut blocks = HashMap::new();
        for name in content.tensor_infos.keys() {
            let Some(hf) = hf_name(name, family) else {
                continue;
            };
            let q = content.tensor(&mut file, name, &device).map_err(|e| {
                invalid(format!("tensor {name}: {e} (sift reads {SUPPORTED_TYPES})"))
            })?;
            let wrap = |e: candle_core::Error| invalid(format!("tensor {name}: {e}"));
            // llama.cpp permuted Llama's query and key rows (weights and biases) for its
            // rotation; this many heads undo it.
            let permuted_heads = match family {
                DecoderFamily::Llama if hf.contains("q_proj.") => Some(config.num_heads),
                DecoderFamily::Llama if hf.contains("k_proj.") => Some(config.num_kv_heads),
                _ => None,
            };
            if precision == Precision::Int8 && q.dtype().block_size() > 1 && hf.ends_with("weight")
            {
                let q = match permuted_heads {
                    Some(heads) => unpermute_blocks(q, heads).map_err(wrap)?,
                    None => q,
                };
                blocks.insert(hf, q);
                continue;
            }
            let mut t = q.dequantize(&device).map_err(wrap)?;
            if let Some(heads) = permuted_heads {
                t = unpermute(&t, heads).map_err(wrap)?;
            }
            if config.norm_adds_one && hf.ends_with("norm.weight") {
                t = (t - 1.0).map_err(wrap)?;
            }
            tensors.insert(hf, t);
        }
        let tokenizer = tokenizer(meta, tokens, path)?;
        Ok(GgufModel {
            config,
            tensors,
            blocks,
            tokenizer,
        })
    }
}

fn strings(meta: &HashMap<String, GgufValue>, key: &str) -> Option<Vec<String>> {
    meta.get(key)?
        .to_vec()
        .ok()?
        .iter()
        .map(|v| v.to_string().ok().cloned())
        .collect()
}

/// The metadata as a transformers config, so [`DecoderConfig::from_value`] applies each
/// family's defaults exactly as for a directory.
fn hf_config(
    meta: &HashMap<String, GgufValue>,
    arch: &str,
    model_type: &str,
    vocab: usize,
    content: &Content,
) -> Value {
    let num = |key: &str| -> Option<Value> {
        let v = meta.get(&format!("{arch}.{key}"))?;
        v.to_u64()
            .map(|n| json!(n))
            .or_else(|_| v.to_u32().map(|n| json!(n)))
            .or_else(|_| v.to_f32().map(|f| json!(f as f64)))
            .or_else(|_| v.to_f64().map(|f| json!(f)))
            .ok()
    };
    let mut c = Map::new();
    c.insert("model_type".into(), json!(model_type));
    c.insert("vocab_size".into(), json!(vocab));
    for (hf, key) in [
        ("hidden_size", "embedding_length"),
        ("intermediate_size", "feed_forward_length"),
        ("num_hidden_layers", "block_count"),
        ("num_attention_heads", "attention.head_count"),
        ("num_key_value_heads", "attention.head_count_kv"),
        ("head_dim", "attention.key_length"),
        ("rms_norm_eps", "attention.layer_norm_rms_epsilon"),
        ("max_position_embeddings", "context_length"),
        ("rope_theta", "rope.freq_base"),
        ("sliding_window", "attention.sliding_window"),
        ("attn_logit_softcapping", "attn_logit_softcapping"),
        ("final_logit_softcapping", "final_logit_softcapping"),
    ] {
        if let Some(v) = num(key) {
            c.insert(hf.into(), v);
        }
    }
    // llama.cpp scales Gemma 2/3 queries by the head size; transformers' configs of the
    // published models say the same through query_pre_attn_scalar.
    if matches!(model_type, "gemma2" | "gemma3_text") {
        if let Some(v) = num("attention.key_length") {
            c.insert("query_pre_attn_scalar".into(), v);
        }
    }
    // Qwen2 and the others carry no window unless their GGUF says so; Mistral's is all layers.
    if model_type == "qwen2" || model_type == "qwen3" {
        c.remove("sliding_window");
    }
    let scaling = meta
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(|v| v.to_string().ok())
        .cloned();
    if let Some(kind) = scaling {
        let factor = num("rope.scaling.factor").unwrap_or(json!(1.0));
        c.insert(
            "rope_scaling".into(),
            json!({"rope_type": kind, "factor": factor}),
        );
    }
    c.insert(
        "tie_word_embeddings".into(),
        json!(!content.tensor_infos.contains_key("output.weight")),
    );
    for (hf, key) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(v) = meta.get(key).and_then(|v| v.to_u32().ok()) {
            c.insert(hf.into(), json!(v));
        }
    }
    Value::Object(c)
}

/// llama.cpp's tensor name → transformers' (None: a tensor sift does not use, e.g. the rope
/// frequency table some converters add).
fn hf_name(name: &str, family: DecoderFamily) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let sandwich = matches!(family, DecoderFamily::Gemma2 | DecoderFamily::Gemma3);
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_output.bias" => "self_attn.o_proj.bias",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "post_attention_norm.weight" => "post_attention_layernorm.weight",
        "ffn_norm.weight" if sandwich => "pre_feedforward_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "post_ffw_norm.weight" => "post_feedforward_layernorm.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Undoes convert_hf_to_gguf.py's `LlamaModel.permute` of query/key rows: per head, rows were
/// reordered from (half, pair) to (pair, half) for llama.cpp's interleaved rotation.
fn unpermute(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let half = rows / heads / 2;
    let mut shape = vec![heads, half, 2];
    shape.extend_from_slice(&dims[1..]);
    t.reshape(shape)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// [`unpermute`] on quantized rows: each output row is quantized on its own (blocks run along
/// the input dimension), so the rows move as whole byte runs, nothing re-quantized.
fn unpermute_blocks(q: QTensor, heads: usize) -> candle_core::Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let order: Vec<f32> = (0..rows).map(|r| r as f32).collect();
    let order = unpermute(&Tensor::from_vec(order, (rows, 1), &Device::Cpu)?, heads)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let data = q.data()?;
    let row_bytes = data.len() / rows;
    if row_bytes * rows != data.len() || cols % q.dtype().block_size() != 0 {
        candle_core::bail!(
            "rows of {cols} values do not split into whole {:?} blocks",
            q.dtype()
        );
    }
    let mut out = Vec::with_capacity(data.len());
    for &from in &order {
        let from = from as usize;
        out.extend_from_slice(&data[from * row_bytes..(from + 1) * row_bytes]);
    }
    let storage = QStorage::from_data(std::borrow::Cow::Owned(out), &Device::Cpu, q.dtype())?;
    QTensor::new(storage, (rows, cols))
}

/// The tokenizer the GGUF vocabulary describes: byte-level BPE with its merges (`gpt2`), or
/// SentencePiece BPE (`llama`), whose merges follow the piece scores.
fn tokenizer(
    meta: &HashMap<String, GgufValue>,
    tokens: Vec<String>,
    path: &Path,
) -> Result<Tokenizer> {
    use tokenizers::{decoders, normalizers, pre_tokenizers};
    let invalid = |reason: String| ModelError::Tokenizer(format!("{}: {reason}", path.display()));
    let kind = meta
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    let types: Vec<i32> = meta
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().map(|x| x.to_i32().unwrap_or(1)).collect())
        .unwrap_or_else(|| vec![1; tokens.len()]);
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let flag = |key: &str| meta.get(key).and_then(|v| v.to_bool().ok());
    let mut tokenizer = match kind.as_str() {
        "gpt2" => {
            let merges: Vec<(String, String)> = strings(meta, "tokenizer.ggml.merges")
                .ok_or_else(|| invalid("tokenizer.ggml.merges is missing".into()))?
                .iter()
                .filter_map(|m| m.split_once(' '))
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect();
            let bpe = BPE::builder()
                .vocab_and_merges(vocab.clone(), merges)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            let mut t = Tokenizer::new(bpe);
            let pre = meta
                .get("tokenizer.ggml.pre")
                .and_then(|v| v.to_string().ok())
                .cloned()
                .unwrap_or_else(|| "default".into());
            let byte_level = pre_tokenizers::byte_level::ByteLevel::new(false, true, true);
            match pre.as_str() {
                "default" | "gpt2" => {
                    t.with_pre_tokenizer(Some(byte_level));
                }
                // SmolLM: every digit on its own, then GPT-2's byte-level split.
                "smollm" => {
                    t.with_pre_tokenizer(Some(pre_tokenizers::sequence::Sequence::new(vec![
                        pre_tokenizers::digits::Digits::new(true).into(),
                        byte_level.into(),
                    ])));
                }
                other => {
                    return Err(invalid(format!(
                        "GGUF pre-tokenizer {other:?} is not supported (default, gpt2, smollm)"
                    )))
                }
            }
            t.with_decoder(Some(decoders::byte_level::ByteLevel::default()));
            t
        }
        "llama" => {
            let scores: Vec<f32> = meta
                .get("tokenizer.ggml.scores")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.iter().map(|x| x.to_f32().unwrap_or(0.0)).collect())
                .ok_or_else(|| invalid("tokenizer.ggml.scores is missing".into()))?;
            let merges = merges_from_scores(&tokens, &scores, &types, &vocab);
            let unk = meta
                .get("tokenizer.ggml.unknown_token_id")
                .and_then(|v| v.to_u32().ok())
                .and_then(|i| tokens.get(i as usize).cloned());
            let mut builder = BPE::builder()
                .vocab_and_merges(vocab.clone(), merges)
                .byte_fallback(true)
                .fuse_unk(true);
            if let Some(unk) = unk {
                builder = builder.unk_token(unk);
            }
            let bpe = builder.build().map_err(|e| invalid(e.to_string()))?;
            let mut t = Tokenizer::new(bpe);
            let mut norms: Vec<normalizers::NormalizerWrapper> = Vec::new();
            if flag("tokenizer.ggml.add_space_prefix").unwrap_or(true) {
                norms.push(normalizers::prepend::Prepend::new("▁".into()).into());
            }
            norms.push(
                normalizers::replace::Replace::new(" ", "▁")
                    .map_err(|e| invalid(e.to_string()))?
                    .into(),
            );
            t.with_normalizer(Some(normalizers::Sequence::new(norms)))
                .map_err(|e| invalid(e.to_string()))?;
            t.with_decoder(Some(decoders::sequence::Sequence::new(vec![
                normalizers::replace::Replace::new("▁", " ")
                    .map_err(|e| invalid(e.to_string()))?
                    .into(),
                decoders::byte_fallback::ByteFallback::default().into(),
                decoders::fuse::Fuse::default().into(),
            ])));
            t
        }
        other => {
            return Err(invalid(format!(
                "GGUF tokenizer model {other:?} is not supported (gpt2, llama)"
            )))
        }
    };
    // Control tokens (type 3) are special; user-defined ones (type 4) are matched whole in
    // text, as llama.cpp does.
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (token, kind) in tokens.iter().zip(&types) {
        match kind {
            3 => special.push(AddedToken::from(token.clone(), true).normalized(false)),
            4 => user.push(AddedToken::from(token.clone(), false).normalized(false)),
            _ => {}
        }
    }
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| invalid(e.to_string()))?;
    tokenizer
        .add_tokens(user)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(tokenizer)
}

/// SentencePiece BPE merges: every split of a piece into two pieces of the vocabulary is a
/// merge, ranked by the merged piece's score (higher first) — the order in which
/// SentencePiece (and llama.cpp) merge.
fn merges_from_scores(
    tokens: &[String],
    scores: &[f32],
    types: &[i32],
    vocab: &Vocab,
) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, String, String)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        // Only normal pieces are produced by merging.
        if types.get(id).copied().unwrap_or(1) != 1 {
            continue;
        }
        let score = scores.get(id).copied().unwrap_or(0.0);
        for (split, _) in token.char_indices().skip(1) {
            let (a, b) = token.split_at(split);
            if let (Some(&ia), Some(&ib)) = (vocab.get(a), vocab.get(b)) {
                ranked.push((score, ia.max(ib), a.to_owned(), b.to_owned()));
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    ranked.into_iter().map(|(_, _, a, b)| (a, b)).collect()
}
