#!/usr/bin/env python3
"""paged_attn.append: writing new K and V rows into paged caches, against
what a copy of the same bytes costs in the same process.

Cases (8 KV heads of 128, pages of 16, nhd; slots from a shuffled page
table):

  prefill   4096 tokens of one sequence (256 consecutive pages of a
            shuffled table)
  decode    one token for each of 256 sequences (random positions)

each with bf16 rows into bf16 caches, into e4m3 caches with one scale for
the cache (read), and with per-token scales (computed and written). Timed
with CUDA events over calls enqueued back to back and replayed from a CUDA
graph (bench_decode.py's time_fn and time_graph_fn), with input sets
rotated beyond L2, against these peers on the same rows and slots:

  torch_copy         k and v copied into buffers of their size: the
                     bandwidth a plain copy of the rows' bytes gets
  torch_index_copy   vLLM-style torch fallback: the caches viewed as
                     [pages * page, kv_heads, head_dim] and index_copy_
                     of the rows at the slots (bf16), or the rows
                     quantised with torch ops first (fp8; per token the
                     scales computed and index_copy_'d too)

Bytes counted for every op: the rows read (k, v), the slots, and the cache
rows (and per-token scales) written. Each PagedAttn result is checked
against the torch peer's (bytes equal).

    bench_append.py --lib LIB --kernels DIR --out bench/results/<card>-<date>/append
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

I64, F8E4M3FN = 4, 6
KV_SCALE = {None: 0, "tensor": 1, "head": 2, "token": 3}
FP8_MAX = 448.0
bd.DTYPES.update({torch.int64: I64, torch.float8_e4m3fn: F8E4M3FN})

HKV, D, PAGE = 8, 128, 16
CASES = [("prefill", 4096), ("decode", 256)]  # (name, T)
KINDS = (None, "tensor", "token")  # bf16 caches, e4m3 per tensor, per token
L2_BYTES = 60 << 20  # above an H100's or H200's L2: inputs rotate past it


class CAppendConfig(ctypes.Structure):
    _fields_ = [("num_kv_heads", ctypes.c_int64), ("head_dim", ctypes.c_int64),
                ("page_size", ctypes.c_int64), ("dtype", ctypes.c_int),
                ("layout", ctypes.c_int), ("kv_scale", ctypes.c_int32),
                ("kv_dtype", ctypes.c_int)]


class CAppendParams(ctypes.Structure):
    _fields_ = [(n, bd.CTensor) for n in ("k", "v", "slot_mapping", "k_cache",
                                          "v_cache", "k_scale", "v_scale")]


class Appenders:
    """The C API's appenders of the runtime at --lib, kernels of --kernels."""

    def __init__(self, pa):
        self.pa, self.lib = pa, pa.lib
        self.appenders = {}

    def get(self, kind):
        if kind not in self.appenders:
            cfg = CAppendConfig(HKV, D, PAGE, bd.BF16, bd.NHD, KV_SCALE[kind],
                                F8E4M3FN if kind else 0)
            app = ctypes.c_void_p()
            self.pa._check(self.lib.paged_attn_appender_create(
                self.pa.library, ctypes.byref(cfg), ctypes.byref(app)))
            self.appenders[kind] = app
        return self.appenders[kind]

    def params(self, inp, caches):
        p = CAppendParams()
        p.k, p.v = bd.c_tensor(inp["k"]), bd.c_tensor(inp["v"])
        p.slot_mapping = bd.c_tensor(inp["slots"])
        p.k_cache, p.v_cache = bd.c_tensor(caches["k"]), bd.c_tensor(caches["v"])
        if "ks" in caches:
            p.k_scale, p.v_scale = (bd.c_tensor(caches["ks"]),
                                    bd.c_tensor(caches["vs"]))
        return p

    def append(self, app, params):
        stream = torch.cuda.current_stream().cuda_stream
        self.pa._check(self.lib.paged_attn_append(app, ctypes.byref(params),
                                                  ctypes.c_void_p(stream)))


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def pool_pages(tokens):
    """Pages of the cache: room for every input set's tokens and more."""
    return max(4096, 4 * math.ceil(tokens / PAGE))


