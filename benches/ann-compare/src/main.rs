//! Recall@10 and query latency of instant-distance, hnsw_rs and usearch on the chunk vectors of
//! a sift collection (held-out chunks as queries), against exact search, in one run.

use std::time::Instant;

use sift_index::local::{AnnParams, LocalCollection, OpenMode};

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const K: usize = 10;
const QUERIES: usize = 300;

fn exact(base: &[Vec<f32>], q: &[f32]) -> Vec<usize> {
    let mut s: Vec<(f32, usize)> = base
        .iter()
        .enumerate()
        .map(|(i, v)| (dot(v, q), i))
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s.into_iter().take(K).map(|x| x.1).collect()
}

struct Row {
    name: String,
    build_s: f64,
    recall: f64,
    p50_us: f64,
    mean_us: f64,
}

fn measure(
    name: &str,
    build_s: f64,
    truth: &[Vec<usize>],
    queries: &[Vec<f32>],
    mut search: impl FnMut(&[f32]) -> Vec<usize>,
) -> Row {
    let mut lat = Vec::new();
    let mut found = 0;
    for (q, t) in queries.iter().zip(truth) {
        let start = Instant::now();
        let got = search(q);
        lat.push(start.elapsed().as_secs_f64() * 1e6);
        found += t.iter().filter(|i| got.contains(i)).count();
    }
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    lat.sort_by(f64::total_cmp);
    Row {
        name: name.into(),
        build_s,
        recall: found as f64 / (truth.len() * K) as f64,
        p50_us: lat[lat.len() / 2],
        mean_us: mean,
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: ann-compare COLLECTION_DIR");
    let c = LocalCollection::open(dir.as_ref(), OpenMode::ReadOnly, AnnParams::default())
        .expect("open collection");
    let mut all: Vec<Vec<f32>> = c.chunk_vectors().map(|v| v.to_vec()).collect();
    drop(c);
    // Every 17th vector is a held-out query.
    let mut queries = Vec::new();
    let mut base = Vec::new();
    for (i, v) in all.drain(..).enumerate() {
        if i % 17 == 0 && queries.len() < QUERIES {
            queries.push(v);
        } else {
            base.push(v);
        }
    }
    let dim = base[0].len();
    println!(
        "{} base vectors, {} queries, dim {dim}",
        base.len(),
        queries.len()
    );
    let truth: Vec<Vec<usize>> = queries.iter().map(|q| exact(&base, q)).collect();
    let mut rows = Vec::new();

    let t = Instant::now();
    let _ = queries.iter().map(|q| exact(&base, q)).count();
    let exact_us = t.elapsed().as_secs_f64() * 1e6 / queries.len() as f64;
    rows.push(Row {
        name: "exact scan".into(),
        build_s: 0.0,
        recall: 1.0,
        p50_us: exact_us,
        mean_us: exact_us,
    });

    // instant-distance (what sift used before usearch), at its settings then.
    #[derive(Clone)]
    struct P(Vec<f32>);
    impl instant_distance::Point for P {
        fn distance(&self, o: &Self) -> f32 {
            1.0 - dot(&self.0, &o.0)
        }
    }
    for ef in [64usize, 256] {
        let t = Instant::now();
        let map = instant_distance::Builder::default()
            .ef_construction(100)
            .ef_search(ef)
            .seed(42)
            .build(
                base.iter().cloned().map(P).collect(),
                (0..base.len()).collect::<Vec<usize>>(),
            );
        let build = t.elapsed().as_secs_f64();
        rows.push(measure(
            &format!("instant-distance 0.6 (M=32, efC=100, ef={ef})"),
            build,
            &truth,
            &queries,
            |q| {
                let mut s = instant_distance::Search::default();
                map.search(&P(q.to_vec()), &mut s)
                    .take(K)
                    .map(|i| *i.value)
                    .collect()
            },
        ));
    }

    // hnsw_rs
    {
        use hnsw_rs::prelude::*;
        let t = Instant::now();
        let h: Hnsw<f32, DistDot> = Hnsw::new(32, base.len(), 16, 100, DistDot {});
        let data: Vec<(&Vec<f32>, usize)> = base.iter().zip(0..).collect();
        h.parallel_insert(&data);
        let build = t.elapsed().as_secs_f64();
        for ef in [64usize, 256] {
            rows.push(measure(
                &format!("hnsw_rs 0.3 (M=32, efC=100, ef={ef})"),
                build,
                &truth,
                &queries,
                |q| h.search(q, K, ef).into_iter().map(|n| n.d_id).collect(),
            ));
        }
    }

    // usearch
    {
        use usearch::{IndexOptions, MetricKind, ScalarKind};
        let opts = IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: ScalarKind::F32,
            connectivity: 16,
            expansion_add: 100,
            expansion_search: 64,
            multi: false,
        };
        let t = Instant::now();
        let index = usearch::new_index(&opts).unwrap();
        index.reserve(base.len()).unwrap();
        for (i, v) in base.iter().enumerate() {
            index.add(i as u64, v).unwrap();
        }
        let build = t.elapsed().as_secs_f64();
        for ef in [64usize, 256] {
            index.change_expansion_search(ef);
            rows.push(measure(
                &format!("usearch 2 (M=16, efC=100, ef={ef})"),
                build,
                &truth,
                &queries,
                |q| {
                    index
                        .search(q, K)
                        .unwrap()
                        .keys
                        .into_iter()
                        .map(|k| k as usize)
                        .collect()
                },
            ));
        }
    }

    println!("\n| index | build (s) | recall@10 | p50 query (µs) | mean query (µs) |\n|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.4} | {:.0} | {:.0} |",
            r.name, r.build_s, r.recall, r.p50_us, r.mean_us
        );
    }
}
