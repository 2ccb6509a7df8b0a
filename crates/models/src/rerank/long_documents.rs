//! The one rule for documents longer than a rerank model's window.
//!
//! `Windows` (the default): the document is split into token windows that each fit beside the
//! query, every window is scored, and the document gets its best window's score ("MaxP", the
//! rule Cohere documents for its rerank API and Dai & Callan found best for BERT rerankers).
//! `Truncate`: the document is cut to fit and only its beginning is scored. `Best`: as
//! `Windows`, but only the `max_windows` windows that share the most of the query's tokens are
//! scored — a lexical preselection that buys most of what every window finds for the price of
//! one or two (docs/quality.md, "Length is cost"). A document that fits is one pair under every
//! rule, so they agree on short documents exactly.

use crate::error::{ModelError, Result};
use crate::tokenize::Encoded;

use super::{compare_logits, RerankScore, Reranker};

/// Windows are never smaller than this many document tokens, even when a long query leaves
/// less room (the pair tokenizer then cuts the query too).
const MIN_WINDOW_TOKENS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongDocumentMode {
    /// Score only the beginning that fits.
    Truncate,
    /// Score every window (up to `max_windows`); keep the best.
    #[default]
    Windows,
    /// Score the `max_windows` windows sharing the most distinct query tokens (ties: the
    /// earlier window); keep the best.
    Best,
}

impl std::str::FromStr for LongDocumentMode {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "truncate" => Ok(LongDocumentMode::Truncate),
            "windows" | "max" => Ok(LongDocumentMode::Windows),
            "best" => Ok(LongDocumentMode::Best),
            other => Err(ModelError::InvalidInput(format!(
                "unknown long-document mode {other:?}: use windows, best or truncate"
            ))),
        }
    }
}

/// How documents longer than the model's window are scored. One value of this is given to every
/// rerank call site; per-request API fields (Cohere's `max_chunks_per_doc`,
/// `max_tokens_per_doc`) override its fields, never the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LongDocumentPolicy {
    pub mode: LongDocumentMode,
    /// Document tokens per window; `None`: as many as fit beside the query (the model's max
    /// length minus the query, special tokens and template). Never more than that.
    pub window_tokens: Option<usize>,
    /// Tokens from one window's start to the next; `None`: 7/8 of the window (windows share
    /// 1/8, so a sentence cut at one window's edge is whole in the next).
    pub stride_tokens: Option<usize>,
    /// Most windows scored per document (Cohere's `max_chunks_per_doc`); text beyond them is
    /// not scored.
    pub max_windows: usize,
    /// Most document tokens considered at all (Cohere's `max_tokens_per_doc`).
    pub max_document_tokens: usize,
}

/// Cohere's defaults: 10 windows per document, 4,096 tokens per document.
pub const DEFAULT_MAX_WINDOWS: usize = 10;
pub const DEFAULT_MAX_DOCUMENT_TOKENS: usize = 4096;

impl Default for LongDocumentPolicy {
    fn default() -> Self {
        LongDocumentPolicy {
            mode: LongDocumentMode::Windows,
            window_tokens: None,
            stride_tokens: None,
            max_windows: DEFAULT_MAX_WINDOWS,
            max_document_tokens: DEFAULT_MAX_DOCUMENT_TOKENS,
        }
    }
}

impl LongDocumentPolicy {
    /// The truncating rule with otherwise default knobs.
    pub fn truncate() -> Self {
        LongDocumentPolicy {
            mode: LongDocumentMode::Truncate,
            ..Default::default()
        }
    }

    /// Rejects knobs that cannot work (zero sizes, a stride longer than the window).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidInput(m));
        if self.max_windows == 0 {
            return bad("max windows per document must be at least 1".into());
        }
        if self.max_document_tokens == 0 {
            return bad("max tokens per document must be at least 1".into());
        }
        if self.window_tokens == Some(0) || self.stride_tokens == Some(0) {
            return bad("window and stride must be at least 1 token".into());
        }
        if let (Some(w), Some(s)) = (self.window_tokens, self.stride_tokens) {
            if s > w {
                return bad(format!(
                    "a stride of {s} tokens would skip text between windows of {w}"
                ));
            }
        }
        Ok(())
    }
}

/// Tokenized (query, window) pairs of a set of documents, and which document each came from.
#[derive(Debug, Clone)]
pub struct PreparedPairs {
    pairs: Vec<Encoded>,
    owners: Vec<usize>,
    documents: usize,
    /// Per document: some of its text is not in any scored pair.
    truncated: Vec<bool>,
    /// Milliseconds [`prepare`] took (tokenizing is part of what a rerank budget spends).
    prepare_ms: f64,
}

impl PreparedPairs {
    pub fn pairs(&self) -> &[Encoded] {
        &self.pairs
    }

    /// Milliseconds spent tokenizing these pairs.
    pub fn prepare_ms(&self) -> f64 {
        self.prepare_ms
    }

    pub fn into_pairs(self) -> (Vec<Encoded>, PairOwners) {
        (
            self.pairs,
            PairOwners {
                owners: self.owners,
                documents: self.documents,
                truncated: self.truncated,
            },
        )
    }

