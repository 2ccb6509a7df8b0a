//! The PostgreSQL + pgvector backend: a collection as a schema in a database that many sift
//! processes share.
//!
//! What it is for: a corpus, query load or uptime need that outgrows one machine's directory.
//! PostgreSQL keeps the data (its WAL makes a committed batch durable, streaming replicas
//! scale reads), and `sift serve` processes hold nothing but models, so any number of them
//! can run behind a load balancer. Tables and why: `schema.rs`; BM25 in SQL: `keyword.rs`;
//! reads (replicas, the recall legs): `read.rs`; batches and the writer's lock: `write.rs`;
//! VACUUM and the HNSW index: `compaction.rs`; checks: `verify.rs`; addresses: `address.rs`;
//! sessions and errors: `connection.rs`; what the installed pgvector can do: `version.rs`.
//!
//! Guarantees, as the [`CollectionBackend`] contract words them:
//! - **One batch, one transaction**, acknowledged after `COMMIT` returns with
//!   `synchronous_commit = on`. Documents, chunks, passages and postings go in by binary
//!   `COPY`; the batch number and corpus statistics change in the same transaction.
//! - **Writers.** An exclusive writer ([`Access::Write`]: `sift index`, `sift delete`) holds a
//!   session-level advisory lock for the handle's life, released by PostgreSQL when its
//!   connection ends (a `kill -9`ed writer cannot leave a stale lock). Servers open collections
//!   [`Access::Shared`]: each batch takes the same lock in shared mode for its transaction, so
//!   any number of servers commit side by side — their batches serialize on the state row,
//!   which numbers them — and none while an exclusive writer runs (it waits up to
//!   [`LOCK_WAIT`], then gets [`IndexError::Locked`]). Readers take no lock.
//! - **Reads see committed batches at once**, from any process: every read runs in its own
//!   read-only transaction on a pooled connection.
//! - **Compaction is VACUUM**: the derived parts (HNSW index, postings index) are maintained by
//!   PostgreSQL on every write, so there is nothing to rebuild; what accumulates is dead rows.
//!   Autovacuum is off for the chunk table — pgvector 0.8.0–0.8.1 can damage an HNSW index
//!   when a vacuum runs concurrently with inserts (fixed in 0.8.2) — so sift vacuums it itself,
//!   in `finish_compaction`, where the caller holds the collection exclusively.

mod address;
mod compaction;
mod connection;
mod keyword;
mod read;
mod schema;
mod verify;
mod version;
mod write;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use postgres::Client;

pub use address::PgAddress;

use self::connection::{connect, db_error, Pool, Role};
use self::schema::ident;
use self::version::PgvectorVersion;
use self::write::lock_waiting;
use crate::analysis::Analyzer;
use crate::backend::{timed, CollectionBackend, CollectionStats, CompactionJob, HybridHits};
use crate::document::{ChunkHit, Document, HitDetails, IndexedDocument, Operation};
use crate::error::{IndexError, Result};
use crate::manifest::{Bm25Params, Manifest};
use crate::store::Access;

/// Tells handles apart, so a compaction job finishes only on the handle that began it.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Whether this database has collection `name` (an address with a collection).
pub fn exists(address: &PgAddress) -> Result<bool> {
    let name = address.require_collection()?;
    let mut client = connect(address)?;
    Ok(schema::lookup(&mut client, address, name)?.is_some())
}

/// The manifest of the collection at `address`, if it exists.
pub fn read_manifest(address: &PgAddress) -> Result<Option<Manifest>> {
    let name = address.require_collection()?;
    let mut client = connect(address)?;
    match schema::lookup(&mut client, address, name)? {
        Some(s) => Ok(Some(schema::read_manifest(&mut client, address, &s)?)),
        None => Ok(None),
    }
}

/// The collections in the database at `address` (its `collection` parameter is ignored).
pub fn list(address: &PgAddress) -> Result<Vec<String>> {
    let mut client = connect(address)?;
    schema::list(&mut client, address)
}

/// Drops the collection at `address`; refused ([`IndexError::Locked`]) while a writer holds it.
pub fn drop_collection(address: &PgAddress) -> Result<()> {
    let name = address.require_collection()?;
    let mut client = connect(address)?;
    if schema::drop(&mut client, address, name, writer_lock_key)? {
        Ok(())
    } else {
        Err(IndexError::NotACollection(address.redacted().into()))
    }
}

/// The advisory lock key of the writer of the collection in `schema`: "SIFT" and the schema
/// name's CRC-32, so it cannot collide with another collection's or the DDL lock.
fn writer_lock_key(schema: &str) -> i64 {
    (0x5349_4654_i64 << 32) | i64::from(crc32fast::hash(schema.as_bytes()))
}

