"""Multi-token decode (speculative decoding's verification) on the GPU
against a torch float64 reference: L = 1 to 8 and 16 new queries per
sequence, causal among themselves, with and without bool and int8 tree
masks, composed with the variants, unsplit and split, on ragged lengths
(some shorter than L), partial last pages and shuffled page tables; and its
argument errors. Skipped without torch, CUDA or kernels."""
import math

import pytest

import paged_attn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not paged_attn.has_driver()[0],
    reason="needs a CUDA GPU")

from test_gpu import make  # noqa: E402
from test_variants_gpu import attend, check, variant_args  # noqa: E402

# (dtype, head_dim, page, num_heads, num_kv_heads, layout): tensor cores
# (several mma row blocks' worth of rows at L = 8), and the CUDA-core
# kernel (MHA).
SHAPES = [("bf16", 128, 16, 32, 8, "nhd"), ("f16", 64, 16, 4, 4, "hnd")]
# Lengths shorter than L (first queries see nothing), page edges, long.
LENS = [0, 1, 3, 16, 17, 37, 300, 777]
WINDOW = 37


def make_multi(lens, query_len, hq, hkv, d, page, dtype, layout, seed):
    q3, k, v, bt, sl = make(lens, hq, hkv, d, page, dtype, layout, seed=seed)
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    q = (torch.rand(len(lens), query_len, hq, d, generator=g) * 2 - 1).to(
        q3.dtype).cuda()
    return q, k, v, bt, sl


