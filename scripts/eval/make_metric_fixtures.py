#!/usr/bin/env python3
"""Reference values for sift's retrieval metrics, computed by ir-measures (pytrec_eval backend,
i.e. trec_eval's definitions). Run by hand:

    /tmp/ref/bin/pip install ir-measures pytrec-eval-terrier
    /tmp/ref/bin/python scripts/eval/make_metric_fixtures.py

Writes crates/eval/tests/fixtures/{qrels.tsv,run.trec,expected.json}: a synthetic run that has
tied scores, graded relevance (0/1/2), a query whose judgements are all non-relevant, a query
missing from the run, and a run query missing from the qrels.
"""

import json
import random
from pathlib import Path

import ir_measures
from ir_measures import nDCG, RR, R, AP, Success

OUT = Path(__file__).resolve().parents[2] / "crates/eval/tests/fixtures"
random.seed(7)

qrels = []
run = []
docs = [f"d{i:02d}" for i in range(40)]
for q in range(12):
    qid = f"q{q}"
    judged = random.sample(docs, 10)
    for d in judged:
        rel = random.choice([0, 0, 1, 1, 2]) if q != 3 else 0  # q3: nothing relevant
        qrels.append((qid, d, rel))
    if q == 5:
        continue  # judged but absent from the run
    ranked = random.sample(docs, 30)
    for rank, d in enumerate(ranked):
        # Coarse scores make ties, broken by trec_eval's rule (docno descending).
        score = round(10 - rank * 0.25) / 2
        run.append((qid, d, score))
for rank, d in enumerate(docs[:5]):
    run.append(("q_unjudged", d, 5.0 - rank))

OUT.mkdir(parents=True, exist_ok=True)
with open(OUT / "qrels.tsv", "w") as f:
    f.write("query-id\tcorpus-id\tscore\n")
    for q, d, r in qrels:
        f.write(f"{q}\t{d}\t{r}\n")
with open(OUT / "run.trec", "w") as f:
    ranks = {}
    for q, d, s in run:
        ranks[q] = ranks.get(q, 0) + 1
        f.write(f"{q} Q0 {d} {ranks[q]} {s} fixture\n")

# Every value comes from the pytrec_eval provider (trec_eval's definitions: ties broken by
# document id descending). pytrec_eval has no cutoff for reciprocal rank, so RR@10 is its
# recip_rank over each query's top 10 in trec_eval's order. (ir-measures would otherwise serve
# RR@10 from its MS MARCO provider, which breaks ties the other way.)
trec = ir_measures.providers.registry["pytrec_eval"]
measures = [nDCG @ 10, nDCG @ 5, R @ 10, R @ 100, AP @ 100, Success @ 1, Success @ 5, Success @ 10]
qrels_df = [ir_measures.Qrel(q, d, r) for q, d, r in qrels]
run_df = [ir_measures.ScoredDoc(q, d, s) for q, d, s in run]
per_query = {}
for m in trec.iter_calc(measures, qrels_df, run_df):
    per_query.setdefault(m.query_id, {})[str(m.measure)] = m.value
top10 = []
for q in sorted({r.query_id for r in run_df}):
    docs = sorted((r for r in run_df if r.query_id == q), key=lambda r: (-r.score, tuple(-ord(c) for c in r.doc_id)))
    top10.extend(docs[:10])
for m in trec.iter_calc([RR], qrels_df, top10):
    per_query.setdefault(m.query_id, {})["RR@10"] = m.value
for q in per_query:
    per_query[q].setdefault("RR@10", 0.0)  # judged queries missing from the run
(OUT / "expected.json").write_text(json.dumps({"tool": f"ir-measures {ir_measures.__version__} (pytrec_eval provider)", "per_query": per_query}, indent=1, sort_keys=True))
print(f"{len(per_query)} queries, measures {[str(m) for m in measures] + ['RR@10']}")
