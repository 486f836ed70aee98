"""Numerics on the GPU against a torch float64 reference, CUDA graphs,
streams and torch.compile. Skipped without torch, CUDA or kernels."""
import itertools
import math
import time

import pytest

import paged_attn

import gpu_matrix

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not paged_attn.has_driver()[0],
    reason="needs a CUDA GPU")

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
LIMITS = {"f16": 2e-3, "bf16": 1e-2, "f32": 1e-4}


def make(lens, hq, hkv, d, page, dtype, layout, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    batch = len(lens)
    max_pages = max(1, max(math.ceil(l / page) for l in lens))
    used = [math.ceil(l / page) for l in lens]
    pages = sum(used) + 3
    perm = torch.randperm(pages, generator=g)
    bt = torch.full((batch, max_pages), -1, dtype=torch.int32)
    nxt = 0
    for b, n in enumerate(used):
        bt[b, :n] = perm[nxt:nxt + n].to(torch.int32)
        nxt += n
    shape = (pages, page, hkv, d) if layout == "nhd" else (pages, hkv, page, d)
    k = torch.rand(shape, generator=g) * 2 - 1
    v = torch.rand(shape, generator=g) * 2 - 1
    q = torch.rand(batch, hq, d, generator=g) * 2 - 1
    t = DTYPES[dtype]
    return (q.to(t).cuda(), k.to(t).cuda(), v.to(t).cuda(), bt.cuda(),
            torch.tensor(lens, dtype=torch.int32).cuda())


def reference(q, k, v, bt, sl, layout, scale=None):
    q, k, v = q.double().cpu(), k.double().cpu(), v.double().cpu()
    bt, sl = bt.cpu(), sl.cpu()
    batch, hq, d = q.shape
    hkv = k.shape[2] if layout == "nhd" else k.shape[1]
    page = k.shape[1] if layout == "nhd" else k.shape[2]
    scale = scale or 1 / math.sqrt(d)
    out = torch.zeros(batch, hq, d, dtype=torch.float64)
    for b in range(batch):
        n = int(sl[b])
        if n == 0:
            continue
        t = torch.arange(n)
        pages, slots = bt[b, t // page].long(), t % page
        kb = k[pages, slots] if layout == "nhd" else k[pages, :, slots]
        vb = v[pages, slots] if layout == "nhd" else v[pages, :, slots]
        # kb: [n, hkv, d]
        kb = kb.repeat_interleave(hq // hkv, dim=1)
        vb = vb.repeat_interleave(hq // hkv, dim=1)
        s = torch.einsum("hd,nhd->hn", q[b], kb) * scale
        out[b] = torch.einsum("hn,nhd->hd", torch.softmax(s, dim=-1), vb)
    return out


def rel_err(a, b):
    return ((a.double().cpu() - b).norm() / b.norm().clamp_min(1e-30)).item()


CASES = list(itertools.product(["f16", "bf16", "f32"], [64, 128, 256],
                               [1, 16, 128], [1, 4, 8], ["nhd", "hnd"]))


@pytest.mark.parametrize("dtype,d,page,group,layout", CASES)
def test_matches_float64(dtype, d, page, group, layout):
    lens = [0, 1, page + 1, page, max(page - 1, 2), 37 + d]
    hkv = 2
    q, k, v, bt, sl = make(lens, hkv * group, hkv, d, page, dtype, layout,
                           seed=d + page + group)
    out = torch.full_like(q, float("nan"))
    paged_attn.decode(q, k, v, bt, sl, layout=layout, out=out, num_splits=3)
    torch.cuda.synchronize()
    assert rel_err(out, reference(q, k, v, bt, sl, layout)) <= LIMITS[dtype]
    assert torch.all(out[0] == 0)  # the empty sequence


def _one_config_per_head_dim():
    """Every (dtype, head_dim) the op accepts, one group each (rotating)."""
    matrix = gpu_matrix.load()
    configs = {}
    for c in matrix.head_dim_configs():
        key = (c.dtype, c.head_dim)
        index = len(configs) % len(matrix.GROUPS)
        if key not in configs and c.group == matrix.GROUPS[index]:
            configs[key] = c
    return [(c.dtype, c.head_dim, c.page, c.group, c.layout)
            for c in configs.values()]


@pytest.mark.parametrize("dtype,d,page,group,layout",
                         _one_config_per_head_dim())
def test_every_head_dim_matches_float64(dtype, d, page, group, layout):
    lens = [0, 1, page + 1, 700 + d, 33]
    hkv = 2
    q, k, v, bt, sl = make(lens, hkv * group, hkv, d, page, dtype, layout,
                           seed=d)
    for splits in (1, 3):
        out = torch.full_like(q, float("nan"))
        paged_attn.decode(q, k, v, bt, sl, layout=layout, out=out,
                          num_splits=splits)
        torch.cuda.synchronize()
        assert rel_err(out, reference(q, k, v, bt, sl, layout)) <= LIMITS[dtype]


def test_ragged_long_with_auto_split_and_scale():
    lens = [0, 1, 15, 17, 20000, 9999, 4096, 12345]
    q, k, v, bt, sl = make(lens, 8, 2, 128, 16, "bf16", "nhd", seed=7)
    out = paged_attn.decode(q, k, v, bt, sl, scale=0.02)
    torch.cuda.synchronize()
    assert rel_err(out, reference(q, k, v, bt, sl, "nhd", 0.02)) <= 1e-2


def test_split_planned_from_host_lengths():
    lens = [0, 1, 15, 17, 20000, 9999, 4096, 12345]
    q, k, v, bt, sl = make(lens, 32, 8, 128, 16, "bf16", "nhd", seed=8)
    ref = reference(q, k, v, bt, sl, "nhd")
    np = pytest.importorskip("numpy")
    for host in (lens, tuple(lens), torch.tensor(lens, dtype=torch.int32),
                 torch.tensor(lens), np.array(lens, np.int32),
                 list(reversed(lens))):  # a plan for other lengths is right
        out = paged_attn.decode(q, k, v, bt, sl, host_seq_lens=host)
        torch.cuda.synchronize()
        assert rel_err(out, ref) <= 1e-2
    # Host lengths keep a call on the torch path (python/src/torch_calls.cpp).
    args = (q, k, v, bt, sl, None, None, None, "nhd", 0, None, False, None,
            None, None, None, None, False, None, None, None, None, lens)
    out = paged_attn._ext.decode_torch(*args)
    assert out is not None
    torch.cuda.synchronize()
    assert rel_err(out, ref) <= 1e-2
    plan = paged_attn.DecodePlan(q, k, v, bt, sl)
    for host in (lens, np.array(lens), None):
        plan.out.fill_(float("nan"))
        plan.run(host_seq_lens=host)
        torch.cuda.synchronize()
        assert rel_err(plan.out, ref) <= 1e-2
    with pytest.raises(ValueError, match="host_seq_lens has 2 entries for a "
                                         "batch of 8"):
        plan.run(host_seq_lens=[1, 2])
    with pytest.raises(ValueError, match="host_seq_lens plan an automatic "
                                         "split; with num_splits 3 given"):
        paged_attn.decode(q, k, v, bt, sl, host_seq_lens=lens, num_splits=3)


def test_graph_planned_from_host_lengths_replays_new_lengths():
    lens = [0, 1, 15, 17, 20000, 9999, 4096, 12345]
    q, k, v, bt, sl = make(lens, 32, 8, 128, 16, "bf16", "nhd", seed=9)
    out = torch.empty_like(q)
    ws = torch.empty(paged_attn.workspace_size(q, k, bt), dtype=torch.uint8,
                     device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up (loads the module) off the graph
        paged_attn.decode(q, k, v, bt, sl, out=out, workspace=ws,
                          host_seq_lens=lens)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        paged_attn.decode(q, k, v, bt, sl, out=out, workspace=ws,
                          host_seq_lens=lens)
    # New lengths within each sequence's pages: the longest now short.
    for new in (lens, [0, 16, 3, 32, 7, 10000, 4096, 12352],
                [0, 1, 16, 1, 19999, 1, 2048, 6000]):
        sl.copy_(torch.tensor(new, dtype=torch.int32))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert rel_err(out, reference(q, k, v, bt, sl, "nhd")) <= 1e-2


def test_cuda_graph_capture_and_replay():
    q, k, v, bt, sl = make([100, 3000, 0, 1], 8, 2, 128, 16, "bf16", "nhd")
    out = torch.empty_like(q)
    ws = torch.empty(paged_attn.workspace_size(q, k, bt), dtype=torch.uint8,
                     device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up (loads the module) off the graph
        paged_attn.decode(q, k, v, bt, sl, out=out, workspace=ws)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        paged_attn.decode(q, k, v, bt, sl, out=out, workspace=ws)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(out, reference(q, k, v, bt, sl, "nhd")) <= 1e-2
    # Replay sees new data in the same buffers.
    q.copy_(torch.rand_like(q) * 2 - 1)
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(out, reference(q, k, v, bt, sl, "nhd")) <= 1e-2


def test_plan_runs_on_new_values_in_its_tensors():
    q, k, v, bt, sl = make([5, 300, 17, 1000], 32, 8, 128, 16, "bf16", "nhd",
                           seed=11)
    plan = paged_attn.DecodePlan(q, k, v, bt, sl)
    plan.out.fill_(float("nan"))
    out = plan.run()
    torch.cuda.synchronize()
    assert out is plan.out
    assert rel_err(out, reference(q, k, v, bt, sl, "nhd")) <= 1e-2
    # New values in the same tensors (lengths within each sequence's pages).
    q.copy_(torch.rand_like(q) * 2 - 1)
    sl.copy_(torch.tensor([16, 1, 32, 999], dtype=torch.int32))
    out.fill_(float("nan"))
    plan.run(torch.cuda.current_stream())
    torch.cuda.synchronize()
    assert rel_err(out, reference(q, k, v, bt, sl, "nhd")) <= 1e-2


def test_non_default_stream():
    q, k, v, bt, sl = make([500, 70], 32, 8, 128, 16, "f16", "hnd")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = paged_attn.decode(q, k, v, bt, sl, layout="hnd")
    s.synchronize()
    assert rel_err(out, reference(q, k, v, bt, sl, "hnd")) <= 2e-3


def test_torch_compile_custom_op():
    q, k, v, bt, sl = make([33, 1000], 16, 4, 64, 16, "bf16", "nhd")

    @torch.compile(fullgraph=True)
    def f(q, k, v, bt, sl):
        return torch.ops.paged_attn.decode(q, k, v, bt, sl, 0.0, "nhd", 0) * 2

    out = f(q, k, v, bt, sl)
    torch.cuda.synchronize()
    assert rel_err(out / 2, reference(q, k, v, bt, sl, "nhd")) <= 1e-2


class DLPackOnly:
    """Exports a tensor through DLPack alone (as JAX or another framework
    would)."""

    def __init__(self, t):
        self.t = t

    def __dlpack__(self, **kwargs):
        return self.t.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


def test_dlpack_inputs():
    q, k, v, bt, sl = make([200, 5], 8, 2, 128, 16, "f16", "nhd")
    out = torch.empty_like(q)
    paged_attn.decode(DLPackOnly(q), DLPackOnly(k), DLPackOnly(v),
                      DLPackOnly(bt), DLPackOnly(sl), out=DLPackOnly(out),
                      stream=torch.cuda.current_stream())
    torch.cuda.synchronize()
    assert rel_err(out, reference(q, k, v, bt, sl, "nhd")) <= 2e-3


def test_check_mode_reports_bad_entry():
    q, k, v, bt, sl = make([40, 100, 33], 8, 2, 128, 16, "bf16", "nhd")
    bt[1, 5] = 100000
    with pytest.raises(paged_attn.PagedAttnError,
                       match=r"block_table\[1\]\[5\] = 100000"):
        paged_attn.decode(q, k, v, bt, sl, check_page_table=True)


def _host_us_per_call(fn, n=3000):
    for _ in range(100):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    us = (time.perf_counter() - start) / n * 1e6
    torch.cuda.synchronize()
    return us


def test_host_overhead(capsys):
    # A report (bench/bench_host.py has the rows and the method), with
    # sanity bounds: decode() on torch tensors takes the torch path; the
    # checked path is what every call took before it.
    q, k, v, bt, sl = make([16], 32, 8, 128, 16, "bf16", "nhd")
    out = torch.empty_like(q)
    ws = torch.empty(max(256, paged_attn.workspace_size(q, k, bt)),
                     dtype=torch.uint8, device="cuda")
    plan = paged_attn.DecodePlan(q, k, v, bt, sl, out=out, workspace=ws)
    checked = (q, k, v, bt, sl, out, ws, None, "nhd", 0, None, False, None,
               None, None, None, None, False, None)
    us = {
        "decode()": _host_us_per_call(
            lambda: paged_attn.decode(q, k, v, bt, sl, out=out, workspace=ws)),
        "DecodePlan.run()": _host_us_per_call(plan.run),
        "the checked path": _host_us_per_call(
            lambda: paged_attn._call_checked(paged_attn._checked_decode,
                                             checked)),
    }
    with capsys.disabled():
        print("\nhost overhead from Python, us per call: " +
              ", ".join(f"{name} {t:.1f}" for name, t in us.items()))
    assert all(t < 1000 for t in us.values())  # sanity bounds only
