"""paged_attn.distributed without a GPU or torch: the sharding index maths
(which rank holds which page and token, each rank's lengths), checked
against a brute-force walk over every token, the heads' split, and the
argument errors raised before torch or a process group is needed."""
import importlib.util
import itertools

import pytest

from paged_attn import distributed as pad

import gpu_matrix

HAVE_TORCH = importlib.util.find_spec("torch") is not None

POLICIES = ["round_robin", "contiguous"]


def plan_for(policy, world, page, max_pages=None, pages_per_rank=None):
    if policy == "contiguous":
        if pages_per_rank is None:
            pages_per_rank = max(1, -(-max_pages // world))
        return pad.Sharding(world, page, policy, pages_per_rank)
    return pad.Sharding(world, page, policy)


def lengths_up_to(world, page, extra=()):
    """Every length from 0 past world * page (shorter than one page per
    rank, exactly one, a partial last page), and some longer ones."""
    return list(range(0, 2 * world * page + 2)) + list(extra)


CASES = [(policy, world, page) for policy in POLICIES
         for world in (1, 2, 3, 4, 8) for page in (1, 3, 16)]


@pytest.mark.parametrize("policy,world,page", CASES,
                         ids=lambda v: str(v))
def test_every_token_has_exactly_one_owner(policy, world, page):
    lens = lengths_up_to(world, page, extra=(97, 1000))
    max_pages = -(-max(lens) // page)
    plan = plan_for(policy, world, page, max_pages)
    for n in lens:
        owners = {}
        for r in range(world):
            local = plan.length(r, n)
            positions = [plan.position(r, u) for u in range(local)]
            # A rank's local tokens are distinct tokens of the sequence,
            # in order.
            assert positions == sorted(set(positions))
            assert all(0 <= t < n for t in positions)
            for u, t in enumerate(positions):
                assert t not in owners, (n, r, u, t)
                owners[t] = (r, u)
                assert plan.owner(t) == (r, u)
            # Its pages are the columns its tokens sit in, and all but the
            # sequence's last are full.
            pages = list(plan.pages(r, n))
            assert pages == sorted({t // page for t in positions})
            assert len(pages) == -(-local // page)
            assert local == sum(min(page, n - j * page) for j in pages)
            # Its block table's first columns are those pages.
            assert list(plan.columns(r, max_pages))[:len(pages)] == pages
        assert sorted(owners) == list(range(n))
        assert sum(plan.lengths(r, [n])[0] for r in range(world)) == n


@pytest.mark.parametrize("policy", POLICIES)
def test_lengths_shorter_than_the_ranks_pages(policy):
    world, page = 4, 16
    plan = plan_for(policy, world, page, max_pages=8)
    for n in range(1, page + 1):  # one page: rank 0 holds all of it
        assert [plan.length(r, n) for r in range(world)] == [n, 0, 0, 0]
    n = 2 * page + 5  # three pages
    lengths = [plan.length(r, n) for r in range(world)]
    assert sum(lengths) == n
    if policy == "round_robin":
        assert lengths == [page, page, 5, 0]
    else:  # two pages per rank
        assert lengths == [2 * page, 5, 0, 0]


@pytest.mark.parametrize("policy", POLICIES)
def test_empty_shards(policy):
    world, page = 3, 16
    plan = plan_for(policy, world, page, max_pages=2)
    # An empty sequence is empty everywhere, and holds no pages.
    for r in range(world):
        assert plan.length(r, 0) == 0 and list(plan.pages(r, 0)) == []
    # A rank past the block table's columns has none, whatever the lengths.
    assert list(plan.columns(2, 2)) == []
    assert plan.lengths(2, [0, 1, 16, 32]) == [0, 0, 0, 0]


def test_round_robin_lengths_differ_by_at_most_a_page():
    for world, page in itertools.product((2, 3, 8), (1, 16)):
        plan = pad.Sharding(world, page)
        for n in range(0, 5 * world * page):
            lengths = [plan.length(r, n) for r in range(world)]
            assert max(lengths) - min(lengths) <= page
            # One rank holds the partial last page; the others whole pages.
            partial = [x for x in lengths if x % page]
            assert len(partial) == (1 if n % page else 0)


def test_contiguous_ranges_do_not_move_as_a_sequence_grows():
    plan = pad.Sharding(2, 16, "contiguous", pages_per_rank=4)
    assert plan.capacity == 128
    for n in range(1, 129):
        for t in range(n):
            assert plan.owner(t) == (0 if t < 64 else 1,
                                     t if t < 64 else t - 64)
    with pytest.raises(ValueError, match="exceeds the contiguous shards' "
                                         "capacity of 128 tokens"):
        plan.length(0, 129)
    with pytest.raises(ValueError, match="capacity"):
        plan.owner(128)


def test_balance_of_the_policies():
    # One long sequence: both balance. Sequences shorter than the
    # capacity: contiguous ranges leave the last ranks idle.
    lens = [4096, 1000, 1000, 100, 17]
    rr = pad.Sharding(4, 16)
    cont = pad.Sharding(4, 16, "contiguous", pages_per_rank=256 // 4)
    totals, ratio = pad.balance(rr, lens)
    assert sum(totals) == sum(lens) and ratio < 1.05
    totals, ratio = pad.balance(cont, lens)
    assert sum(totals) == sum(lens) and ratio == pytest.approx(
        max(totals) / (sum(lens) / 4))
    assert ratio > 1.5
    assert pad.balance(rr, [0, 0]) == ([0, 0, 0, 0], 1.0)


def test_alibi_shift_makes_local_distances_global():
    # Within a contiguous shard, a key's ALiBi distance t - (n - 1) is its
    # distance in the shard, u - (local - 1), plus the shift.
    for world, page, ppr in ((2, 16, 3), (3, 1, 5), (4, 8, 1)):
        plan = pad.Sharding(world, page, "contiguous", pages_per_rank=ppr)
        for n in range(plan.capacity + 1):
            for r in range(world):
                local = plan.length(r, n)
                shift = plan.alibi_shift(r, n)
                if local == 0:
                    assert shift == 0
                for u in range(local):
                    assert (plan.position(r, u) - (n - 1)
                            == u - (local - 1) + shift)
                # The last rank holding tokens ends at the sequence's end.
                if local and plan.position(r, local - 1) == n - 1:
                    assert shift == 0
    with pytest.raises(ValueError, match="policy='contiguous'"):
        pad.Sharding(2, 16).alibi_shift(0, 100)


def test_sharding_arguments():
    with pytest.raises(ValueError, match="policy must be one of"):
        pad.Sharding(2, 16, "striped")
    with pytest.raises(ValueError, match="needs pages_per_rank"):
        pad.Sharding(2, 16, "contiguous")
    with pytest.raises(ValueError, match="applies to policy 'contiguous'"):
        pad.Sharding(2, 16, pages_per_rank=4)
    with pytest.raises(ValueError, match="world_size must be at least 1"):
        pad.Sharding(0, 16)
    with pytest.raises(ValueError, match="page_size must be an integer"):
        pad.Sharding(2, 16.0)
    with pytest.raises(ValueError, match="page_size must be an integer"):
        pad.Sharding(2, True)
    plan = pad.Sharding(2, 16)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        plan.length(2, 10)
    with pytest.raises(ValueError, match="seq_len must be at least 0"):
        plan.length(0, -1)
    with pytest.raises(ValueError, match="token must be at least 0"):
        plan.owner(-1)
    assert "round_robin" in repr(plan)


def test_heads_split():
    for world, hq in ((1, 32), (2, 32), (4, 32), (8, 8), (3, 12)):
        ranges = [pad.head_range(r, world, hq) for r in range(world)]
        assert [h for rg in ranges for h in rg] == list(range(hq))
    with pytest.raises(ValueError, match="12 query heads do not split "
                                         "evenly over 8 ranks"):
        pad.head_range(0, 8, 12)
    # KV heads: an even share, or one replicated over several ranks; each
    # rank's query heads read only its KV heads.
    for world, hq, hkv in ((2, 32, 8), (4, 32, 8), (8, 32, 8), (8, 32, 2),
                           (8, 32, 1), (4, 8, 8), (2, 8, 1)):
        group = hq // hkv
        for r in range(world):
            kv = pad.kv_head_range(r, world, hkv)
            assert {h // group for h in pad.head_range(r, world, hq)} <= \
                set(kv)
            assert (hq // world) % len(kv) == 0
    with pytest.raises(ValueError, match="3 KV heads cannot be split over "
                                         "2 ranks"):
        pad.kv_head_range(0, 2, 3)


@pytest.mark.parametrize("kwargs,message", [
    (dict(parallel="sequence"), "parallel must be one of"),
    (dict(exchange="ring"), "exchange must be one of"),
    (dict(output="sharded"), "output must be one of"),
    (dict(window=128), "window is not supported with parallel='context'"),
    (dict(alibi=True), "needs each shard to be one contiguous run"),
    (dict(alibi_shift=True), "alibi_shift is given without alibi_slopes"),
    (dict(parallel="heads", exchange="all_to_all"),
     "exchange applies to parallel='context'"),
    (dict(parallel="heads", alibi=True, alibi_shift=True),
     "alibi_shift applies to parallel='context' only"),
    (dict(exchange="all_to_all", num_heads=12, world_size=8),
     "exchange='all_to_all' splits the query heads over the ranks: 12 "
     "heads do not split evenly over 8 ranks"),
    (dict(output="head_sharded", num_heads=6, world_size=4),
     "output='head_sharded' splits"),
    (dict(parallel="heads", num_heads=6, world_size=4),
     "parallel='heads' splits"),
])
def test_option_errors(kwargs, message):
    args = dict(parallel="context", exchange="all_gather",
                output="replicated", num_heads=32, world_size=2)
    args.update(kwargs)
    positional = [args.pop(k) for k in ("parallel", "exchange", "output",
                                        "num_heads", "world_size")]
    with pytest.raises(ValueError, match=message):
        pad.check_options(*positional, **args)


def test_supported_options():
    for parallel, exchange, output in itertools.product(
            ("context",), pad.EXCHANGES, pad.OUTPUTS):
        pad.check_options(parallel, exchange, output, 32, 2)
    pad.check_options("context", "all_gather", "replicated", 32, 2,
                      alibi=True, alibi_shift=True)
    pad.check_options("heads", "all_gather", "head_sharded", 32, 4,
                      window=4096, alibi=True)
    # A head count the ranks do not divide is fine where nothing splits
    # heads.
    pad.check_options("context", "all_gather", "replicated", 12, 8)
    # world_size None: the heads' split is left for later.
    pad.check_options("context", "all_to_all", "replicated", 12, None)


class Shaped:
    """A stand-in with a shape, never read."""

    def __init__(self, *shape):
        self.shape = shape


def test_decode_checks_options_before_torch():
    q = Shaped(2, 32, 128)
    with pytest.raises(ValueError, match="window is not supported"):
        pad.decode(q, None, None, None, None, window=64)
    with pytest.raises(ValueError, match="output must be one of"):
        pad.decode(q, None, None, None, None, output="everywhere")
    with pytest.raises(ValueError, match="q must be a tensor of shape"):
        pad.decode(Shaped(2, 128), None, None, None, None)


@pytest.mark.skipif(HAVE_TORCH, reason="torch is installed")
def test_without_torch_the_calls_say_so():
    with pytest.raises(ImportError, match="needs torch"):
        pad.decode(Shaped(2, 32, 128), None, None, None, None)
    with pytest.raises(ImportError, match="needs torch"):
        pad.shard_cache(None, None, None, None, 0, 2)


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_without_a_process_group():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group exists")
    with pytest.raises(RuntimeError, match="not initialized"):
        pad.decode(Shaped(2, 32, 128), None, None, None, None)


def test_the_kernel_set_holds_what_the_gpu_tests_use():
    # test_distributed_gpu.py and bench/bench_distributed.py run on the
    # matrix's "distributed" set alone (PAGED_ATTN_KERNEL_DIR).
    matrix = gpu_matrix.load()
    option, configs = matrix.kernel_sets()["distributed"]
    names = {c.name for c in configs}
    merges = {matrix.merge_func(m).split("(")[0].split("@")[1]
              for m in matrix.SET_MERGES["distributed"]}
    for ranks in (1, 2, 4, 8):
        h, kv = 32 // ranks, 8 // ranks
        assert f"h{h}_kv{kv}_d128_p16_bf16_nhd_w4" in names
        assert f"h{h}_kv{kv}_d128_p16_bf16_nhd_w4_win_sinks_lse" in names
        for suffix in ("", "_sinks", "_lse", "_sinks_lse"):
            assert f"merge_h{h}_d128_bf16{suffix}" in merges
            assert f"merge_h{8 // ranks}_d64_f16{suffix}" in merges
    for suffix in ("lse", "cap_lse", "alibi_lse"):
        assert f"h32_kv8_d128_p16_bf16_nhd_w4_{suffix}" in names
        assert f"h8_kv8_d64_p16_f16_nhd_w4_{suffix}" in names
    assert len(names) == len(configs)
