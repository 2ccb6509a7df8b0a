#!/usr/bin/env python3
"""sift's GGUF path against llama.cpp (llama-cpp-python) on the same token sequences.

Both read models/gguf/gemma-3-270m-q4_k_m.gguf and evaluate every (query, abstract) sequence of
target/bench/llm-gemma3-270m.json (written by scripts/bench/llm_rerank.py) to its last token:
llama.cpp with its quantized kernels (one sequence at a time, no KV reuse across sequences,
logits of the last token only), sift with the weights dequantized to f32 (length-sorted
batches; with and without sharing the query prefix) and with `--precision int8` (the file's
Q4_K/Q6_K blocks run as stored where candle has a kernel for the shape). Same threads.
Median of --rounds.

    /tmp/ref4/bin/pip install llama-cpp-python      # builds llama.cpp from the sdist
    /tmp/ref4/bin/python scripts/bench/llama_cpp_rerank.py --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from llama_cpp import Llama

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model = ROOT / "models/gguf/gemma-3-270m-q4_k_m.gguf"
    workload = ROOT / "target/bench/llm-gemma3-270m.json"
    seqs = [s["ids"] for s in json.loads(workload.read_text())["sequences"]]
    tokens = sum(len(s) for s in seqs)
    llm = Llama(model_path=str(model), n_ctx=1024, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, logits_all=False, verbose=False)
    times = {"llama.cpp": [], "sift": [], "sift-no-prefix": [], "sift-int8": []}
    env = dict(os.environ, SIFT_THREADS=str(args.threads))
    for _ in range(args.rounds):
        start = time.perf_counter()
        for s in seqs:
            llm.reset()
            llm.eval(s)
        times["llama.cpp"].append(time.perf_counter() - start)
        for name, extra in [("sift", []), ("sift-no-prefix", ["--no-shared-prefix"]),
                            ("sift-int8", ["--precision", "int8"])]:
            out = subprocess.run([str(ROOT / "target/release/sift"), "bench", "--task", "rerank",
                                  "--model", str(model), "--input", str(workload), "--runs", "1"] + extra,
                                 capture_output=True, text=True, env=env, check=True)
            times[name].append(json.loads(out.stdout)["seconds"][0])
    print(f"{len(seqs)} sequences, {tokens} tokens, {args.threads} threads")
    print("| engine | tokens/s |")
    print("|---|---|")
    for name, t in times.items():
        print(f"| {name} | {tokens / statistics.median(t):,.0f} |")


if __name__ == "__main__":
    main()
