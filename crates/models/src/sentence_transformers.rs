//! sentence-transformers metadata beside the weights: `modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json`, `config_sentence_transformers.json`. It decides how token states
//! become one embedding, whether it is L2-normalised, and how long inputs may be.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::pooling::Pooling;

/// What the sentence-transformers files say; every field is `None` when the files are absent.
#[derive(Debug, Clone, Default)]
pub struct SentenceTransformersConfig {
    pub pooling: Option<Pooling>,
    /// True when `modules.json` lists a `Normalize` module.
    pub normalize: bool,
    /// `max_seq_length` in tokens.
    pub max_seq_length: Option<usize>,
    /// `prompts.query` of `config_sentence_transformers.json` (e.g. BGE's instruction).
    pub query_prompt: Option<String>,
    /// `prompts.passage` / `prompts.document`.
    pub passage_prompt: Option<String>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct BertConfigFile {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct StConfigFile {
    #[serde(default)]
    prompts: std::collections::BTreeMap<String, String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::InvalidConfig {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::InvalidConfig {
            path: path.to_owned(),
            reason: format!("not valid JSON: {e}"),
        })
}

impl SentenceTransformersConfig {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut out = SentenceTransformersConfig::default();
        let modules: Vec<Module> = read_json(&dir.join("modules.json"))?.unwrap_or_default();
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with("models.Pooling"))
            .map(|m| dir.join(&m.path))
            .unwrap_or_else(|| dir.join("1_Pooling"));
        out.normalize = modules.iter().any(|m| m.kind.ends_with("models.Normalize"));

        let pooling_path = pooling_dir.join("config.json");
        if let Some(p) = read_json::<PoolingFile>(&pooling_path)? {
            let modes = [
                (p.pooling_mode_cls_token, Pooling::Cls),
                (p.pooling_mode_mean_tokens, Pooling::Mean),
                (p.pooling_mode_lasttoken, Pooling::LastToken),
            ];
            let chosen: Vec<Pooling> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
            if p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens || chosen.len() > 1
            {
                return Err(ModelError::InvalidConfig {
                    path: pooling_path,
                    reason: "only a single cls, mean or last-token pooling mode is supported"
                        .into(),
                });
            }
            out.pooling = chosen.first().copied();
        }
        if let Some(c) = read_json::<BertConfigFile>(&dir.join("sentence_bert_config.json"))? {
            out.max_seq_length = c.max_seq_length;
        }
        if let Some(c) = read_json::<StConfigFile>(&dir.join("config_sentence_transformers.json"))?
        {
            out.query_prompt = c.prompts.get("query").cloned().filter(|p| !p.is_empty());
            out.passage_prompt = c
                .prompts
                .get("passage")
                .or_else(|| c.prompts.get("document"))
                .cloned()
                .filter(|p| !p.is_empty());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_minilm_style_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::create_dir(d.join("1_Pooling")).unwrap();
        std::fs::write(
            d.join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("sentence_bert_config.json"),
            r#"{"max_seq_length":256}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("config_sentence_transformers.json"),
            r#"{"prompts":{"query":"query: ","passage":"passage: "}}"#,
        )
        .unwrap();
        let c = SentenceTransformersConfig::from_dir(d).unwrap();
        assert_eq!(c.pooling, Some(Pooling::Cls));
        assert!(c.normalize);
        assert_eq!(c.max_seq_length, Some(256));
        assert_eq!(c.query_prompt.as_deref(), Some("query: "));
        assert_eq!(c.passage_prompt.as_deref(), Some("passage: "));
    }

    #[test]
    fn absent_files_mean_no_opinion_and_corrupt_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let c = SentenceTransformersConfig::from_dir(dir.path()).unwrap();
        assert_eq!(c.pooling, None);
        assert!(!c.normalize);
        std::fs::write(dir.path().join("modules.json"), "[{").unwrap();
        assert!(matches!(
            SentenceTransformersConfig::from_dir(dir.path()),
            Err(ModelError::InvalidConfig { .. })
        ));
    }
}
