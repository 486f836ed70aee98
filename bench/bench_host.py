#!/usr/bin/env python3
"""Host time of paged_attn's Python calls, µs per call (bench/NOTES.md 25).

    PAGED_ATTN_KERNEL_DIR=... python3 bench/bench_host.py [--out DIR]
        [--batches 7] [--calls 2000]

The problem is tiny (batch 1, 16 tokens, 32 query and 8 KV heads,
head_dim 128, bf16: python/tests/test_gpu.py::test_host_overhead's), so
that its kernels take less time than a call's host side and the GPU keeps
up: each row is host time, the median over --batches batches of --calls
calls, timed from the first call of a batch to its last (the stream is
drained between batches, not inside one). The header gives the kernels'
own time per call (back to back in a CUDA graph): a row close to it was
bound by the GPU, not by the host.

Rows: decode() with out and workspace given (what test_host_overhead
times), with neither (it allocates out, and the workspace where the shape
needs one), with variants (window, sinks and the log-sum-exp: kernels the
GPU suite's auto set has) with and without out, workspace and lse given;
DecodePlan.run(); merge() of two partials with out given and allocating
it; and decode() and merge() through the checked path, which describes
every tensor in Python (every call took it before the torch path,
python/src/torch_calls.cpp; rows left out for a package without it).
Then a batch of 64 such sequences: decode(out=, workspace=) without and
with host_seq_lens (a list, a NumPy array), and DecodePlan.run() with
them (each call plans its split from the lengths).
"""
import argparse
import json
import os
import statistics
import time

import numpy
import torch

import paged_attn
from bench_variants import time_graph

BATCH, TOKENS, HQ, HKV, D, PAGE = 1, 16, 32, 8, 128, 16
VARIANTS = ("window", "sinks", "lse")


def inputs(batch=BATCH):
    """(q, k_cache, v_cache, block_table, seq_lens) of the tiny decode, for
    `batch` sequences of the same page."""
    torch.manual_seed(0)
    q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(4, PAGE, HKV, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    block_table = torch.ones(batch, 1, dtype=torch.int32, device="cuda")
    seq_lens = torch.full((batch,), TOKENS, dtype=torch.int32, device="cuda")
    return q, k, v, block_table, seq_lens


def workspace(q, k, block_table, variants=()):
    n = paged_attn.workspace_size(q, k, block_table, variants=variants)
    return torch.empty(max(256, n), dtype=torch.uint8, device="cuda")


def host_us(fn, batches, calls):
    """Median host µs per call of fn over `batches` batches of `calls`."""
    for _ in range(100):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(times)


def checked_decode_args(q, k, v, block_table, seq_lens, out, ws):
    """decode(q, k, v, block_table, seq_lens, out=out, workspace=ws)'s
    arguments in its order, as the checked path takes them."""
    return (q, k, v, block_table, seq_lens, out, ws, None, "nhd", 0, None,
            False, None, None, None, None, None, False, None)


def rows(batches, calls):
    """[(name, µs per call)] and the kernels' own µs per call."""
    q, k, v, bt, sl = inputs()
    out = torch.empty_like(q)
    ws = workspace(q, k, bt)
    vws = workspace(q, k, bt, VARIANTS)
    sinks = torch.linspace(-1, 5, HQ, dtype=torch.float32, device="cuda")
    lse = torch.empty(BATCH, HQ, dtype=torch.float32, device="cuda")
    window = TOKENS * 8
    partials = torch.randn(2, BATCH, HQ, D, dtype=torch.bfloat16,
                           device="cuda")
    partial_lse = torch.randn(2, BATCH, HQ, dtype=torch.float32, device="cuda")
    plan = paged_attn.DecodePlan(q, k, v, bt, sl, out=out, workspace=ws)
    decode, merge = paged_attn.decode, paged_attn.merge
    calls_to_time = [
        ("decode(out=, workspace=)",
         lambda: decode(q, k, v, bt, sl, out=out, workspace=ws)),
        ("decode()", lambda: decode(q, k, v, bt, sl)),
        ("decode(window=, sinks=, return_lse=True, out=, workspace=, lse=)",
         lambda: decode(q, k, v, bt, sl, window=window, sinks=sinks,
                        return_lse=True, out=out, workspace=vws, lse=lse)),
        ("decode(window=, sinks=, return_lse=True)",
         lambda: decode(q, k, v, bt, sl, window=window, sinks=sinks,
                        return_lse=True)),
        ("DecodePlan.run()", plan.run),
        ("merge(out=) of 2 partials",
         lambda: merge(partials, partial_lse, out=out)),
        ("merge() of 2 partials", lambda: merge(partials, partial_lse)),
    ]
    if hasattr(paged_attn, "_call_checked"):
        checked = checked_decode_args(q, k, v, bt, sl, out, ws)
        checked_merge = (partials, partial_lse, None, False, out, None, None)
        calls_to_time += [
            ("checked path: decode(out=, workspace=)",
             lambda: paged_attn._call_checked(paged_attn._checked_decode,
                                              checked)),
            ("checked path: merge(out=)",
             lambda: paged_attn._call_checked(paged_attn._checked_merge,
                                              checked_merge)),
        ]
    calls_to_time += host_lengths_calls(64)
    timed = [(name, host_us(fn, batches, calls))
             for name, fn in calls_to_time]
    kernels = {
        "decode": time_graph(lambda: decode(q, k, v, bt, sl, out=out,
                                            workspace=ws), launches=50),
        "merge": time_graph(lambda: merge(partials, partial_lse, out=out),
                            launches=50),
    }
    return timed, kernels


def host_lengths_calls(batch):
    """[(name, call)] of decodes of `batch` sequences without and with the
    host's lengths."""
    q, k, v, bt, sl = inputs(batch)
    out = torch.empty_like(q)
    ws = workspace(q, k, bt)
    lengths = [TOKENS] * batch
    array = numpy.array(lengths, dtype=numpy.int32)
    plan = paged_attn.DecodePlan(q, k, v, bt, sl, out=out, workspace=ws)
    decode = paged_attn.decode
    name = f"of {batch} sequences"
    return [
        (f"decode(out=, workspace=) {name}",
         lambda: decode(q, k, v, bt, sl, out=out, workspace=ws)),
        (f"decode(out=, workspace=, host_seq_lens=list) {name}",
         lambda: decode(q, k, v, bt, sl, out=out, workspace=ws,
                        host_seq_lens=lengths)),
        (f"decode(out=, workspace=, host_seq_lens=NumPy array) {name}",
         lambda: decode(q, k, v, bt, sl, out=out, workspace=ws,
                        host_seq_lens=array)),
        (f"DecodePlan.run(host_seq_lens=list) {name}",
         lambda: plan.run(host_seq_lens=lengths)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    timed, kernels = rows(args.batches, args.calls)
    print(f"# {card}; torch {torch.__version__}; batch {BATCH}, {TOKENS} "
          f"tokens, {HQ}/{HKV} heads, D={D}, bf16; host µs per call, median "
          f"of {args.batches} batches of {args.calls} calls; the kernels "
          f"alone: decode {kernels['decode']:.2f} µs, merge "
          f"{kernels['merge']:.2f} µs per call")
    print("| call | µs per call |\n|---|---|")
    for name, us in timed:
        print(f"| {name} | {us:.2f} |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "host.json"), "w") as f:
            json.dump({"card": card, "torch": torch.__version__,
                       "batches": args.batches, "calls": args.calls,
                       "kernel_us": kernels,
                       "rows": [{"call": n, "us": us} for n, us in timed]},
                      f, indent=2)


if __name__ == "__main__":
    main()
