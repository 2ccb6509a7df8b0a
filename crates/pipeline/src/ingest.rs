//! Documents in, chunks embedded, batches committed.

use sift_index::{
    Analyzer, Chunk, ChunkingConfig, CollectionBackend, Document, EmbeddingModelInfo,
    IndexedDocument, Manifest, Operation, FORMAT_VERSION,
};
use sift_models::windows::token_windows;
use sift_models::{Embedder, TextRole, TextTokenizer};

use crate::error::{PipelineError, Result};

/// Tokens kept free in each window for the title that is embedded with every chunk.
pub const TITLE_TOKEN_RESERVE: usize = 32;

/// Default overlap between windows, in tokens.
pub const DEFAULT_OVERLAP_TOKENS: usize = 32;

/// The chunk windows a new collection gets for a model that reads `max_length` tokens (special
/// tokens included): its room minus the title reserve. `sift train-embedder` trains on the same
/// windows, so the model learns the units the index will embed.
pub fn default_chunking(max_length: usize) -> ChunkingConfig {
    let room = max_length.saturating_sub(2);
    let max_tokens = room.saturating_sub(TITLE_TOKEN_RESERVE).max(16);
    ChunkingConfig {
        max_tokens,
        // Short-context models get a proportionally shorter overlap.
        overlap_tokens: DEFAULT_OVERLAP_TOKENS.min(max_tokens / 4),
    }
}

/// The manifest a new collection gets for `embedder` and keyword `analyzer`: chunk windows fill
/// the model's max length minus the special tokens and a title reserve.
pub fn manifest_for(
    embedder: &Embedder,
    chunking: Option<ChunkingConfig>,
    analyzer: Analyzer,
) -> Result<Manifest> {
    let chunking = chunking.unwrap_or_else(|| default_chunking(embedder.tokenizer().max_length()));
    if chunking.max_tokens == 0 || chunking.overlap_tokens >= chunking.max_tokens {
        return Err(PipelineError::InvalidInput(format!(
            "chunk overlap ({}) must be smaller than the chunk size ({})",
            chunking.overlap_tokens, chunking.max_tokens
        )));
    }
    Ok(Manifest {
        format: FORMAT_VERSION,
        embedding: model_info(embedder)?,
        chunking: Some(chunking),
        analyzer,
        bm25: Default::default(),
    })
}

/// The manifest a new collection of brought vectors gets: `dim`-dimensional vectors made outside
/// sift by the model the user calls `name`.
pub fn manifest_external(name: &str, dim: usize, analyzer: Analyzer) -> Result<Manifest> {
    if dim == 0 || name.trim().is_empty() {
        return Err(PipelineError::InvalidInput(
            "brought vectors need a dimension of at least 1 and a model name".into(),
        ));
    }
    Ok(Manifest {
        format: FORMAT_VERSION,
        embedding: EmbeddingModelInfo::external(name.trim(), dim),
        chunking: None,
        analyzer,
        bm25: Default::default(),
    })
}

/// How a collection records `embedder`.
pub fn model_info(embedder: &Embedder) -> Result<EmbeddingModelInfo> {
    Ok(EmbeddingModelInfo {
        name: embedder.model_dir().name(),
        fingerprint: embedder.fingerprint()?.to_owned(),
        dim: embedder.dim(),
        path: std::fs::canonicalize(&embedder.model_dir().path)
            .ok()
            .map(|p| p.display().to_string()),
    })
}

/// Fails unless `embedder` is the model the collection was built with.
/// Cheap: the embedder's fingerprint is computed once, when it is loaded.
pub fn check_model(embedder: &Embedder, manifest: &Manifest) -> Result<()> {
    let same = embedder.dim() == manifest.embedding.dim
        && embedder.has_fingerprint(&manifest.embedding.fingerprint)?;
    if !same {
        return Err(manifest.mismatch(&model_info(embedder)?).into());
    }
    Ok(())
}

/// What one ingest did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestReport {
    pub added: usize,
    pub updated: usize,
    /// Already stored with identical content: not re-embedded.
    pub unchanged: usize,
    pub chunks: usize,
    pub batches: usize,
    /// The number of the last batch committed (0 when nothing was written): what a client
    /// carries to read its own write through another server (`min_seq` of a search).
    pub seq: u64,
}

