//! The PostgreSQL + pgvector backend: a collection as a schema in a database that many sift
//! processes share.
//!
//! What it is for: a corpus, query load or uptime need that outgrows one machine's directory.
//! PostgreSQL keeps the data (its WAL makes a committed batch durable, streaming replicas
//! scale reads), and `sift serve` processes hold nothing but models, so any number of them
//! can run behind a load balancer. Tables and why: [`schema`]; BM25 in SQL: [`keyword`].
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
mod connection;
mod keyword;
mod schema;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::Client;

pub use address::PgAddress;

use self::connection::{checkout, connect, db_error, Pool, Role};
use self::schema::ident;
use crate::analysis::Analyzer;
use crate::backend::{timed, CollectionBackend, CollectionStats, CompactionJob, HybridHits};
use crate::batch::{validate_batch, vector_problem};
use crate::document::{Chunk, ChunkHit, Document, HitDetails, IndexedDocument, Operation};
use crate::error::{IndexError, Result};
use crate::manifest::Manifest;
use crate::store::Access;

/// HNSW candidates pgvector keeps per search (`hnsw.ef_search`) before its iterative scan
/// (`hnsw.iterative_scan = relaxed_order`, pgvector 0.8) extends the search to `k` results;
/// the outer query orders them exactly. Why not ef_search = k: the pipeline fetches 300
/// chunks per search, and on SciFact (10k chunks × 384) ef_search 300 took 35 ms against
/// 7.7 ms for 40 + iterative scan and 3.7 ms for 100 results at ef_search 100.
const EF_SEARCH: usize = 100;
/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

/// The installed pgvector's version, for what it can do and what it gets wrong.
struct PgvectorVersion {
    text: String,
    number: (u32, u32, u32),
}

impl PgvectorVersion {
    fn parse(text: &str) -> Self {
        let mut parts = text.split('.').map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        });
        let number = (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        PgvectorVersion {
            text: text.to_owned(),
            number,
        }
    }

    /// HNSW indexes arrived in 0.5.0.
    fn has_hnsw(&self) -> bool {
        self.number >= (0, 5, 0)
    }

    /// `hnsw.iterative_scan` arrived in 0.8.0.
    fn has_iterative_scan(&self) -> bool {
        self.number >= (0, 8, 0)
    }
}

/// How long a writer waits for the collection's lock before reporting it
/// [`IndexError::Locked`]: long enough for other servers' batches in flight to commit, short
/// enough that a request does not hang behind a `sift index` run.
const LOCK_WAIT: &str = "10s";

/// How long a read waits for a replica to replay a batch it must see before asking the
/// primary instead. Streaming replication on a LAN replays within milliseconds; a replica this
/// far behind is better skipped than waited for.
const REPLICA_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A first batch of at least this many chunks into an empty collection, by an exclusive
/// writer, is a bulk load: the HNSW index is dropped in that batch's transaction and built
/// once by the compaction that ends the load (`sift index`, `sift copy` and the benchmark end
/// with one). pgvector inserts into its graph row by row; building it in one `CREATE INDEX`
/// was 4.3× faster here (SciFact's 10,295 chunks: 15.6 s of inserts against 0.16 s to copy
/// the rows plus 3.6 s to build). Searches during the load scan the table: exact, slower.
const BULK_LOAD_CHUNKS: usize = 1000;

/// Memory for one HNSW build (`maintenance_work_mem`): a graph that fits builds in memory
/// (pgvector notices when it does not and goes on, slower, on disk).
const INDEX_BUILD_MEMORY: &str = "1GB";

/// Documents per page of an export.
const EXPORT_PAGE: i64 = 500;

/// Documents re-analysed per round when the analyzer changes (bounds memory, not correctness:
/// it all happens in one transaction).
const REANALYZE_BATCH: i64 = 500;

/// A compaction is due once the chunk table's dead rows reach this share of its live ones
/// (and at least [`MIN_DEAD_ROWS`]): autovacuum's own default scale factor.
const DUE_DEAD_SHARE: f64 = 0.2;
const MIN_DEAD_ROWS: i64 = 1000;

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

/// Takes advisory lock `key` with `function` on the session, waiting at most [`LOCK_WAIT`].
fn lock_waiting(client: &mut Client, address: &PgAddress, function: &str, key: i64) -> Result<()> {
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_WAIT}'"))
        .map_err(|e| db_error(address, e))?;
    let locked = client
        .execute(&format!("SELECT {function}($1)"), &[&key])
        .map_err(|e| locked_or(address, e));
    client
        .batch_execute("SET lock_timeout = 0")
        .map_err(|e| db_error(address, e))?;
    locked.map(drop)
}

