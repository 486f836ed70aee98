"""paged_attn.jax without a GPU: what the call lowers to (a
stablehlo.custom_call of our target, its operands' layouts, the attributes
that fix the config, the declared workspace) and the errors raised at trace
time. Skipped without jax; the GPU side is test_jax_gpu.py."""
import os
import re

import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import paged_attn  # noqa: E402

pytestmark = pytest.mark.skipif(not paged_attn.has_compiler(),
                                reason="needs a build with the compiler")

import paged_attn.jax as pa  # noqa: E402

B, HQ, HKV, D, PAGE, PAGES, MAX_PAGES = 4, 32, 8, 128, 16, 64, 8


def spec(shape, dtype=jnp.bfloat16):
    return jax.ShapeDtypeStruct(shape, dtype)


def operands(q_shape=(B, HQ, D), dtype=jnp.bfloat16, cache=None):
    cache = cache or (PAGES, PAGE, HKV, D)
    return (spec(q_shape, dtype), spec(cache, dtype), spec(cache, dtype),
            spec((B, MAX_PAGES), jnp.int32), spec((B,), jnp.int32))


def custom_call(fn, *args, platforms=None):
    """The custom_call line of fn lowered on args (for `platforms`)."""
    traced = jax.jit(fn).trace(*args)
    lowered = (traced.lower(lowering_platforms=platforms) if platforms
               else traced.lower())
    lines = [l for l in lowered.as_text().splitlines()
             if "stablehlo.custom_call" in l]
    assert len(lines) == 1, lines
    return lines[0]


def attribute(line, name):
    m = re.search(rf'\b{name} = ("[^"]*"|[^,}}]+)', line)
    assert m, f"no attribute {name} in {line}"
    return m.group(1).strip()


def test_lowers_to_our_custom_call_with_row_major_operands():
    line = custom_call(pa.decode, *operands())
    assert f"@{pa.TARGET}(" in line
    assert "operand_layouts = [dense<[2, 1, 0]> : tensor<3xindex>, " \
        "dense<[3, 2, 1, 0]> : tensor<4xindex>, dense<[3, 2, 1, 0]> : " \
        "tensor<4xindex>, dense<[1, 0]> : tensor<2xindex>, dense<0> : " \
        "tensor<1xindex>]" in line
    for name, value in [("num_heads", "32 : i64"), ("num_kv_heads", "8 : i64"),
                        ("head_dim", "128 : i64"), ("page_size", "16 : i64"),
                        ("query_len", "1 : i64"), ("dtype", '"bf16"'),
                        ("layout", '"nhd"'), ("variants", '""'),
                        ("max_seq_len", f"{MAX_PAGES * PAGE} : i64")]:
        assert attribute(line, name) == value, name
    # The kernels the executable names exist (compiled at trace time).
    kernels = attribute(line, "kernels").strip('"')
    assert os.path.exists(kernels)
    # out, then the workspace (none when unsplit: no GPU here picks 1).
    assert attribute(line, "num_splits") == "1 : i64"
    assert line.endswith("-> (tensor<4x32x128xbf16>, tensor<0xui8>)")


def test_lowers_for_cuda_without_a_gpu():
    line = custom_call(pa.decode, *operands(), platforms=("cuda",))
    assert f"@{pa.TARGET}(" in line


def test_split_declares_the_runtimes_workspace_plus_alignment():
    line = custom_call(lambda *a: pa.decode(*a, num_splits=3), *operands())
    name = paged_attn._checked_name(HQ, HKV, D, PAGE, "bf16", "nhd")
    decoder = paged_attn._decoder(HQ, HKV, D, PAGE, "bf16", "nhd")
    assert name in attribute(line, "kernels")
    want = decoder.workspace_size(B, 3) + 256
    assert attribute(line, "num_splits") == "3 : i64"
    assert f"tensor<{want}xui8>" in line


def test_variants_pass_their_operands_in_the_specs_order():
    L = 4
    args = operands((B, L, HQ, D)) + (spec((HQ,), jnp.float32),
                                      spec((HQ,), jnp.float32),
                                      spec((B, L, L), jnp.bool_))

    def fn(q, k, v, bt, sl, slopes, sinks, tree):
        return pa.decode(q, k, v, bt, sl, alibi_slopes=slopes, sinks=sinks,
                         tree_mask=tree, window=9, soft_cap=20.0,
                         return_lse=True, scale=0.25)

    line = custom_call(fn, *args)
    assert attribute(line, "variants") == \
        '"window,soft_cap,alibi_slopes,sinks,lse,tree_mask"'
    assert attribute(line, "query_len") == "4 : i64"
    assert attribute(line, "window") == "9 : i64"
    assert attribute(line, "soft_cap").startswith("2.000000e+01")
    assert attribute(line, "scale").startswith("2.500000e-01")
    assert "(tensor<4x4x32x128xbf16>, tensor<64x16x8x128xbf16>, " \
        "tensor<64x16x8x128xbf16>, tensor<4x8xi32>, tensor<4xi32>, " \
        "tensor<32xf32>, tensor<32xf32>, tensor<4x4x4xi1>) -> " \
        "(tensor<4x4x32x128xbf16>, tensor<0xui8>, tensor<4x4x32xf32>)" in line


