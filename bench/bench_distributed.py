#!/usr/bin/env python3
"""Paged decode on N GPUs (paged_attn.distributed) against one GPU, in the
same run on the same data (issue 20).

    PAGED_ATTN_KERNEL_DIR=KERNELS/distributed \\
        torchrun --nproc-per-node 2 bench/bench_distributed.py --out DIR
    (or: python3 bench/bench_distributed.py --nproc 2 --out DIR, which
    spawns the ranks itself)

Cases (32/8 heads, head_dim 128, bf16, page 16, pages shuffled): 1 x 1M,
1 x 256k, 8 x 128k tokens, and a ragged batch of 8 (2k to 256k) that shows
how the sharding policies balance. Rank 0 first decodes the whole cache
alone (the other ranks wait), then every rank takes its shard and the N
GPUs decode together, for each policy (round_robin, contiguous), exchange
(all_gather, all_to_all) and output (replicated, head_sharded); and with
the KV heads split instead (parallel="heads").

Each iteration records CUDA events on the current stream around this
rank's decode of its shard (distributed.local_decode: "compute") and
around the exchange and merge (distributed.combine: "exchange", which
includes waiting for a slower rank); iterations run back to back and each
time is the median over --iters of them (after --warmup). "exchange alone"
repeats combine() on one set of partials (the ranks in step: the
collective and the merge, no imbalance). The speed-up is the one-GPU
median over the slowest rank's median total. The KV of every case (at
least 512 MiB a rank) is ten times the L2 or more, so one input set is
read from memory each time; q and the small exchange buffers stay in L2,
as in serving.

Writes DIR/results.json and DIR/results.md (rank 0) and prints the table.
"""
import argparse
import datetime
import json
import math
import os
import socket
import statistics
import sys

import torch
import torch.distributed as dist

import paged_attn
from paged_attn import distributed as pad

HQ, HKV, D, PAGE = 32, 8, 128, 16
DTYPE = torch.bfloat16
K = 1024
CASES = {  # name -> sequence lengths
    "1x1M": [1024 * K],
    "1x256k": [256 * K],
    "8x128k": [128 * K] * 8,
    "8 ragged 2k-256k": [256 * K, 128 * K, 64 * K, 32 * K, 16 * K, 8 * K,
                         4 * K, 2 * K],
}


def log(rank, *args):
    if rank == 0:
        print(*args, flush=True)


def make_case(lens, rank, seed):
    """The whole cache on every rank (made on rank 0, broadcast)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    per_seq = [math.ceil(n / PAGE) for n in lens]
    pages = sum(per_seq)
    perm = torch.randperm(pages, generator=g).to(torch.int32)
    bt = torch.zeros(len(lens), max(per_seq), dtype=torch.int32)
    start = 0
    for b, n in enumerate(per_seq):
        bt[b, :n] = perm[start:start + n]
        start += n
    q = torch.randn(len(lens), HQ, D, generator=g).to(DTYPE).cuda()
    shape = (pages, PAGE, HKV, D)
    if rank == 0:
        k = torch.randn(shape, dtype=DTYPE, device="cuda")
        v = torch.randn(shape, dtype=DTYPE, device="cuda")
    else:
        k = torch.empty(shape, dtype=DTYPE, device="cuda")
        v = torch.empty(shape, dtype=DTYPE, device="cuda")
    dist.broadcast(k, 0)
    dist.broadcast(v, 0)
    sl = torch.tensor(lens, dtype=torch.int32, device="cuda")
    return q, k, v, bt.cuda(), sl


def median_us(pairs):
    return statistics.median(a.elapsed_time(b) for a, b in pairs) * 1000


def events(n):
    return [torch.cuda.Event(enable_timing=True) for _ in range(n)]


def time_single(q, k, v, bt, sl, iters, warmup):
    out = torch.empty_like(q)
    for _ in range(warmup):
        paged_attn.decode(q, k, v, bt, sl, out=out)
    torch.cuda.synchronize()
    marks = []
    for _ in range(iters):
        e = events(2)
        e[0].record()
        paged_attn.decode(q, k, v, bt, sl, out=out)
        e[1].record()
        marks.append(e)
    torch.cuda.synchronize()
    return median_us(marks), out


def time_distributed(args_tensors, kwargs, iters, warmup):
    """(compute, exchange, total, exchange alone) medians in µs on this
    rank, and the result."""
    for _ in range(warmup):
        pad.combine(pad.local_decode(*args_tensors, **kwargs))
    torch.cuda.synchronize()
    dist.barrier()
    marks = []
    for _ in range(iters):
        e = events(3)
        e[0].record()
        parts = pad.local_decode(*args_tensors, **kwargs)
        e[1].record()
        result = pad.combine(parts)
        e[2].record()
        marks.append(e)
    torch.cuda.synchronize()
    dist.barrier()
    alone = []
    for _ in range(iters):
        e = events(2)
        e[0].record()
        pad.combine(parts)
        e[1].record()
        alone.append(e)
    torch.cuda.synchronize()
    return (median_us([(e[0], e[1]) for e in marks]),
            median_us([(e[1], e[2]) for e in marks]),
            median_us([(e[0], e[2]) for e in marks]),
            median_us(alone), result)


def gather_floats(values):
    """Every rank's list of floats (same length): [rank][i]."""
    mine = torch.tensor(values, dtype=torch.float64, device="cuda")
    every = torch.empty(dist.get_world_size(), len(values),
                        dtype=torch.float64, device="cuda")
    dist.all_gather_into_tensor(every.view(-1), mine)
    return every.tolist()


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def run_case(name, lens, rank, world, args):
    q, k, v, bt, sl = make_case(lens, rank, seed=len(name))
    rows = []
    single_us = None
    reference = torch.empty_like(q)
    if rank == 0:
        single_us, out = time_single(q, k, v, bt, sl, args.iters, args.warmup)
        reference.copy_(out)
    dist.broadcast(reference, 0)
    single_us = gather_floats([single_us or 0.0])[0][0]
    kv_bytes = 2 * sum(lens) * HKV * D * 2
    log(rank, f"## {name}: {sum(lens)} tokens, KV {kv_bytes / 2**30:.2f} GiB;"
              f" one GPU {single_us:.1f} µs")
    configs = [("context", policy, exchange, output)
               for policy in pad.POLICIES for exchange in pad.EXCHANGES
               for output in pad.OUTPUTS]
    configs += [("heads", "-", "all_gather", output) for output in pad.OUTPUTS]
    shards = {}
    for parallel, policy, exchange, output in configs:
        key = (parallel, policy)
        if key not in shards:
            shards.clear()
            torch.cuda.empty_cache()
            if parallel == "context":
                s = pad.shard_cache(k, v, bt, sl, rank, world, policy=policy)
                shards[key] = (s.k_cache, s.v_cache, s.block_table,
                               s.seq_lens)
                held = sum(s.seq_lens.tolist())
            else:
                kh, vh = pad.shard_heads(k, v, rank, world)
                shards[key] = (kh, vh, bt, sl)
                held = sum(lens)
            tokens = [int(row[0]) for row in gather_floats([held])]
        kwargs = dict(parallel=parallel, exchange=exchange, output=output)
        compute, exchange_us, total, alone, result = time_distributed(
            (q,) + shards[key], kwargs, args.iters, args.warmup)
        heads = slice(None)
        if output == "head_sharded":
            mine = pad.head_range(rank, world, HQ)
            heads = slice(mine.start, mine.stop)
        err = rel_err(result, reference[:, heads])
        every = gather_floats([compute, exchange_us, total, alone, err])
        slowest = max(r[2] for r in every)
        row = dict(case=name, parallel=parallel, policy=policy,
                   exchange=exchange, output=output, tokens_per_rank=tokens,
                   compute_us=[r[0] for r in every],
                   exchange_us=[r[1] for r in every],
                   total_us=[r[2] for r in every],
                   exchange_alone_us=[r[3] for r in every],
                   comm_merge_us=slowest - max(r[0] for r in every),
                   single_us=single_us, speedup=single_us / slowest,
                   rel_err=max(r[4] for r in every))
        rows.append(row)
        log(rank, format_row(row))
    shards.clear()
    del q, k, v, bt, sl, reference
    torch.cuda.empty_cache()
    return rows


