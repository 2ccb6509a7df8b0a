//! What the `sift` end-to-end tests share: where the repository, its fixtures, the installed
//! models and the shared data are, and a live `sift serve` child process.
//!
//! Each test binary uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tiny random-weight model whose expected outputs come from transformers
/// (`crates/models/tests/fixtures/golden/`).
pub fn golden(name: &str) -> String {
    workspace()
        .join("crates/models/tests/fixtures/golden")
        .join(name)
        .display()
        .to_string()
}

/// The models `scripts/setup.sh` fetched, or `$SIFT_MODELS_DIR`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SIFT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"))
}

/// SciFact in `../shared` (or `$SIFT_SHARED_DIR`), read in place, never copied.
pub fn scifact() -> PathBuf {
    std::env::var_os("SIFT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"))
        .join("data/scifact")
}

/// The Python of a test venv that scripts/test.sh builds from `requirements` into `venv`
/// (relative to the workspace), or the interpreter `$env_var` names. Fails with how to make it.
pub fn venv_python(env_var: &str, venv: &str, requirements: &str) -> PathBuf {
    let python = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(venv).join("bin/python"));
    assert!(
        python.is_file(),
        "{} not found: scripts/test.sh creates it (python3 -m venv {venv} && {venv}/bin/pip install -r {requirements}), or set {env_var}",
        python.display()
    );
    python
}

/// The `sift` binary with the installed models and no stdin.
pub fn sift_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sift"));
    cmd.args(args)
        .env("SIFT_MODELS_DIR", models_dir())
        .stdin(Stdio::null());
    cmd
}

/// A `sift serve --port 0` child, killed when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub base: String,
    /// The server's stderr lines after the one announcing the address.
    pub logs: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `sift serve --port 0 ARGS…` and waits (up to 60 s) until it listens.
    pub fn start(args: &[&str]) -> Server {
        let mut child = sift_cmd(&["serve", "--port", "0"])
            .args(args)
            .env("SIFT_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (url_tx, url_rx) = mpsc::channel();
        let (log_tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match line.strip_prefix("listening on ") {
                    Some(url) => {
                        let _ = url_tx.send(url.trim().to_owned());
                    }
                    None => {
                        let _ = log_tx.send(line);
                    }
                }
            }
        });
        let base = url_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("sift serve did not start");
        Server { child, base, logs }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small BEIR folder: 40 documents on 20 topics, 20 queries (dev by the default split rule).
pub fn dataset(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let topics = [
        "volcano", "glacier", "protein", "galaxy", "enzyme", "reactor", "neuron", "comet",
        "vaccine", "tundra", "quasar", "insulin", "magma", "plankton", "photon", "antibody",
        "monsoon", "isotope", "coral", "pulsar",
    ];
    let mut corpus = String::new();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, t) in topics.iter().enumerate() {
        corpus.push_str(&format!(
            "{{\"_id\": \"d{i}\", \"title\": \"On the {t}\", \"text\": \"The {t} is studied here; the {t} shows effects.\"}}\n"
        ));
        corpus.push_str(&format!(
            "{{\"_id\": \"x{i}\", \"title\": \"Notes\", \"text\": \"Unrelated remarks number {i} about daily life.\"}}\n"
        ));
        queries.push_str(&format!(
            "{{\"_id\": \"{}\", \"text\": \"what is known about the {t}\"}}\n",
            i + 1
        ));
        qrels.push_str(&format!("{}\td{i}\t1\n", i + 1));
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.join("qrels.tsv"), qrels).unwrap();
}

/// Asserts that a sift run succeeded (showing its stderr otherwise); returns its stdout.
pub fn succeeds(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts that a sift run failed with a message mentioning `want`, and did not panic.
pub fn fails(out: &std::process::Output, want: &str) {
    assert!(!out.status.success(), "should have failed");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains(want), "{e:?} should mention {want:?}");
}

/// Runs `sift ARGS` (an indexing command) and kills it with SIGKILL after it has reported
/// `after` committed batches ("committed N/M" lines; `None`: before any) plus `delay_ms`;
/// returns the most documents it reported committed, at least `reported_so_far`.
pub fn kill_sift_index(
    args: &[&str],
    after: Option<usize>,
    delay_ms: u64,
    reported_so_far: usize,
) -> usize {
    let mut last_reported = reported_so_far;
    let mut child = sift_cmd(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<usize>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("committed ") {
                let n: usize = rest.split('/').next().unwrap().parse().unwrap();
                let _ = tx.send(n);
            }
        }
    });
    let started = std::time::Instant::now();
    let mut commits = 0;
    if let Some(after) = after {
        while commits < after && started.elapsed() < Duration::from_secs(120) {
            if let Ok(n) = rx.recv_timeout(Duration::from_millis(20)) {
                commits += 1;
                last_reported = last_reported.max(n);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    while let Ok(n) = rx.try_recv() {
        last_reported = last_reported.max(n);
    }
    last_reported
}

/// One HTTP request with curl: `method` to `url`, with `body` (a value or `None`) sent as JSON.
/// Returns the status code (0 when nothing answered) and the answer parsed as JSON (`Null` when
/// it is not JSON).
pub fn curl<'a>(
    method: &str,
    url: &str,
    body: impl Into<Option<&'a serde_json::Value>>,
) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-H", "content-type: application/json"]);
    cmd.args(["-w", "\n%{http_code}"]);
    if let Some(body) = body.into() {
        cmd.arg("--data-binary").arg(body.to_string());
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// POSTs `body` as JSON to `base` + `path` and returns the parsed answer, failing the test on a
/// transport error, a non-JSON body or an `error` field.
pub fn post_json(base: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let (_, v) = curl("POST", &format!("{base}{path}"), body);
    assert!(v.is_object() || v.is_array(), "{path}: not JSON: {v}");
    assert!(v.get("error").is_none(), "{path}: {v}");
    v
}
