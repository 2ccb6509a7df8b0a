#!/usr/bin/env python3
"""A random-weight LayerWiseMiniCPMForCausalLM (FlagEmbedding 1.4.2's class) for timing
`sift bench --task rerank --cutoff-layer N` (docs/performance.md, "A layerwise cutoff").

    /tmp/ref4/bin/pip install FlagEmbedding==1.4.2
    /tmp/ref4/bin/python scripts/bench/layerwise_shape.py
"""
import torch, json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
from FlagEmbedding.inference.reranker.decoder_only.models.configuration_minicpm_reranker import LayerWiseMiniCPMConfig
from FlagEmbedding.inference.reranker.decoder_only.models.modeling_minicpm_reranker import LayerWiseMiniCPMForCausalLM
# bge-reranker-v2-minicpm-layerwise's shape except depth and width (its 2,304 x 40 layers is
# 2.7B parameters): 16 layers of width 768, heads from layer 4.
cfg = LayerWiseMiniCPMConfig(vocab_size=122753, hidden_size=768, intermediate_size=2048, num_hidden_layers=16,
    num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=4096, scale_emb=12, scale_depth=1.4,
    dim_model_base=256, start_layer=4, head_multi=True, head_type="simple", use_cache=False)
cfg.architectures = ["LayerWiseMiniCPMForCausalLM"]
torch.manual_seed(0)
m = LayerWiseMiniCPMForCausalLM(cfg)
p = ROOT / "target/bench/models/minicpm-layerwise-shape"
m.save_pretrained(p)
src = ROOT / "crates/models/tests/fixtures/llm/minicpm-layerwise"
for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
    (p / f).write_bytes((src / f).read_bytes())
