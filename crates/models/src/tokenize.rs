//! `tokenizer.json` → token ids, with sift's truncation rules.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{ModelError, Result};

/// Token ids of one input (a text, or a query–document pair), special tokens included.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Segment ids (0 for the query, 1 for the document in BERT pairs); all 0 for models
    /// without token-type embeddings.
    pub type_ids: Vec<u32>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Input beyond this many bytes per allowed token is cut before tokenizing. Real text averages
/// 4–6 bytes per token, so the cut never reaches the tokens the model sees; it bounds the work a
/// 10 MB input can cause.
const MAX_BYTES_PER_TOKEN: usize = 64;

/// Wraps a Hugging Face fast tokenizer with the truncation a retrieval model needs: single texts
/// are cut at `max_length` tokens; pairs cut the document and keep the query whole (falling back
/// to cutting both when the query alone is too long).
#[derive(Clone)]
pub struct TextTokenizer {
    untruncated: Tokenizer,
    single: Tokenizer,
    pair: Tokenizer,
    pair_fallback: Tokenizer,
    max_length: usize,
    use_type_ids: bool,
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json`. `max_length` counts special tokens.
    pub fn from_dir(dir: &Path, max_length: usize, use_type_ids: bool) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                dir: dir.to_owned(),
                what: "tokenizer",
                looked_for: "tokenizer.json (the fast-tokenizer file; save it with transformers' AutoTokenizer.save_pretrained)".into(),
            });
        }
        let base = Tokenizer::from_file(&path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::from_tokenizer(base, max_length, use_type_ids)
    }

    /// Wraps a tokenizer built in memory (from a GGUF file's vocabulary).
    pub fn from_tokenizer(base: Tokenizer, max_length: usize, use_type_ids: bool) -> Result<Self> {
        let with = |strategy| -> Result<Tokenizer> {
            let mut t = base.clone();
            t.with_padding(None);
            t.with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy,
                stride: 0,
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
            Ok(t)
        };
        let mut untruncated = base.clone();
        untruncated.with_padding(None);
        untruncated
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(TextTokenizer {
            untruncated,
            single: with(TruncationStrategy::LongestFirst)?,
            pair: with(TruncationStrategy::OnlySecond)?,
            pair_fallback: with(TruncationStrategy::LongestFirst)?,
            max_length,
            use_type_ids,
        })
    }

    /// Longest encoding this tokenizer produces, in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn encode(&self, text: &str) -> Result<Encoded> {
        Ok(self.encode_checked(text)?.0)
    }

    pub fn encode_pair(&self, query: &str, document: &str) -> Result<Encoded> {
        Ok(self.encode_pair_checked(query, document)?.0)
    }

    /// Like [`TextTokenizer::encode_pair`], also saying whether anything was cut to fit
    /// `max_length` — read from the tokenizer's own output (its overflow), so no caller has to
    /// count special tokens.
    pub fn encode_pair_checked(&self, query: &str, document: &str) -> Result<(Encoded, bool)> {
        let (q, d) = (self.clip(query), self.clip(document));
        let clipped = q.len() < query.len() || d.len() < document.len();
        let enc = match self.pair.encode((q, d), true) {
            Ok(enc) => enc,
            // The query alone does not fit: cut both, longest first.
            Err(_) => self
                .pair_fallback
                .encode((q, d), true)
                .map_err(|e| ModelError::Tokenizer(e.to_string()))?,
        };
        let cut = clipped || !enc.get_overflowing().is_empty();
        Ok((self.finish(enc), cut))
    }

    /// Like [`TextTokenizer::encode`], also saying whether the text was cut to fit.
    pub fn encode_checked(&self, text: &str) -> Result<(Encoded, bool)> {
        let clipped = self.clip(text);
        let enc = self
            .single
            .encode(clipped, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let cut = clipped.len() < text.len() || !enc.get_overflowing().is_empty();
        Ok((self.finish(enc), cut))
    }

    /// Tokens a (query, document) pair has before truncation, special tokens included.
    pub fn pair_len_untruncated(&self, query: &str, document: &str) -> Result<usize> {
        let enc = self
            .untruncated
            .encode((query, document), true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.len())
    }

    /// Tokens `text` has before truncation, special tokens included: what the model would need
    /// to see all of it.
    pub fn len_untruncated(&self, text: &str) -> Result<usize> {
        let enc = self
            .untruncated
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.len())
    }

    /// Byte ranges of every token of `text`, no special tokens, no truncation: what splitting a
    /// long document into token windows needs.
    pub fn token_offsets(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        let enc = self
            .untruncated
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_offsets().to_vec())
    }

    /// The underlying tokenizer with this wrapper's single-text truncation, for callers that need
    /// offsets or tokens (the server's `/tokenize`).
    pub fn inner(&self) -> &Tokenizer {
        &self.single
    }

    /// The underlying tokenizer without truncation (the server's `/tokenize` and `/decode`).
    pub fn untruncated(&self) -> &Tokenizer {
        &self.untruncated
    }

    fn clip<'a>(&self, text: &'a str) -> &'a str {
        let limit = self.max_length.saturating_mul(MAX_BYTES_PER_TOKEN);
        if text.len() <= limit {
            return text;
        }
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    }

    fn finish(&self, enc: tokenizers::Encoding) -> Encoded {
        let ids = enc.get_ids().to_vec();
        let type_ids = if self.use_type_ids {
            enc.get_type_ids().to_vec()
        } else {
            vec![0; ids.len()]
        };
        Encoded { ids, type_ids }
    }
}
