//! Connections: the writer's own session, a pool for reads, the settings every sift session
//! runs with, and how PostgreSQL's errors become [`IndexError`]s.

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use super::address::PgAddress;
use crate::error::{IndexError, Result};

/// Settings of every session sift opens.
///
/// - `jit = off`: PostgreSQL JIT-compiles a query whose estimated cost passes a threshold; an
///   un-ANALYZEd one-row statistics table made the planner misestimate and JIT-compile every
///   BM25 query (+117 ms each, measured on SciFact). sift's queries are short; JIT never pays.
/// - `max_parallel_maintenance_workers = 0`: pgvector 0.8.0–0.8.1 can build a damaged HNSW
///   index with parallel workers (fixed in 0.8.2); sift's index builds run single-process.
/// - `synchronous_commit = on`: a batch is acknowledged only once its commit is durable, even
///   where a server's default trades that away.
const SESSION_SETTINGS: &str =
    "SET jit = off; SET max_parallel_maintenance_workers = 0; SET synchronous_commit = on";

/// How long a connection attempt may take before the address is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a handle's read pool keeps at most (one per concurrent search).
const POOL_SIZE: u32 = 16;

/// TCP keepalive idle time: a server that vanished without closing the connection (a failed
/// machine, a network partition) is noticed in about this long plus a few probes, not after
/// the operating system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);

/// Which server of a replicated database a connection needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The one that accepts writes (`target_session_attrs=read-write`).
    Primary,
    /// Any standby (`target_session_attrs=read-only`), hosts tried in random order to spread
    /// the load (`load_balance_hosts=random`).
    Replica,
}

/// The connection settings for `role`. An address with one host is used as given for both
/// roles; with several (`postgres://u@primary,replica1,replica2/db`) the role picks the
/// server, overriding the URL's own `target_session_attrs`.
pub(crate) fn config(address: &PgAddress, role: Role) -> Result<postgres::Config> {
    use postgres::config::{LoadBalanceHosts, TargetSessionAttrs};
    let mut config = address.config()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives_idle(KEEPALIVE_IDLE);
    if has_replicas(&config) {
        match role {
            Role::Primary => {
                config.target_session_attrs(TargetSessionAttrs::ReadWrite);
            }
            Role::Replica => {
                config.target_session_attrs(TargetSessionAttrs::ReadOnly);
                config.load_balance_hosts(LoadBalanceHosts::Random);
            }
        }
    }
    Ok(config)
}

/// Whether the address names several servers (a primary and replicas).
pub(crate) fn has_replicas(config: &postgres::Config) -> bool {
    config.get_hosts().len() > 1
}

/// A session on the primary.
pub(crate) fn connect(address: &PgAddress) -> Result<Client> {
    let config = config(address, Role::Primary)?;
    let mut client = config
        .connect(NoTls)
        .map_err(|e| connect_error(address, e))?;
    client
        .batch_execute(SESSION_SETTINGS)
        .map_err(|e| db_error(address, e))?;
    Ok(client)
}

pub(crate) type Pool = r2d2::Pool<r2d2_postgres::PostgresConnectionManager<NoTls>>;

#[derive(Debug)]
struct SessionSettings;

impl r2d2::CustomizeConnection<Client, postgres::Error> for SessionSettings {
    fn on_acquire(&self, client: &mut Client) -> std::result::Result<(), postgres::Error> {
        client.batch_execute(SESSION_SETTINGS)
    }
}

/// A pool of read sessions on servers of `role`. Connections open on demand (none is opened
/// here), and one found broken is dropped when returned.
pub(crate) fn pool(address: &PgAddress, role: Role) -> Result<Pool> {
    let config = config(address, role)?;
    let manager = r2d2_postgres::PostgresConnectionManager::new(config, NoTls);
    Ok(r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(0))
        .connection_timeout(CONNECT_TIMEOUT)
        .test_on_check_out(false)
        .connection_customizer(Box::new(SessionSettings))
        .build_unchecked(manager))
}

/// A connection from `pool`, or the error of an unreachable server.
pub(crate) fn checkout(
    address: &PgAddress,
    pool: &Pool,
) -> Result<r2d2::PooledConnection<r2d2_postgres::PostgresConnectionManager<NoTls>>> {
    pool.get().map_err(|e| {
        IndexError::Unavailable(format!(
            "{}: cannot connect to PostgreSQL: {e}",
            address.redacted()
        ))
    })
}

fn connect_error(address: &PgAddress, e: postgres::Error) -> IndexError {
    match e.code() {
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
            IndexError::InvalidInput(format!("{}: {}", address.redacted(), message(&e)))
        }
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            IndexError::InvalidInput(format!(
                "{}: PostgreSQL refused the login: {}",
                address.redacted(),
                message(&e)
            ))
        }
        _ => IndexError::Unavailable(format!(
            "{}: cannot connect to PostgreSQL: {}",
            address.redacted(),
            message(&e)
        )),
    }
}

/// Maps an error of a statement. A lost connection (the server restarted, failed over, or the
/// network dropped) is [`IndexError::Unavailable`]: the request may be retried once the server
/// is back, and a write that got this error is either committed whole or not at all.
pub(crate) fn db_error(address: &PgAddress, e: postgres::Error) -> IndexError {
    let text = format!("{}: {}", address.redacted(), message(&e));
    if e.is_closed() {
        return IndexError::Unavailable(text);
    }
    match e.code() {
        // Another process dropped the collection under this handle.
        Some(code)
            if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME =>
        {
            IndexError::NotACollection(address.redacted().into())
        }
        Some(code)
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
                || code.code().starts_with("08") =>
        {
            IndexError::Unavailable(text)
        }
        Some(_) => IndexError::Database(text),
        // No SQL state: the socket failed, or sift sent what the client could not encode.
        None if is_io(&e) => IndexError::Unavailable(text),
        None => IndexError::Internal(text),
    }
}

fn is_io(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The server's message (with its detail and hint) rather than tokio-postgres's generic
/// "db error".
pub(crate) fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_owned();
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; {h}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                m.push_str(&format!(": {s}"));
                source = s.source();
            }
            m
        }
    }
}
