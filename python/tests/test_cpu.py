"""What needs no GPU: the compile API, the kernel cache, argument checks and
their messages. Tensors are stand-ins exporting __cuda_array_interface__,
so torch is not needed (the checks that the torch path refuses CPU tensors
skip without it)."""
import inspect
import json
import os
import re

import pytest

import paged_attn

needs_compiler = pytest.mark.skipif(not paged_attn.has_compiler(),
                                    reason="this build has no compiler")


class Cuda:
    """A device array as far as __cuda_array_interface__ goes (never read)."""

    def __init__(self, shape, typestr="<f2", ptr=1 << 40, strides=None):
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": typestr, "data": (ptr, False),
            "strides": strides, "version": 3}


def inputs(batch=4, hq=32, hkv=8, d=128, page=16, pages=100, typestr="<f2"):
    return dict(q=Cuda((batch, hq, d), typestr),
                k_cache=Cuda((pages, page, hkv, d), typestr, ptr=1 << 41),
                v_cache=Cuda((pages, page, hkv, d), typestr, ptr=1 << 42),
                block_table=Cuda((batch, 10), "<i4", ptr=1 << 43),
                seq_lens=Cuda((batch,), "<i4", ptr=1 << 44),
                out=Cuda((batch, hq, d), typestr, ptr=1 << 45))


def arguments(kw):
    """inputs() with the tensors in `kw` replaced: (the five positional
    tensors, out, the other keyword arguments)."""
    args = inputs()
    extra = {k: kw.pop(k) for k in list(kw) if k not in args}
    args.update(kw)
    tensors = [args[n] for n in ("q", "k_cache", "v_cache", "block_table",
                                 "seq_lens")]
    return tensors, args["out"], extra


def call(**kw):
    tensors, out, extra = arguments(kw)
    return paged_attn.decode(*tensors, out=out, stream=0, **extra)


@needs_compiler
def test_compile_returns_ptx_and_manifest():
    ptx, manifest = paged_attn.compile(32, 8, 128, 16, dtype="bf16",
                                       layout="nhd", chip="sm_90")
    assert ".target sm_90" in ptx
    assert ".visible .entry paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4(" in ptx
    assert "ld.global.v4.b32" in ptx
    assert manifest["format"] == "paged_attn.manifest"
    assert manifest["ptx"] == "h32_kv8_d128_p16_bf16_nhd_w4.ptx"
    kernel = manifest["kernels"][0]
    assert kernel["config"]["num_heads"] == 32
    assert kernel["config"]["layout"] == "nhd"
    names = [p["name"] for p in kernel["decode"]["params"]]
    assert names[:6] == ["q", "k_cache", "v_cache", "block_table", "seq_lens",
                         "out"]


@needs_compiler
def test_compile_errors_carry_the_verifier_message():
    with pytest.raises(ValueError, match=r"num_heads \(30\) must be a multiple "
                                         r"of num_kv_heads \(8\)"):
        paged_attn.compile(30, 8, 128, 16)
    with pytest.raises(ValueError, match="dtype must be f16, bf16 or f32"):
        paged_attn.compile(32, 8, 128, 16, dtype="f64")
    with pytest.raises(ValueError, match="unsupported chip 'sm_70'"):
        paged_attn.compile(32, 8, 128, 16, chip="sm_70")


@needs_compiler
def test_kernel_cache_on_disk(_isolated_cache):
    args = (32, 8, 64, 16, "f16", "hnd")
    path = paged_attn._cached_manifest("h32_kv8_d64_p16_f16_hnd_w4", args,
                                       "sm_90")
    assert path.startswith(_isolated_cache)
    assert os.path.exists(path.replace(".json", ".ptx"))
    with open(path) as f:
        assert json.load(f)["kernels"][0]["config"]["head_dim"] == 64
    mtime = os.path.getmtime(path)
    again = paged_attn._cached_manifest("h32_kv8_d64_p16_f16_hnd_w4", args,
                                        "sm_90")
    assert again == path and os.path.getmtime(path) == mtime
    # The key holds the compiler version; nothing half-written stays.
    assert paged_attn._ext.compiler_version().startswith("PagedAttn")
    assert not [e for e in os.listdir(_isolated_cache) if e.startswith(".tmp")]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PAGED_ATTN_CACHE_DIR", str(tmp_path))
    assert paged_attn.cache_dir() == str(tmp_path)