/// A lock wait that ran out is [`IndexError::Locked`]; anything else as [`db_error`] maps it.
fn locked_or(address: &PgAddress, e: postgres::Error) -> IndexError {
    if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
        IndexError::Locked {
            path: address.redacted().into(),
        }
    } else {
        db_error(address, e)
    }
}

/// A row of (document id, chunk, score).
fn chunk_hit(row: postgres::Row) -> ChunkHit {
    ChunkHit {
        doc_id: row.get(0),
        chunk: row.get::<_, i32>(1) as u32,
        score: row.get(2),
    }
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

    /// Postings cut by another version of the analyzer (a sift whose analyzer changed since
    /// they were written) are re-cut by the first writer that opens the collection, so
    /// queries are never analysed differently from the documents they search.
    fn check_keyword_version(&mut self) -> Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let sql = format!("SELECT keyword_terms FROM {}.state", self.schema);
        let stored: String = writer
            .lock()
            .map_err(|_| IndexError::Internal("the writer's connection lock is poisoned".into()))?
            .query_one(&sql, &[])
            .map_err(self.err())?
            .get(0);
        let current = self.manifest.analyzer.tokenizer_name();
        if stored != current {
            tracing::info!(
                "{}: keyword postings were cut by {stored}; re-cutting them with {current}",
                self.address
            );
            self.rebuild_keywords(self.manifest.analyzer)?;
        }
        Ok(())
    }

    fn err(&self) -> impl Fn(postgres::Error) -> IndexError + '_ {
        move |e| db_error(&self.address, e)
    }

    /// The writer's session. One that the server closed (a restart, a failover) is replaced
    /// by a new one first — an exclusive writer takes its lock again, which PostgreSQL released
    /// with the old session — so a long-lived server writes again once the database is back.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, Client>> {
        let writer = self.writer.as_ref().ok_or_else(|| {
            IndexError::InvalidInput(format!(
                "{}: this handle was opened for searching; open it for writing to change it",
                self.address
            ))
        })?;
        let mut client = writer
            .lock()
            .map_err(|_| IndexError::Internal("the writer's connection lock is poisoned".into()))?;
        if client.is_closed() {
            let mut fresh = connect(&self.address)?;
            if self.access == Access::Write {
                lock_waiting(&mut fresh, &self.address, "pg_advisory_lock", self.lock_key)?;
            }
            *client = fresh;
        }
        Ok(client)
    }

    /// Runs `f` in a read-only transaction (`isolation`) that sees at least batch
    /// `known_seq`: on a replica when there are replicas — waiting up to [`REPLICA_WAIT`] for
    /// one that has replayed that far — else, or then, on the primary. A read that fails
    /// because its pooled connection had died (the server restarted) is tried once more on a
    /// new one: reads change nothing, so repeating one is safe.
    fn read<T>(
        &self,
        isolation: postgres::IsolationLevel,
        f: impl Fn(&mut postgres::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let need = self.known_seq.load(Ordering::Acquire);
        if let Some(primary) = &self.primary_reads {
            let deadline = Instant::now() + REPLICA_WAIT;
            loop {
                match self.read_on(&self.reads, need, isolation, &f) {
                    Ok(Some(out)) => return Ok(out),
                    // Behind (a replica that has not replayed the collection's creation yet
                    // has no such tables: behind too).
                    Ok(None) | Err(IndexError::NotACollection(_)) if Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    // Behind for too long, or no replica reachable: the primary answers.
                    Ok(None) | Err(IndexError::NotACollection(_) | IndexError::Unavailable(_)) => {
                        break
                    }
                    Err(e) => return Err(e),
                }
            }
            return self.read_retrying(primary, isolation, &f);
        }
        self.read_retrying(&self.reads, isolation, &f)
    }

    /// Read sessions on the primary.
    fn primary_pool(&self) -> &Pool {
        self.primary_reads.as_ref().unwrap_or(&self.reads)
    }

    fn read_retrying<T>(
        &self,
        pool: &Pool,
        isolation: postgres::IsolationLevel,
        f: &impl Fn(&mut postgres::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let once = || {
            self.read_on(pool, 0, isolation, f)?
                .ok_or_else(|| IndexError::Internal("a read with no batch to wait for".into()))
        };
        match once() {
            Err(IndexError::Unavailable(_)) => once(),
            other => other,
        }
    }

    /// `f` in a read-only transaction on a session of `pool`; `None` when that server has not
    /// replayed batch `need` yet (0: any state will do).
    fn read_on<T>(
        &self,
        pool: &Pool,
        need: u64,
        isolation: postgres::IsolationLevel,
        f: &impl Fn(&mut postgres::Transaction<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut conn = checkout(&self.address, pool)?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(isolation)
            .read_only(true)
            .start()
            .map_err(self.err())?;
        if need > 0 {
            let sql = format!("SELECT seq FROM {}.state", self.schema);
            let seq: i64 = tx.query_one(&sql, &[]).map_err(self.err())?.get(0);
            if (seq as u64) < need {
                return Ok(None);
            }
        }
        let out = f(&mut tx)?;
        tx.commit().map_err(self.err())?;
        Ok(Some(out))
    }

    /// Exact nearest chunks: a sequential scan instead of the HNSW index (the reference the
    /// scale benchmark measures the index's recall against).
    pub fn exact_dense_search(&self, vector: &[f32], k: usize) -> Result<Vec<ChunkHit>> {
        let query = self.query_vector(vector)?;
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            tx.batch_execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
                .map_err(self.err())?;
            self.dense_in(tx, &query, k)
        })
    }

    /// Re-cuts every document's keyword postings with `analyzer` and records it (and its
    /// version, the analyzer's tokenizer name) in the state row, in one transaction.
    fn rebuild_keywords(&mut self, analyzer: Analyzer) -> Result<()> {
        let mut manifest = self.manifest.clone();
        manifest.analyzer = analyzer;
        let manifest_json = serde_json::to_string(&manifest)
            .map_err(|e| IndexError::Internal(format!("serializing the manifest: {e}")))?;
        let s = self.schema.clone();
        let mut client = self.writer()?;
        let mut tx = client.transaction().map_err(self.err())?;
        self.lock_for_batch(&mut tx)?;
        tx.batch_execute(&format!(
            "SELECT 1 FROM {s}.state FOR UPDATE; DELETE FROM {s}.postings; DELETE FROM {s}.passages;
             DELETE FROM {s}.terms;"
        ))
        .map_err(self.err())?;
        let (mut passages, mut terms) = (0i64, 0i64);
        let mut after = i64::MIN;
        loop {
            let rows = tx
                .query(
                    &format!(
                        "SELECT d.key, d.id, d.title, d.body, array_agg(c.body ORDER BY c.chunk)
                         FROM (SELECT * FROM {s}.documents WHERE key > $1 ORDER BY key LIMIT $2) d
                         JOIN {s}.chunks c ON c.doc = d.key
                         GROUP BY d.key, d.id, d.title, d.body ORDER BY d.key"
                    ),
                    &[&after, &REANALYZE_BATCH],
                )
                .map_err(self.err())?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            let loaded: Vec<(i64, Document, Vec<String>)> = rows
                .iter()
                .map(|r| {
                    let document = Document {
                        id: r.get(1),
                        title: r.get(2),
                        text: r.get(3),
                        metadata: None,
                    };
                    (r.get(0), document, r.get(4))
                })
                .collect();
            let units: Vec<(i64, &Document, Vec<&str>)> = loaded
                .iter()
                .map(|(k, d, c)| (*k, d, c.iter().map(String::as_str).collect()))
                .collect();
            let (p, t) = self.write_keyword_units(&mut tx, analyzer, &units)?;
            passages += p;
            terms += t;
        }
        tx.execute(
            &format!(
                "UPDATE {s}.state SET manifest = $1::text::json, passages = $2, passage_terms = $3,
                     keyword_terms = $4"
            ),
            &[
                &manifest_json,
                &passages,
                &terms,
                &analyzer.tokenizer_name(),
            ],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        drop(client);
        self.manifest = manifest;
        Ok(())
    }

    /// `vector` checked and normalized for a dense search.
    fn query_vector(&self, vector: &[f32]) -> Result<pgvector::Vector> {
        let dim = self.manifest.embedding.dim;
        if vector.len() != dim {
            return Err(IndexError::InvalidInput(format!(
                "the query vector has {} dimensions, the collection {dim}",
                vector.len()
            )));
        }
        if let Some(problem) = vector_problem(vector) {
            return Err(IndexError::InvalidInput(format!("query vector {problem}")));
        }
        Ok(pgvector::Vector::from(crate::local::normalized(vector)))
    }

    fn dense_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        query: &pgvector::Vector,
        k: usize,
    ) -> Result<Vec<ChunkHit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let ef = if self.iterative_scan {
            EF_SEARCH
        } else {
            k.clamp(EF_SEARCH, MAX_EF_SEARCH)
        }
        .to_string();
        let sql = format!(
            "SELECT d.id, n.chunk, (-n.distance)::float4
             FROM (SELECT doc, chunk, embedding <#> $1 AS distance FROM {s}.chunks
                   ORDER BY embedding <#> $1 LIMIT $2) n
             JOIN {s}.documents d ON d.key = n.doc
             ORDER BY n.distance, n.doc, n.chunk",
            s = self.schema
        );
        tx.execute(
            // (An unknown setting with a dot in its name is accepted as a placeholder, so this
            // is harmless before pgvector 0.8.)
            "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
            &[&ef],
        )
        .map_err(self.err())?;
        let rows = tx.query(&sql, &[query, &(k as i64)]).map_err(self.err())?;
        Ok(rows.into_iter().map(chunk_hit).collect())
    }

    fn keyword_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        query: &str,
        k: usize,
    ) -> Result<Vec<ChunkHit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        // The stored analyzer, not this handle's copy: another process may have changed it.
        let state_sql = format!("SELECT manifest->>'analyzer' FROM {}.state", self.schema);
        let name: Option<String> = tx.query_one(&state_sql, &[]).map_err(self.err())?.get(0);
        let analyzer = name
            .and_then(|n| n.parse::<Analyzer>().ok())
            .unwrap_or_default();
        let terms = analyzer.terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let rows = tx
            .query(&keyword::bm25_sql(&self.schema), &[&terms, &(k as i64)])
            .map_err(self.err())?;
        Ok(rows.into_iter().map(chunk_hit).collect())
    }

    /// A shared writer's hold on the collection for one transaction (an exclusive writer holds
    /// it already, for the session).
    fn lock_for_batch(&self, tx: &mut postgres::Transaction<'_>) -> Result<()> {
        if self.access != Access::Shared {
            return Ok(());
        }
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            .map_err(self.err())?;
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&self.lock_key])
            .map_err(|e| locked_or(&self.address, e))?;
        tx.batch_execute("SET LOCAL lock_timeout = 0")
            .map_err(self.err())
    }

    fn state_number(&self, column: &str) -> Result<i64> {
        let sql = format!("SELECT {column} FROM {}.state", self.schema);
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            Ok(tx.query_one(&sql, &[]).map_err(self.err())?.get(0))
        })
    }

    /// Documents by id in request order, read in `tx`.
    fn documents_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        ids: &[&str],
    ) -> Result<Vec<Option<Document>>> {
        let rows = tx
            .query(
                &format!(
                    "SELECT r.ord, d.id, d.title, d.body, d.metadata::text
                     FROM unnest($1::text[]) WITH ORDINALITY AS r(id, ord)
                     JOIN {s}.documents d ON d.id = r.id",
                    s = self.schema
                ),
                &[&ids],
            )
            .map_err(self.err())?;
        let mut out = vec![None; ids.len()];
        for row in rows {
            let ord: i64 = row.get(0);
            out[(ord - 1) as usize] =
                Some(self.document_from(row.get(1), row.get(2), row.get(3), row.get(4))?);
        }
        Ok(out)
    }

    fn document_from(
        &self,
        id: String,
        title: Option<String>,
        text: String,
        metadata: Option<String>,
    ) -> Result<Document> {
        let metadata = metadata
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|e| {
                IndexError::Database(format!(
                    "{}: stored metadata of {id:?} is not JSON: {e}",
                    self.address
                ))
            })?;
        Ok(Document {
            id,
            text,
            title,
            metadata,
        })
    }

    /// The `vector` type of this database (its OID is assigned when pgvector is installed),
    /// for binary COPY.
    fn vector_type(&self, tx: &mut postgres::Transaction<'_>) -> Result<Type> {
        let statement = tx.prepare("SELECT $1::vector").map_err(self.err())?;
        Ok(statement.params()[0].clone())
    }

    /// Writes `rows` into `table (columns)` by binary COPY.
    fn copy_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        table: &str,
        columns: &str,
        types: &[Type],
        rows: impl IntoIterator<Item = Vec<Box<dyn ToSql + Sync>>>,
    ) -> Result<()> {
        let sink = tx
            .copy_in(&format!(
                "COPY {}.{table} ({columns}) FROM STDIN (FORMAT binary)",
                self.schema
            ))
            .map_err(self.err())?;
        let mut writer = BinaryCopyInWriter::new(sink, types);
        for row in rows {
            let refs: Vec<&(dyn ToSql + Sync)> = row.iter().map(|b| b.as_ref()).collect();
            writer.write(&refs).map_err(self.err())?;
        }
        writer.finish().map_err(self.err())?;
        Ok(())
    }

    /// Writes the passages and postings of documents `(key, document, chunk texts)`; returns
    /// how many passages and terms they add.
    fn write_keyword_units(
        &self,
        tx: &mut postgres::Transaction<'_>,
        analyzer: Analyzer,
        documents: &[(i64, &Document, Vec<&str>)],
    ) -> Result<(i64, i64)> {
        let mut passages: Vec<Vec<Box<dyn ToSql + Sync>>> = Vec::new();
        let mut postings: Vec<Vec<Box<dyn ToSql + Sync>>> = Vec::new();
        let mut terms_total = 0i64;
        let mut df: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for (key, document, chunks) in documents {
            for (i, p) in keyword::analyze(analyzer, document, chunks)
                .into_iter()
                .enumerate()
            {
                terms_total += i64::from(p.length);
                passages.push(vec![
                    Box::new(*key),
                    Box::new(i as i32),
                    Box::new(p.chunk),
                    Box::new(p.length),
                ]);
                for (term, tf) in p.terms {
                    *df.entry(term.clone()).or_default() += 1;
                    postings.push(vec![
                        Box::new(term),
                        Box::new(*key),
                        Box::new(i as i32),
                        Box::new(tf),
                        Box::new(p.length),
                    ]);
                }
            }
        }
        let added = passages.len() as i64;
        self.copy_in(
            tx,
            "passages",
            "doc, passage, chunk, terms",
            &[Type::INT8, Type::INT4, Type::INT4, Type::INT4],
            passages,
        )?;
        self.copy_in(
            tx,
            "postings",
            "term, doc, passage, tf, passage_terms",
            &[Type::TEXT, Type::INT8, Type::INT4, Type::INT4, Type::INT4],
            postings,
        )?;
        let (terms, counts): (Vec<String>, Vec<i64>) = df.into_iter().unzip();
        tx.execute(
            &format!(
                "INSERT INTO {s}.terms (term, df) SELECT * FROM unnest($1::text[], $2::int8[])
                 ON CONFLICT (term) DO UPDATE SET df = terms.df + EXCLUDED.df",
                s = self.schema
            ),
            &[&terms, &counts],
        )
        .map_err(self.err())?;
        Ok((added, terms_total))
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

    fn commit(&mut self, operations: Vec<Operation>) -> Result<u64> {
        validate_batch(&operations, self.manifest.embedding.dim)?;
        if operations.is_empty() {
            return self.seq();
        }
        let s = self.schema.clone();
        let ids: Vec<&str> = operations.iter().map(Operation::id).collect();
        let upserts: Vec<_> = operations
            .iter()
            .filter_map(|op| match op {
                Operation::Upsert(d) => Some(d),
                Operation::Delete(_) => None,
            })
            .collect();
        let mut client = self.writer()?;
        let mut tx = client.transaction().map_err(self.err())?;
        self.lock_for_batch(&mut tx)?;
        let state = tx
            .query_one(
                &format!("SELECT seq, manifest->>'analyzer', documents FROM {s}.state FOR UPDATE"),
                &[],
            )
            .map_err(self.err())?;
        let seq = state.get::<_, i64>(0) + 1;
        let new_chunks: usize = upserts.iter().map(|d| d.chunks.len()).sum();
        let bulk_load = self.access == Access::Write
            && !self.vector_index_deferred
            && state.get::<_, i64>(2) == 0
            && new_chunks >= BULK_LOAD_CHUNKS;
        if bulk_load {
            tx.batch_execute(&format!(
                "DROP INDEX IF EXISTS {s}.{}",
                schema::VECTOR_INDEX
            ))
            .map_err(self.err())?;
        }
        let analyzer: Option<String> = state.get(1);
        let analyzer: Analyzer = match analyzer {
            Some(name) => name.parse().map_err(|_| {
                IndexError::Database(format!(
                    "{}: unknown analyzer {name:?} stored",
                    self.address
                ))
            })?,
            None => Analyzer::default(),
        };
        // Everything the batch touches goes first (an upsert replaces the whole document).
        let removed = tx
            .query_one(
                &format!(
                    "WITH gone AS (DELETE FROM {s}.documents WHERE id = ANY($1) RETURNING key),
                     p AS (DELETE FROM {s}.passages WHERE doc IN (SELECT key FROM gone) RETURNING terms),
                     c AS (DELETE FROM {s}.chunks WHERE doc IN (SELECT key FROM gone) RETURNING 1),
                     t AS (DELETE FROM {s}.postings WHERE doc IN (SELECT key FROM gone) RETURNING term),
                     df AS (UPDATE {s}.terms SET df = terms.df - g.n
                            FROM (SELECT term, count(*) AS n FROM t GROUP BY term) g
                            WHERE terms.term = g.term RETURNING 1)
                     SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM p),
                            (SELECT coalesce(sum(terms), 0)::int8 FROM p),
                            (SELECT count(*) FROM c), (SELECT count(*) FROM df)"
                ),
                &[&ids],
            )
            .map_err(self.err())?;
        let (docs_removed, passages_removed, terms_removed): (i64, i64, i64) =
            (removed.get(0), removed.get(1), removed.get(2));
        let (mut passages_added, mut terms_added) = (0i64, 0i64);
        if !upserts.is_empty() {
            let keys: Vec<i64> = tx
                .query(
                    &format!(
                        "SELECT nextval('{s}.document_keys') FROM generate_series(1, $1::int8)"
                    ),
                    &[&(upserts.len() as i64)],
                )
                .map_err(self.err())?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let vector = self.vector_type(&mut tx)?;
            self.copy_in(
                &mut tx,
                "documents",
                "key, id, title, body, metadata, content_hash, seq",
                &[
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::JSON,
                    Type::INT8,
                    Type::INT8,
                ],
                upserts.iter().zip(&keys).map(|(d, &key)| {
                    let doc = &d.document;
                    let row: Vec<Box<dyn ToSql + Sync>> = vec![
                        Box::new(key),
                        Box::new(doc.id.clone()),
                        Box::new(doc.title.clone()),
                        Box::new(doc.text.clone()),
                        Box::new(doc.metadata.clone()),
                        Box::new(doc.content_hash() as i64),
                        Box::new(seq),
                    ];
                    row
                }),
            )?;
            self.copy_in(
                &mut tx,
                "chunks",
                "doc, chunk, body, embedding",
                &[Type::INT8, Type::INT4, Type::TEXT, vector],
                upserts.iter().zip(&keys).flat_map(|(d, &key)| {
                    d.chunks.iter().enumerate().map(move |(i, c)| {
                        let row: Vec<Box<dyn ToSql + Sync>> = vec![
                            Box::new(key),
                            Box::new(i as i32),
                            Box::new(c.text.clone()),
                            Box::new(pgvector::Vector::from(crate::local::normalized(&c.vector))),
                        ];
                        row
                    })
                }),
            )?;
            let units: Vec<(i64, &Document, Vec<&str>)> = upserts
                .iter()
                .zip(&keys)
                .map(|(d, &key)| {
                    (
                        key,
                        &d.document,
                        d.chunks.iter().map(|c| c.text.as_str()).collect(),
                    )
                })
                .collect();
            (passages_added, terms_added) = self.write_keyword_units(&mut tx, analyzer, &units)?;
        }
        tx.execute(
            &format!(
                "UPDATE {s}.state SET seq = $1, documents = documents + $2,
                     passages = passages + $3, passage_terms = passage_terms + $4"
            ),
            &[
                &seq,
                &(upserts.len() as i64 - docs_removed),
                &(passages_added - passages_removed),
                &(terms_added - terms_removed),
            ],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        drop(client);
        self.vector_index_deferred |= bulk_load;
        self.known_seq.fetch_max(seq as u64, Ordering::AcqRel);
        Ok(seq as u64)
    }

    fn begin_compaction(&self, only_if_due: bool) -> Result<Option<Box<dyn CompactionJob>>> {
        drop(self.writer()?);
        if only_if_due {
            let sql = format!(
                "SELECT coalesce(n_dead_tup, 0), coalesce(n_live_tup, 0)
                 FROM pg_stat_user_tables WHERE relid = '{}.chunks'::regclass",
                self.schema
            );
            // Vacuum statistics live on the primary (a standby keeps none of its own).
            let index_sql = format!(
                "SELECT to_regclass('{}.{}') IS NULL",
                self.schema,
                schema::VECTOR_INDEX
            );
            let due = self.read_retrying(
                self.primary_pool(),
                postgres::IsolationLevel::ReadCommitted,
                &|tx| {
                    // A missing index (a bulk load that never finished) is due at once; one
                    // this handle deferred waits for the compaction that ends its load.
                    let missing: bool = tx.query_one(&index_sql, &[]).map_err(self.err())?.get(0);
                    if missing && !self.vector_index_deferred {
                        return Ok(true);
                    }
                    let row = tx.query_opt(&sql, &[]).map_err(self.err())?;
                    Ok(row.is_some_and(|r| {
                        let (dead, live): (i64, i64) = (r.get(0), r.get(1));
                        dead >= MIN_DEAD_ROWS && dead as f64 >= DUE_DEAD_SHARE * live as f64
                    }))
                },
            )?;
            if !due {
                return Ok(None);
            }
        }
        if self.compaction_in_flight.swap(true, Ordering::AcqRel) {
            return Ok(None);
        }
        Ok(Some(Box::new(Vacuum {
            address: self.address.clone(),
            schema: self.schema.clone(),
            handle: self.handle,
            in_flight: Arc::clone(&self.compaction_in_flight),
        })))
    }

    fn finish_compaction(&mut self, job: Box<dyn CompactionJob>) -> Result<()> {
        let job = job.into_any().downcast::<Vacuum>().map_err(|_| {
            IndexError::InvalidInput("a compaction job of another kind of collection".into())
        })?;
        if job.handle != self.handle {
            return Err(IndexError::InvalidInput(
                "a compaction job of another handle".into(),
            ));
        }
        // The chunk table, with no insert of this collection running concurrently (see the
        // module notes on pgvector 0.8.0): an exclusive writer holds the lock already; a shared
        // one takes it exclusively for the vacuum, waiting for other servers' batches.
        // The HNSW index is built here too when it is missing (after a bulk load, or one that
        // never finished), under the same hold.
        let schema_name = self.schema.trim_matches('"').to_owned();
        let work = format!(
            "SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'; {}; RESET maintenance_work_mem",
            schema::create_vector_index(&schema_name)
        );
        let vacuum = format!("VACUUM (ANALYZE) {}.chunks", self.schema);
        let mut client = self.writer()?;
        let shared = self.access == Access::Shared;
        if shared {
            lock_waiting(
                &mut client,
                &self.address,
                "pg_advisory_lock",
                self.lock_key,
            )?;
        }
        let done = client
            .batch_execute(&work)
            .and_then(|()| client.batch_execute(&vacuum))
            .map_err(self.err());
        if shared {
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&self.lock_key])
                .map_err(self.err())?;
        }
        done?;
        drop(client);
        self.vector_index_deferred = false;
        Ok(())
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
            let (dense, dense_ms) = timed(|| self.dense_in(tx, &vector, k))?;
            let (keyword, keyword_ms) = timed(|| self.keyword_in(tx, query, k))?;
            Ok(HybridHits {
                dense,
                keyword,
                dense_ms,
                keyword_ms,
            })
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

    /// Pages of [`EXPORT_PAGE`] documents by key, all in one repeatable-read transaction on
    /// the primary (a replica could cancel a long transaction that conflicts with its replay).
    fn export(&self, each: &mut dyn FnMut(IndexedDocument) -> Result<()>) -> Result<()> {
        let mut conn = checkout(&self.address, self.primary_pool())?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(self.err())?;
        let sql = format!(
            "SELECT d.key, d.id, d.title, d.body, d.metadata::text,
                    array_agg(c.body ORDER BY c.chunk), array_agg(c.embedding ORDER BY c.chunk)
             FROM (SELECT * FROM {s}.documents WHERE key > $1 ORDER BY key LIMIT $2) d
             JOIN {s}.chunks c ON c.doc = d.key
             GROUP BY d.key, d.id, d.title, d.body, d.metadata::text
             ORDER BY d.key",
            s = self.schema
        );
        let mut after = i64::MIN;
        loop {
            let rows = tx
                .query(&sql, &[&after, &EXPORT_PAGE])
                .map_err(self.err())?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            let mut page = Vec::with_capacity(rows.len());
            for row in rows {
                let texts: Vec<String> = row.get(5);
                let vectors: Vec<pgvector::Vector> = row.get(6);
                page.push(IndexedDocument {
                    document: self.document_from(row.get(1), row.get(2), row.get(3), row.get(4))?,
                    chunks: texts
                        .into_iter()
                        .zip(vectors)
                        .map(|(text, v)| Chunk {
                            text,
                            vector: v.to_vec(),
                        })
                        .collect(),
                });
            }
            for d in page {
                each(d)?;
            }
        }
        tx.commit().map_err(self.err())
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
        let s = &self.schema;
        let checks = [
            (
                "the document count matches the documents",
                format!("SELECT (SELECT documents FROM {s}.state) = (SELECT count(*) FROM {s}.documents)"),
            ),
            (
                "the passage count and total length match the passages",
                format!(
                    "SELECT (SELECT passages FROM {s}.state) = (SELECT count(*) FROM {s}.passages)
                        AND (SELECT passage_terms FROM {s}.state) = (SELECT coalesce(sum(terms), 0) FROM {s}.passages)"
                ),
            ),
            (
                "every document has chunks numbered from 0 without gaps",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {s}.documents d LEFT JOIN {s}.chunks c ON c.doc = d.key
                        GROUP BY d.key HAVING count(c.chunk) = 0 OR max(c.chunk) + 1 <> count(c.chunk))"
                ),
            ),
            (
                "every chunk, passage and posting belongs to a document",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {s}.chunks c WHERE NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE d.key = c.doc))
                        AND NOT EXISTS (SELECT 1 FROM {s}.passages p WHERE NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE d.key = p.doc))
                        AND NOT EXISTS (SELECT 1 FROM {s}.postings t WHERE NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE d.key = t.doc))"
                ),
            ),
            (
                "the document frequencies match the postings",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM (SELECT term, count(*) AS n FROM {s}.postings GROUP BY term) p
                        FULL JOIN (SELECT term, df FROM {s}.terms WHERE df <> 0) t USING (term)
                        WHERE p.n IS DISTINCT FROM t.df)"
                ),
            ),
            (
                "every document has passages, and each passage's postings add up to its length",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE NOT EXISTS (SELECT 1 FROM {s}.passages p WHERE p.doc = d.key))
                        AND NOT EXISTS (SELECT 1 FROM {s}.passages p
                            LEFT JOIN (SELECT doc, passage, sum(tf) AS n, min(passage_terms) AS lo, max(passage_terms) AS hi
                                       FROM {s}.postings GROUP BY doc, passage) t
                            ON t.doc = p.doc AND t.passage = p.passage
                            WHERE coalesce(t.n, 0) <> p.terms OR t.lo <> p.terms OR t.hi <> p.terms)"
                ),
            ),
        ];
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            for (what, sql) in &checks {
                let ok: bool = tx.query_one(sql.as_str(), &[]).map_err(self.err())?.get(0);
                if !ok {
                    return Err(IndexError::Corrupt {
                        path: self.address.redacted().into(),
                        reason: format!("not true: {what}"),
                    });
                }
            }
            Ok(())
        })
    }
}

