//! The bi-encoder training loop on the tiny random-weight BERT fixture: it learns a toy
//! retrieval task (dev nDCG@10 rises over the base), writes a sentence-transformers directory
//! sift's `Embedder` loads, and a run stopped part-way and resumed ends with the same model as
//! an uninterrupted one. Trained on windows, it learns what lies past the max length, and its
//! windows are the ones the index embeds. With a teacher — a cross-encoder, or the first stage's
//! scores — it learns the teacher's ranking.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use sift_index::{ChunkingConfig, Document};
use sift_models::{Embedder, EmbedderOptions, ModelDir, TextRole, TextTokenizer};
use sift_pipeline::ingest::{chunk_document, embedding_text};
use sift_train::bi_encoder::DropoutRates;
use sift_train::distill::{FirstStageScores, Teacher};
use sift_train::embedder_trainer::{train_embedder, EmbedderDev, EmbedderRecipe, EmbedderState};
use sift_train::units::{corpus_windows, DocumentUnit, DocumentWindows};
use sift_train::{
    Distillation, FirstStageTag, GroupRecipe, LabelledQuery, TeacherModel, TrainingSet,
};

const TOPICS: [&str; 16] = [
    "paris", "dog", "fox", "cafe", "tumour", "vaccines", "disease", "cells", "hypoxia", "gene",
    "france", "facade", "brown", "adults", "risk", "severe",
];

fn base() -> ModelDir {
    ModelDir::open(support::golden_fixture("bert-encoder")).unwrap()
}

struct Task {
    corpus: HashMap<String, String>,
    train: Vec<LabelledQuery>,
    dev: Vec<LabelledQuery>,
}

/// Document `d{i}` is about topic i and query i asks about it; dev asks about every fourth
/// topic in other words. The loop's test is whether it fits what it is shown (that a recipe
/// generalizes to unseen documents is measured on SciFact's document-disjoint split, not on
/// a random 32-dimensional model).
fn task() -> Task {
    let mut corpus = HashMap::new();
    let (mut train, mut dev) = (Vec::new(), Vec::new());
    for (i, t) in TOPICS.iter().enumerate() {
        corpus.insert(
            format!("d{i}"),
            format!("the {t} is studied here; the {t} changes."),
        );
        corpus.insert(
            format!("x{i}"),
            format!("notes number {i} by older adults."),
        );
        train.push(LabelledQuery {
            id: format!("q{i}"),
            text: format!("what is known about the {t}"),
            relevant: vec![format!("d{i}")],
        });
        if i % 4 == 3 {
            dev.push(LabelledQuery {
                id: format!("dev{i}"),
                text: format!("{t}?"),
                relevant: vec![format!("d{i}")],
            });
        }
    }
    Task { corpus, train, dev }
}

fn recipe() -> EmbedderRecipe {
    EmbedderRecipe {
        epochs: 6,
        batch_size: 4,
        groups: GroupRecipe {
            hard_negatives: 1,
            random_negatives: 1,
            negative_depth: 10,
            prior_negatives: 0,
        },
        learning_rate: 1e-2,
        weight_decay: 0.01,
        warmup_ratio: 0.1,
        max_grad_norm: 1.0,
        max_length: 32,
        scale: 20.0,
        seed: 7,
        max_steps: None,
        synthetic_queries: 0,
        unit: DocumentUnit::Whole,
        // The CLI's default for BERT-family bases: every test below trains through dropout, so
        // resuming also checks that a step's masks depend on nothing but the seed and the step.
        dropout: DropoutRates {
            hidden: 0.1,
            attention: 0.1,
        },
        distillation: None,
    }
}

fn run(t: &Task, out: &Path, recipe: EmbedderRecipe, resume: bool) -> EmbedderState {
    run_with(t, out, recipe, resume, None, None)
}