def test_rejects_non_tensors():
    with pytest.raises(ValueError, match=r"q must be a CUDA tensor \(torch, or "
                                         r"an object with "
                                         r"__cuda_array_interface__ or "
                                         r"__dlpack__\), got list"):
        call(q=[1, 2, 3])


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"q must have 3 dimensions .* got shape "
                                         r"\(4, 4096\)"):
        call(q=Cuda((4, 4096)))


def test_multi_token_rules_before_any_kernel():
    # A q of rank 4 is [batch, L, heads, dim]: L is checked by the op's rule.
    with pytest.raises(ValueError, match=r"query_len \(17\) must be at most "
                                         r"16"):
        call(q=Cuda((4, 17, 32, 128)))
    with pytest.raises(ValueError, match=r"q must have 3 dimensions .* or 4 "
                                         r".* got shape \(4, 1, 2, 32, 128\)"):
        call(q=Cuda((4, 1, 2, 32, 128)))


def test_rejects_dtype_mismatch():
    with pytest.raises(ValueError, match=r"k_cache dtype \(f32\) must equal "
                                         r"q's \(f16\)"):
        call(k_cache=Cuda((100, 16, 8, 128), "<f4"))
    with pytest.raises(ValueError, match="block_table must be int32, got i64"):
        call(block_table=Cuda((4, 10), "<i8"))
    with pytest.raises(ValueError, match="seq_lens must be int32, got f32"):
        call(seq_lens=Cuda((4,), "<f4"))


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"num_heads \(30\) must be a multiple "
                                         r"of num_kv_heads \(8\)"):
        call(q=Cuda((4, 30, 128)), out=Cuda((4, 30, 128)))
    with pytest.raises(ValueError, match=r"k_cache head_dim \(64\) must equal "
                                         r"q's \(128\)"):
        call(k_cache=Cuda((100, 16, 8, 64)), v_cache=Cuda((100, 16, 8, 64)))
    with pytest.raises(ValueError, match="batch sizes disagree: q 4, "
                                         "block_table 3, seq_lens 4"):
        call(block_table=Cuda((3, 10), "<i4"))
    with pytest.raises(ValueError, match="out must match q"):
        call(out=Cuda((4, 32, 64)))
    with pytest.raises(ValueError, match="k_cache and v_cache shapes differ"):
        call(v_cache=Cuda((99, 16, 8, 128)))


def test_workspace_size_checks_the_rules_first():
    # Rule messages, not a missing kernel (or a compile attempt).
    a = inputs(hkv=3)
    with pytest.raises(ValueError, match=r"num_heads \(32\) must be a "
                                         r"multiple of num_kv_heads \(3\)"):
        paged_attn.workspace_size(a["q"], a["k_cache"], a["block_table"])
    a = inputs()
    with pytest.raises(ValueError, match=r"k_cache dtype \(bf16\) must equal "
                                         r"q's \(f32\)"):
        k = Cuda((100, 16, 8, 128), "<V2")
        k.dtype = "torch.bfloat16"
        paged_attn.workspace_size(Cuda((4, 32, 128), "<f4"), k,
                                  a["block_table"])
    with pytest.raises(ValueError, match=r"q must have 3 dimensions"):
        paged_attn.workspace_size(Cuda((4096,)), a["k_cache"],
                                  a["block_table"])


def test_out_is_required_for_cuda_arrays():
    a = inputs()
    with pytest.raises(ValueError, match="out is required unless q is a torch "
                                         "tensor"):
        paged_attn.decode(a["q"], a["k_cache"], a["v_cache"], a["block_table"],
                          a["seq_lens"], stream=0)


