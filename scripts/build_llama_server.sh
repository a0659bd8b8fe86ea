#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (for the optional `backend: llama_cpp`) into
# the directory given as $1, from the llama.cpp source vendored in the pinned llama-cpp-python
# sdist: PyPI has no prebuilt llama-server, and this is the one llama.cpp source its registry serves.
# One static binary, tuned for this CPU (GGML_NATIVE), no web UI, no network code (curl/openssl).
set -euo pipefail
target_dir=$(realpath "$1")
version=0.3.36
url=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$version.tar.gz
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
work=.cache/llama-server-build
mkdir -p "$work"
archive="$work/llama_cpp_python-$version.tar.gz"
if ! echo "$sha256  $archive" | sha256sum --check --status 2>/dev/null; then
    curl --fail --silent --show-error --location --retry 3 --output "$archive" "$url"
    echo "$sha256  $archive" | sha256sum --check --quiet
fi
rm -rf "$work/src" && mkdir "$work/src"
tar -xzf "$archive" -C "$work/src" --strip-components=3 "llama_cpp_python-$version/vendor/llama.cpp"
cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF > "$work/cmake.log"
cmake --build "$work/build" --target llama-server --parallel "$(nproc)" > "$work/build.log"
install -m 0755 "$work/build/bin/llama-server" "$target_dir/llama-server"
"$target_dir/llama-server" --version 2>&1 | head -2
