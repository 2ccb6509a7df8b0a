//! The distillation flags both trainers take (`train-reranker`, `train-embedder`).

use anyhow::{bail, Context, Result};
use sift_train::{Distillation, FirstStageTag, TeacherModel};

use crate::model_path::resolve;

#[derive(clap::Args)]
pub struct DistillFlags {
    /// Distil a stronger reranker into the model being trained: the teacher (any rerank model
    /// sift loads, e.g. a cross-encoder trained from all-mpnet-base-v2) scores every training
    /// group, and the loss becomes (1 − --distill-weight) · the label loss + --distill-weight ·
    /// KL(teacher ‖ student) over the group's softmax — for a reranker over every exit of a
    /// layerwise model, for an embedder over each query's own group (positive and negatives,
    /// the student's logits --scale × cosine). For train-embedder, `first-stage` makes the
    /// search that mines the hard negatives the teacher: its scores, min–max normalized per
    /// query (a document it did not return 0), times --scale — no model to train first (a
    /// directory named first-stage: ./first-stage).
    #[arg(long)]
    pub teacher: Option<String>,

    /// Share of the loss that follows the teacher, in [0, 1].
    #[arg(long, default_value_t = 0.5, requires = "teacher")]
    pub distill_weight: f64,

    /// Softmax temperature of the teacher and the student in the distillation term.
    #[arg(long, default_value_t = 1.0, requires = "teacher")]
    pub distill_temperature: f64,
}

impl DistillFlags {
    /// The recipe's distillation, with the teacher's name resolved to its directory or file.
    pub fn distillation(&self) -> Result<Option<Distillation>> {
        self.teacher
            .as_deref()
            .map(|name| {
                let teacher = match name {
                    FIRST_STAGE => TeacherModel::FirstStage(FirstStageTag::FirstStage),
                    path => TeacherModel::Reranker(resolve(path)?),
                };
                Ok(Distillation {
                    teacher,
                    weight: self.distill_weight,
                    temperature: self.distill_temperature,
                })
            })
            .transpose()
    }
}

/// `--teacher first-stage`.
const FIRST_STAGE: &str = "first-stage";

/// The model a run trains, which decides the teachers it can have.
#[derive(Clone, Copy, PartialEq)]
pub enum Student {
    Reranker,
    Embedder,
}

/// Refuses a teacher that cannot score, before mining and training.
pub fn check_teacher(distillation: Option<&Distillation>, student: Student) -> Result<()> {
    match distillation.map(|d| &d.teacher) {
        None => {}
        Some(TeacherModel::Reranker(path)) => {
            sift_models::rerank::load_reranker(path, sift_models::RerankerOptions::default())
                .with_context(|| format!("--teacher {}", path.display()))?;
        }
        Some(TeacherModel::FirstStage(_)) if student == Student::Reranker => bail!(
            "--teacher {FIRST_STAGE} teaches embedders (train-embedder): a reranker learns to \
             reorder the first stage, so its teacher must be a rerank model"
        ),
        Some(TeacherModel::FirstStage(_)) => {}
    }
    Ok(())
}