def test_rejects_bad_workspace():
    with pytest.raises(ValueError, match="workspace must be a CUDA buffer"):
        call(workspace=bytearray(16))


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="layout must be 'nhd' or 'hnd', got "
                                         "'nchw'"):
        call(layout="nchw")
    with pytest.raises(ValueError, match="scale must be finite and positive, "
                                         "got -1"):
        call(scale=-1.0)


def test_rejects_bad_host_seq_lens():
    # One length per sequence (4 here), each an int32 of at least 0, in
    # host memory: checked before a decoder is looked up.
    with pytest.raises(ValueError, match="host_seq_lens has 3 entries for a "
                                         "batch of 4"):
        call(host_seq_lens=[1, 2, 3])
    with pytest.raises(ValueError, match=r"host_seq_lens\[2\] must be an "
                                         r"integer in \[0, 2147483647\], got "
                                         r"-5"):
        call(host_seq_lens=[1, 2, -5, 3])
    with pytest.raises(ValueError, match=r"host_seq_lens\[0\] must be an "
                                         r"integer .* got 1.5"):
        call(host_seq_lens=[1.5, 2, 3, 4])
    with pytest.raises(ValueError, match="host_seq_lens must be a sequence of "
                                         "integers, got int"):
        call(host_seq_lens=4)
    with pytest.raises(ValueError, match="host_seq_lens must be in host "
                                         "memory"):
        call(host_seq_lens=Cuda((4,), "<i4"))


def test_host_seq_lens_read_without_python_agree_with_its_rules():
    # decode_torch and Decoder.decode read common containers of lengths
    # themselves: what they read must be what _host_seq_lens takes, and
    # they must leave to it everything else (which it refuses or converts).
    np = pytest.importorskip("numpy")
    read = paged_attn._ext.read_host_seq_lens
    big = 2**31 - 1
    taken = [[0, 5, big, 7], (1, 2, 3, 4), np.array([3, 0, 9, 1], np.int32),
             np.array([3, 0, big, 1], np.int64)]
    left = [[0, 5, 6], [1, 2, -3, 4], [1, 2, big + 1, 4], [True, 1, 2, 3],
            [1.0, 2, 3, 4], np.array([1, 2, 3, 4], np.float32),
            np.array([1, 2, 3, 4], np.uint16), np.array([[1, 2], [3, 4]]),
            np.array([1, -2, 3, 4]), np.arange(8, dtype=np.int32)[::2],
            range(4), 4, "1234", None]
    try:
        import torch
        taken += [torch.tensor([4, 0, 2, 1], dtype=torch.int32),
                  torch.tensor([4, 0, big, 1], dtype=torch.int64)]
        left += [torch.tensor([4, 0, 2, 1], dtype=torch.int16),
                 torch.tensor([4, -1, 2, 1]), torch.arange(8)[::2],
                 torch.tensor([1, 2, 3])]
    except ImportError:
        pass
    for lengths in taken:
        assert read(lengths, 4) == paged_attn._host_seq_lens(lengths, 4), \
            lengths
    for lengths in left:
        assert read(lengths, 4) is None, lengths
    # Left to Python, a range and a strided array are still taken there.
    assert paged_attn._host_seq_lens(range(4), 4) == [0, 1, 2, 3]
    assert paged_attn._host_seq_lens(np.arange(8)[::2], 4) == [0, 2, 4, 6]


def _kernels_available():
    return paged_attn.has_compiler() or os.environ.get("PAGED_ATTN_KERNEL_DIR")


@pytest.mark.skipif(not _kernels_available(), reason="no compiler, no kernels")
def test_runtime_checks_reach_python():
    # Misalignment is caught by the runtime before any GPU work.
    with pytest.raises(ValueError, match="k_cache data pointer is not 16-byte "
                                         "aligned"):
        call(k_cache=Cuda((100, 16, 8, 128), ptr=(1 << 41) + 2))
    with pytest.raises(ValueError, match="max_seq_len 161 exceeds the page "
                                         "table's capacity"):
        call(max_seq_len=161)


@pytest.mark.skipif(paged_attn.has_driver()[0] or not _kernels_available(),
                    reason="needs a machine without a CUDA driver")
