"""paged_attn.append without a GPU: the Spec's names and rules Python reads,
compile_append(), append()'s argument checks and their messages, and the
torch op's schema. Tensors are stand-ins exporting __cuda_array_interface__
(fp8 caches with a one-byte void typestr and a float8 dtype name), never
read: every call here fails before a kernel is looked up."""
import pytest

import paged_attn

from test_cpu import Cuda, needs_compiler

T, HKV, D, PAGE, PAGES = 5, 2, 64, 16, 100


def fp8(shape, name="float8_e4m3fn", ptr=1 << 41):
    t = Cuda(shape, "|V1", ptr=ptr)
    t.dtype = name
    return t


def cache_shape(layout="nhd", d=D, hkv=HKV):
    return (PAGES, PAGE, hkv, d) if layout == "nhd" else (PAGES, hkv, PAGE, d)


def inputs(layout="nhd", typestr="<f2", cache=None, t=T):
    """append()'s five tensors: f16 rows and caches (fp8 ones of `cache`,
    a float8 dtype name)."""
    shape = cache_shape(layout)
    if cache is None:
        k_cache = Cuda(shape, typestr, ptr=1 << 41)
        v_cache = Cuda(shape, typestr, ptr=1 << 42)
    else:
        k_cache = fp8(shape, cache, ptr=1 << 41)
        v_cache = fp8(shape, cache, ptr=1 << 42)
    return dict(k=Cuda((t, HKV, D), typestr),
                v=Cuda((t, HKV, D), typestr, ptr=1 << 43),
                slot_mapping=Cuda((t,), "<i8", ptr=1 << 44),
                k_cache=k_cache, v_cache=v_cache)


def call(layout="nhd", typestr="<f2", cache=None, **kw):
    a = inputs(layout, typestr, cache)
    a.update({n: kw.pop(n) for n in list(kw) if n in a})
    return paged_attn.append(a["k"], a["v"], a["slot_mapping"], a["k_cache"],
                             a["v_cache"], layout=layout, stream=0, **kw)


def f32(shape, ptr=1 << 46):
    return Cuda(shape, "<f4", ptr=ptr)


# ---------------------------------------------------------------------------
# The Spec's facts
# ---------------------------------------------------------------------------


def test_append_names_come_from_cpp():
    ext = paged_attn._ext
    assert ext.append_spec(8, 128, 16, "bf16", "nhd") == "kv8_d128_p16_bf16_nhd"
    assert ext.append_spec(8, 128, 16, "f16", "hnd", "f8e5m2", "token") == \
        "kv8_d128_p16_f16_hnd_f8e5m2_token"
    assert ext.append_spec(2, 64, 1, "bf16", "nhd", "f8e4m3fn", "tensor") == \
        "kv2_d64_p1_bf16_nhd_f8e4m3fn_tensor"
    assert "append" in paged_attn.__all__
    assert "compile_append" in paged_attn.__all__


def test_append_rules_reach_python():
    ext = paged_attn._ext
    with pytest.raises(ValueError, match="num_kv_heads must be at least 1, "
                                         "got 0"):
        ext.append_spec(0, 128, 16, "bf16", "nhd")
    with pytest.raises(ValueError, match="fp8 KV caches need f16 or bf16 'k' "
                                         "and 'v', got f32"):
        ext.append_spec(8, 128, 16, "f32", "nhd", "f8e4m3fn", "head")
    with pytest.raises(ValueError, match="kv_dtype and kv_scale go together"):
        ext.append_spec(8, 128, 16, "bf16", "nhd", "f8e4m3fn", None)
    with pytest.raises(ValueError, match="kv_dtype must be f8e4m3fn or "
                                         "f8e5m2, got 'bf16'"):
        ext.append_spec(8, 128, 16, "bf16", "nhd", "bf16", "head")
    with pytest.raises(ValueError, match="layout must be 'nhd' or 'hnd', got "
                                         "'xyz'"):
        ext.append_spec(8, 128, 16, "bf16", "xyz")
    with pytest.raises(ValueError, match="dtype must be f16, bf16 or f32"):
        ext.append_spec(8, 128, 16, "f64", "nhd")


def test_compile_append_needs_the_compiler():
    if paged_attn.has_compiler():
        pytest.skip("this build has the compiler")
    with pytest.raises(paged_attn.PagedAttnError, match="has no compiler"):
        paged_attn.compile_append(8, 128, 16)


@needs_compiler
def test_compile_append_returns_ptx_and_manifest():
    ptx, manifest = paged_attn.compile_append(
        8, 128, 16, dtype="bf16", layout="nhd", chip="sm_90",
        kv_dtype="f8e4m3fn", kv_scale="token")
    name = "paged_attn_append_kv8_d128_p16_bf16_nhd_f8e4m3fn_token"
    assert f".visible .entry {name}(" in ptx
    assert manifest["ptx"] == "append_kv8_d128_p16_bf16_nhd_f8e4m3fn_token.ptx"
    (entry,) = manifest["appends"]
    assert entry["config"]["kv_scale"] == "token"
    assert entry["append"]["name"] == name
    assert [p["name"] for p in entry["append"]["params"]] == [
        "k", "v", "slot_mapping", "k_cache", "v_cache", "k_scale", "v_scale"]
    assert entry["append"]["rows_per_cta"] >= 1


