#!/usr/bin/env python3
"""sift against ONNX Runtime and PyTorch: forward-pass throughput, alternating, same tokens.

For each workload every engine runs one timed pass per round, in turn, for --rounds rounds;
the table shows the median real tokens/s (padding excluded) and sift's ratio to each peer.

Engines
  sift-onnx-f32 / sift-onnx-int8 / sift-candle   `sift bench` (its own length-sorted batching)
  ort-f32 / ort-int8    Python onnxruntime on a torch.onnx export of the same weights (int8:
                        onnxruntime.quantization.quantize_dynamic, its defaults), batches of 32
  torch                 transformers on PyTorch, batches of 32
Peers run batches of 32 in input order, padded to the longest member, as TEI, fastembed and
sentence-transformers' CrossEncoder.predict do; `-sorted` variants sort by length first (what
SentenceTransformer.encode does), to show how much of sift's lead is batching.

Workloads
  embed-minilm     all-MiniLM-L6-v2, SciFact documents (title + abstract), truncated at 256
  embed-mpnet      all-mpnet-base-v2, SciFact documents, truncated at 384
  rerank-minilm    cross-encoder of MiniLM-L6 shape, SciFact (query, document) pairs, 512
  rerank-base      cross-encoder of BERT-base shape, same pairs
  each also as `-fixed`: 32 sequences x 128 tokens
The cross-encoders have random weights (throughput does not depend on them); they are made
here with transformers, so nothing is downloaded.

Run from the repository root after scripts/setup.sh --all, with a Python that has torch,
transformers, onnx and onnxruntime (see docs/performance.md):
  python scripts/bench/inference.py                 # everything, 5 rounds
  python scripts/bench/inference.py --smoke         # tiny, 1 round (what CI could afford)
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "bench"
BATCH = 32


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- models ------------------------------------------------------------------------------

def random_cross_encoder(name, **shape):
    """A BertForSequenceClassification of the given shape with seeded random weights."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = OUT / "models" / name
    if (path / "model.safetensors").is_file():
        return path
    torch.manual_seed(0)
    config = BertConfig(num_labels=1, max_position_embeddings=512, **shape)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    # The vocabulary of all-MiniLM-L6-v2 (a BERT uncased WordPiece vocabulary).
    BertTokenizerFast.from_pretrained(ROOT / "models" / "all-MiniLM-L6-v2").save_pretrained(path)
    return path


