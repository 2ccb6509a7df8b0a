//! The bi-encoder that `sift train-embedder` trains, on the tiny random-weight encoders whose
//! sentence-transformers embeddings are committed as golden fixtures
//! (scripts/golden/make_fixtures.py): before training it embeds exactly as sentence-transformers
//! does, contrastive steps move its positives closer, and the directory it saves loads in
//! sift's `Embedder` with the vectors the trained model computes. Gradient caching gives the
//! plain backward pass's gradients.

mod support;

use candle_core::{Device, Tensor, Var};
use sift_models::batch::Batch;
use sift_models::{ModelDir, TextRole, TextTokenizer};
use sift_train::bi_encoder::{contrastive_loss, DropoutRates, TrainableBiEncoder};
use sift_train::grad_cache::{contrastive_gradients, ContrastiveStep, GroupTeacher};
use sift_train::optim::AdamW;
use sift_train::recipe::{Distillation, TeacherModel};
use sift_train::units::max_per_document;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

struct Fixture {
    base: ModelDir,
    tokenizer: TextTokenizer,
    texts: Vec<String>,
    reference: Vec<Vec<f32>>,
}

fn load(name: &str) -> Fixture {
    let dir = support::golden_fixture(name);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let base = ModelDir::open(&dir).unwrap();
    let max_length = expected["max_length"].as_u64().unwrap() as usize;
    let tokenizer =
        TextTokenizer::from_dir(&dir, max_length, base.config.type_vocab_size > 1).unwrap();
    Fixture {
        texts: serde_json::from_value(expected["texts"].clone()).unwrap(),
        reference: serde_json::from_value(expected["embeddings"].clone()).unwrap(),
        base,
        tokenizer,
    }
}

fn embed(model: &TrainableBiEncoder, f: &Fixture, texts: &[String], train: bool) -> Tensor {
    let encoded: Vec<_> = texts
        .iter()
        .map(|t| f.tokenizer.encode(t).unwrap())
        .collect();
    let rows: Vec<_> = encoded.iter().collect();
    let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu).unwrap();
    model.embed(&batch, train, None).unwrap()
}

#[test]
fn before_training_it_embeds_as_sentence_transformers_does() {
    for name in ["bert-encoder", "xlmr-encoder", "mpnet-encoder"] {
        let f = load(name);
        let model = TrainableBiEncoder::from_base(&f.base).unwrap();
        for train in [true, false] {
            let got: Vec<Vec<f32>> = embed(&model, &f, &f.texts, train).to_vec2().unwrap();
            for (g, want) in got.iter().zip(&f.reference) {
                let c = cosine(g, want);
                assert!(c > 0.9999, "{name} (train kernels: {train}): cosine {c}");
            }
        }
    }
}

