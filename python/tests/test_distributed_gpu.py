"""paged_attn.distributed on every visible GPU (two or more, NCCL), one
process per GPU spawned by torch.multiprocessing: each scenario shards one
random paged cache over the ranks (shard_cache, shard_heads), decodes it
with paged_attn.distributed.decode and compares every rank's result with a
single-GPU paged_attn.decode of the whole cache and with the float64
reference, within the tolerance of the other GPU tests. Scenarios: ragged
batches with lengths shorter than the ranks' pages and ranks holding
nothing (both policies), both exchanges, replicated and head-sharded
output, sinks, soft-cap, the log-sum-exp, ALiBi on contiguous shards,
tensor parallelism (with a window), the errors raised on every rank, and
the cross-rank validation. The workers run every scenario once (one
process group) and report each; the tests read those reports. Skipped
without torch, two CUDA devices, NCCL or a driver.

Kernels: test/gpu/matrix.py's "distributed" set

    test/gpu/matrix.py compile --compiler build/bin/paged-attn-compile \\
        --set distributed --out KERNELS
    PAGED_ATTN_KERNEL_DIR=KERNELS/distributed pytest test_distributed_gpu.py

holds every config these tests use for R = 1, 2, 4 or 8 ranks (page 16,
nhd, w4 throughout):
  decode, all the heads (the one-GPU references, and each rank's
  context-parallel decode, which always has the log-sum-exp):
    h32_kv8_d128_bf16 and h8_kv8_d64_f16, each plain, lse, sinks,
    sinks_lse, cap, cap_lse, alibi_lse, win_sinks_lse, cap_alibi;
  decode, a rank's heads (parallel="heads"):
    h{32/R}_kv{8/R}_d128_bf16 and h{8/R}_kv{8/R}_d64_f16, each plain,
    lse, win_sinks_lse, cap_alibi;
  merge (all-gather over all heads; all-to-all and head-sharded output
  over a rank's share):
    h32_d128_bf16, h{32/R}_d128_bf16, h8_d64_f16, h{8/R}_d64_f16, each
    plain, sinks, lse, sinks_lse.
"""
import datetime
import json
import os
import socket
import tempfile
import traceback

import pytest

import paged_attn
from paged_attn import distributed as pad

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

from test_gpu import LIMITS, make, rel_err  # noqa: E402
from test_variants_gpu import reference  # noqa: E402


def _world():
    if not torch.cuda.is_available() or not paged_attn.has_driver()[0]:
        return 0
    if not dist.is_available() or not dist.is_nccl_available():
        return 0
    return torch.cuda.device_count()


WORLD = _world()
pytestmark = pytest.mark.skipif(WORLD < 2, reason="needs two CUDA GPUs and "
                                "NCCL")

# (dtype, head_dim, page, num_heads, num_kv_heads, layout)
SHAPES = {"bf16_d128": ("bf16", 128, 16, 32, 8, "nhd"),
          "f16_d64_mha": ("f16", 64, 16, 8, 8, "nhd")}
# Ragged; 1 to 31 tokens are shorter than two ranks' pages, and under
# contiguous ranges (65 pages per rank of two) only the longest sequence
# reaches rank 1.
LENS = [0, 1, 15, 16, 17, 33, 300, 777, 2061]
# At most one page each: every rank but the first holds nothing.
SHORT_LENS = [0, 5, 16]
WINDOW = 37
# The user's keywords of each combination (decode()'s names).
COMBOS = {"plain": (), "lse": ("lse",), "sinks": ("sinks",),
          "sinks+lse": ("sinks", "lse"), "soft_cap": ("soft_cap",),
          "alibi+lse": ("alibi_slopes", "lse"),
          "window+sinks+lse": ("window", "sinks", "lse"),
          "soft_cap+alibi": ("soft_cap", "alibi_slopes")}


