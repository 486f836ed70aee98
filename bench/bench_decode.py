#!/usr/bin/env python3
"""PagedAttn decode against its peers, in one process, on one GPU.

For each case it builds one paged KV cache (shuffled block table) and the
same KV laid out contiguously, then times each op with CUDA events, input
sets rotated so that L2 does not hold the KV, in up to two ways:

  eager   warm-up, then the median over samples of 10 calls enqueued back
          to back (--iters calls in all);
  graph   one CUDA graph of whole rounds over the input sets (20 calls or
          more), replayed: the median over replays (--no-graph: none).
          Replay leaves no launch gaps between calls, which eager timing of
          a short op keeps.

The ops:

  paged_attn      this project, through the C API of libpaged_attn_runtime
                  (eager and graph), its split planned from the host's
                  lengths as a serving loop would pass them
  paged_attn_even the same without the host's lengths (ragged cases): every
                  sequence split the same number of ways
  paged_attn_baseline
                  the same calls on another build's kernels (--baseline
                  DIR): two versions of a kernel compared in one process,
                  on the same inputs, between the same peers
  flashinfer      FlashInfer's paged decode, tensor-core path, on the same
                  paged cache and block table (eager and graph)
  flashinfer_cc   the same, CUDA-core path (eager and graph)
  sdpa_cudnn      torch SDPA, cuDNN backend, on the contiguous KV (eager
                  and graph)
  sdpa_flash      torch SDPA, flash backend, on the contiguous KV
  gather_sdpa     gather the pages into contiguous KV, then SDPA
  flex            FlexAttention (torch.compile) on the contiguous KV (--flex)

FlashInfer is the peer in .peers/flashinfer: fi_peer.py around FlashInfer's
own kernels and planner (bf16, head_dim 128 and 256, NHD). Its plans are
made outside the timed region. Without the peer, or with --no-flashinfer,
its columns stay empty and results.json says why. The SDPA peers read no
page table and run on equal lengths only; FlashInfer runs on ragged cases
too. PagedAttn's and FlashInfer's outputs are checked against one f32
reference; a peer off it by more than 2e-2 keeps its times, flagged.

There is also a read-bandwidth ceiling (a Triton streaming read, or
torch.sum if Triton is missing). Bandwidth = bytes the op must move (K and
V of the tokens held, q, out, the page-table entries used) / median time.

    bench_decode.py --lib build-rt/lib/libpaged_attn_runtime.so \\
        --kernels DIR --out bench/results/<card>-<date>

writes results.json and results.md there (plot.py draws the PNG).
"""
import argparse
import ctypes
import datetime
import json
import math
import os
import re
import statistics
import sys

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# The C API (include/PagedAttn-c/Runtime.h)
# ---------------------------------------------------------------------------

F16, BF16, F32, I32 = 0, 1, 2, 3
NHD, HND = 0, 1
DTYPES = {torch.float16: F16, torch.bfloat16: BF16, torch.float32: F32,
          torch.int32: I32}


class CTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int),
                ("rank", ctypes.c_int32), ("sizes", ctypes.c_int64 * 4),
                ("strides", ctypes.c_int64 * 4)]


# Field for field as in the header, the variants' too: the C side reads and
# paged_attn_decode_params_init writes the whole struct.
class CConfig(ctypes.Structure):
    _fields_ = [("num_heads", ctypes.c_int64), ("num_kv_heads", ctypes.c_int64),
                ("head_dim", ctypes.c_int64), ("page_size", ctypes.c_int64),
                ("dtype", ctypes.c_int), ("layout", ctypes.c_int),
                ("num_warps", ctypes.c_int64), ("variants", ctypes.c_uint32),
                ("query_len", ctypes.c_int64), ("kv_scale", ctypes.c_int32),
                ("kv_dtype", ctypes.c_int)]


class CParams(ctypes.Structure):
    _fields_ = [("q", CTensor), ("k_cache", CTensor), ("v_cache", CTensor),
                ("block_table", CTensor), ("seq_lens", CTensor),
                ("out", CTensor), ("scale", ctypes.c_float),
                ("max_seq_len", ctypes.c_int64), ("num_splits", ctypes.c_int32),
                ("workspace", ctypes.c_void_p),
                ("workspace_bytes", ctypes.c_size_t),
                ("check_page_table", ctypes.c_int32),
                ("window", ctypes.c_int64), ("soft_cap", ctypes.c_float),
                ("alibi_slopes", CTensor), ("sinks", CTensor), ("lse", CTensor),
                ("tree_mask", CTensor), ("k_scale", CTensor),
                ("v_scale", CTensor), ("split_chunk", ctypes.c_int32),
                ("host_seq_lens", ctypes.POINTER(ctypes.c_int32))]


def c_tensor(t):
    ct = CTensor()
    ct.data = t.data_ptr()
    ct.dtype = DTYPES[t.dtype]
    ct.rank = t.dim()
    for i, (s, st) in enumerate(zip(t.shape, t.stride())):
        ct.sizes[i] = s
        ct.strides[i] = st
    return ct


