#!/usr/bin/env python3
"""fp8 KV caches: PagedAttn's fp8 decode against its bf16 decode and
FlashInfer's fp8 decode, in one process, on the same values.

Each case draws one bf16 paged cache (shuffled block table, as
bench_decode.py does) and quantises it to e4m3 three ways: one scale for
the cache, one per KV head, one per token and KV head (amax / 448 of each,
the scale caches read through the page table). Timed, eager and replayed
from a CUDA graph, with input sets rotated beyond L2 (bench_decode.py's
timing):

  paged_attn_bf16       the bf16 cache
  paged_attn_fp8_tensor the e4m3 cache, per-tensor scales
  paged_attn_fp8_head   per-KV-head scales
  paged_attn_fp8_token  per-token scales
  flashinfer_fp8        FlashInfer's tensor-core decode on the e4m3 cache
                        with its per-tensor scales (its only granularity)
  flashinfer_bf16       FlashInfer's tensor-core decode on the bf16 cache

Each output is checked against a float64 reference computed on the
dequantised values of its own cache (the bf16 ones on the bf16 values).
Bandwidth counts the bytes each op must read: fp8 caches at one byte an
element (plus the scales it reads), bf16 at two.

    bench_fp8.py --lib LIB --kernels DIR --out bench/results/<card>-<date>/fp8
"""
import argparse
import ctypes
import datetime
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_decode as bd  # noqa: E402

F8E4M3FN, F8E5M2 = 6, 7
KV_SCALE = {"tensor": 1, "head": 2, "token": 3}
FP8_MAX = 448.0
bd.DTYPES.update({torch.float8_e4m3fn: F8E4M3FN, torch.float8_e5m2: F8E5M2})

CASES = [  # batch, seq_len, hq, hkv
    (32, 4096, 32, 8), (64, 8192, 32, 8), (1, 131072, 32, 8),
    (32, 4096, 64, 8), (64, 8192, 64, 8), (1, 131072, 64, 8),
]
D, PAGE = 128, 16


def decoder(pa, hq, hkv, kv_scale, num_warps=4):
    """PagedAttn's decoder of the bf16 config or its e4m3 one."""
    num_warps = num_warps if kv_scale else 4
    key = ("fp8", hq, hkv, kv_scale)
    if key not in pa.decoders:
        cfg = bd.CConfig(hq, hkv, D, PAGE, bd.BF16, bd.NHD, num_warps, 0, 1,
                         KV_SCALE[kv_scale] if kv_scale else 0,
                         F8E4M3FN if kv_scale else 0)
        dec = ctypes.c_void_p()
        pa._check(pa.lib.paged_attn_decoder_create(
            pa.library, ctypes.byref(cfg), ctypes.byref(dec)))
        pa.decoders[key] = dec
    return pa.decoders[key]


