//! sift's LLM rerankers against the published recipes run by Hugging Face transformers, on tiny
//! random-weight decoders of every supported family (fixtures from
//! scripts/golden/make_llm_fixtures.py): token ids exactly, the answer tokens' logits at the
//! last position, the recipe's logit and score within 1e-4 (f32).

mod common;

use candle_core::Tensor;
use common::{assert_close, fixture, floats, read_json};
use sift_models::rerank::LlmDepth;
use sift_models::{Encoded, LlmReranker, ModelError, RerankTemplate, Reranker, RerankerOptions};

const TOLERANCE: f32 = 1e-4;

fn load(name: &str, case: &serde_json::Value, share_prefix: bool) -> LlmReranker {
    let options = RerankerOptions {
        max_length: Some(case["max_length"].as_u64().unwrap() as usize),
        template: Some(case["template"].as_str().unwrap().parse().unwrap()),
        prompt: case["prompt"].as_str().map(str::to_owned),
        share_prefix: Some(share_prefix),
        cutoff_layer: case["cutoff_layer"].as_u64().map(|n| n as usize),
        compress_ratio: case["compress_ratio"].as_u64().map(|n| n as usize),
        compress_layers: serde_json::from_value(case["compress_layers"].clone()).unwrap_or(None),
        ..Default::default()
    };
    LlmReranker::load(fixture("llm").join(name), options).unwrap()
}

fn check(name: &str, expected_from: &str) {
    let expected = read_json(fixture("llm").join(expected_from).join("expected.json"));
    for case in expected["cases"].as_array().unwrap() {
        let what = format!(
            "{name} {} prompt={} cutoff={}",
            case["template"], case["prompt"], case["cutoff_layer"]
        );
        let reranker = load(name, case, false);
        let pairs = case["pairs"].as_array().unwrap();
        let mut encoded = Vec::new();
        let mut any_cut = false;
        for p in pairs {
            let (enc, cut) = reranker
                .encode_pair(
                    p["query"].as_str().unwrap(),
                    p["document"].as_str().unwrap(),
                )
                .unwrap();
            let want: Vec<u32> = serde_json::from_value(p["input_ids"].clone()).unwrap();
            assert_eq!(enc.ids, want, "{what}: token ids of {}", p["query"]);
            any_cut |= cut;
            encoded.push(enc);
        }
        assert!(any_cut, "{what}: the fixture should exercise truncation");

        // One padded pass, no prefix sharing: the answer rows' logits.
        let rows = reranker.output_logits(&encoded).unwrap();
        for (row, p) in rows.iter().zip(pairs) {
            assert_close(row, &floats(&p["output_logits"]), TOLERANCE, &what);
        }
        // Through the seam, with and without the shared prefix.
        for share in [false, true] {
            let reranker = load(name, case, share);
            let scores = reranker.score_pairs(&encoded, &mut |_| {}).unwrap();
            let logits: Vec<f32> = scores.iter().map(|s| s.logit).collect();
            let probs: Vec<f32> = scores.iter().map(|s| s.score).collect();
            let want_logits: Vec<f32> = pairs
                .iter()
                .map(|p| p["logit"].as_f64().unwrap() as f32)
                .collect();
            let want_scores: Vec<f32> = pairs
                .iter()
                .map(|p| p["score"].as_f64().unwrap() as f32)
                .collect();
            assert_close(
                &logits,
                &want_logits,
                TOLERANCE,
                &format!("{what} share={share}: logit"),
            );
            assert_close(
                &probs,
                &want_scores,
                TOLERANCE,
                &format!("{what} share={share}: score"),
            );
        }
        // The server's per-request depth: the model loaded at full depth, viewed at this
        // case's cutoff and compression, scores as the model loaded with them.
        let depth = LlmDepth {
            cutoff_layer: case["cutoff_layer"].as_u64().map(|n| n as usize),
            compress_ratio: case["compress_ratio"].as_u64().map(|n| n as usize),
            compress_layers: serde_json::from_value(case["compress_layers"].clone())
                .unwrap_or(None),
        };
        if !depth.is_unset() {
            let mut full = case.clone();
            for key in ["cutoff_layer", "compress_ratio", "compress_layers"] {
                full[key] = serde_json::Value::Null;
            }
            let view = load(name, &full, true).with_depth(&depth).unwrap();
            let logits: Vec<f32> = view
                .score_pairs(&encoded, &mut |_| {})
                .unwrap()
                .iter()
                .map(|s| s.logit)
                .collect();
            let want: Vec<f32> = pairs
                .iter()
                .map(|p| p["logit"].as_f64().unwrap() as f32)
                .collect();
            assert_close(
                &logits,
                &want,
                TOLERANCE,
                &format!("{what}: per-request depth"),
            );
        }
    }
}

