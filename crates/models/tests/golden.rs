//! sift's forward passes against Hugging Face transformers on tiny random-weight models of every
//! supported architecture and head (fixtures from scripts/golden/make_fixtures.py).

mod common;

use common::{assert_close, fixture, floats, read_json};
use sift_models::{
    CrossEncoder, Embedder, EmbedderOptions, EngineChoice, EngineOptions, Precision,
    RerankerOptions, TextRole,
};

const TOLERANCE: f32 = 1e-4;

fn engine(engine: EngineChoice) -> EngineOptions {
    EngineOptions {
        engine,
        ..Default::default()
    }
}

fn check_encoder(name: &str, choice: EngineChoice) {
    let dir = fixture("golden").join(name);
    let expected = read_json(dir.join("expected.json"));
    let texts: Vec<String> = serde_json::from_value(expected["texts"].clone()).unwrap();
    let options = EmbedderOptions {
        engine: engine(choice),
        ..Default::default()
    };
    let embedder = Embedder::load(&dir, options).unwrap();
    assert_eq!(
        embedder.pooling().name(),
        expected["pooling"].as_str().unwrap()
    );
    assert_eq!(
        embedder.normalizes(),
        expected["normalize"].as_bool().unwrap()
    );

    let encoded = embedder.encode(&texts, TextRole::Raw).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(expected["ids"].clone()).unwrap();
    let got_ids: Vec<Vec<u32>> = encoded.iter().map(|e| e.ids.clone()).collect();
    assert_eq!(got_ids, want_ids, "{name}: token ids");
    assert!(
        got_ids
            .iter()
            .any(|ids| ids.len() == expected["max_length"].as_u64().unwrap() as usize),
        "{name}: the fixture should exercise truncation"
    );

    // Token states of the whole padded batch, compared over real tokens.
    let (hidden, batch) = embedder.hidden_states(&encoded).unwrap();
    for (i, want) in expected["hidden"].as_array().unwrap().iter().enumerate() {
        let len = batch.lengths[i];
        let got: Vec<f32> = hidden
            .get(i)
            .unwrap()
            .narrow(0, 0, len)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_close(
            &got,
            &floats(want),
            TOLERANCE,
            &format!("{name} hidden[{i}]"),
        );
    }

    let embeddings = embedder.embed(&texts, TextRole::Raw).unwrap();
    for (i, want) in expected["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_close(
            &embeddings[i],
            &floats(want),
            TOLERANCE,
            &format!("{name} embedding[{i}]"),
        );
    }
}

fn check_classifier(name: &str, choice: EngineChoice) {
    let dir = fixture("golden").join(name);
    let expected = read_json(dir.join("expected.json"));
    let pairs: Vec<(String, String)> = serde_json::from_value(expected["pairs"].clone()).unwrap();
    let options = RerankerOptions {
        max_length: Some(expected["max_length"].as_u64().unwrap() as usize),
        engine: engine(choice),
        ..Default::default()
    };
    let model = CrossEncoder::load(&dir, options).unwrap();

    let mut want_logits = Vec::new();
    for (i, (query, doc)) in pairs.iter().enumerate() {
        let encoded = model.encode(query, &[doc]).unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(expected["ids"][i].clone()).unwrap();
        let want_types: Vec<u32> = serde_json::from_value(expected["type_ids"][i].clone()).unwrap();
        assert_eq!(encoded[0].ids, want_ids, "{name}: pair {i} ids");
        if model.model_dir().config.type_vocab_size > 1 {
            assert_eq!(encoded[0].type_ids, want_types, "{name}: pair {i} type ids");
        }
        want_logits.push(floats(&expected["logits"][i]));
    }

    // Padded batch of every pair at once.
    let encoded: Vec<_> = pairs
        .iter()
        .map(|(q, d)| model.encode(q, &[d]).unwrap().remove(0))
        .collect();
    let logits = model.logits(&encoded).unwrap();
    for (i, want) in want_logits.iter().enumerate() {
        assert_close(&logits[i], want, TOLERANCE, &format!("{name} logits[{i}]"));
    }

    // The public scoring path agrees with the raw logits and the label convention.
    for (i, (query, doc)) in pairs.iter().enumerate() {
        let s = model.score(query, &[doc]).unwrap()[0];
        let want = want_logits[i].last().copied().unwrap();
        assert!((s.logit - want).abs() <= TOLERANCE, "{name}: score logit");
        assert!((0.0..=1.0).contains(&s.score));
    }
}

fn int8() -> EngineOptions {
    EngineOptions {
        engine: EngineChoice::Onnx,
        precision: Precision::Int8,
        ..Default::default()
    }
}

/// Worst cosine between int8 sentence embeddings and transformers' f32 ones.
const INT8_MIN_COSINE: f32 = 0.99;
/// Largest int8 logit error, relative to the largest f32 logit magnitude (at least 1).
const INT8_LOGIT_TOLERANCE: f32 = 0.05;

