#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (CPU) from the llama.cpp sources vendored in the pinned
# llama-cpp-python sdist, once per machine: the binary is cached by version.
#
#   ci/scripts/build_llama_server.sh [PYTHON]    prints the path of the binary on success
#
# Env: LLORCH_ENGINE_CACHE (default ~/.cache/llorch), LLORCH_BUILD_JOBS (default 2).
set -euo pipefail

VERSION="0.3.36"                       # llama-cpp-python release whose vendored llama.cpp we build
PYTHON="${1:-python3}"
CACHE="${LLORCH_ENGINE_CACHE:-$HOME/.cache/llorch}"
# Portable CPU flags, not -march=native: native detection turns on Intel AMX, whose kernels
# segfault where the sandbox does not grant AMX tile state (seen here, ggml_backend_amx_mul_mat).
case "$(uname -m)" in
  x86_64) FLAVOR="x86-avx2"
          CPU_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                     -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF) ;;
  *)      FLAVOR="$(uname -m)-generic"
          CPU_FLAGS=(-DGGML_NATIVE=OFF) ;;
esac
PREFIX="$CACHE/llama-server-$VERSION-$FLAVOR"
BIN="$PREFIX/bin/llama-server"
JOBS="${LLORCH_BUILD_JOBS:-2}"

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi

for tool in cmake g++ make; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required (make deps installs it)" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "building llama-server from llama-cpp-python $VERSION sdist (first time on this machine;" \
     "about 10 minutes on 2 cores)" >&2
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
  "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -f "$SRC/CMakeLists.txt" ] || { echo "error: no vendored llama.cpp in the sdist" >&2; exit 1; }

cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON "${CPU_FLAGS[@]}" >&2
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >&2

mkdir -p "$PREFIX/bin"
install -m 0755 "$WORK/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"                     # atomic: a half-built binary is never cached
"$BIN" --version >&2 || true
echo "$BIN"
