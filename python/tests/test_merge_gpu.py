"""paged_attn.merge on the GPU against a torch float64 reference: N = 0 to
9 partials with random log-sum-exps far apart, empty partials (-inf) and
rows whose every partial is empty, sinks, the log-sum-exp output, strided
partials, and the cascade it exists for: decodes over the two halves of
each sequence's keys merged equal one decode over all of them. Skipped
without torch, CUDA or kernels (test/gpu/matrix.py compiles the merges the
auto set holds)."""
import math

import pytest

import paged_attn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not paged_attn.has_driver()[0],
    reason="needs a CUDA GPU")

from test_gpu import LIMITS, make, rel_err  # noqa: E402
from test_variants_gpu import reference  # noqa: E402

TORCH_DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16,
                "f32": torch.float32}
# (num_heads, head_dim, dtype): the merges of the matrix's auto set
# (test/gpu/matrix.py MERGE_SHAPES, every dtype).
SHAPES = [(hq, d, dtype) for dtype in ("bf16", "f16", "f32")
          for hq, d in ((32, 128), (8, 64), (4, 256), (12, 80), (32, 80),
                        (200, 8))]
VARIANTS = [(), ("sinks",), ("lse",), ("sinks", "lse")]


def partials(n, batch, hq, d, dtype, seed, empty_rows=True):
    """Partial outputs in [-1, 1] and log-sum-exps spread over [-20, 20]
    (so that one partial may dominate), some of them -inf (empty); with
    `empty_rows`, batch row 0 has only empty partials."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = (torch.rand(n, batch, hq, d, generator=g) * 2 - 1).to(
        TORCH_DTYPES[dtype])
    lse = torch.rand(n, batch, hq, generator=g) * 40 - 20
    lse[torch.rand(n, batch, hq, generator=g) < 0.2] = -math.inf
    if empty_rows and batch > 0:
        lse[:, 0] = -math.inf
    return out.cuda(), lse.cuda()


def merge_reference(out, lse, sinks=None):
    """(out, lse) in float64: the op's semantics."""
    out, lse = out.double().cpu(), lse.double().cpu()
    n, batch, hq, d = out.shape
    total = torch.logsumexp(lse, dim=0) if n else torch.full(
        (batch, hq), -math.inf, dtype=torch.float64)
    m = torch.where(torch.isinf(total), torch.zeros_like(total), total)
    weights = torch.exp(lse - m)  # [n, batch, hq]; 0 for empty partials
    denominator = weights.sum(0)
    if sinks is not None:
        denominator = denominator + torch.exp(sinks.double().cpu() - m)
    merged = (weights[..., None] * out).sum(0)
    merged = torch.where(denominator[..., None] > 0,
                         merged / denominator.clamp_min(1e-300)[..., None],
                         torch.zeros_like(merged))
    return merged, total


def check(out, lse, ref_out, ref_lse, dtype):
    assert rel_err(out, ref_out) <= LIMITS[dtype]
    if lse is not None:
        got = lse.double().cpu()
        empty = torch.isinf(ref_lse)
        assert torch.equal(torch.isinf(got) & (got < 0), empty)
        assert (got[~empty] - ref_lse[~empty]).abs().max().item() < 1e-4


@pytest.mark.parametrize("n", [1, 2, 3, 9], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("variants", VARIANTS, ids=lambda v: "+".join(v) or
                         "plain")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"h{s[0]}_d{s[1]}_"
                         f"{s[2]}")
def test_merge_matches_float64(shape, variants, n):
    hq, d, dtype = shape
    out_p, lse_p = partials(n, 5, hq, d, dtype, seed=n + d)
    sinks = (torch.rand(hq) * 6 - 1).cuda() if "sinks" in variants else None
    result = paged_attn.merge(out_p, lse_p, sinks=sinks,
                              return_lse="lse" in variants)
    out, lse = result if "lse" in variants else (result, None)
    assert out.dtype == out_p.dtype and out.shape == out_p.shape[1:]
    ref_out, ref_lse = merge_reference(out_p, lse_p, sinks)
    check(out, lse, ref_out, ref_lse, dtype)
    # A row of empty partials merges to zeros (and -inf).
    assert torch.count_nonzero(out[0]).item() == 0


def test_no_partials_and_no_sequences():
    hq, d, dtype = SHAPES[0]
    out_p, lse_p = partials(0, 3, hq, d, dtype, seed=1)
    out = torch.full((3, hq, d), float("nan"), dtype=torch.bfloat16,
                     device="cuda")
    lse = torch.zeros(3, hq, device="cuda")
    paged_attn.merge(out_p, lse_p, out=out, lse=lse)
    assert torch.count_nonzero(out).item() == 0
    assert torch.isinf(lse).all() and (lse < 0).all()
    out_p, lse_p = partials(2, 0, hq, d, dtype, seed=1)
    out, lse = paged_attn.merge(out_p, lse_p, return_lse=True)
    torch.cuda.synchronize()
    assert out.shape == (0, hq, d) and lse.shape == (0, hq)


