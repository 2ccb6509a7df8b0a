//! Reads: read-only transactions on replicas or the primary (waiting for a replica to catch up
//! with the batches a handle must see), and the two recall legs' SQL.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::connection::{checkout, Pool};
use super::{keyword, PostgresCollection};
use crate::analysis::Analyzer;
use crate::batch::vector_problem;
use crate::document::{Chunk, ChunkHit, Document, IndexedDocument};
use crate::error::{IndexError, Result};

/// HNSW candidates pgvector keeps per search (`hnsw.ef_search`) before its iterative scan
/// (`hnsw.iterative_scan = relaxed_order`, pgvector 0.8) extends the search to `k` results;
/// the outer query orders them exactly. Why not ef_search = k: the pipeline fetches 300
/// chunks per search, and on SciFact (10k chunks × 384) ef_search 300 took 35 ms against
/// 7.7 ms for 40 + iterative scan and 3.7 ms for 100 results at ef_search 100.
pub(super) const EF_SEARCH: usize = 100;
/// pgvector's largest `hnsw.ef_search`.
pub(super) const MAX_EF_SEARCH: usize = 1000;

/// How long a read waits for a replica to replay a batch it must see before asking the
/// primary instead. Streaming replication on a LAN replays within milliseconds; a replica this
/// far behind is better skipped than waited for.
pub(super) const REPLICA_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Documents per page of an export.
pub(super) const EXPORT_PAGE: i64 = 500;

/// A row of (document id, chunk, score).
pub(super) fn chunk_hit(row: postgres::Row) -> ChunkHit {
    ChunkHit {
        doc_id: row.get(0),
        chunk: row.get::<_, i32>(1) as u32,
        score: row.get(2),
    }
}

impl PostgresCollection {
    /// Runs `f` in a read-only transaction (`isolation`) that sees at least batch
    /// `known_seq`: on a replica when there are replicas — waiting up to [`REPLICA_WAIT`] for
    /// one that has replayed that far — else, or then, on the primary. A read that fails
    /// because its pooled connection had died (the server restarted) is tried once more on a
    /// new one: reads change nothing, so repeating one is safe.
    pub(super) fn read<T>(
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
    pub(super) fn primary_pool(&self) -> &Pool {
        self.primary_reads.as_ref().unwrap_or(&self.reads)
    }

    pub(super) fn read_retrying<T>(
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
    pub(super) fn read_on<T>(
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

    /// `vector` checked and normalized for a dense search.
    pub(super) fn query_vector(&self, vector: &[f32]) -> Result<pgvector::Vector> {
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

    pub(super) fn dense_in(
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

    pub(super) fn keyword_in(
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

    pub(super) fn state_number(&self, column: &str) -> Result<i64> {
        let sql = format!("SELECT {column} FROM {}.state", self.schema);
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            Ok(tx.query_one(&sql, &[]).map_err(self.err())?.get(0))
        })
    }

    /// Documents by id in request order, read in `tx`.
    pub(super) fn documents_in(
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

    pub(super) fn document_from(
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

    /// Pages of [`EXPORT_PAGE`] documents by key, all in one repeatable-read transaction on
    /// the primary (a replica could cancel a long transaction that conflicts with its replay).
    pub(super) fn export_all(
        &self,
        each: &mut dyn FnMut(IndexedDocument) -> Result<()>,
    ) -> Result<()> {
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
}
