//! Training data: labelled (query, relevant document) pairs from a BEIR dataset, negatives mined
//! with sift's own first stage, and the deterministic grouping of both into training groups.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sift_eval::{Dataset, DevSplit, Split, SplitRule};
use sift_pipeline::ingest::embedding_text;
use sift_pipeline::{Pipeline, SearchMode, SearchOptions};

use crate::error::{Result, TrainError};

/// Document id → the text the reranker reads ("title\ntext", as at search time).
pub type Corpus = HashMap<String, String>;

#[derive(serde::Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    #[serde(default)]
    title: Option<String>,
    text: String,
}

/// Reads a BEIR `corpus.jsonl`.
pub fn read_corpus(path: &Path) -> Result<Corpus> {
    Ok(corpus_documents(path)?
        .into_iter()
        .map(|(id, title, text)| (id, embedding_text(title.as_deref(), &text)))
        .collect())
}

/// The (id, title, text) of every document of a BEIR `corpus.jsonl`, in file order; an empty
/// corpus is an error.
pub(crate) fn corpus_documents(path: &Path) -> Result<Vec<(String, Option<String>, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut documents = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if sift_models::is_blank(line) {
            continue;
        }
        let d: CorpusLine = serde_json::from_str(line)
            .map_err(|e| TrainError::Invalid(format!("{}:{}: {e}", path.display(), i + 1)))?;
        let id = match d.id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        documents.push((id, d.title, d.text));
    }
    if documents.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: the corpus is empty",
            path.display()
        )));
    }
    Ok(documents)
}

/// Queries of one split with their relevant documents (relevance > 0).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledQuery {
    pub id: String,
    pub text: String,
    pub relevant: Vec<String>,
}

/// Documents judged relevant to a query outside the training side of `rule`: never synthetic
/// positives, so dev numbers see no prior for them.
pub fn held_out_documents(dataset: &Dataset, rule: SplitRule) -> BTreeSet<String> {
    let sides = DevSplit::new(&dataset.qrels, rule);
    dataset
        .qrels
        .judgements
        .iter()
        .filter(|(q, _)| !sides.contains(Split::Train, q))
        .flat_map(|(_, docs)| docs.keys().cloned())
        .collect()
}

/// Checks the judgements against the queries and the corpus, then returns the labelled queries
/// of `split` under `rule`. Judged ids missing from the corpus or the queries are errors: training on them
/// would silently drop labels.
pub fn labelled_queries(
    dataset: &Dataset,
    corpus: &Corpus,
    split: Split,
    rule: SplitRule,
) -> Result<Vec<LabelledQuery>> {
    let sides = DevSplit::new(&dataset.qrels, rule);
    let mut missing_docs = BTreeSet::new();
    let mut missing_queries = BTreeSet::new();
    for (q, docs) in &dataset.qrels.judgements {
        if !dataset.queries.contains_key(q) {
            missing_queries.insert(q.clone());
        }
        for d in docs.keys() {
            if !corpus.contains_key(d) {
                missing_docs.insert(d.clone());
            }
        }
    }
    let sample = |s: &BTreeSet<String>| s.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if !missing_docs.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{} judged document id(s) are not in the corpus (e.g. {}); fix the qrels or the corpus",
            missing_docs.len(),
            sample(&missing_docs)
        )));
    }
    if !missing_queries.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{} judged query id(s) have no query text (e.g. {})",
            missing_queries.len(),
            sample(&missing_queries)
        )));
    }
    let out: Vec<LabelledQuery> = dataset
        .qrels
        .judgements
        .iter()
        .filter(|(q, _)| sides.contains(split, q))
        .filter_map(|(q, docs)| {
            let relevant: Vec<String> = docs
                .iter()
                .filter(|(_, &r)| r > 0)
                .map(|(d, _)| d.clone())
                .collect();
            let text = dataset.queries.get(q)?.trim().to_owned();
            (!relevant.is_empty() && !text.is_empty()).then(|| LabelledQuery {
                id: q.clone(),
                text,
                relevant,
            })
        })
        .collect();
    Ok(out)
}

/// The first stage's ranking (document ids, best first) for each query, cut to `depth`: the
/// top of what a default search of the collection returns — hard negatives for training,
/// candidates for dev evaluation. Calls `progress(1)` per query.
pub fn first_stage(
    pipeline: &Pipeline,
    queries: &[LabelledQuery],
    depth: usize,
    mode: SearchMode,
    progress: &mut dyn FnMut(usize),
) -> Result<BTreeMap<String, Vec<String>>> {
    Ok(
        first_stage_scored(pipeline, queries, depth, mode, progress)?
            .into_iter()
            .map(|(q, hits)| (q, hits.into_iter().map(|(id, _)| id).collect()))
            .collect(),
    )
}

