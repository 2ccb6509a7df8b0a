#!/usr/bin/env python3
"""Reference gradients of one training step of each trainer, for sift's trainers to be tested against.

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
- no dropout (the fixtures' rates are 0), weights in f32;
- for bert-encoder also the distilled step (`train-embedder --teacher`): half that loss plus
  half KL(teacher ‖ student) at temperature 2 (times 4) over each query's own group, the
  student's logits scale × its documents' scores at `columns`, against fixed teacher logits
  (gradients-distilled.safetensors).

The cross-encoder step (`train-reranker`), on the tiny classifiers: two groups of three
(query, document) pairs, the first document of each group the positive; loss = half the
listwise softmax cross-entropy plus half the distillation term KL(teacher ‖ student) at
temperature 2 (times 4), against fixed teacher logits. The MPNet classifier fixture has two
labels and sift trains one-label rerankers, so its step runs on a one-label head drawn here,
written to head.safetensors for the test to load.

Output per fixture: gradients.json (the step and its loss) and gradients.safetensors (one
tensor per parameter, Hugging Face names; parameters the step does not reach, such as BERT's
pooler in a bi-encoder, are absent).
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates/models/tests/fixtures/golden"
SPANS = [(0, 2), (2, 1), (3, 2), (5, 1)]
NOT_NEGATIVES = [(0, 2)]
SCALE = 20.0
COLUMNS = [[0, 3], [1, 3], [2, 0]]  # each query's group: its positive, then a negative
GROUP_TEACHER = [[1.0, -1.0], [0.5, 0.0], [2.0, 1.0]]
TEMPERATURE = 2.0
DISTILL_WEIGHT = 0.5


def kl(student, teacher):
    """KL(teacher ‖ student) over each row's softmax at TEMPERATURE, times its square."""
    return F.kl_div(F.log_softmax(student / TEMPERATURE, dim=1),
                    F.log_softmax(torch.tensor(teacher) / TEMPERATURE, dim=1),
                    reduction="batchmean", log_target=True) * TEMPERATURE ** 2


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

    def loss_and_gradients(distilled):
        encoder.zero_grad(set_to_none=True)
        scores = embed(queries) @ embed(units).T
        documents = torch.stack([scores[:, s:s + n].max(dim=1).values for s, n in SPANS], dim=1)
        logits = documents * SCALE
        for q, d in NOT_NEGATIVES:
            logits = logits.index_put((torch.tensor([q]), torch.tensor([d])), torch.tensor(-1e4), accumulate=True)
        loss = F.cross_entropy(logits, torch.arange(len(queries)))
        if distilled:
            student = documents.gather(1, torch.tensor(COLUMNS)) * SCALE
            loss = (1 - DISTILL_WEIGHT) * loss + DISTILL_WEIGHT * kl(student, GROUP_TEACHER)
        loss.backward()
        grads = {n: p.grad.detach().contiguous() for n, p in encoder.named_parameters() if p.grad is not None}
        return loss.item(), grads

    loss, grads = loss_and_gradients(False)
    save_file(grads, str(folder / "gradients.safetensors"))
    record = {
        "queries": queries,
        "units": units,
        "spans": SPANS,
        "not_negatives": NOT_NEGATIVES,
        "scale": SCALE,
        "loss": loss,
    }
    if name == "bert-encoder":
        distilled, distilled_grads = loss_and_gradients(True)
        save_file(distilled_grads, str(folder / "gradients-distilled.safetensors"))
        record.update(columns=COLUMNS, teacher=GROUP_TEACHER, temperature=TEMPERATURE,
                      distill_weight=DISTILL_WEIGHT, distilled_loss=distilled)
    (folder / "gradients.json").write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    print(f"{name}: loss {loss:.6f}, {len(grads)} gradients")


GROUPS = [(0, [0, 1, 4]), (1, [1, 2, 3])]  # (query of pair q, documents of pairs d)
TEACHER = [[2.0, 0.0, -1.0], [0.5, 1.5, -0.5]]


def cross_step(name):
    folder = GOLDEN / name
    expected = json.loads((folder / "expected.json").read_text())
    fixture_pairs = expected["pairs"]
    pairs = [(fixture_pairs[q][0], fixture_pairs[d][1]) for q, docs in GROUPS for d in docs]

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(expected["max_length"], strategy="only_second")
    encodings = [tok.encode(q, d) for q, d in pairs]
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    if model.config.num_labels != 1:
        torch.manual_seed(0)
        model.classifier.out_proj = torch.nn.Linear(model.config.hidden_size, 1)
        model.config.num_labels = 1
        head = {n: p.detach().contiguous() for n, p in model.named_parameters() if n.startswith("classifier.")}
        save_file(head, str(folder / "head.safetensors"))
    model.eval()
    width = max(len(e.ids) for e in encodings)
    ids = torch.full((len(pairs), width), model.config.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, e in enumerate(encodings):
        ids[i, :len(e.ids)] = torch.tensor(e.ids)
        mask[i, :len(e.ids)] = 1
        types[i, :len(e.ids)] = torch.tensor(e.type_ids)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if model.config.model_type == "bert":
        inputs["token_type_ids"] = types
    logits = model(**inputs).logits.view(len(GROUPS), -1)
    listwise = F.cross_entropy(logits, torch.zeros(len(GROUPS), dtype=torch.long))
    loss = (1 - DISTILL_WEIGHT) * listwise + DISTILL_WEIGHT * kl(logits, TEACHER)
    loss.backward()

    grads = {n: p.grad.detach().contiguous() for n, p in model.named_parameters() if p.grad is not None}
    save_file(grads, str(folder / "gradients.safetensors"))
    (folder / "gradients.json").write_text(json.dumps({
        "pairs": pairs,
        "ids": [e.ids for e in encodings],
        "group_size": len(GROUPS[0][1]),
        "teacher": TEACHER,
        "temperature": TEMPERATURE,
        "distill_weight": DISTILL_WEIGHT,
        "loss": loss.item(),
    }, ensure_ascii=False, indent=1) + "\n")
    print(f"{name}: loss {loss.item():.6f}, {len(grads)} gradients")


if __name__ == "__main__":
    for fixture in ["bert-encoder", "mpnet-encoder", "xlmr-encoder"]:
        step(fixture)
    for fixture in ["bert-classifier", "mpnet-classifier", "xlmr-classifier"]:
        cross_step(fixture)
