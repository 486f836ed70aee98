# Times PagedAttn's 32/8 D128 decode on ragged batches for every split
# count s, with chunks of the longest sequence's s-th part (a plan) and
# with even chunks, beside the runtime's own plan and FlashInfer.
import ctypes, json, math, sys, os
sys.path.insert(0, "bench")
import torch
import bench_decode as bd

lib, kernels, out = sys.argv[1], sys.argv[2], sys.argv[3]
quick = len(sys.argv) > 4 and sys.argv[4] == "quick"
pa = bd.PagedAttn(lib, kernels)
dec = pa.decoder(32, 8, 128, 16, torch.bfloat16, bd.NHD)
fi, note = bd.load_flashinfer()
print("flashinfer", note, flush=True)

def chunk_len(keys, s, least=0, step=64):
    c = max(-(-keys // s), least)
    return -(-c // step) * step

def inputs_for(lens, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    lens = torch.tensor(lens)
    page = 16
    max_len = int(lens.max())
    pages_per_seq = [math.ceil(int(l) / page) for l in lens]
    num_pages = sum(pages_per_seq) + 1
    perm = torch.randperm(num_pages, generator=g)
    bt = torch.full((len(lens), math.ceil(max_len / page)), -1, dtype=torch.int32)
    nxt = 0
    for b, n in enumerate(pages_per_seq):
        bt[b, :n] = perm[nxt:nxt + n].to(torch.int32)
        nxt += n
    shape = (num_pages, page, 8, 128)
    k = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    q = torch.randn(len(lens), 32, 128, device="cuda", dtype=torch.bfloat16)
    return dict(q=q, k=k, v=v, bt=bt.cuda(), sl=lens.to(torch.int32).cuda(),
                lens=lens, max_len=max_len)

def ragged(B, S, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(1, 2 * S + 1, (B,), generator=g).tolist()

cases = {
    "ragged 32x(1..8192)": ragged(32, 4096),
    "ragged 8x(1..16384)": ragged(8, 8192),
    "ragged 64x(1..8192)": ragged(64, 4096),
    "ragged 16x(1..8192)": ragged(16, 4096, 1),
    "ragged 128x(1..4096)": ragged(128, 2048, 2),
    "one 32k + 15 x 512": [32768] + [512] * 15,
    "4 x 16k + 28 x 256": [16384] * 4 + [256] * 28,
    "unit 8": [16000, 12000, 9000, 7000, 5000, 3000, 1000, 100],
    "one 128k + 63 x 1k": [131072] + [1024] * 63,
    "uniform 32x4096": [4096] * 32,
    "uniform 8x8192": [8192] * 8,
}
results = []
for name, lens in cases.items():
    inp = inputs_for(lens)
    B = len(lens)
    inp["out"] = torch.empty_like(inp["q"])
    ws = torch.empty(B * 32 * 129 * (128 * 4 + 4) + (1 << 16), dtype=torch.uint8, device="cuda")
    host = (ctypes.c_int32 * B)(*lens)
    kv_bytes = 2 * sum(lens) * 8 * 128 * 2
    row = {"case": name, "lens": lens, "kv_mb": kv_bytes / 1e6, "planned": {}, "even": {}}
    def t(p):
        fn = lambda: pa.decode(dec, p)
        return bd.time_fn([fn], 200, 20) * 1e3
    p = pa.params(inp["q"], inp["k"], inp["v"], inp["bt"], inp["sl"], inp["out"], inp["max_len"], ws, host)
    row["runtime_plan_us"] = t(p)
    p = pa.params(inp["q"], inp["k"], inp["v"], inp["bt"], inp["sl"], inp["out"], inp["max_len"], ws)
    row["runtime_even_us"] = t(p)
    L = max(lens)
    for s in ([] if quick else list(range(1, 41)) + [48, 56, 64, 80, 96, 128]):
        if s > 1 and chunk_len(L, s) == chunk_len(L, s - 1):
            continue  # the same plan as s - 1
        for kind, least in (("planned", chunk_len(L, s)), ("even", 0)):
            p = pa.params(inp["q"], inp["k"], inp["v"], inp["bt"], inp["sl"], inp["out"], inp["max_len"], ws)
            p.num_splits = s
            p.split_chunk = least if s > 1 else 0
            row[kind][s] = t(p)
    if fi is not None:
        plan = fi.plan(inp["bt"], inp["sl"], 32, 8, 128, 16, tensor_cores=True)
        o2 = torch.empty_like(inp["q"])
        fn = lambda: plan.run(inp["q"], inp["k"], inp["v"], o2, 1 / math.sqrt(128))
        row["flashinfer_us"] = bd.time_fn([fn], 200, 20) * 1e3
    best = min(row["planned"].items(), key=lambda kv: kv[1], default=(0, 0))
    beste = min(row["even"].items(), key=lambda kv: kv[1], default=(0, 0))
    print(f"{name}: KV {row['kv_mb']:.0f} MB; runtime plan {row['runtime_plan_us']:.1f}, even {row['runtime_even_us']:.1f}; "
          f"best planned s={best[0]} {best[1]:.1f}; best even s={beste[0]} {beste[1]:.1f}; FI {row.get('flashinfer_us', 0):.1f}", flush=True)
    print("  planned: " + " ".join(f"{s}:{v:.1f}" for s, v in row["planned"].items()), flush=True)
    print("  even:    " + " ".join(f"{s}:{v:.1f}" for s, v in row["even"].items()), flush=True)
    results.append(row)
    del inp, ws
    torch.cuda.empty_cache()
os.makedirs(out, exist_ok=True)
json.dump(results, open(os.path.join(out, "sweep.json"), "w"), indent=1)
