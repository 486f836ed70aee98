"""paged_attn.append on the GPU.

(a) One append against a CPU float32 torch reference of the op's semantics
    (its documentation's): the caches compared byte for byte (fp8
    codes bit-exact for finite inputs, 16- and 32-bit rows copied bit for
    bit), the per-token scale caches bit for bit, and every row the call
    does not address left as it was. Both fp8 formats x scales per tensor,
    head and token x nhd and hnd x head_dim 64, 128, 256 x pages of 1 and
    16, and unquantised f16, bf16 and f32 caches; slots from a shuffled page
    table, with padding (-1) and slots past the pool.
(b) append() then decode() for 40 steps: ragged sequences grow by one token
    a step (some idle, slot -1), crossing page ends; each step's decode is
    checked against a float64 reference on the dequantised caches (the
    decode's own bound, test_gpu.LIMITS), and its error against the
    unquantised rows is reported.
(c) A multi-token append: T = batch * L rows in one call.

Kernels: with a compiler they are compiled on first use; on compiled
kernels, the GPU test matrix's append set (test/gpu/matrix.py: its
appends, and the decodes of (b)), PAGED_ATTN_KERNEL_DIR or its sibling
"append" directory. Skipped without torch, CUDA or kernels.
"""
import math

import pytest

import paged_attn

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.skipif(
        not torch.cuda.is_available() or not paged_attn.has_driver()[0],
        reason="needs a CUDA GPU"),
    pytest.mark.usefixtures("append_kernels")]

from test_cpu import _kernels_available  # noqa: E402
from test_gpu import DTYPES, LIMITS, reference, rel_err  # noqa: E402

needs_kernels = pytest.mark.skipif(not _kernels_available(),
                                   reason="no compiler, no kernels")

# The formats: torch's dtype and the largest finite value.
FORMATS = {"f8e4m3fn": (getattr(torch, "float8_e4m3fn", None), 448.0),
           "f8e5m2": (getattr(torch, "float8_e5m2", None), 57344.0)}
SMALLEST_NORMAL = 2.0 ** -126


# ---------------------------------------------------------------------------
# The reference
# ---------------------------------------------------------------------------


def rows_of(cache, layout, page_idx, offset):
    """The [n, kv_heads, ...] rows (page_idx[i], offset[i], :) of a cache (or
    of a per-token scale cache, without head_dim) as an indexable view."""
    if layout == "nhd":
        return cache[page_idx, offset]
    return cache[page_idx, :, offset]


def set_rows(cache, layout, page_idx, offset, rows):
    if layout == "nhd":
        cache[page_idx, offset] = rows
    else:
        cache[page_idx, :, offset] = rows


def scale_shape(kind, cache_shape):
    if kind == "tensor":
        return ()
    if kind == "head":
        return None  # filled in by the caller: [num_kv_heads]
    return tuple(cache_shape[:3])


def quantise_rows(x, kv_dtype, kind, scale):
    """(codes, per-row scales or None) of rows x [n, kv_heads, d] as the op
    quantises them: s the given scale (per tensor, per head) or max |x| /
    fmax, at least 2^-126 (per token); r = 1 / s in float32; codes =
    fp8(x * r), saturating."""
    dtype, fmax = FORMATS[kv_dtype]
    xf = x.float()
    if kind == "token":
        s = (xf.abs().amax(dim=-1) / fmax).clamp_min(SMALLEST_NORMAL)
        r = 1.0 / s
        codes = (xf * r[..., None]).clamp(-fmax, fmax).to(dtype)
        return codes, s
    s = scale.float()
    r = (1.0 / s).reshape((1, -1, 1) if kind == "head" else (1, 1, 1))
    return (xf * r).clamp(-fmax, fmax).to(dtype), None


