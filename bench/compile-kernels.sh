#!/usr/bin/env bash
# Compiles the kernels bench_decode.py uses into DIR (one manifest per
# config): compile-kernels.sh DIR [--main-only] [paged-attn-compile flags...]
# --transformers instead: the decode configs of the transformers
# integration's GPU test, example and bench (the models of
# python/paged_attn/integrations/transformers_testing.py; the page is
# transformers' cache block, the cache nhd).
# --fp8 instead: bench_fp8.py's, bf16 and its e4m3 caches with scales per
# tensor, KV head and token.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
compile="${PAGED_ATTN_COMPILE:-$root/build/bin/paged-attn-compile}"
out="$1"
shift
configs=("32 8 128 16 bf16")
case "${1:-}" in
--main-only)
  shift ;;
--transformers)
  # num_heads kv_heads head_dim page dtype: llama, qwen2, qwen3-mha-d64
  configs=("32 8 128 256 bf16" "28 4 128 256 bf16" "16 16 64 64 bf16")
  shift ;;
--fp8)
  configs=("32 8 128 16 bf16" "64 8 128 16 bf16")
  for kv_scale in tensor head token; do
    for hq in 32 64; do
      configs+=("$hq 8 128 16 bf16 --kv-dtype f8e4m3fn --kv-scale $kv_scale")
    done
  done
  shift ;;
*)
  configs+=("32 32 128 16 bf16" "64 8 128 16 bf16" "28 4 128 16 bf16"
            "8 1 256 16 bf16" "32 1 128 16 bf16" "16 1 256 16 bf16"
            "32 8 64 16 bf16" "32 8 256 16 bf16" "32 8 128 1 bf16"
            "32 8 128 128 bf16" "32 8 128 16 f16") ;;
esac
mkdir -p "$out"
extra=("$@")
for c in "${configs[@]}"; do
  set -- $c "${extra[@]}"
  hq=$1 hkv=$2 d=$3 page=$4 dtype=$5
  shift 5
  name="h${hq}_kv${hkv}_d${d}_p${page}_${dtype}"
  # An fp8 config's flags (--kv-dtype X --kv-scale Y) name it apart.
  if [ "${1:-}" = --kv-dtype ]; then
    name+="_$2_$4"
  fi
  "$compile" --num-heads "$hq" --num-kv-heads "$hkv" --head-dim "$d" \
    --page-size "$page" --dtype "$dtype" --layout nhd --chip sm_90 "$@" \
    -o "$out/$name"
done
