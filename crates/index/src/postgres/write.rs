//! Writes: the writer's session and lock, batches as one transaction by binary COPY, keyword
//! postings, and re-cutting them when the analyzer changes.

use std::sync::atomic::Ordering;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::Client;

use super::connection::{connect, db_error};
use super::{keyword, schema, PgAddress, PostgresCollection};
use crate::analysis::Analyzer;
use crate::backend::CollectionBackend;
use crate::batch::validate_batch;
use crate::document::{Document, Operation};
use crate::error::{IndexError, Result};
use crate::manifest::{Bm25Params, Manifest};
use crate::store::Access;

/// How long a writer waits for the collection's lock before reporting it
/// [`IndexError::Locked`]: long enough for other servers' batches in flight to commit, short
/// enough that a request does not hang behind a `sift index` run.
pub(super) const LOCK_WAIT: &str = "10s";

/// Documents re-analysed per round when the analyzer changes (bounds memory, not correctness:
/// it all happens in one transaction).
pub(super) const REANALYZE_BATCH: i64 = 500;

/// Takes advisory lock `key` with `function` on the session, waiting at most [`LOCK_WAIT`].
pub(super) fn lock_waiting(
    client: &mut Client,
    address: &PgAddress,
    function: &str,
    key: i64,
) -> Result<()> {
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
pub(super) fn locked_or(address: &PgAddress, e: postgres::Error) -> IndexError {
    if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
        IndexError::Locked {
            path: address.redacted().into(),
        }
    } else {
        db_error(address, e)
    }
}

impl PostgresCollection {
    /// Postings cut by another version of the analyzer (a sift whose analyzer changed since
    /// they were written) are re-cut by the first writer that opens the collection, so
    /// queries are never analysed differently from the documents they search.
    pub(super) fn check_keyword_version(&mut self) -> Result<()> {
        if self.writer.is_none() {
            return Ok(());
        }
        let sql = format!("SELECT keyword_terms FROM {}.state", self.schema);
        let stored: String = self
            .writer()?
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

    /// The writer's session. One that the server closed (a restart, a failover) is replaced
    /// by a new one first — an exclusive writer takes its lock again, which PostgreSQL released
    /// with the old session — so a long-lived server writes again once the database is back.
    pub(super) fn writer(&self) -> Result<std::sync::MutexGuard<'_, Client>> {
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

    /// This handle's manifest with `change` applied, and its JSON for the state row.
    fn changed_manifest(&self, change: impl FnOnce(&mut Manifest)) -> Result<(Manifest, String)> {
        let mut manifest = self.manifest.clone();
        change(&mut manifest);
        let json = serde_json::to_string(&manifest)
            .map_err(|e| IndexError::Internal(format!("serializing the manifest: {e}")))?;
        Ok((manifest, json))
    }

    /// Records `params` in the stored manifest (queries read them from there).
    pub(super) fn record_bm25(&mut self, params: Bm25Params) -> Result<()> {
        let (manifest, manifest_json) = self.changed_manifest(|m| m.bm25 = params)?;
        let s = self.schema.clone();
        let mut client = self.writer()?;
        let mut tx = client.transaction().map_err(self.err())?;
        self.lock_for_batch(&mut tx)?;
        tx.execute(
            &format!("UPDATE {s}.state SET manifest = $1::text::json"),
            &[&manifest_json],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        drop(client);
        self.manifest = manifest;
        Ok(())
    }

    /// Re-cuts every document's keyword postings with `analyzer` and records it (and its
    /// version, the analyzer's tokenizer name) in the state row, in one transaction.
    pub(super) fn rebuild_keywords(&mut self, analyzer: Analyzer) -> Result<()> {
        let (manifest, manifest_json) = self.changed_manifest(|m| m.analyzer = analyzer)?;
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

    /// A shared writer's hold on the collection for one transaction (an exclusive writer holds
    /// it already, for the session).
    pub(super) fn lock_for_batch(&self, tx: &mut postgres::Transaction<'_>) -> Result<()> {
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

    /// The `vector` type of this database (its OID is assigned when pgvector is installed),
    /// for binary COPY.
    pub(super) fn vector_type(&self, tx: &mut postgres::Transaction<'_>) -> Result<Type> {
        let statement = tx.prepare("SELECT $1::vector").map_err(self.err())?;
        Ok(statement.params()[0].clone())
    }

    /// Writes `rows` into `table (columns)` by binary COPY.
    pub(super) fn copy_in(
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
    pub(super) fn write_keyword_units(
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

    pub(super) fn commit_batch(&mut self, operations: Vec<Operation>) -> Result<u64> {
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
        // A bulk load: the first batch into an empty collection, by an exclusive writer
        // (`sift index`, `sift copy`, the benchmark — each ends with a compaction). The HNSW
        // index is dropped in this transaction and built once by the compaction that ends
        // the load: pgvector inserts into its graph row by row, and one `CREATE INDEX` was
        // 4.3× faster (SciFact's 10,295 chunks: 15.6 s of inserts against 0.16 s to copy the
        // rows plus 3.6 s to build). Searches meanwhile scan the table: exact, slower. No size
        // threshold: building a small collection's index at its first compaction costs what
        // inserting into it would have.
        let bulk_load = self.access == Access::Write
            && !self.vector_index_deferred
            && state.get::<_, i64>(2) == 0
            && !upserts.is_empty();
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
}