/// A compaction of a PostgreSQL collection: VACUUM and ANALYZE of every table but the chunks
/// (run on its own connection, concurrently with commits and searches), then of the chunks in
/// `finish_compaction`.
struct Vacuum {
    address: PgAddress,
    schema: String,
    handle: u64,
    in_flight: Arc<AtomicBool>,
}

impl CompactionJob for Vacuum {
    fn run(&mut self) -> Result<()> {
        let mut client = connect(&self.address)?;
        let s = &self.schema;
        client
            .batch_execute(&format!("DELETE FROM {s}.terms WHERE df = 0"))
            .map_err(|e| db_error(&self.address, e))?;
        // On its own: several statements in one call run as one transaction, which VACUUM
        // refuses.
        client
            .batch_execute(&format!(
                "VACUUM (ANALYZE) {s}.documents, {s}.passages, {s}.postings, {s}.terms, {s}.state"
            ))
            .map_err(|e| db_error(&self.address, e))
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

impl Drop for Vacuum {
    fn drop(&mut self) {
        self.in_flight.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::PgvectorVersion;

    #[test]
    fn pgvector_versions_say_what_they_can_do() {
        let v = |t: &str| PgvectorVersion::parse(t);
        assert!(!v("0.4.4").has_hnsw());
        assert!(v("0.5.0").has_hnsw() && !v("0.7.4").has_iterative_scan());
        assert!(v("0.8.0").has_iterative_scan() && v("0.10.0").has_iterative_scan());
        assert!(v("1.0.0-beta").has_hnsw());
    }
}