#[test]
fn qwen3_matches_the_qwen3_reranker_card_and_flagembedding() {
    check("qwen3", "qwen3");
}

#[test]
fn a_transformers_5_config_reads_like_a_4_config() {
    check("qwen3-v5-config", "qwen3");
}

#[test]
fn qwen2_sharded_checkpoint_matches_flagembedding() {
    check("qwen2", "qwen2");
}

#[test]
fn llama_with_biases_and_linear_rope_matches_flagembedding() {
    check("llama", "llama");
}

#[test]
fn mistral_bf16_with_a_sliding_window_matches_flagembedding() {
    check("mistral", "mistral");
}

#[test]
fn gemma_matches_flagembedding() {
    check("gemma", "gemma");
}

#[test]
fn gemma2_soft_capping_and_alternating_windows_match_flagembedding() {
    check("gemma2", "gemma2");
}

#[test]
fn gemma3_local_and_global_layers_match_flagembedding() {
    check("gemma3", "gemma3");
}

/// bge-reranker-v2.5-gemma2-lightweight's architecture against FlagEmbedding's own
/// LightweightLLMReranker: cutoff layers (with its first-head indexing), token compression at
/// ratios 2, 4 and 8 before one or two layers.
#[test]
fn lightweight_gemma2_matches_flagembedding_with_cutoffs_and_compression() {
    check("gemma2-lightweight", "gemma2-lightweight");
}

#[test]
fn minicpm_layerwise_matches_flagembedding_at_every_cutoff_layer() {
    check("minicpm-layerwise", "minicpm-layerwise");
}

/// A cutoff really skips the deeper layers: with NaN weights in layer 3, scores at cutoffs 1
/// and 2 are unchanged and finite, and only the full depth turns NaN.
#[test]
fn a_cutoff_layer_never_runs_the_layers_after_it() {
    let src = fixture("llm").join("minicpm-layerwise");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let weights = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name.starts_with("model.layers.2.") {
            *t = (t.ones_like().unwrap() * f64::NAN).unwrap();
        }
    }
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let expected = read_json(src.join("expected.json"));
    for case in expected["cases"].as_array().unwrap() {
        let cutoff = case["cutoff_layer"].as_u64().unwrap() as usize;
        let reranker = LlmReranker::load(
            dir.path(),
            RerankerOptions {
                max_length: Some(case["max_length"].as_u64().unwrap() as usize),
                cutoff_layer: Some(cutoff),
                ..Default::default()
            },
        )
        .unwrap();
        let p = &case["pairs"][0];
        let (enc, _) = reranker
            .encode_pair(
                p["query"].as_str().unwrap(),
                p["document"].as_str().unwrap(),
            )
            .unwrap();
        let got = reranker.score_pairs(&[enc], &mut |_| {}).unwrap()[0].logit;
        if cutoff < 3 {
            let want = p["logit"].as_f64().unwrap() as f32;
            assert!(
                (got - want).abs() <= TOLERANCE,
                "cutoff {cutoff}: {got} vs {want}"
            );
        } else {
            assert!(got.is_nan(), "the full depth runs the poisoned layer");
        }
    }
}

/// Pairs of two queries interleaved in one call (as the server's batcher merges requests) score
/// the same with the queries' prefixes shared as without, in input order.
#[test]
fn interleaved_queries_share_their_own_prefixes() {
    for name in ["qwen3", "gemma2", "minicpm-layerwise"] {
        let case = &read_json(fixture("llm").join(name).join("expected.json"))["cases"][0];
        let docs = [
            "Paris is the capital of France.",
            "Vaccines reduce the risk of severe disease.",
            "北京是中国的首都。",
        ];
        let queries = [
            "what is the capital of france?",
            "vaccines for older adults",
        ];
        let mut pairs = Vec::new();
        for d in docs {
            for q in queries {
                pairs.push(load(name, case, false).encode_pair(q, d).unwrap().0);
            }
        }
        let plain = load(name, case, false)
            .score_pairs(&pairs, &mut |_| {})
            .unwrap();
        let shared = load(name, case, true)
            .score_pairs(&pairs, &mut |_| {})
            .unwrap();
        for (i, (a, b)) in plain.iter().zip(&shared).enumerate() {
            assert_eq!((a.index, b.index), (i, i));
            assert!((a.logit - b.logit).abs() <= TOLERANCE, "{name} pair {i}");
        }
    }
}

