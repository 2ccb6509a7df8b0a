//! The collections a server owns, reached only through the collection store
//! ([`sift_index::CollectionStore`]): opened on first use and kept open for writing (the local
//! backend's lock is exclusive, so `sift index` cannot write to one while the server holds it —
//! it gets a clear "in use" error instead of corrupting it).
//!
//! Searches share a read lock; upserts and deletes take the write lock. Collection requests run
//! on blocking threads, bounded by a semaphore (429 when all permits are taken). Their rerank
//! stage goes through the server's rerank batching queue like `/rerank` does, so one scheduler
//! shares the CPU between the two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sift_index::{Access, CollectionStore, Location};
use sift_models::Embedder;
use sift_pipeline::Pipeline;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

pub type SharedPipeline = Arc<RwLock<Pipeline>>;

pub struct Collections {
    store: CollectionStore,
    embedder: Option<Arc<Embedder>>,
    open: Mutex<HashMap<String, SharedPipeline>>,
    permits: Arc<Semaphore>,
}

impl Collections {
    pub fn new(
        location: Location,
        embedder: Option<Arc<Embedder>>,
        max_concurrent: usize,
    ) -> Result<Self, ApiError> {
        Ok(Collections {
            store: CollectionStore::open(location)?,
            embedder,
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

    /// Names of the collections in the store, sorted.
    pub fn names(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.store.list()?)
    }

    /// The open collection `name`; opens it from the store, or creates it for the server's
    /// embedding model when `create` is set. Blocking (opening reads the snapshot).
    pub fn get(&self, name: &str, create: bool) -> Result<SharedPipeline, ApiError> {
        sift_index::store::validate_name(name)?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = open.get(name) {
            return Ok(p.clone());
        }
        let collection = if self.store.exists(name)? {
            self.store.open_collection(name, Access::Write)?
        } else if create {
            let embedder = self.embedder.as_ref().ok_or_else(|| {
                ApiError::unavailable("embedding model (creating a collection needs one)")
            })?;
            let manifest = sift_pipeline::manifest_for(embedder, None)?;
            self.store.create(name, manifest)?
        } else {
            return Err(ApiError::not_found(format!("no collection named {name:?}")));
        };
        // The server's embedder serves the collection only if it is the model the collection
        // was built with; Pipeline::new refuses a mismatch (409). No reranker: the routes rerank
        // through the batching queue.
        let pipeline = Pipeline::new(self.embedder.clone(), None, collection)?;
        let shared = Arc::new(RwLock::new(pipeline));
        open.insert(name.to_owned(), shared.clone());
        Ok(shared)
    }

    /// Runs `f` on collection `name`; when it fails because the open handle became unusable (a
    /// write failed half way), the handle is dropped so the next request reopens — and so
    /// repairs — the collection from its log.
    pub fn with<T>(
        &self,
        name: &str,
        create: bool,
        f: impl FnOnce(&SharedPipeline) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let pipeline = self.get(name, create)?;
        let result = f(&pipeline);
        if let Err(e) = &result {
            if e.kind == crate::error::UNUSABLE_KIND {
                let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                if open.get(name).is_some_and(|p| Arc::ptr_eq(p, &pipeline)) {
                    open.remove(name);
                }
            }
        }
        result
    }
}