def scenarios():
    """name -> scenario (plain data, known without a GPU)."""
    found = {}

    def add(shape, parallel, combo, policy="round_robin",
            exchange="all_gather", output="replicated", lens="ragged",
            **extra):
        name = "-".join(x for x in (shape, parallel, policy if parallel ==
                                    "context" else "", exchange if parallel
                                    == "context" else "", output, combo,
                                    lens) if x)
        found[name] = dict(shape=shape, parallel=parallel, combo=combo,
                           policy=policy, exchange=exchange, output=output,
                           lens=lens, **extra)

    for shape in SHAPES:
        for policy in pad.POLICIES:
            for exchange in pad.EXCHANGES:
                for output in pad.OUTPUTS:
                    for combo in ("plain", "sinks+lse"):
                        add(shape, "context", combo, policy, exchange, output)
                    add(shape, "context", "lse", policy, exchange, output,
                        lens="short")
        for combo in ("lse", "sinks", "soft_cap"):
            add(shape, "context", combo, "round_robin", "all_gather",
                "replicated")
            add(shape, "context", combo, "contiguous", "all_to_all",
                "head_sharded")
        add(shape, "context", "alibi+lse", "contiguous", "all_gather",
            "replicated")
        add(shape, "context", "alibi+lse", "contiguous", "all_to_all",
            "head_sharded")
        for output in pad.OUTPUTS:
            for combo in ("plain", "lse", "window+sinks+lse",
                          "soft_cap+alibi"):
                add(shape, "heads", combo, output=output)
    add("bf16_d128", "context", "plain", validate=True, lens="ragged-validated")
    for error in ("window", "alibi_round_robin", "validate_mismatch",
                  "validate_local"):
        found[f"error-{error}"] = dict(error=error)
    return found


SCENARIOS = scenarios()


def inputs(shape, lens, seed):
    dtype, d, page, hq, hkv, layout = SHAPES[shape]
    return make(lens, hq, hkv, d, page, dtype, layout, seed=seed)


