#!/usr/bin/env python3
"""The GPU test matrix: the decode configs the GPU tests run, and their
kernels compiled by paged-attn-compile into one directory per kernel set.

Every head_dim the verifier accepts is in it: 16-bit caches take multiples
of 8 up to 256, f32 caches multiples of 4 up to 256 (a row is a multiple of
16 bytes; 256 is the op's bound).

Kernel sets (one directory each under the output directory):

  auto          the default kernel choice (tensor-cores=auto), on
                - core: dtype {f16, bf16, f32} x head_dim {64, 128, 256} x
                  page {1, 8, 16, 128} x group {1, 2, 4, 8, 16} x {nhd, hnd};
                - head-dims: every accepted head_dim of each dtype x group
                  {1, 2, 4, 8, 16}, the page and layout rotating so that each
                  head_dim meets every page size and both layouts; and groups
                  {3, 7, 12, 32} (partial and several mma head blocks, several
                  CTAs per KV head) for head_dim 64, 80 and 128;
                - the regression configs and those the Python tests use
                  (multi-token ones among them);
                - paged_attn.merge kernels: dtype x (num_heads, head_dim)
                  MERGE_SHAPES x {plain, sinks, lse, sinks + lse}, for the
                  Python merge tests and bench.
  tensor-cores  tensor-cores=on for every head-dims config the tensor-core
                kernel serves (f16/bf16, head_dim a multiple of 16 up to 256).
  cuda-cores    tensor-cores=off for the same configs.
  variants      the attention variants (window, soft-cap, ALiBi, sinks,
                log-sum-exp) one at a time and in the combinations models
                use (window + sinks + lse as gpt-oss, window + soft-cap as
                Gemma 2, all five), each on a shape matrix of dtype x
                head_dim {64, 80, 128, 256} x group {1, 4, 8}, pages and
                layouts rotating; and all five at every other head_dim the
                verifier accepts (groups, pages and layouts rotating);
                default kernel choice.
  variants-cuda-cores  tensor-cores=off for the variants configs the
                tensor-core kernel serves.
  multi-token   multi-token decodes: L in {1 (with a tree mask), 2, 3, 4,
                5, 7, 8, 16} x six shapes (dtype, head_dim, group; MHA to
                group 16), with and without tree masks and the variants
                rotating, pages and layouts rotating; every other L (tree
                mask, bf16 head_dim 128); and every other head_dim of each
                dtype with all the variants, L, groups, pages, layouts and
                the tree mask rotating; default choice.
  multi-token-cuda-cores  tensor-cores=off for those tensor cores serve.
  fp8           fp8 KV caches (f8e4m3fn, f8e5m2) with f32 scales per
                tensor, head or token: format x scale x layout x head_dim
                {64, 128, 256} x group {1, 4, 8}, q {f16, bf16} and pages
                {1, 16, 128} rotating; every head_dim a row of fp8 takes
                (multiples of 16 to 256) for f8e4m3fn, each scale, the rest
                rotating; each format and scale with all five variants;
                multi-token decodes (L 2, 3, 4, 8); default kernel choice.
  fp8-cuda-cores  tensor-cores=off for the fp8 configs the default choice
                puts on tensor cores (a group of 4 or more, head_dim a
                multiple of 32).
  distributed   what paged_attn.distributed's GPU tests, bench and example
                use (python/tests/test_distributed_gpu.py,
                bench/bench_distributed.py, examples/distributed_decode.py)
                on 1, 2, 4 or 8 ranks, for PAGED_ATTN_KERNEL_DIR alone:
                bf16 32/8 heads head_dim 128 and f16 8/8 head_dim 64
                (page 16, nhd) with the variants those use, their heads
                split over the ranks for tensor parallelism, and the merges
                of every rank count's head share. Compiled only when asked
                for (compile --set distributed).

So both decode kernels run every (dtype, head_dim, group) the tensor-core
kernel serves, and the CUDA-core kernel everything else, and both run every
variant.

    matrix.py compile --compiler PATH --out DIR [--chip CHIP] [--jobs N]
                      [--set SET]...   (default: all but distributed)
    matrix.py ptxas --ptxas PATH --arch sm_XX [--jobs N] DIR
    matrix.py list [SET]
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

DTYPES = ["f16", "bf16", "f32"]
GROUPS = [1, 2, 4, 8, 16]
PAGES = [1, 8, 16, 128]
LAYOUTS = ["nhd", "hnd"]
ODD_GROUPS = [3, 7, 12, 32]
ODD_GROUP_DIMS = [64, 80, 128]
MAX_HEAD_DIM = 256
KV_HEADS = 2

# What the tensor-core kernel serves (docs/design.md); the compile step
# checks each manifest against it.
TENSOR_CORE_MAX_HEAD_DIM = 256


def elem_bytes(dtype):
    return 4 if dtype == "f32" else 2


def head_dims(dtype):
    """Every head_dim the verifier accepts for `dtype`."""
    step = 16 // elem_bytes(dtype)
    return list(range(step, MAX_HEAD_DIM + 1, step))


def tensor_cores_serve(dtype, head_dim, kv_dtype=None):
    """fp8 caches (kv_dtype) take head_dims of a multiple of 32."""
    multiple = 32 if kv_dtype else 16
    return (dtype != "f32" and head_dim % multiple == 0
            and head_dim <= TENSOR_CORE_MAX_HEAD_DIM)


# The variants in the order of their name suffixes (DecodeVariants); the
# tree mask is a multi-token decode's.
VARIANTS = ["win", "cap", "alibi", "sinks", "lse"]
SUFFIXES = VARIANTS + ["tree"]
VARIANT_COMBOS = [("win",), ("cap",), ("alibi",), ("sinks",), ("lse",),
                  ("win", "sinks", "lse"), ("win", "cap"),
                  tuple(VARIANTS)]
VARIANT_DIMS = [64, 80, 128, 256]
VARIANT_GROUPS = [1, 4, 8]


# Quantised KV caches: the fp8 formats (the Spec's dtype names, and MLIR's
# type names), where their f32 scales are, and the 16-bit q they go with.
KV_DTYPES = {"f8e4m3fn": "f8E4M3FN", "f8e5m2": "f8E5M2"}
KV_SCALES = ["tensor", "head", "token"]
FP8_Q_DTYPES = ["f16", "bf16"]
FP8_DIMS = [64, 128, 256]
FP8_GROUPS = [1, 4, 8]
FP8_PAGES = [1, 16, 128]
# (L, head_dim, group, variants) of the multi-token fp8 configs.
FP8_MULTI_TOKEN = [(4, 128, 4, ("tree",)), (8, 128, 4, ()),
                   (3, 80, 2, ("lse", "tree")), (2, 256, 8, ("sinks",))]


class Config:
    __slots__ = ("dtype", "head_dim", "page", "group", "layout", "kv_heads",
                 "variants", "query_len", "kv_dtype", "kv_scale")

    def __init__(self, dtype, head_dim, page, group, layout,
                 kv_heads=KV_HEADS, variants=(), query_len=1, kv_dtype=None,
                 kv_scale=None):
        self.dtype, self.head_dim, self.page = dtype, head_dim, page
        self.group, self.layout, self.kv_heads = group, layout, kv_heads
        self.variants = tuple(v for v in SUFFIXES if v in variants)
        self.query_len = query_len
        # Both or neither (DecodeSpec::kvQuant): fp8 caches and their scales.
        self.kv_dtype, self.kv_scale = kv_dtype, kv_scale

    @property
    def query_dim(self):
        """Whether q, out and lse have the new queries as dim 1
        (DecodeSpec::hasQueryDim)."""
        return self.query_len != 1 or "tree" in self.variants

    @property
    def num_heads(self):
        return self.kv_heads * self.group

    @property
    def name(self):
        """The runtime's config name (KernelConfig::name)."""
        return (f"h{self.num_heads}_kv{self.kv_heads}_d{self.head_dim}"
                f"_p{self.page}_{self.dtype}_{self.layout}_w4"
                + (f"_l{self.query_len}" if self.query_len != 1 else "")
                + (f"_{self.kv_dtype}_{self.kv_scale}" if self.kv_dtype
                   else "")
                + "".join("_" + v for v in self.variants))

    @property
    def cache_type(self):
        """The caches' MLIR element type: q's, or the fp8 format's."""
        return KV_DTYPES[self.kv_dtype] if self.kv_dtype else self.dtype

    @property
    def scale_type(self):
        """k_scale's and v_scale's memref type (DecodeSpec::kvScaleShape)."""
        if self.kv_scale == "tensor":
            return "memref<f32>"
        if self.kv_scale == "head":
            return f"memref<{self.kv_heads}xf32>"
        if self.layout == "nhd":
            return f"memref<?x{self.page}x{self.kv_heads}xf32>"
        return f"memref<?x{self.kv_heads}x{self.page}xf32>"


