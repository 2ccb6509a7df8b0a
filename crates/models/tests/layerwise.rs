//! Layerwise cross-encoders (`sift train-reranker --layerwise`): every exit's scores against
//! transformers running a truncated copy of the model (fixtures from
//! scripts/golden/make_layerwise_fixtures.py) on both engines, cascades that finish exactly
//! the candidates they say they kept, and bad exits refused.

mod common;

use common::{assert_close, fixture, floats, read_json};
use sift_models::rerank::{
    prepare, score_prepared, sort_by_score, Cascade, LongDocumentPolicy, RerankScore,
};
use sift_models::{
    CrossEncoder, EngineChoice, EngineOptions, ModelError, Precision, Reranker, RerankerOptions,
};

const TOLERANCE: f32 = 1e-4;
const FAMILIES: [&str; 3] = ["bert", "xlmr", "mpnet"];
const LAYERS: usize = 3;

fn engine(engine: EngineChoice, precision: Precision) -> EngineOptions {
    EngineOptions {
        engine,
        precision,
        ..Default::default()
    }
}

fn load(
    name: &str,
    engine: EngineOptions,
    exit_layer: Option<usize>,
    cascade: Option<Cascade>,
) -> Result<CrossEncoder, ModelError> {
    let dir = fixture("layerwise").join(name);
    CrossEncoder::load(
        &dir,
        RerankerOptions {
            max_length: Some(32),
            engine,
            exit_layer,
            cascade,
            // Small batches, so the stages of a cascade batch pairs differently.
            max_batch_tokens: Some(48),
            ..Default::default()
        },
    )
}

fn pairs(name: &str) -> Vec<(String, String)> {
    let expected = read_json(fixture("layerwise").join(name).join("expected.json"));
    serde_json::from_value(expected["pairs"].clone()).unwrap()
}

fn logits(model: &CrossEncoder, pairs: &[(String, String)]) -> Vec<f32> {
    let encoded: Vec<_> = pairs
        .iter()
        .map(|(q, d)| model.encode(q, &[d]).unwrap().remove(0))
        .collect();
    model
        .score_pairs(&encoded, &mut |_| {})
        .unwrap()
        .iter()
        .map(|s| s.logit)
        .collect()
}

fn check_exits(choice: EngineChoice) {
    for name in FAMILIES {
        let expected = read_json(fixture("layerwise").join(name).join("expected.json"));
        let pairs = pairs(name);
        let model = load(name, engine(choice, Precision::F32), None, None).unwrap();
        assert_eq!(model.exit_layers(), vec![1, 2, LAYERS], "{name}");
        let want_at = |layer: usize| -> Vec<f32> {
            expected["exit_logits"][layer.to_string()]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| floats(row)[0])
                .collect()
        };
        for layer in 1..=LAYERS {
            let want = want_at(layer);
            let model = load(name, engine(choice, Precision::F32), Some(layer), None).unwrap();
            let got = logits(&model, &pairs);
            assert_close(&got, &want, TOLERANCE, &format!("{name} exit {layer}"));
        }
        // Without an exit the model scores with its last layer, as transformers loads it.
        assert_close(&logits(&model, &pairs), &want_at(LAYERS), TOLERANCE, name);
    }
}

#[test]
fn every_exit_matches_transformers_on_a_truncated_copy_candle() {
    check_exits(EngineChoice::Candle);
}

#[test]
fn every_exit_matches_transformers_on_a_truncated_copy_onnx() {
    check_exits(EngineChoice::Onnx);
}

/// The documents of every fixture pair, reranked for one query.
fn documents(name: &str) -> (String, Vec<String>) {
    let pairs = pairs(name);
    let mut docs: Vec<String> = pairs.iter().map(|(_, d)| d.clone()).collect();
    docs.extend(pairs.iter().map(|(q, _)| q.clone()));
    (pairs[0].0.clone(), docs)
}

fn document_scores(model: &CrossEncoder, query: &str, docs: &[String]) -> Vec<RerankScore> {
    let policy = LongDocumentPolicy::default();
    let prepared = prepare(model, query, docs, &policy).unwrap();
    score_prepared(model, &prepared, &mut |_| {}).unwrap()
}