@needs_compiler
def test_compile_append_errors_carry_the_rule():
    with pytest.raises(ValueError, match="fp8 KV caches need f16 or bf16"):
        paged_attn.compile_append(8, 128, 16, dtype="f32",
                                  kv_dtype="f8e4m3fn", kv_scale="head")
    with pytest.raises(ValueError, match="unsupported chip 'sm_70'"):
        paged_attn.compile_append(8, 128, 16, chip="sm_70")


# ---------------------------------------------------------------------------
# append()'s arguments
# ---------------------------------------------------------------------------


def test_rejects_non_tensors():
    with pytest.raises(ValueError, match=r"k must be a CUDA tensor \(torch, or "
                                         r"an object with "
                                         r"__cuda_array_interface__"):
        call(k=[1, 2, 3])
    with pytest.raises(ValueError, match="slot_mapping must be a CUDA tensor"):
        call(slot_mapping=None)


def test_rejects_wrong_ranks():
    with pytest.raises(ValueError, match=r"k must have 3 dimensions, got shape "
                                         r"\(5, 128\)"):
        call(k=Cuda((T, HKV * D)))
    with pytest.raises(ValueError, match=r"slot_mapping must have 1 "
                                         r"dimensions, got shape \(5, 1\)"):
        call(slot_mapping=Cuda((T, 1), "<i8"))
    with pytest.raises(ValueError, match=r"v_cache must have 4 dimensions"):
        call(v_cache=Cuda((PAGES, PAGE, HKV * D)))


def test_rows_must_agree():
    with pytest.raises(ValueError, match=r"k must be float16, bfloat16 or "
                                         r"float32, got i32"):
        call(k=Cuda((T, HKV, D), "<i4"))
    with pytest.raises(ValueError, match=r"v must match k: f16 \(5, 2, 64\), "
                                         r"got f16 \(4, 2, 64\)"):
        call(v=Cuda((4, HKV, D)))
    with pytest.raises(ValueError, match=r"v must match k: f16 \(5, 2, 64\), "
                                         r"got f32 \(5, 2, 64\)"):
        call(v=Cuda((T, HKV, D), "<f4"))


def test_slot_mapping_is_int64_with_one_slot_per_token():
    with pytest.raises(ValueError, match="slot_mapping must be int64, got "
                                         "i32"):
        call(slot_mapping=Cuda((T,), "<i4"))
    with pytest.raises(ValueError, match=r"slot_mapping must have one slot per "
                                         r"token of k \(T = 5\), got shape "
                                         r"\(6,\)"):
        call(slot_mapping=Cuda((T + 1,), "<i8"))


def test_caches_must_match_the_rows():
    with pytest.raises(ValueError, match=r"k_cache dtype \(f32\) must equal "
                                         r"k's \(f16\)"):
        call(k_cache=Cuda(cache_shape(), "<f4"))
    with pytest.raises(ValueError, match=r"v_cache dtype \(f32\) must equal "
                                         r"k_cache's \(f16\)"):
        call(v_cache=Cuda(cache_shape(), "<f4"))
    with pytest.raises(ValueError, match="k_cache and v_cache shapes differ"):
        call(v_cache=Cuda((PAGES + 1, PAGE, HKV, D)))
    shape = cache_shape(d=128)
    with pytest.raises(ValueError, match=r"k has shape \(5, 2, 64\), expected "
                                         r"\[T, num_kv_heads, head_dim\] with "
                                         r"the caches' num_kv_heads 2 and "
                                         r"head_dim 128"):
        call(k_cache=Cuda(shape), v_cache=Cuda(shape))
    # The layout decides which dim is num_kv_heads: an nhd cache read as hnd
    # has 16 KV heads and pages of 2.
    with pytest.raises(ValueError, match="the caches' num_kv_heads 16"):
        paged_attn.append(**inputs("nhd"), layout="hnd", stream=0)
    with pytest.raises(ValueError, match="layout must be 'nhd' or 'hnd'"):
        call(layout="bshd")


def test_the_ops_rules_before_any_kernel():
    # Rows of 8 bytes (f16 x 4) break the 16-byte row rule.
    a = inputs()
    a["k"], a["v"] = Cuda((T, HKV, 4)), Cuda((T, HKV, 4))
    a["k_cache"] = Cuda((PAGES, PAGE, HKV, 4))
    a["v_cache"] = Cuda((PAGES, PAGE, HKV, 4))
    with pytest.raises(ValueError, match="multiple of 16 bytes"):
        paged_attn.append(**a, stream=0)


