//! `sift_rerank.json`: how sift should use a reranker, written beside its weights by
//! `sift train-reranker` (a directory without the file is used as it is).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The file's name inside a model directory. transformers and sentence-transformers ignore it,
/// so the directory stays an ordinary Hugging Face model.
pub const RERANK_SETTINGS_FILE: &str = "sift_rerank.json";

/// What a rerank model's trainer measured about using it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RerankSettings {
    /// Weight of the first stage's ranking in the final order (0: the reranker alone; see
    /// `sift_pipeline::fusion::blend_with_first_stage`), chosen on the training run's dev split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_stage_weight: Option<f32>,
    /// First-stage candidates per query the weight was chosen at: the weight holds at that
    /// depth (search's default, 100, unless `--dev-depth` said otherwise), not at every depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
    /// How the weight was chosen, for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_by: Option<String>,
}

impl RerankSettings {
    /// The settings in `dir`, default when the file is absent; a file that does not parse or
    /// holds a weight outside [0, 1] is an error, not silently ignored.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(RERANK_SETTINGS_FILE);
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.clone(),
            reason,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(invalid(e.to_string())),
        };
        let settings: RerankSettings =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if let Some(w) = settings.first_stage_weight {
            if !(0.0..=1.0).contains(&w) {
                return Err(invalid(format!(
                    "first_stage_weight is {w}; it must be between 0 and 1"
                )));
            }
        }
        Ok(settings)
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        // A struct of options and strings always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_default_written_reads_back_and_out_of_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            RerankSettings::from_dir(dir.path()).unwrap(),
            RerankSettings::default()
        );
        let s = RerankSettings {
            first_stage_weight: Some(0.3),
            candidates: Some(100),
            chosen_by: Some("dev nDCG@10".into()),
        };
        std::fs::write(dir.path().join(RERANK_SETTINGS_FILE), s.to_json()).unwrap();
        assert_eq!(RerankSettings::from_dir(dir.path()).unwrap(), s);
        for bad in [
            r#"{"first_stage_weight": 1.5}"#,
            r#"{"first_stage_weight": "x"}"#,
            "{",
        ] {
            std::fs::write(dir.path().join(RERANK_SETTINGS_FILE), bad).unwrap();
            let e = RerankSettings::from_dir(dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains(RERANK_SETTINGS_FILE), "{e}");
        }
    }
}
