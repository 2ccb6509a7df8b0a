#!/usr/bin/env python3
"""LLM reranking speed: sift against transformers on PyTorch (f32), same tokens, same threads.

Two model shapes, each scoring one SciFact claim against SciFact abstracts with a published
recipe (one query's pairs, as a reranker sees them):
  gemma3-270m   Gemma 3 270M (the real weights, from scripts/setup.sh --gguf, dequantized to
                f32 and saved as a transformers directory), FlagEmbedding's bge-llm recipe
  qwen3-0.6b    Qwen3-Reranker-0.6B's shape (28 layers, 1024 wide, random weights: speed does
                not depend on them), the Qwen3-Reranker card's recipe
Token ids are made once here and written to target/bench/llm-*.json; sift reads them with
`sift bench --task rerank --input`, PyTorch gets the same ids.

Engines (one timed pass per round each, in turn; median of --rounds):
  sift                 `sift bench`, shared query prefix (its default), length-sorted batches
  sift-no-prefix       `sift bench --no-shared-prefix`
  sift-int8            `sift bench --precision int8` (projections as int8 blocks where candle
                       has a fast kernel for their shape; docs/design.md)
  torch                transformers as the recipes run it: batches of 16 in input order,
                       padded, logits over the whole vocabulary at every position
  torch-last           the same with `logits_to_keep=1` (only the last position's logits)

Run from the repository root after `scripts/setup.sh --gguf`, with a Python that has torch,
transformers (4.56+) and gguf:
  python scripts/bench/llm_rerank.py --pairs 32 --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "bench"
BATCH = 16


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def scifact_pairs(n):
    data = Path(os.environ.get("SIFT_SHARED_DIR", ROOT / "../shared")) / "data/scifact"
    query = json.loads((data / "queries.train.jsonl").open().readline())["text"]
    docs = []
    with (data / "corpus.jsonl").open() as f:
        for line in f:
            d = json.loads(line)
            docs.append(f"{d['title']} {d['text']}")
            if len(docs) == n:
                break
    return [(query, d) for d in docs]


def gemma_dir():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = OUT / "models" / "gemma3-270m"
    if not (path / "model.safetensors").is_file():
        src = ROOT / "models" / "gguf"
        file = "gemma-3-270m-q4_k_m.gguf"
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=file, dtype=torch.float32)
        model.save_pretrained(path)
        AutoTokenizer.from_pretrained(src, gguf_file=file).save_pretrained(path)
    return path


def qwen3_dir():
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    path = OUT / "models" / "qwen3-0.6b-shape"
    if not (path / "model.safetensors").is_file():
        fixture = ROOT / "crates/models/tests/fixtures/llm/qwen3"
        cfg = Qwen3Config(vocab_size=151669, hidden_size=1024, intermediate_size=3072,
                          num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                          head_dim=128, max_position_embeddings=40960, rope_theta=1e6,
                          tie_word_embeddings=True)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg)
        model.save_pretrained(path)
        # The fixture's small byte-level tokenizer (it has "yes" and "no"): ids stay in range.
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
            if (fixture / f).is_file():
                (path / f).write_bytes((fixture / f).read_bytes())
    return path


def recipe_ids(name, path, pairs, max_length):
    """Token ids of each pair under the model's recipe, made by the fixture script's copies of
    the reference code."""
    sys.path.insert(0, str(ROOT / "scripts/golden"))
    from make_llm_fixtures import bge_inputs, qwen3_inputs
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    inputs = bge_inputs if name == "gemma3-270m" else qwen3_inputs
    return inputs(tok, pairs, max_length)[0]


def common_prefix(seqs):
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs):
            return i
    return n


def torch_pass(model, seqs, last_only):
    import torch

    with torch.inference_mode():
        for i in range(0, len(seqs), BATCH):
            batch = seqs[i:i + BATCH]
            width = max(len(s) for s in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, s in enumerate(batch):
                ids[j, :len(s)] = torch.tensor(s)
                mask[j, :len(s)] = 1
            kwargs = {"logits_to_keep": 1} if last_only else {}
            model(input_ids=ids, attention_mask=mask, **kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["gemma3-270m", "qwen3-0.6b"])
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    sift = ROOT / "target/release/sift"
    pairs = scifact_pairs(args.pairs)
    rows = []
    for name, make in [("gemma3-270m", gemma_dir), ("qwen3-0.6b", qwen3_dir)]:
        if args.only and args.only != name:
            continue
        path = make()
        seqs = recipe_ids(name, path, pairs, args.max_length)
        workload = OUT / f"llm-{name}.json"
        # Every pair has the same query: the tokens all sequences share are its prefix (type 0,
        # what sift groups and shares by, as `encode_pair` marks it), the rest type 1.
        shared = common_prefix(seqs)
        workload.write_text(json.dumps({"sequences": [
            {"ids": s, "type_ids": [0] * shared + [1] * (len(s) - shared)} for s in seqs]}))
        tokens = sum(len(s) for s in seqs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        times = {"sift": [], "sift-no-prefix": [], "sift-int8": [], "torch": [], "torch-last": []}
        env = dict(os.environ, SIFT_THREADS=str(args.threads))
        torch_pass(model, seqs[:BATCH], True)  # warm-up
        for r in range(args.rounds):
            for engine in times:
                if engine.startswith("sift"):
                    cmd = [str(sift), "bench", "--task", "rerank", "--model", str(path),
                           "--input", str(workload), "--runs", "1", "--engine", "candle"]
                    if engine == "sift-no-prefix":
                        cmd.append("--no-shared-prefix")
                    if engine == "sift-int8":
                        cmd += ["--precision", "int8"]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                    times[engine].append(json.loads(out.stdout)["seconds"][0])
                else:
                    start = time.perf_counter()
                    torch_pass(model, seqs, engine == "torch-last")
                    times[engine].append(time.perf_counter() - start)
                log(name, r, engine, f"{times[engine][-1]:.2f}s")
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((name, len(seqs), tokens, {k: tokens / v for k, v in med.items()}))
    print("| model | pairs | tokens | sift | sift, no prefix sharing | sift int8 | PyTorch (recipe: all logits) | PyTorch (last logits only) | sift / PyTorch | sift / PyTorch last | sift int8 / PyTorch last | prefix sharing |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n, tokens, tps in rows:
        print(f"| {name} | {n} | {tokens:,} | {tps['sift']:,.0f} | {tps['sift-no-prefix']:,.0f} | "
              f"{tps['sift-int8']:,.0f} | {tps['torch']:,.0f} | {tps['torch-last']:,.0f} | "
              f"{tps['sift'] / tps['torch']:.2f}x | {tps['sift'] / tps['torch-last']:.2f}x | "
              f"{tps['sift-int8'] / tps['torch-last']:.2f}x | {tps['sift'] / tps['sift-no-prefix']:.2f}x |")


if __name__ == "__main__":
    main()
