#!/usr/bin/env bash
# The GPU suite on a machine with a GPU and no LLVM/MLIR: builds the runtime
# and gpu-decode-test without the compiler, runs the kernel matrix compiled
# elsewhere (test/gpu/matrix.py compile --out KERNELS), compute-sanitizer's
# memcheck, racecheck, synccheck and initcheck, and the Python package's
# tests; one log per step in LOGS.
#
#   test/gpu/run-gpu-suite.sh KERNELS LOGS [STEP...]
#
# Steps (default: all): matrix memcheck racecheck synccheck initcheck pytest.
# Also: multi-token (the multi-token sets alone), multi-token-sanitizers
# (the four tools on a multi-token subset), variants (the variants sets
# alone), variants-sanitizers (memcheck,
# racecheck, synccheck and initcheck on every variant at once),
# pytest-variants, bench-variants (bench/bench_variants.py),
# pytest-multi-token, bench-multi-token (bench/bench_multi_token.py),
# fp8 (the fp8 sets alone), fp8-sanitizers (the four tools on an fp8
# subset), pytest-fp8 (python/tests/test_fp8_gpu.py), pytest-merge
# (python/tests/test_merge_gpu.py), merge-sanitizers (memcheck, racecheck,
# synccheck and initcheck of the merge kernels under those tests),
# bench-merge (bench/bench_merge.py), pytest-jax (paged_attn.jax: its
# tests, built with the jax installed there), bench-host (bench/bench_host.py: the
# Python calls' host time), pytest-append (python/tests/test_append_gpu.py
# on the matrix's append set), append-sanitizers (the four tools on the
# append kernels under a subset of those tests), bench-append
# (bench/bench_append.py).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
kernels="$(cd "$1" && pwd)"
logs="$(mkdir -p "$2" && cd "$2" && pwd)"
shift 2
steps=("$@")
[ ${#steps[@]} -eq 0 ] &&
  steps=(matrix memcheck racecheck synccheck initcheck pytest)
build="${BUILD_DIR:-/tmp/paged-attn-gpu-build}"
# The JIT cache keeps the matrix's compiled modules for the later steps.
export CUDA_CACHE_MAXSIZE=4294967296

card="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader |
        head -1)"
header="# card: ${card}; date: $(date -u +%F); runtime-only build, kernels from test/gpu/matrix.py (sm_90)"

cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DPAGED_ATTN_ENABLE_COMPILER=OFF -DPAGED_ATTN_KERNEL_DIR="$kernels" \
  >"$logs/build.log" 2>&1 &&
  cmake --build "$build" >>"$logs/build.log" 2>&1 ||
  { cat "$logs/build.log"; exit 1; }
test_bin="$build/bin/gpu-decode-test"
sanitize() { # TOOL LOG ARGS...
  local tool=$1 log=$2
  shift 2
  { echo "$header"; echo "# compute-sanitizer --tool $tool gpu-decode-test $*"
    compute-sanitizer --tool "$tool" --error-exitcode 1 "$test_bin" \
      --kernels "$kernels" --jobs 1 "$@"; } >"$log" 2>&1
  local rc=$?
  echo "$tool: exit $rc ($(grep -c '^\[PASS\]' "$log") passed," \
       "$(grep -c '^\[FAIL\]' "$log") failed; $(tail -1 "$log"))"
  return $rc
}
install_python() { # LOG: the package, built here; pip's output in LOG
  python3 -m pip install -q --no-build-isolation "$root/python" >"$1" 2>&1 ||
    { cat "$1"; return 1; }
}
run_pytest() { # LOG TESTS...: the package's tests on the matrix's kernels
  local log=$1
  shift
  install_python "$log" || return 1
  ( echo "$header"
    cd /tmp && PAGED_ATTN_KERNEL_DIR="$kernels/auto" python3 -m pytest -q \
      -p no:cacheprovider "$@" ) >>"$log" 2>&1
  local rc=$?
  tail -1 "$log"
  return $rc
}
run_bench() { # NAME: bench/bench_NAME.py (the package installed), its
  # results in LOGS/bench-NAME
  ( echo "$header"
    cd "$root" && PAGED_ATTN_KERNEL_DIR="$kernels/auto" python3 \
      "bench/bench_$1.py" --out "$logs/bench-$1" ) >"$logs/bench-$1.log" 2>&1
  local rc=$?
  cat "$logs/bench-$1.log"
  return $rc
}
merge_tests="$root/python/tests/test_merge_gpu.py"
append_tests="$root/python/tests/test_append_gpu.py"
status=0
for step in "${steps[@]}"; do
  case $step in
  matrix)
    { echo "$header"; "$test_bin" --kernels "$kernels"; } \
      >"$logs/gpu-decode-test.log" 2>&1 || status=1
    tail -2 "$logs/gpu-decode-test.log" ;;
  memcheck)
    # Every (set, dtype, head_dim) once, the regressions and the named cases.
    sanitize memcheck "$logs/memcheck.log" --one-per-module || status=1 ;;
  racecheck | synccheck)
    # The tensor-core kernel's cp.async rings, ldmatrix and cross-warp merge
    # in shared memory, for every head_dim it serves.
    sanitize "$step" "$logs/$step.log" --one-per-module \
      --filter '^(tensor-cores/|regression/)' || status=1 ;;
  initcheck)
    # One case per kernel: tensor cores, CUDA cores, the merge.
    sanitize initcheck "$logs/initcheck.log" --filter \
      '^(tensor-cores/h8_kv2_d80_.*|cuda-cores/h8_kv2_d80_.*|auto/h2_kv2_d104_.*)/split3$' ||
      status=1 ;;
  variants)
    { echo "$header"; "$test_bin" --kernels "$kernels" --filter '^variants'; } \
      >"$logs/gpu-decode-test-variants.log" 2>&1 || status=1
    tail -2 "$logs/gpu-decode-test-variants.log"
    ;;
  multi-token)
    { echo "$header"; "$test_bin" --kernels "$kernels" \
        --filter '^multi-token'; } \
      >"$logs/gpu-decode-test-multi-token.log" 2>&1 || status=1
    tail -2 "$logs/gpu-decode-test-multi-token.log"
    ;;
  fp8)
    { echo "$header"; "$test_bin" --kernels "$kernels" --filter '^fp8'; } \
      >"$logs/gpu-decode-test-fp8.log" 2>&1 || status=1
    tail -2 "$logs/gpu-decode-test-fp8.log"
    ;;
  fp8-sanitizers)
    # One case a module: memcheck on both kernels at head_dim 64, 128 and
    # 256, racecheck and synccheck on the tensor-core kernel's byte tiles
    # at 128 and 256, initcheck at 128.
    fp8='^fp8(-cuda-cores)?/h[0-9]+_kv[0-9]+_d(64|128|256)_'
    sanitize memcheck "$logs/memcheck-fp8.log" --one-per-module \
      --filter "$fp8" || status=1
    for tool in racecheck synccheck; do
      sanitize "$tool" "$logs/$tool-fp8.log" --one-per-module \
        --filter '^fp8/h[0-9]+_kv[0-9]+_d(128|256)_' || status=1
    done
    sanitize initcheck "$logs/initcheck-fp8.log" --one-per-module \
      --filter '^fp8(-cuda-cores)?/h[0-9]+_kv[0-9]+_d128_' || status=1
    ;;
  pytest-fp8)
    run_pytest "$logs/pytest-fp8.log" "$root/python/tests/test_fp8_gpu.py" \
      "$root/python/tests/test_fp8_cpu.py" ||
      status=1 ;;
  multi-token-sanitizers)
    # Both kernels, rows past one mma block, padding queries, every variant.
    mt='^multi-token(-cuda-cores)?/h(8_kv2_d128|16_kv2_d80)_.*_l(1|5|7|16)_'
    for tool in memcheck racecheck synccheck initcheck; do
      sanitize "$tool" "$logs/$tool-multi-token.log" \
        --filter "$mt.*/split3$" || status=1
    done
    ;;
  variants-sanitizers)
    # Every variant at once, on both kernels, head_dim 80 and 128.
    all='_win_cap_alibi_sinks_lse/window[0-9]+'
    sanitize memcheck "$logs/memcheck-variants.log" \
      --filter "^variants(-cuda-cores)?/h8_kv2_d(80|128)_.*$all/" || status=1
    sanitize racecheck "$logs/racecheck-variants.log" \
      --filter "^variants/h8_kv2_d(80|128)_.*_(bf16|f16)_.*$all/split3$" ||
      status=1
    sanitize synccheck "$logs/synccheck-variants.log" \
      --filter "^variants/h8_kv2_d(80|128)_.*_(bf16|f16)_.*$all/split3$" ||
      status=1
    sanitize initcheck "$logs/initcheck-variants.log" \
      --filter "^variants(-cuda-cores)?/h8_kv2_d128_.*_bf16_.*$all/split3$" ||
      status=1 ;;
  bench-variants) run_bench variants || status=1 ;;
  bench-multi-token) run_bench multi_token || status=1 ;;
  pytest-multi-token)
    run_pytest "$logs/pytest-multi-token.log" \
      "$root/python/tests/test_multi_token_gpu.py" || status=1 ;;
  bench-merge) run_bench merge || status=1 ;;
  bench-host)
    install_python "$logs/bench-host-install.log" || { status=1; continue; }
    run_bench host || status=1 ;;
  pytest-variants)
    run_pytest "$logs/pytest-variants.log" \
      "$root/python/tests/test_variants_gpu.py" || status=1 ;;
  pytest-merge) run_pytest "$logs/pytest-merge.log" "$merge_tests" || status=1 ;;
  pytest-jax)
    run_pytest "$logs/pytest-jax.log" "$root/python/tests/test_jax_gpu.py" ||
      status=1 ;;
  pytest) run_pytest "$logs/pytest.log" "$root/python/tests" || status=1 ;;
  pytest-append)
    run_pytest "$logs/pytest-append.log" "$append_tests" \
      "$root/python/tests/test_append_cpu.py" || status=1 ;;
  bench-append) run_bench append || status=1 ;;
  append-sanitizers)
    install_python "$logs/append-sanitizers.log" || { status=1; continue; }
    # Both formats, every granularity, both layouts and the largest rows,
    # the copies, the multi-token append and the append-then-decode loop's
    # first configs; only the append kernels are checked (initcheck: their
    # reads of the sources and scales, which torch wrote).
    tests="(bit_exact and 256-16) or copied or multi_token or (then_decode and None)"
    for tool in memcheck racecheck synccheck initcheck; do
      extra=()
      [ "$tool" = initcheck ] && extra=(--check-api-memory-access no)
      ( echo "$header"
        echo "# compute-sanitizer --tool $tool pytest test_append_gpu.py -k '$tests'"
        cd /tmp && PAGED_ATTN_KERNEL_DIR="$kernels/append" compute-sanitizer \
          --tool "$tool" "${extra[@]}" --error-exitcode 1 \
          --kernel-name kns=paged_attn_append \
          python3 -m pytest -q -p no:cacheprovider "$append_tests" -k "$tests"
      ) >"$logs/$tool-append.log" 2>&1 || status=1
      echo "$tool append: $(grep -E 'SUMMARY|passed|failed' \
        "$logs/$tool-append.log" | tr '\n' ' ')"
    done ;;
  merge-sanitizers)
    install_python "$logs/merge-sanitizers.log" || { status=1; continue; }
    # The merge kernels (every dtype and shape of the matrix, sinks and
    # lse) under each tool; only PagedAttn's kernels are checked.
    # (initcheck checks kernels' reads only: torch's own copies of memory
    # it never wrote would drown them. It also leaves out the cascade: its
    # partials are stacked by a torch kernel, which the kernel filter
    # leaves uninstrumented, so initcheck never sees them written.)
    for tool in memcheck racecheck synccheck initcheck; do
      extra=()
      tests="test_merge_matches_float64 and (n2 or n9) or cascade"
      [ "$tool" = initcheck ] && extra=(--check-api-memory-access no) &&
        tests="test_merge_matches_float64 and (n2 or n9)"
      ( echo "$header"
        echo "# compute-sanitizer --tool $tool pytest test_merge_gpu.py"
        cd /tmp && PAGED_ATTN_KERNEL_DIR="$kernels/auto" compute-sanitizer \
          --tool "$tool" "${extra[@]}" --error-exitcode 1 \
          --kernel-name kns=paged_attn \
          python3 -m pytest -q -p no:cacheprovider "$merge_tests" \
          -k "$tests"
      ) >"$logs/$tool-merge.log" 2>&1 || status=1
      echo "$tool merge: $(grep -E 'SUMMARY|passed|failed' \
        "$logs/$tool-merge.log" | tr '\n' ' ')"
    done ;;
  *) echo "unknown step $step"; status=1 ;;
  esac
done
exit $status