def reference_append(k, v, slots, k_cache, v_cache, layout, kv_dtype=None,
                     kind=None, k_scale=None, v_scale=None):
    """The caches (and per-token scale caches) after the append, on the
    CPU: clones of the inputs with the addressed rows replaced."""
    k, v, slots = k.cpu(), v.cpu(), slots.cpu()
    kc, vc = k_cache.cpu().clone(), v_cache.cpu().clone()
    page = kc.shape[1] if layout == "nhd" else kc.shape[2]
    pool = kc.shape[0] * page
    keep = (slots >= 0) & (slots < pool)
    t = keep.nonzero().flatten()
    page_idx, offset = slots[t] // page, slots[t] % page
    ks = k_scale.cpu().clone() if k_scale is not None else None
    vs = v_scale.cpu().clone() if v_scale is not None else None
    for rows, cache, scales in ((k[t], kc, ks), (v[t], vc, vs)):
        if kv_dtype is None:
            set_rows(cache, layout, page_idx, offset, rows)
            continue
        codes, written = quantise_rows(rows, kv_dtype, kind, scales)
        set_rows(cache.view(torch.uint8), layout, page_idx, offset,
                 codes.view(torch.uint8))
        if written is not None:
            set_rows(scales, layout, page_idx, offset, written)
    return kc, vc, ks, vs


def same_bits(got, want):
    """Whether two tensors of one dtype hold the same bytes."""
    # reshape: a 0-d tensor (a per-tensor scale) has no bytes view.
    got = got.detach().cpu().contiguous().reshape(-1)
    want = want.detach().cpu().contiguous().reshape(-1)
    return torch.equal(got.view(torch.uint8), want.view(torch.uint8))


def mismatches(got, want):
    got = got.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    want = want.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return int((got != want).sum())


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def cache_shape(pages, page, hkv, d, layout):
    return (pages, page, hkv, d) if layout == "nhd" else (pages, hkv, page, d)


def garbage_cache(shape, dtype, g):
    """A cache of random bytes (what is not written must stay as it was)."""
    n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8)
    return raw.view(dtype).reshape(shape).cuda()


def finite_garbage(shape, dtype, g):
    """Random finite values of `dtype` (16/32-bit caches and scale caches:
    random bytes could be NaNs, which compare by bytes anyway, but finite
    values keep the reference's arithmetic out of it)."""
    return (torch.randn(shape, generator=g) * 3).to(dtype).cuda()


