//! LLM rerankers: a decoder reads a prompt holding the query and the document and the logit of
//! an answer token ("yes") at the last position is the relevance score.
//!
//! Every published recipe puts the query before the document, so the pairs of one query share
//! a token prefix. [`LlmReranker::score_pairs`] finds the longest prefix a batch shares, runs it
//! once and lets every document attend to its keys and values, instead of recomputing it per
//! document (exact: the same tokens at the same positions; a test holds it to 1e-4).

mod template;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

pub use template::{EncodedPair, PairEncoder, RerankTemplate};

use crate::decoder::{Decoder, DecoderConfig, DecoderWeights, TokenCompression};
use crate::error::{ModelError, Result};
use crate::model_dir::ModelDir;
use crate::rerank::{score_in_batches, sigmoid, LlmDepth, RerankScore, Reranker, RerankerOptions};
use crate::tokenize::{Encoded, TextTokenizer};

/// Padded tokens per forward pass of a decoder. Attention over a 100-document batch of ~300
/// tokens stays within a few hundred MB at this size for sub-1B models.
pub const DEFAULT_LLM_BATCH_TOKENS: usize = 4096;

/// Shared prefixes shorter than this many tokens, or than this fraction of the batch's longest
/// row, are recomputed with each row: the separate pass and the copies of its keys and values
/// cost more than they save (bge-llm's `<bos>A: {query}` of ~10 tokens before ~400-token
/// abstracts measured 0.91× on Gemma 3 270M; Qwen3's ~45% template prefix 1.35×).
const MIN_SHARED_PREFIX: usize = 8;
const MIN_SHARED_FRACTION: usize = 8;

pub struct LlmReranker {
    /// Shared with the views [`Reranker::with_prompt`] makes.
    decoder: Arc<Decoder>,
    encoder: PairEncoder,
    /// The raw tokenizer the recipe encodes with (no truncation, no padding).
    raw_tokenizer: Arc<Tokenizer>,
    /// sift's tokenizer wrapper, for the long-document policy's token offsets.
    tokenizer: Arc<TextTokenizer>,
    dir: ModelDir,
    max_batch_tokens: usize,
    share_prefix: bool,
    /// Layers run per pair: all, or the cutoff of a layerwise model.
    num_layers: usize,
    /// Token compression (ratio, layers) of a lightweight model; `None`: off.
    compression: Option<(usize, Vec<usize>)>,
}

impl LlmReranker {
    /// Loads a `*ForCausalLM` directory; the recipe comes from `options.template`, else from
    /// the model's family ([`RerankTemplate::for_model_type`]).
    pub fn from_dir(dir: ModelDir, options: RerankerOptions) -> Result<Self> {
        check_engine(&options)?;
        let config = dir
            .config
            .decoder
            .clone()
            .ok_or_else(|| ModelError::InvalidConfig {
                path: dir.path.join("config.json"),
                reason: format!("{} is not a decoder LLM", dir.config.architecture_name),
            })?;
        let raw = raw_tokenizer(&dir.path)?;
        let specials = SpecialTokens::from_dir(&dir.path, &raw, &config)?;
        let weights = DecoderWeights::new(
            dir.var_builder(&Device::Cpu)?,
            Default::default(),
            options.engine.precision,
        );
        Self::build(dir, config, raw, specials, weights, options)
    }

    /// Loads a GGUF file: config, tokenizer and special tokens from its metadata, weights
    /// dequantized to f32, or kept in their blocks for int8.
    pub fn from_gguf(path: &Path, options: RerankerOptions) -> Result<Self> {
        check_engine(&options)?;
        let gguf = crate::decoder::GgufModel::read_for(path, options.engine.precision)?;
        let config = gguf.config.clone();
        let name = format!("{} (GGUF)", config.model_type);
        let dir = ModelDir::for_gguf(path, crate::ModelConfig::for_decoder(config.clone(), name));
        let specials = SpecialTokens {
            bos: config.bos_token_id,
            pad: config.pad_token_id,
        };
        let weights = DecoderWeights::new(
            VarBuilder::from_tensors(gguf.tensors, DType::F32, &Device::Cpu),
            gguf.blocks,
            options.engine.precision,
        );
        let mut raw = gguf.tokenizer;
        raw.with_padding(None);
        raw.with_truncation(None)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Self::build(dir, config, raw, specials, weights, options)
    }

