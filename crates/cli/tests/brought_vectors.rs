//! Bring your own embeddings, end to end: `sift index` with vectors in JSONL lines and in a
//! `.npy` file, a collection that records "external model, dimension d", searches with a query
//! vector from the CLI and over HTTP (a server with no model at all), and the refusals — wrong
//! dimension, NaN, non-numbers, missing vectors — that must leave the collection as it was.

mod common;

use std::path::Path;

use common::{curl, fails, sift_cmd, succeeds, Server};
use serde_json::{json, Value};

const DIM: usize = 16;

/// Document `i`'s vector: a one-hot direction per topic (four topics) plus a small per-document
/// offset, so the nearest documents to a topic's direction are that topic's.
fn vector(i: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; DIM];
    v[i % 4] = 1.0;
    v[4 + i % (DIM - 4)] += 0.1 + 0.01 * i as f32;
    v
}

fn topic(i: usize) -> &'static str {
    ["volcano", "glacier", "protein", "galaxy"][i % 4]
}

fn line(i: usize, vector: Value) -> String {
    json!({
        "id": format!("d{i}"),
        "title": format!("On the {}", topic(i)),
        "text": format!("Document {i} studies the {} closely.", topic(i)),
        "vector": vector,
    })
    .to_string()
}

fn write_corpus(path: &Path, range: std::ops::Range<usize>) {
    let lines: Vec<String> = range.map(|i| line(i, json!(vector(i)))).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn ids(search_json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(search_json).unwrap();
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

fn documents(col: &str) -> usize {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(Path::new(col).join("collection.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["embedding"]["fingerprint"],
        "external:toy-embedder"
    );
    let out = succeeds(
        &sift_cmd(&[
            "search", "-c", col, "--mode", "bm25", "-k", "1000", "studies", "--json",
        ])
        .output()
        .unwrap(),
    );
    ids(&out).len()
}

/// Writes `values` (row-major, `rows` × `cols`, float32) as a `.npy` file.
fn write_npy(path: &Path, values: &[f32], rows: usize, cols: usize) {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let mut header = header.into_bytes();
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to 64 bytes and
    // ended by a newline, as numpy writes it.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn brought_vectors_index_search_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let col_dir = dir.path().join("col");
    let col = col_dir.to_str().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    write_corpus(&corpus, 0..20);
    let out = succeeds(
        &sift_cmd(&[
            "index",
            "-c",
            col,
            corpus.to_str().unwrap(),
            "--vector-model",
            "toy-embedder",
        ])
        .output()
        .unwrap(),
    );
    let _ = out;
    assert_eq!(documents(col), 20);

    // Dense search by a query vector alone: the topic's documents come first, nearest first.
    let query = json!(vector(2)).to_string();
    let dense = succeeds(
        &sift_cmd(&[
            "search",
            "-c",
            col,
            "--mode",
            "dense",
            "--query-vector",
            &query,
            "-k",
            "5",
            "--json",
        ])
        .output()
        .unwrap(),
    );
    let hits = ids(&dense);
    assert_eq!(hits[0], "d2", "{dense}");
    assert!(
        hits.iter().take(5).all(|id| {
            let i: usize = id[1..].parse().unwrap();
            i % 4 == 2
        }),
        "{hits:?}"
    );

    // Hybrid: text for BM25, the vector (from a file) for the dense leg.
    let qfile = dir.path().join("q.json");
    std::fs::write(&qfile, &query).unwrap();
    let hybrid = succeeds(
        &sift_cmd(&[
            "search",
            "-c",
            col,
            "--query-vector",
            &format!("@{}", qfile.display()),
            "protein",
            "--json",
        ])
        .output()
        .unwrap(),
    );
    assert!(ids(&hybrid)
        .iter()
        .take(5)
        .all(|id| id[1..].parse::<usize>().unwrap() % 4 == 2));

    // The collection has no model: a search that needs one says what to bring.
    fails(
        &sift_cmd(&["search", "-c", col, "protein"])
            .output()
            .unwrap(),
        "needs a query vector",
    );
    // BM25 needs no vector.
    succeeds(
        &sift_cmd(&["search", "-c", col, "--mode", "bm25", "protein"])
            .output()
            .unwrap(),
    );
    fails(
        &sift_cmd(&[
            "search",
            "-c",
            col,
            "--mode",
            "dense",
            "--query-vector",
            "[1, 0]",
        ])
        .output()
        .unwrap(),
        "the query vector has 2 dimensions; the collection's have 16",
    );
    fails(
        &sift_cmd(&["search", "-c", col, "--query-vector", "[1, 0]"])
            .output()
            .unwrap(),
        "the query is empty",
    );

    // Refusals: each leaves the collection exactly as it was (20 documents, same log).
    let wal = std::fs::read(col_dir.join("wal.log")).unwrap_or_default();
    let bad = dir.path().join("bad.jsonl");
    let refused = |lines: Vec<String>, want: &str| {
        std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
        fails(
            &sift_cmd(&["index", "-c", col, bad.to_str().unwrap()])
                .output()
                .unwrap(),
            want,
        );
        assert_eq!(documents(col), 20, "after {want}");
        assert_eq!(
            std::fs::read(col_dir.join("wal.log")).unwrap_or_default(),
            wal
        );
    };
    // A good line first, so a partial write would show.
    let good = line(30, json!(vector(30)));
    refused(
        vec![good.clone(), line(31, json!([1.0, 2.0]))],
        "vector has 2 dimensions; the collection's have 16",
    );
    let mut with_string = vector(31).into_iter().map(|x| json!(x)).collect::<Vec<_>>();
    with_string[3] = json!("0.5");
    refused(
        vec![good.clone(), line(31, json!(with_string))],
        "non-number at index 3",
    );
    // JSON has no NaN: a writer that emits it anyway makes the line invalid JSON.
    refused(
        vec![
            good.clone(),
            line(31, json!(vector(31))).replace("1.0,", "NaN,"),
        ],
        "not valid JSON",
    );
    refused(
        vec![good.clone(), line(31, json!(vec![0.0; DIM]))],
        "all zeros",
    );
    refused(
        vec![
            good.clone(),
            json!({"id": "d31", "text": "no vector here"}).to_string(),
        ],
        "has no vector",
    );
    // The same refusals from a .npy file: NaN, wrong row count.
    let plain = dir.path().join("plain.jsonl");
    std::fs::write(
        &plain,
        "{\"id\": \"n0\", \"text\": \"first studies note\"}\n{\"id\": \"n1\", \"text\": \"second studies note\"}\n",
    )
    .unwrap();
    let npy = dir.path().join("v.npy");
    let mut rows: Vec<f32> = vector(1).into_iter().chain(vector(3)).collect();
    rows[DIM + 5] = f32::NAN;
    write_npy(&npy, &rows, 2, DIM);
    let with_npy = |want: Option<&str>| {
        let out = sift_cmd(&[
            "index",
            "-c",
            col,
            plain.to_str().unwrap(),
            "--vectors",
            npy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        match want {
            Some(want) => fails(&out, want),
            None => {
                succeeds(&out);
            }
        }
    };
    with_npy(Some(
        "row 1 (document \"n1\") has a NaN or infinite value at index 5",
    ));
    write_npy(&npy, &rows[..DIM], 1, DIM);
    with_npy(Some("1 rows but 2 documents"));
    assert_eq!(documents(col), 20);

    // A good .npy file is ingested: rows follow the documents.
    let mut lone = vec![0.0f32; DIM];
    lone[DIM - 1] = 2.0;
    let rows: Vec<f32> = vector(1).into_iter().chain(lone.clone()).collect();
    write_npy(&npy, &rows, 2, DIM);
    with_npy(None);
    assert_eq!(documents(col), 22);
    let near = succeeds(
        &sift_cmd(&[
            "search",
            "-c",
            col,
            "--mode",
            "dense",
            "--query-vector",
            &json!(lone).to_string(),
            "-k",
            "1",
            "--json",
        ])
        .output()
        .unwrap(),
    );
    assert_eq!(ids(&near), ["n1"]);
    // Another model name for the same collection is refused (vectors must not mix).
    write_corpus(&bad, 40..41);
    fails(
        &sift_cmd(&[
            "index",
            "-c",
            col,
            bad.to_str().unwrap(),
            "--vector-model",
            "other",
        ])
        .output()
        .unwrap(),
        "toy-embedder",
    );
}

/// A server with no model serves a collection of brought vectors: searches bring a query
/// vector, upserts bring document vectors, and bad vectors are 422s that change nothing.
#[test]
fn a_server_without_models_serves_brought_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("collections");
    let col_dir = root.join("mine");
    let corpus = dir.path().join("corpus.jsonl");
    write_corpus(&corpus, 0..12);
    succeeds(
        &sift_cmd(&[
            "index",
            "-c",
            col_dir.to_str().unwrap(),
            corpus.to_str().unwrap(),
            "--vector-model",
            "toy-embedder",
        ])
        .output()
        .unwrap(),
    );
    let server = Server::start(&["--collections", root.to_str().unwrap()]);
    let search = format!("{}/collections/mine/search", server.base);
    let (code, v) = curl(
        "POST",
        &search,
        &json!({"query": "galaxy", "query_vector": vector(3), "top_k": 3}),
    );
    assert_eq!(code, 200, "{v}");
    let hits: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(hits[0], "d3", "{v}");
    assert!(
        hits.iter()
            .all(|id| id[1..].parse::<usize>().unwrap() % 4 == 3),
        "{v}"
    );

    let (code, v) = curl("POST", &search, &json!({"query": "galaxy"}));
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("query vector"),
        "{v}"
    );
    let (code, v) = curl(
        "POST",
        &search,
        &json!({"query": "galaxy", "query_vector": [1.0]}),
    );
    assert_eq!(code, 422, "{v}");

    let docs = format!("{}/collections/mine/documents", server.base);
    let (code, v) = curl(
        "POST",
        &docs,
        &json!({"documents": [
            {"id": "h1", "text": "a new galaxy survey", "vector": vector(3)},
            {"id": "h2", "text": "wrong size", "vector": [0.5, 0.5]},
        ]}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("\"h2\""),
        "{v}"
    );
    let (code, v) = curl(
        "POST",
        &docs,
        &json!({"documents": [{"id": "h1", "text": "a new galaxy survey", "vector": vector(7)}]}),
    );
    assert_eq!((code, &v["added"]), (200, &json!(1)), "{v}");
    let (_, v) = curl("POST", &search, &json!({"query": "survey", "mode": "bm25"}));
    let hits: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(hits, ["h1"], "only h1 was written: {v}");
    let (code, v) = curl(
        "POST",
        &docs,
        &json!({"documents": [{"id": "h3", "text": "no vector"}]}),
    );
    assert_eq!(
        (code, &v["error"]["type"]),
        (404, &json!("model_not_loaded")),
        "{v}"
    );
}