HEADER = ("| case | parallel | policy | exchange | output | tokens per rank "
          "| compute µs per rank | exchange µs per rank | exchange alone µs "
          "| comm + merge µs | total µs | 1 GPU µs | speed-up | rel err |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def format_row(r):
    def each(values):
        return " / ".join(f"{x:.1f}" for x in values)
    return (f"| {r['case']} | {r['parallel']} | {r['policy']} | "
            f"{r['exchange']} | {r['output']} | "
            f"{' / '.join(str(t) for t in r['tokens_per_rank'])} | "
            f"{each(r['compute_us'])} | {each(r['exchange_us'])} | "
            f"{each(r['exchange_alone_us'])} | {r['comm_merge_us']:.1f} | "
            f"{max(r['total_us']):.1f} | {r['single_us']:.1f} | "
            f"{r['speedup']:.2f}× | {r['rel_err']:.1e} |")


def run(rank, world, args):
    cases = args.cases or list(CASES)
    card = torch.cuda.get_device_name()
    nccl = torch.cuda.nccl.version()
    nccl = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    header = (f"# {card} x{world}; torch {torch.__version__}; NCCL {nccl}; "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}; "
              f"{HQ}/{HKV} heads, D={D}, bf16, page {PAGE}; median of "
              f"{args.iters} iterations")
    log(rank, header)
    log(rank, HEADER)
    rows = []
    for name in cases:
        rows += run_case(name, CASES[name], rank, world, args)
    if rank == 0:
        best = [r for r in rows if r["case"] == "1x1M"]
        if best:
            top = max(best, key=lambda r: r["speedup"])
            print(f"# 1x1M: best {top['speedup']:.2f}x on {world} GPUs "
                  f"({top['parallel']}, {top['policy']}, {top['exchange']}, "
                  f"{top['output']}); target >= 1.8x", flush=True)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "results.json"), "w") as f:
                json.dump({"card": card, "world_size": world,
                           "torch": torch.__version__, "rows": rows}, f,
                          indent=2)
            with open(os.path.join(args.out, "results.md"), "w") as f:
                f.write(header + "\n\n" + HEADER + "\n")
                f.write("\n".join(format_row(r) for r in rows) + "\n")


def spawned(rank, world, port, args):
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        run(rank, world, args)
    finally:
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--nproc", type=int, default=0,
                        help="ranks to spawn when not run by torchrun "
                             "(default: every GPU)")
    parser.add_argument("--cases", nargs="*", choices=list(CASES))
    args = parser.parse_args()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        dist.init_process_group("nccl")
        try:
            run(rank, world, args)
        finally:
            dist.destroy_process_group()
        return
    world = args.nproc or torch.cuda.device_count()
    if world < 1:
        sys.exit("bench_distributed.py: no CUDA device")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(spawned, args=(world, port, args),
                                nprocs=world, join=True)


if __name__ == "__main__":
    main()