    /// The document pair `pair` is a window of.
    pub fn owner(&self, pair: usize) -> usize {
        self.owners[pair]
    }

    /// Tokens of each document's pairs (its windows summed), in document order: what a
    /// latency budget plans with.
    pub fn document_tokens(&self) -> Vec<usize> {
        let mut tokens = vec![0; self.documents];
        for (pair, &owner) in self.pairs.iter().zip(&self.owners) {
            tokens[owner] += pair.len();
        }
        tokens
    }

    /// Tokens of all pairs (what a usage report counts).
    pub fn tokens(&self) -> usize {
        self.pairs.iter().map(|p| p.len()).sum()
    }

    /// The first document whose text was not scored in full, if any.
    pub fn first_truncated(&self) -> Option<usize> {
        self.truncated.iter().position(|&t| t)
    }

    /// One score per document in input order: the best of its windows' scores.
    pub fn document_scores(&self, window_scores: &[RerankScore]) -> Result<Vec<RerankScore>> {
        best_per_document(&self.owners, self.documents, window_scores)
    }
}

/// What [`PreparedPairs::document_scores`] needs once the pairs were handed off to be scored
/// elsewhere (the server's batching queue).
#[derive(Debug, Clone)]
pub struct PairOwners {
    owners: Vec<usize>,
    documents: usize,
    truncated: Vec<bool>,
}

impl PairOwners {
    pub fn first_truncated(&self) -> Option<usize> {
        self.truncated.iter().position(|&t| t)
    }

    pub fn document_scores(&self, window_scores: &[RerankScore]) -> Result<Vec<RerankScore>> {
        best_per_document(&self.owners, self.documents, window_scores)
    }
}

fn best_per_document(
    owners: &[usize],
    documents: usize,
    window_scores: &[RerankScore],
) -> Result<Vec<RerankScore>> {
    if window_scores.len() != owners.len() {
        return Err(ModelError::Internal(format!(
            "{} scores for {} pairs",
            window_scores.len(),
            owners.len()
        )));
    }
    let mut best: Vec<Option<RerankScore>> = vec![None; documents];
    for (&owner, s) in owners.iter().zip(window_scores) {
        let slot = &mut best[owner];
        // Strictly better only: the earliest of equal windows wins; NaN never replaces a number.
        if slot
            .as_ref()
            .is_none_or(|b| compare_logits(s.logit, b.logit).is_lt())
        {
            *slot = Some(RerankScore { index: owner, ..*s });
        }
    }
    best.into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.ok_or_else(|| ModelError::Internal(format!("document {i} produced no pair")))
        })
        .collect()
}

/// Tokenizes `documents` against `query` under `policy`. Rejects an empty query or document
/// (naming its position) before any work.
pub fn prepare(
    reranker: &dyn Reranker,
    query: &str,
    documents: &[impl AsRef<str>],
    policy: &LongDocumentPolicy,
) -> Result<PreparedPairs> {
    let started = std::time::Instant::now();
    policy.validate()?;
    if crate::is_blank(query) {
        return Err(ModelError::InvalidInput("the query is empty".into()));
    }
    if let Some(i) = documents.iter().position(|d| crate::is_blank(d.as_ref())) {
        return Err(ModelError::InvalidInput(format!("document {i} is empty")));
    }
    let tokenizer = reranker.tokenizer();
    let room = reranker
        .max_length()
        .saturating_sub(reranker.pair_overhead(query)?)
        .max(MIN_WINDOW_TOKENS);
    let window = policy.window_tokens.map_or(room, |w| w.min(room)).max(1);
    let stride = policy
        .stride_tokens
        .map_or(window - window / 8, |s| s.min(window))
        .max(1);
    let query_tokens = match policy.mode {
        LongDocumentMode::Best => lowercase_tokens(query, &tokenizer.token_offsets(query)?),
        _ => Vec::new(),
    };
    let mut out = PreparedPairs {
        pairs: Vec::with_capacity(documents.len()),
        owners: Vec::with_capacity(documents.len()),
        documents: documents.len(),
        truncated: Vec::with_capacity(documents.len()),
        prepare_ms: 0.0,
    };
    for (i, doc) in documents.iter().enumerate() {
        let doc = doc.as_ref();
        let offsets = tokenizer.token_offsets(doc)?;
        let considered = offsets.len().min(policy.max_document_tokens);
        let mut cut = considered < offsets.len();
        // Text up to the last considered token.
        let end = if cut {
            offsets[considered - 1].1
        } else {
            doc.len()
        };
        let spans: Vec<(usize, usize)> =
            if considered <= window || policy.mode == LongDocumentMode::Truncate {
                vec![(0, end)]
            } else {
                let all = crate::windows::token_windows(
                    &doc[..end],
                    &offsets[..considered],
                    window,
                    window - stride,
                );
                cut |= all.len() > policy.max_windows;
                match policy.mode {
                    LongDocumentMode::Best => most_matching_windows(
                        &all,
                        &lowercase_tokens(&doc[..end], &offsets[..considered]),
                        &offsets[..considered],
                        &query_tokens,
                        policy.max_windows,
                    ),
                    _ => all.into_iter().take(policy.max_windows).collect(),
                }
            };
        for (s, e) in spans {
            let (pair, pair_cut) = reranker.encode_pair(query, &doc[s..e])?;
            cut |= pair_cut;
            out.pairs.push(pair);
            out.owners.push(i);
        }
        out.truncated.push(cut);
    }
    out.prepare_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(out)
}

