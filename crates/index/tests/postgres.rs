//! The PostgreSQL backend against a real PostgreSQL 15 + pgvector 0.8.0, started by
//! `scripts/postgres.sh` for this test binary.

use sift_index::conformance;
use sift_index::store::{self, Access};
use sift_index::test_postgres::TestPostgres;
use sift_index::{IndexError, Location};

#[test]
fn the_postgres_backend_conforms() {
    let pg = TestPostgres::start();
    let mut n = 0;
    conformance::run_all(&mut || {
        n += 1;
        pg.collection(&format!("c{n}"))
    });
}

fn manifest_of_dim(fingerprint: &str, dim: usize) -> sift_index::Manifest {
    let mut m = conformance::manifest(fingerprint);
    m.embedding.dim = dim;
    m
}

/// Runs `sql` with psql; its output is what [`psql_value`] returns.
fn psql(url: &str, sql: &str) {
    psql_value(url, sql);
}

/// Every way an address can be wrong is a typed error with a message naming the problem,
/// and nothing is created by a refused open.
#[test]
fn bad_addresses_servers_and_models_are_clear_errors() {
    let pg = TestPostgres::start();
    // Nothing listens on port 1.
    let nowhere =
        Location::parse("postgres://postgres@127.0.0.1:1/sift?collection=c&connect_timeout=3")
            .unwrap();
    match store::open(&nowhere, Access::Search) {
        Err(IndexError::Unavailable(m)) => assert!(m.contains("cannot connect"), "{m}"),
        other => panic!("unreachable server: {:?}", other.err()),
    }
    let no_db = Location::parse(&pg.primary.replace("/sift", "/nosuchdb?collection=c")).unwrap();
    match store::open_or_create(&no_db, conformance::manifest("m")) {
        Err(IndexError::InvalidInput(m)) => assert!(m.contains("nosuchdb"), "{m}"),
        other => panic!("missing database: {:?}", other.err()),
    }
    match store::open(&pg.collection("absent"), Access::Search) {
        Err(IndexError::NotACollection(p)) => assert!(p.to_string_lossy().contains("absent")),
        other => panic!("missing collection: {:?}", other.err()),
    }
    // A database address without a collection is for stores, not for one collection.
    let bare = Location::Postgres(pg.address());
    assert!(matches!(
        store::open(&bare, Access::Search),
        Err(IndexError::InvalidInput(_))
    ));
    // Another model, and the same model name at another dimension.
    drop(store::open_or_create(&pg.collection("m"), conformance::manifest("m1")).unwrap());
    for other in [conformance::manifest("m2"), manifest_of_dim("m1", 8)] {
        assert!(matches!(
            store::open_or_create(&pg.collection("m"), other),
            Err(IndexError::ModelMismatch { .. })
        ));
    }
    // A role that may not install pgvector in a database that lacks it.
    psql(&pg.primary, "CREATE ROLE plain LOGIN");
    psql(&pg.primary, "CREATE DATABASE bare OWNER plain");
    let plain = Location::parse(
        &pg.primary
            .replace("postgres@", "plain@")
            .replace("/sift", "/bare?collection=c"),
    )
    .unwrap();
    match store::open_or_create(&plain, conformance::manifest("m")) {
        Err(IndexError::Database(m)) => assert!(m.contains("CREATE EXTENSION vector"), "{m}"),
        other => panic!("no pgvector: {:?}", other.err()),
    }
    assert!(
        !store::exists(&plain).unwrap(),
        "a refused create leaves nothing"
    );
    assert_eq!(
        sift_index::CollectionStore::open(Location::Postgres(pg.address()))
            .unwrap()
            .list()
            .unwrap(),
        ["m"]
    );
}

/// One writer per collection, any number of searchers, each seeing every commit at once; a
/// collection with a writer cannot be dropped.
#[test]
fn one_writer_many_readers_and_drops() {
    let pg = TestPostgres::start();
    let at = pg.collection("shared");
    let mut writer = store::open_or_create(&at, conformance::manifest("m")).unwrap();
    let reader = store::open(&at, Access::Search).unwrap();
    match store::open(&at, Access::Write) {
        Err(IndexError::Locked { .. }) => {}
        other => panic!("a second writer: {:?}", other.err()),
    }
    assert!(matches!(
        store::drop_collection(&at),
        Err(IndexError::Locked { .. })
    ));
    writer
        .commit(vec![conformance::upsert(
            "a",
            None,
            &[("narwhal tusks", 0)],
        )])
        .unwrap();
    assert_eq!(
        reader.seq().unwrap(),
        1,
        "another handle sees the commit at once"
    );
    assert_eq!(reader.keyword_search("narwhal", 5).unwrap().len(), 1);
    drop(writer);
    // The lock goes with the writer's session.
    drop(store::open(&at, Access::Write).unwrap());
    drop(reader);
    store::drop_collection(&at).unwrap();
    assert!(!store::exists(&at).unwrap());
    assert!(matches!(
        store::drop_collection(&at),
        Err(IndexError::NotACollection(_))
    ));
}

