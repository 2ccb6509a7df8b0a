//! Reading documents to index: BEIR `corpus.jsonl`, JSONL `{id, text, title?, metadata?,
//! vector?}`, and plain `.txt` / `.md` files (one document per file). Directories are walked.
//! Brought vectors come in a JSONL line's `vector` (or `embedding`) field, or as rows of a
//! `.npy` matrix ([`attach_npy_vectors`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sift_index::Document;
use sift_pipeline::NewDocument;

/// Documents read, and every problem found, each with its file and line.
#[derive(Default)]
pub struct ParsedDocuments {
    pub docs: Vec<NewDocument>,
    pub errors: Vec<String>,
}

pub fn read_documents(paths: &[PathBuf]) -> Result<ParsedDocuments> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)?;
    }
    if files.is_empty() {
        bail!("no .jsonl, .txt or .md files found in {paths:?}");
    }
    let mut out = ParsedDocuments::default();
    let mut first_seen: HashMap<String, String> = HashMap::new();
    for file in files {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = file.display().to_string();
        let is_jsonl = file
            .extension()
            .is_some_and(|e| e == "jsonl" || e == "ndjson");
        let parsed: Vec<(String, std::result::Result<NewDocument, String>)> = if is_jsonl {
            parse_jsonl(&name, &bytes)
        } else {
            vec![(name.clone(), parse_text_file(&file, &bytes).map(Into::into))]
        };
        for (location, doc) in parsed {
            match doc {
                Ok(doc) => match first_seen.get(&doc.document.id) {
                    Some(first) => out.errors.push(format!(
                        "{location}: duplicate id {:?} (first at {first})",
                        doc.document.id
                    )),
                    None => {
                        first_seen.insert(doc.document.id.clone(), location);
                        out.docs.push(doc);
                    }
                },
                Err(e) => out.errors.push(format!("{location}: {e}")),
            }
        }
    }
    Ok(out)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if p
            .extension()
            .is_some_and(|e| e == "jsonl" || e == "ndjson" || e == "txt" || e == "md")
        {
            out.push(p);
        }
    }
    Ok(())
}

fn parse_jsonl(
    name: &str,
    bytes: &[u8],
) -> Vec<(String, std::result::Result<NewDocument, String>)> {
    let mut out = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let location = format!("{name}:{}", n + 1);
        let doc = match std::str::from_utf8(line) {
            Err(e) => Err(format!(
                "not valid UTF-8 (invalid byte at column {})",
                e.valid_up_to() + 1
            )),
            Ok(line) if sift_models::is_blank(line) => continue,
            Ok(line) => parse_json_document(line),
        };
        out.push((location, doc));
    }
    out
}

fn parse_json_document(line: &str) -> std::result::Result<NewDocument, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut map) = value else {
        return Err("expected a JSON object with \"id\" and \"text\"".into());
    };
    let id = match map.remove("id").or_else(|| map.remove("_id")) {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("\"id\" must be a non-empty string or a number".into()),
        None => return Err("missing \"id\" (or BEIR's \"_id\")".into()),
    };
    let text = match map.remove("text") {
        Some(Value::String(s)) => s,
        _ => return Err(format!("document {id:?}: missing string field \"text\"")),
    };
    let title = match map.remove("title") {
        Some(Value::String(s)) if !sift_models::is_blank(&s) => Some(s),
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(_) => return Err(format!("document {id:?}: \"title\" must be a string")),
    };
    if sift_models::is_blank(&text) && title.is_none() {
        return Err(format!("document {id:?} has no text"));
    }
    // A document with a title but no text is searchable by its title.
    let text = if sift_models::is_blank(&text) {
        title.clone().unwrap_or_default()
    } else {
        text
    };
    let metadata = match map.remove("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if m.is_empty() => None,
        Some(v) => Some(v),
    };
    let vector = match (map.remove("vector"), map.remove("embedding")) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "document {id:?} has both \"vector\" and \"embedding\"; give one"
            ))
        }
        (None | Some(Value::Null), None | Some(Value::Null)) => None,
        (Some(v), None) | (None, Some(v)) => {
            Some(parse_vector(&v).map_err(|e| format!("document {id:?}: vector {e}"))?)
        }
    };
    Ok(NewDocument {
        document: Document {
            id,
            text,
            title,
            metadata,
        },
        vector,
    })
}