/// Prefix keys and values reused for every row equal one pass over the whole sequences, for
/// every family (windows, soft-capping and rotary bases included), at ragged suffix lengths.
#[test]
fn a_shared_prefix_equals_one_pass_over_the_whole_sequence() {
    for name in [
        "qwen3", "qwen2", "llama", "mistral", "gemma", "gemma2", "gemma3",
    ] {
        let case = &read_json(fixture("llm").join(name).join("expected.json"))["cases"][0];
        let reranker = load(name, case, true);
        let decoder = reranker.decoder();
        let prefix: Vec<u32> = (0..13).map(|i| 40 + i * 7).collect();
        let suffixes: Vec<Vec<u32>> = vec![
            vec![5, 9, 200, 31],
            vec![77],
            (0..11).map(|i| 100 + i).collect(),
        ];
        let rows: Vec<Encoded> = suffixes
            .iter()
            .map(|s| {
                let ids: Vec<u32> = prefix.iter().chain(s).copied().collect();
                Encoded {
                    type_ids: vec![0; ids.len()],
                    ids,
                }
            })
            .collect();
        let whole = reranker.output_logits(&rows).unwrap();

        let cache = decoder
            .prefix_cache(&prefix, decoder.config().num_layers())
            .unwrap();
        let width = suffixes.iter().map(Vec::len).max().unwrap();
        let mut ids = vec![0u32; suffixes.len() * width];
        for (i, s) in suffixes.iter().enumerate() {
            ids[i * width..i * width + s.len()].copy_from_slice(s);
        }
        let ids = Tensor::from_vec(ids, (suffixes.len(), width), decoder.device()).unwrap();
        let lengths: Vec<usize> = suffixes.iter().map(Vec::len).collect();
        let split = decoder
            .last_token_logits(&ids, &lengths, Some(&cache), decoder.config().num_layers())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in whole.iter().zip(&split) {
            assert_close(
                a,
                b,
                TOLERANCE,
                &format!("{name}: prefix + suffix vs one pass"),
            );
        }
    }
}