def test_all_tensors_on_one_device():
    torch = pytest.importorskip("torch")
    k = torch.zeros(T, HKV, D, dtype=torch.float16)
    with pytest.raises(ValueError, match="k must be a CUDA tensor, got device "
                                         "cpu"):
        call(k=k)
    slots = torch.zeros(T, dtype=torch.int64)
    with pytest.raises(ValueError, match="slot_mapping must be a CUDA tensor, "
                                         "got device cpu"):
        call(slot_mapping=slots)


# ---------------------------------------------------------------------------
# fp8 caches' scales
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
def test_fp8_caches_need_both_scales(name):
    with pytest.raises(ValueError, match=r"k_cache is f8e\w+, an fp8 cache: "
                                         r"k_scale and v_scale are required"):
        call(cache=name)
    with pytest.raises(ValueError, match="k_scale and v_scale go together: "
                                         "v_scale is missing"):
        call(cache=name, k_scale=0.5)


def test_scales_are_for_fp8_caches_only():
    with pytest.raises(ValueError, match=r"k_scale and v_scale are for fp8 "
                                         r"caches \(float8_e4m3fn, "
                                         r"float8_e5m2\); k_cache is f16"):
        call(k_scale=1.0, v_scale=1.0)


def test_fp8_rows_are_16_bit():
    with pytest.raises(ValueError, match="fp8 KV caches need f16 or bf16 'k' "
                                         "and 'v', got f32"):
        call(typestr="<f4", cache="float8_e4m3fn", k_scale=1.0, v_scale=1.0)


def test_fp8_caches_of_one_format():
    a = inputs(cache="float8_e4m3fn")
    a["v_cache"] = fp8(cache_shape(), "float8_e5m2", ptr=1 << 42)
    with pytest.raises(ValueError, match=r"v_cache dtype \(f8e5m2\) must equal "
                                         r"k_cache's \(f8e4m3fn\)"):
        paged_attn.append(**a, k_scale=1.0, v_scale=1.0, stream=0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_float_scales_are_finite_and_positive(bad):
    with pytest.raises(ValueError, match="k_scale must be finite and "
                                         "positive"):
        call(cache="float8_e4m3fn", k_scale=bad, v_scale=1.0)


def test_scale_shapes_follow_the_granularity():
    e4 = "float8_e4m3fn"
    with pytest.raises(ValueError, match=r"k_scale must be float32 of shape "
                                         r"\(2,\), got f32 \(3,\)"):
        call(cache=e4, k_scale=f32((3,)), v_scale=f32((3,), ptr=1 << 47))
    with pytest.raises(ValueError, match=r"v_scale must have k_scale's "
                                         r"granularity \(head\), got one per "
                                         r"token"):
        call(cache=e4, k_scale=f32((HKV,)),
             v_scale=f32((PAGES, PAGE, HKV), ptr=1 << 47))
    with pytest.raises(ValueError, match=r"k_scale must be a float or a "
                                         r"float32 tensor of shape"):
        call(cache=e4, k_scale=f32((PAGES, PAGE)),
             v_scale=f32((PAGES, PAGE), ptr=1 << 47))
    # Per token: the cache's first three dims, in the layout's order.
    with pytest.raises(ValueError, match=r"k_scale must be float32 of shape "
                                         r"\(100, 2, 16\), got f32 "
                                         r"\(100, 16, 2\)"):
        call(layout="hnd", cache=e4, k_scale=f32((PAGES, PAGE, HKV)),
             v_scale=f32((PAGES, PAGE, HKV), ptr=1 << 47))
    with pytest.raises(ValueError, match=r"v_scale must be float32 of shape "
                                         r"\(2,\), got f16 \(2,\)"):
        call(cache=e4, k_scale=f32((HKV,)),
             v_scale=Cuda((HKV,), "<f2", ptr=1 << 47))


def test_scale_objects_are_checked():
    with pytest.raises(ValueError, match=r"k_scale must be a positive float or "
                                         r"a float32 CUDA tensor"):
        call(cache="float8_e4m3fn", k_scale="1.0", v_scale=1.0)


# ---------------------------------------------------------------------------
# The torch op
# ---------------------------------------------------------------------------


def test_torch_op_mutates_the_caches():
    torch = pytest.importorskip("torch")
    if not hasattr(torch.library, "custom_op"):
        pytest.skip("torch < 2.4 has no torch.library.custom_op")
    schema = str(torch.ops.paged_attn.append.default._schema)
    assert schema.startswith("paged_attn::append(Tensor k, Tensor v, Tensor "
                             "slot_mapping, Tensor(")
    for name in ("k_cache", "v_cache", "k_scale", "v_scale"):
        arg = next(a for a in torch.ops.paged_attn.append.default._schema
                   .arguments if a.name == name)
        assert arg.alias_info is not None and arg.alias_info.is_write, name
    for name in ("k", "v", "slot_mapping"):
        arg = next(a for a in torch.ops.paged_attn.append.default._schema
                   .arguments if a.name == name)
        assert arg.alias_info is None, name
    assert schema.endswith("-> ()")
