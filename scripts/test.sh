#!/usr/bin/env bash
# Builds PagedAttn and runs every test: lit (IR at every stage, PTX facts,
# ptxas spill matrix, plugin, installed package), unit tests, the CPU JIT
# check of the op's meaning, and the GPU tests (skipped without a GPU).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)"
