//! BM25 keyword search over chunks, on tantivy.
//!
//! A chunk's title and text are one analysed field, `contents`, cut by the collection's
//! [`Analyzer`]. Why one field and not a title field beside a text field: tantivy sums per-field
//! BM25 scores, each normalized by its own field's average length, so a query word in a
//! 12-word title outweighs the same word in the abstract several times over; on SciFact that
//! cost 0.02–0.025 nDCG@10 against the references, which score title + text as one text
//! (docs/quality.md). Each commit carries the write-ahead-log sequence number it reflects as
//! its payload, so on open the collection knows whether this index is current.
//!
//! The index is derived data: whatever goes wrong with it is an [`IndexError::Bm25`], which the
//! collection answers by rebuilding it from the log. That includes damage tantivy reports by
//! panicking (a truncated segment trips an assertion in its file slices): every call into
//! tantivy runs inside [`contained`], and opening verifies every segment file's checksum, so a
//! damaged index is found when the collection opens, not by the first query that touches it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::postings::Postings;
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    doc, DocAddress, DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument,
    Term, TERMINATED,
};

use crate::analysis::Analyzer;
use crate::error::{IndexError, Result};
use crate::manifest::Bm25Params;

/// Writer heap for indexing, in bytes; tantivy's minimum is 15 MB per thread.
const WRITER_HEAP_BYTES: usize = 50_000_000;
const KEY_SEPARATOR: char = '\u{1f}';

/// Runs `f`, turning a panic inside tantivy into an error of the keyword index.
///
/// Why not let it unwind: a panic there is a property of the files on disk (a damaged segment),
/// not a bug of the caller, and the index can be rebuilt from the log. The closures only read
/// or append to tantivy state that a failed call leaves to be rolled back or rebuilt, so
/// observing it after the panic is sound.
fn contained<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(IndexError::Bm25(format!(
            "{what}: tantivy panicked: {message}"
        )))
    })
}

impl From<tantivy::TantivyError> for IndexError {
    /// File-system failures keep their `io::Error` (a full disk stays a full disk — the server
    /// answers 507 and a rebuild is not attempted into no space) and read as `path: error`
    /// instead of tantivy's `Debug` dump; everything else is a keyword-index error.
    fn from(e: tantivy::TantivyError) -> Self {
        use tantivy::directory::error::{OpenReadError, OpenWriteError};
        use tantivy::TantivyError;
        let io = match &e {
            TantivyError::OpenWriteError(OpenWriteError::IoError { io_error, filepath })
            | TantivyError::OpenReadError(OpenReadError::IoError { io_error, filepath }) => {
                Some((io_error.clone(), filepath.clone()))
            }
            TantivyError::IoError(io_error) => Some((io_error.clone(), "bm25".into())),
            _ => None,
        };
        match io {
            Some((io_error, path)) if io_error.kind() == std::io::ErrorKind::StorageFull => {
                IndexError::Io {
                    path,
                    source: std::io::Error::new(io_error.kind(), io_error.to_string()),
                }
            }
            Some((io_error, path)) => IndexError::Bm25(format!("{}: {io_error}", path.display())),
            None => IndexError::Bm25(e.to_string()),
        }
    }
}

/// tantivy's memory-mapped directory without its lock files, for readers.
///
/// Why: a tantivy reader creates `.tantivy-meta.lock` while it opens segments, so that a
/// concurrent writer's garbage collection cannot delete them under it. sift readers already hold
/// the collection's shared `LOCK`, which no writer can hold at the same time, and on a read-only
/// file system the lock file cannot be created at all.
#[derive(Clone, Debug)]
struct LocklessDirectory(MmapDirectory);

