"""The attention variants on the GPU against a torch float64 reference:
windows shorter than, equal to and longer than the sequences (not page
aligned), soft-caps, ALiBi, sinks and the log-sum-exp, alone and combined,
unsplit and split, through decode(), DecodePlan and the torch ops. Skipped
without torch, CUDA or kernels."""
import math

import pytest

import paged_attn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not paged_attn.has_driver()[0],
    reason="needs a CUDA GPU")

from test_gpu import LIMITS, make, rel_err  # noqa: E402

# (dtype, head_dim, page, num_heads, num_kv_heads, layout): one shape the
# tensor-core kernel serves and one for the CUDA-core kernel.
SHAPES = [("bf16", 128, 16, 32, 8, "nhd"), ("f16", 64, 16, 4, 4, "hnd")]
COMBOS = [("window",), ("soft_cap",), ("alibi_slopes",), ("sinks",),
          ("lse",), ("window", "sinks", "lse"), ("window", "soft_cap"),
          ("window", "soft_cap", "alibi_slopes", "sinks", "lse")]
LENS = [0, 1, 16, 17, 37, 300, 777]
WINDOW = 37  # equal to one length, shorter than three, not page aligned


def reference(q, k, v, bt, sl, layout, window=None, soft_cap=None,
              slopes=None, sinks=None):
    """(out, lse) in float64, the op's semantics."""
    q, k, v = q.double().cpu(), k.double().cpu(), v.double().cpu()
    bt, sl = bt.cpu(), sl.cpu()
    batch, hq, d = q.shape
    page = k.shape[1] if layout == "nhd" else k.shape[2]
    out = torch.zeros(batch, hq, d, dtype=torch.float64)
    lse = torch.full((batch, hq), -math.inf, dtype=torch.float64)
    for b in range(batch):
        n = int(sl[b])
        first = max(n - window, 0) if window else 0
        if n <= first:
            continue
        t = torch.arange(first, n)
        pages, slots = bt[b, t // page].long(), t % page
        kb = k[pages, slots] if layout == "nhd" else k[pages, :, slots]
        vb = v[pages, slots] if layout == "nhd" else v[pages, :, slots]
        out[b], lse[b] = attend(q[b], kb, vb, t, n, soft_cap, slopes, sinks)
    return out, lse


def attend(qv, kb, vb, t, n, soft_cap=None, slopes=None, sinks=None):
    """(out [hq, d], lse [hq]) of one query's heads qv [hq, d] (float64)
    over keys t (positions, key end n) with rows kb, vb [len(t), hkv, d],
    under the variants' rules."""
    hq, d = qv.shape
    kb = kb.repeat_interleave(hq // kb.shape[1], dim=1)
    vb = vb.repeat_interleave(hq // vb.shape[1], dim=1)
    s = torch.einsum("hd,nhd->hn", qv, kb) / math.sqrt(d)
    if soft_cap:
        s = soft_cap * torch.tanh(s / soft_cap)
    if slopes is not None:
        s = s + slopes.double().cpu()[:, None] * (t - (n - 1)).double()
    m = s.max(dim=-1, keepdim=True).values
    w = torch.exp(s - m)
    denominator = w.sum(-1, keepdim=True)
    lse = (m + torch.log(denominator)).squeeze(-1)
    if sinks is not None:
        denominator = denominator + torch.exp(sinks.double().cpu()[:, None] - m)
    return torch.einsum("hn,nhd->hd", w / denominator, vb), lse


def variant_args(combo, hq, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    kwargs = {}
    if "window" in combo:
        kwargs["window"] = WINDOW
    if "soft_cap" in combo:
        kwargs["soft_cap"] = 0.3
    if "alibi_slopes" in combo:
        kwargs["alibi_slopes"] = torch.tensor(
            [2 ** (-8 * (h + 1) / hq) for h in range(hq)],
            dtype=torch.float32).cuda()
    if "sinks" in combo:
        kwargs["sinks"] = (torch.rand(hq, generator=g) * 6 - 1).cuda()
    return kwargs


def check(out, lse, ref_out, ref_lse, dtype, combo):
    assert rel_err(out, ref_out) <= LIMITS[dtype]
    if "lse" in combo:
        got = lse.double().cpu()
        empty = torch.isinf(ref_lse)
        assert torch.equal(torch.isinf(got) & (got < 0), empty)
        assert (got[~empty] - ref_lse[~empty]).abs().max().item() < 2e-3


@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("combo", COMBOS, ids="+".join)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}_d{s[1]}")
def test_variant_matches_float64(shape, combo, num_splits):
    dtype, d, page, hq, hkv, layout = shape
    q, k, v, bt, sl = make(LENS, hq, hkv, d, page, dtype, layout, seed=7)
    kwargs = variant_args(combo, hq, seed=7)
    result = paged_attn.decode(q, k, v, bt, sl, layout=layout,
                               num_splits=num_splits,
                               return_lse="lse" in combo, **kwargs)
    out, lse = result if "lse" in combo else (result, None)
    ref_out, ref_lse = reference(q, k, v, bt, sl, layout, kwargs.get("window"),
                                 kwargs.get("soft_cap"),
                                 kwargs.get("alibi_slopes"),
                                 kwargs.get("sinks"))
    check(out, lse, ref_out, ref_lse, dtype, combo)


def test_window_longer_than_every_sequence_is_plain_decode():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    q, k, v, bt, sl = make(LENS, hq, hkv, d, page, dtype, layout, seed=3)
    plain = paged_attn.decode(q, k, v, bt, sl, layout=layout)
    windowed = paged_attn.decode(q, k, v, bt, sl, layout=layout, window=4096)
    assert rel_err(windowed, plain.double().cpu()) < 1e-6


def test_plan_and_torch_ops_take_the_variants():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    combo = COMBOS[-1]
    q, k, v, bt, sl = make(LENS, hq, hkv, d, page, dtype, layout, seed=11)
    kwargs = variant_args(combo, hq, seed=11)
    ref_out, ref_lse = reference(q, k, v, bt, sl, layout, WINDOW, 0.3,
                                 kwargs["alibi_slopes"], kwargs["sinks"])
    plan = paged_attn.DecodePlan(q, k, v, bt, sl, layout=layout,
                                 return_lse=True, **kwargs)
    out, lse = plan.run()
    check(out, lse, ref_out, ref_lse, dtype, combo)
    out, lse = torch.ops.paged_attn.decode_with_lse(
        q, k, v, bt, sl, 0.0, layout, 0, WINDOW, 0.3,
        kwargs["alibi_slopes"], kwargs["sinks"])
    check(out, lse, ref_out, ref_lse, dtype, combo)
    kwargs_no_lse = variant_args(("window", "sinks"), hq, seed=11)
    out = torch.ops.paged_attn.decode(q, k, v, bt, sl, 0.0, layout, 0, WINDOW,
                                      0.0, None, kwargs_no_lse["sinks"])
    ref_out, _ = reference(q, k, v, bt, sl, layout, WINDOW, None, None,
                           kwargs_no_lse["sinks"])
    assert rel_err(out, ref_out) <= LIMITS[dtype]


def test_variant_argument_errors():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    q, k, v, bt, sl = make(LENS, hq, hkv, d, page, dtype, layout, seed=1)
    with pytest.raises(ValueError, match="window must be an integer"):
        paged_attn.decode(q, k, v, bt, sl, window=0)
    with pytest.raises(ValueError, match="soft_cap must be finite"):
        paged_attn.decode(q, k, v, bt, sl, soft_cap=float("nan"))
    with pytest.raises(ValueError, match=r"sinks must be float32 of shape"):
        paged_attn.decode(q, k, v, bt, sl, sinks=torch.zeros(hq - 1).cuda())
    with pytest.raises(ValueError, match=r"alibi_slopes must be float32"):
        paged_attn.decode(q, k, v, bt, sl,
                          alibi_slopes=torch.zeros(hq, dtype=torch.float16)
                          .cuda())
