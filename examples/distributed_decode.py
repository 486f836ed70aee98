#!/usr/bin/env python3
"""Paged decode across GPUs: each rank holds every other page of each
sequence (round-robin), decodes its pages, and the partial results are
merged by their log-sum-exps (paged_attn.distributed).

    torchrun --nproc-per-node 2 examples/distributed_decode.py
    python3 examples/distributed_decode.py     # spawns one rank per GPU

Every rank builds the same whole cache here (same seed) only to cut its
shard out of it and to check the result against one GPU's decode; a
serving system would allocate each rank's pages on that rank
(paged_attn.distributed.Sharding says which rank a page goes to).
"""
import os
import socket

import torch
import torch.distributed as dist

import paged_attn
from paged_attn import distributed as pad


def main(rank, world):
    B, Hq, Hkv, D, page = 4, 32, 8, 128, 16
    lens = [1, 17, 3000, 40000]
    g = torch.Generator(device="cpu").manual_seed(0)
    max_pages = -(-max(lens) // page)
    pages = B * max_pages
    q = torch.randn(B, Hq, D, generator=g).to(torch.bfloat16).cuda()
    k_cache = torch.randn(pages, page, Hkv, D, generator=g).to(
        torch.bfloat16).cuda()
    v_cache = torch.randn(pages, page, Hkv, D, generator=g).to(
        torch.bfloat16).cuda()
    block_table = torch.randperm(pages, generator=g).to(torch.int32).view(
        B, max_pages).cuda()
    seq_lens = torch.tensor(lens, dtype=torch.int32).cuda()
    sinks = torch.zeros(Hq).cuda()

    shard = pad.shard_cache(k_cache, v_cache, block_table, seq_lens, rank,
                            world, policy="round_robin")
    out, lse = pad.decode(q, shard.k_cache, shard.v_cache, shard.block_table,
                          shard.seq_lens, sinks=sinks, return_lse=True)

    single = paged_attn.decode(q, k_cache, v_cache, block_table, seq_lens,
                               sinks=sinks)
    err = ((out.double() - single.double()).norm() /
           single.double().norm()).item()
    print(f"rank {rank}/{world}: {shard.seq_lens.tolist()} of {lens} tokens; "
          f"out {tuple(out.shape)}, lse {tuple(lse.shape)}; relative "
          f"difference from one GPU {err:.1e}", flush=True)
    assert err < 1e-2


def spawned(rank, world, port):
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        main(rank, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if "RANK" in os.environ:  # torchrun
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl")
        try:
            main(dist.get_rank(), dist.get_world_size())
        finally:
            dist.destroy_process_group()
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        n = torch.cuda.device_count()
        torch.multiprocessing.spawn(spawned, args=(n, port), nprocs=n)
