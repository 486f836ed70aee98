#!/usr/bin/env python3
"""A float64 model of how the tensor-core decode puts per-token V scales into
P, which its mma takes in f16 (bench/NOTES.md 40).

P' = p * s_v / R goes to f16 for each token, the accumulators are kept in
units of R and multiplied by it at the end. Two choices of R per 16-token
tile are modelled against the exact result on random data (q f16, K and V
rows normal, per-token K and V scales log-uniform over 2^-10..2^10 as the
GPU matrix draws them, out rounded to f16):

  scale      R = the largest |s_v| seen so far (the kernels today)
  weight     R = the largest p * |s_v| of the row so far, decayed with the
             softmax's max (R <- max(R * alpha, max_t p_t |s_v,t|))

With R = max |s_v| a token that carries the output (p near 1) while a token
of larger scale but negligible weight set R gets P' far below f16's normal
range, and loses its precision to subnormal rounding.

    python3 bench/models/fp8_v_scale_reference.py
"""
import numpy as np


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(
        np.float64)


def problem(rng, n, d):
    q = f16(rng.standard_normal(d))
    k, v = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    ks, vs = 2.0 ** rng.uniform(-10, 10, n), 2.0 ** rng.uniform(-10, 10, n)
    s = (k @ q) * ks / np.sqrt(d)
    p = np.exp(s - s.max())
    exact = (p[:, None] * vs[:, None] * v).sum(0) / p.sum()
    return s, v, vs, exact


def decode(s, v, vs, reference, tile=16):
    acc, r, l, m = np.zeros(v.shape[1]), 0.0, 0.0, -np.inf
    for t0 in range(0, len(s), tile):
        t = slice(t0, t0 + tile)
        m_new = max(m, s[t].max())
        alpha = np.exp(m - m_new) if m > -np.inf else 0.0
        p = np.exp(s[t] - m_new)
        if reference == "scale":
            r_new = max(r, np.abs(vs[t]).max())
            acc *= alpha * (r / r_new if r > 0 else 0.0)
        else:
            r_new = max(r * alpha, (p * np.abs(vs[t])).max())
            acc *= alpha * r / r_new if r > 0 else 0.0
        acc += (f16(p * vs[t] / r_new)[:, None] * v[t]).sum(0)
        l, m, r = l * alpha + p.sum(), m_new, r_new
    return f16(acc * r / l)


def main():
    rng = np.random.default_rng(0)
    print("| keys | R = max abs(s_v): max / median | R = max p abs(s_v): max / median |")
    print("|---|---|---|")
    for n in (16, 17, 100, 1000, 4096):
        errors = {"scale": [], "weight": []}
        for _ in range(20):
            s, v, vs, exact = problem(rng, n, 128)
            for ref in errors:
                out = decode(s, v, vs, ref)
                errors[ref].append(np.linalg.norm(out - exact) /
                                   np.linalg.norm(exact))
        cells = [f"{max(e):.1e} / {np.median(e):.1e}"
                 for e in errors.values()]
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
