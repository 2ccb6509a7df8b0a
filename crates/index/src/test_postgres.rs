//! Throwaway PostgreSQL servers for tests (feature `failpoints`), started and stopped through
//! `scripts/postgres.sh` — the one script that installs and runs them, in CI as by hand. A
//! server is a primary (and optionally a streaming replica) in a temporary directory, on
//! loopback ports of its own, stopped and removed when dropped. Shared by the test suites of
//! every crate that talks to PostgreSQL.

use std::process::Command;

use crate::postgres::PgAddress;
use crate::store::Location;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");

/// A running test server; stopped when dropped.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    /// `postgres://postgres@127.0.0.1:PORT/sift`
    pub primary: String,
    pub replica: Option<String>,
}

/// Which server of a [`TestPostgres`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Primary,
    Replica,
}

impl Node {
    fn name(self) -> &'static str {
        match self {
            Node::Primary => "primary",
            Node::Replica => "replica",
        }
    }
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("running scripts/postgres.sh");
    assert!(
        out.status.success(),
        "scripts/postgres.sh {} failed (PostgreSQL 15 + pgvector: `scripts/postgres.sh install`, \
         which scripts/test.sh runs):\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TestPostgres {
    /// A primary alone. Panics when it cannot start: a test that needs PostgreSQL must not
    /// pass without it.
    pub fn start() -> TestPostgres {
        Self::start_with(false)
    }

    /// A primary and a streaming replica of it.
    pub fn start_with_replica() -> TestPostgres {
        Self::start_with(true)
    }

    fn start_with(replica: bool) -> TestPostgres {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir
            .path()
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_owned();
        let mut args = vec!["start", path.as_str()];
        if replica {
            args.push("--replica");
        }
        let out = script(&args);
        let value = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key).map(str::to_owned))
        };
        TestPostgres {
            primary: value("SIFT_PG_PRIMARY=").expect("the primary's URL"),
            replica: value("SIFT_PG_REPLICA="),
            dir,
        }
    }

    /// The address of collection `name` on the primary.
    pub fn collection(&self, name: &str) -> Location {
        Location::Postgres(self.address().with_collection(name))
    }

    /// The primary's database, no collection named.
    pub fn address(&self) -> PgAddress {
        PgAddress::parse(&self.primary).expect("the script's URL parses")
    }

    /// `kill -9` of a server (its data stays; [`TestPostgres::restart`] recovers it).
    pub fn kill(&self, node: Node) {
        script(&["kill", self.path(), node.name()]);
    }

    pub fn restart(&self, node: Node) {
        script(&["restart", self.path(), node.name()]);
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .args(["stop", self.path()])
            .output();
    }
}
