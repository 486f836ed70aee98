#!/usr/bin/env python3
"""Checks what examples/host/runner/main.mlir prints against float64.

The runner's @main builds its inputs from integer formulas, runs
@split_decode (two paged decodes over a split of each sequence's pages and
the merge of their partials, examples/host/split_decode.mlir) and prints the
output (widened to f32) and the log-sum-exps with printMemrefF32. This
script builds the same inputs from the same formulas, computes the attention
over every token of each sequence in float64 (soft-cap, sinks in the
denominator only, log-sum-exp without them) and compares, with the GPU
tests' tolerances for bf16: relative L2 error of the output at most 1e-2
(test/gpu, toleranceFor), log-sum-exps within 2e-3 (kLseTolerance).

    mlir-runner ... | check_runner_output.py        # or a file argument

Prints the errors and PASS or FAIL; exits 1 on FAIL.
"""

import re
import sys

import numpy as np

# The runner's sizes and formulas (runner/main.mlir).
SEQ_LENS = [37, 1, 100, 0, 128, 48]
BATCH, HEADS, KV_HEADS, DIM, PAGE = len(SEQ_LENS), 16, 4, 64, 16
MAX_PAGES, POOL, SPLIT = 8, 53, 3
SOFT_CAP = 5.0
SCALE = 1.0 / np.sqrt(DIM)
OUT_TOLERANCE = 1e-2
LSE_TOLERANCE = 2e-3


def inputs():
    b, h, d = np.meshgrid(np.arange(BATCH), np.arange(HEADS), np.arange(DIM),
                          indexing="ij")
    q = ((131 * b + 31 * h + 7 * d) % 61 - 30) / 8.0
    p, s, g, d = np.meshgrid(np.arange(POOL), np.arange(PAGE),
                             np.arange(KV_HEADS), np.arange(DIM),
                             indexing="ij")
    k = ((97 * p + 53 * s + 29 * g + 11 * d) % 59 - 29) / 32.0
    v = ((89 * p + 43 * s + 23 * g + 13 * d) % 53 - 26) / 16.0
    slots = np.arange(BATCH)[:, None] * MAX_PAGES + np.arange(MAX_PAGES)
    block_table = slots * 17 % POOL
    sinks = (np.arange(HEADS) % 5 - 2) * 0.75
    return q, k, v, block_table, sinks


def reference():
    """The attention over all of each sequence's tokens: what merging the
    prefix and suffix partials gives, in float64."""
    q, k, v, block_table, sinks = inputs()
    out = np.zeros((BATCH, HEADS, DIM))
    lse = np.full((BATCH, HEADS), -np.inf)
    group = HEADS // KV_HEADS
    for b, n in enumerate(SEQ_LENS):
        if n == 0:
            continue
        t = np.arange(n)
        pages = block_table[b, t // PAGE]
        keys = k[pages, t % PAGE]      # [n, kv_heads, dim]
        values = v[pages, t % PAGE]
        for h in range(HEADS):
            logits = keys[:, h // group] @ q[b, h] * SCALE
            logits = SOFT_CAP * np.tanh(logits / SOFT_CAP)
            m = logits.max()
            w = np.exp(logits - m)
            out[b, h] = w @ values[:, h // group] / (w.sum() +
                                                     np.exp(sinks[h] - m))
            lse[b, h] = m + np.log(w.sum())
    return out, lse


def printed_memrefs(text):
    """The data of each printMemrefF32 in `text`, flattened, with its
    sizes."""
    found = []
    pattern = re.compile(r"sizes = \[([0-9, ]*)\][^\n]*data =\s*\n")
    starts = list(pattern.finditer(text))
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[match.end():end]
        # The data ends at the bracket that closes the outermost one.
        depth, stop = 0, len(body)
        for j, ch in enumerate(body):
            depth += ch == "["
            depth -= ch == "]"
            if ch == "]" and depth == 0:
                stop = j + 1
                break
        numbers = [float(x.replace("-nan", "nan"))
                   for x in re.split(r"[\[\],\s]+", body[:stop]) if x]
        sizes = [int(x) for x in match.group(1).split(",")]
        found.append((sizes, np.array(numbers)))
    return found


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    memrefs = printed_memrefs(text)
    if len(memrefs) != 2:
        print(f"FAIL: expected 2 printed memrefs, found {len(memrefs)}")
        return 1
    (out_sizes, out), (lse_sizes, lse) = memrefs
    if (out_sizes != [BATCH, HEADS, DIM] or lse_sizes != [BATCH, HEADS] or
            out.size != BATCH * HEADS * DIM or lse.size != BATCH * HEADS):
        print(f"FAIL: printed sizes {out_sizes} and {lse_sizes}")
        return 1
    expected_out, expected_lse = reference()
    out = out.reshape(BATCH, HEADS, DIM)
    lse = lse.reshape(BATCH, HEADS)

    diff = out - expected_out
    rel = np.sqrt(np.sum(diff * diff) / np.sum(expected_out**2))
    max_abs = np.max(np.abs(diff))
    both_empty = np.isneginf(lse) & np.isneginf(expected_lse)
    with np.errstate(invalid="ignore"):  # -inf - -inf, masked just below
        lse_err = np.where(both_empty, 0.0, np.abs(lse - expected_lse))
    max_lse = np.max(np.nan_to_num(lse_err, nan=np.inf))
    # NaN (an output row nothing wrote) fails every comparison.
    ok = bool(rel <= OUT_TOLERANCE and max_lse <= LSE_TOLERANCE)
    print(f"split_decode: {BATCH} sequences of {SEQ_LENS} tokens, "
          f"{HEADS}/{KV_HEADS} heads of {DIM}, pages of {PAGE}, split after "
          f"page {SPLIT}, bf16")
    print(f"output: relative L2 error {rel:.3e} (tolerance {OUT_TOLERANCE}), "
          f"max abs error {max_abs:.3e}")
    print(f"log-sum-exp: max abs error {max_lse:.3e} "
          f"(tolerance {LSE_TOLERANCE})")
    empty = [b for b, n in enumerate(SEQ_LENS) if n == 0]
    if empty and not np.all(out[empty] == 0):
        print("empty sequences: output not zero")
        ok = False
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
