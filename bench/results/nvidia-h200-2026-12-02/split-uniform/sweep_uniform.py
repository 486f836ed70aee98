# Times PagedAttn's decode of the bench's uniform cases for every split
# count s (even chunks), beside the runtime's automatic choice, to see
# whether the split model picks the best count where PagedAttn trails
# cuDNN (28/4, D = 64, MQA, D = 256, 8 x 8k, 1 x 32k).
#   sweep_uniform.py LIB KERNELS OUT
import json, math, os, sys
sys.path.insert(0, "bench")
import torch
import bench_decode as bd

# (batch, seq_len, hq, hkv, head_dim)
cases = [(32, 4096, 28, 4, 128), (32, 4096, 32, 8, 64), (64, 4096, 32, 1, 128),
         (64, 4096, 8, 1, 256), (64, 4096, 16, 1, 256), (32, 4096, 32, 8, 256),
         (8, 8192, 32, 8, 128), (1, 32768, 32, 8, 128), (32, 4096, 32, 8, 128)]
PAGE = 16

def inputs(b, s, hq, hkv, d, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    pages = b * s // PAGE
    bt = torch.randperm(pages, generator=g).to(torch.int32).view(b, s // PAGE)
    k = torch.randn(pages, PAGE, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    q = torch.randn(b, hq, d, device="cuda", dtype=torch.bfloat16)
    sl = torch.full((b,), s, dtype=torch.int32, device="cuda")
    return q, k, v, bt.cuda(), sl

def main():
    lib, kernels, out = sys.argv[1], sys.argv[2], sys.argv[3]
    pa = bd.PagedAttn(lib, kernels)
    rows = []
    for b, s, hq, hkv, d in cases:
        dec = pa.decoder(hq, hkv, d, PAGE, torch.bfloat16, bd.NHD)
        sets = [inputs(b, s, hq, hkv, d, seed) for seed in (0, 1)]
        outs = [torch.empty_like(x[0]) for x in sets]
        # Partial rows (f32) and log-sum-exps of up to 64 splits.
        ws = torch.empty(max(pa.workspace_bytes(dec, b, s),
                             b * 64 * hq * (4 * d + 4)) + (1 << 20),
                         dtype=torch.uint8, device="cuda")
        def t(splits):
            ps = []
            for (q, k, v, bt, sl), o in zip(sets, outs):
                p = pa.params(q, k, v, bt, sl, o, s, ws)
                p.num_splits = splits
                ps.append(p)
            fns = [lambda p=p: pa.decode(dec, p) for p in ps]
            return bd.time_fn(fns, 200, 20) * 1e3
        row = {"case": f"B={b} S={s} {hq}/{hkv} D={d}", "auto": t(0), "splits": {}}
        for n in list(range(1, 17)) + [20, 24, 28, 32, 40, 48, 64]:
            if n > 1 and -(-s // n) < 64:
                break
            try:
                row["splits"][n] = t(n)
            except RuntimeError as e:
                print(f"  s={n}: {e}", flush=True)
        best = min(row["splits"].items(), key=lambda kv: kv[1])
        print(f"{row['case']}: auto {row['auto']:.1f}; best s={best[0]} {best[1]:.1f}; "
              + " ".join(f"{n}:{v:.1f}" for n, v in row["splits"].items()), flush=True)
        rows.append(row)
        del sets, outs, ws
        torch.cuda.empty_cache()
    os.makedirs(out, exist_ok=True)
    json.dump(rows, open(os.path.join(out, "sweep_uniform.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
