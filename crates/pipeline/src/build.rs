//! Building and updating a collection from documents: what `sift index` does, and what
//! `sift eval` and `sift train-reranker` do when the collection they need is missing or was
//! interrupted part way.

use std::sync::Arc;

use sift_index::store::{self, Access, Location};
use sift_index::{
    Analyzer, Bm25Params, ChunkingConfig, CollectionBackend, Document, EmbeddingModelInfo, Manifest,
};
use sift_models::Embedder;

use crate::error::{PipelineError, Result};
use crate::ingest::{manifest_external, manifest_for, IngestReport, NewDocument};
use crate::search::Pipeline;

/// How `sift index` builds a collection: what a new one is created with, and what an existing
/// one is asked to change.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// Token windows of a new model collection (default: from the model's max length). An
    /// existing collection keeps its own: asking for another is an error.
    pub chunking: Option<ChunkingConfig>,
    /// The keyword analyzer (default: detected from the documents for a new collection, kept
    /// for an existing one). Another one for an existing collection re-cuts its keyword index.
    pub analyzer: Option<Analyzer>,
    /// What a new collection of brought vectors calls the model that made them (recorded in
    /// its manifest; default `external`). Used when no embedding model is given.
    pub vector_model: Option<String>,
    /// BM25's k1 (default: a new collection's [`Bm25Params::default`], an existing one's own).
    /// Changing it on an existing collection re-indexes nothing: it applies at query time.
    pub bm25_k1: Option<f32>,
    /// BM25's b, as `bm25_k1`.
    pub bm25_b: Option<f32>,
}

impl IndexOptions {
    /// `base` with the parameters these options name.
    fn bm25(&self, base: Bm25Params) -> Bm25Params {
        base.overridden(self.bm25_k1, self.bm25_b)
    }
}

/// Opens the collection at `location` for writing, or creates it: for `embedder` when one is
/// given, else for the vectors the documents bring (their dimension, from the first one). An
/// existing collection keeps its chunking; asking it for another analyzer re-cuts its keyword
/// index (seconds: no embedding is redone).
pub fn open_for_indexing(
    location: &Location,
    embedder: Option<&Embedder>,
    options: &IndexOptions,
    sample: &[NewDocument],
) -> Result<Box<dyn CollectionBackend>> {
    if !store::exists(location)? {
        let analyzer = options
            .analyzer
            .unwrap_or_else(|| detect_analyzer(sample.iter().map(|d| &d.document)));
        let manifest = match embedder {
            Some(embedder) => manifest_for(embedder, options.chunking, analyzer)?,
            None => {
                let dim = sample
                    .iter()
                    .find_map(|d| d.vector.as_ref().map(Vec::len))
                    .ok_or_else(|| {
                        PipelineError::InvalidInput(
                            "a new collection needs an embedding model or documents that bring \
                             their vectors"
                                .into(),
                        )
                    })?;
                manifest_external(
                    options.vector_model.as_deref().unwrap_or("external"),
                    dim,
                    analyzer,
                )?
            }
        };
        let manifest = Manifest {
            bm25: options.bm25(Bm25Params::default()),
            ..manifest
        };
        // Refuse bad input before the collection exists, so it leaves nothing behind.
        manifest.bm25.validate()?;
        crate::ingest::validate_vectors(sample, &manifest)?;
        return Ok(store::open_or_create(location, manifest)?);
    }
    let mut backend = store::open(location, Access::Write)?;
    if let Some(name) = &options.vector_model {
        let embedding = &backend.manifest().embedding;
        let named = EmbeddingModelInfo::external(name.trim(), embedding.dim);
        if !backend.manifest().same_model(&named) {
            // Vectors of two models must not share a collection: their similarities do not
            // compare.
            return Err(backend.manifest().mismatch(&named).into());
        }
    }
    if let Some(analyzer) = options.analyzer {
        if backend.manifest().analyzer != analyzer {
            tracing::info!(
                "{location}: keyword analyzer {} -> {analyzer}; rebuilding the BM25 index",
                backend.manifest().analyzer
            );
            backend.set_analyzer(analyzer)?;
        }
    }
    if let Some(asked) = options.chunking {
        let existing = backend.manifest().chunking;
        if existing.is_none_or(|e| e.max_tokens != asked.max_tokens) {
            return Err(PipelineError::InvalidInput(match existing {
                Some(e) => format!(
                    "{location} was created with {}-token chunks; chunking is fixed when a \
                     collection is created (index into a new collection to change it)",
                    e.max_tokens
                ),
                None => format!(
                    "{location} holds brought vectors (one chunk per document): sift does not \
                     cut its documents, so chunk sizes do not apply"
                ),
            }));
        }
    }
    let bm25 = options.bm25(backend.manifest().bm25);
    if bm25 != backend.manifest().bm25 {
        backend.set_bm25(bm25)?;
    }
    Ok(backend)
}

/// The analyzer for a new collection whose first documents are `docs` (titles and texts).
pub fn detect_analyzer<'a>(docs: impl IntoIterator<Item = &'a Document>) -> Analyzer {
    Analyzer::detect(
        docs.into_iter()
            .flat_map(|d| d.title.as_deref().into_iter().chain([d.text.as_str()])),
    )
}

/// Upserts `docs` into the collection at `location` (created when missing, see
/// [`open_for_indexing`]) in batches of `batch_docs`, then compacts it. `embedder` embeds the
/// documents that bring no vector (and is not needed when all do). Calls `on_commit(done,
/// total)` after each durable batch. Returns the pipeline over the collection (no reranker) and
/// what was done.
pub fn index_documents(
    location: &Location,
    embedder: Option<Arc<Embedder>>,
    options: &IndexOptions,
    docs: Vec<NewDocument>,
    batch_docs: usize,
    on_commit: &mut dyn FnMut(usize, usize),
) -> Result<(Pipeline, IngestReport)> {
    if batch_docs == 0 {
        return Err(PipelineError::InvalidInput(
            "the batch size must be at least 1".into(),
        ));
    }
    let backend = open_for_indexing(location, embedder.as_deref(), options, &docs)?;
    // A collection of brought vectors is never embedded into; a model named for it would only
    // embed queries, which indexing does not do.
    let embedder = embedder.filter(|_| !backend.manifest().embedding.is_external());
    // Pipeline::new refuses a model other than the collection's.
    let mut pipeline = Pipeline::new(embedder, None, backend)?;
    let report = pipeline.ingest(docs, batch_docs, on_commit)?;
    pipeline.backend_mut().compact()?;
    Ok((pipeline, report))
}

/// Whether the collection at `location` holds at least `documents` documents (a build that
/// was interrupted holds fewer and is completed before use).
pub fn is_complete(location: &Location, documents: usize) -> Result<bool> {
    Ok(store::exists(location)? && store::open(location, Access::Search)?.len()? >= documents)
}