def test_no_driver_is_a_clear_error():
    with pytest.raises(paged_attn.PagedAttnError, match="no CUDA driver"):
        call()


def plan(**kw):
    tensors, out, extra = arguments(kw)
    return paged_attn.DecodePlan(*tensors, out=out, **extra)


def test_plan_checks_its_tensors_when_made():
    with pytest.raises(ValueError, match="layout must be 'nhd' or 'hnd', got "
                                         "'nchw'"):
        plan(layout="nchw")
    with pytest.raises(ValueError, match="k_cache and v_cache shapes differ"):
        plan(v_cache=Cuda((99, 16, 8, 128)))
    a = inputs()
    with pytest.raises(ValueError, match="out is required unless q is a torch "
                                         "tensor"):
        paged_attn.DecodePlan(a["q"], a["k_cache"], a["v_cache"],
                              a["block_table"], a["seq_lens"])


@pytest.mark.skipif(not _kernels_available(), reason="no compiler, no kernels")
def test_plan_run_raises_what_decode_raises():
    # The runtime's own checks happen at every run, as in decode().
    misaligned = plan(k_cache=Cuda((100, 16, 8, 128), ptr=(1 << 41) + 2))
    with pytest.raises(ValueError, match="k_cache data pointer is not 16-byte "
                                         "aligned"):
        misaligned.run(stream=0)


def test_the_specs_facts_come_from_cpp():
    ext = paged_attn._ext
    assert ext.decode_spec(32, 8, 128, 16, "bf16", "nhd") == \
        "h32_kv8_d128_p16_bf16_nhd_w4"
    with pytest.raises(ValueError, match=r"head_dim \(264\) must be at most "
                                         r"256"):
        ext.decode_spec(32, 8, 264, 16, "bf16", "nhd")
    with pytest.raises(ValueError, match="does the cache use layout hnd"):
        ext.decode_spec(8, 16, 128, 16, "f16", "nhd")
    with pytest.raises(ValueError, match="layout must be 'nhd' or 'hnd', got "
                                         "None"):
        ext.decode_spec(32, 8, 128, 16, "bf16", None)
    assert ext.cache_dims("nhd") == (1, 2)
    assert ext.cache_dims("hnd") == (2, 1)
    assert ("bf16", 2, True) in ext.dtypes()
    assert ("i32", 4, False) in ext.dtypes()
    assert ext.chip_for_capability(9, 0) == "sm_90"
    assert ext.chip_for_capability(7, 5) is None
    assert "sm_80" in ext.supported_chips()


def test_rules_the_runtime_shares_reach_python_calls():
    # head_dim's bound and the row-byte rule are the Spec's, checked before
    # any kernel is looked up.
    with pytest.raises(ValueError, match=r"head_dim \(264\) must be at most "
                                         r"256"):
        call(q=Cuda((4, 32, 264)), k_cache=Cuda((100, 16, 8, 264)),
             v_cache=Cuda((100, 16, 8, 264)), out=Cuda((4, 32, 264)))
    with pytest.raises(ValueError, match=r"a row of head_dim \(36\) 'f16' "
                                         r"elements is 72 bytes"):
        call(q=Cuda((4, 32, 36)), k_cache=Cuda((100, 16, 8, 36)),
             v_cache=Cuda((100, 16, 8, 36)), out=Cuda((4, 32, 36)))
    # hnd keeps the KV heads in dim 1: the same cache read as hnd has 16.
    with pytest.raises(ValueError, match="does the cache use layout nhd"):
        call(layout="hnd", q=Cuda((4, 8, 128)), out=Cuda((4, 8, 128)))


def test_layout_that_is_not_a_string():
    with pytest.raises(ValueError, match="layout must be 'nhd' or 'hnd', got "
                                         "None"):
        call(layout=None)


