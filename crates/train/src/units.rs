//! The units a bi-encoder is trained and evaluated on.
//!
//! sift's index does not embed a document: it embeds overlapping token windows of it (each with
//! the title in front) and scores the document by its best window. A bi-encoder fine-tuned on
//! whole documents cut at its max length learns a different function — on SciFact the first
//! 256 tokens of an abstract, which miss the results a claim usually paraphrases, and a score
//! the index never computes (the trainer's own dev gain of +0.019 nDCG@10 shrank to +0.0115
//! once `sift eval` measured the re-indexed collection). [`DocumentUnit::Windows`] trains on
//! the index's scoring function instead: every document is its windows, and a query's score for
//! it is the maximum over them (MaxP), with the gradient flowing into the window that won.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use sift_index::ChunkingConfig;
use sift_models::TextTokenizer;
use sift_pipeline::ingest::{chunk_text, embedding_text};

use crate::data::corpus_documents;
use crate::error::{Result, TrainError};

/// What one document is to the loss and to the dev evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentUnit {
    /// The title and text as one sequence, cut at the max length: what runs saved before the
    /// choice trained on (their checkpoints carry no unit and resume with this).
    #[default]
    Whole,
    /// The windows a collection built for the trained model embeds ([`sift_pipeline::default_chunking`]
    /// of its max length), scored by the best one.
    Windows(ChunkingConfig),
}

impl std::fmt::Display for DocumentUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocumentUnit::Whole => f.write_str("whole"),
            DocumentUnit::Windows(c) => write!(
                f,
                "windows of {} tokens overlapping by {}",
                c.max_tokens, c.overlap_tokens
            ),
        }
    }
}

/// Document id → the texts embedded for it ("title\nwindow", as the index embeds them).
pub type DocumentWindows = HashMap<String, Vec<String>>;

/// The texts embedded for document `id`: its windows when `windows` has any, else `text`
/// itself (whole-document training, or a text no window covers such as a synthetic positive).
pub fn units_of<'a>(windows: Option<&'a DocumentWindows>, id: &str, text: &'a str) -> Vec<&'a str> {
    match windows.and_then(|w| w.get(id)) {
        Some(windows) if !windows.is_empty() => windows.iter().map(String::as_str).collect(),
        _ => vec![text],
    }
}

/// Splits every document of a BEIR `corpus.jsonl` into the windows an index with `chunking`
/// embeds, measuring tokens with `tokenizer` (the model's own, as at indexing time).
pub fn corpus_windows(
    path: &Path,
    tokenizer: &TextTokenizer,
    chunking: ChunkingConfig,
) -> Result<DocumentWindows> {
    if chunking.max_tokens == 0 || chunking.overlap_tokens >= chunking.max_tokens {
        return Err(TrainError::Invalid(format!(
            "window overlap ({}) must be smaller than the window ({} tokens)",
            chunking.overlap_tokens, chunking.max_tokens
        )));
    }
    let mut out = DocumentWindows::new();
    for (id, title, text) in corpus_documents(path)? {
        let windows = chunk_text(tokenizer, &text, chunking)?
            .iter()
            .map(|window| embedding_text(title.as_deref(), window))
            .collect();
        out.insert(id, windows);
    }
    Ok(out)
}

/// Document scores `[b, spans.len()]` from unit scores `[b, units]`: column `j` is the maximum
/// over units `spans[j].0 .. spans[j].0 + spans[j].1` (each span at least one unit).
/// Differentiable: the gradient reaches the best unit of each (query, document) pair.
pub fn max_per_document(scores: &Tensor, spans: &[(usize, usize)]) -> Result<Tensor> {
    let (_, units) = scores.dims2()?;
    let mut columns = Vec::with_capacity(spans.len());
    for &(start, len) in spans {
        if len == 0 || start + len > units {
            return Err(TrainError::Invalid(format!(
                "document span {start}..{} outside the {units} scored units",
                start + len
            )));
        }
        let part = scores.narrow(1, start, len)?;
        columns.push(if len == 1 { part } else { part.max_keepdim(1)? });
    }
    Ok(Tensor::cat(&columns, 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn a_document_scores_its_best_unit_and_only_that_unit_gets_the_gradient() {
        let units = Var::new(
            &[[0.1f32, 0.7, 0.3, 0.5], [0.9, 0.2, 0.1, 0.4]],
            &Device::Cpu,
        )
        .unwrap();
        let docs = max_per_document(units.as_tensor(), &[(0, 3), (3, 1)]).unwrap();
        assert_eq!(
            docs.to_vec2::<f32>().unwrap(),
            vec![vec![0.7, 0.5], vec![0.9, 0.4]]
        );
        let grads = docs.sum_all().unwrap().backward().unwrap();
        let g = grads
            .get(units.as_tensor())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(g, vec![vec![0.0, 1.0, 0.0, 1.0], vec![1.0, 0.0, 0.0, 1.0]]);
    }

    #[test]
    fn spans_outside_the_units_are_errors() {
        let units = Tensor::zeros((1, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_per_document(&units, &[(1, 2)]).is_err());
        assert!(max_per_document(&units, &[(0, 0)]).is_err());
    }
}
