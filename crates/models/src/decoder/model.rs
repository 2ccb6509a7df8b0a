//! The decoder network on candle: embeddings, pre-norm layers with rotary grouped-query
//! attention and a gated MLP, a final norm, and an output projection kept only for the
//! vocabulary rows a caller reads.
//!
//! Written here rather than taken from candle-transformers: its decoders take no padding mask
//! (a batch of ragged pairs could not be scored in one pass) and cannot reuse a prefix's keys
//! and values across a batch; sift needs both.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;

use super::config::{DecoderConfig, LayerSpec};
use super::weights::{DecoderWeights, Projection, RowTable};
use crate::arch::activate;
use crate::Precision;

/// RMS normalisation; Gemma's `1 + w` is folded into the weight at load.
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(size: usize, cfg: &DecoderConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = vb.get(size, "weight")?;
        let weight = if cfg.norm_adds_one { (w + 1.0)? } else { w };
        Ok(RmsNorm {
            weight,
            eps: cfg.rms_norm_eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

/// Keys and values of every layer for a shared token prefix, `[1, kv_heads, P, head_dim]` each.
pub struct PrefixCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

struct Attention {
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

struct Mlp {
    gate: Projection,
    up: Projection,
    down: Projection,
}

struct Layer {
    spec: LayerSpec,
    attention: Attention,
    mlp: Mlp,
    input_norm: RmsNorm,
    /// Llama/Qwen: the norm before the MLP. Gemma 2/3: the norm after attention.
    post_attention_norm: RmsNorm,
    /// Gemma 2/3 only: the norms before and after the MLP.
    feedforward_norms: Option<(RmsNorm, RmsNorm)>,
}

/// A loaded decoder. Inputs are right-padded rows; positions count from 0 in each row (after
/// the prefix when one is given), so padding never shifts a real token's position.
pub struct Decoder {
    config: DecoderConfig,
    embed_tokens: RowTable,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// `[n, hidden]`: the output projection's rows for the tokens the caller reads.
    head_rows: Tensor,
    /// Layerwise models: `[1, hidden]` per head, in `LayerwiseHeads::layers` order (which one
    /// scores a cutoff: `LayerwiseHeads::head_index`).
    layer_heads: Vec<Tensor>,
    device: Device,
}

impl Decoder {
    /// Builds the network from `weights` (tensors under `model.` as `*ForCausalLM` saves them,
    /// or bare), keeping only the output rows of `output_tokens`.
    pub fn load(
        config: DecoderConfig,
        mut weights: DecoderWeights,
        output_tokens: &[u32],
    ) -> candle_core::Result<Self> {
        let vb = weights.vb().clone();
        let device = vb.device().clone();
        let root = if weights.contains("model.embed_tokens.weight") {
            "model."
        } else {
            ""
        };
        let body = if root.is_empty() {
            vb.clone()
        } else {
            vb.pp("model")
        };
        let (h, kvh, d) = (config.hidden_size, config.num_kv_heads, config.head_dim);
        let heads = config.num_heads;
        let embed_tokens =
            weights.table(&format!("{root}embed_tokens.weight"), config.vocab_size, h)?;
        let mut layers = Vec::with_capacity(config.num_layers());
        for (i, spec) in config.layers.iter().enumerate() {
            let lvb = body.pp(format!("layers.{i}"));
            let avb = lvb.pp("self_attn");
            let at = |part: &str| format!("{root}layers.{i}.self_attn.{part}");
            let bias = config.qkv_bias;
            let attention = Attention {
                q: weights.projection(&at("q_proj"), h, heads * d, bias)?,
                k: weights.projection(&at("k_proj"), h, kvh * d, bias)?,
                v: weights.projection(&at("v_proj"), h, kvh * d, bias)?,
                o: weights.projection(&at("o_proj"), heads * d, h, config.o_bias)?,
                q_norm: config
                    .qk_norm
                    .then(|| RmsNorm::load(d, &config, avb.pp("q_norm")))
                    .transpose()?,
                k_norm: config
                    .qk_norm
                    .then(|| RmsNorm::load(d, &config, avb.pp("k_norm")))
                    .transpose()?,
            };
            let mlp_at = |part: &str| format!("{root}layers.{i}.mlp.{part}");
            let (i_size, bias) = (config.intermediate_size, config.mlp_bias);
            let mlp = Mlp {
                gate: weights.projection(&mlp_at("gate_proj"), h, i_size, bias)?,
                up: weights.projection(&mlp_at("up_proj"), h, i_size, bias)?,
                down: weights.projection(&mlp_at("down_proj"), i_size, h, bias)?,
            };
            let feedforward_norms = if config.sandwich_norms {
                Some((
                    RmsNorm::load(h, &config, lvb.pp("pre_feedforward_layernorm"))?,
                    RmsNorm::load(h, &config, lvb.pp("post_feedforward_layernorm"))?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                spec: *spec,
                attention,
                mlp,
                input_norm: RmsNorm::load(h, &config, lvb.pp("input_layernorm"))?,
                post_attention_norm: RmsNorm::load(h, &config, lvb.pp("post_attention_layernorm"))?,
                feedforward_norms,
            });
        }
        let norm = RmsNorm::load(h, &config, body.pp("norm"))?;
        if let Some(&bad) = output_tokens
            .iter()
            .find(|&&t| t as usize >= config.vocab_size)
        {
            candle_core::bail!(
                "output token {bad} is outside the vocabulary ({} tokens)",
                config.vocab_size
            );
        }
        let rows = Tensor::new(output_tokens, &device)?;
        let head_rows = if config.layerwise.is_none()
            && (!config.tie_word_embeddings || weights.contains("lm_head.weight"))
        {
            weights
                .table("lm_head.weight", config.vocab_size, h)?
                .rows(&rows)?
        } else {
            embed_tokens.rows(&rows)?
        }
        .contiguous()?;
        let layer_heads = match config.layerwise {
            Some(lw) => lw
                .layers(config.num_layers())
                .enumerate()
                .map(|(i, _)| vb.get((1, h), &format!("lm_head.{i}.linear_head.weight")))
                .collect::<candle_core::Result<_>>()?,
            None => Vec::new(),
        };
        Ok(Decoder {
            config,
            embed_tokens,
            layers,
            norm,
            head_rows,
            layer_heads,
            device,
        })
    }

    /// How the projections run: int8 when any runs as quantized blocks, else f32 (a model
    /// loaded for int8 whose shapes have no int8 kernel runs, and says, f32).
    pub fn precision(&self) -> Precision {
        let quantized = self.layers.iter().any(|l| {
            let (a, m) = (&l.attention, &l.mlp);
            [&a.q, &a.k, &a.v, &a.o, &m.gate, &m.up, &m.down]
                .iter()
                .any(|p| p.is_blocks())
        });
        if quantized {
            Precision::Int8
        } else {
            Precision::F32
        }
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the shared prefix `ids` once (batch of one) through the first `num_layers` layers
    /// and keeps their keys and values.
    pub fn prefix_cache(&self, ids: &[u32], num_layers: usize) -> candle_core::Result<PrefixCache> {
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let mut layers = Vec::with_capacity(num_layers);
        let mut lengths = vec![ids.len()];
        self.run(
            &input,
            &mut lengths,
            None,
            num_layers,
            Some(&mut layers),
            None,
        )?;
        Ok(PrefixCache {
            layers,
            len: ids.len(),
        })
    }

    /// Output logits `[b, n]` (n = the `output_tokens` given at load; 1 for layerwise models:
    /// the head that scores layer `num_layers`) at each row's last real token, after
    /// `num_layers` layers. `input_ids` is `[b, t]`, right-padded; `lengths` are the rows' real
    /// lengths (at least 1 each); `prefix` holds keys and values of tokens that precede every
    /// row.
    pub fn last_token_logits(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        prefix: Option<&PrefixCache>,
        num_layers: usize,
    ) -> candle_core::Result<Tensor> {
        self.score_last(input_ids, lengths, prefix, num_layers, None)
    }

    /// [`Decoder::last_token_logits`] with the document tokens compressed mid-network
    /// (FlagEmbedding's lightweight reranker; no prefix sharing).
    pub fn last_token_logits_compressed(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        num_layers: usize,
        compression: &TokenCompression,
    ) -> candle_core::Result<Tensor> {
        self.score_last(input_ids, lengths, None, num_layers, Some(compression))
    }

    fn score_last(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        prefix: Option<&PrefixCache>,
        num_layers: usize,
        compression: Option<&TokenCompression>,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&l| l == 0 || l > t) {
            candle_core::bail!("row lengths {lengths:?} do not fit a batch of {b} × {t}");
        }
        let mut lengths = lengths.to_vec();
        let hidden = self.run(
            input_ids,
            &mut lengths,
            prefix,
            num_layers,
            None,
            compression,
        )?;
        let (b, t, h) = hidden.dims3()?;
        let flat: Vec<u32> = lengths
            .iter()
            .enumerate()
            .map(|(row, &len)| (row * t + len - 1) as u32)
            .collect();
        let last = hidden
            .reshape((b * t, h))?
            .index_select(&Tensor::new(flat, &self.device)?, 0)?;
        let last = self.norm.forward(&last)?;
        let logits = match self.config.layerwise {
            Some(lw) => {
                let total = self.config.num_layers();
                if !lw.layers(total).any(|l| l == num_layers) {
                    candle_core::bail!(
                        "layer {num_layers} has no head (heads at layers {:?})",
                        lw.layers(total).collect::<Vec<_>>()
                    );
                }
                let head = self
                    .layer_heads
                    .get(lw.head_index(num_layers))
                    .ok_or_else(|| candle_core::Error::Msg("missing layer head".into()))?;
                last.matmul(&head.t()?)?
            }
            None => {
                let last = if self.config.head_input_scale != 1.0 {
                    (last * self.config.head_input_scale)?
                } else {
                    last
                };
                last.matmul(&self.head_rows.t()?)?
            }
        };
        match self.config.final_logit_softcap {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }

    /// Hidden states `[b, t, hidden]` after `num_layers` layers (before the final norm);
    /// `lengths` are updated when compression shortens the rows.
    fn run(
        &self,
        input_ids: &Tensor,
        lengths: &mut [usize],
        prefix: Option<&PrefixCache>,
        num_layers: usize,
        mut keep: Option<&mut Vec<(Tensor, Tensor)>>,
        compression: Option<&TokenCompression>,
    ) -> candle_core::Result<Tensor> {
        let (b, mut t) = input_ids.dims2()?;
        let start = prefix.map_or(0, |p| p.len);
        if compression.is_some() && prefix.is_some() {
            candle_core::bail!("token compression cannot run after a shared prefix");
        }
        if num_layers == 0 || num_layers > self.layers.len() {
            candle_core::bail!(
                "cannot stop after layer {num_layers}: the model has {} layers",
                self.layers.len()
            );
        }
        if prefix.is_some_and(|p| p.layers.len() < num_layers) {
            candle_core::bail!("the prefix cache holds fewer layers than {num_layers}");
        }
        let mut x = self
            .embed_tokens
            .rows(&input_ids.flatten_all()?)?
            .reshape((b, t, self.config.hidden_size))?;
        if let Some(scale) = self.config.embedding_scale {
            x = (x * scale)?;
        }
        let mut positions = PositionCache::default();
        for (i, layer) in self.layers.iter().take(num_layers).enumerate() {
            // FlagEmbedding compresses before running layer i (never before the first).
            if let Some(c) = compression.filter(|c| i != 0 && c.layers.contains(&i)) {
                x = c.compress(&x, lengths)?;
                t = x.dim(1)?;
                positions = PositionCache::default();
            }
            let past = prefix.map(|p| &p.layers[i]);
            let (cos, sin) =
                positions.rotation(&layer.spec, start, t, self.config.head_dim, &self.device)?;
            let mask = positions.mask(start, t, layer.spec.window, &self.device)?;
            let residual = x.clone();
            let normed = layer.input_norm.forward(&x)?;
            let (attn, kv) = self.attention(layer, &normed, past, &cos, &sin, &mask)?;
            if let Some(keep) = keep.as_deref_mut() {
                keep.push(kv);
            }
            // MiniCPM scales each branch before the residual add; other families add it as is.
            let scaled = |branch: Tensor| {
                let scale = self.config.residual_scale;
                if scale == 1.0 {
                    Ok(branch)
                } else {
                    branch * scale
                }
            };
            x = match &layer.feedforward_norms {
                None => {
                    let h = (residual + scaled(attn)?)?;
                    let m = self.mlp(&layer.mlp, &layer.post_attention_norm.forward(&h)?)?;
                    (h + scaled(m)?)?
                }
                Some((pre, post)) => {
                    let h = (residual + layer.post_attention_norm.forward(&attn)?)?;
                    let m = self.mlp(&layer.mlp, &pre.forward(&h)?)?;
                    (h + post.forward(&m)?)?
                }
            };
        }
        Ok(x)
    }

    fn mlp(&self, mlp: &Mlp, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate = activate(&mlp.gate.forward(x)?, self.config.activation)?;
        mlp.down.forward(&(gate * mlp.up.forward(x)?)?)
    }

    /// Self-attention of `x` `[b, t, hidden]` over the prefix (if any) and itself. Returns the
    /// output and this call's keys and values `[b, kv_heads, t, head_dim]`.
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<(Tensor, (Tensor, Tensor))> {
        let cfg = &self.config;
        let a = &layer.attention;
        let (b, t, _) = x.dims3()?;
        let (heads, kvh, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let group = heads / kvh;
        let split = |y: Tensor, n: usize, norm: &Option<RmsNorm>| -> candle_core::Result<Tensor> {
            let y = y.reshape((b, t, n, d))?;
            let y = match norm {
                Some(norm) => norm.forward(&y)?,
                None => y,
            };
            y.transpose(1, 2)?.contiguous()
        };
        let q = split(a.q.forward(x)?, heads, &a.q_norm)?;
        let k = split(a.k.forward(x)?, kvh, &a.k_norm)?;
        let v = split(a.v.forward(x)?, kvh, &None)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let (keys, values) = match past {
            Some((pk, pv)) => {
                let p = pk.dim(2)?;
                let pk = pk.broadcast_as((b, kvh, p, d))?;
                let pv = pv.broadcast_as((b, kvh, p, d))?;
                (
                    Tensor::cat(&[&pk, &k], 2)?.contiguous()?,
                    Tensor::cat(&[&pv, &v], 2)?.contiguous()?,
                )
            }
            None => (k.clone(), v.clone()),
        };
        let total = keys.dim(2)?;
        // Query heads of one key/value group stacked as rows: [b, kvh, group·t, d], so the
        // keys are never copied per query head.
        let q = q.reshape((b, kvh, group * t, d))?;
        let mut scores = (q.matmul(&keys.t()?)? * cfg.attention_scale)?;
        if let Some(cap) = cfg.attention_softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        let scores = scores
            .reshape((b, kvh, group, t, total))?
            .broadcast_add(mask)?;
        let probs =
            candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, kvh, group * t, total))?;
        let context = probs
            .matmul(&values)?
            .reshape((b, heads, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, heads * d))?;
        Ok((a.o.forward(&context)?, (k, v)))
    }
}

/// FlagEmbedding's token compression (the lightweight reranker's `compress_ratio` and
/// `compress_layers`): before each listed layer, every row keeps its query tokens and its
/// prompt tokens and replaces its document tokens by the means of consecutive groups of `ratio`
/// (the last group may be shorter); positions are then numbered afresh from 0.
#[derive(Debug, Clone)]
pub struct TokenCompression {
    pub ratio: usize,
    /// Layer indices (0-based; before running that layer).
    pub layers: Vec<usize>,
    /// Per row: tokens before the document (BOS, query, separator).
    pub query_lens: Vec<usize>,
    /// Tokens after the document (separator and prompt), the same for every row.
    pub prompt_len: usize,
}

impl TokenCompression {
    fn compress(&self, x: &Tensor, lengths: &mut [usize]) -> candle_core::Result<Tensor> {
        let (b, _, h) = x.dims3()?;
        let ratio = self.ratio.max(1);
        let mut rows = Vec::with_capacity(b);
        for (r, len) in lengths.iter_mut().enumerate() {
            let n = *len;
            let q = self.query_lens.get(r).copied().unwrap_or(0).min(n);
            let p = self.prompt_len.min(n - q);
            let passage = n - q - p;
            let retain = passage.div_ceil(ratio);
            let row = x.get(r)?;
            let mut parts = Vec::with_capacity(3);
            if q > 0 {
                parts.push(row.narrow(0, 0, q)?);
            }
            if retain > 0 {
                let mut doc = row.narrow(0, q, passage)?;
                if retain * ratio > passage {
                    let pad = Tensor::zeros((retain * ratio - passage, h), x.dtype(), x.device())?;
                    doc = Tensor::cat(&[&doc, &pad], 0)?;
                }
                let counts: Vec<f32> = (0..retain)
                    .map(|k| (passage - k * ratio).min(ratio) as f32)
                    .collect();
                let counts = Tensor::from_vec(counts, (retain, 1), x.device())?;
                parts.push(
                    doc.reshape((retain, ratio, h))?
                        .sum(1)?
                        .broadcast_div(&counts)?,
                );
            }
            if p > 0 {
                parts.push(row.narrow(0, q + passage, p)?);
            }
            *len = q + retain + p;
            rows.push(Tensor::cat(&parts, 0)?);
        }
        let width = lengths.iter().copied().max().unwrap_or(1).max(1);
        let padded = rows
            .into_iter()
            .map(|row| {
                let n = row.dim(0)?;
                if n == width {
                    return Ok(row);
                }
                let pad = Tensor::zeros((width - n, h), x.dtype(), x.device())?;
                Tensor::cat(&[&row, &pad], 0)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::stack(&padded, 0)
    }
}

/// Additive mask `[t, start + t]` for queries at positions `start..start + t`: 0 where the key
/// is visible (not later than the query, and within the window when the layer slides), the
/// most negative f32 elsewhere. Right padding needs nothing more: a real token never sees a
/// later position.
fn attention_mask(
    start: usize,
    t: usize,
    window: Option<usize>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let total = start + t;
    let mut mask = vec![0f32; t * total];
    for i in 0..t {
        let q = start + i;
        for (k, m) in mask[i * total..(i + 1) * total].iter_mut().enumerate() {
            let visible = k <= q && window.is_none_or(|w| q - k < w);
            if !visible {
                *m = f32::MIN;
            }
        }
    }
    Tensor::from_vec(mask, (t, total), device)
}

/// What depends only on positions in a forward pass, built once per distinct setting rather
/// than per layer: cos/sin tables `[t, head_dim / 2]` per rotary setting, and attention masks
/// per window. Reset when compression renumbers the positions.
#[derive(Default)]
struct PositionCache {
    rotations: Vec<((u64, u64), (Tensor, Tensor))>,
    masks: Vec<(Option<usize>, Tensor)>,
}

impl PositionCache {
    fn mask(
        &mut self,
        start: usize,
        t: usize,
        window: Option<usize>,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some((_, m)) = self.masks.iter().find(|(w, _)| *w == window) {
            return Ok(m.clone());
        }
        let m = attention_mask(start, t, window, device)?;
        self.masks.push((window, m.clone()));
        Ok(m)
    }

    fn rotation(
        &mut self,
        spec: &LayerSpec,
        start: usize,
        t: usize,
        head_dim: usize,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let key = (spec.rope.theta.to_bits(), spec.rope.linear_factor.to_bits());
        if let Some((_, cs)) = self.rotations.iter().find(|(k, _)| *k == key) {
            return Ok(cs.clone());
        }
        let half = head_dim / 2;
        // As transformers: inverse frequencies in f32, positions divided by the linear factor.
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let f = 1.0 / spec.rope.theta.powf((2 * i) as f64 / head_dim as f64);
                (f / spec.rope.linear_factor) as f32
            })
            .collect();
        let positions: Vec<f32> = (start..start + t).map(|p| p as f32).collect();
        let inv = Tensor::from_vec(inv_freq, (1, half), device)?;
        let pos = Tensor::from_vec(positions, (t, 1), device)?;
        let freqs = pos.broadcast_mul(&inv)?;
        let cs = (freqs.cos()?.contiguous()?, freqs.sin()?.contiguous()?);
        self.rotations.push((key, cs.clone()));
        Ok(cs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_causal_and_windowed() {
        let m = attention_mask(2, 3, Some(2), &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let visible: Vec<Vec<bool>> = m
            .iter()
            .map(|r| r.iter().map(|&x| x == 0.0).collect())
            .collect();
        // queries at positions 2, 3, 4 over keys 0..5, window 2
        assert_eq!(visible[0], vec![false, true, true, false, false]);
        assert_eq!(visible[1], vec![false, false, true, true, false]);
        assert_eq!(visible[2], vec![false, false, false, true, true]);
    }
}