/// A collection in PostgreSQL.
pub struct PostgresCollection {
    address: PgAddress,
    /// The collection's schema, quoted for SQL.
    schema: String,
    manifest: Manifest,
    /// The writer's session (holding the collection's advisory lock when `access` is
    /// `Write`); `None` for a searcher.
    writer: Option<Mutex<Client>>,
    access: Access,
    /// The collection's writer lock ([`writer_lock_key`]).
    lock_key: i64,
    /// Read sessions: on the replicas when the address names several servers, else on the
    /// one server.
    reads: Pool,
    /// Read sessions on the primary, for reads a lagging replica cannot serve; `None` without
    /// replicas (`reads` is on the primary then).
    primary_reads: Option<Pool>,
    /// The newest batch this handle must see: the ones it committed, and those a client said
    /// it wrote elsewhere ([`CollectionBackend::require_seq`]). Replica reads behind it wait
    /// or go to the primary.
    known_seq: AtomicU64,
    /// pgvector 0.8+: searches keep `ef_search` small and extend by iterative scan; before,
    /// `ef_search` must be at least `k` to return `k` results.
    iterative_scan: bool,
    /// This handle dropped the HNSW index for a bulk load and builds it at its next
    /// compaction.
    vector_index_deferred: bool,
    compaction_in_flight: Arc<AtomicBool>,
    handle: u64,
}

impl PostgresCollection {
    /// Opens the existing collection at `address`.
    pub fn open(address: &PgAddress, access: Access) -> Result<Self> {
        let name = address.require_collection()?;
        let mut client = connect(address)?;
        let schema = schema::lookup(&mut client, address, name)?
            .ok_or_else(|| IndexError::NotACollection(address.redacted().into()))?;
        let manifest = schema::read_manifest(&mut client, address, &schema)?;
        Self::finish_open(address, client, schema, manifest, access)
    }

    /// Opens the collection at `address` for writing, creating it with `manifest` if it does
    /// not exist; refuses one made with another embedding model.
    pub fn open_or_create(address: &PgAddress, manifest: Manifest, access: Access) -> Result<Self> {
        let name = address.require_collection()?;
        let mut client = connect(address)?;
        let schema = match schema::lookup(&mut client, address, name)? {
            Some(s) => s,
            None => schema::create(&mut client, address, name, &manifest)?,
        };
        let stored = schema::read_manifest(&mut client, address, &schema)?;
        if !stored.same_model(&manifest.embedding) {
            return Err(stored.mismatch(&manifest.embedding));
        }
        let access = match access {
            Access::Search => Access::Write,
            writer => writer,
        };
        Self::finish_open(address, client, schema, stored, access)
    }

    fn finish_open(
        address: &PgAddress,
        mut client: Client,
        schema: String,
        manifest: Manifest,
        access: Access,
    ) -> Result<Self> {
        if manifest.format != crate::manifest::FORMAT_VERSION {
            return Err(IndexError::Unsupported(format!(
                "{address}: collection format {} is not this sift's ({})",
                manifest.format,
                crate::manifest::FORMAT_VERSION
            )));
        }
        let pgvector = match schema::pgvector_version(&mut client, address)? {
            Some(v) => PgvectorVersion::parse(&v),
            None => {
                return Err(IndexError::Database(format!(
                    "{address}: the `vector` extension was removed from this database"
                )))
            }
        };
        if !pgvector.has_hnsw() {
            return Err(IndexError::Unsupported(format!(
                "{address}: pgvector {} has no HNSW index; sift needs pgvector 0.5 or later (0.8.2+ recommended)",
                pgvector.text
            )));
        }
        let replicas_or_primary = if connection::has_replicas(&address.config()?) {
            Role::Replica
        } else {
            Role::Primary
        };
        let writer = match access {
            Access::Write => {
                lock_waiting(
                    &mut client,
                    address,
                    "pg_advisory_lock",
                    writer_lock_key(&schema),
                )?;
                Some(Mutex::new(client))
            }
            Access::Shared => Some(Mutex::new(client)),
            Access::Search => None,
        };
        let mut collection = PostgresCollection {
            address: address.clone(),
            schema: ident(&schema),
            manifest,
            writer,
            access,
            lock_key: writer_lock_key(&schema),
            reads: connection::pool(address, replicas_or_primary)?,
            primary_reads: match replicas_or_primary {
                Role::Replica => Some(connection::pool(address, Role::Primary)?),
                Role::Primary => None,
            },
            known_seq: AtomicU64::new(0),
            iterative_scan: pgvector.has_iterative_scan(),
            vector_index_deferred: false,
            compaction_in_flight: Arc::new(AtomicBool::new(false)),
            handle: NEXT_HANDLE.fetch_add(1, Ordering::Relaxed),
        };
        collection.check_keyword_version()?;
        Ok(collection)
    }

    fn err(&self) -> impl Fn(postgres::Error) -> IndexError + '_ {
        move |e| db_error(&self.address, e)
    }
}

impl CollectionBackend for PostgresCollection {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn location(&self) -> String {
        self.address.redacted()
    }

    fn len(&self) -> Result<usize> {
        Ok(self.state_number("documents")? as usize)
    }