class PagedAttn:
    def __init__(self, lib_path, kernel_dir, num_warps=4):
        self.num_warps = num_warps
        self.lib = ctypes.CDLL(lib_path)
        self.lib.paged_attn_last_error.restype = ctypes.c_char_p
        self.lib.paged_attn_decoder_workspace_size.restype = ctypes.c_size_t
        self.library = ctypes.c_void_p()
        self._check(self.lib.paged_attn_library_load_directory(
            kernel_dir.encode(), ctypes.byref(self.library)))
        self.decoders = {}

    def _check(self, status):
        if status != 0:
            raise RuntimeError(self.lib.paged_attn_last_error().decode())

    def decoder(self, hq, hkv, d, page, dtype, layout):
        key = (hq, hkv, d, page, dtype, layout)
        if key not in self.decoders:
            cfg = CConfig(hq, hkv, d, page, DTYPES[dtype], layout,
                          self.num_warps, 0)
            dec = ctypes.c_void_p()
            self._check(self.lib.paged_attn_decoder_create(
                self.library, ctypes.byref(cfg), ctypes.byref(dec)))
            self.decoders[key] = dec
        return self.decoders[key]

    def params(self, q, k, v, bt, sl, out, max_seq_len, workspace,
               host_lens=None):
        """host_lens: the lengths as a ctypes int32 array (kept alive by the
        caller), which plan the split; None leaves the automatic one."""
        p = CParams()
        self.lib.paged_attn_decode_params_init(ctypes.byref(p))
        p.q, p.k_cache, p.v_cache = c_tensor(q), c_tensor(k), c_tensor(v)
        p.block_table, p.seq_lens, p.out = c_tensor(bt), c_tensor(sl), c_tensor(out)
        p.max_seq_len = max_seq_len
        p.workspace = workspace.data_ptr()
        p.workspace_bytes = workspace.numel()
        if host_lens is not None:
            p.host_seq_lens = ctypes.cast(host_lens,
                                          ctypes.POINTER(ctypes.c_int32))
        return p

    def workspace_bytes(self, dec, batch, max_seq_len):
        n = ctypes.c_size_t()
        self._check(self.lib.paged_attn_decoder_max_workspace_size(
            dec, ctypes.c_int64(batch), ctypes.c_int64(max_seq_len),
            ctypes.byref(n)))
        return n.value

    def decode(self, dec, params):
        stream = torch.cuda.current_stream().cuda_stream
        self._check(self.lib.paged_attn_decode(dec, ctypes.byref(params),
                                               ctypes.c_void_p(stream)))


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


class Case:
    """One decode problem. A ragged case draws each sequence's length
    uniformly from 1..2 x seq_len (make_inputs), so seq_len is about their
    mean."""

    def __init__(self, batch, seq_len, hq=32, hkv=8, d=128, page=16,
                 dtype=torch.bfloat16, ragged=False, group="main"):
        self.batch, self.seq_len, self.hq, self.hkv, self.d = batch, seq_len, hq, hkv, d
        self.page, self.dtype, self.ragged, self.group = page, dtype, ragged, group

    def dtype_name(self):
        return {torch.bfloat16: "bf16", torch.float16: "f16",
                torch.float32: "f32"}[self.dtype]

    def name(self):
        r = " ragged" if self.ragged else ""
        return (f"B={self.batch} S={self.seq_len}{r} Hq/Hkv={self.hq}/{self.hkv} "
                f"D={self.d} page={self.page} {self.dtype_name()}")


class Arena:
    """One allocation made before any case, handed out front to back and
    reset between cases, like a serving system's KV cache pool.

    Caches allocated per case ran up to 15% slower once earlier cases' memory
    had gone back to the driver and come back (bench/NOTES.md 17): the
    timings depended on the order of the cases. Carving every case's KV out
    of memory allocated once at the start removes that."""

    def __init__(self, nbytes):
        self.buffer = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        self.used = 0

    def take(self, shape, dtype):
        n = math.prod(shape) * torch.finfo(dtype).bits // 8
        if self.used + n > self.buffer.numel():
            raise RuntimeError(f"arena of {self.buffer.numel()} bytes is too "
                               f"small for {n} more after {self.used}")
        t = self.buffer[self.used:self.used + n].view(dtype).view(shape)
        self.used = (self.used + n + 255) // 256 * 256
        return t

    def reset(self):
        self.used = 0


L2_ROTATION_BYTES = 3 * 60e6


def input_sets(kv_bytes):
    """Input sets to rotate among so that L2 does not hold the KV."""
    return max(1, min(8, math.ceil(L2_ROTATION_BYTES / kv_bytes)))


def arena_bytes(cases):
    """Enough for the K and V caches of any one case in all its input sets:
    sets x kv is kv for one set and below L2_ROTATION_BYTES + kv for more.
    Ragged lengths are at most 2 x seq_len; pages round up."""
    most = 0
    for c in cases:
        el = torch.finfo(c.dtype).bits // 8
        tokens = c.batch * (2 if c.ragged else 1) * c.seq_len
        kv = 2 * (tokens + c.batch * c.page + c.page) * c.hkv * c.d * el
        most = max(most, kv + int(L2_ROTATION_BYTES))
    return most + (16 << 20)  # 256-byte alignment of each piece


# Set by main(): where the paged caches and their contiguous copies live.
PAGED_ARENA = None
CONTIGUOUS_ARENA = None


