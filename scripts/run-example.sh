#!/usr/bin/env bash
# The main job: builds PagedAttn, compiles examples/decode.mlir to PTX and a
# manifest, and, where a CUDA driver and GPU are present, runs the kernel on
# random paged inputs and checks it against the float64 reference.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
out="${OUT_DIR:-$build/example}"
"$root/scripts/build.sh" >/dev/null
mkdir -p "$out"

echo "== paged_attn.decode (examples/decode.mlir) lowered to PTX"
"$build/bin/paged-attn-compile" "$root/examples/decode.mlir" \
  -o "$out/decode" --time
grep -E '^\.(version|target)|^\.visible \.entry' "$out/decode.ptx"
echo "wrote $out/decode.ptx and $out/decode.json"
if command -v ptxas >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/ptxas ]; then
  ptxas_bin="$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)"
  echo "== ptxas -arch=sm_90 -v"
  "$ptxas_bin" -arch=sm_90 -v "$out/decode.ptx" -o "$out/decode.cubin" 2>&1 \
    | grep -E "Compiling|Used|spill"
fi

echo "== run on the GPU"
set +e
"$build/bin/paged-attn-run" --kernels "$out/decode.json" \
  --batch 8 --seq-len 4096 --ragged
status=$?
set -e
if [ $status -eq 3 ]; then
  echo "(no CUDA driver here: the kernel was compiled but not run)"
  exit 0
fi
exit $status