    fn build(
        dir: ModelDir,
        config: DecoderConfig,
        raw_tokenizer: Tokenizer,
        specials: SpecialTokens,
        weights: DecoderWeights,
        options: RerankerOptions,
    ) -> Result<Self> {
        let template = options
            .template
            .unwrap_or_else(|| RerankTemplate::for_model_type(&config.model_type));
        let encoder_at = |max_length: usize| {
            PairEncoder::new(
                template,
                &raw_tokenizer,
                max_length,
                options.prompt.as_deref(),
                specials.bos,
                specials.pad,
            )
        };
        let limit = config.max_position_embeddings;
        let mut encoder = encoder_at(options.max_length.unwrap_or(template.default_max_length()))?;
        if encoder.max_total_length() > limit {
            let over = encoder.max_total_length() - limit;
            match options.max_length {
                // The recipe's default does not fit this model: shrink it to what does.
                None if over < template.default_max_length() => {
                    encoder = encoder_at(template.default_max_length() - over)?;
                }
                _ => {
                    return Err(ModelError::InvalidInput(format!(
                        "max length {} gives pairs of up to {} tokens, beyond what {} supports ({limit})",
                        options.max_length.unwrap_or(template.default_max_length()),
                        encoder.max_total_length(),
                        dir.name(),
                    )))
                }
            }
        }
        let num_layers = cutoff_layer(&config, options.cutoff_layer)?;
        let compression = compression(&config, &encoder, &options)?;
        let tokenizer = TextTokenizer::from_tokenizer(
            raw_tokenizer.clone(),
            encoder.max_total_length(),
            false,
        )?;
        let decoder = Decoder::load(config, weights, encoder.output_tokens()).map_err(|e| {
            ModelError::Weights {
                path: dir.path.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(LlmReranker {
            decoder: Arc::new(decoder),
            encoder,
            raw_tokenizer: Arc::new(raw_tokenizer),
            tokenizer: Arc::new(tokenizer),
            dir,
            max_batch_tokens: options
                .max_batch_tokens
                .unwrap_or(DEFAULT_LLM_BATCH_TOKENS)
                .max(1),
            share_prefix: options.share_prefix.unwrap_or(true),
            num_layers,
            compression,
        })
    }

    /// Loads a model directory, or a GGUF file.
    pub fn load(path: impl AsRef<Path>, options: RerankerOptions) -> Result<Self> {
        let path = path.as_ref();
        if path.is_file() {
            return Self::from_gguf(path, options);
        }
        Self::from_dir(ModelDir::open(path)?, options)
    }

    pub fn template(&self) -> RerankTemplate {
        self.encoder.template()
    }

    /// Another handle on the same weights and settings (what the per-request views start from).
    fn view(&self) -> LlmReranker {
        LlmReranker {
            decoder: self.decoder.clone(),
            encoder: self.encoder.clone(),
            raw_tokenizer: self.raw_tokenizer.clone(),
            tokenizer: self.tokenizer.clone(),
            dir: self.dir.clone(),
            max_batch_tokens: self.max_batch_tokens,
            share_prefix: self.share_prefix,
            num_layers: self.num_layers,
            compression: self.compression.clone(),
        }
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Layers each pair runs through.
    pub fn num_layers(&self) -> usize {
        self.num_layers
    }

    /// Output-row logits `[n]` at the last token of each pair, in input order, all in one pass
    /// without prefix sharing: what the golden tests compare with the reference.
    pub fn output_logits(&self, pairs: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        let rows: Vec<&Encoded> = pairs.iter().collect();
        self.logits_of(&rows, false)
    }

    /// Logits of one planned batch, sharing the rows' common prefix when it is long enough
    /// (and `share` allows; compression never shares).
    fn logits_of(&self, rows: &[&Encoded], share: bool) -> Result<Vec<Vec<f32>>> {
        let layers = self.num_layers;
        let device = self.decoder.device();
        if let (Some((ratio, at)), Some((after_query, tail))) =
            (&self.compression, self.encoder.compression_spans())
        {
            let (ids, lengths) = pad_rows(rows, 0, device)?;
            let query_lens = rows.iter().map(|r| query_tokens(r) + after_query).collect();
            let compression = TokenCompression {
                ratio: *ratio,
                layers: at.clone(),
                query_lens,
                prompt_len: tail,
            };
            return Ok(self
                .decoder
                .last_token_logits_compressed(&ids, &lengths, layers, &compression)?
                .to_vec2()?);
        }
        let shared = if share && self.share_prefix && rows.len() > 1 {
            shared_prefix(rows)
        } else {
            0
        };
        let longest = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        if shared < MIN_SHARED_PREFIX || shared * MIN_SHARED_FRACTION < longest {
            let (ids, lengths) = pad_rows(rows, 0, device)?;
            return Ok(self
                .decoder
                .last_token_logits(&ids, &lengths, None, layers)?
                .to_vec2()?);
        }
        let cache = self.decoder.prefix_cache(&rows[0].ids[..shared], layers)?;
        let (ids, lengths) = pad_rows(rows, shared, device)?;
        Ok(self
            .decoder
            .last_token_logits(&ids, &lengths, Some(&cache), layers)?
            .to_vec2()?)
    }
}

/// Layers to run: every layer, or a layerwise model's cutoff (a layer with a head).
fn cutoff_layer(config: &DecoderConfig, cutoff: Option<usize>) -> Result<usize> {
    let total = config.num_layers();
    match (cutoff, config.layerwise) {
        (None, _) => Ok(total),
        (Some(n), Some(lw)) if lw.layers(total).any(|l| l == n) => Ok(n),
        (Some(n), Some(lw)) if lw.layer_sep == 1 => Err(ModelError::InvalidInput(format!(
            "cutoff layer {n} is out of range: this model scores at layers {}..={total}",
            lw.start_layer
        ))),
        (Some(n), Some(lw)) => Err(ModelError::InvalidInput(format!(
            "cutoff layer {n} has no head: this model scores at layers {:?}",
            lw.layers(total).collect::<Vec<_>>()
        ))),
        (Some(_), None) => Err(ModelError::InvalidInput(format!(
            "a cutoff layer needs a layerwise model (one scoring head per layer, e.g. bge-reranker-v2-minicpm-layerwise); {} has one head after its last layer",
            config.model_type
        ))),
    }
}

/// FlagEmbedding's supported compression ratios.
const COMPRESS_RATIOS: [usize; 4] = [1, 2, 4, 8];

/// Token compression to apply: only for models built for it (the lightweight Gemma 2) under
/// the bge-llm recipe; ratio 1 is off.
fn compression(
    config: &DecoderConfig,
    encoder: &PairEncoder,
    options: &RerankerOptions,
) -> Result<Option<(usize, Vec<usize>)>> {
    let ratio = options.compress_ratio.unwrap_or(1);
    if !COMPRESS_RATIOS.contains(&ratio) {
        return Err(ModelError::InvalidInput(format!(
            "compress ratio {ratio} is not supported (1, 2, 4 or 8)"
        )));
    }
    let layers = options.compress_layers.clone().unwrap_or_else(|| vec![8]);
    if ratio == 1 {
        if options.compress_layers.is_some() {
            return Err(ModelError::InvalidInput(
                "compress layers need a compress ratio above 1".into(),
            ));
        }
        return Ok(None);
    }
    if !config.layerwise.is_some_and(|lw| lw.token_compression) {
        return Err(ModelError::InvalidInput(format!(
            "token compression needs a lightweight layerwise model (bge-reranker-v2.5-gemma2-lightweight's CostWiseGemmaForCausalLM); {} has none",
            config.model_type
        )));
    }
    if encoder.compression_spans().is_none() {
        return Err(ModelError::InvalidInput(
            "token compression applies to the bge-llm recipe only".into(),
        ));
    }
    let total = config.num_layers();
    if let Some(&bad) = layers.iter().find(|&&l| l == 0 || l >= total) {
        return Err(ModelError::InvalidInput(format!(
            "compress layer {bad} is out of range: compression happens before a layer in 1..{total}"
        )));
    }
    Ok(Some((ratio, layers)))
}

fn check_engine(options: &RerankerOptions) -> Result<()> {
    if options.exit_layer.is_some() || options.cascade.is_some() || options.budget_ms.is_some() {
        return Err(ModelError::InvalidInput(
            "--rerank-layer, --rerank-cascade and --rerank-budget-ms apply to cross-encoders; a layerwise LLM reranker stops early with --cutoff-layer"
                .into(),
        ));
    }
    if options.engine.engine == crate::EngineChoice::Onnx {
        return Err(ModelError::InvalidInput(
            "LLM rerankers run on candle (--engine candle or auto; --rerank-precision f32 or int8)"
                .into(),
        ));
    }
    Ok(())
}

/// Tokens of a pair before its document: segment 0 of [`LlmReranker::encode_pair`]'s encoding.
fn query_tokens(pair: &Encoded) -> usize {
    pair.type_ids.iter().take_while(|&&t| t == 0).count()
}

/// Pairs grouped by query: the tokens before the document (segment 0 of each encoding, see
/// [`LlmReranker::encode_pair`]) are the key, so a server batch that mixes requests still shares
/// each query's prefix. Groups keep the order of their first pair.
fn prefix_families(pairs: &[Encoded]) -> Vec<Vec<usize>> {
    let mut index: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
    let mut families: Vec<Vec<usize>> = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        let key = &pair.ids[..query_tokens(pair).min(pair.ids.len())];
        let slot = *index.entry(key).or_insert_with(|| {
            families.push(Vec::new());
            families.len() - 1
        });
        families[slot].push(i);
    }
    families
}

/// Tokens every row starts with, leaving each row at least one token of its own (the last
/// token's state must come from the rows' own pass).
fn shared_prefix(rows: &[&Encoded]) -> usize {
    let first = &rows[0].ids;
    let mut n = rows
        .iter()
        .map(|r| r.ids.len())
        .min()
        .unwrap_or(0)
        .saturating_sub(1);
    for r in &rows[1..] {
        n = n.min(first.iter().zip(&r.ids).take_while(|(a, b)| a == b).count());
    }
    n
}

/// `[b, t]` ids of `rows[i][skip..]`, right-padded with 0 (padding is never attended to by a
/// real token and never read), and each row's real length.
fn pad_rows(rows: &[&Encoded], skip: usize, device: &Device) -> Result<(Tensor, Vec<usize>)> {
    let lengths: Vec<usize> = rows.iter().map(|r| r.ids.len() - skip).collect();
    let t = lengths.iter().copied().max().unwrap_or(0);
    if t == 0 || lengths.contains(&0) {
        return Err(ModelError::InvalidInput(
            "an encoded pair has no tokens".into(),
        ));
    }
    let mut ids = vec![0u32; rows.len() * t];
    for (i, r) in rows.iter().enumerate() {
        ids[i * t..i * t + lengths[i]].copy_from_slice(&r.ids[skip..]);
    }
    Ok((Tensor::from_vec(ids, (rows.len(), t), device)?, lengths))
}

fn raw_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            dir: dir.to_owned(),
            what: "tokenizer",
            looked_for: "tokenizer.json".into(),
        });
    }
    let mut t = Tokenizer::from_file(&path)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
    t.with_padding(None);
    t.with_truncation(None)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(t)
}

