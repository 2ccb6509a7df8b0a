#!/usr/bin/env python3
"""Builds the golden fixtures sift's LLM rerankers are tested against.

Run by hand (not in CI) after changing what the fixtures cover:

    python3 -m venv /tmp/ref4 && /tmp/ref4/bin/pip install torch "transformers>=4.56,<5"
    /tmp/ref4/bin/python scripts/golden/make_llm_fixtures.py

transformers 4.x, because FlagEmbedding's reranker code calls `tokenizer.prepare_for_model`,
which transformers 5 removed; 4.56 is the first 4.x with every family here (Qwen3, Gemma 3)
and the `dtype` argument. Fixtures were made with transformers 4.57.6 and torch 2.15.0.

For every decoder family sift implements it trains a tiny byte-level BPE tokenizer, builds a
3-layer model with random weights (hidden size 32, grouped-query attention, sliding windows
short enough to matter) in Hugging Face layout, scores (query, document) pairs with the
published reranking recipes — the Qwen3-Reranker model card's code (left padding) and
FlagEmbedding's FlagLLMReranker (right padding), both re-typed here step by step from their
sources — and writes the model plus the reference token ids, output logits and scores to
crates/models/tests/fixtures/llm/<name>/.

The layerwise MiniCPM reranker (bge-reranker-v2-minicpm-layerwise's architecture: one scoring
head per layer from `start_layer`) is scored by FlagEmbedding's own code, not a re-typing:
`FlagEmbedding==1.4.2`'s LayerWiseLLMReranker (and its modeling_minicpm_reranker.py) at every
cutoff layer; `pip install FlagEmbedding==1.4.2` into the same venv. Its modeling file calls a
cache method transformers 4.5x removed, so the tiny model's config says `use_cache: false`
(scoring never uses the cache).

Configs are written as transformers 4.x saves them (`rope_theta` at the top level,
`rope_scaling`, `torch_dtype`); one copy of the Qwen3 model is rewritten in the 5.x layout
(`rope_parameters`, `dtype`) to check both read the same. Weights: f32
safetensors, bf16 safetensors (reference computed from the rounded weights in f32), and a
sharded checkpoint with model.safetensors.index.json.
"""

import json
import math
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/models/tests/fixtures/llm"

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

TRAINING_TEXT = [
    "yes\nno\nYes\nNo\n",
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided.",
    "Note that the answer can only be \"yes\" or \"no\".",
    "<Instruct>: Given a web search query, retrieve relevant passages that answer the query",
    "<Query>: what is the capital of france?\n<Document>: Paris is the capital of France.",
    "A: query\nB: passage\nGiven a query A and a passage B, determine whether the passage contains "
    "an answer to the query by providing a prediction of either 'Yes' or 'No'.",
    "Retrieval augmented generation needs a good reranker.",
    "Vaccines reduce the risk of severe disease in older adults.",
    "Gene expression changes in tumour cells under hypoxia.",
    "北京是中国的首都。上海是一个大城市。",
    "Emoji like 🍕 and 🎉 appear in chat messages.",
] * 30

LONG_DOC = (
    "Retrieval augmented generation needs a good reranker because the first stage recalls many "
    "candidates cheaply and the reranker orders them carefully, reading the query and the "
    "document together, which costs more per pair. " * 3
)

PAIRS = [
    ("what is the capital of france?", "Paris is the capital of France."),
    ("vaccines", "Vaccines reduce the risk of severe disease in older adults."),
    ("北京", "北京是中国的首都。"),
    ("pizza 🍕", "Emoji like 🍕 and 🎉 appear in chat messages."),
    ("gene expression under hypoxia", LONG_DOC),
    ("a", "b"),
]

MAX_LENGTH = {"qwen3-reranker": 150, "bge-llm": 48}


def train_tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    for word in ["yes", "no", "Yes"]:
        assert tok.token_to_id(word) is not None, word
    return tok


def hf_tokenizer(tok, padding_side):
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tok.to_str()), bos_token="<bos>", eos_token="<eos>",
        pad_token="<pad>", unk_token="<unk>", padding_side=padding_side)


COMMON = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6)

SPECS = [
    # name, config class, extra config, weight format
    ("qwen3", Qwen3Config, dict(head_dim=16, rope_theta=1e6, tie_word_embeddings=True), "f32"),
    ("qwen2", Qwen2Config, dict(rope_theta=1e6, tie_word_embeddings=False), "sharded"),
    ("llama", LlamaConfig, dict(rope_theta=5e5, rope_scaling={"rope_type": "linear", "factor": 2.0},
                                attention_bias=True, mlp_bias=True), "f32"),
    ("mistral", MistralConfig, dict(sliding_window=8), "bf16"),
    ("gemma", GemmaConfig, dict(head_dim=16), "f32"),
    ("gemma2", Gemma2Config, dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=12,
                                  attn_logit_softcapping=5.0, final_logit_softcapping=3.0), "f32"),
    ("gemma3", Gemma3TextConfig, dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=12,
                                      layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                      rope_theta=1e6, rope_local_base_freq=1e4,
                                      rope_scaling={"rope_type": "linear", "factor": 4.0}),
     "f32"),
]


