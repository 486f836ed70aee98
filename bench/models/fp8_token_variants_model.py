#!/usr/bin/env python3
"""A float64 model of the tensor-core decode kernel on an fp8 (e4m3) KV
cache with per-token K and V scales and f16 q, with every variant (sliding
window, soft cap, ALiBi, sinks), against the exact decode.

The config is the GPU matrix's
h8_kv2_d128_p128_f16_nhd_w4_f8e4m3fn_token_win_cap_alibi_sinks_lse: 8 query
heads over 2 KV heads (one CTA of 4 rows per KV head), head_dim 128, 4
warps. What the model does, as lib/Conversion/PagedAttnToGPU/
TensorCoreDecodeKernel.cpp and DecodeStages.cpp emit it:

  * the chunk (the window's keys) is cut into 16-token tiles from its first
    key; warp w takes tiles w, w + 4, ...; keys past the end are masked;
  * S = q . codes_K (q f16, the codes exact in f16, f32 accumulation);
    logit = S * (scale * log2 e) * k_scale[t] in f32 (K's per-token scale
    multiplies S in f32: nothing of K is rounded to f16);
  * the score rules in natural units: c * tanh(s / c), then
    + slope * (t - (len - 1)), back to base 2;
  * online softmax in base 2 per warp (ex2 flushing below 2^-126);
  * V's per-token scales go into P: w_t = p_t * v_scale[t]; the row keeps
    a reference R <- max(R * alpha, max_t |w_t|) (clamped to
    [2^-126, 2^126]); P'_t = f16(w_t / R) is the mma's B operand, the
    accumulators (f32) are kept in units of R, rescaled by R_old alpha / R
    and multiplied by R when the warp publishes them;
  * the warps merged by log-sum-exp, divided by the sum, times
    sum / (sum + e^sink / 2^max), rounded to f16.

Where the kernel rounds to f16: q (the input), the K and V codes (exact),
P' and the output. The model rounds there and nowhere else (f32 steps are
rounded to f32).

Data: either the matrix's own draw (--dump DIR, written by
dump_matrix_problem.cpp from lib/Testing/Reference.cpp's generator), or
draws of the same distribution in numpy: q, K, V uniform in [-1, 1), q
rounded to f16; per-token scales log-uniform in 2^-10..2^10; each element
divided by its row's scale and rounded to e4m3 (nearest even, saturating at
448), so that a row's values stay within 1 whatever its scale: a row of a
large scale has tiny (often all-zero) codes, one of a small scale
saturated ones; lengths {0, 1, 129, 128, 127, 37 + s % 1500,
517 + s % 701, W} with W = 385 + s % 29 the window; cap 0.3; slopes
2^(-8 (h + 1) / 8); sinks uniform in [-1, 5).

Each problem runs with these V-scale references (one column each):

  row         the kernel of NOTES 40: R = max_t p_t |s_v,t| (P' <= 1)
  row-normal  the same R, P' rounded to 11 significant bits whatever its
              size (f16 without subnormals: a diagnostic)
  headroom    R = 2^-15 max_t p_t |s_v,t| (P' <= 2^15; the kernel since
              NOTES 42)
  exact-p     P' not rounded (what is left: the output's f16 rounding)

and, to bisect, with the variants' values switched off one at a time (the
same codes, scales and lengths). Errors are ||out - exact|| / ||exact||
over the whole output, the matrix's metric.

    # 50 numpy draws (scales in 2^-10..2^10; --scale-log2 N for 2^-N..2^N)
    /path/to/python bench/models/fp8_token_variants_model.py --draws 50
    # the matrix's own draws (see dump_matrix_problem.cpp): one bisected,
    # several tabled
    /path/to/python bench/models/fp8_token_variants_model.py --dump /tmp/d2351
    /path/to/python bench/models/fp8_token_variants_model.py --dump /tmp/dumps/*
"""
import argparse
import os

import numpy as np