/// `kill -9` of PostgreSQL in the middle of an ingest: every acknowledged batch is there after
/// the restart, the collection verifies, and the writer goes on after reopening.
#[test]
fn a_killed_server_keeps_every_acknowledged_batch() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let pg = TestPostgres::start();
    let at = pg.collection("crash");
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let at = at.clone();
        let acknowledged = Arc::clone(&acknowledged);
        std::thread::spawn(move || {
            let mut c = store::open_or_create(&at, conformance::manifest("m")).unwrap();
            for i in 0.. {
                let batch: Vec<_> = (0..50)
                    .map(|j| {
                        conformance::upsert(
                            &format!("d{i}-{j}"),
                            Some("ice"),
                            &[(&format!("floe{i} drift{j} pack ice"), j)],
                        )
                    })
                    .collect();
                match c.commit(batch) {
                    Ok(seq) => acknowledged.store(seq, Ordering::SeqCst),
                    Err(e) => return e,
                }
            }
            unreachable!()
        })
    };
    while acknowledged.load(Ordering::SeqCst) < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    pg.kill(sift_index::test_postgres::Node::Primary);
    let error = writer.join().unwrap();
    assert!(
        matches!(error, IndexError::Unavailable(_)),
        "a lost server is Unavailable: {error:?}"
    );
    let acked = acknowledged.load(Ordering::SeqCst);
    pg.restart(sift_index::test_postgres::Node::Primary);
    let mut c = store::open(&at, Access::Write).unwrap();
    let seq = c.seq().unwrap();
    // The batch in flight at the kill may have committed (its acknowledgement was lost).
    assert!(
        seq == acked || seq == acked + 1,
        "seq {seq}, acknowledged {acked}"
    );
    assert_eq!(c.len().unwrap() as u64, seq * 50);
    c.verify().unwrap();
    for i in 0..acked {
        assert_eq!(
            c.keyword_search(&format!("floe{i}"), 100).unwrap().len(),
            50,
            "batch {i}"
        );
    }
    c.commit(vec![conformance::upsert("after", None, &[("thaw", 1)])])
        .unwrap();
    assert_eq!(c.seq().unwrap(), seq + 1);
    c.verify().unwrap();
}