impl Directory for LocklessDirectory {
    fn get_file_handle(
        &self,
        path: &Path,
    ) -> std::result::Result<Arc<dyn FileHandle>, OpenReadError> {
        self.0.get_file_handle(path)
    }
    fn delete(&self, path: &Path) -> std::result::Result<(), DeleteError> {
        self.0.delete(path)
    }
    fn exists(&self, path: &Path) -> std::result::Result<bool, OpenReadError> {
        self.0.exists(path)
    }
    fn open_write(&self, path: &Path) -> std::result::Result<WritePtr, OpenWriteError> {
        self.0.open_write(path)
    }
    fn atomic_read(&self, path: &Path) -> std::result::Result<Vec<u8>, OpenReadError> {
        self.0.atomic_read(path)
    }
    fn atomic_write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.0.atomic_write(path, data)
    }
    fn sync_directory(&self) -> std::io::Result<()> {
        self.0.sync_directory()
    }
    fn acquire_lock(&self, _lock: &Lock) -> std::result::Result<DirectoryLock, LockError> {
        Ok(DirectoryLock::from(Box::new(())))
    }
    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.0.watch(callback)
    }
}

/// One keyword match: a passage of a document (named by its first chunk) and its BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub struct Bm25Hit {
    pub doc_id: String,
    pub chunk: u32,
    pub score: f32,
}

/// The index's fields: `key` (document id and chunk, stored), `doc_id` (for deletes), the
/// analysed `contents` (term frequencies, no positions: a query is a bag of words) and the
/// passage's exact `length` in terms.
///
/// Why an exact length beside tantivy's field norms: those are one byte per passage, exact
/// only up to ~40 terms and within ~1/16 beyond, so passages of a few hundred terms (an
/// abstract) were length-normalized by a rounded length: near-ties then broke differently
/// from the reference implementations and from the PostgreSQL backend, which stores exact
/// lengths. The cost is a bit-packed column of a few bits per passage.
fn schema(analyzer: Analyzer) -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let key = builder.add_text_field("key", STRING | STORED);
    let doc_id = builder.add_text_field("doc_id", STRING);
    let analysed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(analyzer.tokenizer_name())
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let contents = builder.add_text_field("contents", analysed);
    let length = builder.add_u64_field(LENGTH, FAST);
    let fields = Fields {
        key,
        doc_id,
        contents,
        length,
    };
    (builder.build(), fields)
}

/// Name of the exact-length column.
const LENGTH: &str = "length";

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    doc_id: Field,
    contents: Field,
    length: Field,
}

pub struct Bm25Index {
    index: Index,
    reader: IndexReader,
    /// `None` when opened read-only.
    writer: Option<IndexWriter>,
    fields: Fields,
    analyzer: TextAnalyzer,
}

impl Drop for Bm25Index {
    /// Waits for tantivy's merge and garbage-collection threads, which go on after a commit
    /// returns: whoever opens the index next (after the collection's lock is released) must not
    /// find files being written or deleted under it. A failure here can only leave files the
    /// next open verifies by checksum and rebuilds from the log.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = contained("closing", || Ok(writer.wait_merging_threads()?)) {
                tracing::warn!("closing the BM25 index: {e}");
            }
        }
    }
}

impl Bm25Index {
    /// Opens the index in `dir` (creating an empty one if there is none) analysed by
    /// `analyzer`. An index made with another analyzer (or an older version of this one) is
    /// an error: the caller rebuilds it from the log.
    pub fn open_or_create(dir: &Path, analyzer: Analyzer) -> Result<Self> {
        Self::open_with(dir, analyzer, true)
    }

    /// Opens for searching only: takes no writer lock, so any number of readers can share it.
    pub fn open_read_only(dir: &Path, analyzer: Analyzer) -> Result<Self> {
        Self::open_with(dir, analyzer, false)
    }

    /// An empty, read-only index in memory: what a collection holds while it replaces its
    /// index on disk (the old one must be closed before its files are removed).
    pub fn empty_in_memory(analyzer: Analyzer) -> Result<Self> {
        contained("creating", || Self::open_unchecked(None, analyzer, false))
    }

    fn open_with(dir: &Path, analyzer: Analyzer, writable: bool) -> Result<Self> {
        contained("opening", || {
            Self::open_unchecked(Some(dir), analyzer, writable)
        })
    }

