//! Qrels and runs: reading BEIR qrels TSV and TREC run files, writing TREC runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A problem in an input file, with its line.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {reason}")]
pub struct TrecError {
    pub source_name: String,
    pub line: usize,
    pub reason: String,
}

/// Graded relevance judgements: query id → document id → grade (≥ 1 is relevant).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Qrels {
    pub judgements: BTreeMap<String, BTreeMap<String, i32>>,
}

impl Qrels {
    /// Parses BEIR's `query-id<TAB>corpus-id<TAB>score` (header optional) or TREC's
    /// `qid iteration docid rel` (whitespace separated).
    pub fn parse(source_name: &str, text: &str) -> Result<Qrels, TrecError> {
        let mut judgements: BTreeMap<String, BTreeMap<String, i32>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.is_empty() || (i == 0 && fields.first() == Some(&"query-id")) {
                continue;
            }
            let err = |reason: String| TrecError {
                source_name: source_name.into(),
                line: i + 1,
                reason,
            };
            let (q, d, rel) = match fields.as_slice() {
                [q, d, rel] => (q, d, rel),
                [q, _, d, rel] => (q, d, rel),
                _ => {
                    return Err(err(format!(
                        "expected 3 (BEIR) or 4 (TREC) fields, found {}",
                        fields.len()
                    )))
                }
            };
            let rel: i32 = rel
                .parse()
                .map_err(|_| err(format!("relevance {rel:?} is not an integer")))?;
            judgements
                .entry(q.to_string())
                .or_default()
                .insert(d.to_string(), rel);
        }
        Ok(Qrels { judgements })
    }

    /// BEIR's TSV with its header: what [`Qrels::parse`] reads back, and what scripts that
    /// evaluate other systems on the same queries read (scripts/eval/bm25s_reference.py).
    pub fn to_tsv(&self) -> String {
        let mut out = String::from("query-id\tcorpus-id\tscore\n");
        for (q, docs) in &self.judgements {
            for (d, rel) in docs {
                let _ = writeln!(out, "{q}\t{d}\t{rel}");
            }
        }
        out
    }
}

/// Documents in trec_eval's order: score descending, ties by id descending.
pub fn ranked(docs: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut v = docs.to_vec();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    v
}

/// A ranked run: query id → scored documents (any order; ranking sorts them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    pub results: BTreeMap<String, Vec<(String, f64)>>,
}

impl Run {
    /// Parses a TREC run file: `qid Q0 docid rank score tag`.
    pub fn parse(source_name: &str, text: &str) -> Result<Run, TrecError> {
        let mut results: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            let err = |reason: String| TrecError {
                source_name: source_name.into(),
                line: i + 1,
                reason,
            };
            if fields.len() != 6 {
                return Err(err(format!(
                    "expected 6 fields (qid Q0 docid rank score tag), found {}",
                    fields.len()
                )));
            }
            let score: f64 = fields[4]
                .parse()
                .map_err(|_| err(format!("score {:?} is not a number", fields[4])))?;
            results
                .entry(fields[0].to_string())
                .or_default()
                .push((fields[2].to_string(), score));
        }
        Ok(Run { results })
    }

    /// Writes the run in TREC format, ranked as trec_eval ranks it.
    pub fn to_trec(&self, tag: &str) -> String {
        let mut out = String::new();
        for (q, docs) in &self.results {
            for (rank, (d, score)) in ranked(docs).iter().enumerate() {
                let _ = writeln!(out, "{q} Q0 {d} {} {score} {tag}", rank + 1);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beir_and_trec_qrels_and_reports_bad_lines() {
        let q = Qrels::parse("q", "query-id\tcorpus-id\tscore\n1\td1\t1\n1 0 d2 2\n").unwrap();
        assert_eq!(q.judgements["1"]["d1"], 1);
        assert_eq!(q.judgements["1"]["d2"], 2);
        let e = Qrels::parse("q", "1\td1\tyes\n").unwrap_err();
        assert_eq!(
            (e.line, e.to_string().contains("not an integer")),
            (1, true)
        );
        assert!(Run::parse("r", "1 Q0 d1 1 x tag\n")
            .unwrap_err()
            .to_string()
            .starts_with("r:1:"));
    }

    #[test]
    fn trec_output_round_trips() {
        let run = Run::parse("r", "q1 Q0 a 1 2.5 t\nq1 Q0 b 2 3.5 t\n").unwrap();
        let text = run.to_trec("sift");
        assert!(text.starts_with("q1 Q0 b 1 3.5 sift\n"));
        let back = Run::parse("r", &text).unwrap();
        let order = |r: &Run| ranked(&r.results["q1"]);
        assert_eq!(order(&back), order(&run));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Ids as BEIR and TREC files carry them: no whitespace.
        fn id() -> impl Strategy<Value = String> {
            "[A-Za-z0-9_.:/-]{1,12}"
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any text: parsed or refused with a line number, never a panic.
            #[test]
            fn any_text_is_parsed_or_refused(text in "\\PC{0,200}") {
                if let Err(e) = Qrels::parse("q", &text) {
                    prop_assert!(e.line >= 1);
                }
                if let Err(e) = Run::parse("r", &text) {
                    prop_assert!(e.line >= 1);
                }
            }

            /// Qrels written in either layout, or by `to_tsv`, read back as written.
            #[test]
            fn qrels_round_trip(
                judgements in proptest::collection::btree_map(
                    id(),
                    proptest::collection::btree_map(id(), -2i32..4, 1..4),
                    0..5,
                ),
                trec in any::<bool>(),
            ) {
                let mut text = String::new();
                for (q, docs) in &judgements {
                    for (d, rel) in docs {
                        if trec {
                            text.push_str(&format!("{q} 0 {d} {rel}\n"));
                        } else {
                            text.push_str(&format!("{q}\t{d}\t{rel}\n"));
                        }
                    }
                }
                prop_assert_eq!(&Qrels::parse("q", &text).unwrap().judgements, &judgements);
                let written = Qrels { judgements: judgements.clone() }.to_tsv();
                prop_assert_eq!(Qrels::parse("q", &written).unwrap().judgements, judgements);
            }

            /// A run written with `to_trec` reads back with the same scores.
            #[test]
            fn runs_round_trip(
                results in proptest::collection::btree_map(
                    id(),
                    proptest::collection::btree_map(id(), -1e6f64..1e6, 1..5),
                    0..4,
                ),
            ) {
                let run = Run {
                    results: results
                        .iter()
                        .map(|(q, docs)| (q.clone(), docs.iter().map(|(d, s)| (d.clone(), *s)).collect()))
                        .collect(),
                };
                let back = Run::parse("r", &run.to_trec("tag")).unwrap();
                for (q, docs) in &results {
                    let got: BTreeMap<String, f64> = back.results[q].iter().cloned().collect();
                    prop_assert_eq!(&got, docs);
                }
            }
        }
    }
}