fn run_with(
    t: &Task,
    out: &Path,
    recipe: EmbedderRecipe,
    resume: bool,
    windows: Option<DocumentWindows>,
    first_stage: Option<&BTreeMap<String, Vec<(String, f32)>>>,
) -> EmbedderState {
    // Hard negatives: the first stage's ranking when one is given, else every other document,
    // as a first stage that knows nothing would rank.
    let mined: BTreeMap<String, Vec<String>> = t
        .train
        .iter()
        .map(|q| {
            let ids = match first_stage {
                Some(hits) => hits[&q.id].iter().map(|(d, _)| d.clone()).collect(),
                None => {
                    let mut ids: Vec<String> = t.corpus.keys().cloned().collect();
                    ids.sort();
                    ids
                }
            };
            (q.id.clone(), ids)
        })
        .collect();
    let mut data = TrainingSet::new(t.corpus.clone(), &t.train, mined).unwrap();
    if let Some(w) = windows {
        data = data.with_windows(w);
    }
    if let Some(hits) = first_stage {
        data = data.with_first_stage_scores(FirstStageScores::from_hits(hits));
    }
    let dev = EmbedderDev {
        queries: &t.dev,
        corpus: &t.corpus,
        windows: data.windows(),
    };
    train_embedder(&base(), &data, &dev, recipe, out, resume, 2, &mut |_| {}).unwrap()
}

fn vectors(dir: &Path, texts: &[String]) -> Vec<Vec<f32>> {
    support::candle_embedder(dir)
        .embed(texts, TextRole::Raw)
        .unwrap()
}

#[test]
fn training_learns_the_task_and_saves_a_loadable_model() {
    let t = task();
    let out = tempfile::tempdir().unwrap();
    let state = run(&t, out.path(), recipe(), false);
    let baseline = state.baseline.unwrap().ndcg_at_10;
    let best = state.best.as_ref().unwrap().metrics.ndcg_at_10;
    assert_eq!(state.evals.len(), 6, "one dev evaluation per epoch");
    assert!(
        best > baseline + 0.1,
        "dev nDCG@10 {baseline:.3} → {best:.3}; {:?}",
        state.evals
    );
    let (first, last) = (&state.losses[..3], &state.losses[state.losses.len() - 3..]);
    assert!(
        last.iter().sum::<f64>() < first.iter().sum::<f64>(),
        "{:?}",
        state.losses
    );
    let v = vectors(out.path(), &["what is known about the gene".to_string()]);
    assert_eq!(v[0].len(), base().config.hidden_size);
}

