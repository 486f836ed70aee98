#!/usr/bin/env bash
# The host programs of examples/host on a GPU machine without LLVM/MLIR,
# from the artifacts scripts/pack-host-programs.sh packs (unpacked into
# ARTIFACTS, the directory holding BUILD-INFO):
#
#   c-program    bin/split-decode-example: split_decode.mlir compiled to an
#                object file, linked into a C program with
#                libpaged_attn_mgpu; random decodes against float64
#   runner       stock mlir-runner on the lowered runner module with
#                libpaged_attn_mgpu; check_runner_output.py compares what it
#                prints with float64
#   memcheck     the C program under compute-sanitizer's memcheck (where
#                compute-sanitizer is on PATH)
#
#   test/gpu/run-host-programs.sh ARTIFACTS LOGS [STEP...]
#
# One log per step in LOGS, each headed by the card; exits nonzero if a step
# fails or something it needs is missing.
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ARTIFACTS LOGS [c-program|runner|memcheck...]" >&2
  exit 2
fi
art="$(cd "$1" && pwd)" || exit 2
logs="$(mkdir -p "$2" && cd "$2" && pwd)" || exit 2
shift 2
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(c-program runner memcheck)

die() { echo "run-host-programs: $*" >&2; exit 2; }
[ -f "$art/BUILD-INFO" ] ||
  die "$art has no BUILD-INFO: not unpacked from scripts/pack-host-programs.sh"
# libedit's libbsd and libmd are carried beside libMLIR and libLLVM; the
# rest come from the system.
export LD_LIBRARY_PATH="$art/mlir/lib:$art/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing=""
for f in "$art/bin/split-decode-example" "$art/mlir/bin/mlir-runner" \
  "$art"/mlir/lib/*.so.* "$art"/lib/*.so.*; do
  [ -e "$f" ] || die "missing $f"
  m="$(ldd "$f" 2>&1 | awk '/not found/ {print $1}')"
  [ -n "$m" ] && missing+="$(basename "$f") needs: $m"$'\n'
done
if [ -n "$missing" ]; then
  printf 'run-host-programs: libraries not found (install them, e.g. apt-get install libxml2 libffi8 libtinfo6 libzstd1):\n%s' "$missing" >&2
  exit 2
fi
# (PAGED_ATTN_CUDA_DRIVER, which libpaged_attn_mgpu loads instead, lets the
# script itself be tried on test/standin-driver, whose kernels never run.)
if [ -z "${PAGED_ATTN_CUDA_DRIVER:-}" ] &&
  ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  die "no libcuda.so.1: this needs a machine with the CUDA driver"
fi

card="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null |
        head -1)"
header="# card: ${card:-unknown}; date: $(date -u +%F); host programs from $(sed -n 's/^commit: //p' "$art/BUILD-INFO" | cut -c1-12) (examples/host, LLVM $(sed -n 's/^llvm: //p' "$art/BUILD-INFO"))"

run_c_program() { # LOG
  { echo "$header"; echo "# bin/split-decode-example"
    "$art/bin/split-decode-example"; } >"$1" 2>&1
}
run_runner() { # LOG
  local out="$logs/runner.out"
  { echo "$header"
    echo "# mlir-runner split_decode_runner.llvm.mlir -e main" \
         "--shared-libs=libpaged_attn_mgpu.so,libmlir_runner_utils.so,libmlir_c_runner_utils.so"
    # The first failed mgpu* call ends the run (its message says which).
    PAGED_ATTN_MGPU_ABORT_ON_ERROR=1 "$art/mlir/bin/mlir-runner" \
      "$art/split_decode_runner.llvm.mlir" -e main --entry-point-result=void \
      --shared-libs="$art/lib/libpaged_attn_mgpu.so,$art/mlir/lib/libmlir_runner_utils.so,$art/mlir/lib/libmlir_c_runner_utils.so" \
      >"$out" || { echo "mlir-runner failed (exit $?)"; return 1; }
    echo "# check_runner_output.py runner.out (the printed output is in runner.out)"
    python3 "$art/check_runner_output.py" "$out"; } >"$1" 2>&1
}
run_memcheck() { # LOG
  if ! command -v compute-sanitizer >/dev/null; then
    { echo "$header"; echo "skipped: no compute-sanitizer on PATH"; } >"$1"
    return 0
  fi
  { echo "$header"; echo "# compute-sanitizer --tool memcheck bin/split-decode-example"
    compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$art/bin/split-decode-example"; } >"$1" 2>&1
}

if ! python3 -c 'import numpy' 2>/dev/null; then
  for s in "${steps[@]}"; do
    [ "$s" = runner ] && die "the runner's checker needs python3 with numpy"
  done
fi

status=0
for step in "${steps[@]}"; do
  log="$logs/$step.log"
  case "$step" in
    c-program) run_c_program "$log" ;;
    runner) run_runner "$log" ;;
    memcheck) run_memcheck "$log" ;;
    *) die "unknown step '$step'" ;;
  esac
  rc=$?
  echo "$step: exit $rc; $(tail -1 "$log")"
  [ $rc -eq 0 ] || status=1
done
exit $status
