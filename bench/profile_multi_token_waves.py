"""Times paged_attn.decode at 32 x 4k (32/8 heads, D = 128, bf16, page 16,
shuffled pages) with L new queries per sequence, for bench/NOTES.md 30:

    PAGED_ATTN_KERNEL_DIR=KERNELS python3 bench/profile_multi_token_waves.py L [ITERS]

KERNELS holds the L = 1, 4, 8 configs, compiled with the strategy under
test (paged-attn-compile --query-len L [--kv-stages N --min-ctas-per-sm N]);
run it under ncu (--kernel-name regex:paged_attn_decode) for the counters.
"""
import sys, torch, paged_attn
L = int(sys.argv[1]); iters = int(sys.argv[2]) if len(sys.argv) > 2 else 50
B, S, H, HKV, D, P = 32, 4096, 32, 8, 128, 16
pages = B * S // P
g = torch.Generator(device="cuda").manual_seed(0)
k = torch.randn(pages, P, HKV, D, device="cuda", dtype=torch.bfloat16, generator=g)
v = torch.randn_like(k)
bt = torch.randperm(pages, device="cuda", dtype=torch.int32, generator=g).view(B, S // P)
sl = torch.full((B,), S, device="cuda", dtype=torch.int32)
q = torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
if L == 1: q = q[:, 0]
out = torch.empty_like(q)
ws = torch.empty(paged_attn.workspace_size(q, k, bt), dtype=torch.uint8, device="cuda")
run = lambda: paged_attn.decode(q, k, v, bt, sl, out=out, workspace=ws)
for _ in range(5): run()
torch.cuda.synchronize()
s, e = torch.cuda.Event(True), torch.cuda.Event(True)
s.record()
for _ in range(iters): run()
e.record(); torch.cuda.synchronize()
print(f"L={L}: {s.elapsed_time(e) / iters * 1000:.1f} us", flush=True)
