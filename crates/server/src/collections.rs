//! The collections a server owns: subdirectories of `--collections DIR`, opened on first use and
//! kept open for writing (a collection's lock is exclusive, so `sift index` cannot write to one
//! while the server holds it — it gets a clear "in use" error instead of corrupting it).
//!
//! Searches share a read lock; upserts and deletes take the write lock. Collection requests run
//! the pipeline's own model calls on blocking threads and are bounded by a semaphore (429 when
//! all permits are taken) rather than going through the batching queues: a search embeds one
//! query, an upsert a few chunks per document.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sift_index::{AnnParams, Collection};
use sift_models::{CrossEncoder, Embedder};
use sift_pipeline::Pipeline;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

pub type SharedPipeline = Arc<RwLock<Pipeline<Collection>>>;

pub struct Collections {
    root: PathBuf,
    embedder: Option<Arc<Embedder>>,
    reranker: Option<Arc<CrossEncoder>>,
    open: Mutex<HashMap<String, SharedPipeline>>,
    permits: Arc<Semaphore>,
}

/// Collection names become directory names: letters, digits, `-`, `_`, `.`; no leading dot.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "collection name {name:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl Collections {
    pub fn new(
        root: PathBuf,
        embedder: Option<Arc<Embedder>>,
        reranker: Option<Arc<CrossEncoder>>,
        max_concurrent: usize,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Collections {
            root,
            embedder,
            reranker,
            open: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        })
    }

    /// A slot to run one collection request, or 429.
    pub fn permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::overloaded("collection", Duration::from_secs(1)))
    }

    pub fn embedder(&self) -> Option<&Arc<Embedder>> {
        self.embedder.as_ref()
    }

    /// Names of the collections on disk, sorted.
    pub fn names(&self) -> Result<Vec<String>, ApiError> {
        let mut names = Vec::new();
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| ApiError::internal(format!("reading {}: {e}", self.root.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("collection.json").is_file() && validate_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The open collection `name`; opens it from disk, or creates it for the server's embedding
    /// model when `create` is set. Blocking (opening reads the snapshot).
    pub fn get(&self, name: &str, create: bool) -> Result<SharedPipeline, ApiError> {
        validate_name(name)?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = open.get(name) {
            return Ok(p.clone());
        }
        let dir = self.root.join(name);
        let collection = if dir.join("collection.json").is_file() {
            Collection::open(&dir, AnnParams::default())?
        } else if create {
            let embedder = self.embedder.as_ref().ok_or_else(|| {
                ApiError::unavailable("embedding model (creating a collection needs one)")
            })?;
            let manifest = sift_pipeline::manifest_for(embedder, None)?;
            Collection::open_or_create(&dir, manifest, AnnParams::default())?
        } else {
            return Err(ApiError::not_found(format!("no collection named {name:?}")));
        };
        // The server's embedder serves the collection only if it is the model the collection
        // was built with; Pipeline::new refuses a mismatch (409).
        let pipeline = Pipeline::new(self.embedder.clone(), self.reranker.clone(), collection)?;
        let shared = Arc::new(RwLock::new(pipeline));
        open.insert(name.to_owned(), shared.clone());
        Ok(shared)
    }
}
