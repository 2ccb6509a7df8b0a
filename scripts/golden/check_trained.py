"""Check that Hugging Face transformers scores a checkpoint written by `sift train-reranker`
exactly as sift does.

Usage: python scripts/golden/check_trained.py MODEL_DIR [SIFT_BINARY]
Needs torch and transformers (the reference venv of scripts/golden/make_fixtures.py). Loads
MODEL_DIR with AutoModelForSequenceClassification, scores fixed (query, document) pairs with the
max length from sentence_bert_config.json (document cut first, as sift does), runs
`sift rerank` on the same pairs, and fails if any logit differs by more than 1e-4.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model_dir = Path(sys.argv[1])
sift = sys.argv[2] if len(sys.argv) > 2 else "target/release/sift"
max_length = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]

query = "what is known about vitamin D and cancer risk"
documents = [
    "Vitamin D supplementation and cancer incidence\nIn a randomised trial, vitamin D did not lower overall cancer incidence.",
    "Statins and dementia\nObservational cohorts suggest statin use is associated with lower dementia risk.",
    "A short one.",
    "Long document " + "with many repeated words about receptors and signalling pathways " * 40,
]

tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
batch = tokenizer(
    [query] * len(documents),
    documents,
    truncation="only_second",
    max_length=max_length,
    padding=True,
    return_tensors="pt",
)
with torch.no_grad():
    reference = model(**batch).logits[:, 0].tolist()

out = subprocess.run(
    [sift, "rerank", "--model", str(model_dir), "--query", query, *documents],
    check=True,
    capture_output=True,
    text=True,
).stdout
ours = {r["index"]: r["logit"] for r in json.loads(out)}
worst = max(abs(ours[i] - reference[i]) for i in range(len(documents)))
print(f"{model_dir}: {len(documents)} pairs, max |logit difference| = {worst:.2e}")
for i, r in enumerate(reference):
    print(f"  pair {i}: transformers {r:+.6f}  sift {ours[i]:+.6f}")
sys.exit(0 if worst <= 1e-4 else 1)