/// Each token's text (its byte range in `text`), lowercased, in token order.
fn lowercase_tokens(text: &str, offsets: &[(usize, usize)]) -> Vec<String> {
    offsets
        .iter()
        .filter_map(|&(s, e)| text.get(s..e))
        .map(str::to_lowercase)
        .collect()
}

/// The `keep` windows (byte spans over the document) holding the most distinct query tokens,
/// in document order; ties go to the earlier window, so the first one (with a title, when the
/// document has one) wins when nothing distinguishes them. Tokens every window holds (function
/// words, punctuation) count alike for all, so no stop-word list is needed; the reranker's own
/// tokenizer makes it work for any language it reads.
fn most_matching_windows(
    windows: &[(usize, usize)],
    document_tokens: &[String],
    offsets: &[(usize, usize)],
    query_tokens: &[String],
    keep: usize,
) -> Vec<(usize, usize)> {
    let mut wanted: Vec<&str> = query_tokens.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    // Token offsets ascend, so a window's tokens are one run of them: found by bisection
    // rather than by testing every token of the document against every window.
    let matches = |&(start, end): &(usize, usize)| {
        let first = offsets.partition_point(|&(s, _)| s < start);
        let last = offsets.partition_point(|&(_, e)| e <= end).max(first);
        let mut found = vec![false; wanted.len()];
        for token in &document_tokens[first..last] {
            if let Ok(i) = wanted.binary_search(&token.as_str()) {
                found[i] = true;
            }
        }
        found.into_iter().filter(|&f| f).count()
    };
    let mut ranked: Vec<(usize, usize)> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| (matches(w), i))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<usize> = ranked.into_iter().take(keep).map(|(_, i)| i).collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| windows[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_sharing_most_query_tokens_are_kept_in_document_order() {
        let doc = "alpha beta gamma delta epsilon zeta eta theta";
        let offsets: Vec<(usize, usize)> = doc
            .split(' ')
            .scan(0, |at, w| {
                let span = (*at, *at + w.len());
                *at += w.len() + 1;
                Some(span)
            })
            .collect();
        let tokens = lowercase_tokens(doc, &offsets);
        // Four windows of two words each.
        let windows: Vec<(usize, usize)> = offsets.chunks(2).map(|c| (c[0].0, c[1].1)).collect();
        let query = |q: &[&str]| q.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let pick = |q: &[&str], keep| {
            most_matching_windows(&windows, &tokens, &offsets, &query(q), keep)
                .into_iter()
                .map(|(s, e)| &doc[s..e])
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&["eta", "theta", "zeta"], 1), ["eta theta"]);
        assert_eq!(
            pick(&["theta", "gamma", "delta"], 2),
            ["gamma delta", "eta theta"]
        );
        // Nothing matches: the earliest windows.
        assert_eq!(pick(&["omega"], 2), ["alpha beta", "gamma delta"]);
        // A query token counts once however often it occurs: one "beta" window against two
        // distinct tokens in "eta theta".
        assert_eq!(
            pick(&["beta", "beta", "beta", "eta", "theta"], 1),
            ["eta theta"]
        );
    }

    fn s(index: usize, logit: f32) -> RerankScore {
        RerankScore {
            index,
            logit,
            score: logit,
            dropped: false,
        }
    }

    #[test]
    fn documents_keep_their_best_window() {
        let owners = [0, 0, 1, 2, 2, 2];
        let scores = [
            s(0, 1.0),
            s(1, 3.0),
            s(2, f32::NAN),
            s(3, f32::NAN),
            s(4, -1.0),
            s(5, -1.0),
        ];
        let best = best_per_document(&owners, 3, &scores).unwrap();
        assert_eq!(best[0].logit, 3.0);
        assert_eq!(best[0].index, 0);
        assert!(best[1].logit.is_nan());
        assert_eq!((best[2].index, best[2].logit), (2, -1.0));
        assert!(best_per_document(&owners, 3, &scores[..5]).is_err());
    }

    #[test]
    fn knobs_that_cannot_work_are_refused() {
        let p = |f: fn(&mut LongDocumentPolicy)| {
            let mut p = LongDocumentPolicy::default();
            f(&mut p);
            p.validate()
        };
        assert!(p(|_| {}).is_ok());
        assert!(p(|p| p.max_windows = 0).is_err());
        assert!(p(|p| p.window_tokens = Some(0)).is_err());
        assert!(p(|p| {
            p.window_tokens = Some(10);
            p.stride_tokens = Some(11)
        })
        .is_err());
    }
}
