"""The transformers integration's CPU side: version pin, names, step kinds
and the argument mapping (block table from transformers' read index, new
tokens' cache rows, the fallback's mask) against transcriptions of
transformers 5.17.0's own code (cache_manager.FullAttentionCacheAllocator,
utils.build_attention_mask). Needs neither torch nor transformers; the
tests of the torch versions skip without torch, registration without
transformers."""
import os
import random
import re

import pytest

from paged_attn.integrations import transformers as pt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


# transformers 5.17.0, cache_manager.FullAttentionCacheAllocator, transcribed.
def tf_read_indices(blocks, past, query, bs):
    total = past + query
    out = []
    for b in range(total // bs):
        out.extend(range(blocks[b] * bs, blocks[b] * bs + bs))
    if total % bs:
        start = blocks[total // bs] * bs
        out.extend(range(start, start + total % bs))
    return out


def tf_write_indices(blocks, past, query, bs):
    start_block, start_offset = past // bs, past % bs
    end = past + query
    end_block = (end - 1) // bs
    out = []
    for b in range(start_block, end_block + 1):
        lo = start_offset if b == start_block else 0
        hi = (end - 1) % bs + 1 if b == end_block else bs
        out.extend(range(blocks[b] * bs + lo, blocks[b] * bs + hi))
    return out


# transformers 5.17.0, utils.build_attention_mask, transcribed (True =
# attended; the region of no sequence stays masked).
def tf_mask(cu_q, cu_k, num_q, num_k, window=1):
    m = [[False] * num_k for _ in range(num_q)]
    for s in range(len(cu_q) - 1):
        lq, lk = cu_q[s + 1] - cu_q[s], cu_k[s + 1] - cu_k[s]
        diag = lk - lq + 1 if (lq < lk and lq >= 1) else 1
        for r in range(lq):
            for c in range(lk):
                masked = c - r >= diag  # triu(diagonal=diag)
                if window > 1:
                    masked = masked or c - r <= lk - lq - window  # tril
                m[cu_q[s] + r][cu_k[s] + c] = not masked
    return m


def decode_step(rng, batch, bs, num_blocks):
    """Random full-attention decode step: per-sequence blocks, lengths,
    and the read/write indices transformers builds for it."""
    free = list(range(num_blocks))
    rng.shuffle(free)
    lens, tables, read, write, cu_k = [], [], [], [], [0]
    for _ in range(batch):
        n = rng.randint(1, 5 * bs)
        blocks = [free.pop() for _ in range(-(-n // bs))]
        lens.append(n)
        tables.append(blocks)
        read += tf_read_indices(blocks, n - 1, 1, bs)
        write += tf_write_indices(blocks, n - 1, 1, bs)
        cu_k.append(cu_k[-1] + n)
    return lens, tables, read, write, cu_k


def test_module_imports_without_torch_or_transformers():
    # The module's top level imports neither (checked by name: either may
    # be installed here).
    src = open(pt.__file__).read()
    top = src.split("\ndef ")[0]
    assert not re.search(r"^import (torch|transformers)", top, re.M)
    assert not re.search(r"^from (torch|transformers)", top, re.M)


@pytest.mark.parametrize("text,want", [
    ("5.17.0", (5, 17, 0)), ("5.17", (5, 17, 0)), ("5.17.1", (5, 17, 1)),
    ("5.17.0.dev0", (5, 17, 0)), ("5.18.0rc1", (5, 18, 0)),
    ("4.57.3", (4, 57, 3)), ("6", (6, 0, 0))])
def test_parse_version(text, want):
    assert pt.parse_version(text) == want


def test_parse_version_rejects():
    with pytest.raises(ValueError):
        pt.parse_version("dev")


@pytest.mark.parametrize("ok", ["5.17.0", "5.17.3", "5.17.0.dev0"])
def test_supported_versions(ok):
    pt.check_version(ok, environ={})


@pytest.mark.parametrize("bad", ["5.16.2", "5.18.0", "4.57.0", "6.0.0"])
def test_unsupported_versions(bad):
    with pytest.raises(pt.UnsupportedVersion, match=r">=5\.17\.0,<5\.18\.0"):
        pt.check_version(bad, environ={})
    pt.check_version(bad, environ={pt.ANY_VERSION_ENV: "1"})


def test_implementation_key():
    assert pt.implementation_key("paged_attn") == "paged|paged_attn"
    assert pt.implementation_key("paged|mine") == "paged|mine"
    for bad in ["", "paged|", "a/b", "a:b", "x|y", "my_flash", None]:
        with pytest.raises(ValueError):
            pt.implementation_key(bad)


def test_step_kind():
    assert pt.step_kind(32, 32, 1, False) == "decode"
    assert pt.step_kind(33, 32, 2, False) == "varlen"   # one prefill row
    assert pt.step_kind(64, 32, 64, False) == "varlen"  # padded (graphs)
    assert pt.step_kind(1, 1, 1, False) == "decode"
    assert pt.step_kind(300, 1, 300, False) == "varlen"  # a prefill
    assert pt.step_kind(0, 0, 0, False) == "varlen"
    # transformers' block table is a decode step by construction, padded
    # or not.
    assert pt.step_kind(64, 64, 1, True) == "decode"


def test_small_helpers():
    assert pt.layer_type(1) == "full_attention"
    assert pt.layer_type(None) == "full_attention"
    assert pt.layer_type(4096) == "sliding_attention"
    assert pt.pick({"full_attention": 3, "sliding_attention": 4},
                   "full_attention") == 3
    assert pt.pick(7, "full_attention") == 7
    assert pt.pages_for(1, 256) == 1
    assert pt.pages_for(256, 256) == 1
    assert pt.pages_for(257, 256) == 2
    assert pt.pages_for(0, 16) == 1


def test_kernel_config_of():
    llama = {"num_attention_heads": 32, "num_key_value_heads": 8,
             "head_dim": 128, "hidden_size": 4096}
    assert pt.kernel_config_of(llama) == {
        "num_heads": 32, "num_kv_heads": 8, "head_dim": 128,
        "page_size": 256, "dtype": "bf16", "layout": "nhd"}
    # No head_dim, no kv heads: hidden / heads and MHA, as transformers'
    # cache.find_head_dim and find_num_kv_heads read them.
    qwen2 = {"num_attention_heads": 28, "num_key_value_heads": 4,
             "hidden_size": 3584}
    assert pt.kernel_config_of(qwen2, 64, "torch.float16")["head_dim"] == 128
    assert pt.kernel_config_of(qwen2, 64, "torch.float16")["dtype"] == "f16"
    mha = {"num_attention_heads": 16, "hidden_size": 1024}
    assert pt.kernel_config_of(mha)["num_kv_heads"] == 16


@pytest.mark.parametrize("bs", [4, 16, 256])
def test_block_table_from_read_index(bs):
    rng = random.Random(bs)
    lens, tables, read, _, cu_k = decode_step(rng, 9, bs, 200)
    max_pages = pt.pages_for(max(lens), bs) + 1  # one column past all
    got = pt.block_table_from_read_index_ref(read, cu_k, bs, max_pages)
    for row, blocks in zip(got, tables):
        assert row[:len(blocks)] == blocks
        assert row[len(blocks):] == [0] * (max_pages - len(blocks))


@pytest.mark.parametrize("bs", [4, 16, 256])
def test_new_token_slots_are_transformers_write_indices(bs):
    rng = random.Random(bs)
    lens, tables, _, write, _ = decode_step(rng, 9, bs, 200)
    width = max(len(t) for t in tables) + 2
    padded = [t + [-1] * (width - len(t)) for t in tables]  # as transformers
    trash = 4242
    got = pt.new_token_slots_ref(padded + [[-1] * width], lens + [0], bs,
                                 trash)
    assert got == write + [trash]


CASES = [
    # cu_q, cu_k, window: prefills, a chunked prefill (past keys), decodes
    # mixed in, a sliding window.
    ([0, 5, 8, 9], [0, 5, 11, 18], 1),
    ([0, 3, 4, 4], [0, 7, 12, 12], 1),
    ([0, 4, 5, 9], [0, 4, 9, 15], 3),
    ([0, 1, 2], [0, 6, 3 + 6], 4),
    ([0, 6], [0, 6], 2),
]


@pytest.mark.parametrize("cu_q,cu_k,window", CASES)
def test_varlen_mask_is_build_attention_mask(cu_q, cu_k, window):
    num_q, num_k = cu_q[-1], cu_k[-1]
    assert (pt.varlen_mask_ref(cu_q, cu_k, num_q, num_k, window)
            == tf_mask(cu_q, cu_k, num_q, num_k, window))


def test_compile_kernels_script_lists_the_models_configs():
    """bench/compile-kernels.sh --transformers compiles what the test,
    example and bench need (transformers_testing.kernel_configs())."""
    script = os.path.join(ROOT, "bench", "compile-kernels.sh")
    if not os.path.exists(script):
        pytest.skip("not run from a checkout")
    from paged_attn.integrations import transformers_testing as tt
    text = open(script).read()
    block = text.split("--transformers)")[1].split(";;")[0]
    listed = set(re.findall(r'"(\d+ \d+ \d+ \d+ \w+)"', block))
    want = {f"{c['num_heads']} {c['num_kv_heads']} {c['head_dim']} "
            f"{c['page_size']} {c['dtype']}" for c in tt.kernel_configs()}
    assert listed == want


# --- the torch versions (skipped without torch) -----------------------------


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("bs", [4, 16, 256])
def test_torch_block_table_matches_reference(bs):
    torch = _torch()
    rng = random.Random(bs + 1)
    lens, _, read, _, cu_k = decode_step(rng, 7, bs, 120)
    max_pages = pt.pages_for(max(lens), bs)
    want = pt.block_table_from_read_index_ref(read, cu_k, bs, max_pages)
    table, seq_lens = pt.block_table_from_read_index(
        torch, torch.tensor(read, dtype=torch.int64),
        torch.tensor(cu_k + [cu_k[-1]] * 3, dtype=torch.int32), 7, bs,
        max_pages)
    assert table.dtype == torch.int32 and seq_lens.dtype == torch.int32
    assert table.tolist() == want
    assert seq_lens.tolist() == lens


def test_torch_new_token_slots_match_reference():
    torch = _torch()
    rng = random.Random(5)
    lens, tables, _, write, _ = decode_step(rng, 6, 16, 80)
    width = max(len(t) for t in tables) + 1
    padded = [t + [-1] * (width - len(t)) for t in tables] + [[-1] * width]
    got = pt.new_token_slots(torch, torch.tensor(padded, dtype=torch.int32),
                             torch.tensor(lens + [0], dtype=torch.int32), 16,
                             999)
    assert got.dtype == torch.int64
    assert got.tolist() == write + [999]


@pytest.mark.parametrize("cu_q,cu_k,window", CASES)
def test_torch_mask_matches_reference(cu_q, cu_k, window):
    torch = _torch()
    num_q, num_k = cu_q[-1] + 2, cu_k[-1] + 3  # rows/columns of no sequence
    m = pt.varlen_mask(torch, torch.tensor(cu_q, dtype=torch.int32),
                       torch.tensor(cu_k, dtype=torch.int32), num_q, num_k,
                       window, torch.bfloat16)
    assert m.shape == (1, 1, num_q, num_k) and m.dtype == torch.bfloat16
    low = torch.finfo(torch.bfloat16).min
    assert set(m.unique().tolist()) <= {0.0, low}
    assert (m[0, 0] == 0).tolist() == pt.varlen_mask_ref(cu_q, cu_k, num_q,
                                                         num_k, window)


def test_register_with_transformers():
    _torch()
    tf = pytest.importorskip("transformers")
    try:
        pt.check_version(tf.__version__)
    except pt.UnsupportedVersion as e:
        with pytest.raises(pt.UnsupportedVersion):
            pt.register()
        pytest.skip(str(e))
    from transformers.modeling_utils import AttentionInterface
    from transformers.generation.continuous_batching import initialization
    key = pt.register("paged_attn_cpu_test")
    assert key == "paged|paged_attn_cpu_test"
    assert key in AttentionInterface._global_mapping
    assert "paged_attn_cpu_test" in AttentionInterface._global_mapping
    fn = initialization.ensure_decode_fast_path_is_available
    assert getattr(fn, "_paged_attn_wrapper", False)
    pt.register("paged_attn_cpu_test")  # idempotent: wrapped once
    assert initialization.ensure_decode_fast_path_is_available is fn
