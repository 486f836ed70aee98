#!/usr/bin/env python3
"""paged_attn.merge against the copy bandwidth of the same card, in one
process on the same data (bench/NOTES.md 23, 24).

    PAGED_ATTN_KERNEL_DIR=... python3 bench/bench_merge.py [--out DIR]

Rows (32 heads, head_dim 128): N partials of B sequences, bf16 (as
decode(..., return_lse=True) gives them) or f32. A merge reads N partials
and their log-sum-exps and writes one result (and its log-sum-exp with
lse); its bandwidth is those bytes over its time. The copy of each row is
a device-to-device copy of as many bytes (half read, half written), timed
the same way; the target is a merge at >= 80% of the copy's bandwidth at
N=2, B=64. torch's own merge (logsumexp, exp, a weighted sum: what a user
would write) is timed as a peer.

Each row is timed twice: "hot", every call on the same tensors (a merge
right after the decodes that wrote its partials finds them in L2), and
"cold", the calls rotating over enough copies of the inputs to exceed
twice the L2 (every call reads from memory). The launch floor is an empty
kernel's time per call in the same graphs. Each time is the median of 7
replays of a CUDA graph of 50 (or more, one per copy) calls: µs per call.
"""
import argparse
import itertools
import json
import math
import os

import torch

import paged_attn
from bench_variants import time_graph

HQ, D = 32, 128
CASES = [  # (N, batch, dtype, lse)
    (2, 64, torch.bfloat16, False),
    (2, 64, torch.bfloat16, True),
    (8, 64, torch.bfloat16, False),
    (2, 64, torch.float32, False),
    (2, 1024, torch.bfloat16, False),
    (2, 8192, torch.bfloat16, False),
]


def torch_merge(out_p, lse_p, out):
    """The merge as torch ops."""
    total = torch.logsumexp(lse_p, dim=0)
    weights = torch.exp(lse_p - total).nan_to_num_(0.0)
    out.copy_((weights.unsqueeze(-1) * out_p.float()).sum(0))


def time_rotating(calls, count):
    """µs per call of calls[i % count] for i in 0..; a graph of at least
    50 calls and at least one per input set."""
    launches = max(50, count)
    cycle = itertools.cycle(calls[:count])
    return time_graph(lambda: next(cycle)(), launches=launches)


def run_case(n, batch, dtype, lse, l2):
    elem = torch.finfo(dtype).bits // 8
    moved = (n * batch * HQ * D * elem + n * batch * HQ * 4
             + batch * HQ * D * elem + (batch * HQ * 4 if lse else 0))
    # Enough input sets that the cold rotation exceeds twice the L2.
    sets = max(1, math.ceil(2 * l2 / moved))
    merge_calls, copy_calls, peers = [], [], []
    for _ in range(sets):
        out_p = torch.randn(n, batch, HQ, D, dtype=dtype, device="cuda")
        lse_p = torch.randn(n, batch, HQ, device="cuda") * 4
        out = torch.empty(batch, HQ, D, dtype=dtype, device="cuda")
        lse_out = torch.empty(batch, HQ, device="cuda") if lse else None
        src = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        merge_calls.append(lambda a=out_p, b=lse_p, o=out, l=lse_out:
                      paged_attn.merge(a, b, out=o, lse=l))
        copy_calls.append(lambda s=src, d=dst: d.copy_(s))
        if not peers:
            peers.append(lambda: torch_merge(out_p, lse_p, out))
    row = dict(n=n, batch=batch, dtype=str(dtype).split(".")[-1], lse=lse,
               bytes=moved, sets=sets)
    for temp, count in (("hot", 1), ("cold", sets)):
        merge_us = time_rotating(merge_calls, count)
        copy_us = time_rotating(copy_calls, count)
        row[f"{temp}_merge_us"] = merge_us
        row[f"{temp}_copy_us"] = copy_us
        row[f"{temp}_of_copy"] = copy_us / merge_us
    row["torch_us"] = time_graph(peers[0], launches=50)
    return row


def launch_floor():
    """µs per call of an empty kernel in the same graphs."""
    return time_graph(lambda: torch.cuda._sleep(0), launches=50)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    rows = [run_case(*case, l2=l2) for case in CASES]
    floor = launch_floor()
    print(f"# {card}; torch {torch.__version__}; L2 {l2 >> 20} MiB; 32 "
          f"heads, D=128; µs per call; 'of copy' = the merge's bandwidth "
          f"over the copy's (the copy's time over the merge's); empty "
          f"kernel {floor:.2f} µs per call")
    print(f"{'N':>2} {'B':>5} {'dtype':9} {'lse':5} {'bytes':>9} "
          f"{'hot merge':>9} {'copy':>6} {'of copy':>7} "
          f"{'cold merge':>10} {'copy':>6} {'of copy':>7} {'sets':>4} "
          f"{'torch us':>9}")
    for r in rows:
        print(f"{r['n']:2} {r['batch']:5} {r['dtype']:9} {str(r['lse']):5} "
              f"{r['bytes']:9} {r['hot_merge_us']:9.2f} "
              f"{r['hot_copy_us']:6.2f} {r['hot_of_copy']:7.2f} "
              f"{r['cold_merge_us']:10.2f} {r['cold_copy_us']:6.2f} "
              f"{r['cold_of_copy']:7.2f} {r['sets']:4} {r['torch_us']:9.2f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "merge.json"), "w") as f:
            json.dump({"card": card, "torch": torch.__version__,
                       "l2_bytes": l2, "empty_kernel_us": floor,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