    /// `dir: None` is [`Bm25Index::empty_in_memory`].
    fn open_unchecked(dir: Option<&Path>, analyzer: Analyzer, writable: bool) -> Result<Self> {
        let (schema, fields) = schema(analyzer);
        let index = match dir {
            None => Index::create_in_ram(schema.clone()),
            Some(dir) => Self::open_dir(dir, &schema, writable)?,
        };
        if index.schema() != schema {
            return Err(IndexError::Bm25(format!(
                "the index was not built with the {analyzer} analyzer of this version"
            )));
        }
        index
            .tokenizers()
            .register(analyzer.tokenizer_name(), analyzer.text_analyzer());
        let damaged = index.validate_checksum()?;
        if !damaged.is_empty() {
            let mut names: Vec<_> = damaged.iter().map(|p| p.display().to_string()).collect();
            names.sort();
            return Err(IndexError::Bm25(format!(
                "damaged files: {}",
                names.join(", ")
            )));
        }
        let writer = if writable {
            Some(index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?)
        } else {
            None
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Bm25Index {
            index,
            reader,
            writer,
            fields,
            analyzer: analyzer.text_analyzer(),
        })
    }

    fn open_dir(dir: &Path, schema: &Schema, writable: bool) -> Result<Index> {
        if !writable && !dir.join("meta.json").is_file() {
            return Err(IndexError::Corrupt {
                path: dir.to_owned(),
                reason: "BM25 index missing".into(),
            });
        }
        if writable {
            std::fs::create_dir_all(dir).map_err(IndexError::io(dir))?;
        }
        Ok(if !writable {
            let directory =
                MmapDirectory::open(dir).map_err(|e| IndexError::Bm25(e.to_string()))?;
            Index::open(LocklessDirectory(directory))?
        } else if dir.join("meta.json").is_file() {
            Index::open_in_dir(dir)?
        } else {
            Index::create_in_dir(dir, schema.clone())?
        })
    }

    /// The write-ahead-log sequence number the last commit reflects (0 for a new index).
    pub fn committed_seq(&self) -> Result<u64> {
        contained("reading the commit", || {
            Ok(self
                .index
                .load_metas()?
                .payload
                .and_then(|p| p.parse().ok())
                .unwrap_or(0))
        })
    }

    /// Removes every chunk of `doc_id` (no-op if absent). Takes effect at [`Bm25Index::commit`].
    pub fn delete_document(&mut self, doc_id: &str) -> Result<()> {
        let term = Term::from_field_text(self.fields.doc_id, doc_id);
        self.writer()?.delete_term(term);
        Ok(())
    }

    fn writer(&mut self) -> Result<&mut IndexWriter> {
        self.writer
            .as_mut()
            .ok_or_else(|| IndexError::InvalidInput("the collection was opened read-only".into()))
    }

    /// Adds one passage of `doc_id` (see [`crate::keyword_passages`]), found as chunk `chunk`.
    pub fn add_passage(&mut self, doc_id: &str, chunk: u32, text: &str) -> Result<()> {
        let f = self.fields;
        let mut analyzer = self.analyzer.clone();
        let writer = self.writer()?;
        contained("adding", || {
            let mut stream = analyzer.token_stream(text);
            let mut length = 0u64;
            while stream.advance() {
                length += 1;
            }
            writer.add_document(doc!(
                f.key => format!("{doc_id}{KEY_SEPARATOR}{chunk}"),
                f.doc_id => doc_id,
                f.contents => text,
                f.length => length,
            ))?;
            Ok(())
        })
    }

    pub fn delete_all(&mut self) -> Result<()> {
        let writer = self.writer()?;
        contained("clearing", || {
            writer.delete_all_documents()?;
            Ok(())
        })
    }

    /// Drops every change since the last commit.
    pub fn rollback(&mut self) -> Result<()> {
        let writer = self.writer()?;
        contained("rolling back", || {
            writer.rollback()?;
            Ok(())
        })
    }

