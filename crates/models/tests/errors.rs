//! Bad model directories and bad inputs give typed errors, never panics.

mod common;

use std::path::Path;

use common::fixture;
use sift_models::{CrossEncoder, Embedder, EmbedderOptions, ModelError, RerankerOptions, TextRole};

/// A writable copy of a golden fixture to break.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture("golden").join(name), tmp.path());
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn load(dir: &Path) -> Result<Embedder, ModelError> {
    Embedder::load(dir, EmbedderOptions::default())
}

#[test]
fn missing_directory_and_files() {
    assert!(matches!(
        load(Path::new("/no/such/model")),
        Err(ModelError::DirectoryNotFound(_))
    ));

    let dir = copy_fixture("bert-encoder");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load(dir.path()).err().unwrap();
    assert!(
        matches!(
            err,
            ModelError::MissingFile {
                what: "weights",
                ..
            }
        ),
        "{err}"
    );

    let dir = copy_fixture("bert-encoder");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(ModelError::MissingFile {
            what: "tokenizer",
            ..
        })
    ));

    let dir = copy_fixture("bert-encoder");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(ModelError::MissingFile { .. })
    ));
}

#[test]
fn corrupt_weights_are_reported_with_their_path() {
    let dir = copy_fixture("bert-encoder");
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    // Truncated file.
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path()).err().unwrap();
    assert!(matches!(err, ModelError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    // Garbage.
    std::fs::write(&weights, b"definitely not safetensors").unwrap();
    assert!(matches!(load(dir.path()), Err(ModelError::Weights { .. })));
    // Valid file, wrong shapes for the config.
    std::fs::write(&weights, &bytes).unwrap();
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("\"hidden_size\": 32", "\"hidden_size\": 64"),
    )
    .unwrap();
    assert!(matches!(load(dir.path()), Err(ModelError::Weights { .. })));
}

#[test]
fn corrupt_tokenizer_and_config() {
    let dir = copy_fixture("bert-encoder");
    std::fs::write(dir.path().join("tokenizer.json"), "{\"version\": ").unwrap();
    assert!(matches!(load(dir.path()), Err(ModelError::Tokenizer(_))));

    let dir = copy_fixture("bert-encoder");
    std::fs::write(dir.path().join("config.json"), "[]").unwrap();
    let err = load(dir.path()).err().unwrap();
    assert!(
        matches!(
            err,
            ModelError::UnsupportedArchitecture { .. } | ModelError::InvalidConfig { .. }
        ),
        "{err}"
    );
}

#[test]
fn unsupported_architecture_names_what_is_supported() {
    let dir = copy_fixture("bert-encoder");
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config
            .replace("BertModel", "GPT2LMHeadModel")
            .replace("\"bert\"", "\"gpt2\""),
    )
    .unwrap();
    let err = load(dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::UnsupportedArchitecture { .. }));
    assert!(
        msg.contains("GPT2LMHeadModel") && msg.contains("XLM-RoBERTa"),
        "{msg}"
    );
}

#[test]
fn an_encoder_is_not_a_cross_encoder() {
    let err = CrossEncoder::load(fixture("golden/bert-encoder"), RerankerOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::NotACrossEncoder { .. }), "{err}");
}

#[test]
fn empty_texts_are_rejected() {
    let e = load(&fixture("golden/bert-encoder")).unwrap();
    let err = e.embed(&["fine", "   "], TextRole::Raw).unwrap_err();
    assert!(err.to_string().contains("text 1 is empty"), "{err}");
    let ce = CrossEncoder::load(
        fixture("golden/bert-classifier"),
        RerankerOptions::default(),
    )
    .unwrap();
    assert!(matches!(
        ce.score("", &["doc"]),
        Err(ModelError::InvalidInput(m)) if m.contains("query")
    ));
    assert!(ce
        .score("query", &["doc", ""])
        .unwrap_err()
        .to_string()
        .contains("document 1"));
    assert!(ce.score("query", &[] as &[&str]).unwrap().is_empty());
}

