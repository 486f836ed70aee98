#!/usr/bin/env python3
"""Draws results.json (bench_decode.py) as TB/s per case, peers side by
side, with the read ceiling: plot.py bench/results/<card>-<date>"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PEERS = [("paged_attn", "PagedAttn (paged)"), ("flashinfer", "FlashInfer tensor cores (paged)"),
         ("flashinfer_cc", "FlashInfer CUDA cores (paged)"),
         ("sdpa_cudnn", "SDPA cuDNN (contiguous)"),
         ("sdpa_flash", "SDPA flash (contiguous)"), ("gather_sdpa", "gather + SDPA"),
         ("flex", "FlexAttention (contiguous)")]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot.py RESULTS_DIR")
    d = sys.argv[1]
    with open(os.path.join(d, "results.json")) as f:
        data = json.load(f)
    results, meta = data["results"], data["meta"]
    def label(r):
        s = r["seq_len"]
        seq = f"{s // 1024}k" if s % 1024 == 0 else str(s)
        ragged = " rag" if r["ragged"] else ""
        return (f"{r['batch']}x{seq}{ragged}\n{r['hq']}/{r['hkv']} D{r['head_dim']}"
                f"\np{r['page']} {r['dtype'].replace('bfloat16', 'bf16').replace('float16', 'f16')}")
    labels = [label(r) for r in results]
    width = 0.8 / len(PEERS)
    fig, ax = plt.subplots(figsize=(max(12, len(results) * 1.1), 6))
    for i, (key, name) in enumerate(PEERS):
        xs = [j + (i - len(PEERS) / 2 + 0.5) * width for j in range(len(results))]
        ys = [r["tbps"].get(key, 0.0) for r in results]
        ax.bar(xs, ys, width, label=name)
    ax.axhline(meta["read_ceiling_tbps"], color="black", linestyle="--",
               label=f"read ceiling {meta['read_ceiling_tbps']:.2f} TB/s")
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("effective KV bandwidth (TB/s)")
    ax.set_title(f"Paged decode, {meta['card']}, {meta['date']} (higher is better)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(os.path.join(d, "plot.png"), dpi=110)


if __name__ == "__main__":
    main()