def make_inputs(c, seed):
    """One paged cache plus the same KV laid out contiguously."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    if c.ragged:
        lens = torch.randint(1, 2 * c.seq_len + 1, (c.batch,), generator=g)
    else:
        lens = torch.full((c.batch,), c.seq_len)
    max_len = int(lens.max())
    max_pages = math.ceil(max_len / c.page)
    pages_per_seq = [math.ceil(int(l) / c.page) for l in lens]
    num_pages = sum(pages_per_seq) + 1
    perm = torch.randperm(num_pages, generator=g)
    bt = torch.full((c.batch, max_pages), -1, dtype=torch.int32)
    nxt = 0
    for b, n in enumerate(pages_per_seq):
        bt[b, :n] = perm[nxt:nxt + n].to(torch.int32)
        nxt += n
    dev = "cuda"
    shape = (num_pages, c.page, c.hkv, c.d)
    if PAGED_ARENA is not None:
        k = PAGED_ARENA.take(shape, c.dtype).normal_()
        v = PAGED_ARENA.take(shape, c.dtype).normal_()
    else:
        k = torch.randn(shape, device=dev, dtype=c.dtype)
        v = torch.randn(shape, device=dev, dtype=c.dtype)
    q = torch.randn(c.batch, c.hq, c.d, device=dev, dtype=c.dtype)
    bt = bt.to(dev)
    sl = lens.to(torch.int32).to(dev)
    return dict(q=q, k=k, v=v, bt=bt, sl=sl, lens=lens, max_len=max_len)


def gather_contiguous(x, bt, max_len):
    """[pages, page, hkv, d] + block table -> [batch, hkv, max_len, d]."""
    b, mp = bt.shape
    pages = x[bt.clamp(min=0).long()]          # [b, mp, page, hkv, d]
    flat = pages.reshape(b, mp * x.shape[1], x.shape[2], x.shape[3])
    return flat[:, :max_len].transpose(1, 2)


def bytes_moved(c, inp):
    el = torch.finfo(c.dtype).bits // 8
    tokens = int(inp["lens"].sum())
    pages = sum(math.ceil(int(l) / c.page) for l in inp["lens"])
    return 2 * tokens * c.hkv * c.d * el + 2 * c.batch * c.hq * c.d * el + 4 * pages + 4 * c.batch


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def time_fn(fns, iters, warmup, calls_per_sample=10):
    """Median milliseconds per call of fns[i % len(fns)]().

    Each sample times `calls_per_sample` calls enqueued back to back between
    two events, so the GPU runs them without waiting for the host: what is
    measured is the GPU time of the op, as in a serving loop that enqueues
    layer after layer. (Timing one call at a time adds the Python and
    launch time of the call to every sample whenever the host is slower
    than the kernel; host overhead is measured on its own.)
    """
    for i in range(warmup):
        fns[i % len(fns)]()
    torch.cuda.synchronize()
    samples = []
    call = 0
    for _ in range(max(1, iters // calls_per_sample)):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(calls_per_sample):
            fns[call % len(fns)]()
            call += 1
        e.record()
        e.synchronize()
        samples.append(s.elapsed_time(e) / calls_per_sample)
    return statistics.median(samples)


# Graphs whose capture failed, kept alive for the allocator (time_graph_fn).
FAILED_CAPTURES = []


def time_graph_fn(fns, iters, min_calls=20):
    """Median milliseconds per call of fns replayed from one CUDA graph.

    The graph holds whole rounds of one call per input set, at least
    `min_calls` calls, so that the KV rotates beyond L2 as in time_fn; it is
    replayed until about `iters` calls have been timed, at least 7 times.
    A replay enqueues all its calls at once, so no launch gap of the host
    is left between them. Raises when the calls cannot be captured.
    """
    rounds = math.ceil(min_calls / len(fns))
    calls = rounds * len(fns)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    # Capture on a side stream, which the `with` hands back from even when
    # capture_end raises (torch.cuda.graph's exit does not). A capture_end
    # that raises also skips ending the allocator's capture: from then on
    # the allocator's cache cannot be emptied (torch.cuda.graph's entry does
    # that, hence it is not used) and it keeps a pointer to the graph.
    try:
        with torch.cuda.stream(side):
            for fn in fns:  # lazy set-up (module loads, cuDNN plans) first
                fn()
            side.synchronize()
            graph.capture_begin()
            try:
                for _ in range(rounds):
                    for fn in fns:
                        fn()
            finally:
                graph.capture_end()
    except Exception:
        FAILED_CAPTURES.append(graph)
        raise
    torch.cuda.current_stream().wait_stream(side)
    graph.replay()  # the first replay uploads the graph
    torch.cuda.synchronize()
    samples = []
    for _ in range(max(7, math.ceil(iters / calls))):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        e.synchronize()
        samples.append(s.elapsed_time(e) / calls)
    return statistics.median(samples)


READ_CEILING_PTX = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools", "paged-attn-run",
                                "read_ceiling.ptx")


def read_ceiling_tbps():
    """The streaming read paged-attn-run uses (through CuPy), else a Triton
    read, else torch.sum: the best of those that run."""
    n = 1 << 30  # bytes
    buf = torch.ones(n // 4, dtype=torch.int32, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    candidates = []
    try:
        import cupy
        module = cupy.RawModule(path=READ_CEILING_PTX)
        kernel = module.get_function("read_ceiling")
        dst = torch.zeros(16, dtype=torch.int32, device="cuda")
        args = (cupy.uint64(buf.data_ptr()), cupy.uint64(n // 64),
                cupy.uint64(dst.data_ptr()))
        stream = torch.cuda.current_stream().cuda_stream
        candidates.append(("PTX streaming read (read_ceiling.ptx)",
                           lambda: kernel((sms * 8,), (256,), args,
                                          stream=cupy.cuda.ExternalStream(stream))))
    except Exception:  # noqa: BLE001 - fall back to the others
        pass
    try:
        import triton
        import triton.language as tl

        @triton.jit
        def read_kernel(x, out, n, BLOCK: tl.constexpr):
            pid = tl.program_id(0)
            acc = tl.zeros([BLOCK], dtype=tl.int32)
            for start in range(pid * BLOCK, n, tl.num_programs(0) * BLOCK):
                offs = start + tl.arange(0, BLOCK)
                acc ^= tl.load(x + offs, mask=offs < n, other=0)
            tl.store(out + pid * BLOCK + tl.arange(0, BLOCK), acc)

        out = torch.empty(sms * 4 * 4096, dtype=torch.int32, device="cuda")
        candidates.append(("Triton streaming read", lambda: read_kernel[(sms * 4,)](
            buf, out, buf.numel(), BLOCK=4096)))
    except Exception:  # noqa: BLE001
        pass
    candidates.append(("torch.sum", lambda: buf.sum()))
    best = (0.0, "")
    for how, fn in candidates:
        try:
            ms = time_fn([fn], 30, 5)
        except Exception:  # noqa: BLE001
            continue
        best = max(best, (n / (ms * 1e-3) / 1e12, how))
    return best


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------

# Relative error above which a peer's output is flagged (its times are kept).
PEER_TOLERANCE = 2e-2


def reason(e):
    """One line saying why `e` was raised, after the error it was raised
    while handling, if any (a failed capture's first error, for instance)."""
    def first_line(x):
        lines = str(x).strip().splitlines()
        return lines[0] if lines else type(x).__name__
    text = first_line(e)
    if e.__context__ is not None:
        text = f"{first_line(e.__context__)}; then {text}"
    return text[:240]


def skip(result, name, why):
    result.setdefault("skipped", {})[name] = why


def reference(inp, scale):
    """f32 attention of input set `inp` on its KV gathered contiguously."""
    kc = gather_contiguous(inp["k"], inp["bt"], inp["max_len"]).float()
    vc = gather_contiguous(inp["v"], inp["bt"], inp["max_len"]).float()
    mask = (torch.arange(inp["max_len"], device="cuda")[None, :] <
            inp["sl"][:, None].long())[:, None, None, :]
    return F.scaled_dot_product_attention(
        inp["q"].float()[:, :, None], kc, vc, attn_mask=mask, scale=scale,
        enable_gqa=True)[:, :, 0]


def rel_error(out, ref):
    return ((out.float() - ref).norm() / ref.norm()).item()


def check_peer(result, name, out, ref):
    err = rel_error(out, ref)
    result["rel_error_peers"][name] = err
    if err > PEER_TOLERANCE:
        result.setdefault("flagged", {})[name] = (
            f"rel error {err:.1e} above {PEER_TOLERANCE:.0e}")


def time_graph(result, name, fns, args):
    """Records the graph-replay time of `name`, or why it has none."""
    if not args.graph:
        return
    try:
        result["us_graph"][name] = time_graph_fn(fns, args.iters) * 1e3
    except Exception as e:  # noqa: BLE001 - reported, and the rest goes on
        skip(result, name + "_graph", reason(e))


# ---------------------------------------------------------------------------
# FlashInfer (.peers/flashinfer)
# ---------------------------------------------------------------------------

FLASHINFER_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".peers", "flashinfer"))
# Column -> fi_peer.plan's tensor_cores.
FLASHINFER_PATHS = {"flashinfer": True, "flashinfer_cc": False}
# The GQA group sizes FlashInfer's kernels are instantiated for
# (DISPATCH_GQA_GROUP_SIZE in its utils.cuh).
FLASHINFER_GROUPS = (1, 2, 3, 4, 6, 8, 16)