fn check_cascade(precision: Precision, tolerance: f32) {
    for choice in [EngineChoice::Candle, EngineChoice::Onnx] {
        if precision == Precision::Int8 && choice == EngineChoice::Candle {
            continue;
        }
        for name in FAMILIES {
            let (query, docs) = documents(name);
            let opts = engine(choice, precision);
            for exit in [1, 2] {
                let keep = 4;
                let cascade = Cascade { exit, keep };
                let early = load(name, opts, Some(exit), None).unwrap();
                let full = load(name, opts, None, None).unwrap();
                let model = load(name, opts, None, Some(cascade)).unwrap();
                let early = document_scores(&early, &query, &docs);
                let full = document_scores(&full, &query, &docs);
                let got = document_scores(&model, &query, &docs);

                // Kept: the `keep` best by the early exit; finished: their full-model score.
                let mut by_early = early.clone();
                sort_by_score(&mut by_early);
                let kept: Vec<usize> = by_early[..keep].iter().map(|s| s.index).collect();
                let what = format!("{name} {choice:?} {precision:?} cascade {cascade}");
                for s in &got {
                    let i = s.index;
                    if kept.contains(&i) {
                        assert!(!s.dropped, "{what}: document {i} was kept");
                        assert_close(&[s.logit], &[full[i].logit], tolerance, &what);
                    } else {
                        assert!(s.dropped, "{what}: document {i} was not kept");
                        assert_close(&[s.logit], &[early[i].logit], tolerance, &what);
                    }
                }
                // Every finished document ranks above every dropped one.
                let mut ranked = got.clone();
                sort_by_score(&mut ranked);
                let finished: Vec<usize> = ranked[..keep].iter().map(|s| s.index).collect();
                let mut want_kept = kept.clone();
                want_kept.sort();
                let mut finished_sorted = finished.clone();
                finished_sorted.sort();
                assert_eq!(finished_sorted, want_kept, "{what}");
                assert!(ranked[keep..].iter().all(|s| s.dropped), "{what}");
            }
        }
    }
}

#[test]
fn a_cascade_finishes_exactly_the_candidates_it_kept() {
    check_cascade(Precision::F32, TOLERANCE);
}

/// Int8 graphs of every exit and stage reuse the whole model's calibration; the cascade's
/// finished scores are the int8 full model's up to the int8 error of the saved states.
#[test]
fn int8_cascades_keep_and_finish_like_int8_scoring() {
    check_cascade(Precision::Int8, 0.05);
}

