"""transformers' continuous batching with PagedAttn against transformers' own
paged SDPA, on random seeded models (Llama 32/8 heads D=128, Qwen2 28/4
D=128, Qwen3 MHA 16/16 D=64): 32 prompts of 8..600 tokens, 128 greedy
tokens each, every run's batches the same.

Per model, three runs: paged|sdpa (the reference), paged|paged_attn
(decode steps on transformers' block table) and paged|paged_attn_index
(decode steps on the block table derived from the read index, each call
also run through transformers' SDPA and compared). Passes when
- every request completes, PagedAttn served decode steps on both paths;
- PagedAttn's decode output is within ATTENTION_TOLERANCE of SDPA's on the
  same calls (the direct check);
- where a sequence's tokens diverge from the reference, the two tokens were
  a near-tie there: their logits under a standard forward of the same
  model differ by at most TIE_TOLERANCE standard deviations of that
  position's logits (bf16 rounding can flip those; a wrong attention picks
  a token far down). How many diverge, and where, is printed (pytest -s)
  and written to $PAGED_ATTN_TRANSFORMERS_RESULTS/<model>.json when set.

Skipped without torch, transformers 5.17.x, a GPU, or kernels (a compiler
build, or $PAGED_ATTN_KERNEL_DIR from bench/compile-kernels.sh DIR
--transformers).
"""
import json
import os

import pytest

import paged_attn

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from paged_attn.integrations import transformers as pt  # noqa: E402
from paged_attn.integrations import transformers_testing as tt  # noqa: E402


def _supported():
    try:
        pt.check_version(transformers.__version__)
        return True
    except pt.UnsupportedVersion:
        return False


pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available()
                       or not paged_attn.has_driver()[0],
                       reason="needs a CUDA GPU"),
    pytest.mark.skipif(not _supported(),
                       reason=f"needs transformers {pt.SUPPORTED}"),
    pytest.mark.skipif(not paged_attn.has_compiler()
                       and not os.environ.get("PAGED_ATTN_KERNEL_DIR"),
                       reason="needs kernels: a compiler build or "
                              "PAGED_ATTN_KERNEL_DIR"),
]


def _missing_kernels(name):
    """The configs of model `name` that $PAGED_ATTN_KERNEL_DIR lacks (none
    with a compiler build, which compiles them)."""
    directory = os.environ.get("PAGED_ATTN_KERNEL_DIR")
    if paged_attn.has_compiler() or not directory:
        return []
    have = set()
    for entry in os.listdir(directory):
        if entry.endswith(".json"):
            with open(os.path.join(directory, entry)) as f:
                have.update(k["config"]["name"]
                            for k in json.load(f).get("kernels", []))
    need = [paged_attn._config_name(c["num_heads"], c["num_kv_heads"],
                                    c["head_dim"], c["page_size"], c["dtype"],
                                    c["layout"])
            for c in tt.kernel_configs([name])]
    return [n for n in need if n not in have]


@pytest.fixture(scope="module")
def keys():
    return (pt.register("paged_attn"),
            pt.register("paged_attn_index", decode_fast_path=False,
                        compare_with_fallback=True))


@pytest.mark.parametrize("name", list(tt.MODELS))
def test_generate_batch_matches_paged_sdpa(name, keys):
    missing = _missing_kernels(name)
    if missing:
        pytest.skip(f"PAGED_ATTN_KERNEL_DIR has no {', '.join(missing)}: use "
                    f"bench/compile-kernels.sh DIR --transformers")
    fast, index = keys
    summary = tt.run_comparison(name, fast, index)
    print("\n" + "\n".join(tt.describe(summary)))
    out_dir = os.environ.get("PAGED_ATTN_TRANSFORMERS_RESULTS")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
            json.dump(summary, f, indent=1, default=str)

    for key, run in summary["runs"].items():
        assert not run["errors"], (key, run["errors"])
        assert run["complete"] == summary["prompts"], key
    fast_stats = summary["runs"][fast]["stats"]
    index_stats = summary["runs"][index]["stats"]
    # Decode steps went through PagedAttn, on both paths; the prefill and
    # mixed steps through transformers' SDPA.
    assert fast_stats["decode_block_table"] > 0, fast_stats
    assert index_stats["decode_read_index"] > 0, index_stats
    assert index_stats["decode_block_table"] == 0, index_stats
    assert fast_stats["fallback"].get("prefill or mixed", 0) > 0
    # The direct check: PagedAttn against SDPA on the same calls.
    assert index_stats["compared"] == index_stats["decode_read_index"]
    limit = tt.ATTENTION_TOLERANCE * max(1.0, index_stats["max_abs_ref"])
    assert index_stats["max_abs_diff"] <= limit, index_stats
    # Tokens: identical, or a near-tie where they first differ.
    for key in (fast, index):
        cmp = summary["runs"][key]["vs_sdpa"]
        assert cmp["worst_gap_std"] <= tt.TIE_TOLERANCE, cmp["rows"]