/// `host:port` of a test server's URL.
fn host_port(url: &str) -> &str {
    let rest = &url[url.find('@').unwrap() + 1..];
    &rest[..rest.find('/').unwrap()]
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A primary and a streaming replica behind one address (`postgres://u@primary,replica/db`):
/// writes go to the primary; reads to the replica, which serves them alone while the primary
/// is down; a read that must see a batch the replica has not replayed (`require_seq`) is
/// answered by the primary; the writer writes again once the primary is back.
#[test]
fn replicas_serve_reads_and_a_lagging_one_defers_to_the_primary() {
    let pg = TestPostgres::start_with_replica();
    let replica = pg.replica.clone().unwrap();
    let both = Location::parse(&format!(
        "postgres://postgres@{},{}/sift?collection=r&connect_timeout=3",
        host_port(&pg.primary),
        host_port(&replica)
    ))
    .unwrap();
    let mut writer = store::open_or_create(&both, conformance::manifest("m")).unwrap();
    writer
        .commit(vec![conformance::upsert("a", None, &[("auroras glow", 0)])])
        .unwrap();
    let reader = store::open(&both, Access::Search).unwrap();
    eventually("the replica has batch 1", || {
        reader.keyword_search("auroras", 5).unwrap().len() == 1
    });

    psql(&replica, "SELECT pg_wal_replay_pause()");
    let seq = writer
        .commit(vec![conformance::upsert(
            "b",
            None,
            &[("blizzards howl", 1)],
        )])
        .unwrap();
    assert_eq!(seq, 2);
    assert!(
        reader.keyword_search("blizzards", 5).unwrap().is_empty(),
        "reads come from the paused replica"
    );
    reader.require_seq(seq).unwrap();
    assert_eq!(
        reader.keyword_search("blizzards", 5).unwrap().len(),
        1,
        "a read that must see batch 2 goes to the primary"
    );
    assert!(matches!(
        reader.require_seq(99),
        Err(IndexError::InvalidInput(_))
    ));
    psql(&replica, "SELECT pg_wal_replay_resume()");
    let replica_only = Location::parse(&format!("{replica}?collection=r")).unwrap();
    let on_replica = store::open(&replica_only, Access::Search).unwrap();
    eventually("the replica has batch 2", || on_replica.seq().unwrap() == 2);

    pg.kill(sift_index::test_postgres::Node::Primary);
    assert_eq!(
        reader.keyword_search("blizzards", 5).unwrap().len(),
        1,
        "the replica serves reads while the primary is down"
    );
    match writer.commit(vec![conformance::upsert("c", None, &[("cold", 2)])]) {
        Err(IndexError::Unavailable(_)) => {}
        other => panic!("a write with the primary down: {other:?}"),
    }
    pg.restart(sift_index::test_postgres::Node::Primary);
    let seq = writer
        .commit(vec![conformance::upsert("c", None, &[("cold", 2)])])
        .unwrap();
    assert_eq!(
        seq, 3,
        "the writer reconnects (and relocks) once the primary is back"
    );
    reader.require_seq(3).unwrap();
    assert_eq!(reader.len().unwrap(), 3);
}

/// Postings cut by another analyzer version are re-cut when a writer opens the collection.
#[test]
fn postings_of_an_older_analyzer_are_recut_by_the_next_writer() {
    let pg = TestPostgres::start();
    let at = pg.collection("old");
    let mut c = store::open_or_create(&at, conformance::manifest("m")).unwrap();
    c.commit(vec![conformance::upsert(
        "a",
        Some("Geysers"),
        &[("geysers erupt", 0)],
    )])
    .unwrap();
    drop(c);
    // What an older sift would have left: other terms, another version name.
    psql(
        &pg.primary,
        "DO $$ DECLARE s text; BEGIN
           SELECT schema_name INTO s FROM sift.collections WHERE name = 'old';
           EXECUTE format('UPDATE %I.postings SET term = ''stale''', s);
           EXECUTE format('UPDATE %I.state SET keyword_terms = ''sift-english-0''', s);
         END $$",
    );
    let reader = store::open(&at, Access::Search).unwrap();
    assert!(reader.keyword_search("geysers", 5).unwrap().is_empty());
    drop(store::open(&at, Access::Write).unwrap());
    assert_eq!(reader.keyword_search("geysers", 5).unwrap().len(), 1);
    reader.verify().unwrap();
}

fn psql_value(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether collection `name` has its HNSW index now.
fn has_vector_index(pg: &TestPostgres, name: &str) -> bool {
    psql_value(
        &pg.primary,
        &format!(
            "SELECT count(*) FROM pg_indexes i JOIN sift.collections c ON c.schema_name = i.schemaname
             WHERE c.name = '{name}' AND i.indexname = 'chunks_embedding'"
        ),
    ) == "1"
}

fn many(prefix: &str, n: usize) -> Vec<sift_index::Operation> {
    (0..n)
        .map(|i| {
            conformance::upsert(
                &format!("{prefix}{i}"),
                None,
                &[(&format!("fjord{i} glacier{prefix}"), i)],
            )
        })
        .collect()
}

/// A large first batch into an empty collection defers the HNSW index to the compaction that
/// ends the load (searches are exact meanwhile); a load that never got there has its index
/// built by the next compaction of any writer.
#[test]
fn a_bulk_load_builds_the_vector_index_once_at_its_end() {
    let pg = TestPostgres::start();
    let at = pg.collection("bulk");
    let mut c = store::open_or_create(&at, conformance::manifest("m")).unwrap();
    c.commit(many("a", 1200)).unwrap();
    assert!(!has_vector_index(&pg, "bulk"), "dropped for the load");
    c.commit(many("b", 10)).unwrap();
    let q = [0.05, 0.05, 1.0, 0.05];
    let hits = c.dense_search(&q, 5).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits[0].score > 0.99, "{hits:?}");
    assert!(!c.compact_if_due().unwrap(), "not before the load ends");
    c.compact().unwrap();
    assert!(has_vector_index(&pg, "bulk"));
    // (Vectors repeat along four axes: which of the tied chunks come back may differ.)
    let scores = |h: &[sift_index::ChunkHit]| h.iter().map(|h| h.score).collect::<Vec<_>>();
    assert_eq!(
        scores(&c.dense_search(&q, 5).unwrap()),
        scores(&hits),
        "the index finds what the scan found"
    );
    c.verify().unwrap();
    drop(c);

    // A load killed before its end: the next writer's compaction builds the index.
    let at = pg.collection("unfinished");
    let mut c = store::open_or_create(&at, conformance::manifest("m")).unwrap();
    c.commit(many("u", 1000)).unwrap();
    drop(c);
    assert!(!has_vector_index(&pg, "unfinished"));
    let mut c = store::open(&at, Access::Shared).unwrap();
    assert!(c.compact_if_due().unwrap());
    assert!(has_vector_index(&pg, "unfinished"));
    // Servers (shared writers) never drop it, nor does a writer's batch into a collection
    // that has documents.
    let at = pg.collection("served");
    drop(store::open_or_create(&at, conformance::manifest("m")).unwrap());
    let mut c = store::open(&at, Access::Shared).unwrap();
    c.commit(many("s", 1500)).unwrap();
    assert!(has_vector_index(&pg, "served"));
    drop(c);
    let mut c = store::open(&at, Access::Write).unwrap();
    c.commit(many("t", 1500)).unwrap();
    assert!(has_vector_index(&pg, "served"));
}