/// A cascade from exit 0 scores the leading candidates with the full model and leaves the rest
/// in their order after them — on a layerwise model and on a plain cross-encoder alike.
#[test]
fn a_cascade_from_the_candidates_order_scores_the_leading_ones() {
    let f32 = engine(EngineChoice::Candle, Precision::F32);
    let plain = |cascade| {
        CrossEncoder::load(
            fixture("golden").join("bert-classifier"),
            RerankerOptions {
                max_length: Some(32),
                engine: f32,
                cascade,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (query, docs) = documents("bert");
    let keep = 3;
    let cascade = Some(Cascade { exit: 0, keep });
    for (full, model) in [
        (
            load("bert", f32, None, None).unwrap(),
            load("bert", f32, None, cascade).unwrap(),
        ),
        (plain(None), plain(cascade)),
    ] {
        let full = document_scores(&full, &query, &docs);
        let mut got = document_scores(&model, &query, &docs);
        assert_eq!(got.len(), docs.len());
        for (i, (g, f)) in got.iter().zip(&full).enumerate() {
            assert_eq!(g.dropped, i >= keep, "document {i}");
            if i < keep {
                assert_close(&[g.logit], &[f.logit], TOLERANCE, "a leading document");
            }
        }
        let lowest_kept = got[..keep]
            .iter()
            .map(|s| s.logit)
            .fold(f32::INFINITY, f32::min);
        assert!(got[keep..]
            .iter()
            .all(|s| s.logit == lowest_kept && s.score.is_finite()));
        sort_by_score(&mut got);
        let order: Vec<usize> = got.iter().map(|s| s.index).collect();
        assert_eq!(&order[keep..], &(keep..docs.len()).collect::<Vec<_>>()[..]);
    }
}

#[test]
fn finishing_saved_states_equals_one_pass() {
    for name in FAMILIES {
        for choice in [EngineChoice::Candle, EngineChoice::Onnx] {
            let model = load(name, engine(choice, Precision::F32), None, None).unwrap();
            let (query, docs) = documents(name);
            let encoded = model.encode(&query, &docs).unwrap();
            let whole: Vec<f32> = model
                .score_pairs(&encoded, &mut |_| {})
                .unwrap()
                .iter()
                .map(|s| s.logit)
                .collect();
            for exit in [1, 2] {
                let (_, states) = model
                    .score_pairs_partway(&encoded, exit, &mut |_| {})
                    .unwrap();
                // Finished in reverse order: other batch neighbours, other padding.
                let rows: Vec<_> = states.iter().rev().collect();
                let mut finished: Vec<f32> = model
                    .finish_pairs(&rows, exit, &mut |_| {})
                    .unwrap()
                    .iter()
                    .map(|s| s.logit)
                    .collect();
                finished.reverse();
                assert_close(
                    &finished,
                    &whole,
                    TOLERANCE,
                    &format!("{name} {choice:?} from exit {exit}"),
                );
            }
        }
    }
}

#[test]
fn bad_exits_and_cascades_are_refused() {
    let f32 = engine(EngineChoice::Candle, Precision::F32);
    let message = |r: Result<CrossEncoder, ModelError>| match r {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    for bad in [0, 4, 9] {
        let e = message(load("bert", f32, Some(bad), None));
        assert!(e.contains("[1, 2, 3]"), "{e}");
    }
    let e = message(load("bert", f32, None, Some(Cascade { exit: 3, keep: 2 })));
    assert!(e.contains("not an early exit"), "{e}");
    let e = message(load(
        "bert",
        f32,
        Some(2),
        Some(Cascade { exit: 1, keep: 2 }),
    ));
    assert!(e.contains("exclude each other"), "{e}");

    // An ordinary cross-encoder has its last layer only.
    let plain = fixture("golden").join("bert-classifier");
    let options = |exit_layer, cascade| RerankerOptions {
        engine: f32,
        exit_layer,
        cascade,
        ..Default::default()
    };
    let e = message(CrossEncoder::load(&plain, options(Some(1), None)));
    assert!(e.contains("--layerwise"), "{e}");
    let e = message(CrossEncoder::load(
        &plain,
        options(None, Some(Cascade { exit: 1, keep: 3 })),
    ));
    assert!(e.contains("--layerwise"), "{e}");
    assert!(CrossEncoder::load(&plain, options(Some(2), None)).is_ok());
    let model = CrossEncoder::load(&plain, options(None, None)).unwrap();
    let encoded = model.encode("q", &["d"]).unwrap();
    assert!(model.score_pairs_partway(&encoded, 1, &mut |_| {}).is_err());

    // A config naming a layer the model lacks is refused when read.
    let tmp = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        std::fs::copy(
            fixture("layerwise").join("bert").join(f),
            tmp.path().join(f),
        )
        .unwrap();
    }
    let path = tmp.path().join("config.json");
    let mut config = read_json(path.clone());
    config["sift_layerwise"]["exit_layers"] = serde_json::json!([1, 7]);
    std::fs::write(&path, config.to_string()).unwrap();
    let e = message(CrossEncoder::load(tmp.path(), options(None, None)));
    assert!(e.contains("layer 7"), "{e}");
}

/// A latency budget measures the model at load and plans each query: a budget nothing
/// exceeds runs every layer, one nothing fits runs the shallowest exit, one with room for a
/// few candidates runs the full model on the leading ones.
#[test]
fn a_budget_plans_from_the_measured_cost() {
    let f32 = engine(EngineChoice::Candle, Precision::F32);
    let with_budget = |ms: f64| {
        CrossEncoder::load(
            fixture("layerwise").join("bert"),
            RerankerOptions {
                max_length: Some(32),
                engine: f32,
                budget_ms: Some(ms),
                ..Default::default()
            },
        )
    };
    let (query, docs) = documents("bert");
    let full = document_scores(&load("bert", f32, None, None).unwrap(), &query, &docs);
    let first = document_scores(&load("bert", f32, Some(1), None).unwrap(), &query, &docs);

    let generous = with_budget(1e9).unwrap();
    let budget = generous.budget().unwrap();
    assert!(budget.cost.ms_per_token_layer > 0.0, "{budget:?}");
    assert_eq!(budget.exits, vec![1, 2, LAYERS]);
    let got = document_scores(&generous, &query, &docs);
    for (g, w) in got.iter().zip(&full) {
        assert_close(&[g.logit], &[w.logit], TOLERANCE, "generous budget");
    }

    let tight = with_budget(1e-9).unwrap();
    let policy = LongDocumentPolicy::default();
    let prepared = prepare(&tight, &query, &docs, &policy).unwrap();
    let choice = tight.budget().unwrap().choose_for(&prepared);
    assert_eq!(choice.plan, sift_models::rerank::RerankPlan::Exit(1));
    assert!(choice.estimated_ms > 1e-9, "over budget, and it says so");
    let got = document_scores(&tight, &query, &docs);
    for (g, w) in got.iter().zip(&first) {
        assert_close(&[g.logit], &[w.logit], TOLERANCE, "tight budget");
    }

    let message = |r: Result<CrossEncoder, ModelError>| match r {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(message(with_budget(0.0)).contains("positive"));
    assert!(message(with_budget(f64::NAN)).contains("positive"));

    // Room for the full model on the first two candidates only: they are scored, the rest
    // follow in their order — a plain cross-encoder takes a budget too.
    let plain = CrossEncoder::load(
        fixture("golden").join("bert-classifier"),
        RerankerOptions {
            max_length: Some(32),
            engine: f32,
            budget_ms: Some(100.0),
            ..Default::default()
        },
    )
    .unwrap();
    let measured = plain.budget().unwrap();
    assert_eq!(measured.exits.len(), 1, "{measured:?}");
    let prepared = prepare(&plain, &query, &docs, &policy).unwrap();
    let tokens = prepared.document_tokens();
    let last = *measured.exits.last().unwrap();
    let two = measured.cost.estimate(tokens[0] + tokens[1], last);
    let third = measured.cost.estimate(tokens[2], last);
    let room = sift_models::rerank::LatencyBudget::new(
        two + third / 2.0,
        measured.cost,
        measured.exits.clone(),
    )
    .unwrap();
    assert_eq!(
        room.choose_for(&prepared).plan,
        sift_models::rerank::RerankPlan::Cascade(Cascade { exit: 0, keep: 2 })
    );
    let both = CrossEncoder::load(
        fixture("layerwise").join("bert"),
        RerankerOptions {
            engine: f32,
            budget_ms: Some(100.0),
            exit_layer: Some(1),
            ..Default::default()
        },
    );
    assert!(message(both).contains("chooses the exit layer"));
}
