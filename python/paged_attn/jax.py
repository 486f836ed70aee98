"""paged_attn.decode for JAX: an XLA custom call through JAX's FFI.

    import jax, paged_attn.jax as pa
    out = jax.jit(pa.decode)(q, k_cache, v_cache, block_table, seq_lens)

The arrays are decode()'s (paged_attn.decode's documentation gives their
shapes and the semantics); the call lowers to a `stablehlo.custom_call` of
target "paged_attn_decode" that XLA runs on its own stream, on the CUDA
platform. Shapes, dtypes and the op's rules are checked at trace time and
raise ValueError with the rule's message.

What is fixed at trace time: the kernels (compiled or looked up when the
call is traced, as decode() does on first use; the executable names them by
path, so it runs where that path holds them), the split count (num_splits,
or the one decode() would choose on the GPU present at trace time for
max_seq_len, default the page table's capacity; 1 without a GPU), and with
it the workspace, which the call declares as a result buffer so that XLA
allocates it. The launch allocates nothing and does not synchronise:
XLA may capture it into a command buffer (a CUDA graph).

Supported: jax.jit, calls inside larger jitted functions and loops
(lax.scan, lax.fori_loop), the variants (window, soft_cap, alibi_slopes,
sinks, return_lse), multi-token decode (q of [batch, L, num_heads,
head_dim], tree_mask) and fp8 caches (float8_e4m3fn, float8_e5m2 with
k_scale and v_scale: a float, which becomes a constant of the computation,
or a float32 array, as paged_attn.decode takes them). Not supported:
jax.vmap (the batch is already the first dim; a vmapped call raises),
gradients, and platforms other than CUDA.
"""

import jax
import jax.numpy as jnp
import numpy as np

from . import (_check_and_config, _checked_name, _contiguous_strides,
               _decode_compiler, _decoder, _Desc, _ext, _int_option,
               _is_number, _KV_SCALE_KINDS, _launch_options, _library_source,
               _INT64_MAX, _positive_number, _query_len, _SCALE_SHAPES_DOC,
               _variants_of, PagedAttnError, has_driver)

__all__ = ["decode", "TARGET"]

TARGET = "paged_attn_decode"

# JAX dtype -> the runtime's dtype name.
_DTYPE_NAMES = {np.dtype(jnp.float16): "f16", np.dtype(jnp.bfloat16): "bf16",
                np.dtype(jnp.float32): "f32", np.dtype(jnp.int32): "i32",
                np.dtype(jnp.bool_): "i8", np.dtype(jnp.int8): "i8",
                np.dtype(jnp.uint8): "i8"}
# The fp8 caches' dtypes, where this jax has them.
_DTYPE_NAMES.update({np.dtype(getattr(jnp, n)): v for n, v in (
    ("float8_e4m3fn", "f8e4m3fn"), ("float8_e5m2", "f8e5m2"))
    if hasattr(jnp, n)})
# The runtime needs 256-byte aligned workspace; XLA's buffers may be less
# aligned, so the call declares this much more and the handler aligns.
_WORKSPACE_ALIGNMENT = 256

_registered = False


def _register():
    """Registers the FFI handler for the CUDA platform, once."""
    global _registered
    if _registered:
        return
    try:
        from . import _xla
    except ImportError:
        raise PagedAttnError(
            "this build of paged_attn has no XLA FFI handler: build the "
            "package where jax is importable (pip install "
            "--no-build-isolation), or pass its headers with -Ccmake.define."
            "PAGED_ATTN_XLA_FFI_INCLUDE_DIR=<jax.ffi.include_dir()>") from None
    # The launch is the same for every call of a call site (the kernels,
    # grid and arguments depend on the shapes and attributes only), so XLA
    # may capture it into command buffers.
    from jaxlib import xla_client
    jax.ffi.register_ffi_target(
        TARGET, _xla.decode_handler(), platform="CUDA",
        traits=xla_client.CustomCallTargetTraits.COMMAND_BUFFER_COMPATIBLE)
    _registered = True


