"""profile_vs_peers.py - one launch each of PagedAttn, FlashInfer and cuDNN
on the same decode problem, for Nsight Compute to compare side by side.

A probe, not part of the library. Each case builds one input set the way
bench_decode.py does (shuffled pages in an arena, the same KV laid out
contiguously for cuDNN), warms every kernel up, then runs each once inside
an NVTX range named `<who>_<B>x<S>` (pa, fi, cudnn) within an outer range
`profiled`, so that ncu sees only those launches:

  ncu --nvtx --nvtx-include "profiled/" --clock-control none \
      --section SpeedOfLight --section MemoryWorkloadAnalysis ... \
      python3 bench/probes/profile_vs_peers.py --lib ... --kernels ...

It also prints each side's time as bench_decode.py takes it (time_fn).
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bench_decode as bd  # noqa: E402

CASES = {
    "32x4096": bd.Case(32, 4096),
    "64x8192": bd.Case(64, 8192),
    "256x512": bd.Case(256, 512),
    "8x8192": bd.Case(8, 8192),
    "28-4": bd.Case(32, 4096, hq=28, hkv=4),
}


def runs_for(pa, fi, c):
    """(who, fn) for each side that can run case `c`."""
    inp = bd.make_inputs(c, 0)
    dec = pa.decoder(c.hq, c.hkv, c.d, c.page, c.dtype, bd.NHD)
    scale = 1.0 / math.sqrt(c.d)
    runs = [("pa", bd.paged_attn_runs(pa, dec, c, [inp])[0])]
    if fi is not None and bd.flashinfer_rejects(c, [inp]) is None:
        runs.append(("fi", bd.flashinfer_runs(fi, c, [inp], True, scale)[0][0]))
    q, k, v = bd.contiguous_copies(c, [inp])[0]

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            F.scaled_dot_product_attention(q, k, v, scale=scale,
                                           enable_gqa=True)
    runs.append(("cudnn", cudnn))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--cases", default="32x4096,64x8192,256x512",
                    help=f"comma-separated, of {', '.join(CASES)}")
    args = ap.parse_args()
    pa = bd.PagedAttn(args.lib, args.kernels)
    fi, note = bd.load_flashinfer()
    if fi is None:
        print(f"FlashInfer peer {note}", flush=True)
    chosen = [CASES[name] for name in args.cases.split(",")]
    bd.PAGED_ARENA = bd.Arena(bd.arena_bytes(chosen))
    bd.CONTIGUOUS_ARENA = bd.Arena(bd.arena_bytes(chosen))
    for name in args.cases.split(","):
        c = CASES[name]
        bd.PAGED_ARENA.reset()
        bd.CONTIGUOUS_ARENA.reset()
        runs = runs_for(pa, fi, c)
        for who, fn in runs:
            us = bd.time_fn([fn], iters=100, warmup=10) * 1e3
            print(f"{who}_{name}: {us:.1f} us", flush=True)
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_push("profiled")
        for who, fn in runs:
            torch.cuda.nvtx.range_push(f"{who}_{name}")
            fn()
            torch.cuda.nvtx.range_pop()
        torch.cuda.nvtx.range_pop()
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
