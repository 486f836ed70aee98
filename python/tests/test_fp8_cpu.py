"""fp8 KV caches without a GPU: the Spec's facts Python reads, compile()'s
kv_dtype and kv_scale, decode()'s and workspace_size()'s argument checks on
k_scale and v_scale and their messages, the torch ops' schema and
paged_attn.jax's lowering. Caches are stand-ins exporting
__cuda_array_interface__ with a one-byte void typestr and a float8 dtype
name (as arrays of ml_dtypes' float8 types describe themselves)."""
import json
import re

import pytest

import paged_attn

from test_cpu import Cuda, needs_compiler, _kernels_available

pytestmark = pytest.mark.usefixtures("fp8_kernels")

# A shape of the GPU test matrix's fp8 set (each granularity, f8e4m3fn):
# the calls that get to the runtime find their kernels there too.
B, HQ, HKV, D, PAGE, PAGES = 4, 8, 2, 64, 16, 100


def fp8(shape, name="float8_e4m3fn", ptr=1 << 41):
    t = Cuda(shape, "|V1", ptr=ptr)
    t.dtype = name
    return t


def cache(layout="nhd", name="float8_e4m3fn", d=D, ptr=1 << 41):
    shape = (PAGES, PAGE, HKV, d) if layout == "nhd" else (PAGES, HKV, PAGE, d)
    return fp8(shape, name, ptr)


def f32(shape, ptr=1 << 46):
    return Cuda(shape, "<f4", ptr=ptr)


def inputs(layout="nhd", name="float8_e4m3fn", typestr="<f2", d=D):
    return dict(q=Cuda((B, HQ, d), typestr),
                k_cache=cache(layout, name, d),
                v_cache=cache(layout, name, d, ptr=1 << 42),
                block_table=Cuda((B, 10), "<i4", ptr=1 << 43),
                seq_lens=Cuda((B,), "<i4", ptr=1 << 44),
                out=Cuda((B, HQ, d), typestr, ptr=1 << 45))


def call(layout="nhd", name="float8_e4m3fn", typestr="<f2", d=D, **kw):
    a = inputs(layout, name, typestr, d)
    a.update({k: kw.pop(k) for k in list(kw) if k in a})
    tensors = [a[n] for n in ("q", "k_cache", "v_cache", "block_table",
                              "seq_lens")]
    return paged_attn.decode(*tensors, out=a["out"], stream=0, layout=layout,
                             **kw)


def head_scales():
    return dict(k_scale=f32((HKV,)), v_scale=f32((HKV,), ptr=1 << 47))


def test_the_specs_fp8_facts_come_from_cpp():
    ext = paged_attn._ext
    assert ("f8e4m3fn", 1, False) in ext.dtypes()
    assert ("f8e5m2", 1, False) in ext.dtypes()
    assert ext.quantized_cache_dtypes() == ["f8e4m3fn", "f8e5m2"]
    assert paged_attn._KV_SCALE_KINDS == {0: "tensor", 1: "head", 3: "token"}
    assert ext.kv_scale_shape("tensor", 8, 16, "nhd", 100) == []
    assert ext.kv_scale_shape("head", 8, 16, "hnd", 100) == [8]
    assert ext.kv_scale_shape("token", 8, 16, "nhd", 100) == [100, 16, 8]
    assert ext.kv_scale_shape("token", 8, 16, "hnd", 100) == [100, 8, 16]
    assert ext.decode_spec(32, 8, 128, 16, "bf16", "nhd", 4, [], 1,
                           "f8e4m3fn", "token") == \
        "h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_token"
    assert ext.decode_spec(32, 8, 128, 16, "f16", "hnd", 4, ["sinks"], 4,
                           "f8e5m2", "head") == \
        "h32_kv8_d128_p16_f16_hnd_w4_l4_f8e5m2_head_sinks"


