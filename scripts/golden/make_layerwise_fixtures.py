#!/usr/bin/env python3
"""Builds the layerwise cross-encoder fixtures (`sift train-reranker --layerwise` layout).

Run by hand (not in CI) after changing what the fixtures cover:

    python3 -m venv /tmp/ref4 && /tmp/ref4/bin/pip install torch transformers==4.57.6 safetensors
    /tmp/ref4/bin/python scripts/golden/make_layerwise_fixtures.py

For BERT, XLM-RoBERTa and MPNet it builds a 3-layer cross-encoder with random weights and a
random exit head after layers 1 and 2 (`exits.{n}.dense`, `exits.{n}.out`, listed in
config.json's `sift_layerwise.exit_layers`), reusing the tokenizer of the matching golden
classifier fixture. The reference for exit N is transformers itself running a truncated copy:
the same checkpoint with `num_hidden_layers = N` and exit N's head saved as the model's own
classification head, loaded with `from_pretrained`. Exit 3 is the checkpoint as it is, which
transformers loads as the ordinary model (it ignores the `exits.*` tensors).
"""

import json
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates/models/tests/fixtures/golden"
OUT = ROOT / "crates/models/tests/fixtures/layerwise"
LAYERS = 3
EXITS = [1, 2]
MAX_LENGTH = 32


def head_names(model_type):
    """Where the final head keeps the exit head's two linear layers."""
    if model_type == "bert":
        return "bert.pooler.dense", "classifier"
    return "classifier.dense", "classifier.out_proj"


def build(name, config_cls, model_cls, source):
    torch.manual_seed(len(name))
    src = json.loads((GOLDEN / source / "config.json").read_text())
    keep = {k: src[k] for k in ("vocab_size", "pad_token_id", "max_position_embeddings") if k in src}
    extra = {"type_vocab_size": src["type_vocab_size"]} if "type_vocab_size" in src else {}
    config = config_cls(
        hidden_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=1,
        initializer_range=0.3,
        **keep,
        **extra,
    )
    # A wide initialisation, so logits differ between pairs by more than the tolerance.
    model = model_cls(config).eval()
    out = OUT / name
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(GOLDEN / source / "tokenizer.json", out / "tokenizer.json")

    tensors = load_file(out / "model.safetensors")
    hidden = config.hidden_size
    for n in EXITS:
        for part, shape in (("dense", (hidden, hidden)), ("out", (1, hidden))):
            tensors[f"exits.{n}.{part}.weight"] = torch.randn(shape) * 0.3
            tensors[f"exits.{n}.{part}.bias"] = torch.randn(shape[0]) * 0.1
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["sift_layerwise"] = {"exit_layers": EXITS}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))

    pairs = json.loads((GOLDEN / source / "expected.json").read_text())["pairs"]
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    logits = {}
    for n in EXITS + [LAYERS]:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp)
            c = dict(cfg)
            c["num_hidden_layers"] = n
            del c["sift_layerwise"]
            (copy / "config.json").write_text(json.dumps(c))
            dense, final = head_names(config.model_type)
            t = {}
            for key, value in tensors.items():
                if key.startswith("exits."):
                    continue
                parts = key.split(".")
                if "layer" in parts:
                    i = parts.index("layer")
                    if parts[i - 1] == "encoder" and int(parts[i + 1]) >= n:
                        continue
                t[key] = value
            if n != LAYERS:
                for part, target in (("dense", dense), ("out", final)):
                    t[f"{target}.weight"] = tensors[f"exits.{n}.{part}.weight"]
                    t[f"{target}.bias"] = tensors[f"exits.{n}.{part}.bias"]
            save_file(t, copy / "model.safetensors", metadata={"format": "pt"})
            reference = AutoModelForSequenceClassification.from_pretrained(copy).eval()
            assert reference.config.num_hidden_layers == n
            rows = []
            for q, d in pairs:
                enc = tok(q, d, truncation="only_second", max_length=MAX_LENGTH, return_tensors="pt")
                if config.model_type != "bert":
                    enc.pop("token_type_ids", None)
                with torch.no_grad():
                    rows.append(reference(**enc).logits[0].tolist())
            logits[str(n)] = rows
    # The checkpoint loads in transformers as the ordinary last-layer model.
    whole = AutoModelForSequenceClassification.from_pretrained(out).eval()
    for (q, d), want in zip(pairs, logits[str(LAYERS)]):
        enc = tok(q, d, truncation="only_second", max_length=MAX_LENGTH, return_tensors="pt")
        if config.model_type != "bert":
            enc.pop("token_type_ids", None)
        with torch.no_grad():
            got = whole(**enc).logits[0].tolist()
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-6
    expected = {
        "name": name,
        "transformers": transformers.__version__,
        "max_length": MAX_LENGTH,
        "pairs": pairs,
        "exit_logits": logits,
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False))
    print(name, {k: [round(r[0], 4) for r in v] for k, v in logits.items()})


build("bert", BertConfig, BertForSequenceClassification, "bert-classifier")
build("xlmr", XLMRobertaConfig, XLMRobertaForSequenceClassification, "xlmr-classifier")
build("mpnet", MPNetConfig, MPNetForSequenceClassification, "mpnet-classifier")
