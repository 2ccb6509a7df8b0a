//! Compaction: VACUUM (ANALYZE) of the tables, the chunk table's under the collection's lock,
//! and the HNSW index built when a bulk load deferred it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::connection::{connect, db_error};
use super::write::lock_waiting;
use super::{schema, PgAddress, PostgresCollection};
use crate::backend::CompactionJob;
use crate::error::{IndexError, Result};
use crate::store::Access;

/// Memory for one HNSW build (`maintenance_work_mem`): a graph that fits builds in memory
/// (pgvector notices when it does not and goes on, slower, on disk).
pub(super) const INDEX_BUILD_MEMORY: &str = "1GB";

/// A compaction is due once the chunk table's dead rows reach this share of its live ones
/// (and at least [`MIN_DEAD_ROWS`]): autovacuum's own default scale factor.
pub(super) const DUE_DEAD_SHARE: f64 = 0.2;
pub(super) const MIN_DEAD_ROWS: i64 = 1000;

/// A compaction of a PostgreSQL collection: VACUUM and ANALYZE of every table but the chunks
/// (run on its own connection, concurrently with commits and searches), then of the chunks in
/// `finish_compaction`.
pub(super) struct Vacuum {
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

impl PostgresCollection {
    pub(super) fn begin_vacuum(&self, only_if_due: bool) -> Result<Option<Box<dyn CompactionJob>>> {
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

    pub(super) fn finish_vacuum(&mut self, job: Box<dyn CompactionJob>) -> Result<()> {
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
}