def test_the_specs_fp8_rules_reach_python():
    ext = paged_attn._ext
    with pytest.raises(ValueError, match="kv_dtype and kv_scale go together: "
                                         "a quantised cache needs both, got "
                                         "only kv_dtype"):
        ext.decode_spec(32, 8, 128, 16, "bf16", "nhd", 4, [], 1, "f8e4m3fn")
    with pytest.raises(ValueError, match="got only kv_scale"):
        ext.decode_spec(32, 8, 128, 16, "bf16", "nhd", kv_scale="head")
    with pytest.raises(ValueError, match="kv_dtype must be f8e4m3fn or "
                                         "f8e5m2, got 'f16'"):
        ext.decode_spec(32, 8, 128, 16, "bf16", "nhd", kv_dtype="f16",
                        kv_scale="head")
    with pytest.raises(ValueError, match="kv_scale must be tensor, head or "
                                         "token, got 'row'"):
        ext.decode_spec(32, 8, 128, 16, "bf16", "nhd", kv_dtype="f8e5m2",
                        kv_scale="row")
    with pytest.raises(ValueError, match="fp8 KV caches need an f16 or bf16 "
                                         "'q', got f32"):
        ext.decode_spec(32, 8, 128, 16, "f32", "nhd", kv_dtype="f8e5m2",
                        kv_scale="tensor")
    # A row of fp8 head_dim 8 is 8 bytes (q's f16 row is 16).
    with pytest.raises(ValueError, match=r"a row of head_dim \(8\) 'f8e4m3fn' "
                                         r"elements is 8 bytes"):
        ext.decode_spec(32, 8, 8, 16, "f16", "nhd", kv_dtype="f8e4m3fn",
                        kv_scale="tensor")


@needs_compiler
def test_compile_takes_kv_dtype_and_kv_scale():
    ptx, manifest = paged_attn.compile(32, 8, 128, 16, "bf16", "hnd",
                                       kv_dtype="f8e5m2", kv_scale="token")
    kernel = manifest["kernels"][0]
    config = kernel["config"]
    assert config["name"] == "h32_kv8_d128_p16_bf16_hnd_w4_f8e5m2_token"
    assert config["kv_dtype"] == "f8e5m2" and config["kv_scale"] == "token"
    assert manifest["ptx"] == config["name"] + ".ptx"
    params = {p["name"]: p for p in kernel["decode"]["params"]}
    assert [p["name"] for p in kernel["decode"]["params"]][-2:] == \
        ["k_scale", "v_scale"]
    assert params["k_scale"]["rank"] == 3
    assert params["k_cache"]["element_type"].lower() == "f8e5m2"
    assert ".entry paged_attn_decode_" + config["name"] + "(" in ptx
    with pytest.raises(ValueError, match="kv_dtype and kv_scale go together"):
        paged_attn.compile(32, 8, 128, 16, kv_dtype="f8e5m2")
    with pytest.raises(ValueError, match="fp8 KV caches need an f16 or bf16 "
                                         "'q', got f32"):
        paged_attn.compile(32, 8, 128, 16, "f32", kv_dtype="f8e5m2",
                           kv_scale="head")


@needs_compiler
def test_fp8_kernels_are_cached_by_config(_isolated_cache):
    args = (32, 8, 64, 16, "f16", "nhd", (), 1, ("f8e4m3fn", "head"))
    name = "h32_kv8_d64_p16_f16_nhd_w4_f8e4m3fn_head"
    path = paged_attn._cached_manifest(name, args, "sm_90")
    with open(path) as f:
        config = json.load(f)["kernels"][0]["config"]
    assert config["name"] == name and config["kv_scale"] == "head"


def test_an_fp8_cache_needs_both_scales():
    with pytest.raises(ValueError, match=r"k_cache is f8e4m3fn, an fp8 "
                                         r"cache: k_scale and v_scale are "
                                         r"required, each a float or a "
                                         r"float32 tensor of shape \[\] "
                                         r"\(per tensor\), \[num_kv_heads\] "
                                         r"\(per head\) or the cache's first "
                                         r"three dims"):
        call()
    with pytest.raises(ValueError, match="k_scale and v_scale go together: "
                                         "v_scale is missing"):
        call(k_scale=0.5)
    with pytest.raises(ValueError, match="k_scale and v_scale go together: "
                                         "k_scale is missing"):
        call(v_scale=f32((HKV,)))


