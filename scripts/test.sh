#!/usr/bin/env bash
# The test command: fetches the test models (the GGUF ones included) if missing (idempotent), installs Debian's Chromium
# and ChromeDriver for the playground's browser test, PostgreSQL 15 and pgvector (built from
# Debian's source package) for the PostgreSQL backend's tests and the official OpenAI and Cohere SDKs and
# Selenium from PyPI into target/sdk-venv, and LlamaIndex, LangChain and huggingface_hub into
# target/clients-venv, for the server compatibility tests,
# checks formatting and clippy (warnings denied), runs every test of the workspace once (one
# build; dependencies are optimised even in test builds), past a failing test binary so that
# one run reports every failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --models-only --gguf
scripts/browser/install.sh
# PostgreSQL 15 + pgvector 0.8.0 for the PostgreSQL backend's tests (they start their own servers).
scripts/postgres.sh install
if [ ! -x target/sdk-venv/bin/python ] ||
  ! cmp -s scripts/sdk-compat/requirements.txt target/sdk-venv/requirements.txt; then
  rm -rf target/sdk-venv
  python3 -m venv target/sdk-venv
  target/sdk-venv/bin/pip install --quiet --disable-pip-version-check \
    -r scripts/sdk-compat/requirements.txt
  cp scripts/sdk-compat/requirements.txt target/sdk-venv/requirements.txt
fi
# The RAG client libraries (LlamaIndex, LangChain, huggingface_hub) for the client test: their
# own venv, because langchain-cohere pins another cohere SDK than the one tested above.
if [ ! -x target/clients-venv/bin/python ] ||
  ! cmp -s scripts/clients-compat/requirements.txt target/clients-venv/requirements.txt; then
  rm -rf target/clients-venv
  python3 -m venv target/clients-venv
  target/clients-venv/bin/pip install --quiet --disable-pip-version-check \
    -r scripts/clients-compat/requirements.txt
  cp scripts/clients-compat/requirements.txt target/clients-venv/requirements.txt
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
