#!/usr/bin/env bash
# The transformers integration on a machine with a GPU, torch and
# transformers 5.17.x: installs the Python package (runtime-only where
# LLVM/MLIR is absent, as run-gpu-suite.sh does), runs its GPU test, the
# example and bench/bench_transformers.py on kernels compiled elsewhere
# (bench/compile-kernels.sh KERNELS --transformers); one log per step in
# LOGS, the bench's results in LOGS/bench-transformers. A failing step does
# not stop the later ones; the exit status is 1 if any failed.
#
#   test/gpu/run-transformers.sh KERNELS LOGS [STEP...]
#
# Steps (default: all): install pytest example bench.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
kernels="$(cd "$1" && pwd)"
logs="$(mkdir -p "$2" && cd "$2" && pwd)"
shift 2
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(install pytest example bench)
export PAGED_ATTN_KERNEL_DIR="$kernels"
export CUDA_CACHE_MAXSIZE=4294967296
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

card="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader |
        head -1)"
versions="$(python3 -c 'import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}")' \
  2>&1 | tail -1)"
header="# card: ${card}; date: $(date -u +%F); ${versions}; kernels from bench/compile-kernels.sh --transformers"

status=0
for step in "${steps[@]}"; do
  log="$logs/transformers-$step.log"
  case $step in
  install)
    { echo "$header"
      python3 -m pip install -q --no-build-isolation "$root/python"
    } >"$log" 2>&1
    rc=$? ;;
  pytest)
    ( echo "$header"
      cd /tmp && PAGED_ATTN_TRANSFORMERS_RESULTS="$logs/transformers-test" \
        python3 -m pytest -q -s -p no:cacheprovider \
        "$root/python/tests/test_transformers_cpu.py" \
        "$root/python/tests/test_transformers_gpu.py"
    ) >"$log" 2>&1
    rc=$? ;;
  example)
    ( echo "$header"
      cd /tmp && python3 "$root/examples/transformers_generate.py" \
        --model llama --no-index-path --out "$logs/transformers-example"
    ) >"$log" 2>&1
    rc=$? ;;
  bench)
    ( echo "$header"
      cd "$root" && python3 bench/bench_transformers.py \
        --out "$logs/bench-transformers"
    ) >"$log" 2>&1
    rc=$? ;;
  *) echo "unknown step $step" >"$log"; rc=1 ;;
  esac
  echo "$step: exit $rc ($(tail -1 "$log"))"
  [ $rc -eq 0 ] || status=1
done
exit $status
