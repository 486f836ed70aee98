#!/usr/bin/env python3
"""Does a case's time depend on the cases run before it in one process?

Runs bench_decode.py's PagedAttn timing (no peers) for a sequence of cases
in one process and prints each time, so that a case timed alone and after
others can be compared:

    case_order.py --lib LIB --kernels DIR 8x8192 1x131072 8x8192 ...
"""
import argparse
import gc
import os
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench_decode as bd  # noqa: E402
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--fresh", action="store_true",
                    help="return all cached memory to the driver after each "
                         "case (gc, then torch.cuda.empty_cache())")
    ap.add_argument("cases", nargs="+", help="BATCHxSEQ_LEN")
    args = ap.parse_args()
    pa = bd.PagedAttn(args.lib, args.kernels)
    opts = types.SimpleNamespace(iters=args.iters, warmup=10, peers=False,
                                 flex=False)
    torch.manual_seed(0)
    for spec in args.cases:
        batch, seq_len = (int(x) for x in spec.split("x"))
        r = bd.run_case(pa, bd.Case(batch, seq_len), opts)
        print(f"{spec}: {r['us']['paged_attn']:.1f} us "
              f"({r['tbps']['paged_attn']:.2f} TB/s), "
              f"{r['input_sets']} input set(s)", flush=True)
        del r
        if args.fresh:
            gc.collect()
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
