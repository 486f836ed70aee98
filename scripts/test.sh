#!/usr/bin/env bash
# Builds PagedAttn and runs every test: lit (IR at every stage, PTX facts,
# ptxas spill matrix, plugin, installed package), unit tests (the runtime
# against a stand-in CUDA driver among them), the CPU JIT check of the op's
# meaning, a minute of fuzzing, the GPU tests (skipped without a GPU); the
# CPU tests again under ASan and UBSan (PAGED_ATTN_TEST_SANITIZERS=0 skips
# them); and the Python package's tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/build.sh"
t0=$(date +%s)
(cd "$build" && ctest --output-on-failure -j "$(nproc)")
t1=$(date +%s)
if [ "${PAGED_ATTN_TEST_SANITIZERS:-1}" != 0 ]; then
  "$root/scripts/test-sanitizers.sh"
fi
ts=$(date +%s)

# The Python package: built with the compiler against the same sources, its
# CPU tests run here (GPU tests skip themselves without torch and a GPU).
# jax (CPU) for paged_attn.jax's lowering tests; its FFI headers build the
# package's XLA handler (an isolated build cannot import jax to find them).
python3 -m pip install -q pytest "jax>=0.10,<0.12"
xla_ffi_include="$(python3 -c 'import jax.ffi; print(jax.ffi.include_dir())')"
python3 -m pip install -q "$root/python" \
  -Ccmake.define.PAGED_ATTN_XLA_FFI_INCLUDE_DIR="$xla_ffi_include"
export PAGED_ATTN_EXPECT_XLA_FFI=1
# From outside python/, so that the installed package (with its extension)
# is the one imported.
(cd "${TMPDIR:-/tmp}" && python3 -m pytest -q -p no:cacheprovider "$root/python/tests")
t2=$(date +%s)
echo "time: ctest $((t1 - t0)) s, sanitizer build and tests $((ts - t1)) s," \
  "python package build and tests $((t2 - ts)) s" >&2