def test_scale_must_be_a_number():
    # A string used to reach `scale > 0` and raise a bare TypeError.
    with pytest.raises(ValueError, match=r"scale must be a finite positive "
                                         r"number, got '0.1'"):
        call(scale="0.1")
    with pytest.raises(ValueError, match=r"scale must be a finite positive "
                                         r"number, got True"):
        call(scale=True)
    with pytest.raises(ValueError, match=r"scale must be a finite positive "
                                         r"number, got \[0.1\]"):
        call(scale=[0.1])
    with pytest.raises(ValueError, match="scale must be finite and positive, "
                                         "got inf"):
        call(scale=float("inf"))
    with pytest.raises(ValueError, match="scale must be finite and positive, "
                                         "got 0"):
        call(scale=0)
    assert paged_attn._scale_value(None) == 0.0
    assert paged_attn._scale_value(2) == 2.0
    assert paged_attn._scale_value(0.125) == 0.125


def test_scale_takes_numpy_scalars():
    np = pytest.importorskip("numpy")
    assert paged_attn._scale_value(np.float32(0.5)) == 0.5
    assert paged_attn._scale_value(np.float64(0.25)) == 0.25
    assert paged_attn._scale_value(np.int64(3)) == 3.0
    with pytest.raises(ValueError, match="scale must be finite and positive"):
        paged_attn._scale_value(np.float32("nan"))


def test_integer_options_are_checked():
    # Past int32 the runtime's binding raised a bare TypeError.
    with pytest.raises(ValueError, match=r"num_splits must be an integer in "
                                         r"\[0, 65535\], got 1099511627776"):
        call(num_splits=1 << 40)
    with pytest.raises(ValueError, match=r"num_splits must be an integer in "
                                         r"\[0, 65535\], got 2.0"):
        call(num_splits=2.0)
    # A negative bound used to mean the page table's capacity, silently.
    with pytest.raises(ValueError, match=r"max_seq_len must be an integer in "
                                         r"\[0, 9223372036854775807\], got -5"):
        call(max_seq_len=-5)
    a = inputs()
    with pytest.raises(ValueError, match=r"num_splits must be an integer in "
                                         r"\[0, 65535\], got 1048576"):
        paged_attn.workspace_size(a["q"], a["k_cache"], a["block_table"],
                                  num_splits=1 << 20)


def test_workspace_size_of_a_rank_1_q():
    a = inputs()
    with pytest.raises(ValueError, match=r"q must have 3 dimensions .* got shape "
                                         r"\(4096,\)"):
        paged_attn.workspace_size(Cuda((4096,)), a["k_cache"],
                                  a["block_table"], num_splits=2)


@pytest.mark.skipif(not _kernels_available(), reason="no compiler, no kernels")
def test_workspace_size_beyond_the_grid_is_an_error():
    # A size for a batch no launch takes used to be returned.
    a = inputs()
    with pytest.raises(ValueError, match="batch 70000 exceeds the grid limit "
                                         "of 65535 sequences per launch"):
        paged_attn.workspace_size(Cuda((70000, 32, 128)), a["k_cache"],
                                  Cuda((70000, 10), "<i4"), num_splits=2)
    assert paged_attn.workspace_size(a["q"], a["k_cache"], a["block_table"],
                                     num_splits=1) == 0


CONFIG = "h32_kv8_d64_p16_f16_hnd_w4"
CONFIG_ARGS = (32, 8, 64, 16, "f16", "hnd")


@needs_compiler
def test_cache_dir_that_is_a_file(monkeypatch, tmp_path):
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("")
    monkeypatch.setenv("PAGED_ATTN_CACHE_DIR", str(not_a_dir))
    monkeypatch.delenv("PAGED_ATTN_KERNEL_DIR", raising=False)
    message = (re.escape(f"the kernel cache '{not_a_dir}' "
                         f"($PAGED_ATTN_CACHE_DIR) is not a directory"))
    with pytest.raises(paged_attn.PagedAttnError, match=message):
        paged_attn._cached_manifest(CONFIG, CONFIG_ARGS, "sm_90")
    # And through a call that needs kernels (not a bare NotADirectoryError),
    # with no decoder left from an earlier test.
    monkeypatch.setattr(paged_attn, "_decoders", {})
    with pytest.raises(paged_attn.PagedAttnError, match=message):
        a = inputs()
        paged_attn.workspace_size(a["q"], a["k_cache"], a["block_table"],
                                  num_splits=2)