#[test]
fn bad_templates_lengths_and_inputs_are_errors() {
    let dir = fixture("llm").join("qwen3");
    assert!("chatgpt".parse::<RerankTemplate>().is_err());
    let too_short = LlmReranker::load(
        &dir,
        RerankerOptions {
            max_length: Some(10),
            template: Some(RerankTemplate::Qwen3),
            ..Default::default()
        },
    );
    assert!(matches!(too_short, Err(ModelError::InvalidInput(_))));
    let r = LlmReranker::load(&dir, RerankerOptions::default()).unwrap();
    assert_eq!(r.template(), RerankTemplate::Qwen3);
    assert!(matches!(
        r.encode_pair("  ", "doc"),
        Err(ModelError::InvalidInput(_))
    ));
    assert!(matches!(
        r.encode_pair("q", ""),
        Err(ModelError::InvalidInput(_))
    ));
    // Cutoff layers: only layerwise models, only where they have heads.
    let layerwise = fixture("llm").join("minicpm-layerwise");
    for bad in [0, 4, 100] {
        let e = LlmReranker::load(
            &layerwise,
            RerankerOptions {
                cutoff_layer: Some(bad),
                ..Default::default()
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("1..=3"), "{e}");
    }
    let e = LlmReranker::load(
        &dir,
        RerankerOptions {
            cutoff_layer: Some(1),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("layerwise"), "{e}");
    // Token compression: only the lightweight model, only FlagEmbedding's ratios, only before
    // a layer that exists (and never before the first).
    let lightweight = fixture("llm").join("gemma2-lightweight");
    for (model, ratio, layers, want) in [
        (&lightweight, 3, None, "1, 2, 4 or 8"),
        (&lightweight, 2, Some(vec![0]), "out of range"),
        (&lightweight, 2, Some(vec![4]), "out of range"),
        (&lightweight, 1, Some(vec![2]), "ratio above 1"),
        (&layerwise, 2, Some(vec![1]), "lightweight"),
    ] {
        let e = LlmReranker::load(
            model,
            RerankerOptions {
                compress_ratio: Some(ratio),
                compress_layers: layers,
                ..Default::default()
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains(want), "{e}");
    }
    // The lightweight model's cutoffs: layers with a head.
    let r = LlmReranker::load(
        &lightweight,
        RerankerOptions {
            cutoff_layer: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (r.template(), r.num_layers()),
        (RerankTemplate::BgeLightweight, 2)
    );
    // Per-request depth views refuse what loading refuses, and a plain model refuses any.
    let full = LlmReranker::load(&layerwise, RerankerOptions::default()).unwrap();
    let at = |cutoff| LlmDepth {
        cutoff_layer: Some(cutoff),
        ..Default::default()
    };
    let e = full.with_depth(&at(4)).err().unwrap().to_string();
    assert!(e.contains("1..=3"), "{e}");
    assert_eq!(
        full.with_depth(&at(2)).unwrap().model_dir().name(),
        full.model_dir().name()
    );
    let e = full
        .with_depth(&LlmDepth {
            compress_ratio: Some(2),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("lightweight"), "{e}");
    let plain = LlmReranker::load(&dir, RerankerOptions::default()).unwrap();
    for depth in [
        at(1),
        LlmDepth {
            compress_ratio: Some(1),
            ..Default::default()
        },
    ] {
        let e = plain.with_depth(&depth).err().unwrap().to_string();
        assert!(e.contains("layerwise"), "{e}");
    }
    // A request's ratio 1 turns off the compression the model was loaded with.
    let compressed = LlmReranker::load(
        &lightweight,
        RerankerOptions {
            compress_ratio: Some(2),
            compress_layers: Some(vec![2]),
            ..Default::default()
        },
    )
    .unwrap();
    let plain_lightweight = LlmReranker::load(&lightweight, RerankerOptions::default()).unwrap();
    let off = compressed
        .with_depth(&LlmDepth {
            compress_ratio: Some(1),
            ..Default::default()
        })
        .unwrap();
    let pair = plain_lightweight
        .encode_pair(
            "what is the capital",
            "Paris is the capital and largest city of France, on the Seine.",
        )
        .unwrap()
        .0;
    let logit = |r: &dyn Reranker| {
        r.score_pairs(std::slice::from_ref(&pair), &mut |_| {})
            .unwrap()[0]
            .logit
    };
    assert!((logit(off.as_ref()) - logit(&plain_lightweight)).abs() < 1e-5);
    assert!((logit(&compressed) - logit(&plain_lightweight)).abs() > 1e-6);
    // An encoder directory is not an LLM reranker.
    let encoder = fixture("golden").join("bert-classifier");
    assert!(LlmReranker::load(&encoder, RerankerOptions::default()).is_err());
}

/// A GGUF file sift cannot run says what it can: another architecture, an i-quant tensor type,
/// a file that is not GGUF at all.
#[test]
fn unsupported_gguf_files_are_clear_errors() {
    use candle_core::quantized::gguf_file::{write, Value};
    use candle_core::quantized::{GgmlDType, QTensor};

    let dir = tempfile::tempdir().unwrap();
    let make = |arch: &str| -> Vec<u8> {
        let tokens = Value::Array(vec![Value::String("a".into()), Value::String("b".into())]);
        let meta = [
            ("general.architecture", Value::String(arch.into())),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.tokens", tokens),
            ("tokenizer.ggml.merges", Value::Array(vec![])),
            (&format!("{arch}.embedding_length") as &str, Value::U32(4)),
            (
                &format!("{arch}.feed_forward_length") as &str,
                Value::U32(8),
            ),
            (&format!("{arch}.block_count") as &str, Value::U32(1)),
            (
                &format!("{arch}.attention.head_count") as &str,
                Value::U32(2),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let embeddings =
            Tensor::zeros((2, 4), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let q = QTensor::quantize(&embeddings, GgmlDType::F32).unwrap();
        let metadata: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut bytes = std::io::Cursor::new(Vec::new());
        write(&mut bytes, &metadata, &[("token_embd.weight", &q)]).unwrap();
        bytes.into_inner()
    };
    let falcon = dir.path().join("falcon.gguf");
    std::fs::write(&falcon, make("falcon")).unwrap();
    let e = LlmReranker::load(&falcon, RerankerOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(e, ModelError::UnsupportedArchitecture { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("falcon") && e.to_string().contains("qwen3"),
        "{e}"
    );

    // The same file with its tensor's type changed to IQ2_XXS (16): found after the tensor's
    // name, its dimension count and its two dimensions.
    let mut bytes = make("llama");
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let dtype_at = at + 4 + 2 * 8;
    bytes[dtype_at..dtype_at + 4].copy_from_slice(&16u32.to_le_bytes());
    let iquant = dir.path().join("iq2.gguf");
    std::fs::write(&iquant, bytes).unwrap();
    let e = LlmReranker::load(&iquant, RerankerOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("Q4_K") && e.contains("IQ"), "{e}");

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model").unwrap();
    let e = LlmReranker::load(&junk, RerankerOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a readable GGUF file"), "{e}");
}

/// The Qwen3-Reranker recipe reads the tokens "yes" and "no"; a tokenizer without them is an
/// error naming the token, not a score from some other row.
#[test]
fn a_recipe_whose_answer_token_is_missing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("llm").join("qwen3");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let vocab: std::collections::HashMap<String, u32> = [("a", 0), ("b", 1), ("<unk>", 2)]
        .map(|(t, i)| (t.to_owned(), i))
        .into_iter()
        .collect();
    let model = tokenizers::models::wordlevel::WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    tokenizers::Tokenizer::new(model)
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();
    let e = LlmReranker::load(
        dir.path(),
        RerankerOptions {
            template: Some(RerankTemplate::Qwen3),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("\"yes\""), "{e}");
}