def combo_kwargs(combo, hq, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    names = COMBOS[combo]
    kwargs = {}
    if "window" in names:
        kwargs["window"] = WINDOW
    if "soft_cap" in names:
        kwargs["soft_cap"] = 0.3
    if "alibi_slopes" in names:
        kwargs["alibi_slopes"] = torch.tensor(
            [2 ** (-8 * (h + 1) / hq) for h in range(hq)],
            dtype=torch.float32).cuda()
    if "sinks" in names:
        kwargs["sinks"] = (torch.rand(hq, generator=g) * 6 - 1).cuda()
    if "lse" in names:
        kwargs["return_lse"] = True
    return kwargs


def check_against(out, lse, ref_out, ref_lse, dtype, what):
    err = rel_err(out, ref_out)
    assert err <= LIMITS[dtype], f"{what}: relative error {err:.2e}"
    if lse is None:
        return
    got = lse.double().cpu()
    ref_lse = ref_lse.double().cpu()
    empty = torch.isinf(ref_lse)
    assert torch.equal(torch.isinf(got) & (got < 0), empty), (
        f"{what}: the empty rows' log-sum-exps differ")
    if (~empty).any():
        diff = (got[~empty] - ref_lse[~empty]).abs().max().item()
        assert diff < 2e-3, f"{what}: log-sum-exp off by {diff:.2e}"


def run(sc, rank, world):
    dtype, d, page, hq, hkv, layout = SHAPES[sc["shape"]]
    lens = SHORT_LENS if sc["lens"] == "short" else LENS
    seed = len(sc["combo"]) + 7 * len(lens) + hq
    q, k, v, bt, sl = inputs(sc["shape"], lens, seed)
    kwargs = combo_kwargs(sc["combo"], hq, seed)
    single = paged_attn.decode(q, k, v, bt, sl, layout=layout, **kwargs)
    single_out, single_lse = (single if "return_lse" in kwargs
                              else (single, None))
    ref_out, ref_lse = reference(q, k, v, bt, sl, layout,
                                 kwargs.get("window"), kwargs.get("soft_cap"),
                                 kwargs.get("alibi_slopes"),
                                 kwargs.get("sinks"))
    if sc["parallel"] == "context":
        shard = pad.shard_cache(k, v, bt, sl, rank, world,
                                policy=sc["policy"], layout=layout)
        if "alibi_slopes" in kwargs:
            kwargs["alibi_shift"] = shard.alibi_shift
        result = pad.decode(q, shard.k_cache, shard.v_cache,
                            shard.block_table, shard.seq_lens,
                            exchange=sc["exchange"], output=sc["output"],
                            layout=layout, validate=sc.get("validate", False),
                            **kwargs)
    else:
        k_heads, v_heads = pad.shard_heads(k, v, rank, world, layout=layout)
        result = pad.decode(q, k_heads, v_heads, bt, sl, parallel="heads",
                            output=sc["output"], layout=layout, **kwargs)
    out, lse = result if "return_lse" in kwargs else (result, None)
    torch.cuda.synchronize()
    heads = slice(None)
    if sc["output"] == "head_sharded":
        mine = pad.head_range(rank, world, hq)
        heads = slice(mine.start, mine.stop)
    width = len(range(hq)[heads])
    assert tuple(out.shape) == (len(lens), width, d), tuple(out.shape)
    assert out.dtype == q.dtype and out.device == q.device
    if lse is not None:
        assert tuple(lse.shape) == (len(lens), width)
        assert lse.dtype == torch.float32
    check_against(out, lse, ref_out[:, heads], ref_lse[:, heads], dtype,
                  "against float64")
    check_against(out, lse, single_out[:, heads].double().cpu(),
                  None if lse is None else single_lse[:, heads], dtype,
                  "against one GPU")
    for b, n in enumerate(lens):
        if n == 0:
            assert torch.count_nonzero(out[b]).item() == 0


def run_error(error, rank, world):
    dtype, d, page, hq, hkv, layout = SHAPES["bf16_d128"]
    q, k, v, bt, sl = inputs("bf16_d128", LENS, 3)
    shard = pad.shard_cache(k, v, bt, sl, rank, world, layout=layout)
    args = (q, shard.k_cache, shard.v_cache, shard.block_table,
            shard.seq_lens)
    if error == "window":
        with pytest.raises(ValueError, match="window is not supported with "
                                             "parallel='context'"):
            pad.decode(*args, window=WINDOW)
    elif error == "alibi_round_robin":
        slopes = torch.ones(hq, device="cuda")
        with pytest.raises(ValueError, match="policy='contiguous'"):
            pad.decode(*args, alibi_slopes=slopes)
    elif error == "validate_mismatch":
        # Rank 0 has one sequence more: every rank raises, none hangs.
        lens = LENS + [5] if rank == 0 else LENS
        q2, k2, v2, bt2, sl2 = inputs("bf16_d128", lens, 3)
        with pytest.raises(ValueError, match=r"the ranks' arguments "
                                             r"disagree \(batch: 10, 9"):
            pad.decode(q2, k2, v2, bt2, sl2, validate=True)
    elif error == "validate_local":
        # Rank 1's seq_lens are int64: it raises its own error, the others
        # name it.
        lens = sl.long() if rank == 1 else sl
        message = ("seq_lens_shard must be int32" if rank == 1 else
                   r"ranks \[1\] were given invalid arguments")
        with pytest.raises(ValueError, match=message):
            pad.decode(q, k, v, bt, lens, validate=True)
    else:
        raise AssertionError(error)


def worker(rank, world, port, out_dir):
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))
    results = {}
    try:
        for name, sc in SCENARIOS.items():
            try:
                if "error" in sc:
                    run_error(sc["error"], rank, world)
                else:
                    run(sc, rank, world)
                results[name] = None
            except Exception:  # noqa: BLE001 - reported per scenario
                results[name] = traceback.format_exc()
        dist.barrier()
    finally:
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_kernels():
    """Configs these tests need for WORLD ranks that $PAGED_ATTN_KERNEL_DIR
    lacks (none when it is unset: a build with the compiler makes them)."""
    kernel_dir = os.environ.get("PAGED_ATTN_KERNEL_DIR")
    if not kernel_dir or not os.path.isdir(kernel_dir):
        return []
    have = set()
    for entry in os.listdir(kernel_dir):
        if not entry.endswith(".json"):
            continue
        try:
            with open(os.path.join(kernel_dir, entry)) as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            continue
        for kernel in manifest.get("kernels", []):
            have.add(kernel["config"]["name"])
        for merge in manifest.get("merges", []):
            c = merge["config"]
            have.add(f"merge_h{c['num_heads']}_d{c['head_dim']}_{c['dtype']}"
                     + "_sinks" * bool(c.get("sinks"))
                     + "_lse" * bool(c.get("lse")))
    share = 32 // WORLD if 32 % WORLD == 0 else 0
    need = ["h32_kv8_d128_p16_bf16_nhd_w4_alibi_lse",
            f"h{share}_kv{8 // WORLD}_d128_p16_bf16_nhd_w4_win_sinks_lse",
            f"merge_h{share}_d128_bf16_sinks_lse"]
    return [name for name in need if name not in have]


@pytest.fixture(scope="module")
def reports():
    """name -> the ranks' failures (empty: passed everywhere)."""
    missing = missing_kernels()
    if missing:
        pytest.skip(f"PAGED_ATTN_KERNEL_DIR has no {', '.join(missing)}: "
                    f"use test/gpu/matrix.py compile --set distributed")
    out_dir = tempfile.mkdtemp(prefix="paged-attn-distributed-")
    torch.multiprocessing.spawn(worker, args=(WORLD, _free_port(), out_dir),
                                nprocs=WORLD, join=True)
    failures = {name: [] for name in SCENARIOS}
    for rank in range(WORLD):
        with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
            for name, error in json.load(f).items():
                if error:
                    failures[name].append(f"rank {rank}:\n{error}")
    return failures


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_distributed(reports, name):
    if reports[name]:
        pytest.fail("\n".join(reports[name]), pytrace=False)