def _breakages():
    """Ways a cache entry is left broken: (name, what to do to its manifest
    and PTX paths)."""
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)
    return [
        ("empty manifest", lambda m, p: write(m, "")),
        ("truncated manifest", lambda m, p: write(m, open(m).read()[:100])),
        ("no manifest", lambda m, p: os.remove(m)),
        ("no PTX", lambda m, p: os.remove(p)),
        ("empty PTX", lambda m, p: write(p, "")),
        ("truncated PTX", lambda m, p: write(p, open(p).read()[:2000])),
    ]


@needs_compiler
@pytest.mark.parametrize("name,damage", _breakages(),
                         ids=[b[0] for b in _breakages()])
def test_broken_cache_entry_is_compiled_again(_isolated_cache, name, damage):
    path = paged_attn._cached_manifest(CONFIG, CONFIG_ARGS, "sm_90")
    ptx = path.replace(".json", ".ptx")
    damage(path, ptx)
    again = paged_attn._cached_manifest(CONFIG, CONFIG_ARGS, "sm_90")
    assert again == path
    with open(path) as f:
        assert json.load(f)["kernels"][0]["config"]["head_dim"] == 64
    assert ".entry" in open(ptx).read()
    paged_attn._ext.Library(path)  # loads
    left = [e for e in os.listdir(_isolated_cache) if e.startswith(".")]
    assert not left, left


@needs_compiler
def test_broken_cache_entry_without_a_compiler(_isolated_cache, monkeypatch):
    path = paged_attn._cached_manifest(CONFIG, CONFIG_ARGS, "sm_90")
    os.remove(path.replace(".json", ".ptx"))
    monkeypatch.setattr(paged_attn._ext, "has_compiler", lambda: False)
    entry = os.path.dirname(path)
    with pytest.raises(paged_attn.PagedAttnError,
                       match=re.escape(f"the kernel cache entry '{entry}' is "
                                       f"broken (cannot read PTX ") +
                       r".*\): delete it"):
        paged_attn._cached_manifest(CONFIG, CONFIG_ARGS, "sm_90")


@pytest.mark.skipif(not paged_attn.has_compiler(), reason="needs the compiler")
def test_variants_name_and_specialise_kernels():
    ptx, manifest = paged_attn.compile(32, 8, 128, 16, "bf16", "nhd",
                                       variants=("window", "sinks", "lse"))
    config = manifest["kernels"][0]["config"]
    assert config["name"] == "h32_kv8_d128_p16_bf16_nhd_w4_win_sinks_lse"
    assert config["window"] and config["sinks"] and config["lse"]
    assert "soft_cap" not in config and "alibi_slopes" not in config
    params = [p["name"] for p in manifest["kernels"][0]["decode"]["params"]]
    assert params[-3:] == ["window", "sinks", "lse"]
    assert ".entry paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4_win_sinks_lse(" in ptx
    # Plain decode keeps its name and manifest section.
    _, plain = paged_attn.compile(32, 8, 128, 16, "bf16", "nhd")
    assert "window" not in plain["kernels"][0]["config"]


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant 'windows'"):
        paged_attn._config_name(32, 8, 128, 16, "bf16", "nhd", 4, ("windows",))


def merge_inputs(n=2, batch=4, hq=32, d=128, typestr="<f2"):
    return dict(partial_out=Cuda((n, batch, hq, d), typestr),
                partial_lse=Cuda((n, batch, hq), "<f4", ptr=1 << 41),
                out=Cuda((batch, hq, d), typestr, ptr=1 << 42))


def merge(**kw):
    args = merge_inputs()
    args.update(kw)
    return paged_attn.merge(args.pop("partial_out"), args.pop("partial_lse"),
                            stream=0, **args)


