//! BEIR-layout datasets: `corpus.jsonl`, `queries*.jsonl`, `qrels*.tsv` (or `qrels/*.tsv`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::trec::{Qrels, TrecError};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(transparent)]
    Qrels(#[from] TrecError),
    #[error("{dir}: no {what} found (expected {pattern})")]
    Missing {
        dir: PathBuf,
        what: &'static str,
        pattern: &'static str,
    },
}

/// Queries and judgements of a dataset (the corpus is indexed separately, by path).
pub struct Dataset {
    pub corpus: PathBuf,
    /// query id → text, in id order.
    pub queries: BTreeMap<String, String>,
    pub qrels: Qrels,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    text: String,
}

fn pick(dir: &Path, prefix: &str, ext: &str) -> Result<Vec<PathBuf>, DatasetError> {
    let mut out = Vec::new();
    for d in [dir.to_owned(), dir.join(prefix)] {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with(prefix) || d.ends_with(prefix)) && name.ends_with(ext) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Dataset {
    /// Loads a BEIR folder. With several query or qrels files (e.g. `queries.train.jsonl` and
    /// `queries.test.jsonl`), `name_filter` picks those whose file name contains it.
    pub fn load(dir: &Path, name_filter: Option<&str>) -> Result<Dataset, DatasetError> {
        let corpus = dir.join("corpus.jsonl");
        if !corpus.is_file() {
            return Err(DatasetError::Missing {
                dir: dir.to_owned(),
                what: "corpus",
                pattern: "corpus.jsonl",
            });
        }
        let keep = |p: &PathBuf| {
            name_filter.is_none_or(|f| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(f))
            })
        };
        let query_files: Vec<PathBuf> = pick(dir, "queries", ".jsonl")?
            .into_iter()
            .filter(keep)
            .collect();
        let qrels_files: Vec<PathBuf> = pick(dir, "qrels", ".tsv")?
            .into_iter()
            .filter(keep)
            .collect();
        if query_files.is_empty() {
            return Err(DatasetError::Missing {
                dir: dir.to_owned(),
                what: "queries",
                pattern: "queries*.jsonl",
            });
        }
        if qrels_files.is_empty() {
            return Err(DatasetError::Missing {
                dir: dir.to_owned(),
                what: "qrels",
                pattern: "qrels*.tsv or qrels/*.tsv",
            });
        }
        Dataset::from_files(&corpus, &query_files, &qrels_files)
    }

    /// Loads explicitly named files: one corpus, any number of query and qrels files.
    pub fn from_files(
        corpus: &Path,
        query_files: &[PathBuf],
        qrels_files: &[PathBuf],
    ) -> Result<Dataset, DatasetError> {
        if !corpus.is_file() {
            return Err(DatasetError::Io(
                corpus.to_owned(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let mut queries = BTreeMap::new();
        for path in query_files {
            let text =
                std::fs::read_to_string(path).map_err(|e| DatasetError::Io(path.clone(), e))?;
            for (i, line) in text.lines().enumerate() {
                if sift_models::is_blank(line) {
                    continue;
                }
                let q: QueryLine =
                    serde_json::from_str(line).map_err(|e| DatasetError::Malformed {
                        path: path.clone(),
                        line: i + 1,
                        reason: e.to_string(),
                    })?;
                let id = match q.id {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                queries.insert(id, q.text);
            }
        }
        let mut qrels = Qrels::default();
        for path in qrels_files {
            let text =
                std::fs::read_to_string(path).map_err(|e| DatasetError::Io(path.clone(), e))?;
            let part = Qrels::parse(&path.display().to_string(), &text)?;
            for (q, docs) in part.judgements {
                qrels.judgements.entry(q).or_default().extend(docs);
            }
        }
        Ok(Dataset {
            corpus: corpus.to_owned(),
            queries,
            qrels,
        })
    }
}