/// The text embedded for a chunk: title and chunk, so a window deep in a document still knows
/// what the document is about.
pub fn embedding_text(title: Option<&str>, chunk: &str) -> String {
    match title {
        Some(t) if !sift_models::is_blank(t) => format!("{t}\n{chunk}"),
        _ => chunk.to_owned(),
    }
}

/// Splits a document into chunk texts by the collection's token windows.
pub fn chunk_document(
    embedder: &Embedder,
    doc: &Document,
    chunking: ChunkingConfig,
) -> Result<Vec<String>> {
    chunk_text(embedder.tokenizer(), &doc.text, chunking)
}

/// Splits `text` into the token windows of `chunking`, counting tokens with `tokenizer` (the
/// embedding model's). What the index embeds, and what `sift train-embedder` trains on.
pub fn chunk_text(
    tokenizer: &TextTokenizer,
    text: &str,
    chunking: ChunkingConfig,
) -> Result<Vec<String>> {
    let offsets = tokenizer.token_offsets(text)?;
    Ok(
        token_windows(text, &offsets, chunking.max_tokens, chunking.overlap_tokens)
            .into_iter()
            .map(|(s, e)| text[s..e].to_owned())
            .collect(),
    )
}

/// Refuses input the collection must never see: an empty, too long or repeated id, or a
/// document without text. Checked before anything is created, embedded or written.
pub fn validate_documents<'a>(docs: impl IntoIterator<Item = &'a Document>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for d in docs {
        if d.id.is_empty() {
            return Err(PipelineError::InvalidInput(
                "a document has an empty id".into(),
            ));
        }
        if d.id.len() > sift_index::MAX_ID_BYTES {
            return Err(PipelineError::InvalidInput(sift_index::batch::too_long_id(
                &d.id,
            )));
        }
        if sift_models::is_blank(&d.text) {
            return Err(PipelineError::InvalidInput(format!(
                "document {:?} has no text",
                d.id
            )));
        }
        if !seen.insert(d.id.as_str()) {
            return Err(PipelineError::InvalidInput(format!(
                "document id {:?} appears twice in the input",
                d.id
            )));
        }
    }
    Ok(())
}

/// A document to store, with the vector the user brought for it or none.
///
/// A brought vector stands for the whole document: it becomes one chunk whose text is the
/// document's text (sift cannot cut a vector into windows). Without one, sift cuts the text into
/// the collection's token windows and embeds each.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    pub document: Document,
    pub vector: Option<Vec<f32>>,
}

impl From<Document> for NewDocument {
    fn from(document: Document) -> Self {
        NewDocument {
            document,
            vector: None,
        }
    }
}

/// Refuses brought vectors that do not fit the collection of `manifest`: another dimension, a
/// NaN or infinite value, all zeros; and documents without a vector in a collection that has no
/// model to embed them. Checked before anything is embedded or written.
pub fn validate_vectors(docs: &[NewDocument], manifest: &Manifest) -> Result<()> {
    let dim = manifest.embedding.dim;
    for d in docs {
        let id = &d.document.id;
        match &d.vector {
            Some(v) if v.len() != dim => {
                return Err(PipelineError::InvalidInput(format!(
                    "document {id:?}: vector has {} dimensions; the collection's have {dim}",
                    v.len()
                )))
            }
            Some(v) => {
                if let Some(problem) = sift_index::batch::vector_problem(v) {
                    return Err(PipelineError::InvalidInput(format!(
                        "document {id:?}: vector {problem}"
                    )));
                }
            }
            None if manifest.embedding.is_external() => {
                return Err(PipelineError::InvalidInput(format!(
                    "document {id:?} has no vector; this collection holds vectors made outside \
                     sift ({}, {dim} dimensions), so every document must bring one",
                    manifest.embedding.name
                )))
            }
            None => {}
        }
    }
    Ok(())
}