D, H, HKV, PAGE, WARPS, TILE = 128, 8, 2, 128, 4, 16
GROUP = H // HKV
# Per-token scales are drawn log-uniform in 2^-SCALE_LOG2..2^SCALE_LOG2.
SCALE_LOG2 = 10
LOG2E, LN2 = np.log2(np.e), np.log(2.0)
FLT_MIN = 2.0 ** -126
REFERENCES = ("row", "row-normal", "headroom", "exact-p")
HEADROOM = {"row": 1.0, "row-normal": 1.0, "headroom": 2.0 ** 15,
            "exact-p": 1.0}


def f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(
        np.float64)


def f16(x):
    # Through f32 as the kernel's cvt.rn.f16x2.f32 (and the output's
    # truncf) take it; numpy rounds to nearest even, with subnormals.
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(
        np.float16).astype(np.float64)


def f16_normal(x):
    """f16's 11-bit significand without its exponent range: what P' would
    keep if f16 had no subnormals (a diagnostic, not a format)."""
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    return np.ldexp(np.rint(m * 2.0 ** 11) / 2.0 ** 11, e)


def ex2(x):
    """ex2.approx.ftz.f32: results below 2^-126 flush to 0."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        y = f32(np.exp2(x))
    return np.where(y < FLT_MIN, 0.0, y)


def to_e4m3(y):
    """Nearest-even e4m3fn value of y, saturating at 448."""
    a = np.abs(y)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    step = 2.0 ** (np.maximum(e, -6) - 3)
    q = np.minimum(np.rint(a / step) * step, 448.0)
    return np.sign(y) * q


class Problem:
    """One matrix case: per sequence, its visible tokens' codes and scales
    per KV head. `k`, `v` (the reference's values) are code * scale."""

    def __init__(self, q, kc, vc, ks, vs, lens, window, cap, slopes, sinks):
        self.q, self.lens = q, lens  # q [B, H, D]
        self.kc, self.vc, self.ks, self.vs = kc, vc, ks, vs  # lists per b
        self.window, self.cap = window, cap
        self.slopes, self.sinks = slopes, sinks
        self.scale = f32(1.0 / np.sqrt(D))

    def with_variants(self, window=True, cap=True, alibi=True, sinks=True):
        """The same data with some variants off."""
        return Problem(self.q, self.kc, self.vc, self.ks, self.vs, self.lens,
                       self.window if window else 0,
                       self.cap if cap else 0.0,
                       self.slopes if alibi else np.zeros(H),
                       self.sinks if sinks else None)


def draw(seed):
    """A problem of the matrix's distribution for this config (numpy's
    generator, not the C++ one: the same distribution, other numbers)."""
    rng = np.random.default_rng(seed)
    window = 3 * PAGE + 1 + seed % 29
    lens = [0, 1, PAGE + 1, PAGE, PAGE - 1, 37 + seed % 1500,
            517 + seed % 701, window]
    q = f16(rng.uniform(-1, 1, (len(lens), H, D)))
    kc, vc, ks, vs = [], [], [], []
    for n in lens:
        for codes, scales in ((kc, ks), (vc, vs)):
            s = f32(2.0 ** rng.uniform(-SCALE_LOG2, SCALE_LOG2, (n, HKV)))
            codes.append(to_e4m3(rng.uniform(-1, 1, (n, HKV, D)) /
                                 s[..., None]))
            scales.append(s)
    slopes = f32(2.0 ** (-8.0 * np.arange(1, H + 1) / H))
    sinks = f32(rng.uniform(-1, 5, H))
    return Problem(q, kc, vc, ks, vs, lens, window, f32(0.3), slopes, sinks)


def load_dump(path):
    """The matrix's own draw, as dump_matrix_problem.cpp writes it."""
    meta = dict(line.split() for line in open(os.path.join(path, "meta.txt")))
    num_pages, max_pages = int(meta["num_pages"]), int(meta["max_pages"])

    def read(name, dtype):
        return np.fromfile(os.path.join(path, name), dtype=dtype)

    q = read("q.f64", np.float64).reshape(-1, H, D)
    shape = (num_pages, PAGE, HKV, D)
    k, v = read("k.f64", np.float64), read("v.f64", np.float64)
    ksc = read("k_scale.f32", np.float32).astype(np.float64)
    vsc = read("v_scale.f32", np.float32).astype(np.float64)
    table = read("block_table.i32", np.int32).reshape(-1, max_pages)
    lens = list(read("seq_lens.i32", np.int32))
    kc_all = (k.reshape(shape) / ksc.reshape(shape[:3])[..., None])
    vc_all = (v.reshape(shape) / vsc.reshape(shape[:3])[..., None])
    kc, vc, ks, vs = [], [], [], []
    for b, n in enumerate(lens):
        t = np.arange(n)
        page, slot = table[b, t // PAGE], t % PAGE
        kc.append(kc_all[page, slot])
        vc.append(vc_all[page, slot])
        ks.append(ksc.reshape(shape[:3])[page, slot])
        vs.append(vsc.reshape(shape[:3])[page, slot])
    p = Problem(q, kc, vc, ks, vs, lens, int(meta["window"]),
                float(meta["soft_cap"]),
                read("alibi.f64", np.float64), read("sinks.f64", np.float64))
    p.ref_out = read("ref_out.f64", np.float64).reshape(-1, H, D)
    return p


def first_key(p, n):
    return max(n - p.window, 0) if p.window else 0


def exact(p):
    """The decode in float64 (lib/Testing/Reference.cpp's referenceDecode)."""
    out = np.zeros_like(p.q)
    for b, n in enumerate(p.lens):
        if n == 0:
            continue
        t = np.arange(first_key(p, n), n)
        for g in range(HKV):
            heads = slice(g * GROUP, (g + 1) * GROUP)
            k = p.kc[b][t, g] * p.ks[b][t, g, None]
            v = p.vc[b][t, g] * p.vs[b][t, g, None]
            s = (p.q[b, heads] @ k.T) / np.sqrt(D)
            if p.cap:
                s = p.cap * np.tanh(s / p.cap)
            s = s + p.slopes[heads, None] * (t - (n - 1))
            mx = s.max(1, keepdims=True)
            w = np.exp(s - mx)
            den = w.sum(1)
            if p.sinks is not None:
                den = den + np.exp(p.sinks[heads] - mx[:, 0])
            out[b, heads] = (w @ v) / den[:, None]
    return out


def logits(p, s, ks, t, n, slopes):
    """S (f32) to the base-2 logits the kernel compares: times the logit
    scale and K's per-token scale, then the score rules."""
    logit_scale = f32(p.scale * f32(LOG2E))
    x = f32(f32(s * logit_scale) * ks[None, :])
    if not p.cap and not slopes.any():
        return x
    x = f32(x * f32(LN2))
    if p.cap:
        x = f32(p.cap * np.tanh(x / p.cap))
    if slopes.any():
        x = f32(x + f32(slopes[:, None] * (t - (n - 1))[None, :]))
    return f32(x * f32(LOG2E))


def kernel(p, reference="row"):
    """The tensor-core kernel's output, unsplit (a split only cuts the
    chunk into more warps' worth of tiles, merged the same way)."""
    headroom = HEADROOM[reference]
    out = np.zeros_like(p.q)
    for b, n in enumerate(p.lens):
        if n == 0:
            continue
        begin, end = first_key(p, n), n
        tiles = -(-(end - begin) // TILE)
        for g in range(HKV):
            heads = slice(g * GROUP, (g + 1) * GROUP)
            q, slopes = p.q[b, heads], p.slopes[heads]
            kc, vc = p.kc[b][:, g], p.vc[b][:, g]
            ks, vs = p.ks[b][:, g], p.vs[b][:, g]
            warps = []
            for w in range(WARPS):
                m = np.full(GROUP, -np.inf)
                l, r = np.zeros(GROUP), np.zeros(GROUP)
                acc = np.zeros((GROUP, D))
                for i in range(w, tiles, WARPS):
                    t = begin + i * TILE + np.arange(TILE)
                    seen = t < end
                    tc = np.minimum(t, end - 1)  # past the end: the last key
                    x = logits(p, f32(q @ kc[tc].T), ks[tc], t, n, slopes)
                    x = np.where(seen[None, :], x, -np.inf)
                    new_max = np.maximum(m, x.max(1))
                    alpha = ex2(m - new_max)
                    pw = ex2(x - new_max[:, None])
                    l = f32(l * alpha + pw.sum(1))
                    m = new_max
                    # weighByTokenScales
                    wt = f32(pw * vs[tc][None, :])
                    row_max = np.abs(wt).max(1)
                    decayed = f32(r * alpha)
                    new_ref = np.maximum(decayed, f32(row_max / headroom))
                    new_ref = np.clip(new_ref, FLT_MIN, 2.0 ** 126)
                    inverse = f32(1.0 / new_ref)
                    pp = f32(wt * inverse[:, None])
                    if reference == "row-normal":
                        pp = f16_normal(pp)
                    elif reference != "exact-p":
                        pp = f16(pp)
                    factor = f32(decayed * inverse)
                    r = new_ref
                    acc = f32(f32(acc * factor[:, None]) + pp @ vc[tc])
                warps.append((m, l, f32(acc * r[:, None])))
            ms = np.array([s[0] for s in warps])
            top = ms.max(0)
            ref = np.where(np.isinf(top), 0.0, top)
            wts = ex2(ms - ref)
            total = f32((wts * np.array([s[1] for s in warps])).sum(0))
            acc = f32(sum(wt[:, None] * s[2] for wt, s in zip(wts, warps)))
            result = f32(acc * f32(1.0 / total)[:, None])
            if p.sinks is not None:
                sink = ex2(f32(p.sinks[heads] * f32(LOG2E)) - ref)
                result = f32(result * f32(total / (total + sink))[:, None])
            out[b, heads] = f16(result)
    return out


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


VARIANT_SETS = [
    ("all five", {}),
    ("no sinks", dict(sinks=False)),
    ("no ALiBi", dict(alibi=False)),
    ("no cap", dict(cap=False)),
    ("no window", dict(window=False)),
    ("none", dict(window=False, cap=False, alibi=False, sinks=False)),
]


def stats(errors):
    e = np.array(errors)
    return (f"{np.median(e):.1e} / {np.percentile(e, 90):.1e} / "
            f"{e.max():.1e} ({(e > 2e-3).sum()})")


def table(problems):
    """Median / 90th percentile / max over `problems` (an iterable, taken
    once), per variant set and reference."""
    errors = {(name, ref): [] for name, _ in VARIANT_SETS
              for ref in REFERENCES}
    for p in problems:
        for name, off in VARIANT_SETS:
            q = p.with_variants(**off)
            e = exact(q)
            for ref in REFERENCES:
                errors[name, ref].append(rel(kernel(q, ref), e))
    count = len(errors[VARIANT_SETS[0][0], REFERENCES[0]])
    print(f"{count} draws; median / 90th percentile / max (draws over "
          "2e-3)")
    print("| variants | " + " | ".join(REFERENCES) + " |")
    print("|---|" + "---|" * len(REFERENCES))
    for name, _ in VARIANT_SETS:
        print(f"| {name} | " +
              " | ".join(stats(errors[name, r]) for r in REFERENCES) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dump", nargs="+",
                        help="dump_matrix_problem.cpp directories: one is "
                        "bisected variant by variant, several are tabled")
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--scale-log2", type=int, default=SCALE_LOG2,
                        help="numpy draws: scales in 2^-N..2^N")
    args = parser.parse_args()
    globals()["SCALE_LOG2"] = args.scale_log2

    if args.dump and len(args.dump) > 1:
        table(load_dump(d) for d in args.dump)
        return
    if args.dump:
        p = load_dump(args.dump[0])
        ex = exact(p)
        print(f"exact vs the library's reference: {rel(ex, p.ref_out):.1e}; "
              f"exact rounded to f16: {rel(f16(ex), ex):.2e}")
        for name, off in VARIANT_SETS:
            q = p.with_variants(**off)
            e = exact(q)
            cells = [f"{ref} {rel(kernel(q, ref), e):.2e}"
                     for ref in REFERENCES]
            print(f"{name:10s} " + "  ".join(cells))
        return
    seeds = range(args.first_seed, args.first_seed + args.draws)
    table(draw(s) for s in seeds)


if __name__ == "__main__":
    main()
