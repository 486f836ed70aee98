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
# Libraries that FILE... need and the system lacks, one line per file.
missing_libs() {
  local f m
  for f in "$@"; do
    [ -e "$f" ] || { echo "missing $f"; continue; }
    m="$(ldd "$f" 2>&1 | awk '/not found/ {printf "%s ", $1}')"
    [ -n "$m" ] && echo "$(basename "$f") needs: $m"
  done
}
# What each step loads; a step whose libraries are missing fails with them
# listed (install them, e.g. apt-get install libxml2 libffi8 libtinfo6
# libzstd1), and the other steps still run.
c_program_files=("$art/bin/split-decode-example" "$art"/lib/*.so.*)
runner_files=("$art/mlir/bin/mlir-runner" "$art"/mlir/lib/*.so.* "$art"/lib/*.so.*)
# (PAGED_ATTN_CUDA_DRIVER, which libpaged_attn_mgpu loads instead, lets the
# script itself be tried on test/standin-driver, whose kernels never run.)
if [ -z "${PAGED_ATTN_CUDA_DRIVER:-}" ] &&
  ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  die "no libcuda.so.1: this needs a machine with the CUDA driver"
fi

card="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null |
        head -1)"
header="# card: ${card:-unknown}; date: $(date -u +%F); host programs from $(sed -n 's/^commit: //p' "$art/BUILD-INFO" | cut -c1-12) (examples/host, LLVM $(sed -n 's/^llvm: //p' "$art/BUILD-INFO"))"

# Fails the step, in its log, when the libraries of FILE... are missing.
require_libs() { # LOG FILE...
  local log=$1 m
  shift
  m="$(missing_libs "$@")"
  [ -z "$m" ] && return 0
  { echo "$header"; echo "libraries not found (install them, e.g." \
      "apt-get install libxml2 libffi8 libtinfo6 libzstd1):"; echo "$m"
    echo "FAIL"; } >"$log"
  return 1
}

run_c_program() { # LOG
  require_libs "$1" "${c_program_files[@]}" || return 1
  { echo "$header"; echo "# bin/split-decode-example"
    "$art/bin/split-decode-example"; } >"$1" 2>&1
}
run_runner() { # LOG
  local out="$logs/runner.out"
  require_libs "$1" "${runner_files[@]}" || return 1
  if ! python3 -c 'import numpy' 2>/dev/null; then
    { echo "$header"; echo "the checker needs python3 with numpy: FAIL"; } >"$1"
    return 1
  fi
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
  require_libs "$1" "${c_program_files[@]}" || return 1
  { echo "$header"; echo "# compute-sanitizer --tool memcheck bin/split-decode-example"
    compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$art/bin/split-decode-example"; } >"$1" 2>&1
}

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
