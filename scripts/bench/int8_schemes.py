#!/usr/bin/env python3
"""Simulates int8 quantization schemes on a cross-encoder before building one into sift.

Fake-quantizes every linear layer of the transformer (int8 weights per output column,
activations per tensor or per token row, optional SmoothQuant channel scaling) in PyTorch and
compares the reranker's logits with f32 on SciFact dev queries and their first-stage
candidates. docs/quality.md ("int8 reranking") records its output.

    python scripts/bench/int8_schemes.py --model /tmp/scifact-reranker \
        --run /tmp/eval-rerank-onnx/hybrid-all-MiniLM-L6-v2.trec

Needs torch and transformers (the reference venv of scripts/bench/inference.py); runs on
2 cores (10-20 min) for 25 queries × 100 candidates × 7 schemes.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]


def load(args):
    corpus = {}
    for line in open(args.data / "corpus.jsonl"):
        d = json.loads(line)
        corpus[d["_id"]] = f"{d['title']}\n{d['text']}" if d["title"].strip() else d["text"]
    queries = {}
    for line in open(args.data / "queries.train.jsonl"):
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    run = {}
    for line in open(args.run):
        q, _, d, *_ = line.split()
        run.setdefault(q, []).append(d)
    # sift's dev split: query ids divisible by 5; calibration uses other queries.
    dev = [q for q in run if int(q) % 5 == 0][: args.queries]
    calib = [q for q in queries if int(q) % 5 != 0][:16]
    return corpus, queries, run, dev, calib


def weight_int8(w):
    """Symmetric per output channel (rows of PyTorch's [out, in])."""
    s = w.abs().amax(1, keepdim=True) / 127
    s[s == 0] = 1
    return torch.round(w / s).clamp(-127, 127) * s


def act_per_tensor(x):
    """ONNX Runtime's DynamicQuantizeLinear: asymmetric uint8, one scale per tensor."""
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    s = (hi - lo) / 255 or 1.0
    zp = round(-lo / s)
    return (torch.clamp(torch.round(x / s) + zp, 0, 255) - zp) * s


def act_per_token(x):
    """sift's: symmetric, one scale per token row."""
    s = x.abs().amax(-1, keepdim=True) / 127
    s = torch.where(s == 0, torch.ones_like(s), s)
    return torch.round(x / s).clamp(-127, 127) * s


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="cross-encoder directory")
    p.add_argument("--run", type=Path, required=True, help="first-stage TREC run (sift eval)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/scifact")
    p.add_argument("--queries", type=int, default=25)
    p.add_argument("--max-length", type=int, default=160)
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    corpus, queries, run, dev, calib = load(args)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    linears = [(n, m) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layer." in n]

    cfg = {"act": None, "weights": False, "smooth": None, "skip": (), "calibrating": False}
    act_max, calib_x = {}, {}

    def hook(name, m):
        def forward(x):
            w, b = m.weight, m.bias
            if cfg["calibrating"]:
                flat = x.detach().reshape(-1, x.shape[-1])
                a = flat.abs().amax(0)
                act_max[name] = torch.maximum(act_max.get(name, a), a)
                calib_x[name] = torch.cat([calib_x.get(name, flat[:0]), flat])[:1024]
            if cfg["act"] is None or any(k in name for k in cfg["skip"]):
                return torch.nn.functional.linear(x, w, b)
            if cfg["smooth"] is not None:
                s = cfg["smooth"][name]
                x, w = x / s, w * s
            if cfg["weights"]:
                w = weight_int8(w)
            return torch.nn.functional.linear(cfg["act"](x), w, b)
        return forward

    for name, m in linears:
        m.forward = hook(name, m)

    def score(pairs, batch=6):
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][1]))
        out = [0.0] * len(pairs)
        with torch.no_grad():
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                enc = tok([pairs[j][0] for j in idx], [pairs[j][1] for j in idx], truncation=True,
                          max_length=args.max_length, padding=True, return_tensors="pt")
                for j, v in zip(idx, model(**enc).logits[:, -1].tolist()):
                    out[j] = v
        return out

    cfg["calibrating"] = True
    score([(queries[q], corpus[d]) for q in calib for d in run.get(q, list(corpus)[:8])[:8]])
    cfg["calibrating"] = False

    def smoothing(alpha):
        return {n: (act_max[n].clamp(min=1e-5) ** alpha
                    / m.weight.abs().amax(0).clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
                for n, m in linears}

    def searched(act):
        out = {}
        for n, m in linears:
            x, w = calib_x[n], m.weight
            ref = x @ w.T
            best = None
            for alpha in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
                s = (act_max[n].clamp(min=1e-5) ** alpha
                     / w.abs().amax(0).clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
                err = ((act(x / s) @ weight_int8(w * s).T - ref) ** 2).mean().item()
                if best is None or err < best[0]:
                    best = (err, s)
            out[n] = best[1]
        return out

    pairs = [(queries[q], corpus[d]) for q in dev for d in run[q]]
    cfg["act"] = None
    base = np.array(score(pairs))
    identity = lambda x: x  # noqa: E731
    schemes = [
        ("per tensor, FFN down-projection f32", act_per_tensor, True, None, ("output.dense",)),
        ("per tensor, every layer", act_per_tensor, True, None, ()),
        ("per token row, every layer", act_per_token, True, None, ()),
        ("SmoothQuant 0.5 + per tensor", act_per_tensor, True, "0.5", ()),
        ("SmoothQuant 0.5 + per token row (sift)", act_per_token, True, "0.5", ()),
        ("alpha searched per layer + per token row", act_per_token, True, "search", ()),
        ("int8 weights, f32 activations", identity, True, None, ()),
    ]
    print(f"{len(dev)} queries, {len(pairs)} pairs; f32 logit std {base.std():.2f}")
    print("| scheme | mean |Δ logit| | max |Δ logit| | top-10 overlap |")
    print("|---|---|---|---|")
    for label, act, weights, smooth, skip in schemes:
        t0 = time.time()
        cfg.update(act=act, weights=weights, skip=skip,
                   smooth=None if smooth is None else
                   searched(act) if smooth == "search" else smoothing(float(smooth)))
        got = np.array(score(pairs))
        overlap, k = [], 0
        for q in dev:
            n = len(run[q])
            top_f32 = set(np.argsort(-base[k:k + n])[:10])
            top_q = set(np.argsort(-got[k:k + n])[:10])
            overlap.append(len(top_f32 & top_q) / 10)
            k += n
        d = np.abs(got - base)
        print(f"| {label} | {d.mean():.3f} | {d.max():.2f} | {np.mean(overlap):.3f} |"
              f"  <!-- {time.time() - t0:.0f}s -->", flush=True)


if __name__ == "__main__":
    main()