def test_one_query_of_rank_4_is_a_single_token_decode():
    fn = lambda *a: pa.decode(*a, return_lse=True)  # noqa: E731
    line = custom_call(fn, *operands((B, 1, HQ, D)))
    assert attribute(line, "query_len") == "1 : i64"
    assert "-> (tensor<4x32x128xbf16>, tensor<0xui8>, tensor<4x32xf32>)" \
        in line
    out, lse = jax.eval_shape(fn, *operands((B, 1, HQ, D)))
    assert out.shape == (B, 1, HQ, D) and lse.shape == (B, 1, HQ)


def test_inside_a_larger_jitted_function():
    def layer(x, wq, wo, k, v, bt, sl):
        q = (x @ wq).reshape(B, HQ, D)
        return pa.decode(q, k, v, bt, sl).reshape(B, HQ * D) @ wo

    args = (spec((B, 512)), spec((512, HQ * D)), spec((HQ * D, 512))) + \
        operands()[1:]
    text = jax.jit(layer).lower(*args).as_text()
    assert text.count(f"stablehlo.custom_call @{pa.TARGET}") == 1
    assert text.count("stablehlo.dot_general") == 2


def _bad(**changes):
    """operands() with some replaced, and decode()'s keywords."""
    args = list(operands())
    names = ["q", "k", "v", "bt", "sl"]
    kwargs = {}
    for key, value in changes.items():
        if key in names:
            args[names.index(key)] = value
        else:
            kwargs[key] = value
    return args, kwargs


BAD = [
    ("gqa", _bad(q=spec((B, 12, D))), "multiple"),
    ("head_dim", _bad(q=spec((B, HQ, 64))), "head_dim"),
    ("dtype", _bad(q=spec((B, HQ, D), jnp.float16)), "must equal q's"),
    ("int_q", _bad(q=spec((B, HQ, D), jnp.int32)),
     "q must be float16, bfloat16 or float32"),
    ("bt_dtype", _bad(bt=spec((B, MAX_PAGES), jnp.float32)),
     "block_table must be int32"),
    ("batch", _bad(sl=spec((B + 1,), jnp.int32)), "batch sizes disagree"),
    ("rank", _bad(q=spec((B, 2, 3, HQ, D))), "q must have 3 dimensions"),
    ("layout", _bad(layout="nope"), "layout"),
    ("window", _bad(window=0), "window must be an integer in [1,"),
    ("soft_cap", _bad(soft_cap=-1.0), "soft_cap must be finite and positive"),
    ("sinks", _bad(sinks=spec((HQ + 1,), jnp.float32)),
     "sinks must be float32 of shape (32,)"),
    ("tree_rank3", _bad(tree_mask=spec((B, 1, 1), jnp.bool_)),
     "tree_mask needs a multi-token q"),
    ("splits", _bad(num_splits=70000), "num_splits must be an integer"),
    ("sinks_dtype", _bad(sinks=spec((HQ,), jnp.int8)),
     "sinks must be float32"),
]


@pytest.mark.parametrize("name,bad,message", BAD, ids=[b[0] for b in BAD])
def test_bad_calls_raise_at_trace_time(name, bad, message):
    args, kwargs = bad
    with pytest.raises(ValueError, match=re.escape(message)):
        jax.jit(lambda *a: pa.decode(*a, **kwargs)).trace(*args)


def test_scalars_must_be_static():
    with pytest.raises(ValueError, match="window is fixed at trace time"):
        jax.jit(lambda *a: pa.decode(*a[:5], window=a[5])).trace(
            *operands(), spec((), jnp.int32))


def test_tree_mask_shape_is_checked():
    args = operands((B, 3, HQ, D))
    with pytest.raises(ValueError, match=re.escape("tree_mask must be bool "
                                                   "or int8 of shape (4, 3, "
                                                   "3)")):
        jax.eval_shape(lambda *a: pa.decode(
            *a[:5], tree_mask=a[5]), *args, spec((B, 3, 4), jnp.bool_))


def test_vmap_is_refused():
    args = [spec((2,) + s.shape, s.dtype) for s in operands()]
    with pytest.raises(Exception, match="vmap"):
        jax.eval_shape(jax.vmap(pa.decode), *args)


@pytest.mark.skipif(os.environ.get("PAGED_ATTN_EXPECT_XLA_FFI") != "1",
                    reason="the build was not asked for the XLA FFI handler")
def test_the_handler_is_built_and_registers():
    from paged_attn import _xla
    assert type(_xla.decode_handler()).__name__ == "PyCapsule"
    pa._register()  # for the CUDA platform; no GPU needed