/// BOS and padding token ids as transformers' tokenizer reports them: tokenizer_config.json's
/// `bos_token` / `pad_token` looked up in the vocabulary, else config.json's ids.
struct SpecialTokens {
    bos: Option<u32>,
    pad: Option<u32>,
}

impl SpecialTokens {
    fn from_dir(dir: &Path, tokenizer: &Tokenizer, config: &DecoderConfig) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let value: Option<serde_json::Value> = match std::fs::read_to_string(&path) {
            Ok(text) => {
                Some(
                    serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            Err(_) => None,
        };
        let lookup = |key: &str| -> Option<Option<u32>> {
            let v = value.as_ref()?.get(key)?;
            let text = match v {
                serde_json::Value::String(s) => Some(s.as_str()),
                serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()),
                _ => None,
            };
            Some(text.and_then(|t| tokenizer.token_to_id(t)))
        };
        Ok(SpecialTokens {
            bos: lookup("bos_token").unwrap_or(config.bos_token_id),
            pad: lookup("pad_token").unwrap_or(config.pad_token_id),
        })
    }
}

impl Reranker for LlmReranker {
    fn model_dir(&self) -> &ModelDir {
        &self.dir
    }

    fn engine_name(&self) -> &'static str {
        "candle"
    }

    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn max_length(&self) -> usize {
        self.encoder.max_total_length()
    }

    /// The pair's tokens with a one-token probe document, less the probe: the template,
    /// instruction and query.
    fn pair_overhead(&self, query: &str) -> Result<usize> {
        const PROBE: &str = "a";
        let pair = self.encoder.encode(&self.raw_tokenizer, query, PROBE)?;
        let probe = self.tokenizer.token_offsets(PROBE)?.len();
        Ok(pair.ids.len().saturating_sub(probe))
    }

    fn with_depth(&self, depth: &LlmDepth) -> Result<Arc<dyn Reranker>> {
        let config = self.decoder.config();
        let num_layers = match depth.cutoff_layer {
            Some(n) => cutoff_layer(config, Some(n))?,
            None => self.num_layers,
        };
        let compression = if depth.compress_ratio.is_some() || depth.compress_layers.is_some() {
            let (ratio, layers) = self.compression.clone().unzip();
            let compress_ratio = depth.compress_ratio.or(ratio);
            // Ratio 1 alone turns compression off: the loaded layers go with the loaded ratio.
            let compress_layers = match (compress_ratio, &depth.compress_layers) {
                (Some(1), None) => None,
                (_, asked) => asked.clone().or(layers),
            };
            let options = RerankerOptions {
                compress_ratio,
                compress_layers,
                ..RerankerOptions::default()
            };
            compression(config, &self.encoder, &options)?
        } else {
            self.compression.clone()
        };
        if config.layerwise.is_none() {
            // cutoff_layer refused a cutoff and compression refused a ratio above 1 already;
            // what is left is a request that asked for nothing a plain model can do.
            return Err(ModelError::InvalidInput(format!(
                "{} has one head after its last layer: cutoff_layer and compression apply to layerwise LLM rerankers",
                self.dir.name()
            )));
        }
        Ok(Arc::new(LlmReranker {
            num_layers,
            compression,
            ..self.view()
        }))
    }

    fn with_prompt(&self, prompt: &str) -> Result<Arc<dyn Reranker>> {
        let encoder = self.encoder.with_prompt(&self.raw_tokenizer, prompt)?;
        let limit = self.decoder.config().max_position_embeddings;
        if encoder.max_total_length() > limit {
            return Err(ModelError::InvalidInput(format!(
                "with this prompt pairs reach {} tokens, beyond what {} supports ({limit})",
                encoder.max_total_length(),
                self.dir.name()
            )));
        }
        Ok(Arc::new(LlmReranker {
            encoder,
            ..self.view()
        }))
    }

    /// The recipe's tokens; `type_ids` mark the tokens before the document (0) and the rest (1).
    fn encode_pair(&self, query: &str, document: &str) -> Result<(Encoded, bool)> {
        if crate::is_blank(query) {
            return Err(ModelError::InvalidInput("the query is empty".into()));
        }
        if crate::is_blank(document) {
            return Err(ModelError::InvalidInput("a document is empty".into()));
        }
        let pair = self.encoder.encode(&self.raw_tokenizer, query, document)?;
        // Segment 0: the tokens before the document, 1: the document and what follows. The
        // decoder ignores them; batching reads them to group one query's pairs.
        let mut type_ids = vec![0; pair.query_len];
        type_ids.resize(pair.ids.len(), 1);
        Ok((
            Encoded {
                ids: pair.ids,
                type_ids,
            },
            pair.cut,
        ))
    }

    fn score_pairs(
        &self,
        pairs: &[Encoded],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<RerankScore>> {
        let lengths: Vec<usize> = pairs.iter().map(|e| e.len()).collect();
        let families = if self.share_prefix {
            prefix_families(pairs)
        } else {
            vec![(0..pairs.len()).collect()]
        };
        score_in_batches(
            &lengths,
            families,
            self.max_batch_tokens,
            |slots| {
                let rows: Vec<&Encoded> = slots.iter().map(|&i| &pairs[i]).collect();
                Ok(self
                    .logits_of(&rows, true)?
                    .iter()
                    .zip(slots)
                    .map(|(row, &index)| {
                        let logit = self.encoder.logit(row);
                        RerankScore {
                            index,
                            logit,
                            score: sigmoid(logit),
                            dropped: false,
                        }
                    })
                    .collect())
            },
            progress,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `query` tokens of segment 0, then the document's of segment 1.
    fn enc(query: &[u32], document: &[u32]) -> Encoded {
        Encoded {
            ids: query.iter().chain(document).copied().collect(),
            type_ids: [vec![0; query.len()], vec![1; document.len()]].concat(),
        }
    }

    #[test]
    fn pairs_group_by_their_query_prefix() {
        // Template 1 2 3, query A = 7 7, query B = 8; documents after.
        let (a, b) = ([1, 2, 3, 7, 7], [1, 2, 3, 8]);
        let pairs = vec![
            enc(&b, &[50, 51]),
            enc(&a, &[40, 44]),
            enc(&b, &[60]),
            enc(&a, &[41, 42]),
            enc(&a, &[40, 43]),
            enc(&[9], &[9]),
        ];
        let families = prefix_families(&pairs);
        assert_eq!(families, vec![vec![0, 2], vec![1, 3, 4], vec![5]]);
        // Within a family the shared run may go past the query (two documents starting alike).
        let rows: Vec<&Encoded> = [1, 4].iter().map(|&i| &pairs[i]).collect();
        assert_eq!(shared_prefix(&rows), 6);
    }
}
