//! What determines a training run: the loss and every hyperparameter, validated before a step
//! is taken and saved with each checkpoint.

use crate::data::GroupRecipe;
use crate::error::{Result, TrainError};

/// How the model learns from a group (one positive, then negatives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Softmax cross-entropy over the group's logits, the positive as the target (listwise,
    /// "multiple negatives ranking"): learns to rank the positive above every negative.
    Listwise,
    /// Binary cross-entropy per pair: positive → 1, negatives → 0 (pointwise).
    Bce,
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "listwise" => Ok(Loss::Listwise),
            "bce" => Ok(Loss::Bce),
            _ => Err(format!("unknown loss {s:?}; expected listwise or bce")),
        }
    }
}

/// How a layerwise run weighs its exits' losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitWeighting {
    /// Every exit counts the same (the mean of their losses).
    #[default]
    Uniform,
    /// Exit after layer `l` counts `l / Σ l` (Zhou et al. 2020, PABEE): shallow heads, which
    /// cannot rank well, pull the shared layers less than the deep ones.
    Depth,
}

impl std::str::FromStr for ExitWeighting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "uniform" => Ok(ExitWeighting::Uniform),
            "depth" => Ok(ExitWeighting::Depth),
            _ => Err(format!(
                "unknown exit weighting {s:?}; expected depth or uniform"
            )),
        }
    }
}

impl ExitWeighting {
    /// The weight of each of `exits` (layers counted from 1), summing to 1.
    pub fn weights(self, exits: &[usize]) -> Vec<f64> {
        let raw: Vec<f64> = match self {
            ExitWeighting::Uniform => exits.iter().map(|_| 1.0).collect(),
            ExitWeighting::Depth => exits.iter().map(|&l| l as f64).collect(),
        };
        let total: f64 = raw.iter().sum();
        raw.iter().map(|w| w / total).collect()
    }
}

/// Where a fresh classification head's BERT pooler (the dense + tanh on `[CLS]` that
/// `BertForSequenceClassification` puts before its classifier) comes from. XLM-R and MPNet
/// heads own their dense layer (`classifier.dense`), which is always fresh; a base that already
/// is a cross-encoder keeps its whole head whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// The base checkpoint's pooler, trained at the encoder's rate. A sentence-transformers
    /// bi-encoder never trained it, and its output barely varies across inputs, so the head
    /// starts without a signal and the run can sit at chance for most of its steps
    /// (docs/quality.md, "The head, not the learning rate").
    Base,
    /// Drawn from N(0, 0.02) like the classifier and trained at the fresh head's rate, so the
    /// whole head starts alike in every architecture. The default.
    Fresh,
}

impl Pooler {
    /// What runs saved before the choice existed did.
    fn of_older_runs() -> Pooler {
        Pooler::Base
    }
}

impl std::str::FromStr for Pooler {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "base" => Ok(Pooler::Base),
            "fresh" => Ok(Pooler::Fresh),
            _ => Err(format!("unknown pooler {s:?}; expected base or fresh")),
        }
    }
}

/// Everything that determines the run. Saved with each checkpoint; `--resume` refuses a
/// checkpoint made with a different recipe.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Recipe {
    /// Longest (query, document) pair in tokens; longer pairs cut the document.
    pub max_length: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    /// Learning-rate multiplier for freshly initialised parameters (a new classification
    /// head): starting from random weights, they need larger steps than the pretrained encoder.
    pub fresh_lr_scale: f64,
    pub weight_decay: f64,
    /// Share of the steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    /// Groups in one forward/backward pass.
    pub groups_per_batch: usize,
    /// Passes whose gradients are summed before one optimizer step.
    pub accumulation_steps: usize,
    pub groups: GroupRecipe,
    pub loss: Loss,
    pub seed: u64,
    pub max_grad_norm: f64,
    /// Stop after this many optimizer steps (a shorter run; the schedule still spans all).
    pub max_steps: Option<usize>,
    /// Inverse-cloze examples added to the labelled ones ([`crate::synthetic`]).
    #[serde(default)]
    pub synthetic_queries: usize,
    /// Layerwise training (`--layerwise`, `--exit-layers`): the layers, counted from 1, that
    /// get a scoring head besides the last; each head's listwise loss counts equally. Empty:
    /// one head on the last layer, the ordinary cross-encoder.
    #[serde(default)]
    pub exit_layers: Vec<usize>,
    /// How the exits' losses are weighed (uniform in runs saved before the choice existed).
    #[serde(default)]
    pub exit_weighting: ExitWeighting,
    /// Where a fresh head's BERT pooler comes from.
    #[serde(default = "Pooler::of_older_runs")]
    pub pooler: Pooler,
    /// Learning from a stronger reranker's scores as well as from the labels (`--teacher`).
    #[serde(default)]
    pub distillation: Option<Distillation>,
}

/// Distillation from a teacher ([`crate::distill`]): the loss becomes
/// `(1 − weight) · label loss + weight · KL(teacher ‖ student)` over each group — each exit's
/// group for a reranker, each query's own group (its positive and negatives) for a bi-encoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Distillation {
    pub teacher: TeacherModel,
    /// Share of the loss that follows the teacher, in [0, 1].
    pub weight: f64,
    /// Softmax temperature of both sides in the KL term (> 0; higher spreads the teacher's
    /// preferences among the negatives).
    pub temperature: f64,
}

/// Who scores the groups for distillation.
///
/// Serialized as a path, or as the string `"first-stage"`: runs saved before the first-stage
/// teacher existed recorded a bare path, and still read back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum TeacherModel {
    /// The first stage that mined the hard negatives, its scores min–max normalized per query
    /// ([`crate::distill::FirstStageScores`]); bi-encoders only. Tried before `Reranker` when
    /// read back, so `"first-stage"` is this and never a relative path (paths are stored
    /// resolved, absolute).
    FirstStage(FirstStageTag),
    /// Any rerank model sift loads: a cross-encoder directory (e.g. one that
    /// `sift train-reranker --base all-mpnet-base-v2` wrote), an LLM reranker, a GGUF file.
    Reranker(std::path::PathBuf),
}

