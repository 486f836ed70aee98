"""PagedAttn as an attention implementation of Hugging Face transformers'
continuous batching (`generate_batch`, `ContinuousBatchingManager`).

    from paged_attn.integrations import transformers as pa_transformers
    name = pa_transformers.register()          # "paged|paged_attn"
    model.set_attn_implementation(name)        # or from_config(..., attn_implementation=name)
    outputs = model.generate_batch(prompts, generation_config)

Written against transformers 5.17.0 (`SUPPORTED`; `register` raises outside
it). What it relies on there:

- The paged cache (`generation/continuous_batching/cache.py`,
  `PagedAttentionCache`): per layer of a layer group, one key and one value
  tensor of shape `[(num_blocks + 2) * block_size, num_kv_heads, head_dim]`
  (two padding blocks at the end: a zeroed read trash and a write trash).
  `.view(-1, block_size, num_kv_heads, head_dim)` is PagedAttn's "nhd"
  cache `[pages, page, kv_heads, head_dim]` with page = transformers'
  block_size: no copy.
- The attention call (`models/*/modeling_*.py` through
  `AttentionInterface`): `fn(module, query [1, Hq, T, D], key [1, Hkv, T, D],
  value, attention_mask, dropout=, scaling=, **kwargs)` returning
  `([1, T, Hq, D], weights)`, with the step's packed tokens as T and the
  continuous-batching arguments in kwargs (`input_outputs.py`,
  `PagedAttentionArgs`): `cache`, `cu_seq_lens_q` / `cu_seq_lens_k` (int32
  `[B + 1]`, the keys' lengths counting this step's tokens; a dict by layer
  type for hybrid models), `max_seqlen_q` / `max_seqlen_k` (host ints),
  `read_index` / `write_index` (one int64 tensor per layer group: the flat
  cache rows to gather, sequence by sequence in position order, and those
  to write) and `block_table` (int32 `[groups, B, max_blocks]`, -1 past a
  sequence's blocks; only on transformers' decode fast path, else None).
- transformers builds `block_table` only for flash attention
  (`initialization.ensure_decode_fast_path_is_available`); `register`
  (decode_fast_path=True, the default) lets its implementation have it too,
  by wrapping that function. On those steps transformers fills no write
  indices (flash writes the new K/V itself), so this writes them: row
  `block_table[b, (L-1) // page] * page + (L-1) % page` of each sequence of
  L keys. Without the fast path a decode step has read/write indices only:
  the block table is derived on the device from the read index (page j of
  sequence b is `read_index[cu_seq_lens_k[b] + j * page] // page`; a few
  small kernels, once a step for all layers of a group) and the new K/V are
  written at `write_index`, as transformers' own `cache.update` writes them.
- A decode step: every sequence has one query token (`max_seqlen_q == 1`
  and as many query tokens as sequences). Prefill and mixed steps, and
  layers this cannot serve (sliding-window layers, whose cache is a ring,
  dropout, and value head_dim != query head_dim), go to transformers' own
  `sdpa_attention_paged_forward` (`integrations/sdpa_paged.py`). transformers
  builds its attention mask only for "paged|sdpa" and "paged|eager"
  (`continuous_batching/utils.attn_mask_is_needed`), so for the fallback
  the same mask (`utils.build_attention_mask`'s block-diagonal causal mask,
  with the sliding window where the layer has one) is built here on the
  device, once a step.

Soft-capped logits and attention sinks are not mapped yet (they are
`decode()` variants, but transformers' SDPA fallback has neither): such
models raise. `stats()` counts the calls each path took.
"""

import os

SUPPORTED = ((5, 17, 0), (5, 18, 0))  # [first, past the last)
READ_AGAINST = "5.17.0"
ANY_VERSION_ENV = "PAGED_ATTN_TRANSFORMERS_ANY_VERSION"
DEFAULT_NAME = "paged_attn"

__all__ = ["register", "stats", "reset_stats", "kernel_config",
           "kernel_config_of", "check_version", "SUPPORTED",
           "UnsupportedVersion"]


class UnsupportedVersion(RuntimeError):
    """transformers is outside the versions this integration was read
    against."""


