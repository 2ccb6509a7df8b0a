//! Defects found when the server was attacked, each as a test against a live server: rejected
//! requests must create nothing, open collections are bounded, a timed-out write says whether
//! it wrote, and clients cannot grow the metrics at will.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{assert_error, minilm, post};
use serde_json::{json, Value};
use sift_index::store::{self, Access};
use sift_index::Location;
use sift_server::{AppState, Limits, ServerConfig};

/// A server over the collections directory `dir`; the sender stops it gracefully.
async fn start(
    dir: &Path,
    limits: Limits,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = ServerConfig {
        collections: Some(Location::Local(dir.to_owned())),
        limits,
        ..Default::default()
    };
    let state = AppState::new(Some(minilm()), None, &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        sift_server::serve(listener, state, &config, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), tx, handle)
}

async fn send(method: &str, url: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn rejected_requests_create_nothing_and_open_collections_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_open_collections: 3,
        ..Limits::default()
    };
    let (base, stop, server) = start(dir.path(), limits).await;

    // 50 invalid upserts to 50 new names: all refused, no directory, nothing left open.
    let bad_bodies = [
        json!({"documents": [{"id": "", "text": "x"}]}),
        json!({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}),
        json!({"documents": [{"id": "a", "text": "   "}]}),
        json!({"documents": [{"id": "x".repeat(2000), "text": "x"}]}),
        json!({"documents": []}),
    ];
    for i in 0..50 {
        let body = bad_bodies[i % bad_bodies.len()].clone();
        let (s, b) = post(&base, &format!("/collections/new-{i}/documents"), body).await;
        assert_eq!(s, 422, "{b}");
    }
    assert_eq!(entries(dir.path()), Vec::<String>::new());

    // Six collections written, at most three open at once, every one still served.
    for i in 0..6 {
        let (s, b) = post(
            &base,
            &format!("/collections/c{i}/documents"),
            json!({"documents": [{"id": format!("d{i}"), "text": format!("collection number {i} about rivers")}]}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let info: Value = reqwest::get(format!("{base}/info"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(info["open_collections"].as_u64().unwrap() <= 3, "{info}");
    }
    for i in 0..6 {
        let (s, b) = post(
            &base,
            &format!("/collections/c{i}/search"),
            json!({"query": "rivers", "mode": "bm25"}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["hits"][0]["id"], format!("d{i}"), "{b}");
    }

    // Explicit create and drop.
    let (s, b) = send("PUT", format!("{base}/collections/made")).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = send("PUT", format!("{base}/collections/made")).await;
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"created\":false"), "{b}");
    let (s, b) = send("PUT", format!("{base}/collections/..%2Fescape")).await;
    assert_eq!(s, 422, "{b}");
    assert!(dir.path().join("made").join("collection.json").is_file());
    let (s, b) = send("DELETE", format!("{base}/collections/made")).await;
    assert_eq!(s, 200, "{b}");
    assert!(!dir.path().join("made").exists());
    let (s, b) = send("DELETE", format!("{base}/collections/made")).await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = send("DELETE", format!("{base}/collections/c0")).await;
    assert_eq!(s, 200, "{b}");
    let listed: Value = reqwest::get(format!("{base}/collections"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["collections"], json!(["c1", "c2", "c3", "c4", "c5"]));

    stop.send(()).unwrap();
    server.await.unwrap();
}

/// A write that runs past the request timeout before its commit point writes nothing and says
/// so (503); before the fix it answered 503 and committed anyway.
#[tokio::test]
async fn a_timed_out_upsert_writes_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        // Less than embedding one document takes.
        request_timeout: Duration::from_micros(100),
        ..Limits::default()
    };
    let (base, stop, server) = start(dir.path(), limits).await;
    let (s, b) = post(
        &base,
        "/collections/t/documents",
        json!({"documents": [{"id": "late", "text": "this document arrives after the deadline"}]}),
    )
    .await;
    assert_error(s, &b, 503, "nothing after them was written");
    stop.send(()).unwrap();
    server.await.unwrap();
    let c = store::open(&Location::Local(dir.path().join("t")), Access::Write).unwrap();
    assert_eq!(c.len().unwrap(), 0);
    assert_eq!(c.documents(&["late"]).unwrap(), [None]);
    drop(c);

    // With time to spare the same request is committed and answered 200.
    let (base, stop, server) = start(dir.path(), Limits::default()).await;
    let (s, b) = post(
        &base,
        "/collections/t/documents",
        json!({"documents": [{"id": "late", "text": "this document arrives after the deadline"}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    stop.send(()).unwrap();
    server.await.unwrap();
    let c = store::open(&Location::Local(dir.path().join("t")), Access::Write).unwrap();
    assert_eq!(c.len().unwrap(), 1);
}

#[tokio::test]
async fn clients_cannot_create_metrics_series() {
    let dir = tempfile::tempdir().unwrap();
    let (base, stop, server) = start(dir.path(), Limits::default()).await;
    for i in 0..20 {
        send(&format!("BOGUS{i}"), format!("{base}/health")).await;
        send(&format!("BOGUS{i}"), format!("{base}/no/such/route/{i}")).await;
    }
    let (_, text) = send("GET", format!("{base}/metrics")).await;
    assert!(!text.contains("BOGUS"), "{text}");
    assert!(!text.contains("/no/such"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    stop.send(()).unwrap();
    server.await.unwrap();
}