/// The int8 graph (calibration, smoothing, per-row activation codes) on every architecture:
/// close to transformers, and really quantized.
fn check_encoder_int8(name: &str) {
    let dir = fixture("golden").join(name);
    let expected = read_json(dir.join("expected.json"));
    let texts: Vec<String> = serde_json::from_value(expected["texts"].clone()).unwrap();
    let options = EmbedderOptions {
        engine: int8(),
        ..Default::default()
    };
    let embedder = Embedder::load(&dir, options).unwrap();
    assert_eq!(embedder.engine().name(), "onnx-int8");
    let got = embedder.embed(&texts, TextRole::Raw).unwrap();
    let mut largest_difference = 0f32;
    for (i, want) in expected["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let want = floats(want);
        let dot: f32 = got[i].iter().zip(&want).map(|(a, b)| a * b).sum();
        let norms = got[i].iter().map(|a| a * a).sum::<f32>().sqrt()
            * want.iter().map(|b| b * b).sum::<f32>().sqrt();
        let cosine = dot / norms;
        assert!(
            cosine >= INT8_MIN_COSINE,
            "{name} int8 embedding[{i}]: cosine {cosine}"
        );
        for (a, b) in got[i].iter().zip(&want) {
            largest_difference = largest_difference.max((a - b).abs());
        }
    }
    assert!(largest_difference > 1e-5, "{name}: int8 output equals f32");
}

fn check_classifier_int8(name: &str) {
    let dir = fixture("golden").join(name);
    let expected = read_json(dir.join("expected.json"));
    let pairs: Vec<(String, String)> = serde_json::from_value(expected["pairs"].clone()).unwrap();
    let options = RerankerOptions {
        max_length: Some(expected["max_length"].as_u64().unwrap() as usize),
        engine: int8(),
        ..Default::default()
    };
    let model = CrossEncoder::load(&dir, options).unwrap();
    assert_eq!(model.engine().name(), "onnx-int8");
    let encoded: Vec<_> = pairs
        .iter()
        .map(|(q, d)| model.encode(q, &[d]).unwrap().remove(0))
        .collect();
    let logits = model.logits(&encoded).unwrap();
    let want: Vec<Vec<f32>> = (0..pairs.len())
        .map(|i| floats(&expected["logits"][i]))
        .collect();
    let scale = want.iter().flatten().fold(1f32, |m, v| m.max(v.abs()));
    let worst = logits
        .iter()
        .flatten()
        .zip(want.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= INT8_LOGIT_TOLERANCE * scale,
        "{name} int8 logits: max error {worst} (largest logit {scale})"
    );
    assert!(worst > 1e-6, "{name}: int8 logits equal f32");
}

/// One test per architecture, head and engine: candle and the ONNX Runtime graph sift writes
/// must both reproduce transformers.
macro_rules! golden {
    ($($test:ident: $check:ident($fixture:literal, $engine:ident);)*) => {
        $(#[test]
        fn $test() {
            $check($fixture, EngineChoice::$engine);
        })*
    };
}

golden! {
    bert_encoder_matches_transformers: check_encoder("bert-encoder", Candle);
    xlm_roberta_encoder_matches_transformers: check_encoder("xlmr-encoder", Candle);
    mpnet_encoder_matches_transformers: check_encoder("mpnet-encoder", Candle);
    bert_cross_encoder_matches_transformers: check_classifier("bert-classifier", Candle);
    // Stored in f16: also proves half-precision checkpoints load.
    xlm_roberta_cross_encoder_matches_transformers: check_classifier("xlmr-classifier", Candle);
    // Two labels, stored as pytorch_model.bin: also proves the pickle fallback.
    mpnet_cross_encoder_matches_transformers: check_classifier("mpnet-classifier", Candle);
    onnx_bert_encoder_matches_transformers: check_encoder("bert-encoder", Onnx);
    onnx_xlm_roberta_encoder_matches_transformers: check_encoder("xlmr-encoder", Onnx);
    onnx_mpnet_encoder_matches_transformers: check_encoder("mpnet-encoder", Onnx);
    onnx_bert_cross_encoder_matches_transformers: check_classifier("bert-classifier", Onnx);
    onnx_xlm_roberta_cross_encoder_matches_transformers: check_classifier("xlmr-classifier", Onnx);
    onnx_mpnet_cross_encoder_matches_transformers: check_classifier("mpnet-classifier", Onnx);
}

#[test]
fn int8_bert_encoder_follows_transformers() {
    check_encoder_int8("bert-encoder");
}

#[test]
fn int8_xlm_roberta_encoder_follows_transformers() {
    check_encoder_int8("xlmr-encoder");
}

#[test]
fn int8_mpnet_encoder_follows_transformers() {
    check_encoder_int8("mpnet-encoder");
}

#[test]
fn int8_bert_cross_encoder_follows_transformers() {
    check_classifier_int8("bert-classifier");
}

#[test]
fn int8_xlm_roberta_cross_encoder_follows_transformers() {
    check_classifier_int8("xlmr-classifier");
}

#[test]
fn int8_mpnet_cross_encoder_follows_transformers() {
    check_classifier_int8("mpnet-classifier");
}