def random_tree(batch, query_len, seed, dtype=torch.bool):
    """Entries below the diagonal set with probability 0.6, the diagonal
    with 0.9, above it at random (the op ignores those)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = torch.rand(batch, query_len, query_len, generator=g)
    eye = torch.eye(query_len, dtype=torch.bool)
    mask = torch.where(eye, r < 0.9, r < 0.6)
    return mask.to(dtype).cuda()


def reference(q, k, v, bt, sl, layout, tree=None, window=None, soft_cap=None,
              slopes=None, sinks=None):
    """(out, lse) in float64, the op's semantics for q [batch, L, hq, d]."""
    q, k, v = q.double().cpu(), k.double().cpu(), v.double().cpu()
    bt, sl = bt.cpu(), sl.cpu()
    batch, query_len, hq, d = q.shape
    page = k.shape[1] if layout == "nhd" else k.shape[2]
    out = torch.zeros(batch, query_len, hq, d, dtype=torch.float64)
    lse = torch.full((batch, query_len, hq), -math.inf, dtype=torch.float64)
    for b in range(batch):
        seq = int(sl[b])
        for i in range(query_len):
            n = max(seq - query_len + 1 + i, 0)
            first = max(n - window, 0) if window else 0
            t = torch.arange(first, n)
            if tree is not None:
                new = t - (seq - query_len)
                keep = [int(j) < 0 or bool(tree[b, i, int(j)]) for j in new]
                t = t[torch.tensor(keep, dtype=torch.bool)] if len(t) else t
            if len(t) == 0:
                continue
            pages, slots = bt[b, t // page].long(), t % page
            kb = k[pages, slots] if layout == "nhd" else k[pages, :, slots]
            vb = v[pages, slots] if layout == "nhd" else v[pages, :, slots]
            out[b, i], lse[b, i] = attend(q[b, i], kb, vb, t, n, soft_cap,
                                          slopes, sinks)
    return out, lse


def run(shape, query_len, tree_kind, combo, num_splits, seed):
    dtype, d, page, hq, hkv, layout = shape
    q, k, v, bt, sl = make_multi(LENS, query_len, hq, hkv, d, page, dtype,
                                 layout, seed)
    tree = None
    if tree_kind is not None:
        tree = random_tree(len(LENS), query_len, seed, tree_kind)
    kwargs = variant_args(combo, hq, seed=seed)
    out = torch.full_like(q, float("nan"))
    result = paged_attn.decode(q, k, v, bt, sl, layout=layout, out=out,
                               num_splits=num_splits, tree_mask=tree,
                               return_lse="lse" in combo, **kwargs)
    out, lse = result if "lse" in combo else (result, None)
    assert out.shape == q.shape
    ref_out, ref_lse = reference(q, k, v, bt, sl, layout, tree,
                                 kwargs.get("window"), kwargs.get("soft_cap"),
                                 kwargs.get("alibi_slopes"),
                                 kwargs.get("sinks"))
    check(out, lse, ref_out, ref_lse, dtype, combo)


@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("tree_kind", [None, torch.bool, torch.int8],
                         ids=["causal", "tree_bool", "tree_i8"])
@pytest.mark.parametrize("query_len", [1, 2, 3, 4, 5, 8, 16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}_d{s[1]}")
def test_multi_token_matches_float64(shape, query_len, tree_kind, num_splits):
    run(shape, query_len, tree_kind, (), num_splits, seed=query_len)


COMBOS = [("lse",), ("window", "sinks", "lse"), ("soft_cap", "alibi_slopes"),
          ("window", "soft_cap", "alibi_slopes", "sinks", "lse")]


@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("combo", COMBOS, ids="+".join)
@pytest.mark.parametrize("query_len", [2, 4, 7])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}_d{s[1]}")
def test_multi_token_variants(shape, query_len, combo, num_splits):
    run(shape, query_len, torch.bool, combo, num_splits, seed=5 + query_len)


def test_one_query_of_rank_4_is_single_token_decode():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    q, k, v, bt, sl = make_multi(LENS, 1, hq, hkv, d, page, dtype, layout, 3)
    out4 = paged_attn.decode(q, k, v, bt, sl, layout=layout)
    out3 = paged_attn.decode(q[:, 0].contiguous(), k, v, bt, sl,
                             layout=layout)
    assert out4.shape == q.shape
    assert torch.equal(out4[:, 0], out3)


def test_plan_runs_multi_token():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    q, k, v, bt, sl = make_multi(LENS, 4, hq, hkv, d, page, dtype, layout, 9)
    tree = random_tree(len(LENS), 4, 9)
    plan = paged_attn.DecodePlan(q, k, v, bt, sl, layout=layout,
                                 tree_mask=tree, return_lse=True)
    out, lse = plan.run()
    ref_out, ref_lse = reference(q, k, v, bt, sl, layout, tree)
    check(out, lse, ref_out, ref_lse, dtype, ("lse",))


def test_multi_token_argument_errors():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    q, k, v, bt, sl = make_multi(LENS, 4, hq, hkv, d, page, dtype, layout, 1)
    with pytest.raises(ValueError, match=r"tree_mask must be bool or int8 of "
                       r"shape \(8, 4, 4\)"):
        paged_attn.decode(q, k, v, bt, sl, tree_mask=random_tree(8, 3, 1))
    with pytest.raises(ValueError, match="tree_mask must be bool or int8"):
        paged_attn.decode(q, k, v, bt, sl,
                          tree_mask=random_tree(8, 4, 1, torch.float32))
    with pytest.raises(ValueError, match="tree_mask needs a multi-token q"):
        paged_attn.decode(q[:, 0], k, v, bt, sl,
                          tree_mask=random_tree(8, 4, 1))
    with pytest.raises(ValueError, match=r"query_len \(17\) must be at most "
                       r"16"):
        big = torch.zeros(8, 17, hq, d, dtype=q.dtype, device="cuda")
        paged_attn.decode(big, k, v, bt, sl)
    with pytest.raises(ValueError, match=r"lse must be float32 of shape "
                       r"\(8, 4, 32\) \[batch, L, num_heads\]"):
        paged_attn.decode(q, k, v, bt, sl,
                          lse=torch.empty(8, 32, device="cuda"))
    with pytest.raises(ValueError, match="out must match q"):
        paged_attn.decode(q, k, v, bt, sl, out=torch.empty_like(q[:, :2]))
    with pytest.raises(ValueError, match="q must have 3 dimensions"):
        paged_attn.decode(q[None], k, v, bt, sl)