def flashinfer_version():
    """The FlashInfer release the peer's README names."""
    try:
        with open(os.path.join(FLASHINFER_DIR, "README.md")) as f:
            match = re.search(r"FlashInfer \*\*([^*\s]+)\*\*", f.read())
    except OSError:
        match = None
    return match.group(1) if match else "unknown version"


def load_flashinfer():
    """fi_peer with its extension loaded, or None; and what results.json
    says about it: the FlashInfer version, or why it is not available."""
    if not os.path.isdir(FLASHINFER_DIR):
        return None, f"not available: {FLASHINFER_DIR} is absent"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        return None, (f"not available: fi_peer is built for sm_90a, this "
                      f"card is sm_{major}{minor}")
    sys.path.insert(0, FLASHINFER_DIR)
    try:
        import fi_peer
        fi_peer.build()
    except Exception as e:  # noqa: BLE001 - the peer is optional
        return None, f"not available: fi_peer.build() failed: {reason(e)}"
    return fi_peer, flashinfer_version()


def flashinfer_rejects(c, inputs):
    """Why fi_peer cannot run case `c` on `inputs`, or None."""
    if c.dtype != torch.bfloat16:
        return f"the FlashInfer peer takes bf16 only, not {c.dtype_name()}"
    if c.d not in (128, 256):
        return f"the FlashInfer peer has head_dim 128 and 256 only, not {c.d}"
    group = c.hq // c.hkv
    if group not in FLASHINFER_GROUPS:
        return (f"GQA group {group} is not one FlashInfer instantiates "
                f"{FLASHINFER_GROUPS}")
    if min(int(inp["lens"].min()) for inp in inputs) < 1:
        return "a sequence of length 0 (fi_peer needs seq_lens >= 1)"
    return None


