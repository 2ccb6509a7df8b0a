"""Calls a live `sift serve` through the client libraries RAG builders use and prints, as JSON,
what each returned. Run by crates/cli/tests/clients.rs, which compares the results with sift's
own; nothing here decides pass or fail beyond a client raising.

    check.py BASE_URL API_KEY
"""

import json
import sys

BASE, KEY = sys.argv[1], sys.argv[2]
TEXTS = ["The cat sat on the mat.", "Quantum tunnelling in semiconductors", "Paris"]
QUERY = "capital of France"
DOCS = ["Paris is the capital of France.", "The quick brown fox.", "Berlin is in Germany."]
out = {}


def floats(v):
    return [float(x) for x in v]


# huggingface_hub: feature_extraction and sentence_similarity post to the base URL (TEI's POST /).
from huggingface_hub import InferenceClient

hf = InferenceClient(base_url=BASE, api_key=KEY)
out["hf_feature_extraction"] = [floats(row) for row in hf.feature_extraction(TEXTS[0]).tolist()]
out["hf_sentence_similarity"] = floats(hf.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:]))

# LlamaIndex embeddings: an OpenAI-compatible server, and TEI.
from llama_index.embeddings.openai_like import OpenAILikeEmbedding
from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

openai_like = OpenAILikeEmbedding(model_name="all-MiniLM-L6-v2", api_base=BASE + "/v1", api_key=KEY)
out["llamaindex_openai_like"] = [floats(v) for v in openai_like.get_text_embedding_batch(TEXTS)]
# (this client adds "Bearer " itself; the TEI rerank postprocessor below sends the header as given)
tei = TextEmbeddingsInference(model_name="all-MiniLM-L6-v2", base_url=BASE, auth_token=KEY)
out["llamaindex_tei"] = [floats(v) for v in tei.get_text_embedding_batch(TEXTS)]
out["llamaindex_tei_query"] = floats(tei.get_query_embedding(QUERY))

# LlamaIndex rerank postprocessors: TEI, Cohere, Jina.
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.cohere_rerank import CohereRerank as LlamaCohereRerank
from llama_index.postprocessor.jinaai_rerank import JinaRerank
from llama_index.postprocessor.tei_rerank import TextEmbeddingInference as TeiRerank

nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.0) for i, t in enumerate(DOCS)]
bundle = QueryBundle(QUERY)


def ranked(result):
    return [[n.node.node_id, float(n.score)] for n in result]


out["llamaindex_tei_rerank"] = ranked(
    TeiRerank(base_url=BASE, top_n=3, auth_token="Bearer " + KEY).postprocess_nodes(nodes, bundle))
out["llamaindex_cohere_rerank"] = ranked(
    LlamaCohereRerank(api_key=KEY, model="m", top_n=3, base_url=BASE).postprocess_nodes(nodes, bundle))
out["llamaindex_jina_rerank"] = ranked(
    JinaRerank(api_key=KEY, model="m", top_n=3, base_url=BASE + "/v1").postprocess_nodes(nodes, bundle))

# LangChain: OpenAI embeddings (tiktoken's token-id inputs are OpenAI's vocabulary, so they are
# switched off, as for TEI) and Cohere rerank.
from langchain_cohere import CohereRerank as LangchainCohereRerank
from langchain_openai import OpenAIEmbeddings

lc_openai = OpenAIEmbeddings(model="all-MiniLM-L6-v2", base_url=BASE + "/v1", api_key=KEY,
                             check_embedding_ctx_length=False)
out["langchain_openai"] = [floats(v) for v in lc_openai.embed_documents(TEXTS)]
lc_rerank = LangchainCohereRerank(cohere_api_key=KEY, model="m", base_url=BASE, top_n=3)
out["langchain_cohere_rerank"] = [[r["index"], float(r["relevance_score"])] for r in lc_rerank.rerank(DOCS, QUERY)]

print(json.dumps(out))
