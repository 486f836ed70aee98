#!/usr/bin/env python3
"""Multi-token decode (speculative decoding's verification) against
single-token decode, in one process on the same data (bench/NOTES.md 27).

    PAGED_ATTN_KERNEL_DIR=... python3 bench/bench_multi_token.py [--out DIR]

32 x 4k and 64 x 8k (32/8 heads, head_dim 128, bf16, page 16, shuffled
pages). For L = 1, 2, 4, 8 new queries per sequence: PagedAttn's one
multi-token call; L separate single-token calls (what a caller without the
op would do: the KV read L times); and FlashInfer's multi-token decode
(the tensor-core path with q_len_per_req = L, ../shared/peers/flashinfer
when carried in .peers/). The issue's targets: L = 2, 4, 8 at most 1.1x,
1.15x, 1.3x of L = 1. Each time is the median of 7 replays of a CUDA graph
of 20 calls (µs per call); the KV is several times the L2, so every call
reads it from memory.
"""
import argparse
import json
import os

import torch

import paged_attn

import bench_variants
from bench_variants import D, HQ, time_graph

LENS = [1, 2, 4, 8]


def make_case(batch, seq_len, seed=0):
    """bench_variants' case with q of [batch, max(LENS), heads, dim]."""
    _, k, v, bt, sl = bench_variants.make_case(batch, seq_len, seed)
    q = torch.randn(batch, max(LENS), HQ, D, dtype=torch.bfloat16,
                    device="cuda")
    return q, k, v, bt, sl


def with_queries(case, l):
    """`case` with its first l queries: q [batch, l, heads, dim], or [batch,
    heads, dim] for l = 1."""
    q, k, v, bt, sl = case
    q = q[:, :l].contiguous() if l > 1 else q[:, 0].contiguous()
    return q, k, v, bt, sl


def multi_token_fn(case, l):
    plan = paged_attn.DecodePlan(*with_queries(case, l))
    return plan.run


def flashinfer_fn(case, l):
    return bench_variants.flashinfer_fn(with_queries(case, l), query_len=l)


def separate_calls_fn(case, l):
    """L single-token calls, query i over the keys before seq_len - L + 1 +
    i: the same work with the KV read once per query."""
    q, k, v, bt, sl = case
    plans = []
    for i in range(l):
        qi = q[:, i].contiguous()
        plans.append(paged_attn.DecodePlan(qi, k, v, bt, sl - (l - 1 - i)))

    def run():
        for plan in plans:
            plan.run()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    rows = []
    for batch, seq_len in [(32, 4096), (64, 8192)]:
        case = make_case(batch, seq_len)
        shape = f"{batch}x{seq_len // 1024}k"
        base = {}
        for l in LENS:
            for name, make in [("paged_attn", multi_token_fn),
                               ("paged_attn, L calls", separate_calls_fn),
                               ("FlashInfer", flashinfer_fn)]:
                if name == "paged_attn, L calls" and l == 1:
                    continue
                fn = make(case, l)
                if fn is None:
                    continue
                us = time_graph(fn)
                base.setdefault(name, us)
                # L single-token calls against PagedAttn's one at L = 1.
                l1 = base["paged_attn" if "L calls" in name else name]
                rows.append(dict(case=shape, L=l, impl=name, us=us,
                                 vs_l1=us / l1))
        del case
        torch.cuda.empty_cache()

    print(f"# {card}; torch {torch.__version__}; 32/8 heads, D=128, bf16, "
          f"page 16; µs per call; vs_l1: against the same implementation's "
          f"L = 1")
    print(f"{'case':8} {'L':>2} {'impl':22} {'us':>9} {'vs_l1':>7}")
    for r in rows:
        print(f"{r['case']:8} {r['L']:2} {r['impl']:22} {r['us']:9.1f} "
              f"{r['vs_l1']:7.3f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "multi_token.json"), "w") as f:
            json.dump({"card": card, "torch": torch.__version__,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