def flashinfer_runs(fi, c, inputs, tensor_cores, scale):
    """One call per input set, each running the plan made for its set, and
    the output of the first. Planning syncs with the host: it is done here,
    once per distinct set, outside the timed region."""
    made = {}
    for inp in inputs:
        if id(inp) in made:
            continue
        plan = fi.plan(inp["bt"], inp["sl"], c.hq, c.hkv, c.d, c.page,
                       tensor_cores=tensor_cores)
        out = torch.empty_like(inp["q"])
        made[id(inp)] = (lambda plan=plan, inp=inp, out=out: plan.run(
            inp["q"], inp["k"], inp["v"], out, scale), out)
    return [made[id(inp)][0] for inp in inputs], made[id(inputs[0])][1]


def time_flashinfer(fi, c, inputs, ref, scale, args, result):
    """Both FlashInfer paths on the paged cache and block table PagedAttn
    reads: their error against `ref` (of inputs[0]), eager and graph."""
    why_not = flashinfer_rejects(c, inputs)
    for name, tensor_cores in FLASHINFER_PATHS.items():
        if why_not:
            skip(result, name, why_not)
            continue
        try:
            runs, out = flashinfer_runs(fi, c, inputs, tensor_cores, scale)
            runs[0]()
            check_peer(result, name, out, ref)
            result["us"][name] = time_fn(runs, args.iters, args.warmup) * 1e3
        except Exception as e:  # noqa: BLE001 - reported, and the rest goes on
            skip(result, name, reason(e))
            continue
        time_graph(result, name, runs, args)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def paged_attn_runs(pa, dec, c, inputs, host_lengths=True, tag=""):
    """One decode call per input set, its params built beforehand. The
    params hold raw pointers: the tensors (and the host lengths, which plan
    the split as a serving loop's would) they point to stay in the set.
    `tag` names a second build's output, workspace and params (the
    baseline's) apart from the first's."""
    runs = []
    out, ws = "out" + tag, "ws" + tag
    key = ("params" if host_lengths else "params_even") + tag
    for inp in inputs:
        if out not in inp:
            inp[out] = torch.empty_like(inp["q"])
            inp[ws] = torch.empty(
                max(256, pa.workspace_bytes(dec, c.batch, inp["max_len"])),
                dtype=torch.uint8, device="cuda")
        if "host_lens" not in inp:
            inp["host_lens"] = (ctypes.c_int32 * c.batch)(
                *[int(l) for l in inp["lens"]])
        if key not in inp:  # ragged cases repeat one set
            inp[key] = pa.params(inp["q"], inp["k"], inp["v"], inp["bt"],
                                 inp["sl"], inp[out], inp["max_len"],
                                 inp[ws],
                                 inp["host_lens"] if host_lengths else None)
        runs.append(lambda p=inp[key]: pa.decode(dec, p))
    return runs


def time_baseline(baseline, c, inputs, args, result):
    """The baseline build's calls, timed as paged_attn's; returns its runs
    (None where it has no kernel for the case)."""
    try:
        dec = baseline.decoder(c.hq, c.hkv, c.d, c.page, c.dtype, NHD)
    except RuntimeError as e:
        skip(result, "paged_attn_baseline", reason(e))
        return None
    runs = paged_attn_runs(baseline, dec, c, inputs, tag="_baseline")
    result["us"]["paged_attn_baseline"] = (
        time_fn(runs, args.iters, args.warmup) * 1e3)
    time_graph(result, "paged_attn_baseline", runs, args)
    return runs


def contiguous_copies(c, inputs):
    """(q, K, V) of each input set with the KV laid out contiguously."""
    contig = []
    for inp in inputs:
        kv4 = []
        for x in (inp["k"], inp["v"]):
            gathered = gather_contiguous(x, inp["bt"], inp["max_len"])
            if CONTIGUOUS_ARENA is not None:
                kv4.append(CONTIGUOUS_ARENA.take(gathered.shape, c.dtype)
                           .copy_(gathered))
            else:
                kv4.append(gathered.contiguous())
            del gathered
        contig.append((inp["q"][:, :, None], kv4[0], kv4[1]))
    return contig


