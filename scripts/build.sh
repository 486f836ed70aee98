#!/usr/bin/env bash
# Configures and builds PagedAttn in build/ (or $BUILD_DIR) with Ninja.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
t0=$(date +%s)
"$root/scripts/install-deps.sh"
t1=$(date +%s)
if [ ! -f "$build/build.ninja" ]; then
  cmake -G Ninja -S "$root" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit
fi
t2=$(date +%s)
cmake --build "$build"
t3=$(date +%s)
echo "time: install $((t1 - t0)) s, configure $((t2 - t1)) s, build $((t3 - t2)) s" >&2