#[test]
fn a_run_stopped_part_way_and_resumed_ends_with_the_same_model() {
    let t = task();
    let whole = tempfile::tempdir().unwrap();
    run(&t, whole.path(), recipe(), false);
    let parts = tempfile::tempdir().unwrap();
    let cut = EmbedderRecipe {
        max_steps: Some(5),
        ..recipe()
    };
    let stopped = run(&t, parts.path(), cut, false);
    assert_eq!(stopped.step, 5);
    let resumed = run(&t, parts.path(), recipe(), true);
    assert_eq!(resumed.step, resumed.total_steps);
    let texts: Vec<String> = t.corpus.values().cloned().collect();
    for (a, b) in vectors(whole.path(), &texts)
        .iter()
        .zip(vectors(parts.path(), &texts))
    {
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
    // Another recipe does not resume this checkpoint.
    let data = TrainingSet::new(t.corpus.clone(), &t.train, BTreeMap::new()).unwrap();
    let dev = EmbedderDev {
        queries: &t.dev,
        corpus: &t.corpus,
        windows: None,
    };
    let refused = |other: EmbedderRecipe| -> String {
        train_embedder(
            &base(),
            &data,
            &dev,
            other,
            parts.path(),
            true,
            2,
            &mut |_| {},
        )
        .err()
        .unwrap()
        .to_string()
    };
    let e = refused(EmbedderRecipe {
        learning_rate: 1e-4,
        ..recipe()
    });
    assert!(e.contains("different settings"), "{e}");
    assert!(e.contains("learning_rate: saved 0.01, now 0.0001"), "{e}");
    // A run saved with whole documents names the unit when resumed with windows.
    let e = refused(EmbedderRecipe {
        unit: DocumentUnit::Windows(ChunkingConfig {
            max_tokens: 20,
            overlap_tokens: 4,
        }),
        ..recipe()
    });
    assert!(
        e.contains(r#"unit: saved "whole", now {"windows":{"max_tokens":20,"overlap_tokens":4}}"#),
        "{e}"
    );
}

/// The same words in front of every topic document: longer than the 32-token max length, so a
/// document cut there is only this preamble.
const PREAMBLE: &str = "quick lazy messages over claims like abstracts appear under naive \
    retrieval augmented generation, and good expression needs scientific resume; quick lazy \
    messages over claims like abstracts appear under naive retrieval augmented generation";

fn write_corpus(dir: &Path, corpus: &HashMap<String, String>) -> PathBuf {
    let mut ids: Vec<&String> = corpus.keys().collect();
    ids.sort();
    let lines: Vec<String> = ids
        .iter()
        .map(|id| serde_json::json!({"_id": id, "title": "", "text": corpus[*id]}).to_string())
        .collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn training_on_windows_learns_what_lies_past_the_max_length() {
    let mut t = task();
    for (id, text) in t.corpus.iter_mut() {
        if id.starts_with('d') {
            *text = format!("{PREAMBLE}; {text}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_corpus(dir.path(), &t.corpus);
    let tokenizer = TextTokenizer::from_dir(&base().path, 32, false).unwrap();
    let chunking = ChunkingConfig {
        max_tokens: 20,
        overlap_tokens: 4,
    };
    let windows = corpus_windows(&path, &tokenizer, chunking).unwrap();
    assert!(windows["d0"].len() > 1, "{:?}", windows["d0"]);

    // Cut at the max length every topic document is the same preamble: only windows show
    // the model the topic.
    let (_, cut) = tokenizer.encode_checked(PREAMBLE).unwrap();
    assert!(cut, "the preamble alone must fill the max length");
    let windowed = EmbedderRecipe {
        unit: DocumentUnit::Windows(chunking),
        ..recipe()
    };
    let state = run_with(&t, dir.path(), windowed, false, Some(windows), None);
    let baseline = state.baseline.unwrap().ndcg_at_10;
    let best = state.best.as_ref().unwrap().metrics.ndcg_at_10;
    assert!(
        best > baseline + 0.1,
        "dev nDCG@10 {baseline:.3} → {best:.3}; {:?}",
        state.evals
    );
}

#[test]
fn the_windows_trained_on_are_the_ones_the_index_embeds() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{PREAMBLE}. {PREAMBLE}, and the gene of paris.");
    let line = serde_json::json!({"_id": "long", "title": "A title", "text": text});
    let path = dir.path().join("corpus.jsonl");
    std::fs::write(&path, line.to_string()).unwrap();
    let chunking = ChunkingConfig {
        max_tokens: 12,
        overlap_tokens: 3,
    };
    let tokenizer = TextTokenizer::from_dir(&base().path, 32, false).unwrap();
    let trained = &corpus_windows(&path, &tokenizer, chunking).unwrap()["long"];

    let embedder = Embedder::load(&base().path, EmbedderOptions::default()).unwrap();
    let doc = Document {
        id: "long".into(),
        text,
        title: Some("A title".into()),
        metadata: None,
    };
    let indexed: Vec<String> = chunk_document(&embedder, &doc, chunking)
        .unwrap()
        .iter()
        .map(|c| embedding_text(doc.title.as_deref(), c))
        .collect();
    assert!(indexed.len() > 2, "{indexed:?}");
    assert_eq!(trained, &indexed);
}

/// A teacher's logits of a query's documents, given their ids and texts.
type TeacherLogits<'a> = dyn FnMut(&LabelledQuery, &[&String], &[String]) -> Vec<f32> + 'a;

/// Mean over the training queries of KL(teacher ‖ student) between the two softmaxes over the
/// whole corpus — the teacher's logits (of the query and the documents' ids and texts) against
/// the student's 20 × cosine.
fn disagreement(t: &Task, teacher: &mut TeacherLogits<'_>, student: &Path) -> f64 {
    let mut ids: Vec<&String> = t.corpus.keys().collect();
    ids.sort();
    let texts: Vec<String> = ids.iter().map(|d| t.corpus[*d].clone()).collect();
    let documents = vectors(student, &texts);
    let softmax = |x: &[f64]| -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|v| v / z).collect()
    };
    let mut total = 0.0;
    for q in &t.train {
        let query = &vectors(student, std::slice::from_ref(&q.text))[0];
        let want: Vec<f64> = teacher(q, &ids, &texts)
            .into_iter()
            .map(f64::from)
            .collect();
        let got: Vec<f64> = documents
            .iter()
            .map(|d| {
                20.0 * d
                    .iter()
                    .zip(query)
                    .map(|(a, b)| f64::from(a * b))
                    .sum::<f64>()
            })
            .collect();
        let (p, r) = (softmax(&want), softmax(&got));
        total += p.iter().zip(&r).map(|(p, r)| p * (p / r).ln()).sum::<f64>();
    }
    total / t.train.len() as f64
}

/// `--teacher`: with the whole loss on the teacher (weight 1), the student's ranking of every
/// training query's documents moves toward the teacher's — here a tiny random cross-encoder
/// whose preferences have nothing to do with the topics, so only distillation can teach them.
#[test]
fn a_distilled_student_learns_the_teachers_ranking() {
    let t = task();
    let path = support::golden_fixture("bert-classifier");
    let distillation = Distillation {
        teacher: TeacherModel::Reranker(path.clone()),
        weight: 1.0,
        temperature: 1.0,
    };
    let mut model = Teacher::load(&path, 32).unwrap();
    let mut teacher = |q: &LabelledQuery, _: &[&String], texts: &[String]| {
        let pairs: Vec<(&str, &str)> = texts
            .iter()
            .map(|d| (q.text.as_str(), d.as_str()))
            .collect();
        model.logits(&pairs).unwrap()
    };
    let plain = tempfile::tempdir().unwrap();
    run(&t, plain.path(), recipe(), false);
    let distilled = tempfile::tempdir().unwrap();
    let state = run(
        &t,
        distilled.path(),
        EmbedderRecipe {
            distillation: Some(distillation.clone()),
            ..recipe()
        },
        false,
    );
    assert_eq!(state.recipe.distillation.as_ref(), Some(&distillation));
    let before = disagreement(&t, &mut teacher, &support::golden_fixture("bert-encoder"));
    let (without, with) = (
        disagreement(&t, &mut teacher, plain.path()),
        disagreement(&t, &mut teacher, distilled.path()),
    );
    assert!(
        with < 0.5 * before && with < 0.5 * without,
        "KL(teacher ‖ student): base {before:.3}, trained on labels {without:.3}, distilled {with:.3}"
    );
}

/// Over the training queries, the share of pairs among the first stage's top `depth` (the
/// query's positive left out: the labels speak for it) that the student, by cosine, orders as
/// the first stage does.
fn agreement(
    t: &Task,
    hits: &BTreeMap<String, Vec<(String, f32)>>,
    depth: usize,
    student: &Path,
) -> f64 {
    let (mut same, mut pairs) = (0usize, 0usize);
    for q in &t.train {
        let top: Vec<String> = hits[&q.id]
            .iter()
            .take(depth)
            .filter(|(d, _)| !q.relevant.contains(d))
            .map(|(d, _)| t.corpus[d].clone())
            .collect();
        let documents = vectors(student, &top);
        let query = &vectors(student, std::slice::from_ref(&q.text))[0];
        let cosine: Vec<f32> = documents
            .iter()
            .map(|d| d.iter().zip(query).map(|(a, b)| a * b).sum())
            .collect();
        for a in 0..cosine.len() {
            for b in a + 1..cosine.len() {
                pairs += 1;
                same += usize::from(cosine[a] > cosine[b]);
            }
        }
    }
    same as f64 / pairs as f64
}

/// `--teacher first-stage`: with the whole loss on the first stage's scores (weight 1), the
/// student orders the first stage's top documents as the first stage does — here an order of
/// the topic documents the labels say nothing about (by number), so only distillation teaches
/// it.
#[test]
fn a_student_distilled_from_the_first_stage_learns_its_ranking() {
    let t = task();
    let ids: Vec<String> = t.corpus.keys().cloned().collect();
    // Each query's first stage returns the 16 topic documents in the order of their number (the
    // notes, `x*`, differ only in a number the tiny vocabulary does not hold: it cannot order
    // them).
    let hits: BTreeMap<String, Vec<(String, f32)>> = t
        .train
        .iter()
        .map(|q| {
            let mut order: Vec<&String> = ids.iter().filter(|d| d.starts_with('d')).collect();
            order.sort_by_key(|d| d[1..].parse::<usize>().unwrap());
            let hits = order
                .into_iter()
                .enumerate()
                .map(|(rank, d)| (d.clone(), 40.0 - rank as f32))
                .collect();
            (q.id.clone(), hits)
        })
        .collect();
    let distillation = Distillation {
        teacher: TeacherModel::FirstStage(FirstStageTag::FirstStage),
        weight: 1.0,
        temperature: 1.0,
    };
    // Groups of the first stage's top 10 (the hard negatives' pool), as in a real run.
    let recipe = EmbedderRecipe {
        groups: GroupRecipe {
            hard_negatives: 4,
            ..recipe().groups
        },
        epochs: 24,
        ..recipe()
    };
    let plain = tempfile::tempdir().unwrap();
    run_with(&t, plain.path(), recipe.clone(), false, None, Some(&hits));
    let distilled = tempfile::tempdir().unwrap();
    let state = run_with(
        &t,
        distilled.path(),
        EmbedderRecipe {
            distillation: Some(distillation.clone()),
            ..recipe
        },
        false,
        None,
        Some(&hits),
    );
    assert_eq!(state.recipe.distillation.as_ref(), Some(&distillation));
    let depth = recipe.groups.negative_depth;
    let before = agreement(&t, &hits, depth, &support::golden_fixture("bert-encoder"));
    let (without, with) = (
        agreement(&t, &hits, depth, plain.path()),
        agreement(&t, &hits, depth, distilled.path()),
    );
    assert!(
        with > 0.8 && with > without + 0.2 && with > before + 0.2,
        "pairs of the first stage's top {depth} ordered as it orders them: base {before:.3}, trained on labels {without:.3}, distilled {with:.3}"
    );
}

/// A run told the first stage teaches, on a training set without its scores, stops before any
/// step rather than training on labels alone.
#[test]
fn a_first_stage_teacher_without_scores_is_refused() {
    let t = task();
    let out = tempfile::tempdir().unwrap();
    let mined = BTreeMap::from([("q0".to_string(), vec!["d1".to_string()])]);
    let data = TrainingSet::new(t.corpus.clone(), &t.train, mined).unwrap();
    let dev = EmbedderDev {
        queries: &[],
        corpus: &t.corpus,
        windows: None,
    };
    let recipe = EmbedderRecipe {
        distillation: Some(Distillation {
            teacher: TeacherModel::FirstStage(FirstStageTag::FirstStage),
            weight: 0.5,
            temperature: 1.0,
        }),
        ..recipe()
    };
    let run = train_embedder(
        &base(),
        &data,
        &dev,
        recipe,
        out.path(),
        false,
        2,
        &mut |_| {},
    );
    let Err(err) = run else {
        panic!("trained without the first stage's scores");
    };
    assert!(err.to_string().contains("first-stage scores"), "{err}");
}