# Configs that once computed garbage (issue 11: the tensor-core kernel's
# copies for head_dim 48, 80, 96, 112), run by name in gpu-decode-test.
REGRESSIONS = [
    Config("bf16", 80, 8, 8, "nhd"),
    Config("f16", 80, 16, 4, "hnd"),
    Config("bf16", 80, 16, 8, "nhd", kv_heads=1),
    Config("bf16", 48, 16, 8, "nhd"),
    Config("f16", 96, 16, 8, "nhd"),
    Config("bf16", 112, 16, 8, "hnd"),
]

# The shapes the Python GPU tests and examples use beyond the matrix: the
# plain ones, and each variant combination of test_variants_gpu.py on its
# two shapes.
PYTHON_VARIANT_COMBOS = [("win",), ("cap",), ("alibi",), ("sinks",),
                         ("lse",), ("win", "sinks", "lse"), ("win", "cap"),
                         ("win", "sinks"), tuple(VARIANTS)]
PYTHON_TEST_CONFIGS = [
    Config("bf16", 128, 16, 4, "nhd", kv_heads=8),
    Config("f16", 128, 16, 4, "hnd", kv_heads=8),
    Config("bf16", 64, 16, 4, "nhd", kv_heads=4),
    Config("f16", 128, 16, 4, "nhd", kv_heads=8),
] + [Config(*shape, variants=combo)
     for combo in PYTHON_VARIANT_COMBOS
     for shape in (("bf16", 128, 16, 4, "nhd", 8),
                   ("f16", 64, 16, 1, "hnd", 4))]