/// The one spelling of [`TeacherModel::FirstStage`] in a saved recipe.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstStageTag {
    FirstStage,
}

impl std::fmt::Display for TeacherModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TeacherModel::FirstStage(_) => f.write_str("the first stage"),
            TeacherModel::Reranker(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            max_length: 160,
            epochs: 1,
            learning_rate: 1e-4,
            fresh_lr_scale: 25.0,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            groups_per_batch: 2,
            accumulation_steps: 2,
            groups: GroupRecipe {
                hard_negatives: 6,
                random_negatives: 1,
                negative_depth: 30,
                prior_negatives: 0,
            },
            loss: Loss::Listwise,
            seed: 42,
            max_grad_norm: 1.0,
            max_steps: None,
            synthetic_queries: 0,
            exit_layers: Vec::new(),
            exit_weighting: ExitWeighting::Uniform,
            pooler: Pooler::Fresh,
            distillation: None,
        }
    }
}

/// The settings in which `now` differs from `saved` (a checkpoint's recipe), as `name: saved X,
/// now Y; …` — so a resume refused after a default changed (such as the reranker's `pooler` or
/// the embedder's `unit`) names it. Either trainer's recipe: settings are compared by their
/// serialized fields.
pub fn differences<T: serde::Serialize + std::fmt::Debug>(saved: &T, now: &T) -> String {
    let (Ok(serde_json::Value::Object(was)), Ok(serde_json::Value::Object(now))) =
        (serde_json::to_value(saved), serde_json::to_value(now))
    else {
        return format!("saved: {saved:?}");
    };
    let differing: Vec<String> = was
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .map(|(k, v)| {
            let n = now.get(k).map_or("absent".to_owned(), |n| n.to_string());
            format!("{k}: saved {v}, now {n}")
        })
        .collect();
    differing.join("; ")
}

impl Recipe {
    /// The recipe with settings that change nothing set to one value: the exit weighting of a
    /// model with one exit. Runs compare these when resuming.
    pub fn normalized(&self) -> Recipe {
        let mut r = self.clone();
        if r.exit_layers.is_empty() {
            r.exit_weighting = ExitWeighting::default();
        }
        r
    }

    pub fn groups_per_step(&self) -> usize {
        self.groups_per_batch * self.accumulation_steps
    }

    /// Optimizer steps the schedule spans.
    pub fn total_steps(&self, examples: usize) -> usize {
        (examples * self.epochs)
            .div_ceil(self.groups_per_step())
            .max(1)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Invalid(m.to_owned()));
        if self.max_length < 8 {
            return bad("--max-length must be at least 8 tokens");
        }
        if self.epochs == 0 || self.groups_per_batch == 0 || self.accumulation_steps == 0 {
            return bad("--epochs, --groups-per-batch and --accumulation-steps must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("--learning-rate must be a positive number");
        }
        if !(self.fresh_lr_scale > 0.0 && self.fresh_lr_scale.is_finite()) {
            return bad("--fresh-lr-scale must be a positive number");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("--warmup-ratio must be in [0, 1)");
        }
        if self.groups.hard_negatives + self.groups.random_negatives + self.groups.prior_negatives
            == 0
        {
            return bad(
                "a group needs at least one negative (--hard-negatives, --random-negatives)",
            );
        }
        if let Some(d) = &self.distillation {
            d.validate()?;
        }
        Ok(())
    }
}

impl Distillation {
    /// The weight and temperature rules, for every trainer that distils.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Invalid(m.to_owned()));
        if !(0.0..=1.0).contains(&self.weight) {
            return bad("--distill-weight must be in [0, 1]");
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("--distill-temperature must be a positive number");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_teacher_reads_back_as_saved_and_older_paths_stay_rerankers() {
        for teacher in [
            TeacherModel::FirstStage(FirstStageTag::FirstStage),
            TeacherModel::Reranker("/models/rr-mpnet".into()),
        ] {
            let d = Distillation {
                teacher: teacher.clone(),
                weight: 0.5,
                temperature: 1.0,
            };
            let json = serde_json::to_value(&d).unwrap();
            assert_eq!(serde_json::from_value::<Distillation>(json).unwrap(), d);
        }
        let first: TeacherModel = serde_json::from_str(r#""first-stage""#).unwrap();
        assert_eq!(first, TeacherModel::FirstStage(FirstStageTag::FirstStage));
        // What runs saved before the first-stage teacher wrote: a bare path.
        let older: Distillation = serde_json::from_str(
            r#"{"teacher": "/work/runs/rr-mpnet", "weight": 0.5, "temperature": 1.0}"#,
        )
        .unwrap();
        assert_eq!(
            older.teacher,
            TeacherModel::Reranker("/work/runs/rr-mpnet".into())
        );
    }

    #[test]
    fn a_recipe_saved_before_the_pooler_choice_keeps_the_base_pooler() {
        let mut saved = serde_json::to_value(Recipe::default()).unwrap();
        assert_eq!(saved["pooler"], "fresh");
        saved.as_object_mut().unwrap().remove("pooler");
        let older: Recipe = serde_json::from_value(saved).unwrap();
        assert_eq!(older.pooler, Pooler::Base);
        // Resuming such a run with today's defaults is refused, naming the setting.
        assert_eq!(
            differences(&older, &Recipe::default()),
            r#"pooler: saved "base", now "fresh""#
        );
    }
}
