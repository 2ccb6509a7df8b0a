//! Synthetic training queries by the inverse cloze task (Lee, Chang & Toutanova, ACL 2019): a
//! sentence of a document is the query, the document without that sentence its positive.
//!
//! Why: a few hundred labelled queries, each relevant to one or two documents, teach a reranker
//! which documents were relevant as much as what relevance is (the document prior of the
//! reranker-generalization issue). Inverse cloze pairs come from the corpus itself, each
//! document at most once, so they add relevance signal spread over every document instead of
//! concentrated on the labelled ones; SciFact's claims are themselves single sentences about
//! one abstract's finding, close to what a held-out sentence is.

use std::collections::BTreeSet;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Corpus, LabelledQuery};

/// Words a sentence needs to be a query: shorter ones are headings and fragments ("Methods"),
/// longer ones are whole paragraphs without punctuation.
const MIN_WORDS: usize = 8;
const MAX_WORDS: usize = 60;

/// Prefix of a synthetic query's id, which is also its positive's key in
/// [`crate::TrainingSet::with_synthetic`] (kept apart from the corpus, so a document id that
/// happens to look the same is never confused with it).
pub const SYNTHETIC_PREFIX: &str = "ict:";

/// One inverse-cloze example.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticQuery {
    /// `relevant` holds the source document, so it is never drawn as a negative.
    pub query: LabelledQuery,
    /// The source document's text without the query sentence.
    pub positive_text: String,
}

/// Splits `text` into sentences: after `.`, `!` or `?` followed by whitespace and an upper-case
/// letter or a digit, and at line breaks (the title line of "title\ntext"). Abbreviations
/// ("e.g. the") do not end a sentence because a lower-case word follows them.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let boundary = match c {
            '\n' => Some(at),
            '.' | '!' | '?' => {
                let next = chars.get(i + 1).map(|x| x.1);
                let after = chars.get(i + 2).map(|x| x.1);
                (next.is_some_and(char::is_whitespace)
                    && after.is_some_and(|a| a.is_uppercase() || a.is_ascii_digit()))
                .then_some(at + c.len_utf8())
            }
            _ => None,
        };
        if let Some(end) = boundary {
            let s = text[start..end].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = end;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Up to `n` inverse-cloze queries from documents of `corpus` not in `exclude` (the dev side's
/// relevant documents: a dev document seen as a positive would leak a prior into dev numbers),
/// drawn with `seed`; the same arguments always give the same queries. The first line of a
/// "title\ntext" document is its title and is never the query.
pub fn inverse_cloze(
    corpus: &Corpus,
    exclude: &BTreeSet<String>,
    n: usize,
    seed: u64,
) -> Vec<SyntheticQuery> {
    let mut ids: Vec<&String> = corpus.keys().filter(|id| !exclude.contains(*id)).collect();
    ids.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1c7_1c7);
    ids.shuffle(&mut rng);
    let mut out = Vec::new();
    for id in ids {
        if out.len() == n {
            break;
        }
        let text = &corpus[id];
        let (title, body) = match text.split_once('\n') {
            Some((t, b)) => (Some(t), b),
            None => (None, text.as_str()),
        };
        let parts = sentences(body);
        let eligible: Vec<usize> = (0..parts.len())
            .filter(|&i| (MIN_WORDS..=MAX_WORDS).contains(&parts[i].split_whitespace().count()))
            .collect();
        // A document that is one sentence has nothing left to be the positive.
        if parts.len() < 2 {
            continue;
        }
        let Some(&pick) = eligible.choose(&mut rng) else {
            continue;
        };
        let rest: Vec<&str> = parts
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != pick)
            .map(|(_, s)| *s)
            .collect();
        let rest = rest.join(" ");
        out.push(SyntheticQuery {
            query: LabelledQuery {
                id: format!("{SYNTHETIC_PREFIX}{id}"),
                text: parts[pick].to_owned(),
                relevant: vec![id.clone()],
            },
            positive_text: match title {
                Some(t) => format!("{t}\n{rest}"),
                None => rest,
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_ends_and_lines_not_abbreviations() {
        assert_eq!(
            sentences("A title\nFirst one, e.g. this. Second 2.5 mg dose! 3 more? end"),
            vec![
                "A title",
                "First one, e.g. this.",
                "Second 2.5 mg dose!",
                "3 more? end"
            ]
        );
    }

    #[test]
    fn queries_are_held_out_sentences_deterministic_and_skip_excluded_documents() {
        let long = |w: &str| [w; 9].join(" ");
        let mut corpus = Corpus::new();
        for i in 0..20 {
            corpus.insert(
                format!("d{i}"),
                format!("Title {i}\n{}. {}. Short one.", long("alpha"), long("beta")),
            );
        }
        corpus.insert("single".into(), format!("T\n{}.", long("gamma")));
        let exclude: BTreeSet<String> = ["d3".to_string()].into();
        let a = inverse_cloze(&corpus, &exclude, 10, 7);
        assert_eq!(a, inverse_cloze(&corpus, &exclude, 10, 7));
        assert_eq!(a.len(), 10);
        for s in &a {
            let id = &s.query.relevant[0];
            assert_ne!(id, "d3");
            assert_ne!(id, "single", "a one-sentence document leaves no positive");
            assert_eq!(s.query.id, format!("{SYNTHETIC_PREFIX}{id}"));
            assert!(s.query.text.split_whitespace().count() >= MIN_WORDS);
            assert!(!s.positive_text.contains(&s.query.text), "{s:?}");
            assert!(
                s.positive_text.starts_with("Title "),
                "the title stays: {s:?}"
            );
        }
        assert_ne!(
            a.iter().map(|s| &s.query.id).collect::<Vec<_>>(),
            inverse_cloze(&corpus, &exclude, 10, 8)
                .iter()
                .map(|s| &s.query.id)
                .collect::<Vec<_>>()
        );
    }
}
