"""Paged decode across GPUs on torch.distributed (NCCL).

Context parallelism (the default, parallel="context"): every rank holds
some of each sequence's pages, with its own block table and lengths, and
the same (replicated) q. Each rank decodes its keys with
paged_attn.decode(..., return_lse=True); the partial results and their
log-sum-exps are exchanged over NCCL and combined with paged_attn.merge:

    import torch.distributed as dist
    from paged_attn import distributed as pad

    dist.init_process_group("nccl")
    shard = pad.shard_cache(k_cache, v_cache, block_table, seq_lens,
                            rank, world_size, policy="round_robin")
    out = pad.decode(q, shard.k_cache, shard.v_cache, shard.block_table,
                     shard.seq_lens)

exchange="all_gather" (default) gathers every rank's partials ([batch,
heads, head_dim] and the log-sum-exps, packed in one buffer) and merges all
heads on every rank; exchange="all_to_all" sends each rank the partials of
its share of the heads (as Helix does), merges those, and all-gathers the
merged heads when the output is replicated. output="head_sharded" leaves
rank r with heads [r * H / R, (r + 1) * H / R) only.

Tensor parallelism (parallel="heads"): the KV heads are split over the
ranks (shard_heads()), each rank holding every token of its heads, and
computes its query heads completely; q is still the full, replicated q
(each rank takes its heads), and the result is gathered (replicated) or
left head-sharded.

Sinks are applied once: by the merge (context) or by each rank's decode of
its own heads (tensor parallel). soft_cap acts on each logit alone and is
passed to every rank's decode. Windows and ALiBi depend on a key's position
in the whole sequence, which the decode op counts from the shard's own
length (see docs/design.md, "Across GPUs"):

- window: the op's window keeps the last `window` keys of the shard, not
  of the sequence, and takes one value for the whole batch, where each
  sequence would need its own (the window starts in a different rank's
  pages at a different offset for each length). Rejected under context
  parallelism; parallel="heads" supports it.
- ALiBi: within a contiguous shard (policy="contiguous"), a key's global
  distance to the query is its local distance plus a constant per
  sequence (alibi_shift: the shard's end minus the sequence's length), so
  it shifts the shard's log-sum-exp and leaves its output as it is:
  decode() adds slope * alibi_shift to the log-sum-exp before the merge.
  Round-robin shards interleave pages, so no constant exists: rejected.

The index maths (which rank holds which page and token, each rank's
lengths) is in Sharding and the *_range functions: plain Python on ints,
importable without torch.
"""

import collections
import operator

POLICIES = ("round_robin", "contiguous")
PARALLEL = ("context", "heads")
EXCHANGES = ("all_gather", "all_to_all")
OUTPUTS = ("replicated", "head_sharded")

__all__ = ["decode", "local_decode", "combine", "Sharding", "Shard",
           "shard_cache", "shard_heads", "head_range", "kv_head_range",
           "balance", "check_options", "POLICIES", "PARALLEL", "EXCHANGES", "OUTPUTS"]


# ---------------------------------------------------------------------------
# Index maths (no torch)
# ---------------------------------------------------------------------------


def _count(name, value, lo=0):
    """`value` as an int >= lo (not a bool); ValueError naming it else."""
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < lo:
        raise ValueError(f"{name} must be at least {lo}, got {n}")
    return n


def _rank_in(rank, world_size):
    rank = _count("rank", rank)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return rank