# ---------------------------------------------------------------------------
# Pure argument mapping (no torch, no transformers): tested on the CPU.
# ---------------------------------------------------------------------------


def parse_version(text):
    """(major, minor, patch) of a version string such as "5.17.0",
    "5.17.0.dev0" or "5.18.0rc1" (missing parts are 0); ValueError if it does
    not start with a number."""
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(parts + [0] * (3 - len(parts)))


def check_version(text, environ=None):
    """Raises UnsupportedVersion unless transformers `text` is in
    SUPPORTED, or $PAGED_ATTN_TRANSFORMERS_ANY_VERSION is 1."""
    environ = os.environ if environ is None else environ
    if environ.get(ANY_VERSION_ENV) == "1":
        return
    lo, hi = SUPPORTED
    version = parse_version(text)
    if not lo <= version < hi:
        raise UnsupportedVersion(
            f"paged_attn.integrations.transformers supports transformers "
            f">={'.'.join(map(str, lo))},<{'.'.join(map(str, hi))} (read "
            f"against {READ_AGAINST}); found {text}. Its continuous-batching "
            f"internals (cache layout, attention kwargs, the decode fast "
            f"path) change between releases. Set {ANY_VERSION_ENV}=1 to try "
            f"anyway.")


def implementation_key(name):
    """The AttentionInterface key of `name`: "paged|" + name. Names that
    transformers would read as something else are refused: "flash" in a
    name means flash attention to it, and "/" or ":" a hub kernel."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    base = name[len("paged|"):] if name.startswith("paged|") else name
    if not base or any(c in base for c in "|/:") or "flash" in base:
        raise ValueError(
            f"name {name!r}: use letters, digits and underscores (no '|', "
            f"'/', ':'; transformers reads 'flash' in a name as flash "
            f"attention)")
    return "paged|" + base


def step_kind(num_q_tokens, num_sequences, max_seqlen_q, has_block_table):
    """"decode" when every sequence of the step has exactly one query token,
    else "varlen" (prefill, chunked prefill, mixed steps, padded steps).

    With transformers' block table (its decode fast path) the step is a
    decode step by construction (query tokens may be padded there, as
    sequences of zero keys); otherwise `max_seqlen_q` (a host int) is 1 and
    there are as many query tokens as sequences."""
    if has_block_table:
        return "decode"
    if (num_sequences > 0 and num_q_tokens == num_sequences
            and max_seqlen_q == 1):
        return "decode"
    return "varlen"


def layer_type(sliding_window):
    """transformers' layer type for `cache.sliding_windows[layer]` (1: full
    attention)."""
    return ("full_attention" if sliding_window in (None, 1)
            else "sliding_attention")


def pick(value, kind):
    """`value`, or its `kind` entry when transformers passes a dict by layer
    type (hybrid models)."""
    return value[kind] if isinstance(value, dict) else value


def pages_for(max_seqlen_k, block_size):
    """Pages (transformers' blocks) a block table needs for `max_seqlen_k`
    keys: at least 1."""
    return max(1, -(-int(max_seqlen_k) // int(block_size)))


_DTYPES = {"bfloat16": "bf16", "float16": "f16", "float32": "f32",
           "bf16": "bf16", "f16": "f16", "f32": "f32"}


def kernel_config(num_heads, num_kv_heads, head_dim, block_size,
                  dtype="bf16"):
    """The decode config PagedAttn runs for a model: transformers' block is
    its page, its cache is "nhd"."""
    dtype = _DTYPES.get(str(dtype).replace("torch.", ""), dtype)
    return {"num_heads": int(num_heads), "num_kv_heads": int(num_kv_heads),
            "head_dim": int(head_dim), "page_size": int(block_size),
            "dtype": dtype, "layout": "nhd"}


def kernel_config_of(config, block_size=256, dtype="bf16"):
    """kernel_config of a transformers model config (an object or a dict
    with num_attention_heads, num_key_value_heads, head_dim or hidden_size),
    as transformers' cache reads it (cache.find_num_kv_heads, find_head_dim)."""
    get = (config.get if isinstance(config, dict)
           else lambda k, d=None: getattr(config, k, d))
    hq = get("num_attention_heads")
    hkv = get("num_key_value_heads") or hq
    d = get("head_dim") or get("hidden_size") // hq
    return kernel_config(hq, hkv, d, block_size, dtype)


def block_table_from_read_index_ref(read_index, cu_seq_lens_k, block_size,
                                    max_pages):
    """Reference (lists) of the block table derived from a full-attention
    group's read index: row b, column j is the page holding key j *
    block_size of sequence b, 0 past its keys."""
    table = []
    for b in range(len(cu_seq_lens_k) - 1):
        start, end = cu_seq_lens_k[b], cu_seq_lens_k[b + 1]
        row = []
        for j in range(max_pages):
            i = start + j * block_size
            row.append(read_index[i] // block_size if i < end else 0)
        table.append(row)
    return table


def new_token_slots_ref(block_table, seq_lens, block_size, trash_index):
    """Reference (lists) of the cache rows a decode step's new keys go to on
    transformers' fast path: the last of each sequence's seq_lens keys, or
    the write trash for a padding sequence (no keys)."""
    slots = []
    for row, n in zip(block_table, seq_lens):
        if n <= 0:
            slots.append(trash_index)
            continue
        p = n - 1
        slots.append(row[p // block_size] * block_size + p % block_size)
    return slots


def varlen_mask_ref(cu_seq_lens_q, cu_seq_lens_k, num_q, num_k,
                    sliding_window=1):
    """Reference (lists of bools, True = attended) of the mask transformers'
    `build_attention_mask` gives a packed step: query token i of sequence s
    attends key j of the same sequence when j <= i + max(Lk - Lq, 0) (and,
    with a window W > 1, j > i + Lk - Lq - W), i and j counted from the
    sequence's first query and key."""
    allowed = [[False] * num_k for _ in range(num_q)]
    for s in range(len(cu_seq_lens_q) - 1):
        q0, q1 = cu_seq_lens_q[s], cu_seq_lens_q[s + 1]
        k0, k1 = cu_seq_lens_k[s], cu_seq_lens_k[s + 1]
        lq, lk = q1 - q0, k1 - k0
        for i in range(lq):
            for j in range(lk):
                ok = j <= i + max(lk - lq, 0)
                if sliding_window > 1:
                    ok = ok and j > i + lk - lq - sliding_window
                if q0 + i < num_q and k0 + j < num_k:
                    allowed[q0 + i][k0 + j] = ok
    return allowed


# ---------------------------------------------------------------------------
# The same on torch tensors (any device).
# ---------------------------------------------------------------------------


def block_table_from_read_index(torch, read_index, cu_seq_lens_k, batch,
                                block_size, max_pages):
    """int32 [batch, max_pages] block table and int32 [batch] seq_lens from a
    full-attention group's read index (int64 [N]) and cu_seq_lens_k (int32
    [>= batch + 1]), on their device without a host sync."""
    cu = cu_seq_lens_k[:batch + 1].to(torch.int64)
    starts, ends = cu[:-1], cu[1:]
    offsets = torch.arange(max_pages, device=cu.device,
                           dtype=torch.int64) * block_size
    idx = starts[:, None] + offsets[None, :]
    valid = idx < ends[:, None]
    idx = idx.clamp(max=max(read_index.shape[0] - 1, 0))
    pages = torch.div(read_index[idx], block_size, rounding_mode="floor")
    table = torch.where(valid, pages, torch.zeros_like(pages))
    seq_lens = (ends - starts).to(torch.int32)
    return table.to(torch.int32), seq_lens


def new_token_slots(torch, block_table, seq_lens, block_size, trash_index):
    """int64 [batch] cache rows of a fast-path decode step's new keys (see
    new_token_slots_ref)."""
    pos = seq_lens.to(torch.int64) - 1
    safe = pos.clamp(min=0)
    col = torch.div(safe, block_size, rounding_mode="floor")
    page = block_table.gather(1, col[:, None]).squeeze(1).to(torch.int64)
    slot = page * block_size + safe % block_size
    trash = torch.full_like(slot, int(trash_index))
    return torch.where(pos >= 0, slot, trash)


def varlen_mask(torch, cu_seq_lens_q, cu_seq_lens_k, num_q, num_k,
                sliding_window, dtype):
    """[1, 1, num_q, num_k] additive mask of dtype (0 attended, the dtype's
    minimum elsewhere), as transformers' build_attention_mask fills it (see
    varlen_mask_ref)."""
    device = cu_seq_lens_q.device
    cq = cu_seq_lens_q.to(torch.int64)
    ck = cu_seq_lens_k.to(torch.int64)
    nseq = cq.shape[0] - 1
    qi = torch.arange(num_q, device=device, dtype=torch.int64)
    kj = torch.arange(num_k, device=device, dtype=torch.int64)
    sq = torch.searchsorted(cq[1:].contiguous(), qi, right=True)
    sk = torch.searchsorted(ck[1:].contiguous(), kj, right=True)
    valid_q = sq < nseq
    valid_k = sk < nseq
    sq, sk = sq.clamp(max=max(nseq - 1, 0)), sk.clamp(max=max(nseq - 1, 0))
    lq = cq[1:] - cq[:-1]
    lk = ck[1:] - ck[:-1]
    i = qi - cq[sq]
    j = kj - ck[sk]
    diff = (lk - lq)[sq]
    allowed = (sq[:, None] == sk[None, :]) & (
        j[None, :] <= (i + diff.clamp(min=0))[:, None])
    if sliding_window is not None and sliding_window > 1:
        allowed &= j[None, :] > (i + diff - sliding_window)[:, None]
    allowed &= valid_q[:, None] & valid_k[None, :]
    zero = torch.zeros((), dtype=dtype, device=device)
    low = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=device)
    return torch.where(allowed, zero, low)[None, None]


# ---------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------


class Stats:
    """Calls (one per layer per step) by path, and, for implementations
    registered with compare_with_fallback, the largest difference between
    PagedAttn's decode and transformers' SDPA on the same call."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.decode_block_table = 0
        self.decode_read_index = 0
        self.fallback = {}
        self.compared = 0
        self.max_abs_diff = 0.0
        self.max_abs_ref = 0.0

    def as_dict(self):
        return {"decode_block_table": self.decode_block_table,
                "decode_read_index": self.decode_read_index,
                "fallback": dict(self.fallback),
                "compared": self.compared,
                "max_abs_diff": self.max_abs_diff,
                "max_abs_ref": self.max_abs_ref}


_STATS = Stats()


def stats():
    """The counters since the last reset_stats(), as a dict."""
    return _STATS.as_dict()


def reset_stats():
    _STATS.reset()


# ---------------------------------------------------------------------------
# The attention function
# ---------------------------------------------------------------------------


class _StepMemo:
    """What every layer of a step shares (block table, seq_lens, new-token
    rows, the fallback's mask), computed by the first layer. transformers
    hands each step new slices of its static tensors (get_model_kwargs), so
    a result is reused only while the very tensor objects it came from come
    back (compared with `is`; holding them keeps their ids from being
    reused)."""

    def __init__(self):
        self._entries = {}

    def get(self, kind, sources, make):
        entry = self._entries.get(kind)
        if entry is not None and len(entry[0]) == len(sources) and all(
                a is b for a, b in zip(entry[0], sources)):
            return entry[1]
        value = make()
        self._entries[kind] = (tuple(sources), value)
        return value


_MEMO = _StepMemo()


def _refusal(module, query, key, value, dropout, window, cache, kwargs):
    """Why PagedAttn cannot run this layer's decode, or None."""
    if window not in (None, 1):
        return "sliding-window layer"
    if dropout:
        return "dropout"
    if query.device.type != "cuda":
        return "not on a CUDA device"
    if value.shape[-1] != query.shape[-1]:
        return "value head_dim differs from query head_dim"
    if query.shape[-1] != cache.head_dim or query.dtype != cache.dtype:
        return "query head_dim or dtype differs from the cache's"
    return None


def _unsupported_variant(module, kwargs):
    if kwargs.get("softcap") is not None:
        return "soft-capped attention logits"
    if getattr(module, "sinks", None) is not None or "s_aux" in kwargs:
        return "attention sinks"
    return None


def _fallback(torch, module, query, key, value, attention_mask, dropout,
              scaling, group, window, kwargs):
    """transformers' own paged SDPA, with the mask it would have built."""
    from transformers.integrations.sdpa_paged import (
        sdpa_attention_paged_forward)
    kind = layer_type(window)
    if attention_mask is None:
        cu_q = kwargs["cu_seq_lens_q"]
        cu_k = pick(kwargs["cu_seq_lens_k"], kind)
        read_index = kwargs["read_index"][group]
        num_q = query.shape[2]
        num_k = read_index.shape[0] if read_index.numel() else num_q
        attention_mask = _MEMO.get(
            f"mask_{kind}{group}", (cu_q, cu_k, read_index),
            lambda: varlen_mask(torch, cu_q, cu_k, num_q, num_k, window,
                                query.dtype))
    elif isinstance(attention_mask, dict):
        attention_mask = attention_mask[kind]
    return sdpa_attention_paged_forward(module, query, key, value,
                                        attention_mask, dropout=dropout,
                                        scaling=scaling, **kwargs)


def _make_attention(key_name, compare):
    import torch

    import paged_attn

    def paged_attn_attention(module, query, key, value, attention_mask,
                             dropout=0.0, scaling=None, **kwargs):
        cache = kwargs.get("cache")
        if cache is None:
            raise ValueError(
                f"`{key_name}` was called without a paged attention cache: it "
                f"serves continuous batching (generate_batch); use the "
                f"implementation without the 'paged|' prefix for a standard "
                f"forward")
        variant = _unsupported_variant(module, kwargs)
        if variant is not None:
            raise NotImplementedError(
                f"`{key_name}`: {variant} are not mapped to PagedAttn yet; "
                f"use paged|sdpa or paged|eager for this model")
        group, in_group = cache.layer_index_to_group_indices[module.layer_idx]
        window = cache.sliding_windows[module.layer_idx]
        block_table = kwargs.get("block_table")
        cu_q = kwargs["cu_seq_lens_q"]
        batch = cu_q.shape[0] - 1
        num_q = query.shape[2]
        kind = step_kind(num_q, batch, kwargs.get("max_seqlen_q"),
                         block_table is not None)
        reason = (_refusal(module, query, key, value, dropout, window, cache,
                           kwargs) if kind == "decode" else "prefill or mixed")
        if reason is not None:
            if block_table is not None:
                raise RuntimeError(
                    f"`{key_name}` cannot serve this decode step ({reason}) "
                    f"and transformers' decode fast path gives no read "
                    f"indices to fall back with: register it with "
                    f"decode_fast_path=False")
            _STATS.fallback[reason] = _STATS.fallback.get(reason, 0) + 1
            return _fallback(torch, module, query, key, value,
                             attention_mask, dropout, scaling, group, window,
                             kwargs)

        page = cache.block_size
        k_rows = cache.key_cache[in_group]
        v_rows = cache.value_cache[in_group]
        k_cache = k_rows.view(-1, page, cache.num_key_value_heads,
                              cache.head_dim)
        v_cache = v_rows.view(-1, page, cache.num_key_value_heads,
                              cache.head_dim)
        new_k = key[0].transpose(0, 1)  # [T, Hkv, D], as cache.update writes
        new_v = value[0].transpose(0, 1)
        cu_k = pick(kwargs["cu_seq_lens_k"], "full_attention")
        if block_table is not None:
            def fast():
                table = block_table[group]
                seq_lens = (cu_k[1:batch + 1] - cu_k[:batch]).to(torch.int32)
                slots = new_token_slots(torch, table, seq_lens, page,
                                        cache.write_trash_index)
                return table, seq_lens, slots
            table, seq_lens, slots = _MEMO.get(f"fast{group}",
                                               (block_table, cu_k), fast)
            k_rows.index_copy_(0, slots, new_k)
            v_rows.index_copy_(0, slots, new_v)
            _STATS.decode_block_table += 1
        else:
            read_index = kwargs["read_index"][group]
            write_index = kwargs["write_index"][group]
            max_pages = pages_for(
                pick(kwargs["max_seqlen_k"], "full_attention"), page)
            table, seq_lens = _MEMO.get(
                f"index{group}", (read_index, cu_k),
                lambda: block_table_from_read_index(
                    torch, read_index, cu_k, batch, page, max_pages))
            k_rows.index_copy_(0, write_index, new_k)
            v_rows.index_copy_(0, write_index, new_v)
            _STATS.decode_read_index += 1
        q = query[0].transpose(0, 1).contiguous()  # [B, Hq, D]
        out = torch.empty_like(q)
        paged_attn.decode(q, k_cache, v_cache, table, seq_lens,
                          scale=module.scaling if scaling is None else scaling,
                          out=out)
        if compare and block_table is None:
            ref, _ = _fallback(torch, module, query, key, value, None,
                               dropout, scaling, group, window, kwargs)
            ref = ref[0].float()
            diff = (out.float() - ref).abs().max().item()
            _STATS.compared += 1
            _STATS.max_abs_diff = max(_STATS.max_abs_diff, diff)
            _STATS.max_abs_ref = max(_STATS.max_abs_ref,
                                     ref.abs().max().item())
        return out.unsqueeze(0), None

    paged_attn_attention.__name__ = "paged_attn_" + key_name.split("|")[-1]
    return paged_attn_attention


def _plain_attention(module, query, key, value, attention_mask, **kwargs):
    """The name without 'paged|' (a standard forward: generate(), a
    training step): transformers' SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    return sdpa_attention_forward(module, query, key, value, attention_mask,
                                  **kwargs)


# ---------------------------------------------------------------------------
# transformers' decode fast path for registered names
# ---------------------------------------------------------------------------

_FAST_PATH_KEYS = set()


def _install_fast_path():
    """Wraps initialization.ensure_decode_fast_path_is_available (which
    keeps transformers' block table for flash attention only) so that it
    keeps it for the names in _FAST_PATH_KEYS too. Idempotent."""
    import torch
    from transformers.generation.continuous_batching import initialization
    current = initialization.ensure_decode_fast_path_is_available
    if getattr(current, "_paged_attn_wrapper", False):
        return
    original = current

    def ensure_decode_fast_path_is_available(config, cb_config,
                                             user_requested):
        if (getattr(config, "_attn_implementation", None) in _FAST_PATH_KEYS
                and cb_config.max_blocks_per_request != 0
                and torch.cuda.is_available()):
            return None
        return original(config, cb_config, user_requested)

    ensure_decode_fast_path_is_available._paged_attn_wrapper = True
    ensure_decode_fast_path_is_available.__wrapped__ = original
    initialization.ensure_decode_fast_path_is_available = (
        ensure_decode_fast_path_is_available)


def register(name=DEFAULT_NAME, *, decode_fast_path=True,
             compare_with_fallback=False):
    """Registers PagedAttn with transformers' AttentionInterface and returns
    the implementation's name for continuous batching, "paged|" + name
    (pass it to set_attn_implementation, or as attn_implementation).

    `name` alone is registered too, as transformers' SDPA (with SDPA's
    mask), so that a model created with attn_implementation=name also runs
    standard forwards; generate_batch switches it to "paged|" + name.

    decode_fast_path: let transformers build its block table for this
    implementation (its flash-only decode fast path); decode steps then
    take it as PagedAttn's block table. False: decode steps derive the block
    table from transformers' read index instead.
    compare_with_fallback: (testing) on read-index decode steps, also run
    transformers' SDPA on the same call and record the largest difference
    in stats(); implies nothing about the fast path's steps.
    """
    key_name = implementation_key(name)
    import torch  # noqa: F401  (a clear ImportError before transformers')
    import transformers
    check_version(transformers.__version__)
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface
    base = key_name[len("paged|"):]
    AttentionInterface.register(key_name,
                                _make_attention(key_name,
                                                compare_with_fallback))
    AttentionInterface.register(base, _plain_attention)
    AttentionMaskInterface.register(base, sdpa_mask)
    if decode_fast_path:
        _install_fast_path()
        _FAST_PATH_KEYS.add(key_name)
    else:
        _FAST_PATH_KEYS.discard(key_name)
    return key_name
