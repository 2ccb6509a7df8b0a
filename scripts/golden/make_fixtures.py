#!/usr/bin/env python3
"""Builds the golden fixtures sift's inference is tested against.

Run by hand (not in CI) after changing what the fixtures cover:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers sentence-transformers
    /tmp/ref/bin/python scripts/golden/make_fixtures.py

For every supported architecture and head it trains a tiny tokenizer, builds a 2-layer model
with random weights (hidden size 32) in Hugging Face layout, runs Hugging Face transformers on
inputs that exercise padding, truncation, CJK, emoji and accents, and writes the model plus the
reference outputs (token ids, hidden states, pooled embeddings, logits) to
crates/models/tests/fixtures/golden/<name>/. Weight formats vary on purpose: safetensors in f32,
safetensors in f16, and a pickled pytorch_model.bin.

With --minilm DIR it also writes all-MiniLM-L6-v2 embeddings computed by sentence-transformers
to crates/models/tests/fixtures/minilm_reference.json.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    MPNetConfig,
    MPNetForSequenceClassification,
    MPNetModel,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/models/tests/fixtures/golden"

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval augmented generation needs a good reranker.",
    "Scientific claims are supported or refuted by abstracts.",
    "Café, naïve, façade, résumé, déjà vu and Ångström.",
    "北京是中国的首都。上海是一个大城市。",
    "東京は日本の首都です。",
    "Emoji like 🍕 and 🎉 appear in chat messages.",
    "Vaccines reduce the risk of severe disease in older adults.",
    "Gene expression changes in tumour cells under hypoxia.",
    "What is the capital of France? Paris is the capital of France.",
] * 20

# Single texts: different lengths (padding), one longer than max_seq_length (truncation),
# accents, CJK, emoji (unknown to the tokenizer), mixed case.
TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve façade — déjà vu in Ångström units",
    "北京是中国的首都。",
    "I love pizza 🍕🎉 so much",
    "a",
    "Retrieval augmented generation needs a good reranker because the first stage "
    "recalls many candidates cheaply and the cross encoder orders them carefully, "
    "reading the query and the document together, which costs more per pair.",
]

# (query, document) pairs for cross-encoders; the last document is cut (only_second).
PAIRS = [
    ("what is the capital of france?", "Paris is the capital of France."),
    ("vaccines", "Vaccines reduce the risk of severe disease in older adults."),
    ("東京", "東京は日本の首都です。"),
    ("pizza 🍕", "Café naïve façade"),
    (
        "gene expression",
        "Gene expression changes in tumour cells under hypoxia, and scientific claims "
        "are supported or refuted by abstracts that report measurements of many genes.",
    ),
]

SEQ_LEN = 24  # max_seq_length of the encoders: the long text is truncated
PAIR_LEN = 32  # max length of pairs


def wordpiece(specials, cls, sep, roberta_style):
    tok = Tokenizer(models.WordPiece(unk_token=specials[3] if roberta_style else "[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None,
                                                handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    if roberta_style:
        tok.post_processor = processors.RobertaProcessing(
            (sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)))
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
    return tok


def unigram():
    """An XLM-R style tokenizer: NFKC, Metaspace, Unigram, `<s> A </s></s> B </s>`."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok


