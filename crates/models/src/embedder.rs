//! Bi-encoder: texts → vectors for ANN search.

use std::path::Path;

use crate::batch::{plan_batches, Batch};
use crate::calibration_text;
use crate::engine::{Engine, EngineOptions};
use crate::error::{ModelError, Result};
use crate::model_dir::ModelDir;
use crate::pooling::{l2_normalize, Pooling};
use crate::tokenize::{Encoded, TextTokenizer};
use crate::{resolve_max_length, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_ONNX_BATCH_TOKENS};

/// Overrides for what the model directory says; `None` keeps the directory's choice.
#[derive(Debug, Clone, Default)]
pub struct EmbedderOptions {
    /// Tokens per text, special tokens included; at most the model's position limit.
    pub max_length: Option<usize>,
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    /// Prepended to queries, e.g. BGE's "Represent this sentence for searching relevant
    /// passages: " or E5's "query: ".
    pub query_prefix: Option<String>,
    /// Prepended to passages, e.g. E5's "passage: ".
    pub passage_prefix: Option<String>,
    /// Padded tokens per forward pass (rows × longest row).
    pub max_batch_tokens: Option<usize>,
    pub engine: EngineOptions,
}

/// Whether a text is a search query or a document; picks the prefix asymmetric models need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRole {
    Query,
    Passage,
    /// No prefix at all (TEI's `/embed`, OpenAI's `/v1/embeddings`).
    Raw,
}

pub struct Embedder {
    engine: Engine,
    tokenizer: TextTokenizer,
    dir: ModelDir,
    pooling: Pooling,
    normalize: bool,
    query_prefix: String,
    passage_prefix: String,
    max_batch_tokens: usize,
    fingerprint: std::sync::OnceLock<String>,
    legacy_fingerprint: std::sync::OnceLock<String>,
}

impl Embedder {
    /// Loads any supported model directory as an embedder. Pooling defaults to the
    /// sentence-transformers config, else mean pooling (the most common choice among embedders
    /// without that file); normalisation defaults to whether a `Normalize` module is listed.
    pub fn load(dir: impl AsRef<Path>, options: EmbedderOptions) -> Result<Self> {
        let dir = ModelDir::open(dir)?;
        let max_length = resolve_max_length(&dir, options.max_length)?;
        let tokenizer =
            TextTokenizer::from_dir(&dir.path, max_length, dir.config.type_vocab_size > 1)?;
        let engine = Engine::load(&dir, false, options.engine, || {
            let texts = calibration_text::QUERIES
                .iter()
                .chain(calibration_text::PASSAGES);
            texts.map(|t| tokenizer.encode(t)).collect()
        })?;
        let st = &dir.sentence_transformers;
        Ok(Embedder {
            fingerprint: std::sync::OnceLock::new(),
            legacy_fingerprint: std::sync::OnceLock::new(),
            pooling: options.pooling.or(st.pooling).unwrap_or(Pooling::Mean),
            normalize: options.normalize.unwrap_or(st.normalize),
            query_prefix: options
                .query_prefix
                .or_else(|| st.query_prompt.clone())
                .unwrap_or_default(),
            passage_prefix: options
                .passage_prefix
                .or_else(|| st.passage_prompt.clone())
                .unwrap_or_default(),
            max_batch_tokens: options
                .max_batch_tokens
                .unwrap_or(match engine {
                    Engine::Candle(_) => DEFAULT_MAX_BATCH_TOKENS,
                    Engine::Onnx(_) => DEFAULT_ONNX_BATCH_TOKENS,
                })
                .max(1),
            engine,
            tokenizer,
            dir,
        })
    }

    /// Length of the vectors this embedder returns.
    pub fn dim(&self) -> usize {
        self.dir.config.hidden_size
    }

