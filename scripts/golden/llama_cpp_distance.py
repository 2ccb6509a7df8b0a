#!/usr/bin/env python3
"""How far llama.cpp's own quantized kernels are from transformers' f32 logits on the GGUF
fixtures (crates/models/tests/fixtures/gguf/*.json), measured the way
crates/models/tests/gguf.rs measures sift's int8 path: for each text, the root-mean-square
difference of the last position's logits over the fixture's vocabulary rows, divided by the
spread (standard deviation) of transformers' logits there.

llama.cpp picks its kernels from the CPU it runs on (AVX2, AVX-512, VNNI, AMX), so its distance
is a property of the machine as much as of the file: run this where the Rust test runs.

    python3 -m venv /tmp/ref4 && /tmp/ref4/bin/pip install llama-cpp-python numpy
    /tmp/ref4/bin/python scripts/golden/llama_cpp_distance.py [models/gguf]

It feeds llama.cpp transformers' token ids (the fixture's `input_ids`), so both sides read the
same sequence.
"""

import json
import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/models/tests/fixtures/gguf"


def main():
    models_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "models/gguf")
    for fixture in sorted(FIXTURES.glob("*.json")):
        expected = json.loads(fixture.read_text())
        llama = Llama(model_path=str(models_dir / expected["file"]), n_ctx=512, n_threads=2,
                      logits_all=True, verbose=False)
        rows = expected["rows"]
        for case in expected["cases"]:
            llama.reset()
            llama.eval(case["input_ids"])
            got = np.array(llama.scores[len(case["input_ids"]) - 1], dtype=np.float64)[rows]
            want = np.array(case["logits"], dtype=np.float64)
            rms = np.sqrt(np.mean((got - want) ** 2))
            spread = want.std()
            print(f"{fixture.stem} {case['text']!r}: rms/spread {rms / spread:.4f} "
                  f"(rms {rms:.4f}, spread {spread:.4f}, mean shift {np.mean(got - want):+.4f})")


if __name__ == "__main__":
    main()
