"""A torch replica of `sift train-embedder`'s recipe, for sweeping recipes faster than candle.

Not part of sift: a research tool. sift's candle trainer takes ~25-45 s per step on 2 cores;
this replica (sentence-transformers + torch) takes ~10-30 s, so a recipe question (which
document unit, which learning rate) can be asked several times in one session, then answered
for real with `sift train-embedder`. It reproduces sift's numbers where they overlap: the base
all-MiniLM-L6-v2's dense nDCG@10 on the families dev split (0.7239 in both) and the default
whole-document recipe (sift 0.7354, replica 0.7352).

It reads the split and the mined negatives from sift itself, so both train on the same data:

    sift eval --data D --collection C --split dev --modes dense --out /tmp/ev/dev    # dev qrels
    sift eval --data D --collection C --split train --modes hybrid --out /tmp/ev/train
    python scripts/eval/embedder_recipe_replica.py --data D --model models/all-MiniLM-L6-v2 \
        --dev-qrels /tmp/ev/dev/qrels.tsv --mined /tmp/ev/train/hybrid-all-MiniLM-L6-v2.trec \
        --unit windows --name windows

To ask whether the two implementations train alike, replay sift's own steps (the same queries,
positives and negatives in the same order), with or without dropout, and compare the weights:

    SIFT_LOG=sift_train=debug SIFT_LOG_FORMAT=json sift train-embedder ... 2> steps.log
    python scripts/eval/embedder_recipe_replica.py ... --replay steps.log --no-dropout \
        --max-steps 3 --save torch-3.safetensors --name replay

Evaluation is what sift's index computes: title + 222-token windows overlapping by 32 (the
default chunking of a 256-token model), each document scored by its best window, exact search
over the whole corpus. One JSON line per evaluation on stdout.
"""
import argparse
import glob
import json
import math
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True, help="BEIR folder: corpus.jsonl, queries*.jsonl, qrels*.tsv")
ap.add_argument("--model", required=True)
ap.add_argument("--dev-qrels", required=True, help="qrels.tsv written by sift eval --split dev")
ap.add_argument("--mined", required=True, help="sift's first-stage run for the train split (TREC)")
ap.add_argument("--unit", default="windows", choices=["windows", "whole"])
ap.add_argument("--lr", type=float, default=2e-5)
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--hard", type=int, default=1)
ap.add_argument("--random", type=int, default=1)
ap.add_argument("--depth", type=int, default=30)
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--symmetric", action="store_true", help="add the document-to-query direction of the loss")
ap.add_argument("--eval-only", action="store_true", help="measure the model as it is")
ap.add_argument("--replay", help="train on the steps sift logged (SIFT_LOG=sift_train=debug SIFT_LOG_FORMAT=json): "
                "the same queries, positives and negatives in the same order")
ap.add_argument("--no-dropout", action="store_true", help="train without dropout (sift's --dropout 0)")
ap.add_argument("--max-steps", type=int, help="stop after this many steps (the schedule still spans the run)")
ap.add_argument("--save", help="write the transformer's weights here (safetensors) when training stops")
ap.add_argument("--name", required=True)
a = ap.parse_args()
torch.set_num_threads(2)
rng = random.Random(a.seed)
torch.manual_seed(a.seed)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_qrels(path):
    out = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 3 or not p[-1].lstrip("-").isdigit():
                continue  # header
            if int(p[-1]) > 0:
                out.setdefault(p[0], set()).add(p[-2])
    return out


corpus = {d["_id"]: (d.get("title") or "", d["text"]) for d in read_jsonl(f"{a.data}/corpus.jsonl")}
queries = {}
qrels = {}

for path in glob.glob(f"{a.data}/queries*.jsonl"):
    queries.update({q["_id"]: q["text"] for q in read_jsonl(path)})
for path in glob.glob(f"{a.data}/qrels*.tsv"):
    for q, ds in read_qrels(path).items():
        qrels.setdefault(q, set()).update(ds)
dev = sorted(read_qrels(a.dev_qrels))
train = sorted(q for q in qrels if q not in set(dev))
mined = {}
with open(a.mined) as f:
    for line in f:
        p = line.split()
        mined.setdefault(p[0], []).append(p[2])
print(f"{len(train)} training queries, {len(dev)} dev queries", file=sys.stderr)

m = SentenceTransformer(a.model, device="cpu")
m.max_seq_length = 256
tok = m.tokenizer


def with_title(title, text):
    return f"{title}\n{text}" if title.strip() else text


def windows(text, max_tokens=222, overlap=32):
    """sift's token_windows: byte ranges of the tokens' offsets, the last window to the end."""
    off = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(off) <= max_tokens:
        return [text]
    out, start = [], 0
    while True:
        end = min(start + max_tokens, len(off))
        lo = 0 if start == 0 else off[start][0]
        hi = len(text) if end == len(off) else off[end - 1][1]
        out.append(text[lo:hi])
        if end == len(off):
            return out
        start += max_tokens - overlap