def export_onnx(model_dir, task):
    """torch.onnx export (f32) and onnxruntime dynamic int8 quantization of a model."""
    import torch
    from onnxruntime.quantization import quantize_dynamic
    from transformers import AutoModel, AutoModelForSequenceClassification

    out = OUT / "onnx" / model_dir.name
    f32, int8 = out / "model.onnx", out / "model.int8.onnx"
    if int8.is_file():
        return f32, int8
    out.mkdir(parents=True, exist_ok=True)
    cls = AutoModelForSequenceClassification if task == "rerank" else AutoModel
    model = cls.from_pretrained(model_dir).eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if model.config.model_type == "bert" else [])

    class Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            return self.inner(**dict(zip(names, tensors)))[0]

    dummy = tuple(torch.ones((2, 16), dtype=torch.long) for _ in names)
    output = "logits" if task == "rerank" else "last_hidden_state"
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes[output] = {0: "batch"} if task == "rerank" else {0: "batch", 1: "seq"}
    torch.onnx.export(Positional(model), dummy, f32, input_names=names, output_names=[output],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    quantize_dynamic(str(f32), str(int8))
    return f32, int8


# --- workloads ---------------------------------------------------------------------------

def scifact(data):
    corpus = [json.loads(l) for l in open(data / "corpus.jsonl")]
    queries = [json.loads(l) for l in open(data / "queries.train.jsonl")]
    docs = [(d.get("title", "") + " " + d["text"]).strip() for d in corpus]
    return docs, [q["text"] for q in queries]


def tokenize(tokenizer, texts, max_length, pairs=None):
    if pairs is None:
        enc = tokenizer(texts, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(texts, pairs, truncation="only_second", max_length=max_length)
    types = enc.get("token_type_ids") or [[0] * len(i) for i in enc["input_ids"]]
    return [{"ids": i, "type_ids": t} for i, t in zip(enc["input_ids"], types)]


def make_workloads(args):
    from transformers import AutoTokenizer

    docs, queries = scifact(args.data)
    # Every k-th document / query: a deterministic sample with the corpus's length spread.
    def sample(items, n):
        step = max(1, len(items) // n)
        return items[::step][:n]

    minilm = ROOT / "models" / "all-MiniLM-L6-v2"
    mpnet = ROOT / "models" / "all-mpnet-base-v2"
    ce_small = random_cross_encoder("ce-minilm-l6-shape", hidden_size=384, num_hidden_layers=6,
                                    num_attention_heads=12, intermediate_size=1536)
    ce_base = random_cross_encoder("ce-bert-base-shape", hidden_size=768, num_hidden_layers=12,
                                   num_attention_heads=12, intermediate_size=3072)
    s = args.scale
    n_pairs = max(2, int(48 * s))
    pair_queries = sample(queries, n_pairs)
    pair_docs = sample(docs[1::2], n_pairs)  # other documents than the embedding sample

    tok = AutoTokenizer.from_pretrained(minilm)
    tok_mpnet = AutoTokenizer.from_pretrained(mpnet)
    pairs = tokenize(tok, pair_queries, 512, pair_docs)
    work = [
        ("embed-minilm", minilm, "embed", tokenize(tok, sample(docs, max(2, int(64 * s))), 256)),
        ("embed-mpnet", mpnet, "embed", tokenize(tok_mpnet, sample(docs, max(2, int(24 * s))), 384)),
        ("rerank-minilm", ce_small, "rerank", pairs),
        ("rerank-base", ce_base, "rerank", pairs[: max(2, int(16 * s))]),
    ]
    fixed_rows = 32 if not args.smoke else 4
    out = []
    for name, model, task, seqs in work:
        out.append((name, model, task, seqs))
        rng = np.random.default_rng(0)
        vocab = 30000
        fixed = [{"ids": rng.integers(1000, vocab, 128).tolist(), "type_ids": [0] * 128}
                 for _ in range(fixed_rows)]
        out.append((name + "-fixed", model, task, fixed))
    return out


# --- engines -----------------------------------------------------------------------------

def batches(seqs, sort):
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]["ids"])) if sort else list(range(len(seqs)))
    for k in range(0, len(order), BATCH):
        yield [seqs[i] for i in order[k:k + BATCH]]


def padded(batch):
    t = max(len(s["ids"]) for s in batch)
    ids = np.zeros((len(batch), t), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for r, s in enumerate(batch):
        n = len(s["ids"])
        ids[r, :n], types[r, :n], mask[r, :n] = s["ids"], s["type_ids"], 1
    return ids, types, mask


def mean_pool(hidden, mask):
    m = mask[..., None].astype(hidden.dtype)
    v = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Ort:
    def __init__(self, path, threads, sort):
        import onnxruntime as ort
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.sort = sort

    def pass_(self, seqs, task):
        for b in batches(seqs, self.sort):
            ids, types, mask = padded(b)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            out = self.session.run(None, {k: feed[k] for k in self.inputs})[0]
            if task == "embed":
                mean_pool(out, mask)


class Torch:
    def __init__(self, model_dir, task, threads, sort):
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification
        torch.set_num_threads(threads)
        cls = AutoModelForSequenceClassification if task == "rerank" else AutoModel
        self.model = cls.from_pretrained(model_dir).eval()
        self.bert = self.model.config.model_type == "bert"
        self.sort = sort

    def pass_(self, seqs, task):
        import torch
        with torch.inference_mode():
            for b in batches(seqs, self.sort):
                ids, types, mask = (torch.from_numpy(x) for x in padded(b))
                kw = {"input_ids": ids, "attention_mask": mask}
                if self.bert:
                    kw["token_type_ids"] = types
                out = self.model(**kw)[0]
                if task == "embed":
                    mean_pool(out.numpy(), mask.numpy())


def sift_pass(model_dir, task, workload_file, engine, precision, threads):
    cmd = [str(ROOT / "target/release/sift"), "--threads", str(threads), "bench", "--model", str(model_dir),
           "--task", task, "--input", str(workload_file), "--runs", "1", "--engine", engine,
           "--precision", precision]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"sift bench failed: {r.stderr}")
    return json.loads(r.stdout)["seconds"][0]


# --- machine peak ------------------------------------------------------------------------