/// Embeds (where no vector was brought) and commits `docs` in batches of `batch_docs` documents
/// (the commit unit). Calls `on_commit(done, total)` after each durable batch. Documents already
/// stored unchanged are skipped, so re-running an ingest is idempotent and cheap; a document
/// with a brought vector is always written (its vector may have changed while its text did not).
/// `embedder` may be `None` only when every document brings its vector.
///
/// With `commit_deadline`, a batch whose embedding ends after it is not committed:
/// [`PipelineError::DeadlineExceeded`] then says how many earlier batches were. A commit that
/// began is never abandoned, so the caller always learns the outcome.
pub fn ingest(
    embedder: Option<&Embedder>,
    backend: &mut dyn CollectionBackend,
    docs: Vec<NewDocument>,
    batch_docs: usize,
    commit_deadline: Option<std::time::Instant>,
    on_commit: &mut dyn FnMut(usize, usize),
) -> Result<IngestReport> {
    let manifest = backend.manifest().clone();
    let needs_model = docs.iter().any(|d| d.vector.is_none());
    validate_vectors(&docs, &manifest)?;
    let embedder = match embedder {
        Some(e) if needs_model => {
            check_model(e, &manifest)?;
            Some(e)
        }
        None if needs_model => {
            return Err(PipelineError::InvalidInput(
                "documents without a vector need an embedding model".into(),
            ))
        }
        _ => None,
    };
    let chunking = manifest.chunking;
    validate_documents(docs.iter().map(|d| &d.document))?;
    let mut report = IngestReport::default();
    let total = docs.len();
    let mut done = 0;
    let texts_only: Vec<&Document> = docs
        .iter()
        .filter(|d| d.vector.is_none())
        .map(|d| &d.document)
        .collect();
    let mut unchanged = backend.unchanged(&texts_only)?.into_iter();
    let fresh: Vec<NewDocument> = docs
        .into_iter()
        .filter(|d| d.vector.is_some() || !unchanged.next().unwrap_or(false))
        .collect();
    report.unchanged = total - fresh.len();
    done += report.unchanged;
    if done > 0 {
        on_commit(done, total);
    }
    for batch in fresh.chunks(batch_docs.max(1)) {
        let mut docs: Vec<IndexedDocument> = batch
            .iter()
            .map(|d| IndexedDocument {
                document: d.document.clone(),
                chunks: d
                    .vector
                    .iter()
                    .map(|v| Chunk {
                        text: d.document.text.clone(),
                        vector: v.clone(),
                    })
                    .collect(),
            })
            .collect();
        if let Some(embedder) = embedder {
            embed_chunks(embedder, batch, chunking, &mut docs)?;
        }
        let ids: Vec<&str> = docs.iter().map(|d| d.document.id.as_str()).collect();
        for (d, stored) in docs.iter().zip(backend.documents(&ids)?) {
            if stored.is_some() {
                report.updated += 1;
            } else {
                report.added += 1;
            }
            report.chunks += d.chunks.len();
        }
        if commit_deadline.is_some_and(|d| std::time::Instant::now() > d) {
            return Err(PipelineError::DeadlineExceeded {
                committed: report.batches,
            });
        }
        report.seq = backend.commit(docs.into_iter().map(Operation::Upsert).collect())?;
        report.batches += 1;
        done += batch.len();
        on_commit(done, total);
    }
    Ok(report)
}

/// Cuts the documents of `batch` that brought no vector into windows and embeds them all in
/// one call (one padded batch per model forward), filling `out`'s chunks in the same order.
fn embed_chunks(
    embedder: &Embedder,
    batch: &[NewDocument],
    chunking: Option<ChunkingConfig>,
    out: &mut [IndexedDocument],
) -> Result<()> {
    let chunking = chunking.ok_or_else(|| {
        PipelineError::Internal("a model's collection has no chunking recorded".into())
    })?;
    let mut texts = Vec::new();
    let mut owners = Vec::new();
    let mut chunk_texts = Vec::new();
    for (i, d) in batch.iter().enumerate() {
        if d.vector.is_some() {
            continue;
        }
        let d = &d.document;
        for chunk in chunk_document(embedder, d, chunking)? {
            texts.push(embedding_text(d.title.as_deref(), &chunk));
            owners.push(i);
            chunk_texts.push(chunk);
        }
    }
    if texts.is_empty() {
        return Ok(());
    }
    let vectors = embedder.embed(&texts, TextRole::Passage)?;
    for ((owner, text), vector) in owners.into_iter().zip(chunk_texts).zip(vectors) {
        out[owner].chunks.push(Chunk { text, vector });
    }
    Ok(())
}
