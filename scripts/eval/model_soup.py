#!/usr/bin/env python3
"""Uniform weight average ("model soup", Wortsman et al. 2022) of fine-tunes of one base.

    /tmp/ref/bin/python scripts/eval/model_soup.py OUT RUN_A RUN_B [RUN_C ...]

Each RUN is a sentence-transformers directory that `sift train-embedder` wrote from the same
base (same tensor names and shapes). OUT gets RUN_A's files (config, tokenizer, pooling; not
its checkpoint/ nor its training records, which describe RUN_A alone) with model.safetensors
replaced by the element-wise mean, computed in f32 and stored in the runs' dtype. Used in
docs/quality.md to ask whether averaging draws of one recipe adds anything beyond removing the
draw's variance (it did not: the soup read its parents' mean).
"""

import os
import shutil
import sys

from safetensors.torch import load_file, save_file


def main(out, runs):
    if len(runs) < 2:
        sys.exit("give OUT and at least two run directories")
    states = [load_file(os.path.join(run, "model.safetensors")) for run in runs]
    names = set(states[0])
    for run, state in zip(runs, states):
        if set(state) != names or any(state[k].shape != states[0][k].shape for k in names):
            sys.exit(f"{run}: tensors differ from {runs[0]}'s; only fine-tunes of one base average")
    records = shutil.ignore_patterns("checkpoint", "training.json", "first_stage.json")
    shutil.copytree(runs[0], out, ignore=records, dirs_exist_ok=True)
    mean = {
        k: (sum(s[k].float() for s in states) / len(states)).to(states[0][k].dtype).contiguous()
        for k in names
    }
    save_file(mean, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    print(f"{out}: mean of {len(names)} tensors over {len(runs)} runs")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