def test_strided_partials_are_read_in_place():
    # Partials as slices of a larger buffer: [N, batch, heads, d] views of
    # a [batch, heads, N, 2d] tensor (any strides but the innermost).
    hq, d, dtype = SHAPES[0]
    g = torch.Generator(device="cpu").manual_seed(5)
    base = (torch.rand(4, hq, 3, 2 * d, generator=g) * 2 - 1).to(
        torch.bfloat16).cuda()
    out_p = base.permute(2, 0, 1, 3)[..., d:]
    lse_p = (torch.rand(4, hq, 3, generator=g) * 10).cuda().permute(2, 0, 1)
    out, lse = paged_attn.merge(out_p, lse_p, return_lse=True)
    ref_out, ref_lse = merge_reference(out_p, lse_p)
    check(out, lse, ref_out, ref_lse, dtype)


@pytest.mark.parametrize("with_sinks", [False, True])
def test_cascade_of_two_decodes_is_one_decode(with_sinks):
    # Each sequence's keys split in two (the shared-prefix cascade, or two
    # context-parallel shards): the first `cut` pages in one page table and
    # the rest in another, decoded with return_lse and merged. Sinks go in
    # once, at the merge.
    dtype, d, page, hq, hkv, layout = "bf16", 128, 16, 32, 8, "nhd"
    lens = [0, 1, 16, 17, 300, 777, 40]
    q, k, v, bt, sl = make(lens, hq, hkv, d, page, dtype, layout, seed=13)
    cut_pages = torch.tensor([min(2, (n + page - 1) // page) for n in lens],
                             dtype=torch.int32)
    head_lens = torch.minimum(sl.cpu(), cut_pages * page)
    tail_lens = sl.cpu() - head_lens
    tail_bt = torch.full_like(bt.cpu(), -1)
    for b, c in enumerate(cut_pages.tolist()):
        rest = bt.cpu()[b, c:]
        tail_bt[b, :rest.numel()] = rest
    parts = [paged_attn.decode(q, k, v, table.cuda(), lengths.cuda(),
                               layout=layout, return_lse=True)
             for table, lengths in ((bt, head_lens), (tail_bt, tail_lens))]
    sinks = (torch.rand(hq) * 4).cuda() if with_sinks else None
    out, lse = paged_attn.merge(torch.stack([o for o, _ in parts]),
                                torch.stack([l for _, l in parts]),
                                sinks=sinks, return_lse=True)
    ref_out, ref_lse = reference(q, k, v, bt, sl, layout, sinks=sinks)
    check(out, lse, ref_out, ref_lse, dtype)


def test_torch_ops_and_errors():
    hq, d, dtype = SHAPES[0]
    out_p, lse_p = partials(3, 4, hq, d, dtype, seed=2)
    sinks = torch.zeros(hq, device="cuda")
    ref_out, ref_lse = merge_reference(out_p, lse_p, sinks)
    out = torch.ops.paged_attn.merge(out_p, lse_p, sinks)
    check(out, None, ref_out, ref_lse, dtype)
    out, lse = torch.ops.paged_attn.merge_with_lse(out_p, lse_p)
    check(out, lse, *merge_reference(out_p, lse_p), dtype)
    with pytest.raises(ValueError, match=r"partial_lse must be float32 of "
                                         r"shape \(3, 4, 32\)"):
        paged_attn.merge(out_p, lse_p[:, :2])
    with pytest.raises(ValueError, match="partial_out must have 4 dimensions"):
        paged_attn.merge(out_p[0], lse_p)
    with pytest.raises(ValueError, match=r"out must be bf16 of shape"):
        paged_attn.merge(out_p, lse_p, out=torch.empty(4, hq, d,
                                                       device="cuda"))
    with pytest.raises(ValueError, match="sinks must be float32"):
        paged_attn.merge(out_p, lse_p, sinks=torch.zeros(hq + 1,
                                                         device="cuda"))
    every_other = torch.zeros(3, 4, hq, 2 * d, dtype=torch.bfloat16,
                              device="cuda")[..., ::2]
    with pytest.raises(ValueError, match="partial_out must have unit stride "
                                         "in its last dimension, got 2"):
        paged_attn.merge(every_other, lse_p)
    with pytest.raises(paged_attn.PagedAttnError,
                       match="no merge kernel for config h16_d128_bf16_ln"):
        paged_attn.merge(out_p[:, :, :16], lse_p[:, :, :16])