#[test]
fn contrastive_steps_pull_positives_together_and_the_saved_directory_embeds_the_same() {
    let f = load("bert-encoder");
    let model = TrainableBiEncoder::from_base(&f.base).unwrap();
    // Pairs of the fixture's texts: query i's positive is text i + 1.
    let queries: Vec<String> = f.texts[..3].to_vec();
    let positives: Vec<String> = f.texts[1..4].to_vec();
    let loss_now = |m: &TrainableBiEncoder| -> f32 {
        let q = embed(m, &f, &queries, false);
        let d = embed(m, &f, &positives, false);
        contrastive_loss(&q, &d, 20.0, &[])
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let before = loss_now(&model);
    let mut opt = AdamW::new(model.variables(), 1e-3, 0.01).unwrap();
    for _ in 0..8 {
        let q = embed(&model, &f, &queries, true);
        let d = embed(&model, &f, &positives, true);
        let grads = contrastive_loss(&q, &d, 20.0, &[])
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<_> = opt
            .vars()
            .iter()
            .map(|(_, v)| grads.get(v).cloned())
            .collect();
        opt.step(&g).unwrap();
    }
    let after = loss_now(&model);
    assert!(after < before * 0.8, "loss {before} → {after}");
    // The evaluation kernels read the optimizer's updates (they share the variables' storage).
    let trained: Vec<Vec<f32>> = embed(&model, &f, &f.texts, true).to_vec2().unwrap();
    let evaluated: Vec<Vec<f32>> = embed(&model, &f, &f.texts, false).to_vec2().unwrap();
    for (t, e) in trained.iter().zip(&evaluated) {
        assert!(cosine(t, e) > 0.99999, "training vs evaluation kernels");
    }

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tuned");
    model
        .save_sentence_transformers(&dir, &f.base.path, f.tokenizer.max_length())
        .unwrap();
    for file in [
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let embedder = support::candle_embedder(&dir);
    assert!(embedder.normalizes());
    let saved = embedder.embed(&f.texts, TextRole::Raw).unwrap();
    let trained: Vec<Vec<f32>> = embed(&model, &f, &f.texts, false).to_vec2().unwrap();
    for ((s, t), base) in saved.iter().zip(&trained).zip(&f.reference) {
        let c = cosine(s, t);
        assert!(c > 0.99999, "saved vs trained: cosine {c}");
        assert!(cosine(s, base) < 0.9999, "training changed nothing");
    }
}

/// Parameter gradients of `step` by gradient caching and by a plain backward pass through the
/// same forward passes (the same dropout masks), after checking the two losses agree.
fn cached_and_plain(
    model: &TrainableBiEncoder,
    vars: &[Var],
    step: &ContrastiveStep,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let (q, d) = step.embed_with_graph(model).unwrap();
    let scores = max_per_document(&q.matmul(&d.t().unwrap()).unwrap(), step.spans).unwrap();
    let loss = step.loss_of_scores(&scores).unwrap();
    let plain = loss.backward().unwrap();
    let (cached_loss, cached) = contrastive_gradients(model, vars, step).unwrap();
    let plain_loss = f64::from(loss.to_scalar::<f32>().unwrap());
    assert!(
        (cached_loss - plain_loss).abs() < 1e-4,
        "{cached_loss} vs {plain_loss}"
    );
    let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    vars.iter()
        .zip(&cached)
        .filter_map(|(v, c)| match (plain.get(v), c) {
            (Some(p), Some(c)) => Some((flat(p), flat(c))),
            (p, c) => {
                assert!(p.is_none() && c.is_none(), "a gradient on one side only");
                None
            }
        })
        .collect()
}

#[test]
fn cached_gradients_equal_the_plain_backward_pass() {
    let f = load("bert-encoder");
    let model = TrainableBiEncoder::from_base(&f.base).unwrap();
    let vars: Vec<Var> = model.variables().into_iter().map(|(_, v)| v).collect();
    let queries: Vec<String> = f.texts[..3].to_vec();
    // 24 units (two passes of 16 and more): document j is 8 of them, scored by its best one.
    let units: Vec<String> = (0..24)
        .map(|i| format!("{} {i}", f.texts[i % f.texts.len()]))
        .collect();
    let encode = |texts: &[String]| -> Vec<_> {
        texts
            .iter()
            .map(|t| f.tokenizer.encode(t).unwrap())
            .collect()
    };
    let (q_enc, d_enc) = (encode(&queries), encode(&units));
    let step = |dropout| ContrastiveStep {
        queries: &q_enc,
        units: &d_enc,
        spans: &[(0, 8), (8, 8), (16, 8)],
        not_negatives: &[(0, 2)],
        scale: 20.0,
        dropout,
        teacher: None,
    };
    let rates = DropoutRates {
        hidden: 0.1,
        attention: 0.1,
    };
    let without = cached_and_plain(&model, &vars, &step(None));
    let with = cached_and_plain(&model, &vars, &step(Some((rates, 11))));
    for grads in [&without, &with] {
        assert!(
            grads.len() > vars.len() / 2,
            "{} of {} variables",
            grads.len(),
            vars.len()
        );
        for (p, c) in grads.iter() {
            let scale = p.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
            for (a, b) in p.iter().zip(c) {
                assert!(
                    (a - b).abs() <= 1e-3 * scale,
                    "{a} vs {b} (largest {scale})"
                );
            }
        }
    }
    // Dropout did change the forward pass (the masks reached the model).
    let moved = without
        .iter()
        .zip(&with)
        .any(|((a, _), (b, _))| a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-4));
    assert!(moved, "dropout left every gradient unchanged");
}

/// The trainer's gradients are the reference implementation's: one contrastive step (best-unit
/// document scores, a left-out pair, scale 20) through sift's differentiable kernels, by a
/// plain backward pass and by gradient caching, against torch's gradients of the same step on
/// the same weights (scripts/golden/make_gradient_fixtures.py). The forward pass alone cannot
/// show this: a wrong backward pass still lowers the loss, only towards a worse model.
#[test]
fn gradients_equal_the_reference_implementations() {
    for name in ["bert-encoder", "mpnet-encoder", "xlmr-encoder"] {
        let f = load(name);
        let step: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(support::golden_fixture(name).join("gradients.json")).unwrap(),
        )
        .unwrap();
        let texts = |key: &str| -> Vec<_> {
            serde_json::from_value::<Vec<String>>(step[key].clone())
                .unwrap()
                .iter()
                .map(|t| f.tokenizer.encode(t).unwrap())
                .collect()
        };
        let (q_enc, d_enc) = (texts("queries"), texts("units"));
        let spans: Vec<(usize, usize)> = serde_json::from_value(step["spans"].clone()).unwrap();
        let not_negatives: Vec<(usize, usize)> =
            serde_json::from_value(step["not_negatives"].clone()).unwrap();
        let model = TrainableBiEncoder::from_base(&f.base).unwrap();
        let named = model.variables();
        let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
        let contrastive = ContrastiveStep {
            queries: &q_enc,
            units: &d_enc,
            spans: &spans,
            not_negatives: &not_negatives,
            scale: step["scale"].as_f64().unwrap(),
            dropout: None,
            teacher: None,
        };
        let names: Vec<String> = named.into_iter().map(|(n, _)| n).collect();
        let check = |contrastive: &ContrastiveStep, loss_key: &str, file: &str| {
            let (loss, cached) = contrastive_gradients(&model, &vars, contrastive).unwrap();
            let want_loss = step[loss_key].as_f64().unwrap();
            assert!(
                (loss - want_loss).abs() < 1e-4,
                "{name} {loss_key}: {loss} vs torch {want_loss}"
            );
            // The plain backward pass equals the cached one (checked inside); torch judges the
            // cached one, which is what training runs.
            cached_and_plain(&model, &vars, contrastive);
            let got: Vec<_> = names.iter().cloned().zip(cached).collect();
            support::assert_gradients_equal(name, &got, &support::reference_gradients(name, file));
        };
        check(&contrastive, "loss", "gradients.safetensors");
        // With a teacher (`train-embedder --teacher`): the distillation term over each query's
        // own group.
        if step.get("columns").is_some() {
            let matrix =
                |key: &str| -> Vec<Vec<f32>> { serde_json::from_value(step[key].clone()).unwrap() };
            let columns: Vec<Vec<u32>> = serde_json::from_value(step["columns"].clone()).unwrap();
            let logits = Tensor::new(matrix("teacher"), &Device::Cpu).unwrap();
            let columns = Tensor::new(columns, &Device::Cpu).unwrap();
            let distillation = Distillation {
                teacher: TeacherModel::Reranker("unused".into()),
                weight: step["distill_weight"].as_f64().unwrap(),
                temperature: step["temperature"].as_f64().unwrap(),
            };
            let distilled = ContrastiveStep {
                teacher: Some(GroupTeacher {
                    logits: &logits,
                    columns: &columns,
                    distillation: &distillation,
                }),
                ..contrastive
            };
            check(
                &distilled,
                "distilled_loss",
                "gradients-distilled.safetensors",
            );
        }
    }
}
