//! A bounded load test on loopback: measure the server's capacity, then offer several times that
//! rate (open loop: requests are sent on schedule whether or not earlier ones finished) for a
//! fixed time. Over-capacity requests must get 429 quickly, admitted ones must complete, and
//! memory must stay bounded.
//!
//! The suite runs a short version. For docs/performance.md:
//! `SIFT_LOAD_SECONDS=30 SIFT_LOAD_FACTOR=4 cargo test -p sift-server --test load -- --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::start_with;
use serde_json::json;
use sift_server::{BatcherConfig, Limits, ServerConfig};

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process (server and load generator), in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_load_is_refused_fast_and_admitted_work_completes() {
    let seconds = env_or("SIFT_LOAD_SECONDS", 4.0);
    let factor = env_or("SIFT_LOAD_FACTOR", 4.0);
    const TEXTS_PER_REQUEST: usize = 8;
    let base = start_with(
        false,
        ServerConfig {
            limits: Limits {
                request_timeout: Duration::from_secs(30),
                ..Default::default()
            },
            batching: BatcherConfig {
                // Room for 8 requests: queueing beyond that only adds latency.
                max_queued_inputs: 64,
                max_batch_tokens: 16_384,
            },
            ..Default::default()
        },
    )
    .await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let body = |i: usize| {
        let texts: Vec<String> = (0..TEXTS_PER_REQUEST)
            .map(|j| {
                format!(
                    "request {i} sentence {j}: {}",
                    "some words of text ".repeat(4)
                )
            })
            .collect();
        json!({ "inputs": texts })
    };

    // Capacity: one client, back to back.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs_f64(seconds / 2.0) || n < 5 {
        let r = client
            .post(format!("{base}/embed"))
            .json(&body(n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        n += 1;
    }
    let capacity = n as f64 / started.elapsed().as_secs_f64();

    // Offer `factor` × capacity for `seconds`.
    let rate = capacity * factor;
    let total = (rate * seconds).ceil() as usize;
    let rss_before = rss_mib();
    let peak = std::sync::Arc::new(std::sync::Mutex::new(rss_before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_mib();
                {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(now);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        let url = format!("{base}/embed");
        let b = body(i);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client.post(url).json(&b).send().await.unwrap();
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            let ok_body = if status == 200 {
                r.json::<Vec<Vec<f32>>>()
                    .await
                    .map(|v| v.len())
                    .unwrap_or(0)
            } else {
                let _ = r.bytes().await;
                0
            };
            (
                status,
                t.elapsed().as_secs_f64() * 1000.0,
                retry_after,
                ok_body,
            )
        }));
    }
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    let mut other = Vec::new();
    for t in tasks {
        let (status, ms, retry_after, n) = t.await.unwrap();
        match status {
            200 => {
                assert_eq!(
                    n, TEXTS_PER_REQUEST,
                    "an admitted request got all its vectors"
                );
                ok.push(ms)
            }
            429 => {
                assert!(retry_after, "429 carries Retry-After");
                refused.push(ms)
            }
            s => other.push(s),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    sampler.abort();
    let peak = *peak.lock().unwrap();
    ok.sort_by(f64::total_cmp);
    refused.sort_by(f64::total_cmp);
    println!(
        "capacity {capacity:.1} req/s ({:.0} texts/s); offered {rate:.1} req/s ({factor}x) for {seconds} s: {total} requests in {wall:.1} s",
        capacity * TEXTS_PER_REQUEST as f64
    );
    println!(
        "200: {} (p50 {:.0} ms, p99 {:.0} ms, {:.1} req/s); 429: {} (p50 {:.1} ms, p99 {:.1} ms); other: {:?}",
        ok.len(),
        percentile(&ok, 0.5),
        percentile(&ok, 0.99),
        ok.len() as f64 / wall,
        refused.len(),
        percentile(&refused, 0.5),
        percentile(&refused, 0.99),
        other
    );
    println!("RSS {rss_before:.0} MiB before the burst, peak {peak:.0} MiB");

    assert!(other.is_empty(), "only 200 and 429 expected, got {other:?}");
    assert!(!ok.is_empty() && !refused.is_empty());
    assert!(
        percentile(&refused, 0.99) < 250.0,
        "refusals must be fast: p99 {} ms",
        percentile(&refused, 0.99)
    );
    // Admitted work waits at most a full queue's worth of passes.
    assert!(percentile(&ok, 0.99) < 10_000.0);
    assert!(
        peak - rss_before < 300.0,
        "memory grew {} MiB under load",
        peak - rss_before
    );
}
