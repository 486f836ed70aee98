#!/usr/bin/env python3
"""paged_attn.merge against the copy bandwidth of the same card, in one
process on the same data (bench/NOTES.md 23).

    PAGED_ATTN_KERNEL_DIR=... python3 bench/bench_merge.py [--out DIR]

Rows (32 heads, head_dim 128): N partials of B sequences, bf16 (as
decode(..., return_lse=True) gives them) or f32. A merge reads N partials
and their log-sum-exps and writes one result (and its log-sum-exp with
lse); its bandwidth is those bytes over its time. The copy row of each is
a device-to-device copy of as many bytes (half read, half written), timed
the same way; the target is a merge at >= 80% of the copy's bandwidth at
N=2, B=64. torch's own merge (logsumexp, exp, a weighted sum: what a user
would write) is timed as a peer. Each time is the median of 7 replays of a
CUDA graph of 50 calls (µs per call).
"""
import argparse
import json
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


def run_case(n, batch, dtype, lse):
    out_p = torch.randn(n, batch, HQ, D, dtype=dtype, device="cuda")
    lse_p = torch.randn(n, batch, HQ, device="cuda") * 4
    out = torch.empty(batch, HQ, D, dtype=dtype, device="cuda")
    lse_out = torch.empty(batch, HQ, device="cuda") if lse else None
    elem = out_p.element_size()
    moved = (n * batch * HQ * D * elem + n * batch * HQ * 4
             + batch * HQ * D * elem + (batch * HQ * 4 if lse else 0))
    merge_us = time_graph(lambda: paged_attn.merge(out_p, lse_p, out=out,
                                                   lse=lse_out), launches=50)
    src = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_us = time_graph(lambda: dst.copy_(src), launches=50)
    torch_us = time_graph(lambda: torch_merge(out_p, lse_p, out), launches=50)
    merge_gbs = moved / merge_us / 1e3
    copy_gbs = 2 * src.numel() / copy_us / 1e3
    return dict(n=n, batch=batch, dtype=str(dtype).split(".")[-1], lse=lse,
                bytes=moved, merge_us=merge_us, copy_us=copy_us,
                torch_us=torch_us, merge_gbs=merge_gbs, copy_gbs=copy_gbs,
                of_copy=merge_gbs / copy_gbs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    rows = [run_case(*case) for case in CASES]
    print(f"# {card}; torch {torch.__version__}; 32 heads, D=128; µs per "
          f"call; GB/s = bytes moved / time")
    print(f"{'N':>2} {'B':>5} {'dtype':9} {'lse':5} {'bytes':>9} "
          f"{'merge us':>9} {'copy us':>8} {'torch us':>9} {'merge GB/s':>11} "
          f"{'copy GB/s':>10} {'of copy':>8}")
    for r in rows:
        print(f"{r['n']:2} {r['batch']:5} {r['dtype']:9} {str(r['lse']):5} "
              f"{r['bytes']:9} {r['merge_us']:9.2f} {r['copy_us']:8.2f} "
              f"{r['torch_us']:9.2f} {r['merge_gbs']:11.0f} "
              f"{r['copy_gbs']:10.0f} {r['of_copy']:8.2f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "merge.json"), "w") as f:
            json.dump({"card": card, "torch": torch.__version__,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