    /// The engine running this model.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn model_dir(&self) -> &ModelDir {
        &self.dir
    }

    /// What identifies this model's weights ([`ModelDir::fingerprint`]). It reads every weight
    /// byte, so it is computed on first use (indexing, opening a collection), once per loaded
    /// model — not at load, where `sift embed` and `/embed` would pay for it without need.
    pub fn fingerprint(&self) -> Result<&str> {
        if let Some(f) = self.fingerprint.get() {
            return Ok(f);
        }
        let f = self.dir.fingerprint()?;
        Ok(self.fingerprint.get_or_init(|| f))
    }

    /// Whether a collection that recorded `fingerprint` was made with this model. Also accepts
    /// the shorter fingerprint of collections made before whole-weight hashing (computed only
    /// then, on demand).
    pub fn has_fingerprint(&self, fingerprint: &str) -> Result<bool> {
        if fingerprint.starts_with(crate::model_dir::FINGERPRINT_V2) {
            return Ok(fingerprint == self.fingerprint()?);
        }
        if let Some(legacy) = self.legacy_fingerprint.get() {
            return Ok(fingerprint == legacy);
        }
        let legacy = self.dir.legacy_fingerprint()?;
        Ok(fingerprint == self.legacy_fingerprint.get_or_init(|| legacy))
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The text prepended to inputs of `role` (empty when the model has none).
    pub fn prompt(&self, role: TextRole) -> &str {
        match role {
            TextRole::Query => &self.query_prefix,
            TextRole::Passage => &self.passage_prefix,
            TextRole::Raw => "",
        }
    }

    /// Tokenizes `texts` with the prefix for `role`; rejects empty texts.
    pub fn encode(&self, texts: &[impl AsRef<str>], role: TextRole) -> Result<Vec<Encoded>> {
        let prefix = match role {
            TextRole::Query => self.query_prefix.as_str(),
            TextRole::Passage => self.passage_prefix.as_str(),
            TextRole::Raw => "",
        };
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.as_ref();
                if crate::is_blank(t) {
                    return Err(ModelError::InvalidInput(format!(
                        "text {i} is empty; there is nothing to embed"
                    )));
                }
                if prefix.is_empty() {
                    self.tokenizer.encode(t)
                } else {
                    self.tokenizer.encode(&format!("{prefix}{t}"))
                }
            })
            .collect()
    }

    /// One vector per text, in input order. Texts longer than the max length are truncated.
    pub fn embed(&self, texts: &[impl AsRef<str>], role: TextRole) -> Result<Vec<Vec<f32>>> {
        self.embed_with_progress(texts, role, &mut |_| {})
    }

    /// Like [`Embedder::embed`], calling `progress(n)` after each batch with the number of texts
    /// finished in it.
    pub fn embed_with_progress(
        &self,
        texts: &[impl AsRef<str>],
        role: TextRole,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let encoded = self.encode(texts, role)?;
        self.embed_encoded(&encoded, progress)
    }

    /// Embeds already tokenized inputs (the server batches requests this way).
    pub fn embed_encoded(
        &self,
        encoded: &[Encoded],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_encoded_with(encoded, self.normalize, progress)
    }

    /// Like [`Embedder::embed_encoded`], choosing L2 normalisation per call (TEI's `normalize`).
    pub fn embed_encoded_with(
        &self,
        encoded: &[Encoded],
        normalize: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let lengths: Vec<usize> = encoded.iter().map(|e| e.len()).collect();
        let mut out = vec![Vec::new(); encoded.len()];
        for group in plan_batches(&lengths, self.max_batch_tokens) {
            let rows: Vec<&Encoded> = group.iter().map(|&i| &encoded[i]).collect();
            let (hidden, batch) = self
                .engine
                .hidden_states(&rows, self.dir.config.pad_token_id)?;
            let mut pooled = self.pooling.pool(&hidden, &batch.mask)?;
            if normalize {
                pooled = l2_normalize(&pooled)?;
            }
            let vectors: Vec<Vec<f32>> = pooled.to_vec2()?;
            for (slot, v) in group.iter().zip(vectors) {
                out[*slot] = v;
            }
            progress(group.len());
        }
        Ok(out)
    }

    /// The last layer's state of every token (special tokens included), neither pooled nor
    /// normalized: one `[tokens][hidden]` matrix per input, in input order (TEI's `/embed_all`,
    /// for late-interaction scoring).
    pub fn token_states(&self, encoded: &[Encoded]) -> Result<Vec<Vec<Vec<f32>>>> {
        let lengths: Vec<usize> = encoded.iter().map(|e| e.len()).collect();
        let mut out = vec![Vec::new(); encoded.len()];
        for group in plan_batches(&lengths, self.max_batch_tokens) {
            let rows: Vec<&Encoded> = group.iter().map(|&i| &encoded[i]).collect();
            let (hidden, _) = self
                .engine
                .hidden_states(&rows, self.dir.config.pad_token_id)?;
            let states: Vec<Vec<Vec<f32>>> = hidden.to_vec3()?;
            for (&slot, mut rows) in group.iter().zip(states) {
                // Batches are right-padded: the input's own tokens come first.
                rows.truncate(lengths[slot]);
                out[slot] = rows;
            }
        }
        Ok(out)
    }

    /// Token states `[b, t, hidden]` for a prepared batch; the golden tests compare these.
    pub fn hidden_states(&self, encoded: &[Encoded]) -> Result<(candle_core::Tensor, Batch)> {
        let rows: Vec<&Encoded> = encoded.iter().collect();
        self.engine
            .hidden_states(&rows, self.dir.config.pad_token_id)
    }
}