def randomize(model, seed, gemma):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name:
                # Gemma stores the scale as an offset from 1.
                p.copy_((0.0 if gemma else 1.0) + 0.2 * noise)
            else:
                p.copy_(0.3 * noise)


def qwen3_inputs(tokenizer, pairs, max_length, instruction=None):
    """The Qwen3-Reranker model card's tokenization, step by step: ids per pair, then the padded
    batch (left padding)."""
    tokenizer.padding_side = "left"
    prefix = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
              "and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n"
              "<|im_start|>user\n")
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)
    if instruction is None:
        instruction = "Given a web search query, retrieve relevant passages that answer the query"
    texts = [f"<Instruct>: {instruction}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
    inputs = tokenizer(texts, padding=False, truncation="longest_first", return_attention_mask=False,
                       max_length=max_length - len(prefix_tokens) - len(suffix_tokens))
    for i, ele in enumerate(inputs["input_ids"]):
        inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
    ids = [list(x) for x in inputs["input_ids"]]
    return ids, tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)


def qwen3_recipe(tokenizer, model, pairs, max_length, instruction=None):
    """The Qwen3-Reranker model card's scoring: P(yes) from the yes/no logits at the last token."""
    ids, inputs = qwen3_inputs(tokenizer, pairs, max_length, instruction)
    true_id = tokenizer.convert_tokens_to_ids("yes")
    false_id = tokenizer.convert_tokens_to_ids("no")
    with torch.no_grad():
        last = model(**inputs).logits[:, -1, :]
    rows = torch.stack([last[:, true_id], last[:, false_id]], dim=1)
    probs = torch.nn.functional.log_softmax(rows, dim=1)[:, 0].exp()
    return ids, rows, (rows[:, 0] - rows[:, 1]), probs


def bge_inputs(tokenizer, pairs, max_length, prompt=None):
    """FlagEmbedding's BaseLLMReranker.compute_score_single_gpu tokenization, step by step: ids
    per pair, then the padded batch (right padding, multiples of 8)."""
    tokenizer.padding_side = "right"
    query_max_length = max_length * 3 // 4
    queries = [f"A: {q}" for q, _ in pairs]
    passages = [f"B: {p}" for _, p in pairs]
    q_inputs = tokenizer(queries, return_tensors=None, add_special_tokens=False,
                         max_length=query_max_length, truncation=True)["input_ids"]
    p_inputs = tokenizer(passages, return_tensors=None, add_special_tokens=False,
                         max_length=max_length, truncation=True)["input_ids"]
    if prompt is None:
        prompt = ("Given a query A and a passage B, determine whether the passage contains an answer "
                  "to the query by providing a prediction of either 'Yes' or 'No'.")
    prompt_inputs = tokenizer(prompt, return_tensors=None, add_special_tokens=False)["input_ids"]
    sep_inputs = tokenizer("\n", return_tensors=None, add_special_tokens=False)["input_ids"]
    encode_max_length = max_length + len(sep_inputs) + len(prompt_inputs)
    items = []
    for q, p in zip(q_inputs, p_inputs):
        first = q
        if tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.pad_token_id:
            first = [tokenizer.bos_token_id] + q
        item = tokenizer.prepare_for_model(first, sep_inputs + p, truncation="only_second",
                                           max_length=encode_max_length, padding=False,
                                           return_attention_mask=False, return_token_type_ids=False,
                                           add_special_tokens=False)
        item["input_ids"] = item["input_ids"] + sep_inputs + prompt_inputs
        item["attention_mask"] = [1] * len(item["input_ids"])
        items.append({"input_ids": item["input_ids"], "attention_mask": item["attention_mask"]})
    ids = [list(x["input_ids"]) for x in items]
    return ids, tokenizer.pad(items, padding=True, pad_to_multiple_of=8, return_tensors="pt")


def bge_recipe(tokenizer, model, pairs, max_length, prompt=None):
    """FlagEmbedding's scoring: the "Yes" logit at each row's last real token."""
    ids, batch = bge_inputs(tokenizer, pairs, max_length, prompt)
    yes_loc = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        logits = model(**batch).logits
    lengths = batch["attention_mask"].sum(dim=1) - 1
    last = torch.stack([logits[i, lengths[i], :] for i in range(len(ids))])
    rows = last[:, [yes_loc]]
    return ids, rows, rows[:, 0], torch.sigmoid(rows[:, 0])


def floats(t):
    return [round(float(x), 7) for x in t.flatten().tolist()]


def save(model, path, fmt):
    if fmt == "bf16":
        model.to(torch.bfloat16).save_pretrained(path)
        model.to(torch.float32)
    elif fmt == "sharded":
        model.save_pretrained(path, max_shard_size="40KB")
    else:
        model.save_pretrained(path)


