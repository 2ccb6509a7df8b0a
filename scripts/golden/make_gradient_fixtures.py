#!/usr/bin/env python3
"""Reference gradients of one contrastive training step, for sift's trainer to be tested against.

Run by hand (not in CI) after changing the encoder fixtures or the step below:

    /tmp/ref/bin/python scripts/golden/make_gradient_fixtures.py

sift's bi-encoder trainer backpropagates through its own candle kernels (attention, GELU,
layer norm, pooling, the best-window maximum). Its forward pass is tested against
sentence-transformers (the golden embeddings), but a wrong backward pass still trains — the
loss falls, just more slowly or towards a worse model — so no forward test can catch it. This
script runs the step sift's `train-embedder` runs, in torch on the tiny encoders of
make_fixtures.py, and writes every encoder parameter's gradient:

- queries: the fixture's first three texts; units: six texts, grouped into four documents by
  `spans` (a document scores by its best unit, as sift scores a document by its best window);
- loss: in-batch softmax cross-entropy over scale × cosine (query i's positive is document i),
  with the (query, document) pairs in `not_negatives` left out of the softmax (-1e4);
- no dropout (the fixtures' rates are 0), weights in f32.

Output per fixture: gradients.json (the step and its loss) and gradients.safetensors (one
tensor per parameter, Hugging Face names; parameters the step does not reach, such as BERT's
pooler, are absent).
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates/models/tests/fixtures/golden"
SPANS = [(0, 2), (2, 1), (3, 2), (5, 1)]
NOT_NEGATIVES = [(0, 2)]
SCALE = 20.0


def step(name):
    folder = GOLDEN / name
    expected = json.loads((folder / "expected.json").read_text())
    texts = expected["texts"]
    queries = texts[:3]
    # Distinct units (a suffix per unit) so no two columns tie for the maximum.
    units = [f"{texts[(i + 1) % len(texts)]} {i}" for i in range(6)]

    model = SentenceTransformer(str(folder), device="cpu", model_kwargs={"dtype": torch.float32})
    model.max_seq_length = expected["max_length"]
    encoder = model[0].auto_model
    encoder.eval()  # rates are 0 anyway; eval() also keeps any other train-time behaviour off
    for p in encoder.parameters():
        p.requires_grad_(True)
        p.grad = None

    def embed(batch):
        features = model.tokenize(batch)
        return F.normalize(model(features)["sentence_embedding"], dim=-1)

    scores = embed(queries) @ embed(units).T
    documents = torch.stack([scores[:, s:s + n].max(dim=1).values for s, n in SPANS], dim=1)
    logits = documents * SCALE
    for q, d in NOT_NEGATIVES:
        logits = logits.index_put((torch.tensor([q]), torch.tensor([d])), torch.tensor(-1e4), accumulate=True)
    loss = F.cross_entropy(logits, torch.arange(len(queries)))
    loss.backward()

    grads = {n: p.grad.detach().contiguous() for n, p in encoder.named_parameters() if p.grad is not None}
    save_file(grads, str(folder / "gradients.safetensors"))
    (folder / "gradients.json").write_text(json.dumps({
        "queries": queries,
        "units": units,
        "spans": SPANS,
        "not_negatives": NOT_NEGATIVES,
        "scale": SCALE,
        "loss": loss.item(),
    }, ensure_ascii=False, indent=1) + "\n")
    print(f"{name}: loss {loss.item():.6f}, {len(grads)} gradients")


if __name__ == "__main__":
    for fixture in ["bert-encoder", "mpnet-encoder", "xlmr-encoder"]:
        step(fixture)
