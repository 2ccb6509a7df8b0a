"""Drive a live `sift serve` with the official OpenAI and Cohere Python SDKs.

Usage: check.py BASE_URL API_KEY
Prints one JSON object with what each SDK call returned; crates/cli/tests/sdk.rs compares it
with sift's own results. Any SDK exception (a response the SDK cannot parse, an HTTP error)
exits non-zero with the traceback.
"""

import json
import sys

import cohere
import openai

base, key = sys.argv[1], sys.argv[2]
texts = ["The cat sat on the mat.", "Quantum tunnelling in semiconductors", "Paris"]
query = "capital of France"
documents = ["Paris is the capital of France.", "Berlin is in Germany.", "Cats purr."]

out = {}
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
# The SDK asks for base64 unless told otherwise, and decodes it itself.
r = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
out["openai_default"] = [d.embedding for d in sorted(r.data, key=lambda d: d.index)]
out["openai_model"] = r.model
out["openai_prompt_tokens"] = r.usage.prompt_tokens
r = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
out["openai_float_one"] = r.data[0].embedding
r = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, dimensions=64)
out["openai_dim64"] = [d.embedding for d in r.data]

try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).embeddings.create(
        model="m", input="x"
    )
    out["openai_wrong_key"] = "accepted"
except openai.AuthenticationError as e:
    out["openai_wrong_key"] = e.status_code

v1 = cohere.Client(api_key=key, base_url=base)
r = v1.rerank(model="tiny", query=query, documents=documents, top_n=2)
out["cohere_v1"] = [
    {"index": x.index, "relevance_score": x.relevance_score, "text": x.document.text if x.document else None}
    for x in r.results
]
v2 = cohere.ClientV2(api_key=key, base_url=base)
r = v2.rerank(model="tiny", query=query, documents=documents)
out["cohere_v2"] = [{"index": x.index, "relevance_score": x.relevance_score} for x in r.results]

json.dump(out, sys.stdout)
