//! Building and updating a collection from documents: what `sift index` does, and what
//! `sift eval` and `sift train-reranker` do when the collection they need is missing or was
//! interrupted part way.

use std::sync::Arc;

use sift_index::store::{self, Access, Location};
use sift_index::{Analyzer, ChunkingConfig, CollectionBackend, Document};
use sift_models::Embedder;

use crate::error::{PipelineError, Result};
use crate::ingest::{manifest_for, IngestReport};
use crate::search::Pipeline;

/// Opens the collection at `location` for writing, or creates it for `embedder` with
/// `chunking` (default: from the model's max length) and `analyzer` (default: the one
/// [`Analyzer::detect`] picks for `sample`, the documents about to be indexed). An existing
/// collection keeps its chunking: asking for another is an error, since its chunks were cut
/// that way. Asking an existing collection for another analyzer re-cuts its keyword index
/// (seconds: no embedding is redone).
pub fn open_for_indexing(
    location: &Location,
    embedder: &Embedder,
    chunking: Option<ChunkingConfig>,
    analyzer: Option<Analyzer>,
    sample: &[Document],
) -> Result<Box<dyn CollectionBackend>> {
    if !store::exists(location)? {
        let analyzer = analyzer.unwrap_or_else(|| detect_analyzer(sample));
        return Ok(store::open_or_create(
            location,
            manifest_for(embedder, chunking, analyzer)?,
        )?);
    }
    let mut backend = store::open(location, Access::Write)?;
    if let Some(analyzer) = analyzer {
        if backend.manifest().analyzer != analyzer {
            tracing::info!(
                "{location}: keyword analyzer {} -> {analyzer}; rebuilding the BM25 index",
                backend.manifest().analyzer
            );
            backend.set_analyzer(analyzer)?;
        }
    }
    let existing = backend.manifest().chunking;
    if let Some(asked) = chunking {
        if asked.max_tokens != existing.max_tokens {
            return Err(PipelineError::InvalidInput(format!(
                "{location} was created with {}-token chunks; chunking is fixed when a collection is created (index into a new collection to change it)",
                existing.max_tokens
            )));
        }
    }
    Ok(backend)
}

/// The analyzer for a new collection whose first documents are `docs` (titles and texts).
pub fn detect_analyzer(docs: &[Document]) -> Analyzer {
    Analyzer::detect(
        docs.iter()
            .flat_map(|d| d.title.as_deref().into_iter().chain([d.text.as_str()])),
    )
}

/// Upserts `docs` into the collection at `location` (created when missing, with `analyzer` or
/// the detected one) in batches of `batch_docs`, then compacts it. Calls `on_commit(done, total)` after each durable batch.
/// Returns the pipeline over the collection (no reranker) and what was done.
pub fn index_documents(
    location: &Location,
    embedder: Arc<Embedder>,
    chunking: Option<ChunkingConfig>,
    analyzer: Option<Analyzer>,
    docs: Vec<Document>,
    batch_docs: usize,
    on_commit: &mut dyn FnMut(usize, usize),
) -> Result<(Pipeline, IngestReport)> {
    if batch_docs == 0 {
        return Err(PipelineError::InvalidInput(
            "the batch size must be at least 1".into(),
        ));
    }
    let backend = open_for_indexing(location, &embedder, chunking, analyzer, &docs)?;
    // Pipeline::new refuses a model other than the collection's.
    let mut pipeline = Pipeline::new(Some(embedder), None, backend)?;
    let report = pipeline.ingest(docs, batch_docs, on_commit)?;
    pipeline.backend_mut().compact()?;
    Ok((pipeline, report))
}

/// Whether the collection at `location` holds at least `documents` documents (a build that
/// was interrupted holds fewer and is completed before use).
pub fn is_complete(location: &Location, documents: usize) -> Result<bool> {
    Ok(store::exists(location)? && store::open(location, Access::Search)?.len()? >= documents)
}