/// A brought vector from JSON: a non-empty array of numbers, usable for cosine similarity
/// ([`sift_index::batch::vector_problem`]). The dimension is checked against the collection's
/// later, when it is known.
fn parse_vector(value: &Value) -> std::result::Result<Vec<f32>, String> {
    let Value::Array(items) = value else {
        return Err("must be an array of numbers".into());
    };
    if items.is_empty() {
        return Err("is empty".into());
    }
    let vector = items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| format!("has a non-number at index {i}: {x}"))
        })
        .collect::<std::result::Result<Vec<f32>, String>>()?;
    match sift_index::batch::vector_problem(&vector) {
        Some(problem) => Err(problem),
        None => Ok(vector),
    }
}

/// A query vector from `--query-vector`: a JSON array, or `@FILE` with a JSON array or a `.npy`
/// vector (1-D, or one row).
pub fn read_query_vector(arg: &str) -> Result<Vec<f32>> {
    let (json, source) = match arg.strip_prefix('@') {
        Some(path) if path.ends_with(".npy") => {
            let t = candle_core::Tensor::read_npy(path)
                .with_context(|| format!("cannot read {path} as a .npy array"))?;
            if t.dims().iter().filter(|&&d| d > 1).count() > 1 {
                bail!("{path}: expected one vector, found shape {:?}", t.dims());
            }
            let v = t
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            return match sift_index::batch::vector_problem(&v) {
                Some(problem) => bail!("{path}: the query vector {problem}"),
                None => Ok(v),
            };
        }
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?,
            path.to_owned(),
        ),
        None => (arg.to_owned(), "--query-vector".to_owned()),
    };
    let value: Value = serde_json::from_str(&json)
        .with_context(|| format!("{source}: not a JSON array of numbers"))?;
    parse_vector(&value).map_err(|e| anyhow::anyhow!("{source}: the query vector {e}"))
}

/// Gives each document the row of the `.npy` matrix at `path` with its position: row i belongs
/// to the i-th document read (in the order files and lines were read). The matrix must be 2-D,
/// of floats, with one row per document; documents that already brought a vector in their line
/// are refused (two sources for one vector).
pub fn attach_npy_vectors(path: &Path, docs: &mut [NewDocument]) -> Result<()> {
    use candle_core::{DType, Tensor};
    let matrix = Tensor::read_npy(path)
        .with_context(|| format!("cannot read {} as a .npy array", path.display()))?;
    let (rows, dim) = matrix.dims2().map_err(|_| {
        anyhow::anyhow!(
            "{}: expected a 2-D array (one row per document), found shape {:?}",
            path.display(),
            matrix.dims()
        )
    })?;
    if !matches!(
        matrix.dtype(),
        DType::F16 | DType::BF16 | DType::F32 | DType::F64
    ) {
        bail!(
            "{}: vectors must be floats (float16, float32 or float64), found {:?}",
            path.display(),
            matrix.dtype()
        );
    }
    if dim == 0 {
        bail!("{}: the vectors have no dimensions", path.display());
    }
    if rows != docs.len() {
        bail!(
            "{} has {rows} rows but {} documents were read: row i is the vector of the i-th document",
            path.display(),
            docs.len()
        );
    }
    let values = matrix
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    for (i, (doc, row)) in docs.iter_mut().zip(values.chunks_exact(dim)).enumerate() {
        if doc.vector.is_some() {
            bail!(
                "document {:?} brings a vector in its line and in row {i} of {}; give one",
                doc.document.id,
                path.display()
            );
        }
        if let Some(problem) = sift_index::batch::vector_problem(row) {
            bail!(
                "{}: row {i} (document {:?}) {problem}",
                path.display(),
                doc.document.id
            );
        }
        doc.vector = Some(row.to_vec());
    }
    Ok(())
}

