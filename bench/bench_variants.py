#!/usr/bin/env python3
"""Decode with each attention variant against plain decode, in one process
on the same data (bench/NOTES.md 21).

    PAGED_ATTN_KERNEL_DIR=... python3 bench/bench_variants.py [--out DIR]

Rows (32/8 heads, head_dim 128, bf16, page 16, shuffled pages):
  32 x 4k: plain, soft-cap, ALiBi, sinks, log-sum-exp, all five (window
  4096); the target is each within 3% of plain.
  32 x 32k with window 4096 against plain 32 x 4096: the window reads only
  its pages; the target is within 1.1x. Window 4090: the same with the
  window's first key in the middle of a tile of 16 tokens.
Each time is the median of 7 replays of a CUDA graph of 20 decodes (µs per
decode). FlashInfer's tensor-core decode (../shared/peers/flashinfer, when
carried in .peers/) times the plain rows as a reference point.
"""
import argparse
import json
import math
import os
import statistics
import sys

import torch

import paged_attn

HQ, HKV, D, PAGE = 32, 8, 128, 16


def make_case(batch, seq_len, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    pages_per_seq = math.ceil(seq_len / PAGE)
    pages = batch * pages_per_seq
    perm = torch.randperm(pages, generator=g).to(torch.int32)
    bt = perm.view(batch, pages_per_seq).cuda()
    k = torch.randn(pages, PAGE, HKV, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn(pages, PAGE, HKV, D, dtype=torch.bfloat16, device="cuda")
    q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
    sl = torch.full((batch,), seq_len, dtype=torch.int32, device="cuda")
    return q, k, v, bt, sl


def time_graph(fn, launches=20, replays=7):
    """Median µs per call of `fn` replayed in a CUDA graph."""
    stream = torch.cuda.Stream()
    # The side stream starts after the inputs' initialisation.
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for _ in range(launches):
            fn()
    times = []
    for _ in range(replays):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / launches)
    return statistics.median(times)


def variant_kwargs(name):
    slopes = torch.tensor([2 ** (-8 * (h + 1) / HQ) for h in range(HQ)],
                          dtype=torch.float32, device="cuda")
    sinks = torch.linspace(-1, 5, HQ, dtype=torch.float32, device="cuda")
    return {
        "plain": {},
        "soft-cap": {"soft_cap": 50.0},
        "alibi": {"alibi_slopes": slopes},
        "sinks": {"sinks": sinks},
        "lse": {"return_lse": True},
        "all five": {"window": 4096, "soft_cap": 50.0, "alibi_slopes": slopes,
                     "sinks": sinks, "return_lse": True},
        "window 4096": {"window": 4096},
        "window 4090": {"window": 4090},
    }[name]


def paged_attn_fn(case, name):
    q, k, v, bt, sl = case
    plan = paged_attn.DecodePlan(q, k, v, bt, sl, **variant_kwargs(name))
    return plan.run


def load_fi_peer():
    """FlashInfer's peer module (.peers/flashinfer), built; None (and why,
    printed) where it is not carried or does not build."""
    try:
        sys.path.insert(0, ".peers/flashinfer")
        import fi_peer
        fi_peer.build()
        return fi_peer
    except Exception as e:  # noqa: BLE001 - the peer is optional
        print(f"# FlashInfer peer not available: {e}")
        return None


def flashinfer_fn(case, query_len=1):
    """FlashInfer's tensor-core decode of `case` (its q [batch, L, heads,
    dim] for query_len L > 1: the multi-token decode); None without the
    peer."""
    fi_peer = load_fi_peer()
    if fi_peer is None:
        return None
    q, k, v, bt, sl = case
    out = torch.empty_like(q)
    plan = fi_peer.plan(bt, sl, HQ, HKV, D, PAGE, tensor_cores=True,
                        q_len_per_req=query_len)
    return lambda: plan.run(q, k, v, out, 1 / math.sqrt(D))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    rows = []
    short = make_case(32, 4096)
    plain_us = time_graph(paged_attn_fn(short, "plain"))
    rows.append(("32x4k", "plain", plain_us, 1.0))
    for name in ["soft-cap", "alibi", "sinks", "lse", "all five"]:
        us = time_graph(paged_attn_fn(short, name))
        rows.append(("32x4k", name, us, us / plain_us))
    fi = flashinfer_fn(short)
    if fi:
        us = time_graph(fi)
        rows.append(("32x4k", "FlashInfer (plain)", us, us / plain_us))
    del short
    torch.cuda.empty_cache()
    long = make_case(32, 32768, seed=1)
    us = time_graph(paged_attn_fn(long, "window 4096"))
    rows.append(("32x32k", "window 4096", us, us / plain_us))
    # The window's first key (28678) in the middle of a 16-token tile.
    us = time_graph(paged_attn_fn(long, "window 4090"))
    rows.append(("32x32k", "window 4090", us, us / plain_us))
    long_plain = time_graph(paged_attn_fn(long, "plain"))
    rows.append(("32x32k", "plain (no window)", long_plain,
                 long_plain / plain_us))

    print(f"# {card}; torch {torch.__version__}; 32/8 heads, D=128, bf16, "
          f"page 16; µs per decode; ratio to plain 32x4k")
    print(f"{'case':8} {'variant':20} {'us':>9} {'ratio':>7}")
    for case, name, us, ratio in rows:
        print(f"{case:8} {name:20} {us:9.1f} {ratio:7.3f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "variants.json"), "w") as f:
            json.dump({"card": card, "torch": torch.__version__,
                       "rows": [dict(case=c, variant=n, us=u, ratio=r)
                                for c, n, u, r in rows]}, f, indent=2)


if __name__ == "__main__":
    main()