/// Documented truncation: a 200,000-character text embeds like its first max_length tokens.
#[test]
fn very_long_text_is_truncated_to_the_max_length() {
    let e = load(&fixture("golden/bert-encoder")).unwrap();
    let long: String = "the quick brown fox jumps over the lazy dog ".repeat(4600);
    assert!(long.len() >= 200_000);
    let enc = e.encode(&[&long], TextRole::Raw).unwrap();
    assert_eq!(enc[0].len(), e.tokenizer().max_length());
    let prefix: String = long.chars().take(300).collect();
    let a = e.embed(&[&long], TextRole::Raw).unwrap();
    let b = e.embed(&[&prefix], TextRole::Raw).unwrap();
    assert_eq!(a, b);

    // Cross-encoders cut the document and keep the query.
    let ce = CrossEncoder::load(
        fixture("golden/bert-classifier"),
        RerankerOptions::default(),
    )
    .unwrap();
    let pair = ce.encode("the fox", &[&long]).unwrap();
    assert_eq!(pair[0].len(), ce.tokenizer().max_length());
    assert!(ce.score("the fox", &[&long]).unwrap()[0].score.is_finite());
    // A query longer than the limit still works (both sides are cut).
    assert!(ce.score(&long, &["doc"]).unwrap()[0].score.is_finite());
}

#[test]
fn max_length_beyond_the_model_is_an_error() {
    let err = Embedder::load(
        fixture("golden/bert-encoder"),
        EmbedderOptions {
            max_length: Some(10_000),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("exceeds"), "{err}");
}

/// Whether a text or pair was cut is read from the tokenizer's output: exactly at the limit is
/// not cut, one token more is, for single texts and for pairs.
#[test]
fn truncation_is_detected_from_the_tokenizer() {
    let ce = CrossEncoder::load(
        fixture("golden/bert-classifier"),
        RerankerOptions::default(),
    )
    .unwrap();
    let tok = ce.tokenizer();
    let max = tok.max_length();
    let (short, cut) = tok.encode_pair_checked("the fox", "a dog").unwrap();
    assert!(!cut && short.len() < max);
    // Grow a document until the pair is exactly max tokens, then by one more word.
    let mut exact = None;
    for n in 1..max {
        let doc = vec!["dog"; n].join(" ");
        if tok.pair_len_untruncated("the fox", &doc).unwrap() == max {
            exact = Some(doc);
            break;
        }
    }
    let exact = exact.expect("a document that fills the pair exactly");
    let (enc, cut) = tok.encode_pair_checked("the fox", &exact).unwrap();
    assert_eq!((enc.len(), cut), (max, false));
    let longer = format!("{exact} dog");
    let (enc, cut) = tok.encode_pair_checked("the fox", &longer).unwrap();
    assert_eq!((enc.len(), cut), (max, true));
    assert_eq!(
        tok.pair_len_untruncated("the fox", &longer).unwrap(),
        max + 1
    );
    let (_, cut) = tok.encode_checked(&longer.repeat(3)).unwrap();
    assert!(cut);
}

/// The fingerprint covers every byte of the weights: a model that differs only at the end of
/// its weight file (as a fine-tune with frozen embeddings does) is another model — the first-MiB
/// hash collections used to record could not tell them apart.
#[test]
fn the_fingerprint_covers_all_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("golden/bert-encoder");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let original = sift_models::ModelDir::open(tmp.path()).unwrap();
    let (fp, legacy) = (
        original.fingerprint().unwrap(),
        original.legacy_fingerprint().unwrap(),
    );
    let weights = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    let changed = sift_models::ModelDir::open(tmp.path()).unwrap();
    assert_ne!(changed.fingerprint().unwrap(), fp);
    assert!(fp.starts_with("v2-"), "{fp}");
    // The old hash read only the first MiB; within it, it did see this change.
    if bytes.len() > 1 << 20 {
        assert_eq!(changed.legacy_fingerprint().unwrap(), legacy);
    } else {
        assert_ne!(changed.legacy_fingerprint().unwrap(), legacy);
    }
    // The embedder computes it once, and accepts both its own forms.
    let e = Embedder::load(tmp.path(), EmbedderOptions::default()).unwrap();
    assert_eq!(e.fingerprint().unwrap(), changed.fingerprint().unwrap());
    assert!(e
        .has_fingerprint(&changed.legacy_fingerprint().unwrap())
        .unwrap());
    assert!(!e.has_fingerprint(&fp).unwrap());
}