# The paged_attn.merge kernels of the auto set: (num_heads, head_dim, dtype,
# variants). A CTA of the op's kernel holds 128 / (16-byte columns per row)
# heads, at most num_heads: the shapes give it one head per CTA (f32, 256)
# to 128 (f16, 8), a CTA of all the heads (8 x 64, 12 x 80) and a last CTA
# that is partly past num_heads (32 x 80, 200 x 8).
MERGE_SHAPES = [(32, 128), (8, 64), (4, 256), (12, 80), (32, 80), (200, 8)]
MERGE_VARIANTS = [(), ("sinks",), ("lse",), ("sinks", "lse")]
MERGES = [(hq, d, t, v) for t in DTYPES for hq, d in MERGE_SHAPES
          for v in MERGE_VARIANTS]


# paged_attn.distributed's configs (the "distributed" set): (dtype,
# head_dim, num_heads, num_kv_heads), page 16, nhd; the rank counts it is
# compiled for.
DISTRIBUTED_SHAPES = [("bf16", 128, 32, 8), ("f16", 64, 8, 8)]
DISTRIBUTED_RANKS = [1, 2, 4, 8]
# The whole-head decodes: the one-GPU references of test_distributed_gpu.py
# and bench_distributed.py, and each rank's context-parallel decode (which
# always has the log-sum-exp; ALiBi and soft-cap pass through).
DISTRIBUTED_FULL_VARIANTS = [(), ("lse",), ("sinks",), ("sinks", "lse"),
                             ("cap",), ("cap", "lse"), ("alibi", "lse"),
                             ("win", "sinks", "lse"), ("cap", "alibi")]
# A rank's share of the heads under tensor parallelism.
DISTRIBUTED_TP_VARIANTS = [(), ("lse",), ("win", "sinks", "lse"),
                           ("cap", "alibi")]