def make_inputs(case, tokens, pages, seed):
    """bf16 rows [T, HKV, D] and int64 slots of a shuffled page table."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    perm = torch.randperm(pages, generator=g)
    if case == "prefill":
        pos = torch.arange(tokens)
        slots = perm[pos // PAGE] * PAGE + pos % PAGE
    else:  # one token at a random position of each sequence's pages
        pos = torch.randint(0, PAGE, (tokens,), generator=g)
        slots = perm[:tokens] * PAGE + pos
    k = torch.randn(tokens, HKV, D, generator=g).to(torch.bfloat16)
    v = torch.randn(tokens, HKV, D, generator=g).to(torch.bfloat16)
    return {"k": k.cuda(), "v": v.cuda(), "slots": slots.cuda()}


def make_caches(kind, pages):
    shape = (pages, PAGE, HKV, D)
    dtype = torch.float8_e4m3fn if kind else torch.bfloat16
    caches = {"k": torch.zeros(shape, dtype=dtype, device="cuda"),
              "v": torch.zeros(shape, dtype=dtype, device="cuda")}
    if kind == "tensor":
        caches["ks"] = torch.tensor(4 / FP8_MAX, device="cuda")
        caches["vs"] = torch.tensor(3 / FP8_MAX, device="cuda")
    elif kind == "token":
        caches["ks"] = torch.ones(shape[:3], device="cuda")
        caches["vs"] = torch.ones(shape[:3], device="cuda")
    return caches


def bytes_moved(tokens, kind):
    rows = tokens * HKV * D
    written = 2 * rows * (1 if kind else 2)
    scales = 2 * 4 * tokens * HKV if kind == "token" else 0
    return 2 * rows * 2 + 8 * tokens + written + scales


# ---------------------------------------------------------------------------
# The torch peers
# ---------------------------------------------------------------------------


def torch_index_copy(inp, caches, kind):
    """vLLM's torch-only path: quantise with torch ops where the caches are
    fp8, then index_copy_ the rows (and per-token scales) at the slots."""
    slots = inp["slots"]
    for name, sname in (("k", "ks"), ("v", "vs")):
        rows, cache = inp[name], caches[name]
        flat = cache.view(-1, HKV, D)
        if kind is None:
            flat.index_copy_(0, slots, rows)
            continue
        x = rows.float()
        if kind == "token":
            # A tensor divisor: torch divides by a Python number as a
            # product with its reciprocal, which rounds differently.
            fmax = x.new_full((), FP8_MAX)
            s = (x.abs().amax(dim=-1) / fmax).clamp_min(2.0 ** -126)
            codes = (x * (1.0 / s)[..., None]).clamp(-FP8_MAX, FP8_MAX)
            caches[sname].view(-1, HKV).index_copy_(0, slots, s)
        else:
            codes = (x * (1.0 / caches[sname])).clamp(-FP8_MAX, FP8_MAX)
        # torch has no index_copy_ of fp8: the codes move as bytes.
        flat.view(torch.uint8).index_copy_(
            0, slots, codes.to(cache.dtype).view(torch.uint8))


def same_bytes(a, b):
    # reshape: a 0-d tensor (a per-tensor scale) has no bytes view.
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8),
                       b.contiguous().reshape(-1).view(torch.uint8))


# ---------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------


def time_both(result, name, fns, args):
    result["us"][name] = bd.time_fn(fns, args.iters, 10) * 1e3
    bd.time_graph(result, name, fns, args)


def run_case(apps, case, tokens, args):
    pages = pool_pages(tokens)
    set_bytes = 2 * tokens * HKV * D * 2
    sets = max(2, math.ceil(2 * L2_BYTES / set_bytes))
    inputs = [make_inputs(case, tokens, pages, 100 + i) for i in range(sets)]
    result = {"case": f"{case} T={tokens} Hkv={HKV} D={D} page={PAGE}",
              "us": {}, "us_graph": {}, "gbps": {}, "checked": {}}

    # The copy peer: the rows' bytes, read and written once.
    dsts = [{n: torch.empty_like(i[n]) for n in ("k", "v")} for i in inputs]
    fns = [lambda i=i, o=o: (o["k"].copy_(i["k"]), o["v"].copy_(i["v"]))
           for i, o in zip(inputs, dsts)]
    time_both(result, "torch_copy", fns, args)
    copy_bytes = 2 * set_bytes

    for kind in KINDS:
        label = {None: "bf16", "tensor": "fp8_tensor", "token": "fp8_token"}[kind]
        ours, peer = make_caches(kind, pages), make_caches(kind, pages)
        app = apps.get(kind)
        params = [apps.params(i, ours) for i in inputs]
        fns = [lambda p=p: apps.append(app, p) for p in params]
        # One call on each side, then the bytes must agree.
        fns[0]()
        torch_index_copy(inputs[0], peer, kind)
        torch.cuda.synchronize()
        result["checked"][label] = all(
            same_bytes(ours[n], peer[n]) for n in ours)
        time_both(result, f"paged_attn_{label}", fns, args)
        peer_fns = [lambda i=i: torch_index_copy(i, peer, kind)
                    for i in inputs]
        time_both(result, f"torch_index_copy_{label}", peer_fns, args)

    for name in result["us"]:
        best = min(result["us"][name], result["us_graph"].get(name, math.inf))
        kind = ("token" if name.endswith("token") else
                "tensor" if name.endswith("tensor") else None)
        moved = copy_bytes if name == "torch_copy" else bytes_moved(tokens,
                                                                    kind)
        result["gbps"][name] = moved / (best * 1e-6) / 1e9
    copy = result["gbps"]["torch_copy"]
    result["copy_fraction"] = {n: g / copy for n, g in result["gbps"].items()}
    return result


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

COLUMNS = ["paged_attn_bf16", "torch_index_copy_bf16", "paged_attn_fp8_tensor",
           "torch_index_copy_fp8_tensor", "paged_attn_fp8_token",
           "torch_index_copy_fp8_token", "torch_copy"]


def markdown(results, meta):
    lines = [f"# paged_attn.append ({meta['card']}, {meta['date']})", "",
             "Times in us: events over back-to-back calls / CUDA graph "
             "replay; in brackets GB/s of the bytes each op moves (rows "
             "read, slots, cache rows and scales written) and its fraction "
             "of torch_copy's GB/s in the same process.", "",
             "| case | " + " | ".join(COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for r in results:
        cells = []
        for n in COLUMNS:
            if n not in r["us"]:
                cells.append("-")
                continue
            graph = r["us_graph"].get(n)
            t = f"{r['us'][n]:.1f} / " + (f"{graph:.1f}" if graph else "-")
            cells.append(f"{t} ({r['gbps'][n]:.0f} GB/s, "
                         f"{r['copy_fraction'][n]:.0%})")
        lines.append(f"| {r['case']} | " + " | ".join(cells) + " |")
    lines += ["", "Bytes equal to the torch peer's after one call: " +
              "; ".join(f"{r['case']}: " + ", ".join(
                  f"{k} {'yes' if v else 'NO'}" for k, v in r["checked"].items())
                  for r in results)]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", required=True,
                    help="libpaged_attn_runtime.so")
    ap.add_argument("--kernels", required=True,
                    help="compiled kernels holding the appends")
    ap.add_argument("--out", required=True)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--no-graph", dest="graph", action="store_false")
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    pa = bd.PagedAttn(args.lib, args.kernels)
    apps = Appenders(pa)
    results = []
    for case, tokens in CASES:
        if args.filter not in case:
            continue
        r = run_case(apps, case, tokens, args)
        print(json.dumps(r), flush=True)
        results.append(r)
    os.makedirs(args.out, exist_ok=True)
    meta = {"card": torch.cuda.get_device_name(0),
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    text = markdown(results, meta)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