def build(spec, tok, seed):
    name, cfg_cls, extra, fmt = spec
    gemma = name.startswith("gemma")
    hf_tok = hf_tokenizer(tok, "right")
    cfg = cfg_cls(vocab_size=tok.get_vocab_size(), pad_token_id=hf_tok.pad_token_id,
                  bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                  **COMMON, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    randomize(model, seed, gemma)
    path = OUT / name
    if path.exists():
        shutil.rmtree(path)
    save(model, path, fmt)
    hf_tok.save_pretrained(path)
    # The reference runs on exactly the stored weights (bf16-rounded ones included), in f32.
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager").eval()
    hf_tok = PreTrainedTokenizerFast.from_pretrained(path)

    cases = []
    templates = ["qwen3-reranker", "bge-llm"] if name == "qwen3" else ["bge-llm"]
    for template in templates:
        for prompt in [None, "Judge the passage for the claim."]:
            recipe = qwen3_recipe if template == "qwen3-reranker" else bge_recipe
            max_length = MAX_LENGTH[template]
            ids, rows, logit, score = recipe(hf_tok, model, PAIRS, max_length, prompt)
            cases.append({
                "template": template,
                "max_length": max_length,
                "prompt": prompt,
                "pairs": [
                    {"query": q, "document": d, "input_ids": i, "output_logits": floats(r),
                     "logit": round(float(l), 7), "score": round(float(s), 7)}
                    for (q, d), i, r, l, s in zip(PAIRS, ids, rows, logit, score)
                ],
            })
    (path / "expected.json").write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1))
    if name == "gemma":
        # The first Gemma releases wrote the legacy `hidden_act: "gelu"` meaning the tanh
        # approximation they were trained with; transformers 5 reads it so, 4.57 as exact GELU.
        # The reference above ran tanh-GELU; the config is then given the legacy spelling.
        cfg = json.loads((path / "config.json").read_text())
        cfg["hidden_act"] = "gelu"
        (path / "config.json").write_text(json.dumps(cfg, indent=2))
    return path


def build_layerwise(tok, seed):
    """A 3-layer LayerWiseMiniCPMForCausalLM (heads at layers 1, 2, 3), scored at every cutoff
    layer by FlagEmbedding's LayerWiseLLMReranker."""
    from FlagEmbedding.inference.reranker.decoder_only.layerwise import LayerWiseLLMReranker
    from FlagEmbedding.inference.reranker.decoder_only.models.configuration_minicpm_reranker import (
        LayerWiseMiniCPMConfig)
    from FlagEmbedding.inference.reranker.decoder_only.models.modeling_minicpm_reranker import (
        LayerWiseMiniCPMForCausalLM)

    hf_tok = hf_tokenizer(tok, "right")
    cfg = LayerWiseMiniCPMConfig(vocab_size=tok.get_vocab_size(), pad_token_id=hf_tok.pad_token_id,
                                 bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                                 scale_emb=12.0, scale_depth=1.4, dim_model_base=8, start_layer=1,
                                 head_multi=True, head_type="simple", rope_theta=1e4,
                                 attn_implementation="eager", use_cache=False, **COMMON)
    cfg.architectures = ["LayerWiseMiniCPMForCausalLM"]
    torch.manual_seed(seed)
    model = LayerWiseMiniCPMForCausalLM(cfg).eval()
    randomize(model, seed, False)
    path = OUT / "minicpm-layerwise"
    if path.exists():
        shutil.rmtree(path)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    reranker = LayerWiseLLMReranker(str(path), use_fp16=False, devices=["cpu"], batch_size=4)
    max_length = MAX_LENGTH["bge-llm"]
    ids = bge_inputs(hf_tok, PAIRS, max_length)[0]
    cases = []
    for cutoff in [1, 2, 3]:
        logits = reranker.compute_score(PAIRS, cutoff_layers=[cutoff], max_length=max_length,
                                        normalize=False)
        cases.append({
            "template": "bge-llm",
            "max_length": max_length,
            "prompt": None,
            "cutoff_layer": cutoff,
            "pairs": [
                {"query": q, "document": d, "input_ids": i, "output_logits": [round(float(l), 7)],
                 "logit": round(float(l), 7), "score": round(1 / (1 + math.exp(-float(l))), 7)}
                for (q, d), i, l in zip(PAIRS, ids, logits)
            ],
        })
    (path / "expected.json").write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1))
    return path


def new_layout(src, dst):
    """The same Qwen3 model with its config as transformers 5.x writes it."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    (dst / "expected.json").unlink()
    cfg = json.loads((dst / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg.pop("rope_theta")}
    cfg.pop("rope_scaling", None)
    cfg["dtype"] = cfg.pop("torch_dtype", "float32")
    cfg["layer_types"] = ["full_attention"] * cfg["num_hidden_layers"]
    cfg["transformers_version"] = "5.0.0"
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    for i, spec in enumerate(SPECS):
        path = build(spec, tok, 1000 + i)
        print("wrote", path)
    new_layout(OUT / "qwen3", OUT / "qwen3-v5-config")
    print("wrote", OUT / "qwen3-v5-config")
    print("wrote", build_layerwise(tok, 2000))


if __name__ == "__main__":
    main()
