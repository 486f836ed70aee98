#!/usr/bin/env bash
# paged_attn.distributed on a machine with two or more GPUs (NCCL) and no
# LLVM/MLIR: installs the Python package without the compiler (as
# run-gpu-suite.sh does), then runs its CPU tests, its GPU tests on every
# visible GPU, the example and the benchmark on kernels compiled elsewhere:
#
#   test/gpu/matrix.py compile --compiler build/bin/paged-attn-compile \
#       --set distributed --out KERNELS          # where the compiler is
#   test/gpu/run-distributed.sh KERNELS LOGS     # on the GPU machine
#
# KERNELS: matrix.py's output directory (its distributed/ set is used) or
# the set's directory itself. One log per step in LOGS (install, env,
# pytest-distributed-cpu, pytest-distributed-gpu, example-distributed,
# bench-distributed; the bench's tables in LOGS/bench-distributed/). A
# failing step does not stop the later ones; the exit status is 1 when any
# failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
kernels="$(cd "$1" && pwd)" || exit 1
[ -d "$kernels/distributed" ] && kernels="$kernels/distributed"
logs="$(mkdir -p "$2" && cd "$2" && pwd)"
# The JIT cache keeps the kernels the first steps compiled from PTX.
export CUDA_CACHE_MAXSIZE=4294967296
export PAGED_ATTN_KERNEL_DIR="$kernels"
gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')"
card="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader |
        head -1)"
header="# card: ${card} x${gpus}; date: $(date -u +%F); runtime-only build, kernels from test/gpu/matrix.py --set distributed (sm_90) in $kernels"
echo "$header"
if ! ls "$kernels"/*.json >/dev/null 2>&1; then
  echo "no kernel manifests in $kernels (test/gpu/matrix.py compile --set distributed)"
  exit 1
fi

status=0
step() { # NAME DIR COMMAND...: COMMAND run in DIR, its output in LOGS/NAME.log
  local name=$1 dir=$2
  shift 2
  echo "== $name: $*"
  ( echo "$header"; echo "# (in $dir) $*"; cd "$dir" && "$@" ) \
    >"$logs/$name.log" 2>&1
  local rc=$?
  tail -4 "$logs/$name.log"
  echo "== $name: exit $rc"
  [ $rc -eq 0 ] || status=1
  return 0
}

step install "$root" python3 -m pip install --no-build-isolation "$root/python"
# From /tmp, so that the installed package (with its extension) is imported.
step env /tmp python3 -c "
import torch, paged_attn
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl',
      torch.cuda.nccl.version(), 'gpus', torch.cuda.device_count())
print('paged_attn', paged_attn.__file__, 'compiler', paged_attn.has_compiler(),
      'driver', paged_attn.has_driver())"
step pytest-distributed-cpu /tmp python3 -m pytest -q -p no:cacheprovider \
  "$root/python/tests/test_distributed_cpu.py"
step pytest-distributed-gpu /tmp timeout 3600 python3 -m pytest -q -rf \
  -p no:cacheprovider "$root/python/tests/test_distributed_gpu.py"
step example-distributed /tmp timeout 900 python3 -m torch.distributed.run --standalone \
  --nproc-per-node "$gpus" "$root/examples/distributed_decode.py"
step bench-distributed /tmp timeout 3600 python3 -m torch.distributed.run --standalone \
  --nproc-per-node "$gpus" "$root/bench/bench_distributed.py" \
  --out "$logs/bench-distributed"
exit $status
