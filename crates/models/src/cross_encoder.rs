//! Cross-encoder reranker: (query, document) pairs → relevance scores.

use std::path::Path;

use crate::batch::plan_batches;
use crate::calibration_text;
use crate::config::Head;
use crate::engine::{Engine, EngineOptions};
use crate::error::{ModelError, Result};
use crate::model_dir::ModelDir;
use crate::tokenize::{Encoded, TextTokenizer};
use crate::{resolve_max_length, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_ONNX_BATCH_TOKENS};

#[derive(Debug, Clone, Default)]
pub struct CrossEncoderOptions {
    /// Tokens per pair, special tokens included; the document is cut first.
    pub max_length: Option<usize>,
    /// Padded tokens per forward pass.
    pub max_batch_tokens: Option<usize>,
    pub engine: EngineOptions,
}

/// The score of one document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RerankScore {
    /// Position of the document in the input.
    pub index: usize,
    /// The relevant label's raw logit (unbounded; comparable within one model).
    pub logit: f32,
    /// Probability of relevance in [0, 1]: sigmoid of the logit for one-label models, softmax
    /// of the relevant label for two-label models.
    pub score: f32,
}

pub struct CrossEncoder {
    engine: Engine,
    tokenizer: TextTokenizer,
    dir: ModelDir,
    max_batch_tokens: usize,
}

impl CrossEncoder {
    /// Loads a `*ForSequenceClassification` directory. One-label heads score with their only
    /// logit; two-label heads (e.g. some NLI-style rerankers) score with label 1, the
    /// "relevant" class by convention.
    pub fn load(dir: impl AsRef<Path>, options: CrossEncoderOptions) -> Result<Self> {
        let dir = ModelDir::open(dir)?;
        if dir.config.head != Head::SequenceClassification {
            return Err(ModelError::NotACrossEncoder {
                path: dir.path.clone(),
                architectures: dir.config.architecture_name.clone(),
            });
        }
        let labels = dir.config.labels.len();
        if !(1..=2).contains(&labels) {
            return Err(ModelError::InvalidConfig {
                path: dir.path.join("config.json"),
                reason: format!("a cross-encoder needs 1 or 2 labels, this head has {labels}"),
            });
        }
        let max_length = resolve_max_length(&dir, options.max_length)?;
        let tokenizer =
            TextTokenizer::from_dir(&dir.path, max_length, dir.config.type_vocab_size > 1)?;
        let engine = Engine::load(&dir, true, options.engine, || {
            let (queries, passages) = (calibration_text::QUERIES, calibration_text::PASSAGES);
            let mut rows = Vec::new();
            for (i, q) in queries.iter().enumerate() {
                rows.push(tokenizer.encode_pair(q, passages[i])?);
                rows.push(tokenizer.encode_pair(q, passages[(i + 3) % passages.len()])?);
            }
            Ok(rows)
        })?;
        Ok(CrossEncoder {
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

    pub fn model_dir(&self) -> &ModelDir {
        &self.dir
    }

    /// The engine running this model.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Tokenizes each (query, document) pair; rejects an empty query or document.
    pub fn encode(&self, query: &str, documents: &[impl AsRef<str>]) -> Result<Vec<Encoded>> {
        if query.trim().is_empty() {
            return Err(ModelError::InvalidInput("the query is empty".into()));
        }
        documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d = d.as_ref();
                if d.trim().is_empty() {
                    return Err(ModelError::InvalidInput(format!("document {i} is empty")));
                }
                self.tokenizer.encode_pair(query, d)
            })
            .collect()
    }

    /// Scores in input order.
    pub fn score(&self, query: &str, documents: &[impl AsRef<str>]) -> Result<Vec<RerankScore>> {
        let pairs = self.encode(query, documents)?;
        self.score_encoded(&pairs, &mut |_| {})
    }

    /// Scores pre-tokenized pairs in input order, calling `progress(n)` after each batch.
    pub fn score_encoded(
        &self,
        pairs: &[Encoded],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<RerankScore>> {
        let lengths: Vec<usize> = pairs.iter().map(|e| e.len()).collect();
        let mut out = vec![
            RerankScore {
                index: 0,
                logit: 0.0,
                score: 0.0
            };
            pairs.len()
        ];
        for group in plan_batches(&lengths, self.max_batch_tokens) {
            let rows: Vec<&Encoded> = group.iter().map(|&i| &pairs[i]).collect();
            let logits = self.engine.logits(&rows, self.dir.config.pad_token_id)?;
            for (&slot, row) in group.iter().zip(logits) {
                out[slot] = score_from_logits(slot, &row);
            }
            progress(group.len());
        }
        Ok(out)
    }

    /// Documents sorted by descending score (ties keep input order), cut to `top_k`.
    pub fn rerank(
        &self,
        query: &str,
        documents: &[impl AsRef<str>],
        top_k: Option<usize>,
    ) -> Result<Vec<RerankScore>> {
        let mut scores = self.score(query, documents)?;
        sort_by_score(&mut scores);
        if let Some(k) = top_k {
            scores.truncate(k);
        }
        Ok(scores)
    }

    /// Raw logits `[b, num_labels]` of prepared pairs; the golden tests compare these.
    pub fn logits(&self, pairs: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        let rows: Vec<&Encoded> = pairs.iter().collect();
        self.engine.logits(&rows, self.dir.config.pad_token_id)
    }
}

fn score_from_logits(index: usize, logits: &[f32]) -> RerankScore {
    match logits {
        [l] => RerankScore {
            index,
            logit: *l,
            score: sigmoid(*l),
        },
        [l0, l1, ..] => RerankScore {
            index,
            logit: *l1,
            // softmax over two labels == sigmoid of their difference
            score: sigmoid(l1 - l0),
        },
        [] => RerankScore {
            index,
            logit: f32::NAN,
            score: f32::NAN,
        },
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Descending by logit (ties keep input order); NaN sorts last.
pub fn sort_by_score(scores: &mut [RerankScore]) {
    scores.sort_by(|a, b| {
        b.logit
            .partial_cmp(&a.logit)
            .unwrap_or_else(|| a.logit.is_nan().cmp(&b.logit.is_nan()))
            .then(a.index.cmp(&b.index))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_label_heads_score_the_relevant_label() {
        let s = score_from_logits(3, &[1.0, 3.0]);
        assert_eq!(s.logit, 3.0);
        let softmax1 = 3f32.exp() / (1f32.exp() + 3f32.exp());
        assert!((s.score - softmax1).abs() < 1e-6);
        let one = score_from_logits(0, &[0.0]);
        assert_eq!(one.score, 0.5);
    }

    #[test]
    fn sorting_is_descending_and_stable() {
        let mk = |index, logit| RerankScore {
            index,
            logit,
            score: 0.0,
        };
        let mut v = vec![mk(0, 1.0), mk(1, f32::NAN), mk(2, 5.0), mk(3, 1.0)];
        sort_by_score(&mut v);
        let order: Vec<usize> = v.iter().map(|s| s.index).collect();
        assert_eq!(order, vec![2, 0, 3, 1]);
    }
}