def test_scales_are_for_fp8_caches_only():
    a = inputs()
    with pytest.raises(ValueError, match=r"k_scale and v_scale are for fp8 "
                                         r"caches \(float8_e4m3fn, "
                                         r"float8_e5m2\); k_cache is f16"):
        call(k_cache=Cuda(a["k_cache"].__cuda_array_interface__["shape"]),
             v_cache=Cuda(a["v_cache"].__cuda_array_interface__["shape"]),
             k_scale=0.5, v_scale=0.5)


def test_scale_values_and_types():
    with pytest.raises(ValueError, match="k_scale must be finite and "
                                         "positive, got -1.0"):
        call(k_scale=-1.0, v_scale=1.0)
    with pytest.raises(ValueError, match="v_scale must be finite and "
                                         "positive, got nan"):
        call(k_scale=1.0, v_scale=float("nan"))
    with pytest.raises(ValueError, match="k_scale must be finite and "
                                         "positive, got 0"):
        call(k_scale=0, v_scale=1.0)
    for bad, shown in (("0.5", "str"), (True, "bool"), ([0.5], "list")):
        with pytest.raises(ValueError, match=rf"k_scale must be a positive "
                                             rf"float or a float32 CUDA "
                                             rf"tensor of shape .* got "
                                             rf"{shown}"):
            call(k_scale=bad, v_scale=1.0)


def test_scale_shapes_name_the_granularities():
    with pytest.raises(ValueError, match=r"k_scale must be a float or a "
                                         r"float32 tensor of shape \[\] .* "
                                         r"got shape \(2, 16\)"):
        call(k_scale=f32((HKV, 16)), v_scale=f32((HKV, 16)))
    with pytest.raises(ValueError, match=r"v_scale must have k_scale's "
                                         r"granularity \(head\), got one per "
                                         r"tensor"):
        call(k_scale=f32((HKV,)), v_scale=0.5)
    with pytest.raises(ValueError, match=r"v_scale must have k_scale's "
                                         r"granularity \(token\), got one per "
                                         r"head"):
        call(k_scale=f32((PAGES, PAGE, HKV)), v_scale=f32((HKV,)))
    with pytest.raises(ValueError, match=r"k_scale must be float32 of shape "
                                         r"\(2,\), got f16 \(2,\)"):
        call(k_scale=Cuda((HKV,), "<f2", ptr=1 << 46), v_scale=f32((HKV,)))
    with pytest.raises(ValueError, match=r"k_scale must be float32 of shape "
                                         r"\(2,\), got f32 \(1,\)"):
        call(k_scale=f32((HKV - 1,)), v_scale=f32((HKV - 1,)))
    # Per token: the cache's first three dims, in its layout's order.
    with pytest.raises(ValueError, match=r"v_scale must be float32 of shape "
                                         r"\(100, 16, 2\), got f32 "
                                         r"\(99, 16, 2\)"):
        call(k_scale=f32((PAGES, PAGE, HKV)),
             v_scale=f32((PAGES - 1, PAGE, HKV)))
    with pytest.raises(ValueError, match=r"k_scale must be float32 of shape "
                                         r"\(100, 2, 16\), got f32 "
                                         r"\(100, 16, 2\)"):
        call("hnd", k_scale=f32((PAGES, PAGE, HKV)),
             v_scale=f32((PAGES, HKV, PAGE)))
    with pytest.raises(ValueError, match=r"k_scale must be float32 of shape "
                                         r"\(\), got i32 \(\)"):
        call(k_scale=Cuda((), "<i4", ptr=1 << 46), v_scale=0.5)


def test_cache_dtypes_and_q():
    a = inputs()
    with pytest.raises(ValueError, match=r"v_cache dtype \(f16\) must equal "
                                         r"k_cache's \(f8e4m3fn\)"):
        call(v_cache=Cuda((PAGES, PAGE, HKV, D), ptr=1 << 42),
             **head_scales())
    with pytest.raises(ValueError, match=r"v_cache dtype \(f8e5m2\) must "
                                         r"equal k_cache's \(f8e4m3fn\)"):
        call(v_cache=cache(name="float8_e5m2", ptr=1 << 42), **head_scales())
    with pytest.raises(ValueError, match="fp8 KV caches need an f16 or bf16 "
                                         "'q', got f32"):
        call(typestr="<f4", **head_scales())
    with pytest.raises(ValueError, match=r"a row of head_dim \(8\) "
                                         r"'f8e4m3fn' elements is 8 bytes"):
        call(d=8, **head_scales())
    # float8_e4m3fnuz is no dtype of the runtime.
    with pytest.raises(ValueError, match=r"k_cache has typestr '\|V1'"):
        call(k_cache=cache(name="float8_e4m3fnuz"), **head_scales())
    assert a["k_cache"].dtype == "float8_e4m3fn"


