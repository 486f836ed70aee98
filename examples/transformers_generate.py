#!/usr/bin/env python3
"""transformers' continuous batching (generate_batch) with PagedAttn as the
decode attention, against transformers' own paged SDPA.

    python3 examples/transformers_generate.py                 # all models
    python3 examples/transformers_generate.py --model llama --prompts 64

Random seeded models built from configs (nothing is downloaded): Llama
(32/8 heads, head_dim 128), Qwen2 (28/4, 128), Qwen3 MHA (16/16, 64). Needs
torch, transformers 5.17.x, a GPU, and kernels: a compiler build, or
PAGED_ATTN_KERNEL_DIR=DIR after bench/compile-kernels.sh DIR --transformers.

The whole of using it is:

    from paged_attn.integrations import transformers as pa_transformers
    model.set_attn_implementation(pa_transformers.register())
    outputs = model.generate_batch(prompts, generation_config)

(this script queues the requests through the manager itself, so that every
run gets the same batches).
"""
import argparse
import json
import os
import sys

from paged_attn.integrations import transformers as pa_transformers
from paged_attn.integrations import transformers_testing as tt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=list(tt.MODELS) + ["all"],
                    default="all")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--min-len", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=600)
    ap.add_argument("--no-index-path", action="store_true",
                    help="skip the run on the read-index-derived block table")
    ap.add_argument("--out", help="write each model's summary (JSON) here")
    args = ap.parse_args()

    fast = pa_transformers.register()  # "paged|paged_attn"
    index = None
    if not args.no_index_path:
        index = pa_transformers.register("paged_attn_index",
                                         decode_fast_path=False,
                                         compare_with_fallback=True)
    names = list(tt.MODELS) if args.model == "all" else [args.model]
    for name in names:
        summary = tt.run_comparison(
            name, fast, index, num_prompts=args.prompts,
            max_new_tokens=args.new_tokens, min_len=args.min_len,
            max_len=args.max_len)
        print("\n".join(tt.describe(summary)), flush=True)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, f"{name}.json"), "w") as f:
                json.dump(summary, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
