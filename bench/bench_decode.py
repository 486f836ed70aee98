#!/usr/bin/env python3
"""PagedAttn decode against its peers, in one process, on one GPU.

For each case it builds one paged KV cache (shuffled block table) and the
same KV laid out contiguously, then times with CUDA events (warm-up, then
the median over samples of 10 calls enqueued back to back, --iters calls in
all, input sets rotated so that L2 does not hold the KV):

  paged_attn      this project, through the C API of libpaged_attn_runtime
  sdpa_cudnn      torch SDPA, cuDNN backend, on the contiguous KV
  sdpa_flash      torch SDPA, flash backend, on the contiguous KV
  gather_sdpa     gather the pages into contiguous KV, then SDPA
  flex            FlexAttention (torch.compile) on the contiguous KV (--flex)

and a read-bandwidth ceiling (a Triton streaming read, or torch.sum if
Triton is missing). Bandwidth = bytes the op must move (K and V of the
tokens held, q, out, the page-table entries used) / median time.

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


class CConfig(ctypes.Structure):
    _fields_ = [("num_heads", ctypes.c_int64), ("num_kv_heads", ctypes.c_int64),
                ("head_dim", ctypes.c_int64), ("page_size", ctypes.c_int64),
                ("dtype", ctypes.c_int), ("layout", ctypes.c_int),
                ("num_warps", ctypes.c_int64)]


class CParams(ctypes.Structure):
    _fields_ = [("q", CTensor), ("k_cache", CTensor), ("v_cache", CTensor),
                ("block_table", CTensor), ("seq_lens", CTensor),
                ("out", CTensor), ("scale", ctypes.c_float),
                ("max_seq_len", ctypes.c_int64), ("num_splits", ctypes.c_int32),
                ("workspace", ctypes.c_void_p),
                ("workspace_bytes", ctypes.c_size_t),
                ("check_page_table", ctypes.c_int32)]


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
    def __init__(self, lib_path, kernel_dir):
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
            cfg = CConfig(hq, hkv, d, page, DTYPES[dtype], layout, 4)
            dec = ctypes.c_void_p()
            self._check(self.lib.paged_attn_decoder_create(
                self.library, ctypes.byref(cfg), ctypes.byref(dec)))
            self.decoders[key] = dec
        return self.decoders[key]

    def params(self, q, k, v, bt, sl, out, max_seq_len, workspace):
        p = CParams()
        self.lib.paged_attn_decode_params_init(ctypes.byref(p))
        p.q, p.k_cache, p.v_cache = c_tensor(q), c_tensor(k), c_tensor(v)
        p.block_table, p.seq_lens, p.out = c_tensor(bt), c_tensor(sl), c_tensor(out)
        p.max_seq_len = max_seq_len
        p.workspace = workspace.data_ptr()
        p.workspace_bytes = workspace.numel()
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
    def __init__(self, batch, seq_len, hq=32, hkv=8, d=128, page=16,
                 dtype=torch.bfloat16, ragged=False, group="main"):
        self.batch, self.seq_len, self.hq, self.hkv, self.d = batch, seq_len, hq, hkv, d
        self.page, self.dtype, self.ragged, self.group = page, dtype, ragged, group

    def name(self):
        dt = {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32"}[self.dtype]
        r = " ragged" if self.ragged else ""
        return (f"B={self.batch} S={self.seq_len}{r} Hq/Hkv={self.hq}/{self.hkv} "
                f"D={self.d} page={self.page} {dt}")


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
# Main
# ---------------------------------------------------------------------------


def run_case(pa, c, args):
    from torch.nn.attention import SDPBackend, sdpa_kernel

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
              "bytes": kv_bytes, "input_sets": sets, "us": {}, "tbps": {}}

    # PagedAttn.
    runs = []
    for inp in inputs:
        out = torch.empty_like(inp["q"])
        ws = torch.empty(max(256, pa.workspace_bytes(dec, c.batch, inp["max_len"])),
                         dtype=torch.uint8, device="cuda")
        inp["out"], inp["ws"] = out, ws
        p = pa.params(inp["q"], inp["k"], inp["v"], inp["bt"], inp["sl"], out,
                      inp["max_len"], ws)
        inp["params"] = p
        runs.append(lambda p=p: pa.decode(dec, p))
    ms = time_fn(runs, args.iters, args.warmup)
    result["us"]["paged_attn"] = ms * 1e3

    # Correctness against an f32 reference on the contiguous KV.
    inp = probe
    pa.decode(dec, inp["params"])
    torch.cuda.synchronize()
    kc = gather_contiguous(probe["k"], probe["bt"], probe["max_len"])
    vc = gather_contiguous(probe["v"], probe["bt"], probe["max_len"])
    mask = (torch.arange(probe["max_len"], device="cuda")[None, :] <
            probe["sl"][:, None].long())[:, None, None, :]
    ref = F.scaled_dot_product_attention(
        probe["q"].float()[:, :, None], kc.float(), vc.float(), attn_mask=mask,
        scale=scale, enable_gqa=True)[:, :, 0]
    err = ((probe["out"].float() - ref).norm() / ref.norm()).item()
    result["rel_error"] = err

    # Peers on contiguous KV (equal lengths only: they read no page table).
    if not c.ragged and args.peers:
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
        for name, backend in (("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION),
                              ("sdpa_flash", SDPBackend.FLASH_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    fns = [lambda t=t: F.scaled_dot_product_attention(
                        t[0], t[1], t[2], scale=scale, enable_gqa=True)
                        for t in contig]
                    result["us"][name] = time_fn(fns, args.iters, args.warmup) * 1e3
            except RuntimeError as e:
                result.setdefault("skipped", {})[name] = str(e).splitlines()[0][:160]
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
                result.setdefault("skipped", {})["flex"] = str(e).splitlines()[0][:160]
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
            result.setdefault("skipped", {})["gather_sdpa"] = str(e).splitlines()[0][:160]

    for k, us in result["us"].items():
        result["tbps"][k] = kv_bytes / (us * 1e-6) / 1e12
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
        Case(32, 4096, d=64, group="head_dim"),
        Case(32, 4096, d=256, group="head_dim"),
        Case(32, 4096, page=1, group="page"),
        Case(32, 4096, page=128, group="page"),
        Case(32, 4096, dtype=torch.float16, group="dtype"),
        Case(32, 4096, ragged=True, group="ragged"),
        Case(8, 8192, ragged=True, group="ragged"),
    ]
    return main + extra


def markdown(results, card, ceiling, ceiling_how):
    peers = ["paged_attn", "sdpa_cudnn", "sdpa_flash", "gather_sdpa", "flex"]
    lines = [f"Card: {card}. Read ceiling {ceiling:.2f} TB/s ({ceiling_how}).",
             "Each cell: median µs (TB/s). PagedAttn reads the paged cache; the "
             "SDPA peers read the same KV laid out contiguously.", "",
             "| case | KV MB | " + " | ".join(peers) +
             " | PA / ceiling | PA vs cuDNN | rel err |",
             "|---|---|" + "---|" * len(peers) + "---|---|---|"]
    for r in results:
        cells = []
        for p in peers:
            if p in r["us"]:
                cells.append(f"{r['us'][p]:.1f} ({r['tbps'][p]:.2f})")
            else:
                cells.append("–")
        frac = r["tbps"]["paged_attn"] / ceiling
        vs = (f"{r['us']['sdpa_cudnn'] / r['us']['paged_attn']:.2f}×"
              if "sdpa_cudnn" in r["us"] else "–")
        lines.append(f"| {r['case']} | {r['bytes'] / 1e6:.0f} | " +
                     " | ".join(cells) +
                     f" | {100 * frac:.0f}% | {vs} | {r['rel_error']:.1e} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", choices=["main", "all"], default="all")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--flex", action="store_true")
    ap.add_argument("--filter", default="",
                    help="only cases whose name contains this")
    ap.add_argument("--no-peers", dest="peers", action="store_false",
                    help="time PagedAttn alone (for comparing kernel variants)")
    args = ap.parse_args()

    torch.manual_seed(0)
    card = torch.cuda.get_device_name(0)
    pa = PagedAttn(args.lib, args.kernels)
    selected = [c for c in cases(args.cases)
                if not args.filter or args.filter in c.name()]
    global PAGED_ARENA, CONTIGUOUS_ARENA
    PAGED_ARENA = Arena(arena_bytes(selected))
    CONTIGUOUS_ARENA = Arena(arena_bytes(selected))
    ceiling, how = read_ceiling_tbps()
    print(f"{card}: read ceiling {ceiling:.2f} TB/s ({how})", flush=True)
    results = []
    for c in selected:
        r = run_case(pa, c, args)
        results.append(r)
        summary = ", ".join(f"{k} {v:.1f} us ({r['tbps'][k]:.2f} TB/s)"
                            for k, v in r["us"].items())
        print(f"{r['case']}: {summary}; rel err {r['rel_error']:.1e}", flush=True)
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
            "read_ceiling_method": how, "iters": args.iters}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(results, card, ceiling, how))
    print(markdown(results, card, ceiling, how))


if __name__ == "__main__":
    sys.exit(main())