def test_merge_checks_its_tensors_first():
    with pytest.raises(ValueError, match="partial_out must have 4 dimensions"):
        merge(partial_out=Cuda((4, 32, 128)))
    with pytest.raises(ValueError, match=r"partial_lse must be float32 of "
                                         r"shape \(2, 4, 32\)"):
        merge(partial_lse=Cuda((2, 4, 32), "<f2", ptr=1 << 41))
    with pytest.raises(ValueError, match=r"partial_lse must be float32 of "
                                         r"shape \(2, 4, 32\)"):
        merge(partial_lse=Cuda((3, 4, 32), "<f4", ptr=1 << 41))
    with pytest.raises(ValueError, match="partial_out must be float16, "
                                         "bfloat16 or float32, got i32"):
        merge(partial_out=Cuda((2, 4, 32, 128), "<i4"))
    # The op's rules, from the C++ Spec.
    with pytest.raises(ValueError, match=r"a row of head_dim \(4\) 'f16' "
                                         r"elements is 8 bytes"):
        merge(partial_out=Cuda((2, 4, 32, 4)), out=Cuda((4, 32, 4)))
    with pytest.raises(ValueError, match=r"out \(and lse with return_lse\) "
                                         r"are required unless partial_out "
                                         r"is a torch tensor"):
        merge(out=None)


@pytest.mark.skipif(not _kernels_available(), reason="no compiler, no kernels")
def test_merge_runtime_checks_reach_python():
    with pytest.raises(ValueError, match=r"out must be f16 of shape "
                                         r"\(4, 32, 128\)"):
        merge(out=Cuda((4, 32, 64), ptr=1 << 42))
    with pytest.raises(ValueError, match="sinks must be float32 of shape "
                                         r"\(32,\)"):
        merge(sinks=Cuda((32,), "<f2", ptr=1 << 43))
    with pytest.raises(ValueError, match="partial_out data pointer is not "
                                         "16-byte aligned"):
        merge(partial_out=Cuda((2, 4, 32, 128), ptr=(1 << 40) + 2))
    with pytest.raises(ValueError, match="partial_out must have unit stride "
                                         "in its last dimension, got 2"):
        merge(partial_out=Cuda((2, 4, 32, 128),
                               strides=(4 * 32 * 256 * 2, 32 * 256 * 2,
                                        256 * 2, 4)))


@needs_compiler
def test_compile_merge_returns_its_kernel():
    ptx, manifest = paged_attn.compile_merge(8, 64, "f16",
                                             variants=("sinks", "lse"))
    assert manifest["kernels"] == []
    merge_entry, = manifest["merges"]
    assert merge_entry["config"]["name"] == "h8_d64_f16_ln_sinks_lse"
    assert manifest["ptx"] == "merge_h8_d64_f16_ln_sinks_lse.ptx"
    assert ".visible .entry paged_attn_merge_op_h8_d64_f16_ln_sinks_lse(" in ptx
    with pytest.raises(ValueError, match="a merge has the sinks and lse "
                                         "variants only"):
        paged_attn.compile_merge(8, 64, variants=("window",))


@pytest.mark.skipif(paged_attn.has_driver()[0] or not paged_attn.has_compiler(),
                    reason="needs the compiler and no CUDA driver")
def test_merge_kernels_are_cached_on_first_use(_isolated_cache, monkeypatch):
    monkeypatch.setattr(paged_attn, "_mergers", {})
    with pytest.raises(paged_attn.PagedAttnError, match="no CUDA driver"):
        merge()
    entries = [e for e in os.listdir(_isolated_cache)
               if e.startswith("merge_h32_d128_f16_ln-sm_90-")]
    assert len(entries) == 1
    with open(os.path.join(_isolated_cache, entries[0],
                           "merge_h32_d128_f16_ln.json")) as f:
        assert json.load(f)["merges"][0]["config"]["num_heads"] == 32


# decode()'s keywords in the order decode_torch (and the checked path) take
# them, after the five tensors: out and workspace first.
DECODE_KEYWORDS = ("out", "workspace", "scale", "layout", "num_splits",
                   "max_seq_len", "check_page_table", "stream", "window",
                   "soft_cap", "alibi_slopes", "sinks", "return_lse", "lse",
                   "k_scale", "v_scale", "tree_mask", "host_seq_lens")