def quantise(x, kind):
    """x [pages, page, hkv, d] as e4m3 codes and f32 scales of `kind`."""
    xf = x.float()
    if kind == "tensor":
        amax = xf.abs().amax()
    elif kind == "head":
        amax = xf.abs().amax(dim=(0, 1, 3))
    else:
        amax = xf.abs().amax(dim=3)
    scale = (amax / FP8_MAX).clamp(min=1e-12)
    s = scale if kind == "tensor" else (
        scale[None, None, :, None] if kind == "head" else scale[..., None])
    codes = (xf / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return codes, scale.to(torch.float32).contiguous()


def dequantise(codes, scale, kind):
    s = scale if kind == "tensor" else (
        scale[None, None, :, None] if kind == "head" else scale[..., None])
    return codes.float() * s


def make_set(c, seed, kinds):
    inp = bd.make_inputs(c, seed)
    for kind in kinds:
        inp[kind] = {n: quantise(inp[n], kind) for n in ("k", "v")}
    return inp


def reference(inp, k, v, scale):
    return bd.reference(dict(inp, k=k, v=v), scale)


def bytes_read(c, inp, kind):
    """What the op must read: the caches of the held tokens at their
    element size, their scales, q, out and the page-table entries."""
    tokens = int(inp["lens"].sum())
    pages = sum(math.ceil(int(n) / c.page) for n in inp["lens"])
    el = 1 if kind else 2
    scales = {None: 0, "tensor": 8, "head": 8 * c.hkv,
              "token": 8 * tokens * c.hkv}[kind]
    return (2 * tokens * c.hkv * c.d * el + scales
            + 2 * c.batch * c.hq * c.d * 2 + 4 * pages + 4 * c.batch)


def run_case(pa, fi, c, args, ceiling):
    kinds = tuple(args.kinds.split(","))
    sets = bd.input_sets(2 * c.batch * c.seq_len * c.hkv * c.d)
    inputs = [make_set(c, 1000 + i, kinds) for i in range(sets)]
    scale = 1.0 / math.sqrt(c.d)
    result = {"case": f"B={c.batch} S={c.seq_len} Hq/Hkv={c.hq}/{c.hkv} "
                      f"D={c.d} page={c.page}",
              "us": {}, "us_graph": {}, "rel_error": {}, "gbps": {}}
    first = inputs[0]
    refs = {None: reference(first, first["k"], first["v"], scale)}
    for kind in kinds:
        (kq, ks), (vq, vs) = first[kind]["k"], first[kind]["v"]
        refs[kind] = reference(first, dequantise(kq, ks, kind),
                               dequantise(vq, vs, kind), scale)

    for kind in (None,) + kinds:
        name = f"paged_attn_fp8_{kind}" if kind else "paged_attn_bf16"
        dec = decoder(pa, c.hq, c.hkv, kind, args.num_warps)
        ws = torch.empty(pa.workspace_bytes(dec, c.batch, 2 * c.seq_len),
                         dtype=torch.uint8, device="cuda")
        fns, outs = [], []
        for inp in inputs:
            out = torch.empty_like(inp["q"])
            k, v = (inp["k"], inp["v"]) if not kind else (
                inp[kind]["k"][0], inp[kind]["v"][0])
            p = pa.params(inp["q"], k, v, inp["bt"], inp["sl"], out,
                          inp["max_len"], ws)
            if kind:
                p.k_scale = bd.c_tensor(inp[kind]["k"][1])
                p.v_scale = bd.c_tensor(inp[kind]["v"][1])
            fns.append(lambda p=p: pa.decode(dec, p))
            outs.append(out)
        fns[0]()
        torch.cuda.synchronize()
        result["rel_error"][name] = bd.rel_error(outs[0], refs[kind])
        result["us"][name] = bd.time_fn(fns, args.iters, 10) * 1e3
        bd.time_graph(result, name, fns, args)
        best = min(t for t in (result["us"][name],
                               result["us_graph"].get(name, math.inf)))
        result["gbps"][name] = bytes_read(c, first, kind) / (best * 1e-6) / 1e9

    if fi is not None:
        for name, kv in (("flashinfer_bf16", None),
                         ("flashinfer_fp8", torch.float8_e4m3fn)):
            try:
                fns = []
                for inp in inputs:
                    plan = fi.plan(inp["bt"], inp["sl"], c.hq, c.hkv, c.d,
                                   c.page, tensor_cores=True,
                                   **({"kv_dtype": kv} if kv else {}))
                    out = torch.empty_like(inp["q"])
                    if kv:
                        (kq, ks), (vq, vs) = inp["tensor"]["k"], inp["tensor"]["v"]
                        fns.append(lambda plan=plan, inp=inp, out=out, kq=kq,
                                   vq=vq, ks=float(ks), vs=float(vs):
                                   plan.run(inp["q"], kq, vq, out, scale,
                                            k_scale=ks, v_scale=vs))
                    else:
                        fns.append(lambda plan=plan, inp=inp, out=out: plan.run(
                            inp["q"], inp["k"], inp["v"], out, scale))
                    if len(fns) == 1:
                        first_out = out
                fns[0]()
                torch.cuda.synchronize()
                result["rel_error"][name] = bd.rel_error(
                    first_out, refs["tensor" if kv else None])
                result["us"][name] = bd.time_fn(fns, args.iters, 10) * 1e3
                bd.time_graph(result, name, fns, args)
                best = min(result["us"][name],
                           result["us_graph"].get(name, math.inf))
                result["gbps"][name] = bytes_read(
                    c, first, "tensor" if kv else None) / (best * 1e-6) / 1e9
            except Exception as e:  # noqa: BLE001 - reported, the rest goes on
                bd.skip(result, name, bd.reason(e))
    result["ceiling_fraction"] = {
        n: g / (ceiling * 1e3) for n, g in result["gbps"].items()}
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--no-graph", dest="graph", action="store_false")
    ap.add_argument("--no-flashinfer", action="store_true")
    ap.add_argument("--filter", default="")
    ap.add_argument("--kinds", default="tensor,head,token",
                    help="the fp8 scales' granularities to time")
    ap.add_argument("--num-warps", type=int, default=4,
                    help="the fp8 kernels' warps (their config's)")
    args = ap.parse_args()
    pa = bd.PagedAttn(args.lib, args.kernels)
    fi, fi_note = (None, "disabled") if args.no_flashinfer else bd.load_flashinfer()
    ceiling, how = bd.read_ceiling_tbps()
    cases = [bd.Case(b, s, hq, hkv, D, PAGE) for b, s, hq, hkv in CASES]
    cases = [c for c in cases if args.filter in c.name()]
    bd.PAGED_ARENA = bd.Arena(bd.arena_bytes(cases))
    results = []
    for c in cases:
        bd.PAGED_ARENA.reset()
        r = run_case(pa, fi, c, args, ceiling)
        print(json.dumps(r), flush=True)
        results.append(r)
    os.makedirs(args.out, exist_ok=True)
    meta = {"card": torch.cuda.get_device_name(0),
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__, "flashinfer": fi_note,
            "read_ceiling_tbps": ceiling, "read_ceiling_how": how}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    cols = ["paged_attn_bf16", "paged_attn_fp8_tensor", "paged_attn_fp8_head",
            "paged_attn_fp8_token", "flashinfer_fp8", "flashinfer_bf16"]
    lines = [f"# fp8 KV caches ({meta['card']}, {meta['date']})", "",
             f"Read ceiling {ceiling:.2f} TB/s ({how}); FlashInfer: {fi_note}.",
             "Times in us (graph replay where it ran, else eager); in brackets "
             "the fraction of the read ceiling for the bytes the op reads.", "",
             "| case | " + " | ".join(cols) + " | bf16 / fp8 tensor |",
             "|---" * (len(cols) + 2) + "|"]
    for r in results:
        def t(n):
            return r["us_graph"].get(n, r["us"].get(n))
        cells = [f"{t(n):.1f} ({r['ceiling_fraction'][n]:.0%})" if t(n) else "-"
                 for n in cols]
        ratio = (t("paged_attn_bf16") / t("paged_attn_fp8_tensor")
                 if t("paged_attn_fp8_tensor") else float("nan"))
        lines.append(f"| {r['case']} | " + " | ".join(cells) +
                     f" | {ratio:.2f}x |")
    lines += ["", "Relative errors against float64 on each op's own values:",
              ""] + [f"- {r['case']}: " + ", ".join(
                  f"{n} {e:.1e}" for n, e in r["rel_error"].items())
                  for r in results]
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