def _describe(name, x):
    """A JAX array (or tracer) as the checks see it: dtype name and shape."""
    dtype = _DTYPE_NAMES.get(np.dtype(x.dtype))
    if dtype is None:
        raise ValueError(f"{name} has dtype {x.dtype}; expected float16, "
                         f"bfloat16, float32 (or int32 for block_table and "
                         f"seq_lens)")
    shape = tuple(x.shape)
    return _Desc(0, dtype, shape, _contiguous_strides(shape), None)


def _per_head(name, x, hq):
    d = _describe(name, x)
    if d.dtype != "f32" or d.shape != (hq,):
        raise ValueError(f"{name} must be float32 of shape ({hq},) "
                         f"[num_heads], got {x.dtype} {d.shape}")
    return x


def _scale_kind(k_scale, v_scale):
    """The granularity of decode()'s k_scale and v_scale (None without
    them), checked as paged_attn.decode checks them before it knows the
    caches' sizes."""
    if k_scale is None and v_scale is None:
        return None
    if k_scale is None or v_scale is None:
        missing = "k_scale" if k_scale is None else "v_scale"
        raise ValueError(f"k_scale and v_scale go together: {missing} is "
                         f"missing")
    kinds = []
    for name, x in (("k_scale", k_scale), ("v_scale", v_scale)):
        if _is_number(x):
            _positive_number(name, x)
            kinds.append("tensor")
            continue
        shape = getattr(x, "shape", None)
        if shape is None or not hasattr(x, "dtype"):
            raise ValueError(f"{name} must be a positive float or a float32 "
                             f"array of shape {_SCALE_SHAPES_DOC}, got "
                             f"{type(x).__name__}")
        kind = _KV_SCALE_KINDS.get(len(shape))
        if kind is None:
            raise ValueError(f"{name} must be a float or a float32 array of "
                             f"shape {_SCALE_SHAPES_DOC}, got shape "
                             f"{tuple(shape)}")
        kinds.append(kind)
    if kinds[0] != kinds[1]:
        raise ValueError(f"v_scale must have k_scale's granularity "
                         f"({kinds[0]}), got one per {kinds[1]}")
    return kinds[0]


def _scale_operand(name, x, want):
    """k_scale or v_scale as the call's operand: a float as a float32
    constant, or the array, which must be float32 of shape `want`."""
    if _is_number(x):
        return jnp.asarray(_positive_number(name, x), dtype=jnp.float32)
    d = _describe(name, x)
    if d.dtype != "f32" or d.shape != want:
        raise ValueError(f"{name} must be float32 of shape {want}, got "
                         f"{x.dtype} {d.shape}")
    return x


def _tree_mask(x, q, batch):
    if len(q.shape) != 4:
        raise ValueError("tree_mask needs a multi-token q of 4 dimensions "
                         "[batch, L, num_heads, head_dim]")
    want = (batch, q.shape[1], q.shape[1])
    d = _describe("tree_mask", x)
    if d.dtype != "i8" or d.shape != want:
        raise ValueError(f"tree_mask must be bool or int8 of shape {want} "
                         f"[batch, L, L], got {x.dtype} {d.shape}")
    return x


def _num_splits(dec, num_splits, batch, max_seq_len):
    """The split count fixed at trace time: the caller's, else decode()'s
    choice on this machine's GPU, else 1."""
    if num_splits:
        return num_splits
    if batch == 0 or not has_driver()[0]:
        return 1
    return dec.default_num_splits(batch, max_seq_len)


