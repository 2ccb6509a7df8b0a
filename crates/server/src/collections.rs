//! The collections a server serves, reached only through the collection store
//! ([`sift_index::CollectionStore`]): opened on first use ([`Access::Shared`]) and kept open.
//! In a directory that makes the server the collection's one writer (the local backend's lock
//! is exclusive, so `sift index` cannot write to one while the server holds it — it gets a
//! clear "in use" error instead of corrupting it). In PostgreSQL any number of servers share
//! each collection: their batches take turns in the database, and every server sees every
//! committed batch at once.
//!
//! At most `max_open` collections stay open: opening one more closes the least recently used
//! one that no request is using (each open collection holds its vectors in memory, a BM25
//! writer and its threads). Searches share a read lock; upserts and deletes take the write lock. Collection requests run
//! on blocking threads, bounded by a semaphore (429 when all permits are taken). Their rerank
//! stage goes through the server's rerank batching queue like `/rerank` does, so one scheduler
//! shares the CPU between the two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sift_index::{Access, Analyzer, CollectionStore, Location};
use sift_models::Embedder;
use sift_pipeline::Pipeline;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

pub type SharedPipeline = Arc<RwLock<Pipeline>>;

pub struct Collections {
    store: CollectionStore,
    embedder: Option<Arc<Embedder>>,
    open: Mutex<OpenCollections>,
    permits: Arc<Semaphore>,
    max_open: usize,
}

/// The open handles and when each was last used (a counter, not a clock).
#[derive(Default)]
struct OpenCollections {
    handles: HashMap<String, (SharedPipeline, u64)>,
    uses: u64,
}

impl OpenCollections {
    fn get(&mut self, name: &str) -> Option<SharedPipeline> {
        self.uses += 1;
        let uses = self.uses;
        self.handles.get_mut(name).map(|(p, used)| {
            *used = uses;
            p.clone()
        })
    }

    /// Closes least recently used handles that no request holds until fewer than `max` are
    /// open (all of them may be in use; then none closes).
    fn make_room(&mut self, max: usize) {
        while self.handles.len() >= max {
            let idle = self
                .handles
                .iter()
                .filter(|(_, (p, _))| Arc::strong_count(p) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(name, _)| name.clone());
            match idle {
                Some(name) => {
                    tracing::info!("closing collection {name:?} (least recently used)");
                    self.handles.remove(&name);
                }
                None => break,
            }
        }
    }
}

impl Collections {
    pub fn new(
        location: Location,
        embedder: Option<Arc<Embedder>>,
        max_concurrent: usize,
        max_open: usize,
    ) -> Result<Self, ApiError> {
        Ok(Collections {
            store: CollectionStore::open(location)?,
            embedder,
            open: Mutex::new(OpenCollections::default()),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_open: max_open.max(1),
        })
    }