def test_plan_checks_the_scales_when_made():
    a = inputs()
    tensors = [a[n] for n in ("q", "k_cache", "v_cache", "block_table",
                              "seq_lens")]
    with pytest.raises(ValueError, match="an fp8 cache: k_scale and v_scale "
                                         "are required"):
        paged_attn.DecodePlan(*tensors, out=a["out"])
    with pytest.raises(ValueError, match=r"k_scale must be float32 of shape "
                                         r"\(2,\)"):
        paged_attn.DecodePlan(*tensors, out=a["out"], k_scale=f32((3,)),
                              v_scale=f32((3,)))


def test_workspace_size_needs_the_granularity():
    a = inputs()
    with pytest.raises(ValueError, match=r"k_cache is f8e4m3fn, an fp8 cache: "
                                         r"kv_scale must name its scales' "
                                         r"granularity \('tensor', 'head' or "
                                         r"'token'\)"):
        paged_attn.workspace_size(a["q"], a["k_cache"], a["block_table"])
    with pytest.raises(ValueError, match=r"kv_scale is for fp8 caches "
                                         r"\(float8_e4m3fn, float8_e5m2\); "
                                         r"k_cache is f16"):
        paged_attn.workspace_size(a["q"], Cuda((PAGES, PAGE, HKV, D)),
                                  a["block_table"], kv_scale="head")
    with pytest.raises(ValueError, match="kv_scale must be tensor, head or "
                                         "token, got 'row'"):
        paged_attn.workspace_size(a["q"], a["k_cache"], a["block_table"],
                                  kv_scale="row")


@pytest.mark.skipif(not _kernels_available(), reason="no compiler, no kernels")
def test_runtime_checks_reach_python_for_fp8():
    # The runtime's own checks of the scales (here: alignment) after
    # Python's.
    with pytest.raises(ValueError, match="k_scale data pointer is not 4-byte "
                                         "aligned"):
        call(k_scale=f32((HKV,), ptr=(1 << 46) + 2), v_scale=f32((HKV,)))
    assert paged_attn.workspace_size(
        inputs()["q"], inputs()["k_cache"], inputs()["block_table"],
        num_splits=1, kv_scale="token") == 0


@pytest.mark.skipif(paged_attn.has_driver()[0] or not _kernels_available(),
                    reason="needs a machine without a CUDA driver")
def test_float_scales_without_a_gpu():
    # A float is put on the GPU after every check has passed: here, with no
    # GPU to put it on, that fails clearly.
    try:
        import torch  # noqa: F401
        error, message = paged_attn.PagedAttnError, "k_scale: cannot put 0.5 "
    except ImportError:
        error, message = ValueError, "k_scale given as a float needs torch"
    with pytest.raises(error, match=message):
        call(k_scale=0.5, v_scale=0.25)


def test_a_refused_call_gets_the_checked_paths_fp8_message():
    from test_cpu import DECODE_KEYWORDS
    a = inputs()
    args = ([a[n] for n in ("q", "k_cache", "v_cache", "block_table",
                            "seq_lens")] +
            [dict(out=a["out"], scale=None, layout="nhd", num_splits=0,
                  check_page_table=False, stream=0,
                  return_lse=False).get(k) for k in DECODE_KEYWORDS])
    assert len(args) == 23
    assert paged_attn._ext.decode_torch(*args) is None  # not torch tensors
    refused = ValueError("refused by the runtime")
    with pytest.raises(ValueError, match="an fp8 cache: k_scale and v_scale "
                                         "are required"):
        paged_attn._call_checked(paged_attn._checked_decode, tuple(args),
                                 refused=refused)