def randomize(model, seed):
    """Random weights with a scale that makes every parameter matter in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.3 * noise)


def encode(tok, items, max_len, pair):
    tok = Tokenizer.from_str(tok.to_str())
    tok.no_padding()
    tok.enable_truncation(max_len, strategy="only_second" if pair else "longest_first")
    return [tok.encode(*item) if pair else tok.encode(item) for item in items]


def pad(encodings, pad_id, with_types):
    width = max(len(e.ids) for e in encodings)
    ids = torch.full((len(encodings), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    types = torch.zeros((len(encodings), width), dtype=torch.long)
    for i, e in enumerate(encodings):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        types[i, :n] = torch.tensor(e.type_ids)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if with_types:
        inputs["token_type_ids"] = types
    return inputs


def write_st_metadata(path, pooling, normalize):
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (path / "modules.json").write_text(json.dumps(modules, indent=1))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling/config.json").write_text(json.dumps({
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
    }))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": SEQ_LEN}))


def pool(hidden, mask, pooling, normalize):
    if pooling == "cls":
        out = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).float()
        out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(out, dim=-1) if normalize else out


def floats(t):
    return [round(float(x), 7) for x in t.flatten().tolist()]


SPECS = [
    # name, family, head, weight format, pooling, normalize, num_labels
    ("bert-encoder", "bert", "encoder", "safetensors", "mean", True, 0),
    ("bert-classifier", "bert", "classifier", "safetensors", None, False, 1),
    ("xlmr-encoder", "xlmr", "encoder", "safetensors", "cls", False, 0),
    ("xlmr-classifier", "xlmr", "classifier", "safetensors-f16", None, False, 1),
    ("mpnet-encoder", "mpnet", "encoder", "safetensors", "mean", True, 0),
    ("mpnet-classifier", "mpnet", "classifier", "pytorch-bin", None, False, 2),
]


def build(spec, seed):
    name, family, head, fmt, pooling, normalize, num_labels = spec
    if family == "bert":
        tok = wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[CLS]", "[SEP]", False)
        pad_id, with_types = tok.token_to_id("[PAD]"), True
        cfg_cls, enc_cls, clf_cls = BertConfig, BertModel, BertForSequenceClassification
        extra = dict(max_position_embeddings=64, type_vocab_size=2, pad_token_id=pad_id)
    elif family == "xlmr":
        tok = unigram()
        pad_id, with_types = tok.token_to_id("<pad>"), False
        cfg_cls, enc_cls, clf_cls = XLMRobertaConfig, XLMRobertaModel, XLMRobertaForSequenceClassification
        extra = dict(max_position_embeddings=66, type_vocab_size=1, pad_token_id=pad_id,
                     bos_token_id=0, eos_token_id=2)
    else:
        tok = wordpiece(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"], "<s>", "</s>", True)
        pad_id, with_types = tok.token_to_id("<pad>"), False
        cfg_cls, enc_cls, clf_cls = MPNetConfig, MPNetModel, MPNetForSequenceClassification
        extra = dict(max_position_embeddings=66, pad_token_id=pad_id, bos_token_id=0, eos_token_id=2)

    config = cfg_cls(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     num_labels=max(num_labels, 1), **extra)
    torch.manual_seed(seed)
    model = (clf_cls if head == "classifier" else enc_cls)(config).eval()
    randomize(model, seed)
    if fmt == "safetensors-f16":
        model = model.half().float()  # the reference sees exactly the weights the fixture stores

    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if fmt == "pytorch-bin":
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(out)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    elif fmt == "safetensors-f16":
        model.half().save_pretrained(out)
        model.float()
    else:
        model.save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))

    expected = {"name": name, "format": fmt, "transformers": __import__("transformers").__version__}
    with torch.no_grad():
        if head == "encoder":
            write_st_metadata(out, pooling, normalize)
            encs = encode(tok, TEXTS, SEQ_LEN, pair=False)
            inputs = pad(encs, pad_id, with_types)
            hidden = model(**inputs).last_hidden_state
            pooled = pool(hidden, inputs["attention_mask"], pooling, normalize)
            expected.update(
                texts=TEXTS, max_length=SEQ_LEN, pooling=pooling, normalize=normalize,
                ids=[e.ids for e in encs],
                hidden=[floats(hidden[i, : len(e.ids)]) for i, e in enumerate(encs)],
                embeddings=[floats(p) for p in pooled],
            )
        else:
            encs = encode(tok, PAIRS, PAIR_LEN, pair=True)
            inputs = pad(encs, pad_id, with_types)
            logits = model(**inputs).logits
            expected.update(
                pairs=[list(p) for p in PAIRS], max_length=PAIR_LEN,
                ids=[e.ids for e in encs], type_ids=[e.type_ids for e in encs],
                logits=[floats(row) for row in logits],
            )
    (out / "expected.json").write_text(json.dumps(expected))
    print(f"{name}: vocab {tok.get_vocab_size()}, {fmt}")


REAL_SENTENCES = [
    "A man is eating food.",
    "A man is riding a horse on a sunny day.",
    "The new movie is awesome!",
    "Vaccination reduces hospitalisation in adults over 65.",
    "Café au lait, naïve résumé, crème brûlée.",
    "北京是中国的首都。",
    "I can't wait for the weekend 🎉🍕",
    "Transformers compute self-attention over all token pairs; cost grows with the square "
    "of the sequence length, which is why long documents are split into windows.",
    "42",
    "What is the boiling point of water at sea level?",
]


def real_reference(model_dir, name, out_name):
    """Embeddings of REAL_SENTENCES by sentence-transformers, for the real-model tests."""
    from sentence_transformers import SentenceTransformer

    sentences = REAL_SENTENCES + [" ".join(["Long inputs exercise relative position buckets."] * 60)]
    model = SentenceTransformer(str(model_dir), device="cpu")
    emb = model.encode(sentences, normalize_embeddings=False, convert_to_numpy=True)
    path = ROOT / "crates/models/tests/fixtures" / out_name
    path.write_text(json.dumps({
        "model": name,
        "sentences": sentences,
        "embeddings": [[round(float(x), 7) for x in row] for row in emb],
    }))
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2 directory (from scripts/setup.sh)")
    parser.add_argument("--mpnet", type=Path, help="all-mpnet-base-v2 directory (scripts/setup.sh --all)")
    args = parser.parse_args()
    for seed, spec in enumerate(SPECS):
        build(spec, 1000 + seed)
    if args.minilm:
        real_reference(args.minilm, "sentence-transformers/all-MiniLM-L6-v2", "minilm_reference.json")
    if args.mpnet:
        real_reference(args.mpnet, "sentence-transformers/all-mpnet-base-v2", "mpnet_reference.json")


if __name__ == "__main__":
    main()
