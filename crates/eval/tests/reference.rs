//! sift's metrics equal ir-measures' (pytrec_eval, i.e. trec_eval definitions) to 1e-6 on a run
//! with tied scores, graded relevance, a query without relevant documents, a judged query
//! missing from the run and an unjudged run query (scripts/eval/make_metric_fixtures.py).

use std::path::PathBuf;

use sift_eval::{evaluate, Metric, Qrels, Run};

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn metrics_equal_ir_measures() {
    let qrels = Qrels::parse("qrels.tsv", &fixture("qrels.tsv")).unwrap();
    let run = Run::parse("run.trec", &fixture("run.trec")).unwrap();
    let metrics = [
        Metric::Ndcg(10),
        Metric::Ndcg(5),
        Metric::ReciprocalRank(10),
        Metric::Recall(10),
        Metric::Recall(100),
        Metric::AveragePrecision(100),
        Metric::Success(1),
        Metric::Success(5),
        Metric::Success(10),
    ];
    let got = evaluate(&qrels, &run, &metrics);
    let expected: serde_json::Value = serde_json::from_str(&fixture("expected.json")).unwrap();
    let expected = expected["per_query"].as_object().unwrap();
    assert_eq!(
        got.per_query.len(),
        expected.len(),
        "same queries evaluated"
    );
    let mut compared = 0;
    for (q, values) in expected {
        for (name, want) in values.as_object().unwrap() {
            let have = got.per_query[q][name];
            let want = want.as_f64().unwrap();
            assert!(
                (have - want).abs() <= 1e-6,
                "{q} {name}: sift {have}, ir-measures {want}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, expected.len() * metrics.len());
    assert_eq!(got.queries_without_relevant, 1);
    assert_eq!(got.queries_missing_from_run, 1);
    assert_eq!(got.unjudged_run_queries, 1);
}