def time_contiguous_peers(c, inputs, scale, args, result):
    """SDPA (cuDNN and flash; cuDNN replayed from a graph too), FlexAttention
    and gather + SDPA: equal lengths only, as they read no page table."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    contig = contiguous_copies(c, inputs)
    for name, backend in (("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("sdpa_flash", SDPBackend.FLASH_ATTENTION)):
        with sdpa_kernel(backend):
            fns = [lambda t=t: F.scaled_dot_product_attention(
                t[0], t[1], t[2], scale=scale, enable_gqa=True)
                for t in contig]
            try:
                result["us"][name] = time_fn(fns, args.iters, args.warmup) * 1e3
            except RuntimeError as e:
                skip(result, name, reason(e))
                continue
            if name == "sdpa_cudnn":
                time_graph(result, name, fns, args)
    # FlexAttention compiles per shape (tens of seconds): two cases.
    if args.flex and (c.batch, c.seq_len) in ((1, 32768), (32, 4096)) \
            and c.group == "main":
        try:
            from torch.nn.attention.flex_attention import flex_attention
            flex = torch.compile(flex_attention, dynamic=False)
            fns = [lambda t=t: flex(t[0], t[1], t[2], scale=scale,
                                    enable_gqa=True) for t in contig]
            result["us"]["flex"] = time_fn(fns, args.iters, args.warmup) * 1e3
        except Exception as e:  # noqa: BLE001
            skip(result, "flex", reason(e))
    del contig

    def gather_then_sdpa(inp):
        k4 = gather_contiguous(inp["k"], inp["bt"], inp["max_len"])
        v4 = gather_contiguous(inp["v"], inp["bt"], inp["max_len"])
        return F.scaled_dot_product_attention(
            inp["q"][:, :, None], k4, v4, scale=scale, enable_gqa=True)
    try:
        fns = [lambda inp=inp: gather_then_sdpa(inp) for inp in inputs]
        result["us"]["gather_sdpa"] = time_fn(fns, max(10, args.iters // 4),
                                              3) * 1e3
    except RuntimeError as e:
        skip(result, "gather_sdpa", reason(e))


def speedups(result):
    """PagedAttn against cuDNN SDPA, FlashInfer (the faster of its paths
    whose output is not flagged) and the baseline build, eager and graph:
    the other's time over PagedAttn's, above 1 where PagedAttn is faster."""
    flagged = result.get("flagged", {})
    ratios = {}
    for times, suffix in ((result["us"], ""), (result["us_graph"], "_graph")):
        pa = times.get("paged_attn")
        if pa is None:
            continue
        for other in ("sdpa_cudnn", "paged_attn_baseline"):
            if other in times and other not in flagged:
                ratios[other + suffix] = times[other] / pa
        fi = [times[n] for n in FLASHINFER_PATHS
              if n in times and n not in flagged]
        if fi:
            ratios["flashinfer" + suffix] = min(fi) / pa
    return ratios


def run_case(pa, fi, c, args, baseline=None):
    if PAGED_ARENA is not None:
        PAGED_ARENA.reset()
        CONTIGUOUS_ARENA.reset()
    probe = make_inputs(c, 0)
    kv_bytes = bytes_moved(c, probe)
    sets = input_sets(kv_bytes)
    inputs = [probe] + [make_inputs(c, s) for s in range(1, sets)]
    # Same lengths in every set (ragged draws differ per seed otherwise).
    if c.ragged:
        inputs = [probe] * sets
    dec = pa.decoder(c.hq, c.hkv, c.d, c.page, c.dtype, NHD)
    scale = 1.0 / math.sqrt(c.d)
    result = {"case": c.name(), "group": c.group, "batch": c.batch,
              "seq_len": c.seq_len, "ragged": c.ragged, "hq": c.hq,
              "hkv": c.hkv, "head_dim": c.d, "page": c.page,
              "dtype": str(c.dtype).replace("torch.", ""),
              "bytes": kv_bytes, "input_sets": sets, "us": {}, "tbps": {},
              "us_graph": {}, "tbps_graph": {}, "rel_error_peers": {}}

    runs = paged_attn_runs(pa, dec, c, inputs)
    result["us"]["paged_attn"] = time_fn(runs, args.iters, args.warmup) * 1e3
    time_graph(result, "paged_attn", runs, args)
    if c.ragged:
        # Split without the host's lengths: every sequence split evenly.
        even = paged_attn_runs(pa, dec, c, inputs, host_lengths=False)
        result["us"]["paged_attn_even"] = (
            time_fn(even, args.iters, args.warmup) * 1e3)
        time_graph(result, "paged_attn_even", even, args)
    base_runs = None
    if baseline is not None:
        base_runs = time_baseline(baseline, c, inputs, args, result)

    # Correctness against an f32 reference on the contiguous KV.
    ref = reference(probe, scale)
    runs[0]()
    result["rel_error"] = rel_error(probe["out"], ref)
    if base_runs is not None:
        base_runs[0]()
        check_peer(result, "paged_attn_baseline", probe["out_baseline"], ref)

    # FlashInfer reads the page table, so it runs on ragged cases too.
    if fi is not None:
        time_flashinfer(fi, c, inputs, ref, scale, args, result)
    del ref
    if not c.ragged and args.peers:
        time_contiguous_peers(c, inputs, scale, args, result)

    for times, tbps in (("us", "tbps"), ("us_graph", "tbps_graph")):
        for k, us in result[times].items():
            result[tbps][k] = kv_bytes / (us * 1e-6) / 1e12
    result["pa_vs"] = speedups(result)
    return result


def host_overhead_us(pa, calls=5000):
    """Host time of one decode call from Python (argument packing for a
    prepared params struct plus the C call), on a problem small enough that
    the GPU keeps up."""
    import time
    c = Case(1, 16)
    inp = make_inputs(c, 0)
    dec = pa.decoder(c.hq, c.hkv, c.d, c.page, c.dtype, NHD)
    out = torch.empty_like(inp["q"])
    ws = torch.empty(max(256, pa.workspace_bytes(dec, 1, 16)), dtype=torch.uint8,
                     device="cuda")
    for _ in range(100):
        p = pa.params(inp["q"], inp["k"], inp["v"], inp["bt"], inp["sl"], out, 16, ws)
        pa.decode(dec, p)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        p = pa.params(inp["q"], inp["k"], inp["v"], inp["bt"], inp["sl"], out, 16, ws)
        pa.decode(dec, p)
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def cases(selection):
    main = [Case(1, 32768), Case(1, 131072), Case(8, 8192), Case(32, 4096),
            Case(64, 2048), Case(128, 1024), Case(256, 512), Case(64, 8192)]
    if selection == "main":
        return main
    extra = [
        Case(32, 4096, hq=32, hkv=32, group="heads"),
        Case(32, 4096, hq=64, hkv=8, group="heads"),
        Case(32, 4096, hq=28, hkv=4, group="heads"),
        Case(64, 4096, hq=8, hkv=1, d=256, group="heads"),
        # Query groups past one warp's mma rows: two row groups of warps.
        Case(64, 4096, hq=32, hkv=1, group="heads"),
        Case(64, 4096, hq=16, hkv=1, d=256, group="heads"),
        Case(32, 4096, d=64, group="head_dim"),
        Case(32, 4096, d=256, group="head_dim"),
        Case(32, 4096, page=1, group="page"),
        Case(32, 4096, page=128, group="page"),
        Case(32, 4096, dtype=torch.float16, group="dtype"),
        Case(32, 4096, ragged=True, group="ragged"),
        Case(8, 8192, ragged=True, group="ragged"),
        # Lengths uniform in 1..8192 (ragged lengths run to 2 x seq_len).
        Case(64, 4096, ragged=True, group="ragged"),
    ]
    return main + extra


# (times key, op) of each time column: eager, and graph replay where timed.
TIME_COLUMNS = [("us", "paged_attn"), ("us_graph", "paged_attn"),
                ("us", "paged_attn_even"), ("us_graph", "paged_attn_even"),
                ("us", "paged_attn_baseline"),
                ("us_graph", "paged_attn_baseline"),
                ("us", "sdpa_cudnn"), ("us_graph", "sdpa_cudnn"),
                ("us", "sdpa_flash"), ("us", "gather_sdpa"), ("us", "flex"),
                ("us", "flashinfer"), ("us_graph", "flashinfer"),
                ("us", "flashinfer_cc"), ("us_graph", "flashinfer_cc")]
# result["pa_vs"] key -> column title.
RATIO_COLUMNS = {"sdpa_cudnn": "PA vs cuDNN",
                 "sdpa_cudnn_graph": "PA vs cuDNN graph",
                 "flashinfer": "PA vs FlashInfer",
                 "flashinfer_graph": "PA vs FlashInfer graph",
                 "paged_attn_baseline": "PA vs baseline",
                 "paged_attn_baseline_graph": "PA vs baseline graph"}


def time_cell(r, times, op):
    if op not in r[times]:
        return "–"
    tbps = r["tbps" if times == "us" else "tbps_graph"][op]
    mark = " †" if op in r.get("flagged", {}) else ""
    return f"{r[times][op]:.1f} ({tbps:.2f}){mark}"


def flashinfer_error_cell(r):
    errs = [r["rel_error_peers"].get(n) for n in FLASHINFER_PATHS]
    if all(e is None for e in errs):
        return "–"
    return " / ".join("–" if e is None else f"{e:.1e}" for e in errs)


def markdown(results, meta):
    # Only the columns some case fills (no baseline, --flex: none of theirs).
    time_columns = [(times, op) for times, op in TIME_COLUMNS
                    if any(op in r[times] for r in results)]
    ratio_columns = {k: title for k, title in RATIO_COLUMNS.items()
                     if any(k in r["pa_vs"] for r in results)}
    titles = [op + (" graph" if times == "us_graph" else "")
              for times, op in time_columns]
    titles += ["PA / ceiling"] + list(ratio_columns.values())
    titles += ["rel err", "FlashInfer rel err (tc / cc)"]
    ceiling = meta["read_ceiling_tbps"]
    lines = [f"Card: {meta['card']}. Read ceiling {ceiling:.2f} TB/s "
             f"({meta['read_ceiling_method']}). FlashInfer: {meta['flashinfer']}.",
             "Each cell: median µs (TB/s). PagedAttn and FlashInfer read the "
             "paged cache; the SDPA peers read the same KV laid out "
             "contiguously. \"graph\" columns replay a CUDA graph of the same "
             "calls; the others launch them eagerly.",
             "PA vs X: X's time over PagedAttn's (above 1×, PagedAttn is "
             "faster); FlashInfer there is the faster of its tensor-core "
             "(flashinfer) and CUDA-core (flashinfer_cc) paths. †: output off "
             f"the f32 reference by more than {PEER_TOLERANCE:.0e}, left out "
             "of the ratios."] + baseline_note(meta) + ["",
             "| case | KV MB | " + " | ".join(titles) + " |",
             "|---|---|" + "---|" * len(titles)]
    for r in results:
        cells = [time_cell(r, times, op) for times, op in time_columns]
        cells.append(f"{100 * r['tbps']['paged_attn'] / ceiling:.0f}%")
        cells += [f"{r['pa_vs'][k]:.2f}×" if k in r["pa_vs"] else "–"
                  for k in ratio_columns]
        cells += [f"{r['rel_error']:.1e}", flashinfer_error_cell(r)]
        lines.append(f"| {r['case']} | {r['bytes'] / 1e6:.0f} | " +
                     " | ".join(cells) + " |")
    skipped = [f"- {r['case']}: {name}: {why}" for r in results
               for name, why in r.get("skipped", {}).items()]
    if skipped:
        lines += ["", "Not timed:", ""] + skipped
    return "\n".join(lines) + "\n"


def baseline_note(meta):
    base = meta.get("baseline")
    if base is None:
        return []
    return [f"paged_attn: the kernels in {meta['kernels']} "
            f"({meta['num_warps']} warps); paged_attn_baseline: those in "
            f"{base['kernels']} ({base['num_warps']} warps), same process "
            "and inputs."]


def summary(r):
    """The line printed for a case, and one for each op left out or
    flagged."""
    ops = []
    for op, us in r["us"].items():
        text = f"{op} {us:.1f} us ({r['tbps'][op]:.2f} TB/s)"
        if op in r["us_graph"]:
            text += f", graph {r['us_graph'][op]:.1f} us"
        ops.append(text)
    ratios = [f"{title} {r['pa_vs'][k]:.2f}×"
              for k, title in RATIO_COLUMNS.items() if k in r["pa_vs"]]
    lines = ["; ".join([f"{r['case']}: " + "; ".join(ops),
                        f"rel err {r['rel_error']:.1e}"] + ratios)]
    lines += [f"  {name} not timed: {why}"
              for name, why in r.get("skipped", {}).items()]
    lines += [f"  {name} flagged: {why}"
              for name, why in r.get("flagged", {}).items()]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--num-warps", type=int, default=4,
                    help="the kernels' warps per CTA (paged-attn-compile "
                    "--num-warps)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another build's kernels, timed beside --kernels "
                    "as paged_attn_baseline")
    ap.add_argument("--baseline-num-warps", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", choices=["main", "all"], default="all")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--flex", action="store_true")
    ap.add_argument("--filter", default="",
                    help="only cases whose name contains this")
    ap.add_argument("--no-peers", dest="peers", action="store_false",
                    help="time PagedAttn alone (for comparing kernel variants)")
    ap.add_argument("--no-flashinfer", dest="flashinfer", action="store_false",
                    help="leave out the FlashInfer peer (.peers/flashinfer)")
    ap.add_argument("--no-graph", dest="graph", action="store_false",
                    help="eager timing only, no CUDA-graph replay")
    args = ap.parse_args()

    torch.manual_seed(0)
    card = torch.cuda.get_device_name(0)
    pa = PagedAttn(args.lib, args.kernels, args.num_warps)
    baseline = (PagedAttn(args.lib, args.baseline, args.baseline_num_warps)
                if args.baseline else None)
    selected = []
    no_kernel = {}
    for c in cases(args.cases):
        if args.filter and args.filter not in c.name():
            continue
        try:
            pa.decoder(c.hq, c.hkv, c.d, c.page, c.dtype, NHD)
        except RuntimeError as e:  # compile-kernels.sh was run without it
            no_kernel[c.name()] = reason(e)
            print(f"{c.name()}: not run, no PagedAttn kernel: {reason(e)}",
                  flush=True)
            continue
        selected.append(c)
    global PAGED_ARENA, CONTIGUOUS_ARENA
    PAGED_ARENA = Arena(arena_bytes(selected))
    CONTIGUOUS_ARENA = Arena(arena_bytes(selected))
    ceiling, how = read_ceiling_tbps()
    print(f"{card}: read ceiling {ceiling:.2f} TB/s ({how})", flush=True)
    fi, fi_note = None, "not run (--no-flashinfer)"
    if not args.peers:
        fi_note = "not run (--no-peers)"
    elif args.flashinfer:
        fi, fi_note = load_flashinfer()
        print(f"FlashInfer peer {fi_note}" if fi is None
              else f"FlashInfer peer: FlashInfer {fi_note}", flush=True)
    results = []
    for c in selected:
        r = run_case(pa, fi, c, args, baseline)
        results.append(r)
        print(summary(r), flush=True)
    try:
        overhead = host_overhead_us(pa)
        print(f"host overhead from Python (ctypes): {overhead:.2f} us per call",
              flush=True)
    except RuntimeError as e:  # the 32/8 kernel is not in --kernels
        overhead = None
        print(f"host overhead not measured: {e}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    meta = {"python_host_us_per_call": overhead, "card": card, "date": datetime.date.today().isoformat(),
            "torch": torch.__version__, "read_ceiling_tbps": ceiling,
            "read_ceiling_method": how, "iters": args.iters,
            "graph_replay": args.graph, "flashinfer": fi_note,
            "kernels": args.kernels, "num_warps": args.num_warps,
            "baseline": None if baseline is None else {
                "kernels": args.baseline,
                "num_warps": args.baseline_num_warps},
            "cases_without_kernel": no_kernel}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(results, meta))
    print(markdown(results, meta))


if __name__ == "__main__":
    sys.exit(main())
