//! Hard negatives are "the first stage's top N": the ranking a default search of the collection
//! returns, cut to N — not a shallower search's. Hybrid fusion normalizes each leg over what it
//! returned, so legs cut to N fuse into another order; this test fails when mining searches at
//! the mining depth.

mod support;

use std::sync::Arc;

use sift_index::store::Location;
use sift_index::Document;
use sift_pipeline::build::{index_documents, IndexOptions};
use sift_pipeline::{SearchMode, SearchOptions};
use sift_train::{first_stage, LabelledQuery};

const WORDS: [&str; 24] = [
    "gene", "protein", "cell", "tumour", "insulin", "receptor", "kinase", "mouse", "brain",
    "immune", "virus", "dose", "risk", "blood", "liver", "signal", "growth", "stem", "therapy",
    "trial", "neuron", "lipid", "bone", "muscle",
];

/// A deterministic word from a linear congruential sequence.
fn word(state: &mut u64) -> &'static str {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    WORDS[(*state >> 33) as usize % WORDS.len()]
}

#[test]
fn mined_negatives_are_the_top_of_a_default_search() {
    let embedder = support::candle_embedder(&support::golden_fixture("bert-encoder"));
    let mut state = 7u64;
    let docs = (0..300)
        .map(|i| {
            let text: Vec<&str> = (0..12).map(|_| word(&mut state)).collect();
            Document {
                id: format!("d{i}"),
                text: text.join(" "),
                title: None,
                metadata: None,
            }
            .into()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, _) = index_documents(
        &Location::Local(dir.path().join("c")),
        Some(Arc::new(embedder)),
        &IndexOptions::default(),
        docs,
        100,
        &mut |_, _| {},
    )
    .unwrap();
    let queries: Vec<LabelledQuery> = (0..20)
        .map(|i| LabelledQuery {
            id: format!("q{i}"),
            text: (0..3)
                .map(|_| word(&mut state))
                .collect::<Vec<_>>()
                .join(" "),
            relevant: vec!["d0".into()],
        })
        .collect();
    let depth = 5;
    let mined = first_stage(&pipeline, &queries, depth, SearchMode::Hybrid, &mut |_| {}).unwrap();
    for q in &queries {
        let searched: Vec<String> = pipeline
            .search(
                &q.text,
                &SearchOptions {
                    top_k: depth,
                    rerank: false,
                    ..Default::default()
                },
            )
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(mined[&q.id], searched, "query {:?}", q.text);
    }
}