units = {d: [with_title(t, w) for w in windows(x)] for d, (t, x) in corpus.items()}
if a.unit == "whole":
    train_units = {d: [with_title(t, x)] for d, (t, x) in corpus.items()}
else:
    train_units = units


def evaluate(tag):
    m.eval()
    ids, texts = [], []
    for d, ws in units.items():
        ids += [d] * len(ws)
        texts += ws
    t0 = time.time()
    with torch.no_grad():
        e = m.encode(texts, batch_size=64, normalize_embeddings=True)
        q = m.encode([queries[x] for x in dev], batch_size=64, normalize_embeddings=True)
    docs = sorted(set(ids))
    position = {d: i for i, d in enumerate(docs)}
    col = np.array([position[d] for d in ids])
    best = np.full((len(docs), len(dev)), -9.0, dtype=np.float32)
    np.maximum.at(best, col, (q @ e.T).T)
    ndcg, recall = [], []
    for qi, qid in enumerate(dev):
        order = np.argsort(-best[:, qi], kind="stable")[:100]
        rel = qrels[qid]
        dcg = sum(1 / math.log2(r + 2) for r, j in enumerate(order[:10]) if docs[j] in rel)
        ideal = sum(1 / math.log2(r + 2) for r in range(min(10, len(rel))))
        ndcg.append(dcg / ideal)
        recall.append(sum(docs[j] in rel for j in order) / len(rel))
    print(json.dumps({"name": a.name, "at": tag, "ndcg@10": float(np.mean(ndcg)),
                      "recall@100": float(np.mean(recall)), "eval_s": round(time.time() - t0)}), flush=True)
    m.eval() if a.no_dropout else m.train()


if a.eval_only:
    evaluate("base")
    sys.exit()

examples = [(q, d) for q in train for d in sorted(qrels[q])]
all_docs = sorted(corpus)
total = math.ceil(len(examples) / a.batch) * a.epochs
warmup = round(total * 0.1)
opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))


def embed(texts):
    return F.normalize(m(m.tokenize(texts))["sentence_embedding"], dim=-1)


def drawn_batches(order):
    for b in range(0, len(order), a.batch):
        batch = order[b:b + a.batch]
        negatives = []
        for q, _ in batch:
            pool = [x for x in mined.get(q, [])[:a.depth] if x not in qrels[q]]
            negatives += rng.sample(pool, min(a.hard, len(pool)))
            for _ in range(a.random):
                x = rng.choice(all_docs)
                while x in qrels[q]:
                    x = rng.choice(all_docs)
                negatives.append(x)
        yield batch, negatives


def replayed_batches():
    """sift's logged steps: queries, and per query its positive then its negatives."""
    with open(a.replay) as f:
        for line in f:
            if '"embedder step"' not in line:
                continue
            fields = json.loads(line)["fields"]
            queries_of_step = json.loads(fields["queries"])
            groups = json.loads(fields["documents"])
            yield ([(q, g[0]) for q, g in zip(queries_of_step, groups)],
                   [d for g in groups for d in g[1:]])


def stop():
    if a.save:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in m[0].auto_model.state_dict().items()}, a.save)
    sys.exit()


step, t0 = 0, time.time()
m.eval() if a.no_dropout else m.train()
for epoch in range(a.epochs):
    order = examples[:]
    rng.shuffle(order)
    for batch, negatives in (replayed_batches() if a.replay else drawn_batches(order)):
        if a.max_steps is not None and step >= a.max_steps:
            stop()
        docs = [d for _, d in batch] + negatives
        texts, owner = [], []
        for j, d in enumerate(docs):
            texts += train_units[d]
            owner += [j] * len(train_units[d])
        q = embed([queries[x] for x, _ in batch])
        s = q @ embed(texts).T
        scores = torch.full((len(batch), len(docs)), -1e4).scatter_reduce(
            1, torch.tensor(owner).expand(len(batch), -1), s, reduce="amax", include_self=True)
        # Replaying, sift's rule: only other queries' positives are masked, not a negative of
        # another group that happens to be relevant to this query.
        maskable = len(batch) if a.replay else len(docs)
        mask = torch.tensor([[j != i and j < maskable and d in qrels[x] for j, d in enumerate(docs)]
                             for i, (x, _) in enumerate(batch)])
        logits = scores.masked_fill(mask, -1e4) * 20.0
        loss = F.cross_entropy(logits, torch.arange(len(batch)))
        if a.symmetric:
            # Each positive document against the batch's queries (the same masks, transposed).
            loss = (loss + F.cross_entropy(logits[:, :len(batch)].T, torch.arange(len(batch)))) / 2
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 5 == 0:
            print(f"step {step}/{total} loss {loss.item():.3f} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    evaluate(f"epoch {epoch + 1}")
    if a.replay:
        break  # the log holds every epoch's steps
stop()