    /// Makes pending changes durable and visible, recording `seq`.
    pub fn commit(&mut self, seq: u64) -> Result<()> {
        let writer = self.writer()?;
        contained("committing", || {
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&seq.to_string());
            prepared.commit()?;
            Ok(())
        })?;
        contained("reloading", || Ok(self.reader.reload()?))
    }

    /// Best `k` chunks for `query`, scored with `params`. Any text is a query: `C++ (2020)?`
    /// searches for its words; a query with no terms (only stop words or punctuation) finds
    /// nothing.
    pub fn search(&self, query: &str, k: usize, params: Bm25Params) -> Result<Vec<Bm25Hit>> {
        params.validate()?;
        if k == 0 {
            return Ok(Vec::new());
        }
        contained("searching", || self.search_unchecked(query, k, params))
    }

    /// The query is a bag of words: its terms (cut by the collection's analyzer, repeated terms
    /// counted as often as they occur, as Lucene and bm25s count them) each add their BM25
    /// score, and no term is required. Why not tantivy's query parser: it reads natural
    /// language as query syntax — a word that analyzes into several terms (`IL-6`, `TNF-α`)
    /// becomes a phrase that must match adjacently, `-word` excludes, `field:` and quotes
    /// change meaning — which on SciFact's claims cost 0.015 nDCG@10 (docs/quality.md).
    ///
    /// Why sift scores tantivy's postings itself instead of running a tantivy `TermQuery`:
    /// tantivy's BM25 has k1 and b as constants (Lucene's 1.2 and 0.75), and a collection's
    /// parameters are its own ([`Bm25Params`]), and its length norms are rounded ([`schema`]).
    /// Scoring is term at a time into one score per passage of each segment, with tantivy's
    /// corpus statistics (passages and terms, deleted ones included until a merge drops them,
    /// as in Lucene) and exact lengths: the textbook formula (tested against a computation by
    /// hand). What this gives up is tantivy's block-max WAND pruning: at 100k passages BM25's
    /// p50 went from 0.56 to 0.50 ms and SciFact's claims (~15 terms over 10k passages) stay at
    /// 0.3–0.6 ms per query (docs/performance.md), so pruning was not what made it fast at
    /// these sizes; its cost grows with the postings a query touches.
    fn search_unchecked(&self, query: &str, k: usize, params: Bm25Params) -> Result<Vec<Bm25Hit>> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(query);
        let mut query_terms: BTreeMap<String, f32> = BTreeMap::new();
        while let Some(token) = stream.next() {
            *query_terms.entry(token.text.clone()).or_default() += 1.0;
        }
        if query_terms.is_empty() {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let passages: u64 = searcher
            .segment_readers()
            .iter()
            .map(|s| u64::from(s.max_doc()))
            .sum();
        if passages == 0 {
            return Ok(Vec::new());
        }
        let mut tokens = 0u64;
        for segment in searcher.segment_readers() {
            tokens += segment
                .inverted_index(self.fields.contents)?
                .total_num_tokens();
        }
        let average_length = (tokens as f32 / passages as f32).max(f32::MIN_POSITIVE);
        // Per query term: Lucene's idf × (k1 + 1) × its count in the query.
        let mut weighted = Vec::with_capacity(query_terms.len());
        for (text, count) in &query_terms {
            let term = Term::from_field_text(self.fields.contents, text);
            let df = searcher.doc_freq(&term)?;
            if df == 0 {
                continue;
            }
            let rarity = ((passages - df) as f32 + 0.5) / (df as f32 + 0.5);
            let idf = (1.0 + rarity).ln();
            weighted.push((term, count * idf * (params.k1 + 1.0)));
        }
        let (k1, b) = (params.k1, params.b);
        let mut found: Vec<(f32, DocAddress)> = Vec::new();
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let index = segment.inverted_index(self.fields.contents)?;
            let lengths = segment.fast_fields().u64(LENGTH)?;
            let mut scores = vec![0f32; segment.max_doc() as usize];
            let mut touched: Vec<DocId> = Vec::new();
            for (term, weight) in &weighted {
                let postings = index.read_postings(term, IndexRecordOption::WithFreqs);
                let Some(mut postings) = postings.map_err(|e| IndexError::Bm25(e.to_string()))?
                else {
                    continue;
                };
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    let tf = postings.term_freq() as f32;
                    let length = lengths.first(doc).unwrap_or(0) as f32;
                    let n = k1 * (1.0 - b + b * length / average_length);
                    let slot = &mut scores[doc as usize];
                    if *slot == 0.0 {
                        touched.push(doc);
                    }
                    *slot += weight * tf / (tf + n);
                    doc = postings.advance();
                }
            }
            let alive = segment.alive_bitset();
            found.extend(
                touched
                    .into_iter()
                    .filter(|&d| alive.is_none_or(|a| a.is_alive(d)))
                    .map(|d| (scores[d as usize], DocAddress::new(ord as u32, d))),
            );
        }
        // Best first; equal scores in index order, so a query always ranks alike.
        let order = |a: &(f32, DocAddress), b: &(f32, DocAddress)| {
            b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1))
        };
        if found.len() > k {
            found.select_nth_unstable_by(k - 1, order);
            found.truncate(k);
        }
        found.sort_unstable_by(order);
        let mut hits = Vec::with_capacity(found.len());
        for (score, addr) in found {
            let stored: TantivyDocument = searcher.doc(addr)?;
            let Some(key) = stored
                .get_first(self.fields.key)
                .and_then(|v| v.as_str().map(str::to_owned))
            else {
                continue;
            };
            if let Some((doc_id, chunk)) = key.rsplit_once(KEY_SEPARATOR) {
                hits.push(Bm25Hit {
                    doc_id: doc_id.to_owned(),
                    chunk: chunk.parse().unwrap_or(0),
                    score,
                });
            }
        }
        Ok(hits)
    }

    /// Number of passages visible to search.
    pub fn num_passages(&self) -> Result<u64> {
        contained("counting", || Ok(self.reader.searcher().num_docs()))
    }

    /// Segments a search visits (tantivy merges them in the background as commits add more).
    pub fn num_segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_stemmed_words_and_tolerates_query_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Bm25Index::open_or_create(dir.path(), Analyzer::English).unwrap();
        idx.add_passage("a", 0, "Vaccines\nVaccination reduces hospitalisations")
            .unwrap();
        idx.add_passage("b", 0, "The stock market fell").unwrap();
        idx.add_passage("b", 1, "markets recovered later").unwrap();
        idx.commit(7).unwrap();
        assert_eq!(idx.committed_seq().unwrap(), 7);
        let lucene = Bm25Params::LUCENE;
        let hits = idx.search("vaccine", 10, lucene).unwrap();
        assert_eq!(hits[0].doc_id, "a");
        let hits = idx.search("market (C++ \"unbalanced", 10, lucene).unwrap();
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| h.doc_id == "b"));
        assert!(
            idx.search("the (and) ?", 10, lucene).unwrap().is_empty(),
            "stop words only"
        );
        idx.delete_document("b").unwrap();
        idx.commit(8).unwrap();
        assert!(idx.search("market", 10, lucene).unwrap().is_empty());
        drop(idx);
        let idx = Bm25Index::open_or_create(dir.path(), Analyzer::English).unwrap();
        assert_eq!(idx.committed_seq().unwrap(), 8);
        assert_eq!(idx.num_passages().unwrap(), 1);
    }

    /// Scores are the BM25 formula computed by hand from each passage's analysed terms (exact
    /// lengths, Lucene's idf, query terms counted as often as they occur), over several
    /// segments, at Lucene's parameters and others.
    #[test]
    fn scores_are_the_bm25_formula_with_exact_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Bm25Index::open_or_create(dir.path(), Analyzer::English).unwrap();
        let words = [
            "coral",
            "reef",
            "bleaching",
            "ocean",
            "warming",
            "fish",
            "algae",
            "storm",
            "tide",
        ];
        let mut passages: Vec<(String, Vec<String>)> = Vec::new();
        let terms = |text: &str| Analyzer::English.terms(text);
        for i in 0..90usize {
            // 3 to 300 words, so lengths beyond tantivy's exact one-byte norms occur.
            let text: Vec<&str> = (0..3 + (i * 37) % 298)
                .map(|j| words[(i * 5 + j * j) % words.len()])
                .collect();
            let text = text.join(" ");
            passages.push((format!("d{i}"), terms(&text)));
            idx.add_passage(&format!("d{i}"), 0, &text).unwrap();
            if i % 30 == 29 {
                idx.commit(i as u64).unwrap();
            }
        }
        assert!(idx.num_segments() >= 2, "the test needs several segments");
        let n = passages.len() as f64;
        let average = passages.iter().map(|p| p.1.len()).sum::<usize>() as f64 / n;
        for params in [
            Bm25Params::LUCENE,
            Bm25Params::default(),
            Bm25Params { k1: 0.9, b: 0.3 },
        ] {
            for query in [
                "coral reef",
                "ocean warming warming fish",
                "tide",
                "storm algae reef",
            ] {
                let ours = idx.search(query, 100, params).unwrap();
                let (k1, b) = (params.k1 as f64, params.b as f64);
                let mut want: Vec<(String, f64)> = Vec::new();
                for (id, p) in &passages {
                    let mut score = 0.0;
                    for q in terms(query) {
                        let df = passages.iter().filter(|x| x.1.contains(&q)).count() as f64;
                        let tf = p.iter().filter(|t| **t == q).count() as f64;
                        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                        let norm = k1 * (1.0 - b + b * p.len() as f64 / average);
                        score += idf * (k1 + 1.0) * tf / (tf + norm);
                    }
                    if score > 0.0 {
                        want.push((id.clone(), score));
                    }
                }
                assert_eq!(ours.len(), want.len(), "{query}");
                for (id, w) in &want {
                    let got = ours.iter().find(|h| &h.doc_id == id).unwrap().score as f64;
                    assert!(
                        (got - w).abs() <= 1e-5 * w,
                        "{params:?} {query}: {id} {got} vs {w}"
                    );
                }
                assert!(ours.windows(2).all(|w| w[0].score >= w[1].score));
            }
        }
    }

    /// k1 and b do what BM25 says: b = 0 ignores length, b = 1 divides by it fully; k1 = 0
    /// makes any number of repeats count once.
    #[test]
    fn parameters_change_scores_as_the_formula_says() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Bm25Index::open_or_create(dir.path(), Analyzer::English).unwrap();
        idx.add_passage("short", 0, "coral reef").unwrap();
        idx.add_passage("long", 0, "coral reef ocean tide storm fish algae warming")
            .unwrap();
        idx.add_passage(
            "repeats",
            0,
            "coral coral coral coral reef ocean tide storm",
        )
        .unwrap();
        idx.add_passage("other", 0, "mountain glacier").unwrap();
        idx.commit(1).unwrap();
        let score = |q: &str, k1: f32, b: f32, id: &str| {
            idx.search(q, 10, Bm25Params { k1, b })
                .unwrap()
                .into_iter()
                .find(|h| h.doc_id == id)
                .unwrap()
                .score
        };
        assert_eq!(
            score("reef", 1.2, 0.0, "short"),
            score("reef", 1.2, 0.0, "long")
        );
        assert!(score("reef", 1.2, 1.0, "short") > score("reef", 1.2, 1.0, "long"));
        assert_eq!(
            score("coral", 0.0, 0.75, "repeats"),
            score("coral", 0.0, 0.75, "long")
        );
        assert!(score("coral", 1.2, 0.0, "repeats") > score("coral", 1.2, 0.0, "long"));
        for bad in [
            Bm25Params { k1: -1.0, b: 0.75 },
            Bm25Params {
                k1: f32::NAN,
                b: 0.75,
            },
            Bm25Params { k1: 1.2, b: 1.5 },
        ] {
            assert!(matches!(
                idx.search("coral", 10, bad),
                Err(IndexError::InvalidInput(_))
            ));
        }
    }
}