def decode(q, k_cache, v_cache, block_table, seq_lens, *, scale=None,
           layout="nhd", num_splits=0, max_seq_len=None, window=None,
           soft_cap=None, alibi_slopes=None, sinks=None, return_lse=False,
           k_scale=None, v_scale=None, tree_mask=None):
    """paged_attn.decode on JAX arrays: returns out, or (out, lse) with
    return_lse. num_splits: chunks per sequence, 0 to choose at trace time
    (see the module's documentation). max_seq_len: an upper bound of
    seq_lens, for that choice; default the page table's capacity. k_scale,
    v_scale: an fp8 cache's scales, as paged_attn.decode takes them (a
    float is a constant; an array may be traced)."""
    qd, kd, vd = (_describe(n, x) for n, x in
                  (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)))
    btd = _describe("block_table", block_table)
    sld = _describe("seq_lens", seq_lens)
    kv_scale = _scale_kind(k_scale, v_scale)
    batch, hq, hkv, d, page = _check_and_config(qd, kd, vd, btd, sld, layout,
                                                kv_scale)
    for name, value in (("scale", scale), ("window", window),
                        ("soft_cap", soft_cap), ("num_splits", num_splits),
                        ("max_seq_len", max_seq_len)):
        if isinstance(value, jax.core.Tracer):
            raise ValueError(f"{name} is fixed at trace time: pass a Python "
                             f"number, not a traced value")
    scale, num_splits, max_seq_len = _launch_options(
        scale, num_splits, max_seq_len, btd.shape[1] * page)
    variants = _variants_of(window, soft_cap, alibi_slopes, sinks,
                            return_lse, tree_mask)
    operands = [q, k_cache, v_cache, block_table, seq_lens]
    if window is not None:
        window = _int_option("window", window, 1, _INT64_MAX)
    if soft_cap is not None:
        soft_cap = _positive_number("soft_cap", soft_cap)
    if alibi_slopes is not None:
        operands.append(_per_head("alibi_slopes", alibi_slopes, hq))
    if sinks is not None:
        operands.append(_per_head("sinks", sinks, hq))
    if tree_mask is not None:
        operands.append(_tree_mask(tree_mask, qd, batch))
    kv_quant = None
    if kv_scale is not None:
        kv_quant = (kd.dtype, kv_scale)
        want = tuple(_ext.kv_scale_shape(kv_scale, hkv, page, layout,
                                         kd.shape[0]))
        operands += [_scale_operand("k_scale", k_scale, want),
                     _scale_operand("v_scale", v_scale, want)]

    query_len = _query_len(qd)
    # A rank-4 q of one new query and no tree mask is a single-token decode.
    single = len(qd.shape) == 4 and query_len == 1 and tree_mask is None
    if single:
        operands[0] = jnp.reshape(q, (batch, hq, d))
    kernel_q = operands[0]
    args = (hq, hkv, d, page, qd.dtype, layout, variants, query_len, kv_quant)
    name = _checked_name(*args)
    kernels, _ = _library_source(name, _decode_compiler(args))
    dec = _decoder(*args)
    splits = _num_splits(dec, num_splits, batch, max_seq_len)
    ws_bytes = dec.workspace_size(batch, splits)
    if ws_bytes:
        ws_bytes += _WORKSPACE_ALIGNMENT

    per_query = kernel_q.shape[:-1]  # [batch, (L,) num_heads]
    results = [jax.ShapeDtypeStruct(kernel_q.shape, kernel_q.dtype),
               jax.ShapeDtypeStruct((ws_bytes,), jnp.uint8)]
    if return_lse:
        results.append(jax.ShapeDtypeStruct(per_query, jnp.float32))

    _register()
    call = jax.ffi.ffi_call(TARGET, results, vmap_method=None)
    out, _, *lse = call(
        *operands, kernels=str(kernels), dtype=qd.dtype, layout=str(layout),
        variants=",".join(variants), kv_dtype=kv_quant[0] if kv_quant else "",
        kv_scale=kv_scale or "", num_heads=np.int64(hq),
        num_kv_heads=np.int64(hkv), head_dim=np.int64(d),
        page_size=np.int64(page), query_len=np.int64(query_len),
        scale=np.float32(scale), num_splits=np.int64(splits),
        max_seq_len=np.int64(max_seq_len),
        window=np.int64(window or 0),
        soft_cap=np.float32(soft_cap or 0.0))
    if single:
        out = jnp.reshape(out, qd.shape)
        lse = [jnp.reshape(x, (batch, 1, hq)) for x in lse]
    return (out, lse[0]) if return_lse else out
