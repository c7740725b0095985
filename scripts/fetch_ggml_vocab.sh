#!/usr/bin/env bash
# Puts llama.cpp's tokenizer test vocabularies (models/ggml-vocab-*.gguf with their .inp/.out
# files, 75 MB) into lume's cache, <cache>/ggml-vocab/, for crates/tokenizer/tests/ggml_vocab.rs.
# They come from the llama.cpp source inside the llama-cpp-python 0.3.36 source package on PyPI
# (checked against its sha256); nothing else of that package is kept. A no-op once done.
#
#   bash scripts/fetch_ggml_vocab.sh
set -euo pipefail

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
cache="${LUME_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lume}"
dest="$cache/ggml-vocab"
stamp="$dest/.llama-cpp-python-$VERSION"
[ -f "$stamp" ] && exit 0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lume-vocab.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetching llama.cpp's tokenizer vocabularies (llama-cpp-python==$VERSION source package) into $dest" >&2
python3 -m pip download -q --no-deps --no-binary llama-cpp-python -d "$tmp" "llama-cpp-python==$VERSION"
sdist="$tmp/llama_cpp_python-$VERSION.tar.gz"
echo "$SHA256  $sdist" | sha256sum -c --quiet -
mkdir -p "$dest"
tar -xzf "$sdist" -C "$tmp" --wildcards "llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-*"
cp "$tmp/llama_cpp_python-$VERSION/vendor/llama.cpp/models/"ggml-vocab-* "$dest/"
touch "$stamp"
echo "$(ls "$dest" | wc -l) files in $dest" >&2
