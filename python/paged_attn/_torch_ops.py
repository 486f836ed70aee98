"""paged_attn::decode, paged_attn::decode_with_lse, paged_attn::merge,
paged_attn::merge_with_lse and paged_attn::append as torch.library custom
ops (with fake implementations), so torch.compile and CUDA graphs treat each
as one opaque op:

    out = torch.ops.paged_attn.decode(q, k_cache, v_cache, block_table,
                                      seq_lens, scale, layout, num_splits,
                                      window, soft_cap, alibi_slopes, sinks,
                                      k_scale, v_scale)
    out, lse = torch.ops.paged_attn.decode_with_lse(...same arguments...)
    out = torch.ops.paged_attn.merge(partial_out, partial_lse, sinks)
    out, lse = torch.ops.paged_attn.merge_with_lse(...same arguments...)
    torch.ops.paged_attn.append(k, v, slot_mapping, k_cache, v_cache,
                                layout, k_scale, v_scale)

scale <= 0 means 1/sqrt(head_dim); window <= 0 no window; soft_cap <= 0 no
soft-cap; alibi_slopes and sinks may be None. k_scale and v_scale: None, or
for fp8 caches (float8_e4m3fn, float8_e5m2) float32 tensors, as decode()
takes them (tensors only: an op's schema has no float-or-tensor argument,
and a tensor is what a compiled graph can feed new values through).
append writes k_cache and v_cache (and per-token k_scale and v_scale) in
place and returns nothing: the op declares all four mutated, so that a
compiled graph orders it before the decodes that read them. Registered when
torch (>= 2.4) imports.
"""

from typing import Optional

try:
    import torch
except ImportError:  # the package works without torch, on CUDA arrays
    torch = None


def _variant_kwargs(scale, layout, num_splits, window, soft_cap,
                    alibi_slopes, sinks, k_scale=None, v_scale=None):
    """decode()'s keywords from the ops' flat arguments."""
    return dict(scale=scale if scale > 0 else None, layout=layout,
                num_splits=num_splits, window=window if window > 0 else None,
                soft_cap=soft_cap if soft_cap > 0 else None,
                alibi_slopes=alibi_slopes, sinks=sinks, k_scale=k_scale,
                v_scale=v_scale)


if torch is not None and hasattr(torch.library, "custom_op"):

    @torch.library.custom_op("paged_attn::decode", mutates_args=(),
                             device_types="cuda")
    def decode_op(q: torch.Tensor, k_cache: torch.Tensor,
                  v_cache: torch.Tensor, block_table: torch.Tensor,
                  seq_lens: torch.Tensor, scale: float = 0.0,
                  layout: str = "nhd", num_splits: int = 0, window: int = 0,
                  soft_cap: float = 0.0,
                  alibi_slopes: Optional[torch.Tensor] = None,
                  sinks: Optional[torch.Tensor] = None,
                  k_scale: Optional[torch.Tensor] = None,
                  v_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        from . import decode
        return decode(q, k_cache, v_cache, block_table, seq_lens,
                      **_variant_kwargs(scale, layout, num_splits, window,
                                        soft_cap, alibi_slopes, sinks,
                                        k_scale, v_scale))

    @decode_op.register_fake
    def _decode_fake(q, k_cache, v_cache, block_table, seq_lens, scale=0.0,
                     layout="nhd", num_splits=0, window=0, soft_cap=0.0,
                     alibi_slopes=None, sinks=None, k_scale=None,
                     v_scale=None):
        return torch.empty_like(q)

    @torch.library.custom_op("paged_attn::decode_with_lse", mutates_args=(),
                             device_types="cuda")
    def decode_with_lse_op(
            q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
            block_table: torch.Tensor, seq_lens: torch.Tensor,
            scale: float = 0.0, layout: str = "nhd", num_splits: int = 0,
            window: int = 0, soft_cap: float = 0.0,
            alibi_slopes: Optional[torch.Tensor] = None,
            sinks: Optional[torch.Tensor] = None,
            k_scale: Optional[torch.Tensor] = None,
            v_scale: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from . import decode
        return decode(q, k_cache, v_cache, block_table, seq_lens,
                      return_lse=True,
                      **_variant_kwargs(scale, layout, num_splits, window,
                                        soft_cap, alibi_slopes, sinks,
                                        k_scale, v_scale))

    @decode_with_lse_op.register_fake
    def _decode_with_lse_fake(q, k_cache, v_cache, block_table, seq_lens,
                              scale=0.0, layout="nhd", num_splits=0, window=0,
                              soft_cap=0.0, alibi_slopes=None, sinks=None,
                              k_scale=None, v_scale=None):
        return (torch.empty_like(q),
                q.new_empty(q.shape[:2], dtype=torch.float32))

    @torch.library.custom_op("paged_attn::merge", mutates_args=(),
                             device_types="cuda")
    def merge_op(partial_out: torch.Tensor, partial_lse: torch.Tensor,
                 sinks: Optional[torch.Tensor] = None) -> torch.Tensor:
        from . import merge
        return merge(partial_out, partial_lse, sinks=sinks)

    @merge_op.register_fake
    def _merge_fake(partial_out, partial_lse, sinks=None):
        return partial_out.new_empty(partial_out.shape[1:])

    @torch.library.custom_op("paged_attn::merge_with_lse", mutates_args=(),
                             device_types="cuda")
    def merge_with_lse_op(
            partial_out: torch.Tensor, partial_lse: torch.Tensor,
            sinks: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from . import merge
        return merge(partial_out, partial_lse, sinks=sinks, return_lse=True)

    @merge_with_lse_op.register_fake
    def _merge_with_lse_fake(partial_out, partial_lse, sinks=None):
        return (partial_out.new_empty(partial_out.shape[1:]),
                partial_lse.new_empty(partial_lse.shape[1:]))

    @torch.library.custom_op("paged_attn::append",
                             mutates_args=("k_cache", "v_cache", "k_scale",
                                           "v_scale"),
                             device_types="cuda")
    def append_op(k: torch.Tensor, v: torch.Tensor,
                  slot_mapping: torch.Tensor, k_cache: torch.Tensor,
                  v_cache: torch.Tensor, layout: str = "nhd",
                  k_scale: Optional[torch.Tensor] = None,
                  v_scale: Optional[torch.Tensor] = None) -> None:
        from . import append
        append(k, v, slot_mapping, k_cache, v_cache, k_scale=k_scale,
               v_scale=v_scale, layout=layout)

    @append_op.register_fake
    def _append_fake(k, v, slot_mapping, k_cache, v_cache, layout="nhd",
                     k_scale=None, v_scale=None):
        return None
