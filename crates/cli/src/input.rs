//! Reading texts from arguments, files or stdin, with line-accurate errors.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How to read a file or stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// `.jsonl` files and stdin are JSONL, other files one text per line.
    Auto,
    /// One JSON value per line: a string, or an object with "text" (and optional "id").
    Jsonl,
    /// One text per line; blank lines are skipped.
    Lines,
}

/// One input text and, when the JSONL object had one, its id.
#[derive(Debug, Clone, PartialEq)]
pub struct InputText {
    pub id: Option<Value>,
    pub text: String,
}

/// Texts from `args` if any, else from `file` (`-` = stdin), else from stdin.
pub fn read_texts(
    args: &[String],
    file: Option<&Path>,
    format: InputFormat,
) -> Result<Vec<InputText>> {
    if !args.is_empty() {
        if file.is_some() {
            bail!("give texts either as arguments or with --file, not both");
        }
        return Ok(args
            .iter()
            .map(|t| InputText {
                id: None,
                text: t.clone(),
            })
            .collect());
    }
    let (name, bytes, is_jsonl_name) = match file {
        Some(p) if p != Path::new("-") => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let jsonl = p.extension().is_some_and(|e| e == "jsonl" || e == "ndjson");
            (p.display().to_string(), bytes, jsonl)
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            ("stdin".to_string(), bytes, true)
        }
    };
    let jsonl = match format {
        InputFormat::Auto => is_jsonl_name,
        InputFormat::Jsonl => true,
        InputFormat::Lines => false,
    };
    parse(&name, &bytes, jsonl)
}

fn parse(name: &str, bytes: &[u8], jsonl: bool) -> Result<Vec<InputText>> {
    let mut out = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = n + 1;
        let line = std::str::from_utf8(line).map_err(|e| {
            anyhow::anyhow!(
                "{name}:{line_no}: not valid UTF-8 (invalid byte at column {})",
                e.valid_up_to() + 1
            )
        })?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if sift_models::is_blank(line) {
            continue;
        }
        if !jsonl {
            out.push(InputText {
                id: None,
                text: line.to_owned(),
            });
            continue;
        }
        let value: Value = serde_json::from_str(line).with_context(|| {
            format!("{name}:{line_no}: not valid JSON (use --format lines for plain text)")
        })?;
        out.push(match value {
            Value::String(text) => InputText { id: None, text },
            Value::Object(mut map) => {
                let text = match map.remove("text") {
                    Some(Value::String(t)) => t,
                    _ => bail!("{name}:{line_no}: object has no string field \"text\""),
                };
                InputText {
                    id: map.remove("id").or_else(|| map.remove("_id")),
                    text,
                }
            }
            _ => bail!("{name}:{line_no}: expected a JSON string or an object with \"text\""),
        });
    }
    if out.is_empty() {
        bail!("{name}: no texts found");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_accepts_strings_and_objects_and_reports_line_numbers() {
        let got = parse("f", b"\"a\"\n\n{\"id\": 7, \"text\": \"b\"}\r\n", true).unwrap();
        assert_eq!(got[0].text, "a");
        assert_eq!(got[1].id, Some(serde_json::json!(7)));
        let err = parse("f", b"\"a\"\n{oops\n", true).unwrap_err().to_string();
        assert!(err.starts_with("f:2:"), "{err}");
        let err = parse("f", b"\"a\"\n{\"txt\": 1}\n", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f:2") && err.contains("\"text\""), "{err}");
    }

    #[test]
    fn invalid_utf8_is_an_error_with_its_position() {
        let err = parse("stdin", b"ok\n\xff\xfe\n", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("stdin:2") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn lines_skip_blanks_and_empty_input_is_an_error() {
        let got = parse("f", b"one\n\n two \n", false).unwrap();
        assert_eq!(got.len(), 2);
        assert!(parse("f", b"\n\n", false).is_err());
    }
}