/// [`first_stage`] with each document's score (the fused score for hybrid, else the leg's).
pub fn first_stage_scored(
    pipeline: &Pipeline,
    queries: &[LabelledQuery],
    depth: usize,
    mode: SearchMode,
    progress: &mut dyn FnMut(usize),
) -> Result<BTreeMap<String, Vec<(String, f32)>>> {
    // The legs go as deep as a default search's and the fused list is cut to `depth` after:
    // hybrid fusion normalizes each leg's scores over what the leg returned, so legs cut to
    // `depth` fuse into another ranking than the one users search (SciFact, depth 30: 26 of
    // the top 30 shared, the missing ones documents both legs rank fairly high — the hardest
    // negatives). Hard negatives are "the first stage's top N" only if this is the first stage.
    let legs = depth.max(SearchOptions::default().depth);
    let options = SearchOptions {
        mode,
        depth: legs,
        candidates: legs,
        top_k: depth,
        rerank: false,
        first_stage_weight: None,
        fusion: Default::default(),
        query_vector: None,
    };
    let mut out = BTreeMap::new();
    for q in queries {
        let hits = pipeline.search(&q.text, &options)?.hits;
        out.insert(
            q.id.clone(),
            hits.into_iter().map(|h| (h.id, h.score)).collect(),
        );
        progress(1);
    }
    Ok(out)
}

/// How each training group is assembled.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct GroupRecipe {
    /// Negatives drawn from the first stage's top `negative_depth` (minus relevant documents).
    pub hard_negatives: usize,
    /// Negatives drawn uniformly from the whole corpus.
    pub random_negatives: usize,
    pub negative_depth: usize,
    /// Negatives drawn from the positives of *other* training queries: a document that is
    /// relevant somewhere is then also a negative elsewhere, so "this document is often
    /// relevant" stops being a shortcut the model can learn (the document prior the
    /// reranker-generalization issue measured). 0 keeps the first recipe.
    #[serde(default)]
    pub prior_negatives: usize,
}

/// One training group: a query, its positive first, then negatives (document texts).
pub struct Group<'a> {
    pub query: &'a str,
    /// Document ids, the positive first (synthetic positives by their key).
    pub ids: Vec<&'a str>,
    pub documents: Vec<&'a str>,
    /// What each document is embedded as: its windows when the set has them
    /// ([`TrainingSet::with_windows`]), else the document itself.
    pub units: Vec<Vec<&'a str>>,
}

/// Everything training iterates over. Groups are a pure function of (seed, epoch, position), so
/// a resumed run sees exactly the groups the interrupted one would have.
pub struct TrainingSet {
    pub corpus: Corpus,
    /// One entry per (query, relevant document) pair.
    pub examples: Vec<(LabelledQuery, String)>,
    /// First-stage ranking per training query.
    pub mined: BTreeMap<String, Vec<String>>,
    doc_ids: Vec<String>,
    /// Every training positive, sorted: the pool of prior negatives.
    positives: Vec<String>,
    /// Positive texts of synthetic examples, by their key (not documents: never negatives).
    synthetic_texts: HashMap<String, String>,
    /// Each document's windows, when training on them ([`crate::units`]).
    windows: Option<crate::units::DocumentWindows>,
    /// The first stage's scores, when it teaches ([`TrainingSet::with_first_stage_scores`]).
    first_stage_scores: Option<crate::distill::FirstStageScores>,
}

impl TrainingSet {
    pub fn new(
        corpus: Corpus,
        queries: &[LabelledQuery],
        mined: BTreeMap<String, Vec<String>>,
    ) -> Result<Self> {
        let examples: Vec<(LabelledQuery, String)> = queries
            .iter()
            .flat_map(|q| q.relevant.iter().map(move |d| (q.clone(), d.clone())))
            .collect();
        if examples.is_empty() {
            return Err(TrainError::Invalid(
                "no training pairs: the training split has no query with a relevant document"
                    .into(),
            ));
        }
        let mut doc_ids: Vec<String> = corpus.keys().cloned().collect();
        doc_ids.sort();
        let all_relevant = examples
            .iter()
            .all(|(q, _)| q.relevant.len() >= doc_ids.len());
        if all_relevant {
            return Err(TrainError::Invalid(
                "the corpus has no document that could serve as a negative".into(),
            ));
        }
        let positives: BTreeSet<String> = examples.iter().map(|(_, d)| d.clone()).collect();
        Ok(TrainingSet {
            corpus,
            examples,
            mined,
            doc_ids,
            positives: positives.into_iter().collect(),
            synthetic_texts: HashMap::new(),
            windows: None,
            first_stage_scores: None,
        })
    }