def distributed_configs():
    configs = []
    for dtype, d, hq, hkv in DISTRIBUTED_SHAPES:
        for ranks in DISTRIBUTED_RANKS:
            variants = (DISTRIBUTED_FULL_VARIANTS if ranks == 1
                        else DISTRIBUTED_TP_VARIANTS)
            for v in variants:
                configs.append(Config(dtype, d, 16, hq // hkv, "nhd",
                                      kv_heads=hkv // ranks, variants=v))
    return configs


def distributed_merges():
    """The merges of each rank count's share of the heads (all of them for
    the all-gather exchange, num_heads / ranks for the all-to-all one and
    head-sharded output)."""
    return [(hq // ranks, d, dtype, v)
            for dtype, d, hq, _ in DISTRIBUTED_SHAPES
            for ranks in DISTRIBUTED_RANKS for v in MERGE_VARIANTS]


def merge_func(merge):
    hq, d, dtype, variants = merge
    parts = f"memref<?x?x{hq}x{d}x{dtype}>"
    lses = f"memref<?x?x{hq}xf32>"
    out = f"memref<?x{hq}x{d}x{dtype}>"
    heads = f"memref<{hq}xf32>"
    args, operands, outs = "", "", ""
    if "sinks" in variants:
        args += f", %s: {heads}"
        operands += f" sinks(%s : {heads})"
    if "lse" in variants:
        lse = f"memref<?x{hq}xf32>"
        args += f", %lo: {lse}"
        outs = f" lse(%lo : {lse})"
    name = "_".join((f"h{hq}_d{d}_{dtype}",) + tuple(variants))
    return (
        f"func.func @merge_{name}(%p: {parts}, %l: {lses}, %o: {out}{args}) "
        f"{{\n"
        f"  paged_attn.merge %p, %l{operands} outs(%o : {out}){outs} : "
        f"{parts}, {lses}\n"
        f"  return\n}}\n")


# paged_attn.append's kernels (the "append" set): (dtype of k and v,
# num_kv_heads, head_dim, page, layout, kv_dtype, kv_scale). Every format
# and granularity over the head_dims and pages python/tests/
# test_append_gpu.py writes (4 KV heads, both 16-bit dtypes), copies of
# every dtype, and the shapes of its append-then-decode loop (2 KV heads)
# and of bench/bench_append.py (8).
APPEND_QUANTS = [(None, None)] + [(kv, scale) for kv in ("f8e4m3fn", "f8e5m2")
                                  for scale in ("tensor", "head", "token")]


def append_specs():
    specs = []
    for layout in LAYOUTS:
        for d in (64, 128, 256):
            for page in (1, 16):
                for dtype in ("f16", "bf16", "f32"):
                    specs.append((dtype, 4, d, page, layout, None, None))
                for dtype in ("f16", "bf16"):
                    for kv, scale in APPEND_QUANTS[1:]:
                        specs.append((dtype, 4, d, page, layout, kv, scale))
        for kv_heads in (2, 8):
            for kv, scale in APPEND_QUANTS:
                specs.append(("bf16", kv_heads, 128, 16, layout, kv, scale))
    return specs


def append_func(spec):
    dtype, kv_heads, d, page, layout, kv_dtype, kv_scale = spec
    cache_type = KV_DTYPES[kv_dtype] if kv_dtype else dtype
    dims = (f"{page}x{kv_heads}" if layout == "nhd" else f"{kv_heads}x{page}")
    rows = f"memref<?x{kv_heads}x{d}x{dtype}>"
    cache = f"memref<?x{dims}x{d}x{cache_type}>"
    args, operands = "", ""
    if kv_dtype:
        scale = {"tensor": "memref<f32>", "head": f"memref<{kv_heads}xf32>",
                 "token": f"memref<?x{dims}xf32>"}[kv_scale]
        args = f", %ks: {scale}, %vs: {scale}"
        operands = f" k_scale(%ks : {scale}) v_scale(%vs : {scale})"
    name = (f"kv{kv_heads}_d{d}_p{page}_{dtype}_{layout}"
            + (f"_{kv_dtype}_{kv_scale}" if kv_dtype else ""))
    return (
        f"func.func @append_{name}(%k: {rows}, %v: {rows}, "
        f"%s: memref<?xi64>, %kc: {cache}, %vc: {cache}{args}) {{\n"
        f"  paged_attn.append %k, %v, %s, %kc, %vc{operands} "
        f"{{layout = #paged_attn.kv_layout<{layout}>}} : {rows}, {rows}, "
        f"memref<?xi64>, {cache}, {cache}\n"
        f"  return\n}}\n")


def append_decode_configs():
    """The decodes of test_append_gpu.py's append-then-decode loop (8 query
    heads over 2 KV heads of 128, pages of 16, bf16)."""
    return [Config("bf16", 128, 16, 4, layout, kv_heads=2, kv_dtype=kv,
                   kv_scale=scale)
            for layout in LAYOUTS for kv, scale in APPEND_QUANTS]


def core_configs():
    return [Config(t, d, p, g, l) for t in DTYPES for d in (64, 128, 256)
            for p in PAGES for g in GROUPS for l in LAYOUTS]


def head_dim_configs():
    configs = []
    for ti, dtype in enumerate(DTYPES):
        for di, d in enumerate(head_dims(dtype)):
            for gi, g in enumerate(GROUPS):
                page = PAGES[(gi + di) % len(PAGES)]
                layout = LAYOUTS[(gi + di + ti) % len(LAYOUTS)]
                configs.append(Config(dtype, d, page, g, layout))
            if d in ODD_GROUP_DIMS:
                for gi, g in enumerate(ODD_GROUPS):
                    configs.append(Config(dtype, d, 16, g,
                                          LAYOUTS[(gi + ti) % len(LAYOUTS)]))
    return configs


def variant_configs():
    configs = []
    for ci, combo in enumerate(VARIANT_COMBOS):
        for ti, dtype in enumerate(DTYPES):
            for di, d in enumerate(VARIANT_DIMS):
                for gi, g in enumerate(VARIANT_GROUPS):
                    i = ci + ti + di + gi
                    configs.append(Config(dtype, d, PAGES[i % len(PAGES)], g,
                                          LAYOUTS[(i + di) % len(LAYOUTS)],
                                          variants=combo))
    return configs


def variant_head_dim_configs():
    """All five variants at every head_dim of each dtype that VARIANT_DIMS
    leaves out: they act on a row's logits and its result, whatever the
    row's length, and this runs every length the verifier accepts."""
    configs = []
    for ti, dtype in enumerate(DTYPES):
        for di, d in enumerate(head_dims(dtype)):
            if d in VARIANT_DIMS:
                continue
            i = ti + di
            configs.append(Config(dtype, d, PAGES[i % len(PAGES)],
                                  VARIANT_GROUPS[i % len(VARIANT_GROUPS)],
                                  LAYOUTS[(i + ti) % len(LAYOUTS)],
                                  variants=tuple(VARIANTS)))
    return configs


# Multi-token decodes (speculative decoding's verification): L new queries
# per sequence, causal among themselves, with and without a tree mask. L = 1
# with a mask still reads it; 3, 5 and 7 leave the last CTA of a KV head's
# queries partly padding; 16 is the op's bound. Each L meets dtypes, head
# dims (256 on CUDA cores), groups (MHA to 8, rows past one mma block),
# pages and layouts rotating, and the variants.
MULTI_TOKEN_LENS = [1, 2, 3, 4, 5, 7, 8, 16]
MULTI_TOKEN_SHAPES = [("bf16", 128, 4), ("f16", 64, 1), ("bf16", 256, 8),
                      ("f32", 128, 4), ("f16", 80, 8), ("bf16", 64, 16)]
MULTI_TOKEN_VARIANTS = [(), ("tree",), ("lse", "tree"), ("win", "sinks", "lse"),
                        ("cap", "alibi", "tree"),
                        ("win", "cap", "alibi", "sinks", "lse", "tree")]


def multi_token_configs():
    return multi_token_shape_configs() + multi_token_head_dim_configs()


def multi_token_shape_configs():
    configs = []
    for li, l in enumerate(MULTI_TOKEN_LENS):
        for si, (dtype, d, g) in enumerate(MULTI_TOKEN_SHAPES):
            i = li + si
            combo = MULTI_TOKEN_VARIANTS[i % len(MULTI_TOKEN_VARIANTS)]
            if l == 1 and "tree" not in combo:
                combo = combo + ("tree",)
            configs.append(Config(dtype, d, PAGES[i % len(PAGES)], g,
                                  LAYOUTS[(i + li) % len(LAYOUTS)],
                                  variants=combo, query_len=l))
    return configs


def multi_token_head_dim_configs():
    """Every L the op accepts and every head_dim of each dtype that
    MULTI_TOKEN_SHAPES leaves out, each with all the variants and a tree
    mask (or none, alternating), groups, pages and layouts rotating: the
    rows and masks act on a row's logits and result whatever its length."""
    configs = []
    for l in range(1, 17):
        if l not in MULTI_TOKEN_LENS:
            configs.append(Config("bf16", 128, PAGES[l % len(PAGES)], 4,
                                  LAYOUTS[l % len(LAYOUTS)],
                                  variants=("tree",), query_len=l))
    shape_dims = {(t, d) for t, d, _ in MULTI_TOKEN_SHAPES}
    i = 0
    for ti, dtype in enumerate(DTYPES):
        for d in head_dims(dtype):
            if (dtype, d) in shape_dims:
                continue
            i += 1
            combo = tuple(VARIANTS) + (("tree",) if i % 2 else ())
            l = 1 + i % 16
            if l == 1 and "tree" not in combo:
                combo += ("tree",)
            configs.append(Config(dtype, d, PAGES[i % len(PAGES)],
                                  VARIANT_GROUPS[i % len(VARIANT_GROUPS)],
                                  LAYOUTS[(i + ti) % len(LAYOUTS)],
                                  variants=combo, query_len=l))
    return configs


# The multi-token configs python/tests/test_multi_token_gpu.py and the
# multi-token bench run (on the auto set, as the Python tests do).
PYTHON_MULTI_TOKEN_SHAPES = [("bf16", 128, 16, 4, "nhd", 8),
                             ("f16", 64, 16, 1, "hnd", 4)]


def python_multi_token_configs():
    configs = []
    for dtype, d, page, g, layout, kv in PYTHON_MULTI_TOKEN_SHAPES:
        def add(l, combo):
            configs.append(Config(dtype, d, page, g, layout, kv_heads=kv,
                                  variants=combo, query_len=l))
        for l in (1, 2, 3, 4, 5, 8, 16):
            add(l, ("tree",))
            if l != 1:
                add(l, ())
        for l in (2, 4, 7):
            for combo in (("lse",), ("win", "sinks", "lse"), ("cap", "alibi"),
                          tuple(VARIANTS)):
                add(l, combo + ("tree",))
        add(4, ("lse", "tree"))
        add(4, ("lse",))  # the argument-error test's lse of a bad shape
        add(1, ())  # a rank-4 q of one query: the single-token kernels
    # The bench: 32/8, D=128, bf16, page 16, L = 2, 4, 8 (and 1).
    for l in (2, 4, 8):
        configs.append(Config("bf16", 128, 16, 4, "nhd", kv_heads=8,
                              query_len=l))
    return configs


def fp8_configs():
    """Quantised caches: each format and scale on both layouts, the
    head_dims and groups (so both kernels) with q and pages rotating; every
    head_dim of an fp8 row for one format; all the variants once per format
    and scale (the scales come after the variants' parameters)."""
    configs = []
    i = 0
    for kv in KV_DTYPES:
        for scale in KV_SCALES:
            for layout in LAYOUTS:
                for d in FP8_DIMS:
                    for g in FP8_GROUPS:
                        i += 1
                        configs.append(Config(
                            FP8_Q_DTYPES[i % len(FP8_Q_DTYPES)], d,
                            FP8_PAGES[(i // 2) % len(FP8_PAGES)], g, layout,
                            kv_dtype=kv, kv_scale=scale))
    for si, scale in enumerate(KV_SCALES):
        for di, d in enumerate(range(16, MAX_HEAD_DIM + 1, 16)):
            if d in FP8_DIMS:
                continue
            i = si + di
            configs.append(Config(
                FP8_Q_DTYPES[i % len(FP8_Q_DTYPES)], d,
                FP8_PAGES[i % len(FP8_PAGES)],
                FP8_GROUPS[(i + si) % len(FP8_GROUPS)],
                LAYOUTS[(i // 3) % len(LAYOUTS)], kv_dtype="f8e4m3fn",
                kv_scale=scale))
    for ki, kv in enumerate(KV_DTYPES):
        for si, scale in enumerate(KV_SCALES):
            i = ki + si
            configs.append(Config(
                FP8_Q_DTYPES[i % len(FP8_Q_DTYPES)], 128,
                FP8_PAGES[i % len(FP8_PAGES)], 4, LAYOUTS[i % len(LAYOUTS)],
                variants=tuple(VARIANTS), kv_dtype=kv, kv_scale=scale))
    # Multi-token decodes: (query, head) rows, two row groups sharing a
    # ring at L = 8 with a group of 4, the CUDA-core kernel at head_dim 80;
    # per-token scales (each row's keys end apart), tree masks rotating.
    for ki, kv in enumerate(KV_DTYPES):
        for li, (l, d, g, combo) in enumerate(FP8_MULTI_TOKEN):
            configs.append(Config(
                FP8_Q_DTYPES[(ki + li) % len(FP8_Q_DTYPES)], d,
                FP8_PAGES[(ki + li) % len(FP8_PAGES)], g,
                LAYOUTS[(ki + li) % len(LAYOUTS)], variants=combo,
                query_len=l, kv_dtype=kv,
                kv_scale=KV_SCALES[(2 + li) % len(KV_SCALES)]))
    return configs


def kernel_sets():
    """{set: (tensor-cores option, configs)}, names unique within a set."""
    auto = {c.name: c for c in core_configs() + head_dim_configs() +
            REGRESSIONS + PYTHON_TEST_CONFIGS +
            python_multi_token_configs()}
    served = [c for c in head_dim_configs()
              if tensor_cores_serve(c.dtype, c.head_dim)]
    variants = variant_configs() + variant_head_dim_configs()
    # Those the default choice puts on tensor cores (a group of 4 or more).
    variants_served = [c for c in variants
                       if tensor_cores_serve(c.dtype, c.head_dim)
                       and c.group >= 4]
    multi_token = multi_token_configs()
    fp8 = fp8_configs()
    return {
        "auto": ("auto", list(auto.values())),
        "tensor-cores": ("on", served),
        "cuda-cores": ("off", served),
        "variants": ("auto", variants),
        "variants-cuda-cores": ("off", variants_served),
        "multi-token": ("auto", multi_token),
        "multi-token-cuda-cores": (
            "off", [c for c in multi_token
                    if tensor_cores_serve(c.dtype, c.head_dim)]),
        "fp8": ("auto", fp8),
        # Those the default choice puts on tensor cores (a group of 4 or
        # more), as for the variants.
        "fp8-cuda-cores": (
            "off", [c for c in fp8
                    if tensor_cores_serve(c.dtype, c.head_dim, c.kv_dtype)
                    and c.group >= 4]),
        "distributed": ("auto", distributed_configs()),
        "append": ("auto", append_decode_configs()),
    }


# The merges compiled into a set's directory.
SET_MERGES = {"auto": MERGES, "distributed": distributed_merges()}
# The appends compiled into a set's directory.
SET_APPENDS = {"append": append_specs()}
# What compile builds without --set (the build's GPU test kernels).
DEFAULT_SETS = ["auto", "tensor-cores", "cuda-cores", "variants",
                "variants-cuda-cores", "multi-token", "multi-token-cuda-cores",
                "fp8", "fp8-cuda-cores", "append"]


def decode_func(c):
    if c.layout == "nhd":
        cache = f"?x{c.page}x{c.kv_heads}x{c.head_dim}x{c.cache_type}"
    else:
        cache = f"?x{c.kv_heads}x{c.page}x{c.head_dim}x{c.cache_type}"
    per_query = f"?x{c.query_len}x" if c.query_dim else "?x"
    q = f"{per_query}{c.num_heads}x{c.head_dim}x{c.dtype}"
    heads = f"memref<{c.num_heads}xf32>"
    args, operands, outs, attrs = "", "", "", []
    if "alibi" in c.variants:
        args += f", %a: {heads}"
        operands += f" alibi_slopes(%a : {heads})"
    if "sinks" in c.variants:
        args += f", %s: {heads}"
        operands += f" sinks(%s : {heads})"
    if "tree" in c.variants:
        mask = f"memref<?x{c.query_len}x{c.query_len}xi8>"
        args += f", %m: {mask}"
        operands += f" tree_mask(%m : {mask})"
    if c.kv_dtype:
        args += f", %ks: {c.scale_type}, %vs: {c.scale_type}"
        operands += (f" k_scale(%ks : {c.scale_type})"
                     f" v_scale(%vs : {c.scale_type})")
    if "lse" in c.variants:
        lse = f"memref<{per_query}{c.num_heads}xf32>"
        args += f", %l: {lse}"
        outs = f" lse(%l : {lse})"
    # The kernels take the window and the cap as arguments: any value
    # specialises them the same way.
    if "win" in c.variants:
        attrs.append("window = 1 : i64")
    if "cap" in c.variants:
        attrs.append("soft_cap = 1.0 : f32")
    attrs.append(f"layout = #paged_attn.kv_layout<{c.layout}>")
    return (
        f"func.func @decode_{c.name}(%q: memref<{q}>, %k: memref<{cache}>, "
        f"%v: memref<{cache}>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, "
        f"%o: memref<{q}>{args}) {{\n"
        f"  paged_attn.decode %q, %k, %v, %bt, %sl{operands} "
        f"outs(%o : memref<{q}>){outs} "
        f"{{{', '.join(attrs)}}} : memref<{q}>, "
        f"memref<{cache}>, memref<{cache}>, memref<?x?xi32>, memref<?xi32>\n"
        f"  return\n}}\n")


def modules(configs):
    """The configs grouped into one module per (dtype, head_dim): small
    modules are compiled in parallel and loaded by the runtime on first
    use."""
    groups = {}
    for c in configs:
        kv = f"_{c.kv_dtype}" if c.kv_dtype else ""
        groups.setdefault(f"{c.dtype}{kv}_d{c.head_dim}", []).append(c)
    return groups


def compile_module(compiler, chip, option, mlir_path, out_base):
    cmd = [compiler, mlir_path, "--chip", chip, "--tensor-cores", option,
           "-o", out_base]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr}")


def check_kernel_choice(set_name, manifest_path):
    """The forced sets must have got the kernel they ask for."""
    want = {"tensor-cores": True, "cuda-cores": False,
            "variants-cuda-cores": False,
            "multi-token-cuda-cores": False,
            "fp8-cuda-cores": False}.get(set_name)
    if want is None:
        return
    with open(manifest_path) as f:
        manifest = json.load(f)
    for kernel in manifest["kernels"]:
        config = kernel["config"]
        if config["tensor_cores"] != want:
            raise RuntimeError(f"{manifest_path}: {config['name']} uses "
                               f"tensor_cores={config['tensor_cores']}, set "
                               f"{set_name} expects {want}")


def compile_all(args):
    out = os.path.abspath(args.out)
    work = os.path.join(out, "mlir")
    jobs = []
    sets = kernel_sets()
    unknown = [name for name in args.set or () if name not in sets]
    if unknown:
        raise RuntimeError(f"unknown kernel sets {unknown}; they are "
                           f"{list(sets)}")
    for set_name in args.set or DEFAULT_SETS:
        option, configs = sets[set_name]
        set_dir = os.path.join(out, set_name)
        # Rebuilt whole: a stale manifest would add configs to the set.
        shutil.rmtree(set_dir, ignore_errors=True)
        os.makedirs(set_dir)
        os.makedirs(os.path.join(work, set_name), exist_ok=True)
        for module, members in sorted(modules(configs).items()):
            mlir_path = os.path.join(work, set_name, module + ".mlir")
            with open(mlir_path, "w") as f:
                f.write("// Generated by test/gpu/matrix.py.\n")
                f.write("\n".join(decode_func(c) for c in members))
            jobs.append((set_name, option, mlir_path,
                         os.path.join(set_dir, module)))
        if set_name in SET_MERGES:
            mlir_path = os.path.join(work, set_name, "merge.mlir")
            with open(mlir_path, "w") as f:
                f.write("// Generated by test/gpu/matrix.py.\n")
                f.write("\n".join(merge_func(m)
                                   for m in SET_MERGES[set_name]))
            jobs.append((set_name, option, mlir_path,
                         os.path.join(set_dir, "merge")))
        # One module per head_dim: small modules compile in parallel.
        by_dim = {}
        for spec in SET_APPENDS.get(set_name, ()):
            by_dim.setdefault(spec[2], []).append(spec)
        for d, specs in sorted(by_dim.items()):
            module = f"append_d{d}"
            mlir_path = os.path.join(work, set_name, module + ".mlir")
            with open(mlir_path, "w") as f:
                f.write("// Generated by test/gpu/matrix.py.\n")
                f.write("\n".join(append_func(spec) for spec in specs))
            jobs.append((set_name, option, mlir_path,
                         os.path.join(set_dir, module)))
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(compile_module, args.compiler, args.chip,
                               option, mlir_path, base)
                   for _, option, mlir_path, base in jobs]
        for future in futures:
            future.result()
    for set_name, _, _, base in jobs:
        check_kernel_choice(set_name, base + ".json")
    with open(os.path.join(out, "matrix.stamp"), "w") as f:
        f.write(f"{len(jobs)} modules\n")


def assemble(ptxas, arch, ptx_path):
    """ptxas -v output of one module."""
    cmd = [ptxas, f"-arch={arch}", "-v", ptx_path, "-o", os.devnull]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return result.stderr


def assemble_all(args):
    """Assembles every module of the matrix with ptxas and prints, per
    kernel set, how many kernels assembled and which spill registers."""
    for set_name in kernel_sets():
        set_dir = os.path.join(args.kernels, set_name)
        if set_name not in DEFAULT_SETS and not os.path.isdir(set_dir):
            continue  # compiled only when asked for
        modules = sorted(os.path.join(set_dir, f) for f in os.listdir(set_dir)
                         if f.endswith(".ptx"))
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            logs = list(pool.map(
                lambda m: assemble(args.ptxas, args.arch, m), modules))
        kernels, spilling, function = 0, [], None
        for line in "\n".join(logs).splitlines():
            if "Compiling entry function" in line:
                function = line.split("'")[1]
            elif "bytes stack frame" in line:
                kernels += 1
                if not line.strip().startswith("0 bytes stack frame, 0 bytes "
                                                "spill stores, 0 bytes spill "
                                                "loads"):
                    spilling.append(f"{function}: {line.strip()}")
        print(f"{set_name}: {kernels} kernels assembled for {args.arch}, "
              f"{len(spilling)} with a stack frame or spills")
        for entry in spilling:
            print(f"  {entry}")


def list_sets(args):
    for set_name, (option, configs) in kernel_sets().items():
        if args.set and set_name != args.set:
            continue
        print(f"# {set_name} (tensor-cores={option}): {len(configs)} configs")
        for c in configs:
            print(c.name)
        if set_name in SET_MERGES:
            merges = SET_MERGES[set_name]
            print(f"# {set_name}: {len(merges)} merges")
            for m in merges:
                print(merge_func(m).split("(")[0].split("@")[1])
        if set_name in SET_APPENDS:
            appends = SET_APPENDS[set_name]
            print(f"# {set_name}: {len(appends)} appends")
            for spec in appends:
                print(append_func(spec).split("(")[0].split("@")[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("compile")
    comp.add_argument("--compiler", required=True)
    comp.add_argument("--out", required=True)
    comp.add_argument("--chip", default="sm_90")
    comp.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    comp.add_argument("--set", action="append",
                      help="a kernel set to compile (repeatable; default: "
                           "all but distributed)")
    comp.set_defaults(run=compile_all)
    asm = sub.add_parser("ptxas")
    asm.add_argument("--ptxas", required=True)
    asm.add_argument("--arch", required=True)
    asm.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    asm.add_argument("kernels")
    asm.set_defaults(run=assemble_all)
    lst = sub.add_parser("list")
    lst.add_argument("set", nargs="?")
    lst.set_defaults(run=list_sets)
    args = parser.parse_args()
    try:
        args.run(args)
    except RuntimeError as e:
        sys.exit(f"matrix.py: error: {e}")


if __name__ == "__main__":
    main()
