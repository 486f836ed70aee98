#!/usr/bin/env python3
"""Where the host time of paged_attn.decode() goes, piece by piece.

Times (perf_counter, many calls, GPU kept busy enough not to block) the
whole call and each step it takes for a small torch problem, so that the
Python layer's cost can be weighed against the C++ call under it.
"""
import time

import paged_attn
import paged_attn as pa
import torch


def per_call_us(fn, n=20000):
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    us = (time.perf_counter() - start) / n * 1e6
    torch.cuda.synchronize()
    return us


def main():
    torch.manual_seed(0)
    b, hq, hkv, d, page, length = 1, 32, 8, 128, 16, 16
    q = torch.randn(b, hq, d, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(2, page, hkv, d, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    bt = torch.tensor([[1]], dtype=torch.int32, device="cuda")
    sl = torch.tensor([length], dtype=torch.int32, device="cuda")
    out = torch.empty_like(q)
    ws = torch.empty(max(256, paged_attn.workspace_size(q, k, bt)),
                     dtype=torch.uint8, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    dec = pa._decoder(hq, hkv, d, page, "bf16", "nhd")
    plan = paged_attn.DecodePlan(q, k, v, bt, sl, out=out, workspace=ws)
    descs = [pa._describe(n, t) for n, t in (("q", q), ("k", k), ("v", v),
                                            ("bt", bt), ("sl", sl),
                                            ("out", out))]
    tuples = [x.as_tuple() for x in descs]
    rows = [
        ("decode(out=, workspace=)",
         lambda: paged_attn.decode(q, k, v, bt, sl, out=out, workspace=ws)),
        ("decode() allocating out and workspace",
         lambda: paged_attn.decode(q, k, v, bt, sl)),
        ("DecodePlan.run() (tensors checked once)", plan.run),
        ("_prepare (describe and check six tensors)",
         lambda: pa._prepare(q, k, v, bt, sl, out, ws, None, "nhd", 0, None,
                             False)),
        ("6 x _describe", lambda: [pa._describe("q", t) for t in
                                   (q, k, v, bt, sl, out)]),
        ("_check_and_config", lambda: pa._check_and_config(*descs[:5], "nhd")),
        ("6 x _from_dlpack", lambda: [pa._from_dlpack(torch, t) for t in
                                      (q, k, v, bt, sl, out)]),
        ("_current_stream", lambda: pa._current_stream(torch, 0)),
        ("_decoder lookup", lambda: pa._decoder(hq, hkv, d, page, "bf16",
                                                "nhd")),
        ("workspace_size()", lambda: paged_attn.workspace_size(q, k, bt)),
        ("torch.empty(workspace)", lambda: torch.empty(ws.numel(),
                                                       dtype=torch.uint8,
                                                       device="cuda")),
        ("t.data_ptr() + shape + stride() + get_device(), one tensor",
         lambda: (k.data_ptr(), k.shape, k.stride(), k.get_device())),
        ("_ext Decoder.decode with tuples (C++ checks and launch)",
         lambda: dec.decode(*tuples, 0.0, length, 0, ws.data_ptr(),
                            ws.numel(), False, stream)),
    ]
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print("| step | µs per call |\n|---|---|")
    for name, fn in rows:
        print(f"| {name} | {per_call_us(fn):.2f} |", flush=True)


if __name__ == "__main__":
    main()
