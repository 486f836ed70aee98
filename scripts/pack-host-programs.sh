#!/usr/bin/env bash
# Packs what test/gpu/run-host-programs.sh needs on a GPU machine that has
# no LLVM/MLIR (Ubuntu 24.04 with a CUDA driver) into one xz tarball:
#
#   host-programs/bin/split-decode-example       the C program (examples/host)
#   host-programs/lib/libpaged_attn_mgpu.so*     the mgpu* functions
#   host-programs/split_decode_runner.llvm.mlir  the runner's module, lowered
#   host-programs/check_runner_output.py         its checker
#   host-programs/run-host-programs.sh           test/gpu's runner, a copy
#   host-programs/mlir/bin/mlir-runner           stock mlir-runner-22
#   host-programs/mlir/lib/                      libMLIR, libLLVM, the runner
#                                                utils, and libz3, libedit,
#                                                libbsd, libmd
#   host-programs/BUILD-INFO                     commit, LLVM version, date
#
# Libraries an Ubuntu 24.04 machine has (libc, libstdc++, libffi, libtinfo,
# libz, libzstd, liblzma, libxml2 and its libicu) are not carried: the
# runner script lists any that are missing there.
#
#   scripts/pack-host-programs.sh [BUILD_DIR] [OUT.tar.xz]
#
# BUILD_DIR (default build/) must have built split-decode-example and
# split-decode-runner; OUT defaults to .device/host-programs.tar.xz.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
out="${2:-$root/.device/host-programs.tar.xz}"
llvm="${LLVM_PREFIX:-/usr/lib/llvm-22}"
syslib=/lib/x86_64-linux-gnu
# The xz tarball must stay small enough to carry with the working tree.
limit_mb=55

need() { # FILE...: each must exist
  for f in "$@"; do
    [ -e "$f" ] || { echo "pack-host-programs: missing $f" >&2; exit 1; }
  done
}
need "$build/bin/split-decode-example" "$build/lib/libpaged_attn_mgpu.so" \
  "$build/examples/host/split_decode_runner.llvm.mlir" \
  "$llvm/bin/mlir-runner" "$llvm/lib/libMLIR.so.22.1" \
  "$llvm/lib/libLLVM.so.22.1" "$syslib/libz3.so.4" "$syslib/libedit.so.2"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
dest="$stage/host-programs"
mkdir -p "$dest/bin" "$dest/lib" "$dest/mlir/bin" "$dest/mlir/lib"

cp "$build/bin/split-decode-example" "$dest/bin/"
# The library under its soname, and the unversioned name mlir-runner's
# --shared-libs is given.
mgpu_real="$(readlink -f "$build/lib/libpaged_attn_mgpu.so")"
soname="$(readelf -d "$mgpu_real" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')"
cp "$mgpu_real" "$dest/lib/$soname"
ln -s "$soname" "$dest/lib/libpaged_attn_mgpu.so"
cp "$build/examples/host/split_decode_runner.llvm.mlir" "$dest/"
cp "$root/examples/host/check_runner_output.py" \
  "$root/test/gpu/run-host-programs.sh" "$dest/"

# mlir-runner finds libMLIR and libLLVM through its RUNPATH ($ORIGIN/../lib),
# libLLVM libz3 and libedit the same way; libedit's own libbsd (and its
# libmd) through LD_LIBRARY_PATH, which the runner script sets.
cp "$llvm/bin/mlir-runner" "$dest/mlir/bin/"
for lib in libMLIR.so.22.1 libLLVM.so.22.1 libmlir_runner_utils.so.22.1 \
  libmlir_c_runner_utils.so.22.1 libmlir_float16_utils.so.22.1 \
  libmlir_apfloat_wrappers.so.22.1; do
  need "$llvm/lib/$lib"
  cp "$llvm/lib/$lib" "$dest/mlir/lib/"
done
for lib in libmlir_runner_utils libmlir_c_runner_utils; do
  ln -s "$lib.so.22.1" "$dest/mlir/lib/$lib.so"
done
for lib in libz3.so.4 libedit.so.2 libbsd.so.0 libmd.so.0; do
  need "$syslib/$lib"
  cp -L "$syslib/$lib" "$dest/mlir/lib/$lib"
done

{
  echo "commit: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "llvm: $("$llvm/bin/llc" --version | sed -n 's/.*LLVM version \(.*\)/\1/p')"
  echo "packed: $(date -u +%FT%TZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "runner module: paged-attn-to-host=num-splits=2 of examples/host/" \
       "split_decode.mlir, runner/main.mlir, runner/on_gpu.mlir"
} >"$dest/BUILD-INFO"

mkdir -p "$(dirname "$out")"
tar -C "$stage" -cf - host-programs | xz -6 -T2 >"$out.tmp"
mv "$out.tmp" "$out"
size_mb=$(( $(stat -c %s "$out") / 1024 / 1024 ))
echo "packed $out: ${size_mb} MiB"
if [ "$size_mb" -ge "$limit_mb" ]; then
  echo "pack-host-programs: $out is ${size_mb} MiB, over ${limit_mb}" >&2
  exit 1
fi
