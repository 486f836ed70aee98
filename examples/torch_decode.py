import torch, paged_attn

B, Hq, Hkv, D, page, pages = 4, 32, 8, 128, 16, 256
q = torch.randn(B, Hq, D, device="cuda", dtype=torch.bfloat16)
k_cache = torch.randn(pages, page, Hkv, D, device="cuda", dtype=torch.bfloat16)
v_cache = torch.randn_like(k_cache)
block_table = torch.randperm(pages, device="cuda").to(torch.int32).view(B, 64)
seq_lens = torch.tensor([1, 17, 300, 1000], device="cuda", dtype=torch.int32)
out = paged_attn.decode(q, k_cache, v_cache, block_table, seq_lens)
print(out.shape, out.dtype, out.float().norm().item())
