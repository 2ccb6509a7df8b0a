//! The tables: a registry of collections (`sift.collections`) and one PostgreSQL schema per
//! collection.
//!
//! Per collection (all in its own schema, so dropping one is `DROP SCHEMA … CASCADE`):
//!
//! | table | rows | why |
//! |---|---|---|
//! | `state` | one | the manifest, the last batch's number, BM25's corpus statistics (passages, their total length in terms), and the version of the analyzer that cut the postings |
//! | `documents` | one per document | id, title, text, metadata, content hash, the batch that wrote it; `key` is what the other tables refer to (8 bytes instead of an id of up to 1 KiB) |
//! | `chunks` | one per embedded window | text and `vector(d)`, HNSW index on inner product (vectors are stored normalized, so it is the cosine) |
//! | `passages` | one per keyword unit | the chunk a keyword hit points at, the length in terms |
//! | `postings` | one per (term, passage) | term frequency, with the passage's length beside it so scoring reads one index and joins nothing |
//! | `terms` | one per term | document frequency (passages holding the term), kept by every batch in its transaction |
//!
//! Metadata is stored as `json`, not `jsonb`: `json` keeps the text as given (key order,
//! number spelling), so a document reads back exactly as it was written — what the local
//! backend returns — while `metadata::jsonb` still serves queries and expression indexes.

use postgres::GenericClient;

use super::address::PgAddress;
use super::connection::{db_error, message};
use crate::error::{IndexError, Result};
use crate::manifest::Manifest;

/// Lock key (`pg_advisory_xact_lock`) serializing sift's DDL in a database: creating the
/// registry and collections, dropping them. ASCII "siftddl1".
const DDL_LOCK: i64 = 0x7369_6674_6464_6c31;

/// HNSW graph degree and build beam, pgvector's names; the local backend's values, so both
/// backends trade recall for build time alike.
const HNSW_M: u32 = 16;
const HNSW_EF_CONSTRUCTION: u32 = 128;

/// The PostgreSQL schema of collection `name`: `sift_` and the name with characters outside
/// `[a-z0-9_]` replaced, cut to stay under PostgreSQL's 63-byte identifiers, then a hash of the
/// exact name (names differing only in case or punctuation get different schemas).
pub(crate) fn schema_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("sift_{clean}_{:08x}", crc32fast::hash(name.as_bytes()))
}