def slots_for(tokens, pages, page, g):
    """int64 [tokens]: distinct slots of a shuffled page table, with padding
    (-1, -7) and slots past the pool (pool, pool + 5, 2^40) mixed in."""
    pool = pages * page
    perm = torch.randperm(pages, generator=g)
    # The page table's slots in order: page perm[i] holds positions
    # i * page .. i * page + page - 1.
    positions = torch.randperm(pool, generator=g)[:tokens]
    slots = perm[positions // page] * page + positions % page
    special = torch.tensor([-1, pool, -7, pool + 5, 2 ** 40],
                           dtype=torch.int64)
    where = torch.randperm(tokens, generator=g)[:min(len(special), tokens)]
    slots[where] = special[:len(where)]
    return slots.cuda()


# ---------------------------------------------------------------------------
# (a) one append, bit for bit
# ---------------------------------------------------------------------------

FP8_CASES = [(f, kind, layout, d, page)
             for f in FORMATS for kind in ("tensor", "head", "token")
             for layout in ("nhd", "hnd") for d in (64, 128, 256)
             for page in (1, 16)]
PLAIN_CASES = [(dtype, layout, d, page)
               for dtype in ("f16", "bf16", "f32")
               for layout in ("nhd", "hnd") for d in (64, 128, 256)
               for page in (1, 16)]
T, HKV = 37, 4


@needs_kernels
@pytest.mark.parametrize("dtype,layout,d,page", PLAIN_CASES)
def test_unquantised_rows_are_copied_bit_for_bit(dtype, layout, d, page):
    g = torch.Generator().manual_seed(d * 7 + page)
    pages = 64 if page == 1 else 8
    shape = cache_shape(pages, page, HKV, d, layout)
    k = finite_garbage((T, HKV, d), DTYPES[dtype], g)
    v = finite_garbage((T, HKV, d), DTYPES[dtype], g)
    kc = finite_garbage(shape, DTYPES[dtype], g)
    vc = finite_garbage(shape, DTYPES[dtype], g)
    slots = slots_for(T, pages, page, g)
    want_k, want_v, _, _ = reference_append(k, v, slots, kc, vc, layout)
    assert paged_attn.append(k, v, slots, kc, vc, layout=layout) is None
    torch.cuda.synchronize()
    assert same_bits(kc, want_k), mismatches(kc, want_k)
    assert same_bits(vc, want_v), mismatches(vc, want_v)


def fp8_inputs(kv_dtype, kind, layout, d, page, g, dtype=torch.bfloat16,
               tokens=T, saturate=True):
    """(k, v, slots, k_cache, v_cache, k_scale, v_scale) for one fp8
    append: rows of N(0, 2^2) with a few large and tiny ones and an all-zero
    row; per tensor and head scales that saturate some values (half the
    rows' largest magnitude over fmax) where `saturate`."""
    fdtype, fmax = FORMATS[kv_dtype]
    pages = 64 if page == 1 else 8
    shape = cache_shape(pages, page, HKV, d, layout)
    k = (torch.randn(tokens, HKV, d, generator=g) * 2)
    v = (torch.randn(tokens, HKV, d, generator=g) * 2)
    k[0, 0] = 0.0                      # an all-zero row: scale 2^-126
    k[1, 1, :4] = torch.tensor([1e4, -3e4, 1e-6, -1e-7])
    v[2, 0, 0] = 6e4                   # beyond e4m3's range
    k, v = k.to(dtype).cuda(), v.to(dtype).cuda()
    kc = garbage_cache(shape, fdtype, g)
    vc = garbage_cache(shape, fdtype, g)
    if kind == "token":
        ks = finite_garbage(shape[:3], torch.float32, g).abs()
        vs = finite_garbage(shape[:3], torch.float32, g).abs()
    else:
        factor = 0.5 if saturate else 1.0
        def per(x):
            amax = x.float().abs().amax(dim=(0, 2)).cpu()   # per head
            if kind == "tensor":
                amax = amax.max()
            return (amax / fmax * factor).clamp_min(1e-6).cuda()
        ks, vs = per(k), per(v)
    slots = slots_for(tokens, pages, page, g)
    return k, v, slots, kc, vc, ks, vs


@needs_kernels
@pytest.mark.parametrize("kv_dtype,kind,layout,d,page", FP8_CASES)
def test_fp8_codes_are_bit_exact(kv_dtype, kind, layout, d, page):
    if FORMATS[kv_dtype][0] is None:
        pytest.skip(f"this torch has no {kv_dtype}")
    g = torch.Generator().manual_seed(d * 13 + page)
    dtype = torch.bfloat16 if d != 128 else torch.float16
    k, v, slots, kc, vc, ks, vs = fp8_inputs(kv_dtype, kind, layout, d, page,
                                             g, dtype)
    want = reference_append(k, v, slots, kc, vc, layout, kv_dtype, kind, ks,
                            vs)
    paged_attn.append(k, v, slots, kc, vc, k_scale=ks, v_scale=vs,
                      layout=layout)
    torch.cuda.synchronize()
    for name, got, expected in zip(("k_cache", "v_cache", "k_scale",
                                    "v_scale"), (kc, vc, ks, vs), want):
        assert same_bits(got, expected), (name, mismatches(got, expected))


@needs_kernels
@pytest.mark.parametrize("kv_dtype", list(FORMATS))
def test_a_float_scale_is_a_per_tensor_scale(kv_dtype):
    if FORMATS[kv_dtype][0] is None:
        pytest.skip(f"this torch has no {kv_dtype}")
    g = torch.Generator().manual_seed(5)
    k, v, slots, kc, vc, ks, vs = fp8_inputs(kv_dtype, "tensor", "nhd", 128,
                                             16, g)
    # A float is read as float32, as decode() reads it.
    k_float, v_float = float(ks), float(vs)
    want = reference_append(k, v, slots, kc, vc, "nhd", kv_dtype, "tensor",
                            torch.tensor(k_float), torch.tensor(v_float))
    paged_attn.append(k, v, slots, kc, vc, k_scale=k_float, v_scale=v_float)
    torch.cuda.synchronize()
    assert same_bits(kc, want[0]) and same_bits(vc, want[1])


@needs_kernels
def test_the_torch_op_writes_in_place():
    if not hasattr(torch.library, "custom_op"):
        pytest.skip("torch < 2.4")
    g = torch.Generator().manual_seed(9)
    k, v, slots, kc, vc, ks, vs = fp8_inputs("f8e4m3fn", "token", "hnd", 64,
                                             16, g)
    want = reference_append(k, v, slots, kc, vc, "hnd", "f8e4m3fn", "token",
                            ks, vs)
    torch.ops.paged_attn.append(k, v, slots, kc, vc, "hnd", ks, vs)
    torch.cuda.synchronize()
    for got, expected in zip((kc, vc, ks, vs), want):
        assert same_bits(got, expected)


@needs_kernels
def test_no_tokens_write_nothing():
    g = torch.Generator().manual_seed(3)
    k, v, slots, kc, vc, ks, vs = fp8_inputs("f8e4m3fn", "token", "nhd", 128,
                                             16, g, tokens=4)
    before = [t.clone() for t in (kc, vc, ks, vs)]
    paged_attn.append(k[:0], v[:0], slots[:0], kc, vc, k_scale=ks, v_scale=vs)
    torch.cuda.synchronize()
    for got, expected in zip((kc, vc, ks, vs), before):
        assert same_bits(got, expected)


@needs_kernels
def test_non_finite_rows_read_back_as_nan_per_token():
    g = torch.Generator().manual_seed(4)
    k, v, slots, kc, vc, ks, vs = fp8_inputs("f8e4m3fn", "token", "nhd", 64,
                                             16, g, tokens=4)
    slots = torch.arange(4, device="cuda", dtype=torch.int64)
    k[0, 0, 3] = float("inf")
    k[1, 1, 0] = float("nan")
    paged_attn.append(k, v, slots, kc, vc, k_scale=ks, v_scale=vs)
    torch.cuda.synchronize()
    values = kc.float() * ks[..., None]
    assert values[0, 0, 0].isnan().all()
    assert values[0, 1, 1].isnan().all()
    assert not values[0, 2].isnan().any()


# ---------------------------------------------------------------------------
# (b) append, then decode, step after step
# ---------------------------------------------------------------------------

LOOP_CASES = [(None, None, "nhd"), ("f8e4m3fn", "token", "nhd"),
              ("f8e4m3fn", "head", "hnd"), ("f8e5m2", "tensor", "nhd"),
              ("f8e4m3fn", "tensor", "hnd"), ("f8e5m2", "token", "hnd")]


def dequantised(cache, scale, kind, layout):
    """float64 CPU values of an fp8 cache (or the cache itself)."""
    values = cache.cpu().double()
    if kind is None:
        return values
    s = scale.cpu().double()
    if kind == "tensor":
        return values * s
    if kind == "head":
        return values * s.reshape((1, 1, -1, 1) if layout == "nhd"
                                  else (1, -1, 1, 1))
    return values * s[..., None]


@needs_kernels
@pytest.mark.parametrize("kv_dtype,kind,layout", LOOP_CASES)
def test_append_then_decode(kv_dtype, kind, layout):
    g = torch.Generator().manual_seed(11)
    hq, hkv, d, page, steps = 8, 2, 128, 16, 40
    start = [0, 1, 15, 16, 17, 40]
    batch = len(start)
    max_pages = math.ceil((max(start) + steps) / page)
    pages = batch * max_pages + 3
    perm = torch.randperm(pages, generator=g)
    bt = perm[:batch * max_pages].reshape(batch, max_pages).to(torch.int32)
    shape = cache_shape(pages, page, hkv, d, layout)
    fdtype = FORMATS[kv_dtype][0] if kv_dtype else torch.bfloat16
    if kv_dtype and fdtype is None:
        pytest.skip(f"this torch has no {kv_dtype}")
    kc = torch.zeros(shape, dtype=fdtype, device="cuda")
    vc = torch.zeros(shape, dtype=fdtype, device="cuda")
    scales = {}
    if kind == "token":
        scales = dict(k_scale=torch.ones(shape[:3]).cuda(),
                      v_scale=torch.ones(shape[:3]).cuda())
    elif kind == "head":
        scales = dict(k_scale=torch.full((hkv,), 4 / 448).cuda(),
                      v_scale=torch.full((hkv,), 3 / 448).cuda())
    elif kind == "tensor":
        fmax = FORMATS[kv_dtype][1]
        scales = dict(k_scale=torch.tensor(4 / fmax).cuda(),
                      v_scale=torch.tensor(3 / fmax).cuda())
    # The unquantised rows, float64, on the CPU: the exact cache.
    exact_k = torch.zeros(shape, dtype=torch.float64)
    exact_v = torch.zeros(shape, dtype=torch.float64)
    lens = torch.tensor(start, dtype=torch.int64)

    def write(b, rows_k, rows_v, length):
        """Prefills sequence b's first `length` tokens through append()."""
        pos = torch.arange(length)
        slots = (bt[b, pos // page].long() * page + pos % page)
        paged_attn.append(rows_k, rows_v, slots.cuda(), kc, vc,
                          layout=layout, **scales)
        pg, off = slots // page, slots % page
        set_rows(exact_k, layout, pg, off, rows_k.cpu().double())
        set_rows(exact_v, layout, pg, off, rows_v.cpu().double())

    for b, n in enumerate(start):
        if n:
            write(b, torch.randn(n, hkv, d, generator=g).bfloat16().cuda(),
                  torch.randn(n, hkv, d, generator=g).bfloat16().cuda(), n)
    worst, worst_exact = 0.0, 0.0
    for step in range(steps):
        # Every third step one sequence idles: its slot is padding.
        active = torch.ones(batch, dtype=torch.bool)
        if step % 3 == 0:
            active[step % batch] = False
        new_k = torch.randn(batch, hkv, d, generator=g).bfloat16()
        new_v = torch.randn(batch, hkv, d, generator=g).bfloat16()
        slots = bt[torch.arange(batch), lens // page].long() * page \
            + lens % page
        slots = torch.where(active, slots, torch.full_like(slots, -1))
        paged_attn.append(new_k.cuda(), new_v.cuda(), slots.cuda(), kc, vc,
                          layout=layout, **scales)
        idx = active.nonzero().flatten()
        pg, off = slots[idx] // page, slots[idx] % page
        set_rows(exact_k, layout, pg, off, new_k[idx].double())
        set_rows(exact_v, layout, pg, off, new_v[idx].double())
        lens += active.long()

        q = torch.randn(batch, hq, d, generator=g).bfloat16().cuda()
        sl = lens.to(torch.int32).cuda()
        out = paged_attn.decode(q, kc, vc, bt.cuda(), sl, layout=layout,
                                **scales)
        torch.cuda.synchronize()
        k_ref = dequantised(kc, scales.get("k_scale"), kind, layout)
        v_ref = dequantised(vc, scales.get("v_scale"), kind, layout)
        want = reference(q, k_ref, v_ref, bt, sl, layout)
        err = rel_err(out, want)
        worst = max(worst, err)
        assert err <= LIMITS["bf16"], (step, err)
        exact = reference(q, exact_k, exact_v, bt, sl, layout)
        worst_exact = max(worst_exact, rel_err(out, exact))
    print(f"append+decode {kv_dtype or 'bf16'} {kind or ''} {layout}: "
          f"worst error {worst:.2e} against the dequantised caches, "
          f"{worst_exact:.2e} against the unquantised rows")
    if kv_dtype is None:
        # Rows copied bit for bit: the caches are the rows.
        assert worst_exact <= LIMITS["bf16"]


# ---------------------------------------------------------------------------
# (c) many tokens per sequence in one call
# ---------------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("kv_dtype,kind", [(None, None),
                                           ("f8e4m3fn", "token"),
                                           ("f8e5m2", "head")])
def test_multi_token_append(kv_dtype, kind):
    g = torch.Generator().manual_seed(21)
    batch, L, hkv, d, page, layout = 8, 5, 4, 128, 16, "nhd"
    lens = torch.tensor([0, 3, 14, 15, 16, 31, 60, 2])
    max_pages = math.ceil((int(lens.max()) + L) / page)
    pages = batch * max_pages + 2
    bt = torch.randperm(pages, generator=g)[:batch * max_pages].reshape(
        batch, max_pages)
    pos = lens[:, None] + torch.arange(L)                  # [batch, L]
    slots = (bt.gather(1, pos // page) * page + pos % page).flatten()
    slots[3] = -1                                          # one padded token
    slots = slots.cuda()
    shape = cache_shape(pages, page, hkv, d, layout)
    k = torch.randn(batch * L, hkv, d, generator=g).bfloat16().cuda()
    v = torch.randn(batch * L, hkv, d, generator=g).bfloat16().cuda()
    if kv_dtype is None:
        kc = finite_garbage(shape, torch.bfloat16, g)
        vc = finite_garbage(shape, torch.bfloat16, g)
        ks = vs = None
    else:
        fdtype, fmax = FORMATS[kv_dtype]
        if fdtype is None:
            pytest.skip(f"this torch has no {kv_dtype}")
        kc, vc = garbage_cache(shape, fdtype, g), garbage_cache(shape, fdtype,
                                                                g)
        if kind == "token":
            ks = finite_garbage(shape[:3], torch.float32, g).abs()
            vs = finite_garbage(shape[:3], torch.float32, g).abs()
        else:
            # Made on the host and copied, so that compute-sanitizer's
            # initcheck (PagedAttn's kernels alone instrumented) sees them
            # written.
            ks = torch.full((hkv,), 3 / fmax).cuda()
            vs = torch.full((hkv,), 5 / fmax).cuda()
    want = reference_append(k, v, slots, kc, vc, layout, kv_dtype, kind, ks,
                            vs)
    scales = dict(k_scale=ks, v_scale=vs) if kv_dtype else {}
    paged_attn.append(k, v, slots, kc, vc, layout=layout, **scales)
    torch.cuda.synchronize()
    got = (kc, vc) + ((ks, vs) if kv_dtype else ())
    for a, b in zip(got, want):
        assert same_bits(a, b), mismatches(a, b)


# ---------------------------------------------------------------------------
# Arguments only the GPU path sees
# ---------------------------------------------------------------------------


@needs_kernels
def test_runtime_checks_reach_python():
    g = torch.Generator().manual_seed(1)
    k, v, slots, kc, vc, ks, vs = fp8_inputs("f8e4m3fn", "head", "nhd", 128,
                                             16, g, tokens=4)
    # A view whose rows are not 16-byte aligned.
    wide = torch.zeros(4, HKV, 136, dtype=k.dtype, device="cuda")
    with pytest.raises(ValueError, match="k data pointer is not 16-byte "
                                         "aligned"):
        paged_attn.append(wide[..., 1:129], v, slots, kc, vc, k_scale=ks,
                          v_scale=vs)
    with pytest.raises(ValueError, match="k_cache and v_cache are the same "
                                         "memory"):
        paged_attn.append(k, v, slots, kc, kc, k_scale=ks, v_scale=vs)
    kc16 = torch.zeros(kc.shape, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match="k_cache and v_cache are the same "
                                         "memory"):
        paged_attn.append(k, v, slots, kc16, kc16)