fn parse_text_file(path: &Path, bytes: &[u8]) -> std::result::Result<Document, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    if sift_models::is_blank(text) {
        return Err("file is empty".into());
    }
    let title = if path.extension().is_some_and(|e| e == "md") {
        text.lines()
            .find_map(|l| l.strip_prefix("# "))
            .map(|t| t.trim().to_owned())
    } else {
        None
    };
    Ok(Document {
        id: path.display().to_string(),
        text: text.to_owned(),
        title,
        metadata: None,
    })
}

/// Builds the collection at `location` from the corpus file `corpus` when it is missing, and
/// completes it when an earlier build was interrupted (fewer documents than the corpus has):
/// evaluating or mining negatives on a partial collection would count the missing documents as
/// misses. `model` embeds a new collection; an existing one keeps its own.
pub fn ensure_collection(
    location: &sift_index::Location,
    corpus: &std::path::Path,
    model: Option<&str>,
    engine: sift_models::EngineOptions,
) -> Result<()> {
    let parsed = read_documents(&[corpus.to_owned()])?;
    if let Some(e) = parsed.errors.first() {
        anyhow::bail!(
            "{}: {} invalid line(s), the first: {e}",
            corpus.display(),
            parsed.errors.len()
        );
    }
    if sift_pipeline::build::is_complete(location, parsed.docs.len())? {
        return Ok(());
    }
    let existing = sift_index::store::read_manifest(location)?;
    eprintln!(
        "{} {location} from {}",
        if existing.is_some() {
            "completing"
        } else {
            "building"
        },
        corpus.display()
    );
    let name = match (&existing, model) {
        (Some(m), _) => crate::model_path::collection_embedder(&m.embedding),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "all-MiniLM-L6-v2".to_owned(),
    };
    let embedder = crate::model_path::load_embedder(&name, engine)?;
    let bar = crate::commands::progress_bar(parsed.docs.len(), "docs");
    sift_pipeline::build::index_documents(
        location,
        Some(embedder),
        &Default::default(),
        parsed.docs,
        64,
        &mut |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beir_and_plain_jsonl_lines() {
        let d = parse_json_document(
            r#"{"_id": "4983", "title": "Microstructural", "text": "Alterations", "metadata": {}}"#,
        )
        .unwrap()
        .document;
        assert_eq!(
            (d.id.as_str(), d.title.as_deref(), d.metadata),
            ("4983", Some("Microstructural"), None)
        );
        let d = parse_json_document(r#"{"id": 7, "text": "x", "metadata": {"year": 2020}}"#)
            .unwrap()
            .document;
        assert_eq!(d.id, "7");
        assert_eq!(d.metadata.unwrap()["year"], 2020);
        assert!(parse_json_document(r#"{"text": "x"}"#)
            .unwrap_err()
            .contains("id"));
        assert!(parse_json_document(r#"{"id": "a", "text": ""}"#)
            .unwrap_err()
            .contains("no text"));
        assert!(parse_json_document("[1]").is_err());
    }

    #[test]
    fn brought_vectors_are_read_and_bad_ones_refused() {
        let d =
            parse_json_document(r#"{"id": "a", "text": "x", "vector": [3, 4.5, -1e-3]}"#).unwrap();
        assert_eq!(d.vector, Some(vec![3.0, 4.5, -1e-3]));
        let d = parse_json_document(r#"{"id": "a", "text": "x", "embedding": [1]}"#).unwrap();
        assert_eq!(d.vector, Some(vec![1.0]));
        for (line, expected) in [
            (
                r#"{"id": "a", "text": "x", "vector": [1, "2"]}"#,
                "non-number at index 1",
            ),
            (
                r#"{"id": "a", "text": "x", "vector": [1, null]}"#,
                "non-number at index 1",
            ),
            (
                r#"{"id": "a", "text": "x", "vector": "1,2"}"#,
                "array of numbers",
            ),
            (r#"{"id": "a", "text": "x", "vector": []}"#, "is empty"),
            (r#"{"id": "a", "text": "x", "vector": [0, 0]}"#, "all zeros"),
            (
                r#"{"id": "a", "text": "x", "vector": [1e300]}"#,
                "NaN or infinite",
            ),
            (
                r#"{"id": "a", "text": "x", "vector": [1], "embedding": [1]}"#,
                "give one",
            ),
        ] {
            let e = parse_json_document(line).unwrap_err();
            assert!(e.contains(expected), "{line}: {e}");
        }
    }

    #[test]
    fn npy_rows_attach_in_document_order() {
        let dir = tempfile::tempdir().unwrap();
        let npy = dir.path().join("v.npy");
        let docs = || -> Vec<NewDocument> {
            ["a", "b"]
                .iter()
                .map(|id| {
                    NewDocument::from(Document {
                        id: (*id).into(),
                        text: "t".into(),
                        title: None,
                        metadata: None,
                    })
                })
                .collect()
        };
        let write = |values: &[f32], shape: &[usize]| {
            candle_core::Tensor::from_slice(values, shape, &candle_core::Device::Cpu)
                .unwrap()
                .write_npy(&npy)
                .unwrap();
        };
        write(&[1.0, 0.0, 0.0, 2.0], &[2, 2]);
        let mut ok = docs();
        attach_npy_vectors(&npy, &mut ok).unwrap();
        assert_eq!(ok[1].vector, Some(vec![0.0, 2.0]));
        let err = |values: &[f32], shape: &[usize]| {
            write(values, shape);
            attach_npy_vectors(&npy, &mut docs())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[1.0, 0.0, 0.0], &[3, 1]).contains("3 rows but 2 documents"));
        assert!(err(&[1.0, 2.0], &[2]).contains("2-D"));
        assert!(err(&[1.0, f32::NAN, 0.0, 1.0], &[2, 2]).contains("row 0"));
        assert!(err(&[1.0, 1.0, 0.0, 0.0], &[2, 2]).contains("all zeros"));
    }

    #[test]
    fn errors_carry_file_and_line_and_duplicates_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.jsonl");
        std::fs::write(
            &f,
            "{\"id\":\"a\",\"text\":\"x\"}\n{broken\n{\"id\":\"a\",\"text\":\"y\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("note.md"), "# Title\nbody").unwrap();
        std::fs::write(dir.path().join("skip.bin"), "zz").unwrap();
        let parsed = read_documents(&[dir.path().to_owned()]).unwrap();
        assert_eq!(parsed.docs.len(), 2);
        assert_eq!(parsed.errors.len(), 2);
        assert!(
            parsed.errors[0].contains("c.jsonl:2"),
            "{:?}",
            parsed.errors
        );
        assert!(
            parsed.errors[1].contains("c.jsonl:3: duplicate id \"a\""),
            "{:?}",
            parsed.errors
        );
        assert_eq!(parsed.docs[1].document.title.as_deref(), Some("Title"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any bytes: every line is a document or an error naming its line; never a panic.
            #[test]
            fn any_bytes_give_documents_or_located_errors(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                for (location, _) in parse_jsonl("f.jsonl", &bytes) {
                    prop_assert!(location.starts_with("f.jsonl:"));
                }
            }

            /// A document written as a JSONL line reads back as written.
            #[test]
            fn documents_round_trip(
                id in "\\PC{1,20}",
                text in "\\PC{0,60}[a-z]",
                title in proptest::option::of("\\PC{0,10}[a-z]"),
                year in proptest::option::of(any::<i32>()),
            ) {
                let mut line = serde_json::json!({"id": id, "text": text});
                if let Some(t) = &title {
                    line["title"] = serde_json::json!(t);
                }
                if let Some(y) = year {
                    line["metadata"] = serde_json::json!({"year": y});
                }
                let parsed = parse_jsonl("f", format!("{line}\n").as_bytes());
                prop_assert_eq!(parsed.len(), 1);
                let doc = parsed[0].1.clone().unwrap().document;
                prop_assert_eq!(doc.id, id);
                prop_assert_eq!(doc.text, text);
                prop_assert_eq!(doc.title, title);
                prop_assert_eq!(doc.metadata.map(|m| m["year"].clone()), year.map(|y| serde_json::json!(y)));
            }
        }
    }
}