    /// Documents become their windows in every group's `units` (a synthetic positive, not a
    /// document of the corpus, stays one unit).
    pub fn with_windows(mut self, windows: crate::units::DocumentWindows) -> Self {
        self.windows = Some(windows);
        self
    }

    /// The first stage's scores of the training queries' documents, for a run that distils
    /// the first stage (`--teacher first-stage`).
    pub fn with_first_stage_scores(mut self, scores: crate::distill::FirstStageScores) -> Self {
        self.first_stage_scores = Some(scores);
        self
    }

    pub fn first_stage_scores(&self) -> Option<&crate::distill::FirstStageScores> {
        self.first_stage_scores.as_ref()
    }

    /// The windows given to [`TrainingSet::with_windows`], for a dev evaluation that scores
    /// documents the same way.
    pub fn windows(&self) -> Option<&crate::units::DocumentWindows> {
        self.windows.as_ref()
    }

    /// Adds synthetic examples ([`crate::synthetic`]), each with its hard negatives in
    /// `mined` under its query id. Their positives are not documents of the corpus, so they are
    /// never drawn as negatives or as prior negatives.
    pub fn with_synthetic(
        mut self,
        synthetic: Vec<crate::synthetic::SyntheticQuery>,
        mined: BTreeMap<String, Vec<String>>,
    ) -> Self {
        self.mined.extend(mined);
        for s in synthetic {
            let key = s.query.id.clone();
            self.synthetic_texts.insert(key.clone(), s.positive_text);
            self.examples.push((s.query, key));
        }
        self
    }