def test_torch_knows_the_fp8_dtypes():
    torch = pytest.importorskip("torch")
    names = paged_attn._torch_dtype_names()
    assert names[torch.float8_e4m3fn] == "f8e4m3fn"
    assert names[torch.float8_e5m2] == "f8e5m2"
    k = torch.zeros(PAGES, PAGE, HKV, D, dtype=torch.float8_e4m3fn)
    q = torch.zeros(B, HQ, D, dtype=torch.bfloat16)
    bt = torch.zeros(B, 10, dtype=torch.int32)
    sl = torch.zeros(B, dtype=torch.int32)
    with pytest.raises(ValueError, match="k_cache must be a CUDA tensor, got "
                                         "device cpu"):
        paged_attn.decode(Cuda((B, HQ, D)), k, k, bt, sl,
                          out=Cuda((B, HQ, D)), k_scale=0.5, v_scale=0.5)
    with pytest.raises(ValueError, match="k_scale must be a CUDA tensor, got "
                                         "device cpu"):
        call(k_scale=torch.ones(HKV), v_scale=torch.ones(HKV))
    assert paged_attn._scale_kind(torch.ones(())) == "tensor"
    assert paged_attn._scale_kind(torch.ones(HKV)) == "head"
    assert paged_attn._scale_kind(torch.ones(2, 3, 4)) == "token"
    assert paged_attn._scale_kind(torch.ones(2, 3)) is None
    assert paged_attn._scale_kind(0.5) == "tensor"
    del q


def test_torch_ops_take_the_scales():
    torch = pytest.importorskip("torch")
    if not hasattr(torch.library, "custom_op"):
        pytest.skip("torch without torch.library.custom_op")
    for op in (torch.ops.paged_attn.decode,
               torch.ops.paged_attn.decode_with_lse):
        schema = str(op.default._schema)
        assert re.search(r"Tensor\? sinks=None, Tensor\? k_scale=None, "
                         r"Tensor\? v_scale=None\)", schema), schema


@needs_compiler
def test_jax_lowers_fp8_caches_with_their_scales():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    pa = pytest.importorskip("paged_attn.jax")
    from test_jax_cpu import attribute, custom_call, spec
    cache_shape = (64, PAGE, HKV, D)
    args = (spec((B, HQ, D)), spec(cache_shape, jnp.float8_e4m3fn),
            spec(cache_shape, jnp.float8_e4m3fn), spec((B, 8), jnp.int32),
            spec((B,), jnp.int32), spec((64, PAGE, HKV), jnp.float32),
            spec((64, PAGE, HKV), jnp.float32))

    def fn(q, k, v, bt, sl, ks, vs):
        return pa.decode(q, k, v, bt, sl, k_scale=ks, v_scale=vs,
                         sinks=jnp.zeros(HQ, jnp.float32))

    line = custom_call(fn, *args)
    assert attribute(line, "kv_dtype") == '"f8e4m3fn"'
    assert attribute(line, "kv_scale") == '"token"'
    assert f"h{HQ}_kv{HKV}_d{D}_p{PAGE}_bf16_nhd_w4_f8e4m3fn_token_sinks" \
        in attribute(line, "kernels")
    # The scales after the variants' tensors, in the Spec's order.
    cache_type = f"tensor<64x{PAGE}x{HKV}x{D}xf8E4M3FN>"
    scale_type = f"tensor<64x{PAGE}x{HKV}xf32>"
    assert (f"{cache_type}, {cache_type}, tensor<{B}x8xi32>, "
            f"tensor<{B}xi32>, tensor<{HQ}xf32>, {scale_type}, "
            f"{scale_type}) ->") in line
    # A float is a constant operand of shape [].
    line = custom_call(lambda *a: pa.decode(*a, k_scale=0.5, v_scale=0.25),
                       *args[:5])
    assert attribute(line, "kv_scale") == '"tensor"'
    assert "tensor<f32>, tensor<f32>) ->" in line
    with pytest.raises(ValueError, match="k_scale and v_scale are required"):
        jax.eval_shape(pa.decode, *args[:5])
    with pytest.raises(ValueError, match=rf"k_scale must be float32 of "
                                         rf"shape \(64, {PAGE}, {HKV}\)"):
        jax.eval_shape(lambda *a: pa.decode(*a[:5], k_scale=a[5][:-1],
                                            v_scale=a[6]), *args)
