#!/usr/bin/env python3
"""Reference outputs of the two real GGUF models scripts/setup.sh --gguf fetches, computed by
transformers loading the same files (it dequantizes every tensor to f32 and runs its own
modeling code):

    scripts/setup.sh --gguf --models-only
    python3 -m venv /tmp/ref4 && /tmp/ref4/bin/pip install torch "transformers>=4.56,<5" gguf accelerate
    /tmp/ref4/bin/python scripts/golden/make_gguf_fixtures.py models/gguf

For each model and each text it records transformers' token ids (its GGUF tokenizer
conversion, no special tokens), llama.cpp's token ids (llama-cpp-python, the reference
implementation of the format's tokenizers; `pip install llama-cpp-python` builds it), and the
logits at the last position of `[BOS] + transformers' ids` for a fixed set of vocabulary rows, into crates/models/tests/fixtures/gguf/<model>.json (a few KB:
the models themselves are never committed).
"""

import json
import sys
from pathlib import Path

import torch
from llama_cpp import Llama
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/models/tests/fixtures/gguf"

MODELS = {
    "smollm2-135m-instruct-q4_1": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma-3-270m-q4_k_m": "gemma-3-270m-q4_k_m.gguf",
}

TEXTS = [
    "The capital of France is",
    "Vaccines reduce the risk of severe disease in adults over 65 by 87.5% (95% CI 80-92).",
    "Question: does aspirin prevent heart attacks?\nAnswer:",
    "北京是中国的首都,上海是最大的城市。",
    "Pizza 🍕 tastes best with friends 🎉 — naïve café owners agree",
]


def main():
    models_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "models/gguf")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, file in MODELS.items():
        tok = AutoTokenizer.from_pretrained(models_dir, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(models_dir, gguf_file=file, dtype=torch.float32).eval()
        vocab = model.config.vocab_size
        rows = sorted(set(range(0, vocab, max(1, vocab // 48))) | {tok.bos_token_id or 0})
        llama = Llama(model_path=str(models_dir / file), vocab_only=True, verbose=False)
        cases = []
        for text in TEXTS:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
            with torch.no_grad():
                logits = model(torch.tensor([bos + ids])).logits[0, -1]
            cases.append({
                "text": text,
                "ids": ids,
                "llama_cpp_ids": llama.tokenize(text.encode("utf-8"), add_bos=False, special=False),
                "input_ids": bos + ids,
                "logits": [round(float(logits[r]), 5) for r in rows],
                "argmax": int(logits.argmax()),
            })
        out = {"file": file, "transformers_config": model.config.to_dict()["model_type"],
               "rows": rows, "cases": cases}
        (OUT / f"{name}.json").write_text(json.dumps(out, ensure_ascii=False, indent=1))
        print("wrote", OUT / f"{name}.json")


if __name__ == "__main__":
    main()