/// Quotes an identifier sift made ([`schema_name`]: already safe; quoted anyway).
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Creates the registry if this database has none. Under the DDL lock: two processes creating
/// it at once would otherwise collide in the catalog.
fn ensure_registry(tx: &mut postgres::Transaction<'_>, address: &PgAddress) -> Result<()> {
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({DDL_LOCK});
         CREATE SCHEMA IF NOT EXISTS sift;
         CREATE TABLE IF NOT EXISTS sift.collections (
             name text PRIMARY KEY,
             schema_name text NOT NULL UNIQUE,
             created_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .map_err(|e| db_error(address, e))
}

/// Whether this database has the registry table (a database sift never wrote has none).
fn has_registry(client: &mut impl GenericClient, address: &PgAddress) -> Result<bool> {
    let row = client
        .query_one("SELECT to_regclass('sift.collections') IS NOT NULL", &[])
        .map_err(|e| db_error(address, e))?;
    Ok(row.get(0))
}

/// The schema of collection `name`, if it exists.
pub(crate) fn lookup(
    client: &mut impl GenericClient,
    address: &PgAddress,
    name: &str,
) -> Result<Option<String>> {
    if !has_registry(client, address)? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT schema_name FROM sift.collections WHERE name = $1",
            &[&name],
        )
        .map_err(|e| db_error(address, e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Names of every collection in the database, sorted.
pub(crate) fn list(client: &mut impl GenericClient, address: &PgAddress) -> Result<Vec<String>> {
    if !has_registry(client, address)? {
        return Ok(Vec::new());
    }
    let rows = client
        .query("SELECT name FROM sift.collections ORDER BY name", &[])
        .map_err(|e| db_error(address, e))?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// The manifest stored in `schema`.
pub(crate) fn read_manifest(
    client: &mut impl GenericClient,
    address: &PgAddress,
    schema: &str,
) -> Result<Manifest> {
    let row = client
        .query_one(
            &format!("SELECT manifest::text FROM {}.state", ident(schema)),
            &[],
        )
        .map_err(|e| db_error(address, e))?;
    let text: String = row.get(0);
    serde_json::from_str(&text).map_err(|e| {
        IndexError::Database(format!(
            "{address}: the stored manifest is not readable by this sift: {e}"
        ))
    })
}

/// Makes sure pgvector is installed in the database, with an error that says what to do when
/// it is not.
pub(crate) fn ensure_pgvector(client: &mut postgres::Client, address: &PgAddress) -> Result<()> {
    let installed = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .map_err(|e| db_error(address, e))?;
    if installed.is_some() {
        return Ok(());
    }
    match client.batch_execute("CREATE EXTENSION IF NOT EXISTS vector") {
        Ok(()) => Ok(()),
        Err(e) => {
            let why = message(&e);
            let advice = if why.contains("control file") || why.contains("not available") {
                "pgvector is not installed on this PostgreSQL server: install it (Debian: scripts/postgres.sh install; managed services: enable the `vector` extension)"
            } else {
                "this role may not create the `vector` extension: ask an administrator to run `CREATE EXTENSION vector` in this database"
            };
            Err(IndexError::Database(format!(
                "{}: {advice} ({why})",
                address.redacted()
            )))
        }
    }
}

/// The pgvector version installed in the database.
pub(crate) fn pgvector_version(
    client: &mut impl GenericClient,
    address: &PgAddress,
) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .map_err(|e| db_error(address, e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Creates collection `name` with `manifest` in one transaction (registry row, schema, tables,
/// indexes, the state row), or returns the schema of the one that exists. The caller checks an
/// existing collection's manifest.
pub(crate) fn create(
    client: &mut postgres::Client,
    address: &PgAddress,
    name: &str,
    manifest: &Manifest,
) -> Result<String> {
    ensure_pgvector(client, address)?;
    let mut tx = client.transaction().map_err(|e| db_error(address, e))?;
    ensure_registry(&mut tx, address)?;
    if let Some(schema) = lookup(&mut tx, address, name)? {
        return Ok(schema);
    }
    let schema = schema_name(name);
    let s = ident(&schema);
    let dim = manifest.embedding.dim;
    if dim == 0 || dim > 16_000 {
        return Err(IndexError::InvalidInput(format!(
            "pgvector stores vectors of 1 to 16,000 dimensions, not {dim}"
        )));
    }
    let manifest_json = serde_json::to_string(manifest)
        .map_err(|e| IndexError::Internal(format!("serializing the manifest: {e}")))?;
    let vector_index = create_vector_index(&schema);
    tx.batch_execute(&format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.state (
             only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
             manifest json NOT NULL,
             seq bigint NOT NULL,
             documents bigint NOT NULL,
             passages bigint NOT NULL,
             passage_terms bigint NOT NULL,
             keyword_terms text NOT NULL
         );
         CREATE SEQUENCE {s}.document_keys;
         CREATE TABLE {s}.documents (
             key bigint PRIMARY KEY,
             id text NOT NULL UNIQUE,
             title text,
             body text NOT NULL,
             metadata json,
             content_hash bigint NOT NULL,
             seq bigint NOT NULL
         );
         CREATE TABLE {s}.chunks (
             doc bigint NOT NULL,
             chunk integer NOT NULL,
             body text NOT NULL,
             embedding vector({dim}) NOT NULL,
             PRIMARY KEY (doc, chunk)
         ) WITH (autovacuum_enabled = false);
         {vector_index};
         CREATE TABLE {s}.passages (
             doc bigint NOT NULL,
             passage integer NOT NULL,
             chunk integer NOT NULL,
             terms integer NOT NULL,
             PRIMARY KEY (doc, passage)
         );
         CREATE TABLE {s}.postings (
             term text NOT NULL,
             doc bigint NOT NULL,
             passage integer NOT NULL,
             tf integer NOT NULL,
             passage_terms integer NOT NULL
         );
         CREATE INDEX postings_term ON {s}.postings (term) INCLUDE (doc, passage, tf, passage_terms);
         CREATE TABLE {s}.terms (
             term text PRIMARY KEY,
             df bigint NOT NULL
         );
         CREATE INDEX postings_doc ON {s}.postings (doc);"
    ))
    .map_err(|e| db_error(address, e))?;
    tx.execute(
        &format!(
            "INSERT INTO {s}.state (manifest, seq, documents, passages, passage_terms, keyword_terms)
             VALUES ($1::text::json, 0, 0, 0, 0, $2)"
        ),
        &[&manifest_json, &manifest.analyzer.tokenizer_name()],
    )
    .map_err(|e| db_error(address, e))?;
    tx.execute(
        "INSERT INTO sift.collections (name, schema_name) VALUES ($1, $2)",
        &[&name, &schema],
    )
    .map_err(|e| db_error(address, e))?;
    tx.commit().map_err(|e| db_error(address, e))?;
    // Planner statistics for the one-row table from the start (see connection.rs on JIT).
    client
        .batch_execute(&format!("ANALYZE {s}.state"))
        .map_err(|e| db_error(address, e))?;
    Ok(schema)
}

/// The name of the chunk table's HNSW index.
pub(crate) const VECTOR_INDEX: &str = "chunks_embedding";

/// The statement that builds the chunk table's HNSW index of the collection in `schema`
/// (unquoted). Built single-process: sessions set `max_parallel_maintenance_workers = 0`
/// (see connection.rs on pgvector 0.8.0–0.8.1).
pub(crate) fn create_vector_index(schema: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {VECTOR_INDEX} ON {s}.chunks
             USING hnsw (embedding vector_ip_ops) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})",
        s = ident(schema)
    )
}

/// Drops collection `name`: its schema and registry row, in one transaction. Refused while a
/// writer holds it (`lock_key`).
pub(crate) fn drop(
    client: &mut postgres::Client,
    address: &PgAddress,
    name: &str,
    lock_key: impl Fn(&str) -> i64,
) -> Result<bool> {
    let mut tx = client.transaction().map_err(|e| db_error(address, e))?;
    if !has_registry(&mut tx, address)? {
        return Ok(false);
    }
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({DDL_LOCK})"))
        .map_err(|e| db_error(address, e))?;
    let Some(schema) = lookup(&mut tx, address, name)? else {
        return Ok(false);
    };
    let free: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1)",
            &[&lock_key(&schema)],
        )
        .map_err(|e| db_error(address, e))?
        .get(0);
    if !free {
        return Err(IndexError::Locked {
            path: address.redacted().into(),
        });
    }
    tx.batch_execute(&format!("DROP SCHEMA {} CASCADE", ident(&schema)))
        .map_err(|e| db_error(address, e))?;
    tx.execute("DELETE FROM sift.collections WHERE name = $1", &[&name])
        .map_err(|e| db_error(address, e))?;
    tx.commit().map_err(|e| db_error(address, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_short_safe_and_distinct() {
        let a = schema_name("SciFact.v2");
        let b = schema_name("scifact-v2");
        assert_ne!(a, b);
        assert!(a.starts_with("sift_scifact_v2_"), "{a}");
        let long = schema_name(&"x".repeat(64));
        assert!(long.len() <= 63, "{}", long.len());
        assert!(long
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
