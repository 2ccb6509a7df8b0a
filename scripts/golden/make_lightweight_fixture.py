#!/usr/bin/env python3
"""Builds the golden fixture of the lightweight layerwise Gemma 2 reranker
(bge-reranker-v2.5-gemma2-lightweight's architecture, FlagEmbedding's CostWiseGemmaForCausalLM):
a tiny random 4-layer model scored by FlagEmbedding's own LightweightLLMReranker at several
cutoff layers, with and without token compression.

FlagEmbedding's CostWiseGemma modeling file needs transformers 4.44–4.46 (later versions
changed Gemma 2's decoder layer), so this runs in a venv of its own:

    python3 -m venv /tmp/ref44
    /tmp/ref44/bin/pip install torch "transformers==4.44.2" "FlagEmbedding==1.4.2"
    /tmp/ref44/bin/python scripts/golden/make_lightweight_fixture.py

The tokenizer and the (query, document) pairs are the Gemma 2 fixture's
(scripts/golden/make_llm_fixtures.py), so run that first. Writes
crates/models/tests/fixtures/llm/gemma2-lightweight/.
"""

import json
import math
import shutil
from pathlib import Path

import torch
from FlagEmbedding.inference.reranker.decoder_only.lightweight import LightweightLLMReranker
from FlagEmbedding.inference.reranker.decoder_only.models.gemma_config import CostWiseGemmaConfig
from FlagEmbedding.inference.reranker.decoder_only.models.gemma_model import CostWiseGemmaForCausalLM
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/models/tests/fixtures/llm"
MAX_LENGTH = 48
# LightweightLLMReranker's own default prompt (not FlagLLMReranker's).
PROMPT = "Predict whether passage B contains an answer to query A."

# (cutoff layer, compress layers, compress ratio). Heads exist at layers 1..=4; FlagEmbedding
# scores every requested cutoff with lm_head[i], i = its position in the request, so a single
# cutoff always reads the first head (start_layer's) whatever the layer: reproduced by sift.
CASES = [(4, None, 1), (2, None, 1), (3, [2], 2), (4, [1, 3], 4), (4, [2], 8)]


def main():
    src = FIXTURES / "gemma2"
    pairs = [(p["query"], p["document"])
             for p in json.loads((src / "expected.json").read_text())["cases"][0]["pairs"]]
    out = FIXTURES / "gemma2-lightweight"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    # The tokenizers release transformers 4.44 needs reads merges only as "a b" strings (newer
    # ones write [a, b] pairs and read both): the same tokenizer, written the older way.
    tokenizer_json = json.loads((src / "tokenizer.json").read_text())
    tokenizer_json["model"]["merges"] = [
        m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
    (out / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False))
    for f in ["tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(src / f, out / f)
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    cfg = CostWiseGemmaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        rms_norm_eps=1e-6, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, sliding_window=8, query_pre_attn_scalar=12,
        attn_logit_softcapping=5.0, final_logit_softcapping=3.0, start_layer=1, layer_sep=1,
        layer_wise=True, use_cache=False, attn_implementation="eager")
    cfg.architectures = ["CostWiseGemmaForCausalLM"]
    torch.manual_seed(3000)
    model = CostWiseGemmaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(3000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_((0.2 * noise) if "norm" in name else (0.3 * noise))
    model.save_pretrained(out)

    reranker = LightweightLLMReranker(str(out), use_fp16=False, devices=["cpu"], batch_size=4)
    # Loaded as above the model runs transformers 4.44's SDPA attention, which silently skips
    # Gemma 2's attention soft-capping; sift computes Gemma 2 as defined (the eager path), so
    # the reference is FlagEmbedding's recipe on the eager model.
    reranker.model = CostWiseGemmaForCausalLM.from_pretrained(
        out, torch_dtype=torch.float32, attn_implementation="eager").eval()
    # The recipe's token ids, as LightweightLLMReranker builds them (BOS always, then as bge-llm).
    sep = tok("\n", add_special_tokens=False)["input_ids"]
    prompt = tok(PROMPT, add_special_tokens=False)["input_ids"]
    ids = []
    for q, d in pairs:
        qi = tok(f"A: {q}", add_special_tokens=False, max_length=MAX_LENGTH * 3 // 4, truncation=True)["input_ids"]
        pi = tok(f"B: {d}", add_special_tokens=False, max_length=MAX_LENGTH, truncation=True)["input_ids"]
        first, second = [tok.bos_token_id] + qi, sep + pi
        limit = MAX_LENGTH + len(sep) + len(prompt)
        if len(first) + len(second) > limit and len(first) < limit:
            second = second[: limit - len(first)]
        ids.append(first + second + sep + prompt)

    cases = []
    for cutoff, layers, ratio in CASES:
        logits = reranker.compute_score(pairs, cutoff_layers=[cutoff], compress_layers=layers,
                                        compress_ratio=ratio, max_length=MAX_LENGTH, normalize=False)
        cases.append({
            "template": "bge-lightweight",
            "max_length": MAX_LENGTH,
            "prompt": None,
            "cutoff_layer": cutoff,
            "compress_layers": layers,
            "compress_ratio": ratio,
            "pairs": [
                {"query": q, "document": d, "input_ids": i, "output_logits": [round(float(l), 7)],
                 "logit": round(float(l), 7), "score": round(1 / (1 + math.exp(-float(l))), 7)}
                for (q, d), i, l in zip(pairs, ids, logits)
            ],
        })
    (out / "expected.json").write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
