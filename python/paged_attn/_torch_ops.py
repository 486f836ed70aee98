"""paged_attn::decode as a torch.library custom op (with a fake
implementation), so torch.compile and CUDA graphs treat it as one opaque op:

    out = torch.ops.paged_attn.decode(q, k_cache, v_cache, block_table,
                                      seq_lens, scale, layout, num_splits)

scale <= 0 means 1/sqrt(head_dim). Registered when torch (>= 2.4) imports.
"""

try:
    import torch
except ImportError:  # the package works without torch, on CUDA arrays
    torch = None

if torch is not None and hasattr(torch.library, "custom_op"):

    @torch.library.custom_op("paged_attn::decode", mutates_args=(),
                             device_types="cuda")
    def decode_op(q: torch.Tensor, k_cache: torch.Tensor,
                  v_cache: torch.Tensor, block_table: torch.Tensor,
                  seq_lens: torch.Tensor, scale: float = 0.0,
                  layout: str = "nhd", num_splits: int = 0) -> torch.Tensor:
        from . import decode
        return decode(q, k_cache, v_cache, block_table, seq_lens,
                      scale=scale if scale > 0 else None, layout=layout,
                      num_splits=num_splits)

    @decode_op.register_fake
    def _decode_fake(q, k_cache, v_cache, block_table, seq_lens, scale=0.0,
                     layout="nhd", num_splits=0):
        return torch.empty_like(q)
