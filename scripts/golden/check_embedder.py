"""Check that sentence-transformers embeds with a model written by `sift train-embedder` exactly
as sift does.

Usage: python scripts/golden/check_embedder.py MODEL_DIR [SIFT_BINARY]
Needs torch and sentence-transformers (the reference venv of scripts/golden/make_fixtures.py).
Loads MODEL_DIR with `SentenceTransformer` (its modules.json: Transformer → Pooling →
Normalize), encodes fixed queries and passages with the prompts the directory records, runs
`sift embed` on the same texts with both of sift's engines (ONNX Runtime and candle), and fails
if any cosine is below 0.9999 (the first-stage-quality issue's bar).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

model_dir = Path(sys.argv[1])
sift = sys.argv[2] if len(sys.argv) > 2 else "target/release/sift"

queries = [
    "vitamin D lowers cancer incidence",
    "statins and dementia risk",
    "β-catenin signalling in colorectal tumours",
]
passages = [
    "Vitamin D supplementation and cancer incidence\nIn a randomised trial, vitamin D did not lower overall cancer incidence.",
    "Statins and dementia\nObservational cohorts suggest statin use is associated with lower dementia risk.",
    "A short one.",
    # Longer than any max_seq_length sift writes: both sides must cut at the same token.
    "Long abstract " + "with many repeated words about receptors and signalling pathways " * 60,
]

model = SentenceTransformer(str(model_dir), device="cpu")
prompts = getattr(model, "prompts", {}) or {}


def reference(texts, role):
    prompt = prompts.get(role, "")
    return model.encode([prompt + t for t in texts], normalize_embeddings=False)


def ours(texts, flag, engine):
    lines = "\n".join(json.dumps(t) for t in texts) + "\n"
    out = subprocess.run(
        [sift, "embed", "--model", str(model_dir), "--engine", engine, flag, "--format", "jsonl", "-f", "-"],
        input=lines,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = sorted((json.loads(l) for l in out.splitlines() if l.strip()), key=lambda r: r["index"])
    return np.array([r["embedding"] for r in rows], dtype=np.float64)


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


worst = 1.0
for engine in ["onnx", "candle"]:
    for texts, flag, role in [(queries, "--query", "query"), (passages, "--passage", "passage")]:
        c = cosines(reference(texts, role).astype(np.float64), ours(texts, flag, engine))
        worst = min(worst, float(c.min()))
        print(f"{engine:6} {role:8} cosines: " + " ".join(f"{x:.7f}" for x in c))
print(f"{model_dir}: min cosine sentence-transformers vs sift = {worst:.7f}")
sys.exit(0 if worst >= 0.9999 else 1)
