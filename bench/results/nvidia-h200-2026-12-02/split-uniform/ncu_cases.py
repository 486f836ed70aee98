# One automatic-split decode of each of sweep_uniform.py's cases, three
# times (read the third launch of each: the first two load and warm up),
# for ncu:  ncu ... python3 ncu_cases.py LIB KERNELS
import os, sys
sys.path.insert(0, "bench")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import bench_decode as bd
from sweep_uniform import PAGE, cases, inputs

pa = bd.PagedAttn(sys.argv[1], sys.argv[2])
for b, s, hq, hkv, d in cases:
    dec = pa.decoder(hq, hkv, d, PAGE, torch.bfloat16, bd.NHD)
    q, k, v, bt, sl = inputs(b, s, hq, hkv, d, 0)
    o = torch.empty_like(q)
    ws = torch.empty(pa.workspace_bytes(dec, b, s) + 256, dtype=torch.uint8,
                     device="cuda")
    p = pa.params(q, k, v, bt, sl, o, s, ws)
    for _ in range(3):
        pa.decode(dec, p)
    torch.cuda.synchronize()
    print(f"B={b} S={s} {hq}/{hkv} D={d}", flush=True)