    /// How many collections are open now.
    pub fn open_count(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handles
            .len()
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
    /// embedding model with keyword analyzer `create` when that is given. Blocking (opening
    /// reads the snapshot).
    pub fn get(&self, name: &str, create: Option<Analyzer>) -> Result<SharedPipeline, ApiError> {
        sift_index::store::validate_name(name)?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = open.get(name) {
            return Ok(p);
        }
        open.make_room(self.max_open);
        let collection = if self.store.exists(name)? {
            self.store.open_collection(name, Access::Shared)?
        } else if let Some(analyzer) = create {
            let embedder = self.embedder.as_ref().ok_or_else(|| {
                ApiError::unavailable("embedding model (creating a collection needs one)")
            })?;
            let manifest = sift_pipeline::manifest_for(embedder, None, analyzer)?;
            self.store.create_with(name, manifest, Access::Shared)?
        } else {
            return Err(ApiError::not_found(format!("no collection named {name:?}")));
        };
        // The server's embedder serves the collection only if it is the model the collection
        // was built with; Pipeline::new refuses a mismatch (409). No reranker: the routes rerank
        // through the batching queue.
        // A collection of brought vectors gets no model: the server's might have the same
        // dimension yet not be the one that made the vectors, and its query vectors would then
        // compare silently wrong; its searches bring a query vector instead.
        let embedder = self
            .embedder
            .clone()
            .filter(|_| !collection.manifest().embedding.is_external());
        let pipeline = Pipeline::new(embedder, None, collection)?.with_background_compaction();
        let shared = Arc::new(RwLock::new(pipeline));
        let uses = open.uses;
        open.handles.insert(name.to_owned(), (shared.clone(), uses));
        Ok(shared)
    }

    /// Creates collection `name` for the server's embedding model with `analyzer` (neutral when
    /// none is given); `false` when it exists already (built with that model; another model is
    /// a 409). An existing collection asked for another analyzer has its keyword index rebuilt
    /// with it; one given none keeps its own. BM25's k1 and b, where given, replace the
    /// collection's (checked before anything is created). Returns the manifest as it now is.
    pub fn create(
        &self,
        name: &str,
        analyzer: Option<Analyzer>,
        (k1, b): (Option<f32>, Option<f32>),
    ) -> Result<(bool, sift_index::Manifest), ApiError> {
        sift_index::store::validate_name(name)?;
        sift_index::Bm25Params::default()
            .overridden(k1, b)
            .validate()?;
        let existed = self.store.exists(name)?;
        let shared = self.get(name, Some(analyzer.unwrap_or(Analyzer::Neutral)))?;
        let mut pipeline = shared.write().unwrap_or_else(|p| p.into_inner());
        if let Some(analyzer) = analyzer.filter(|a| *a != pipeline.backend().manifest().analyzer) {
            if existed {
                pipeline.backend_mut().set_analyzer(analyzer)?;
            }
        }
        let current = pipeline.backend().manifest().bm25;
        let asked = current.overridden(k1, b);
        if asked != current {
            pipeline.backend_mut().set_bm25(asked)?;
        }
        Ok((!existed, pipeline.backend().manifest().clone()))
    }

    /// Closes and deletes collection `name`; 409 while a request is using it.
    pub fn drop_collection(&self, name: &str) -> Result<(), ApiError> {
        sift_index::store::validate_name(name)?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, _)) = open.handles.get(name) {
            if Arc::strong_count(p) > 1 {
                return Err(ApiError::conflict(format!(
                    "collection {name:?} is in use by a request; retry when it finishes"
                )));
            }
            open.handles.remove(name);
        }
        if !self.store.exists(name)? {
            return Err(ApiError::not_found(format!("no collection named {name:?}")));
        }
        self.store.drop_collection(name)?;
        Ok(())
    }

    /// Starts compacting the collection on a thread of its own when its policy says it is due:
    /// the copy is taken under the read lock, the expensive part (snapshot, graph build) runs
    /// under no lock while requests go on, and only the swap takes the write lock. Call it
    /// after a write, with no lock held. The thread holds the collection open until it ends.
    pub fn compact_in_background(pipeline: &SharedPipeline) {
        let begun = {
            let p = pipeline.read().unwrap_or_else(|p| p.into_inner());
            p.backend()
                .begin_compaction(true)
                .map(|job| job.map(|j| (j, p.backend().location())))
        };
        let (mut job, location) = match begun {
            Ok(Some(begun)) => begun,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("compaction could not start: {e}");
                return;
            }
        };
        let pipeline = pipeline.clone();
        let spawned = std::thread::Builder::new()
            .name("sift-compaction".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                if let Err(e) = job.run() {
                    tracing::warn!("{location}: compaction failed: {e}");
                    return;
                }
                let mut p = pipeline.write().unwrap_or_else(|p| p.into_inner());
                let swap = std::time::Instant::now();
                match p.backend_mut().finish_compaction(job) {
                    Ok(()) => tracing::info!(
                        "{location}: compacted in {:.1} s (write lock held {:.1} ms)",
                        started.elapsed().as_secs_f64(),
                        swap.elapsed().as_secs_f64() * 1000.0
                    ),
                    Err(e) => tracing::warn!("{location}: compaction failed: {e}"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("compaction thread could not start: {e}");
        }
    }

    /// Runs `f` on collection `name`; when it fails because the open handle became unusable (a
    /// write failed half way), the handle is dropped so the next request reopens — and so
    /// repairs — the collection from its log.
    pub fn with<T>(
        &self,
        name: &str,
        create: Option<Analyzer>,
        f: impl FnOnce(&SharedPipeline) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let pipeline = self.get(name, create)?;
        let result = f(&pipeline);
        if let Err(e) = &result {
            if e.kind == crate::error::UNUSABLE_KIND {
                let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                if open
                    .handles
                    .get(name)
                    .is_some_and(|(p, _)| Arc::ptr_eq(p, &pipeline))
                {
                    open.handles.remove(name);
                }
            }
        }
        result
    }
}