def decode_args(**kw):
    """decode()'s arguments for inputs() with `kw`, as one tuple in its
    order."""
    tensors, out, extra = arguments(kw)
    keywords = {p.name: p.default for p in
                inspect.signature(paged_attn.decode).parameters.values()
                if p.kind is p.KEYWORD_ONLY}
    keywords.update(extra, out=out, stream=0)
    return tuple(tensors) + tuple(keywords[n] for n in DECODE_KEYWORDS)


def test_every_keyword_reaches_the_extension():
    parameters = list(inspect.signature(paged_attn.decode).parameters)
    assert sorted(parameters[5:]) == sorted(DECODE_KEYWORDS)
    merge_parameters = list(inspect.signature(paged_attn.merge).parameters)
    assert merge_parameters == ["partial_out", "partial_lse", "sinks",
                                "return_lse", "out", "lse", "stream"]


def test_non_torch_tensors_take_the_checked_path():
    assert paged_attn._ext.decode_torch(*decode_args()) is None
    a = merge_inputs()
    assert paged_attn._ext.merge_torch(a["partial_out"], a["partial_lse"],
                                       None, False, a["out"], None,
                                       0) is None


def test_a_refused_call_gets_the_checked_paths_message():
    # The runtime refused a call on the torch path: Python's checks run
    # again, and their message is raised where they fail (as decode() did
    # before that path), not as a consequence of the runtime's error.
    refused = ValueError("refused by the runtime")
    with pytest.raises(ValueError, match=r"q must have 3 dimensions .* got "
                                         r"shape \(4, 4096\)") as e:
        paged_attn._call_checked(paged_attn._checked_decode,
                                 decode_args(q=Cuda((4, 4096))),
                                 refused=refused)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    with pytest.raises(ValueError, match="partial_out must have 4 "
                                         "dimensions"):
        a = merge_inputs()
        paged_attn._call_checked(
            paged_attn._checked_merge,
            (Cuda((4, 32, 128)), a["partial_lse"], None, False, a["out"],
             None, 0), refused=refused)


@pytest.mark.skipif(not _kernels_available(), reason="no compiler, no kernels")
def test_a_refused_call_that_passes_python_checks_is_the_runtimes_error():
    refused = ValueError("refused by the runtime")
    with pytest.raises(ValueError) as e:
        paged_attn._call_checked(paged_attn._checked_decode, decode_args(),
                                 refused=refused)
    assert e.value is refused  # and nothing launched: no driver error


def test_torch_path_never_takes_cpu_tensors():
    torch = pytest.importorskip("torch")
    q = torch.zeros(4, 32, 128, dtype=torch.bfloat16)
    k = torch.zeros(100, 16, 8, 128, dtype=torch.bfloat16)
    bt = torch.zeros(4, 10, dtype=torch.int32)
    sl = torch.zeros(4, dtype=torch.int32)
    if _kernels_available():
        # With the config's decoder made, too.
        paged_attn._decoder(32, 8, 128, 16, "bf16", "nhd")
    args = (q, k, k, bt, sl) + decode_args()[5:]
    assert paged_attn._ext.decode_torch(*args) is None
    with pytest.raises(ValueError, match="q must be a CUDA tensor, got device "
                                         "cpu"):
        paged_attn.decode(q, k, k, bt, sl)
    with pytest.raises(ValueError, match="k_cache must be a CUDA tensor, got "
                                         "device cpu"):
        paged_attn.decode(Cuda((4, 32, 128)), k, k, bt, sl,
                          out=Cuda((4, 32, 128)))
    partials = torch.zeros(2, 4, 32, 128, dtype=torch.bfloat16)
    lses = torch.zeros(2, 4, 32)
    assert paged_attn._ext.merge_torch(partials, lses, None, False, None,
                                       None, None) is None
    with pytest.raises(ValueError, match="partial_out must be a CUDA tensor, "
                                         "got device cpu"):
        paged_attn.merge(partials, lses)
