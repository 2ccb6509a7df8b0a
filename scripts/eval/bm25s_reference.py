#!/usr/bin/env python3
"""BM25 as the reference implementation computes it, on the queries `sift eval` evaluated.

The first-stage-quality issue asks that sift's BM25 be at least as good as bm25s (PyPI) with the
standard English recipe: title and text as one field, Lucene's English stop words, the Snowball
English stemmer, bm25s's defaults (Lucene scoring, k1 = 1.5, b = 0.75). This script runs that on
exactly the queries of one `sift eval` run (it reads the `qrels.tsv` that `sift eval --out DIR`
writes) and scores both bm25s's run and sift's `DIR/bm25.trec` with the same nDCG@10 / MRR@10 /
R@100 (trec_eval's definitions), so the comparison is reproducible and metric-neutral.

    python3 -m pip install bm25s PyStemmer
    target/release/sift eval --data ../shared/data/scifact --collection /tmp/scifact-col \
        --split dev --modes bm25 --out /tmp/eval-bm25
    python3 scripts/eval/bm25s_reference.py --data ../shared/data/scifact --eval /tmp/eval-bm25

Writes DIR/bm25s.trec beside sift's run files. With --sweep it instead prints nDCG@10 of
bm25s over a k1 × b grid on those queries (how sift's defaults were chosen, on the train
queries: `sift eval --split train --modes bm25 --out DIR` first).
"""

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path


def read_qrels(path):
    qrels = defaultdict(dict)
    with open(path) as f:
        for i, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if i == 0 and parts[0] == "query-id":
                continue
            q, d, rel = parts[0], parts[1], int(parts[2])
            qrels[q][d] = rel
    return qrels


def read_run(path):
    run = defaultdict(dict)
    with open(path) as f:
        for line in f:
            q, _, d, _, score, _ = line.split()
            run[q][d] = float(score)
    return run


def ranked_trec(docs):
    return [d for d, _ in sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def metrics(run, qrels):
    totals = defaultdict(float)
    for q, judged in qrels.items():
        order = ranked_trec(run.get(q, {}))
        rel = {d: r for d, r in judged.items() if r > 0}
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(order[:10]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        totals["nDCG@10"] += dcg / idcg if idcg else 0.0
        rr = next((1.0 / (i + 1) for i, d in enumerate(order[:10]) if d in rel), 0.0)
        totals["MRR@10"] += rr
        totals["R@100"] += sum(1 for d in order[:100] if d in rel) / len(rel) if rel else 0.0
    return {k: v / len(qrels) for k, v in totals.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="BEIR folder (corpus.jsonl, queries*.jsonl)")
    ap.add_argument("--eval", required=True, type=Path, help="a `sift eval --out` folder")
    ap.add_argument("--k1", type=float, default=1.5)
    ap.add_argument("--b", type=float, default=0.75)
    ap.add_argument("--sweep", action="store_true", help="print nDCG@10 over a k1 x b grid instead")
    args = ap.parse_args()

    import bm25s
    import Stemmer

    qrels = read_qrels(args.eval / "qrels.tsv")
    ids, texts = [], []
    with open(args.data / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            ids.append(d["_id"])
            texts.append((d.get("title") or "") + " " + d["text"])
    queries = {}
    for path in sorted(args.data.glob("queries*.jsonl")):
        with open(path) as f:
            for line in f:
                q = json.loads(line)
                if q["_id"] in qrels:
                    queries[q["_id"]] = q["text"]
    missing = set(qrels) - set(queries)
    if missing:
        sys.exit(f"{len(missing)} judged queries have no text in {args.data}")

    stemmer = Stemmer.Stemmer("english")
    corpus_tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    qids = sorted(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                            show_progress=False)

    def retrieve(k1, b):
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(corpus_tokens, show_progress=False)
        docs, scores = retriever.retrieve(tokens, k=100, show_progress=False)
        run = defaultdict(dict)
        lines = []
        for q, row_docs, row_scores in zip(qids, docs, scores):
            for rank, (i, s) in enumerate(zip(row_docs, row_scores)):
                if s <= 0:
                    continue
                run[q][ids[i]] = float(s)
                lines.append(f"{q} Q0 {ids[i]} {rank + 1} {s:.6f} bm25s\n")
        return run, lines

    if args.sweep:
        bs = [0.3, 0.5, 0.6, 0.75, 0.9, 1.0]
        print(f"{len(qrels)} queries; nDCG@10 by k1 (rows) and b (columns)")
        print("k1 \\ b " + "".join(f"{b:>8}" for b in bs))
        for k1 in [0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.5]:
            cells = [metrics(retrieve(k1, b)[0], qrels)["nDCG@10"] for b in bs]
            print(f"{k1:<8}" + "".join(f"{c:>8.4f}" for c in cells))
        return
    run, lines = retrieve(args.k1, args.b)
    (args.eval / "bm25s.trec").write_text("".join(lines))

    rows = [("bm25s", metrics(run, qrels))]
    for name in ["bm25", "hybrid", "dense"]:
        path = args.eval / f"{name}.trec"
        if path.is_file():
            rows.append((f"sift {name}", metrics(read_run(path), qrels)))
    print(f"{len(qrels)} queries from {args.eval / 'qrels.tsv'}")
    print(f"{'run':<14} {'nDCG@10':>8} {'MRR@10':>8} {'R@100':>8}")
    for name, m in rows:
        print(f"{name:<14} {m['nDCG@10']:>8.4f} {m['MRR@10']:>8.4f} {m['R@100']:>8.4f}")


if __name__ == "__main__":
    main()