class Sharding:
    """Which rank holds which of a sequence's pages, for `world_size`
    ranks and pages of `page_size` tokens.

    A sequence's logical pages are its block table's columns: page j holds
    tokens [j * page_size, (j + 1) * page_size). Policies:

    - "round_robin": page j is rank j % world_size's local page
      j // world_size. Ranks' lengths differ by at most one page whatever
      the length, and a growing sequence's new pages go to each rank in
      turn.
    - "contiguous": rank r holds pages [r * pages_per_rank, (r + 1) *
      pages_per_rank): fixed ranges, so pages never move as a sequence
      grows, but a sequence shorter than the capacity
      (world_size * pages_per_rank pages) sits on the first ranks only.
      A shard is then one run of the sequence, which keeps ALiBi
      expressible (alibi_shift()).

    On every rank, a sequence's local tokens are its local pages in order,
    all full but the sequence's last page: rank r's local token u is the
    sequence's token position(r, u), and its local length is length(r, n)
    for a sequence of n tokens.
    """

    def __init__(self, world_size, page_size, policy="round_robin",
                 pages_per_rank=None):
        self.world_size = _count("world_size", world_size, 1)
        self.page_size = _count("page_size", page_size, 1)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got "
                             f"{policy!r}")
        self.policy = policy
        if policy == "contiguous":
            if pages_per_rank is None:
                raise ValueError("policy 'contiguous' needs pages_per_rank "
                                 "(each rank's range of block-table "
                                 "columns)")
            self.pages_per_rank = _count("pages_per_rank", pages_per_rank, 1)
        else:
            if pages_per_rank is not None:
                raise ValueError("pages_per_rank applies to policy "
                                 "'contiguous' only")
            self.pages_per_rank = None

    def __repr__(self):
        extra = (f", pages_per_rank={self.pages_per_rank}"
                 if self.pages_per_rank else "")
        return (f"Sharding(world_size={self.world_size}, page_size="
                f"{self.page_size}, policy={self.policy!r}{extra})")

    @property
    def capacity(self):
        """The longest sequence the shards can hold (tokens), or None
        (round-robin: no bound)."""
        if self.policy == "round_robin":
            return None
        return self.world_size * self.pages_per_rank * self.page_size

    def _length(self, seq_len):
        n = _count("seq_len", seq_len)
        cap = self.capacity
        if cap is not None and n > cap:
            raise ValueError(
                f"a sequence of {n} tokens exceeds the contiguous shards' "
                f"capacity of {cap} tokens (world_size {self.world_size} x "
                f"pages_per_rank {self.pages_per_rank} x page_size "
                f"{self.page_size})")
        return n

    def pages(self, rank, seq_len):
        """The logical pages (block-table columns) of a sequence of
        `seq_len` tokens that hold tokens on rank `rank`: a range."""
        rank = _rank_in(rank, self.world_size)
        n = self._length(seq_len)
        used = -(-n // self.page_size)
        if self.policy == "round_robin":
            return range(rank, used, self.world_size)
        c = self.pages_per_rank
        return range(min(rank * c, used), min((rank + 1) * c, used))

    def length(self, rank, seq_len):
        """Rank `rank`'s length of a sequence of `seq_len` tokens."""
        rank = _rank_in(rank, self.world_size)
        n = self._length(seq_len)
        p = self.page_size
        if self.policy == "contiguous":
            span = self.pages_per_rank * p
            return min(max(n - rank * span, 0), span)
        full, rest = divmod(n, p)
        pages = full // self.world_size + (rank < full % self.world_size)
        return pages * p + (rest if full % self.world_size == rank else 0)

    def lengths(self, rank, seq_lens):
        """length() of each of `seq_lens` (an iterable of ints): a list."""
        return [self.length(rank, n) for n in seq_lens]

    def columns(self, rank, max_pages):
        """The block-table columns (of `max_pages`) that make up rank
        `rank`'s block table, in its order: a range."""
        rank = _rank_in(rank, self.world_size)
        max_pages = _count("max_pages", max_pages)
        if self.policy == "round_robin":
            return range(rank, max_pages, self.world_size)
        c = self.pages_per_rank
        return range(min(rank * c, max_pages), min((rank + 1) * c, max_pages))

    def position(self, rank, local_token):
        """The sequence's token index of rank `rank`'s local token."""
        rank = _rank_in(rank, self.world_size)
        u = _count("local_token", local_token)
        p = self.page_size
        if self.policy == "round_robin":
            return ((u // p) * self.world_size + rank) * p + u % p
        span = self.pages_per_rank * p
        if u >= span:
            raise ValueError(f"local_token {u} is past a contiguous shard's "
                             f"{span} tokens")
        return rank * span + u

    def owner(self, token):
        """(rank, local token) of the sequence's token `token`."""
        t = _count("token", token)
        p = self.page_size
        page, slot = divmod(t, p)
        if self.policy == "round_robin":
            rank, local_page = page % self.world_size, page // self.world_size
            return rank, local_page * p + slot
        self._length(t + 1)
        rank = page // self.pages_per_rank
        return rank, t - rank * self.pages_per_rank * p

    def alibi_shift(self, rank, seq_len):
        """For a contiguous shard: the shard's end (one past its last
        token's position) minus the sequence's length, so that a key's
        ALiBi distance to the query, t - (seq_len - 1), is its distance in
        the shard plus this; 0 where the shard holds nothing. Round-robin
        shards have no such constant: ValueError."""
        if self.policy != "contiguous":
            raise ValueError(_ALIBI_ROUND_ROBIN)
        n = self._length(seq_len)
        local = self.length(rank, n)
        if local == 0:
            return 0
        return rank * self.pages_per_rank * self.page_size + local - n


def head_range(rank, world_size, num_heads):
    """The query heads rank `rank` of `world_size` computes when heads are
    split (parallel="heads", the all-to-all exchange, head-sharded
    output): an even share, in order."""
    world_size = _count("world_size", world_size, 1)
    rank = _rank_in(rank, world_size)
    num_heads = _count("num_heads", num_heads, 1)
    if num_heads % world_size:
        raise ValueError(f"{num_heads} query heads do not split evenly over "
                         f"{world_size} ranks")
    share = num_heads // world_size
    return range(rank * share, (rank + 1) * share)


def kv_head_range(rank, world_size, num_kv_heads):
    """The KV heads rank `rank` holds under tensor parallelism, which go
    with its query heads head_range(): an even share where world_size
    divides num_kv_heads, else (world_size a multiple of num_kv_heads) one
    KV head, replicated over world_size / num_kv_heads ranks."""
    world_size = _count("world_size", world_size, 1)
    rank = _rank_in(rank, world_size)
    hkv = _count("num_kv_heads", num_kv_heads, 1)
    if hkv % world_size == 0:
        share = hkv // world_size
        return range(rank * share, (rank + 1) * share)
    if world_size % hkv == 0:
        head = rank // (world_size // hkv)
        return range(head, head + 1)
    raise ValueError(f"{hkv} KV heads cannot be split over {world_size} "
                     f"ranks: one must divide the other")


_WINDOW_CONTEXT = (
    "window is not supported with parallel='context': the decode op counts "
    "the window back from each shard's own length (seq_lens_shard[b]), not "
    "the sequence's, and takes one window for the whole batch where each "
    "sequence's shards would need their own; use parallel='heads' (every "
    "rank holds whole sequences) or decode the window on one rank")
_ALIBI_ROUND_ROBIN = (
    "ALiBi under parallel='context' needs each shard to be one contiguous "
    "run of the sequence (policy='contiguous'): the decode op measures a "
    "key's distance from the shard's own last key, which differs from the "
    "sequence's by a constant (alibi_shift) only for a contiguous run; "
    "round-robin pages interleave")


def check_options(parallel, exchange, output, num_heads, world_size, *,
                  window=None, alibi=False, alibi_shift=False):
    """decode()'s options, checked without torch: ValueError for a bad
    value or a combination it does not support. `alibi` and
    `alibi_shift`: whether those tensors are given. world_size None: all
    but the heads' split (decode() checks them before it needs torch or a
    process group, then that once it knows the group)."""
    if parallel not in PARALLEL:
        raise ValueError(f"parallel must be one of {PARALLEL}, got "
                         f"{parallel!r}")
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {EXCHANGES}, got "
                         f"{exchange!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    num_heads = _count("num_heads", num_heads, 1)
    if world_size is not None:
        world_size = _count("world_size", world_size, 1)
    if world_size is not None and (
            parallel == "heads" or exchange == "all_to_all"
            or output == "head_sharded") and num_heads % world_size:
        what = ("parallel='heads'" if parallel == "heads" else
                "exchange='all_to_all'" if exchange == "all_to_all" else
                "output='head_sharded'")
        raise ValueError(f"{what} splits the query heads over the ranks: "
                         f"{num_heads} heads do not split evenly over "
                         f"{world_size} ranks")
    if parallel == "context":
        if window is not None:
            raise ValueError(_WINDOW_CONTEXT)
        if alibi and not alibi_shift:
            raise ValueError(_ALIBI_ROUND_ROBIN + "; pass alibi_shift (from "
                             "shard_cache(..., policy='contiguous') or "
                             "Sharding.alibi_shift)")
        if alibi_shift and not alibi:
            raise ValueError("alibi_shift is given without alibi_slopes")
    else:
        if exchange != "all_gather":
            raise ValueError("exchange applies to parallel='context'; "
                             "parallel='heads' gathers the heads "
                             "(all_gather)")
        if alibi_shift:
            raise ValueError("alibi_shift applies to parallel='context' "
                             "only: under parallel='heads' every rank holds "
                             "whole sequences")


# ---------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------


def _require_torch():
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise ImportError("paged_attn.distributed needs torch (with "
                          "torch.distributed)") from None
    return torch, dist


def _group(dist, group):
    """(group, rank, world_size) of `group` (default: the default group),
    after checking that it exists, holds this process and is NCCL."""
    if not dist.is_available():
        raise RuntimeError("this torch has no torch.distributed")
    if not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialized: call "
                           "torch.distributed.init_process_group('nccl') "
                           "first (torchrun sets its environment)")
    rank = dist.get_rank(group)
    world = dist.get_world_size(group)
    if rank < 0 or world < 1:
        raise ValueError("this process is not a member of `group`")
    backend = str(dist.get_backend(group))
    if "nccl" not in backend:
        raise ValueError(f"paged_attn.distributed exchanges CUDA tensors and "
                         f"needs an NCCL process group, got backend "
                         f"{backend!r}")
    return group, rank, world


_CACHE_DIMS = {"nhd": (1, 2), "hnd": (2, 1)}  # (page dim, kv-heads dim)


def _cache_dims(layout):
    dims = _CACHE_DIMS.get(layout)
    if dims is None:
        raise ValueError(f"layout must be 'nhd' or 'hnd', got {layout!r}")
    return dims


def _check_local(torch, q, k, v, bt, sl, layout, sinks, alibi_slopes,
                 alibi_shift):
    """The checks one rank can make alone (decode() and merge() check the
    rest): ValueError."""
    for name, t in (("q", q), ("k_shard", k), ("v_shard", v),
                    ("block_table_shard", bt), ("seq_lens_shard", sl)):
        if not isinstance(t, torch.Tensor) or not t.is_cuda:
            raise ValueError(f"{name} must be a CUDA torch tensor")
    if q.dim() != 3:
        raise ValueError(f"q must have 3 dimensions [batch, num_heads, "
                         f"head_dim], got shape {tuple(q.shape)}")
    if k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"k_shard and v_shard must have one 4-dimensional "
                         f"shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if bt.dim() != 2 or bt.dtype != torch.int32:
        raise ValueError("block_table_shard must be int32 [batch, max_pages]")
    if sl.dim() != 1 or sl.dtype != torch.int32:
        raise ValueError("seq_lens_shard must be int32 [batch]")
    batch, hq, d = q.shape
    if bt.shape[0] != batch or sl.shape[0] != batch:
        raise ValueError(f"batch sizes disagree: q {batch}, "
                         f"block_table_shard {bt.shape[0]}, seq_lens_shard "
                         f"{sl.shape[0]}")
    if k.shape[3] != d:
        raise ValueError(f"k_shard head_dim ({k.shape[3]}) must equal q's "
                         f"({d})")
    _cache_dims(layout)
    devices = {t.device for t in (q, k, v, bt, sl)}
    for name, t in (("sinks", sinks), ("alibi_slopes", alibi_slopes)):
        if t is None:
            continue
        if (not isinstance(t, torch.Tensor) or t.dtype != torch.float32
                or tuple(t.shape) != (hq,)):
            raise ValueError(f"{name} must be a float32 CUDA tensor of shape "
                             f"({hq},) [num_heads] (all the heads, on every "
                             f"rank)")
        devices.add(t.device)
    if alibi_shift is not None:
        if (not isinstance(alibi_shift, torch.Tensor)
                or alibi_shift.dtype not in (torch.int32, torch.int64,
                                             torch.float32)
                or tuple(alibi_shift.shape) != (batch,)):
            raise ValueError(f"alibi_shift must be an int32 CUDA tensor of "
                             f"shape ({batch},) [batch]")
        devices.add(alibi_shift.device)
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")


_DTYPE_CODES = {"float16": 1, "bfloat16": 2, "float32": 3}


def _validate_across(torch, dist, group, world, device, fields, error):
    """Every rank's `fields` (name -> int) and local error gathered: the
    same ValueError on every rank where one rank's arguments are bad or
    the ranks' disagree."""
    names = list(fields)
    mine = torch.tensor([0 if error is None else 1] +
                        [int(fields[n]) for n in names], dtype=torch.int64,
                        device=device)
    every = torch.empty(world, mine.numel(), dtype=torch.int64, device=device)
    dist.all_gather_into_tensor(every.view(-1), mine, group=group)
    rows = every.tolist()
    if error is not None:
        raise error
    bad = [r for r, row in enumerate(rows) if row[0]]
    if bad:
        raise ValueError(f"ranks {bad} were given invalid arguments (see "
                         f"their errors)")
    differ = [n for i, n in enumerate(names)
              if len({row[i + 1] for row in rows}) > 1]
    if differ:
        detail = "; ".join(f"{n}: " + ", ".join(str(row[names.index(n) + 1])
                                                for row in rows)
                           for n in differ)
        raise ValueError(f"the ranks' arguments disagree ({detail}, by rank)")


class Partials:
    """One rank's part of a distributed decode, from local_decode(), for
    combine(): the local results in the exchange's buffer, and what the
    exchange and the merge need."""

    __slots__ = ("mode", "group", "rank", "world", "buffer", "result",
                 "shape", "row", "lse_col", "sinks", "return_lse", "output")

    def __init__(self, **kw):
        for name in self.__slots__:
            setattr(self, name, kw.get(name))


def local_decode(q, k_shard, v_shard, block_table_shard, seq_lens_shard, *,
                 group=None, parallel="context", exchange="all_gather",
                 output="replicated", scale=None, layout="nhd",
                 soft_cap=None, sinks=None, window=None, alibi_slopes=None,
                 alibi_shift=None, return_lse=False, num_splits=0,
                 max_seq_len=None, validate=False):
    """decode()'s first half: this rank's decode, launched, nothing
    exchanged. Returns the Partials that combine() exchanges and merges
    (decode() is combine(local_decode(...)); the halves let a caller time
    or overlap them)."""
    num_heads = _heads_of(q)
    options = dict(window=window, alibi=alibi_slopes is not None,
                   alibi_shift=alibi_shift is not None)
    check_options(parallel, exchange, output, num_heads, None, **options)
    torch, dist = _require_torch()
    group, rank, world = _group(dist, group)
    check_options(parallel, exchange, output, num_heads, world, **options)
    error = None
    try:
        _check_local(torch, q, k_shard, v_shard, block_table_shard,
                     seq_lens_shard, layout, sinks, alibi_slopes, alibi_shift)
    except ValueError as e:
        if not validate:
            raise
        error = e
    if validate:
        shape = tuple(q.shape)
        fields = {"batch": shape[0], "num_heads": num_heads,
                  "head_dim": shape[-1],
                  "dtype": _DTYPE_CODES.get(
                      str(getattr(q, "dtype", "")).split(".")[-1], 0),
                  "parallel": PARALLEL.index(parallel),
                  "exchange": EXCHANGES.index(exchange),
                  "output": OUTPUTS.index(output),
                  "return_lse": bool(return_lse),
                  "sinks": sinks is not None, "soft_cap": soft_cap is not None,
                  "window": window is not None,
                  "alibi": alibi_slopes is not None,
                  "kv_heads": (-1 if error is not None else
                               k_shard.shape[_cache_dims(layout)[1]])}
        # The collective runs on the current device, as NCCL's do.
        device = torch.device("cuda", torch.cuda.current_device())
        _validate_across(torch, dist, group, world, device, fields, error)

    import paged_attn
    batch, hq, d = q.shape
    elem = q.element_size()
    # A row: one head's output, then 16 bytes that hold its log-sum-exp
    # (f32) in their first 4, so that the rows stay 16-byte aligned for
    # decode() and merge() and one collective moves both.
    row = d + 16 // elem
    lse_col = d * elem // 4
    parts = Partials(group=group, rank=rank, world=world, row=row,
                     lse_col=lse_col, return_lse=bool(return_lse),
                     output=output, shape=(batch, hq, d))
    kwargs = dict(scale=scale, layout=layout, num_splits=num_splits,
                  max_seq_len=max_seq_len, soft_cap=soft_cap)
    if parallel == "heads":
        heads = slice(rank * hq // world, (rank + 1) * hq // world)
        q_local = q[:, heads]
        kwargs.update(window=window, return_lse=return_lse,
                      sinks=None if sinks is None else sinks[heads],
                      alibi_slopes=(None if alibi_slopes is None
                                    else alibi_slopes[heads]))
        if output == "head_sharded":
            parts.mode = "done"
            parts.result = paged_attn.decode(q_local, k_shard, v_shard,
                                             block_table_shard,
                                             seq_lens_shard, **kwargs)
            return parts
        parts.mode = "gather_heads"
        parts.buffer = q.new_empty((world, hq // world, batch, row))
        out, lse = _head_major_views(torch, parts.buffer[rank], d, lse_col)
        paged_attn.decode(q_local, k_shard, v_shard, block_table_shard,
                          seq_lens_shard, out=out,
                          lse=lse if return_lse else None, **kwargs)
        return parts

    parts.sinks = sinks
    if exchange == "all_gather":
        parts.mode = "all_gather"
        # [rank, batch, heads, row]: this rank's slice is gathered in place.
        parts.buffer = q.new_empty((world, batch, hq, row))
        out = parts.buffer[rank, ..., :d]
        lse = parts.buffer[rank].view(torch.float32)[..., lse_col]
    else:
        parts.mode = "all_to_all"
        # [heads, batch, row]: rank j's share of the heads is one block.
        parts.buffer = q.new_empty((hq, batch, row))
        out, lse = _head_major_views(torch, parts.buffer, d, lse_col)
    paged_attn.decode(q, k_shard, v_shard, block_table_shard, seq_lens_shard,
                      out=out, lse=lse, return_lse=True,
                      alibi_slopes=alibi_slopes, **kwargs)
    if alibi_slopes is not None:
        # The shard's logits are the sequence's minus slope * shift each.
        lse.add_(alibi_shift.to(torch.float32)[:, None] *
                 alibi_slopes[None, :])
    return parts


def _heads_of(q):
    shape = getattr(q, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError("q must be a tensor of shape [batch, num_heads, "
                         "head_dim]")
    return int(shape[1])


def _head_major_views(torch, buffer, d, lse_col):
    """([batch, heads, d] out, [batch, heads] lse) views of a [heads,
    batch, row] buffer."""
    out = buffer[..., :d].permute(1, 0, 2)
    lse = buffer.view(torch.float32)[..., lse_col].permute(1, 0)
    return out, lse


def combine(parts):
    """decode()'s second half: exchanges local_decode()'s partials and
    merges them; returns decode()'s result."""
    torch, dist = _require_torch()
    import paged_attn
    if parts.mode == "done":
        return parts.result
    group, rank, world = parts.group, parts.rank, parts.world
    batch, hq, d = parts.shape
    row, lse_col, return_lse = parts.row, parts.lse_col, parts.return_lse
    if parts.mode == "gather_heads":
        return _gather_heads(torch, dist, parts, parts.buffer)
    share = hq // world
    heads = slice(rank * share, (rank + 1) * share)
    sinks = parts.sinks
    buf = parts.buffer
    if parts.mode == "all_gather":
        dist.all_gather_into_tensor(buf.view(-1), buf[rank].view(-1),
                                    group=group)
        out_p = buf[..., :d]
        lse_p = buf.view(torch.float32)[..., lse_col]
        if parts.output == "replicated":
            return paged_attn.merge(out_p, lse_p, sinks=sinks,
                                    return_lse=return_lse)
        return paged_attn.merge(out_p[:, :, heads], lse_p[:, :, heads],
                                sinks=None if sinks is None else sinks[heads],
                                return_lse=return_lse)
    # all_to_all: block j of the send buffer (heads of rank j) goes to rank
    # j; block i of the received one is rank i's partials of this rank's
    # heads: [ranks, heads, batch, row].
    recv = torch.empty_like(buf)
    dist.all_to_all_single(recv.view(-1), buf.view(-1), group=group)
    recv = recv.view(world, share, batch, row)
    out_p = recv[..., :d].permute(0, 2, 1, 3)
    lse_p = recv.view(torch.float32)[..., lse_col].permute(0, 2, 1)
    sinks = None if sinks is None else sinks[heads]
    if parts.output == "head_sharded":
        return paged_attn.merge(out_p, lse_p, sinks=sinks,
                                return_lse=return_lse)
    gathered = buf.new_empty((world, share, batch, row))
    out, lse = _head_major_views(torch, gathered[rank], d, lse_col)
    paged_attn.merge(out_p, lse_p, sinks=sinks, out=out,
                     lse=lse if return_lse else None)
    return _gather_heads(torch, dist, parts, gathered)


def _gather_heads(torch, dist, parts, gathered):
    """The replicated result from each rank's heads in `gathered`
    ([ranks, heads / ranks, batch, row], this rank's block written)."""
    rank = parts.rank
    batch, hq, d = parts.shape
    dist.all_gather_into_tensor(gathered.view(-1), gathered[rank].view(-1),
                                group=parts.group)
    full = gathered.view(hq, batch, parts.row)
    out = full[..., :d].permute(1, 0, 2).contiguous()
    if not parts.return_lse:
        return out
    lse = full.view(torch.float32)[..., parts.lse_col].permute(1, 0)
    return out, lse.contiguous()


def decode(q, k_shard, v_shard, block_table_shard, seq_lens_shard, *,
           group=None, parallel="context", exchange="all_gather",
           output="replicated", scale=None, layout="nhd", soft_cap=None,
           sinks=None, window=None, alibi_slopes=None, alibi_shift=None,
           return_lse=False, num_splits=0, max_seq_len=None, validate=False):
    """Paged decode across the ranks of `group` (default: the default
    process group; NCCL); every rank calls it with the same options.

    q: [batch, num_heads, head_dim], the same on every rank. k_shard,
    v_shard, block_table_shard, seq_lens_shard: this rank's cache, as
    paged_attn.decode() takes them (shard_cache() and shard_heads() make
    them from a whole cache).

    parallel: "context" (each rank holds part of each sequence's keys) or
    "heads" (each rank holds every key of its share of the KV heads,
    kv_head_range()). exchange (context): "all_gather" or "all_to_all".
    output: "replicated" (every rank gets [batch, num_heads, head_dim]) or
    "head_sharded" (rank r gets heads head_range(r, world, num_heads)).

    scale, layout, soft_cap, num_splits, max_seq_len: as
    paged_attn.decode()'s, for each rank's decode. sinks: float32
    [num_heads] (all the heads, on every rank), applied once. window:
    parallel="heads" only. alibi_slopes: float32 [num_heads]; under
    parallel="context", with alibi_shift (int32 [batch], this rank's:
    Shard.alibi_shift of contiguous shards). return_lse: also the natural
    log-sum-exp over all the sequence's keys (sinks excluded), float32
    [batch, heads] of the output's heads.

    validate: first all-gather every rank's shapes and options and raise
    the same ValueError on every rank where they disagree or one rank's
    are invalid (one small collective and a synchronisation). Without it,
    a rank whose arguments fail its own checks raises alone, and the others
    wait for it in the exchange (until NCCL's timeout).

    Returns out (or (out, lse)) as torch tensors on q's device.
    """
    return combine(local_decode(
        q, k_shard, v_shard, block_table_shard, seq_lens_shard, group=group,
        parallel=parallel, exchange=exchange, output=output, scale=scale,
        layout=layout, soft_cap=soft_cap, sinks=sinks, window=window,
        alibi_slopes=alibi_slopes, alibi_shift=alibi_shift,
        return_lse=return_lse, num_splits=num_splits, max_seq_len=max_seq_len,
        validate=validate))


# ---------------------------------------------------------------------------
# Sharding a whole cache
# ---------------------------------------------------------------------------

Shard = collections.namedtuple(
    "Shard", "k_cache v_cache block_table seq_lens alibi_shift pages")
Shard.__doc__ = """One rank's shard of a paged cache (shard_cache()).

k_cache, v_cache: the rank's page pool (its pages of the whole cache, in
the order of `pages`; one zero page where it holds none). block_table:
int32 [batch, local pages] into that pool (-1 past each sequence's local
pages). seq_lens: int32 [batch], the rank's lengths. alibi_shift: int32
[batch] (policy "contiguous"; None for "round_robin"). pages: int64, the
whole cache's page of each pool page."""


def shard_cache(k_cache, v_cache, block_table, seq_lens, rank, world_size,
                *, policy="round_robin", layout="nhd", pages_per_rank=None):
    """Rank `rank`'s Shard of a whole paged cache under Sharding(world_size,
    page size, policy, pages_per_rank): the pages its block table uses,
    copied into a pool of its own, and its block table and lengths.
    pages_per_rank (contiguous): default ceil(block_table columns /
    world_size). Reads block_table and seq_lens on the host (a
    synchronisation): a set-up helper, not a per-step one. A page that two
    sequences share (a common prefix) is copied once per rank that holds
    it."""
    torch, _ = _require_torch()
    page_dim, _ = _cache_dims(layout)
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must have one 4-dimensional "
                         f"shape, got {tuple(k_cache.shape)} and "
                         f"{tuple(v_cache.shape)}")
    if block_table.dim() != 2 or seq_lens.dim() != 1 or (
            block_table.shape[0] != seq_lens.shape[0]):
        raise ValueError("block_table must be [batch, max_pages] and "
                         "seq_lens [batch]")
    page = k_cache.shape[page_dim]
    batch, max_pages = block_table.shape
    world_size = _count("world_size", world_size, 1)
    if policy == "contiguous" and pages_per_rank is None:
        pages_per_rank = max(1, -(-max_pages // world_size))
    plan = Sharding(world_size, page, policy, pages_per_rank)
    rank = _rank_in(rank, world_size)
    lens = [int(n) for n in seq_lens.tolist()]
    for b, n in enumerate(lens):
        if n < 0 or -(-n // page) > max_pages:
            raise ValueError(f"seq_lens[{b}] = {n} needs "
                             f"{-(-n // page)} pages; block_table has "
                             f"{max_pages} columns")
    local_lens = plan.lengths(rank, lens)
    columns = list(plan.columns(rank, max_pages))
    width = max(1, len(columns))
    table = block_table.to("cpu", torch.int64)
    local = torch.full((batch, width), -1, dtype=torch.int64)
    if columns:
        local[:, :len(columns)] = table[:, columns]
    used = torch.tensor([-(-n // page) for n in local_lens],
                        dtype=torch.int64).view(batch, 1)
    in_use = torch.arange(width).view(1, width) < used
    ids = local[in_use]
    if ids.numel() and (ids.min() < 0 or ids.max() >= k_cache.shape[0]):
        raise ValueError(f"block_table has page numbers outside [0, "
                         f"{k_cache.shape[0]}) among the pages seq_lens use")
    pool, index = torch.unique(ids, sorted=True, return_inverse=True)
    local_table = torch.full((batch, width), -1, dtype=torch.int32)
    local_table[in_use] = index.to(torch.int32)
    if pool.numel():
        select = pool.to(k_cache.device)
        k = k_cache.index_select(0, select)
        v = v_cache.index_select(0, select)
    else:  # a pool of one page, never read (a null pointer is refused)
        shape = (1,) + tuple(k_cache.shape[1:])
        k, v = k_cache.new_zeros(shape), v_cache.new_zeros(shape)
    shift = None
    if policy == "contiguous":
        shift = torch.tensor([plan.alibi_shift(rank, n) for n in lens],
                             dtype=torch.int32, device=seq_lens.device)
    return Shard(k, v, local_table.to(block_table.device),
                 torch.tensor(local_lens, dtype=torch.int32,
                              device=seq_lens.device), shift, pool)


def shard_heads(k_cache, v_cache, rank, world_size, *, layout="nhd"):
    """Rank `rank`'s KV heads (kv_head_range()) of a whole cache, for
    parallel="heads": (k, v), contiguous copies; the block table and
    seq_lens stay the whole cache's."""
    _require_torch()
    _, kv_dim = _cache_dims(layout)
    heads = kv_head_range(rank, world_size, k_cache.shape[kv_dim])
    return tuple(t.narrow(kv_dim, heads.start, len(heads)).contiguous()
                 for t in (k_cache, v_cache))


def balance(plan, seq_lens):
    """Each rank's total tokens of `seq_lens` under Sharding `plan`, and
    the largest over the mean (1.0: balanced): how much longer the slowest
    rank's decode reads than an even split. Plain Python."""
    totals = [sum(plan.lengths(r, seq_lens)) for r in range(plan.world_size)]
    mean = sum(totals) / plan.world_size
    return totals, (max(totals) / mean if mean else 1.0)