    fn seq(&self) -> Result<u64> {
        Ok(self.state_number("seq")? as u64)
    }

    fn documents(&self, ids: &[&str]) -> Result<Vec<Option<Document>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            self.documents_in(tx, ids)
        })
    }

    fn hit_details(&self, chunks: &[(&str, u32)]) -> Result<Vec<Option<HitDetails>>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = chunks.iter().map(|c| c.0).collect();
        let numbers: Vec<i32> = chunks
            .iter()
            .map(|c| i32::try_from(c.1).unwrap_or(i32::MAX))
            .collect();
        let sql = format!(
            "SELECT r.ord, d.id, d.title, d.body, d.metadata::text, c.body
             FROM unnest($1::text[], $2::int4[]) WITH ORDINALITY AS r(id, chunk, ord)
             JOIN {s}.documents d ON d.id = r.id
             JOIN {s}.chunks c ON c.doc = d.key AND c.chunk = r.chunk",
            s = self.schema
        );
        let rows = self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            tx.query(&sql, &[&ids, &numbers]).map_err(self.err())
        })?;
        let mut out = vec![None; chunks.len()];
        for row in rows {
            let ord: i64 = row.get(0);
            out[(ord - 1) as usize] = Some(HitDetails {
                document: self.document_from(row.get(1), row.get(2), row.get(3), row.get(4))?,
                chunk_text: row.get(5),
            });
        }
        Ok(out)
    }

    fn unchanged(&self, documents: &[&Document]) -> Result<Vec<bool>> {
        let ids: Vec<&str> = documents.iter().map(|d| d.id.as_str()).collect();
        let stored = self.documents(&ids)?;
        Ok(stored
            .iter()
            .zip(documents)
            .map(|(s, d)| s.as_ref() == Some(*d))
            .collect())
    }

    fn set_analyzer(&mut self, analyzer: Analyzer) -> Result<()> {
        if self.manifest.analyzer == analyzer {
            return Ok(());
        }
        self.rebuild_keywords(analyzer)
    }

    fn set_bm25(&mut self, params: Bm25Params) -> Result<()> {
        params.validate()?;
        self.record_bm25(params)
    }

    fn commit(&mut self, operations: Vec<Operation>) -> Result<u64> {
        self.commit_batch(operations)
    }

    fn begin_compaction(&self, only_if_due: bool) -> Result<Option<Box<dyn CompactionJob>>> {
        self.begin_vacuum(only_if_due)
    }

    fn finish_compaction(&mut self, job: Box<dyn CompactionJob>) -> Result<()> {
        self.finish_vacuum(job)
    }

    fn dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>> {
        let query = self.query_vector(vector)?;
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            self.dense_in(tx, &query, k)
        })
    }

    fn keyword_search(&self, query: &str, k: usize) -> Result<Vec<ChunkHit>> {
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            self.keyword_in(tx, query, k)
        })
    }

    /// Both legs in one repeatable-read transaction: the same snapshot, whatever other
    /// processes commit meanwhile.
    fn hybrid_search(&self, vector: &[f32], query: &str, k: usize) -> Result<HybridHits> {
        let vector = self.query_vector(vector)?;
        self.read(postgres::IsolationLevel::RepeatableRead, |tx| {
            let dense = timed(|| self.dense_in(tx, &vector, k))?;
            Ok(HybridHits::from_legs(
                dense,
                timed(|| self.keyword_in(tx, query, k))?,
            ))
        })
    }

    /// Verified on the primary, so that a number no batch has (a client's typo, another
    /// collection's) is refused instead of making every later read wait for it.
    fn require_seq(&self, seq: u64) -> Result<()> {
        if seq <= self.known_seq.load(Ordering::Acquire) {
            return Ok(());
        }
        let sql = format!("SELECT seq FROM {}.state", self.schema);
        let current: i64 = self.read_retrying(
            self.primary_pool(),
            postgres::IsolationLevel::ReadCommitted,
            &|tx| Ok(tx.query_one(&sql, &[]).map_err(self.err())?.get(0)),
        )?;
        let current = current as u64;
        if seq > current {
            return Err(IndexError::InvalidInput(format!(
                "batch {seq} has not been committed to {} (its last batch is {current})",
                self.address
            )));
        }
        self.known_seq.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    fn export(&self, each: &mut dyn FnMut(IndexedDocument) -> Result<()>) -> Result<()> {
        self.export_all(each)
    }

    fn stats(&self) -> Result<CollectionStats> {
        let sql = format!(
            "SELECT (SELECT documents FROM {s}.state), (SELECT count(*) FROM {s}.chunks)",
            s = self.schema
        );
        let row = self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            tx.query_one(&sql, &[]).map_err(self.err())
        })?;
        Ok(CollectionStats {
            documents: row.get::<_, i64>(0) as usize,
            chunks: row.get::<_, i64>(1) as usize,
            approximate_vectors: true,
        })
    }

    fn verify(&self) -> Result<()> {
        self.verify_parts()
    }
}