    /// Example indices in the order epoch `epoch` visits them.
    pub fn epoch_order(&self, seed: u64, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)),
        );
        order.shuffle(&mut rng);
        order
    }

    /// The group for example `index` in `epoch`.
    pub fn group(&self, index: usize, epoch: usize, seed: u64, recipe: &GroupRecipe) -> Group<'_> {
        let (query, positive) = &self.examples[index];
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed.wrapping_add((epoch as u64) << 40)
                .wrapping_add(index as u64 + 1),
        );
        let relevant: BTreeSet<&str> = query.relevant.iter().map(String::as_str).collect();
        let pool: Vec<&str> = self
            .mined
            .get(&query.id)
            .map(|ids| {
                ids.iter()
                    .take(recipe.negative_depth)
                    .map(String::as_str)
                    .filter(|d| !relevant.contains(d) && self.corpus.contains_key(*d))
                    .collect()
            })
            .unwrap_or_default();
        let mut negatives: Vec<&str> = pool
            .choose_multiple(&mut rng, recipe.hard_negatives.min(pool.len()))
            .copied()
            .collect();
        // Drawn after the hard negatives and before the random ones, and only when asked for,
        // so groups of the first recipe are unchanged (a resumed run must see the same groups).
        if recipe.prior_negatives > 0 {
            let others: Vec<&str> = self
                .positives
                .iter()
                .map(String::as_str)
                .filter(|d| !relevant.contains(d) && !negatives.contains(d))
                .collect();
            negatives.extend(
                others
                    .choose_multiple(&mut rng, recipe.prior_negatives.min(others.len()))
                    .copied(),
            );
        }
        let wanted = recipe.hard_negatives + recipe.prior_negatives + recipe.random_negatives;
        let mut attempts = 0;
        while negatives.len() < wanted && attempts < wanted * 20 {
            attempts += 1;
            let d = self.doc_ids.choose(&mut rng).expect("corpus is not empty");
            if !relevant.contains(d.as_str()) && !negatives.contains(&d.as_str()) {
                negatives.push(d);
            }
        }
        // A corpus too small for distinct negatives repeats them rather than changing the
        // group size.
        while negatives.len() < wanted {
            match self.doc_ids.iter().find(|d| !relevant.contains(d.as_str())) {
                Some(d) => negatives.push(d),
                None => break,
            }
        }
        let positive_id = positive;
        let positive = self
            .corpus
            .get(positive)
            .or_else(|| self.synthetic_texts.get(positive))
            .map_or("", String::as_str);
        let mut documents = vec![positive];
        documents.extend(negatives.iter().map(|d| self.corpus[*d].as_str()));
        let ids: Vec<&str> = std::iter::once(positive_id.as_str())
            .chain(negatives.iter().copied())
            .collect();
        let units = ids
            .iter()
            .zip(&documents)
            .map(|(id, &text)| crate::units::units_of(self.windows.as_ref(), id, text))
            .collect();
        Group {
            query: &query.text,
            ids,
            documents,
            units,
        }
    }

    pub fn group_size(recipe: &GroupRecipe) -> usize {
        1 + recipe.hard_negatives + recipe.prior_negatives + recipe.random_negatives
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: &str, relevant: &[&str]) -> LabelledQuery {
        LabelledQuery {
            id: id.into(),
            text: format!("query {id}"),
            relevant: relevant.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    /// Prior negatives are other queries' positives, never this query's.
    #[test]
    fn prior_negatives_are_other_queries_positives() {
        let corpus: Corpus = (0..30)
            .map(|i| (format!("d{i}"), format!("text of document {i}")))
            .collect();
        let queries = vec![
            query("a", &["d0"]),
            query("b", &["d1"]),
            query("c", &["d2", "d3"]),
        ];
        let set = TrainingSet::new(corpus, &queries, BTreeMap::new()).unwrap();
        let base = GroupRecipe {
            hard_negatives: 0,
            random_negatives: 2,
            negative_depth: 10,
            prior_negatives: 0,
        };
        let with_prior = GroupRecipe {
            prior_negatives: 2,
            ..base
        };
        for index in 0..set.examples.len() {
            let (q, _) = &set.examples[index];
            let g = set.group(index, 0, 7, &with_prior);
            assert_eq!(g.documents.len(), TrainingSet::group_size(&with_prior));
            let own: Vec<&str> = q.relevant.iter().map(|d| set.corpus[d].as_str()).collect();
            let others: Vec<&str> = ["d0", "d1", "d2", "d3"]
                .iter()
                .filter(|d| !q.relevant.iter().any(|r| r == *d))
                .map(|d| set.corpus[*d].as_str())
                .collect();
            for text in &g.documents[1..3] {
                assert!(others.contains(text) && !own.contains(text), "{text}");
            }
            // Without prior negatives the group has the first recipe's size.
            let plain = set.group(index, 0, 7, &base);
            assert_eq!(plain.documents.len(), 3);
        }
    }

    /// Synthetic examples train on their own positive text; it is never anyone's negative, and
    /// their source document is not a negative of its own query.
    #[test]
    fn synthetic_examples_bring_their_positive_and_never_serve_as_negatives() {
        let corpus: Corpus = (0..12)
            .map(|i| (format!("d{i}"), format!("text of document {i}")))
            .collect();
        let set = TrainingSet::new(corpus, &[query("a", &["d0"])], BTreeMap::new()).unwrap();
        let synthetic = crate::synthetic::SyntheticQuery {
            query: LabelledQuery {
                id: "ict:d5".into(),
                text: "a held-out sentence".into(),
                relevant: vec!["d5".into()],
            },
            positive_text: "document five without its sentence".into(),
        };
        let mined = BTreeMap::from([("ict:d5".to_string(), vec!["d5".into(), "d7".into()])]);
        let set = set.with_synthetic(vec![synthetic], mined);
        assert_eq!(set.examples.len(), 2);
        let recipe = GroupRecipe {
            hard_negatives: 1,
            random_negatives: 8,
            negative_depth: 10,
            prior_negatives: 0,
        };
        for epoch in 0..5 {
            let g = set.group(1, epoch, 3, &recipe);
            assert_eq!(g.query, "a held-out sentence");
            assert_eq!(g.documents[0], "document five without its sentence");
            assert_eq!(
                g.documents[1], "text of document 7",
                "the one hard negative"
            );
            assert!(!g.documents[1..].contains(&"text of document 5"));
            // The ids a step logs name the texts it embedded, the synthetic positive by its key.
            assert_eq!(g.ids.len(), g.documents.len());
            assert_eq!(g.ids[0], "ict:d5");
            for (id, text) in g.ids[1..].iter().zip(&g.documents[1..]) {
                assert_eq!(set.corpus[*id], *text);
            }
            let other = set.group(0, epoch, 3, &recipe);
            assert!(!other
                .documents
                .contains(&"document five without its sentence"));
        }
    }
}