def linear_flops_per_token(model_dir):
    c = json.load(open(Path(model_dir) / "config.json"))
    h, f, n = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    return n * 2 * (4 * h * h + 2 * h * f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/scifact")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--scale", type=float, default=1.0, help="workload size multiplier")
    p.add_argument("--only", help="comma-separated workload names")
    p.add_argument("--with-candle", action="store_true", help="also time sift's candle engine")
    p.add_argument("--peak-gflops", type=float, help="machine f32 peak (default: measured by `sift bench --peak`)")
    p.add_argument("--smoke", action="store_true", help="tiny workloads, one round")
    p.add_argument("--json", type=Path, default=OUT / "inference.json")
    args = p.parse_args()
    if args.smoke:
        args.rounds, args.scale = 1, 0.1
    if not (ROOT / "target/release/sift").is_file():
        raise SystemExit("build sift first: cargo build --release --locked -p sift-cli")
    OUT.mkdir(parents=True, exist_ok=True)
    if args.peak_gflops is None:
        r = subprocess.run([str(ROOT / "target/release/sift"), "--threads", str(args.threads), "bench", "--peak"],
                           capture_output=True, text=True, check=True)
        peak = json.loads(r.stdout)
        args.peak_gflops = peak["f32_peak_gflops"]
        print(f"machine f32 peak: {args.peak_gflops:.0f} GFLOP/s ({peak['instructions']}, {args.threads} threads)")

    results = {}
    for name, model_dir, task, seqs in make_workloads(args):
        if args.only and name not in args.only.split(","):
            continue
        wfile = OUT / f"{name}.json"
        wfile.write_text(json.dumps({"sequences": seqs}))
        tokens = sum(len(s["ids"]) for s in seqs)
        f32, int8 = export_onnx(model_dir, task)
        engines = {
            "sift-onnx-f32": lambda: sift_pass(model_dir, task, wfile, "onnx", "f32", args.threads),
            "sift-onnx-int8": lambda: sift_pass(model_dir, task, wfile, "onnx", "int8", args.threads),
        }
        if args.with_candle:
            engines["sift-candle"] = lambda: sift_pass(model_dir, task, wfile, "candle", "f32", args.threads)
        peers = {
            "ort-f32": Ort(f32, args.threads, False),
            "ort-f32-sorted": Ort(f32, args.threads, True),
            "ort-int8": Ort(int8, args.threads, False),
            "ort-int8-sorted": Ort(int8, args.threads, True),
            "torch": Torch(model_dir, task, args.threads, False),
            "torch-sorted": Torch(model_dir, task, args.threads, True),
        }
        for peer in peers.values():
            peer.pass_(seqs, task)  # warm-up
        for key, peer in peers.items():
            engines[key] = (lambda peer: lambda: timed(lambda: peer.pass_(seqs, task)))(peer)
        times = {k: [] for k in engines}
        for r in range(args.rounds):
            for k, run in engines.items():
                times[k].append(run())
            log(f"{name}: round {r + 1}/{args.rounds} done")
        rate = {k: tokens / statistics.median(v) for k, v in times.items()}
        results[name] = {"tokens": tokens, "sequences": len(seqs), "seconds": times, "tokens_per_second": rate,
                         "linear_flops_per_token": linear_flops_per_token(model_dir)}
        print_table(name, results[name], args.peak_gflops)

    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "rounds": args.rounds,
            "f32_peak_gflops": args.peak_gflops,
            "versions": versions()}
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    log(f"wrote {args.json}")


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def versions():
    import onnxruntime, torch, transformers
    return {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def print_table(name, r, peak):
    rate = r["tokens_per_second"]
    print(f"\n{name}: {r['sequences']} sequences, {r['tokens']} real tokens")
    print(f"  {'engine':<16}{'tokens/s':>10}{'linear GFLOP/s':>16}" + ("  % peak" if peak else ""))
    for k, v in sorted(rate.items(), key=lambda kv: -kv[1]):
        g = v * r["linear_flops_per_token"] / 1e9
        print(f"  {k:<16}{v:>10.0f}{g:>16.1f}" + (f"{100 * g / peak:>7.0f}%" if peak else ""))
    for mine, peers in (("sift-onnx-f32", ("ort-f32", "ort-f32-sorted", "torch", "torch-sorted")),
                        ("sift-onnx-int8", ("ort-int8", "ort-int8-sorted"))):
        print(f"  {mine}: " + ", ".join(f"{rate[mine] / rate[p]:.2f}x {p}" for p in peers))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
