"""Models, runs and measurements shared by the transformers integration's GPU
test (python/tests/test_transformers_gpu.py), its example
(examples/transformers_generate.py) and its benchmark
(bench/bench_transformers.py). Needs torch and transformers (imported on
use); nothing here downloads anything: the models are random, seeded, built
from configs.
"""

import contextlib
import math
import random
import time

from . import transformers as integration

# The models: attention shapes of real ones (Llama 3 8B, Qwen2 7B, and an MHA
# model with head_dim 64), few layers. block_size is transformers' cache
# block, PagedAttn's page.
MODELS = {
    "llama": {
        "arch": "llama", "vocab_size": 32000, "hidden_size": 4096,
        "intermediate_size": 4096, "num_hidden_layers": 4,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "block_size": 256,
    },
    "qwen2": {
        "arch": "qwen2", "vocab_size": 16384, "hidden_size": 3584,
        "intermediate_size": 4096, "num_hidden_layers": 3,
        "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 128,
        "block_size": 256,
    },
    "qwen3-mha-d64": {
        "arch": "qwen3", "vocab_size": 8192, "hidden_size": 1024,
        "intermediate_size": 2048, "num_hidden_layers": 4,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 64,
        "block_size": 64,
    },
}

DTYPE = "bf16"


def kernel_configs(names=None):
    """The decode configs the models need (bench/compile-kernels.sh
    --transformers compiles these)."""
    names = list(MODELS) if names is None else names
    seen, out = set(), []
    for name in names:
        spec = MODELS[name]
        c = integration.kernel_config(
            spec["num_attention_heads"], spec["num_key_value_heads"],
            spec["head_dim"], spec["block_size"], DTYPE)
        key = tuple(sorted(c.items()))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def build_model(name, seed=0, initializer_range=0.02, device="cuda"):
    """A random model of MODELS[name] in bf16 on `device`, weights from
    torch.manual_seed(seed), attention "paged|sdpa"."""
    import torch
    import transformers as tf

    spec = dict(MODELS[name])
    arch = spec.pop("arch")
    spec.pop("block_size")
    if arch == "qwen2":  # Qwen2Config has no head_dim: hidden / heads
        assert spec.pop("head_dim") == (spec["hidden_size"]
                                        // spec["num_attention_heads"])
    cls_config, cls_model = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM),
    }[arch]
    config = cls_config(**spec, max_position_embeddings=16384,
                        initializer_range=initializer_range,
                        tie_word_embeddings=False, bos_token_id=None,
                        eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls_model(config)
    model = model.to(dtype=torch.bfloat16).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    model.set_attn_implementation("paged|sdpa")
    return model


def random_prompts(count, min_len, max_len, vocab_size, seed=0):
    """`count` prompts of random token ids, lengths uniform in [min_len,
    max_len] (the first and last of them exactly min_len and max_len)."""
    rng = random.Random(seed)
    lens = [rng.randint(min_len, max_len) for _ in range(count)]
    if count >= 2:
        lens[0], lens[-1] = min_len, max_len
    return [[rng.randrange(vocab_size) for _ in range(n)] for n in lens]


def cb_config(block_size, num_blocks, max_batch_tokens):
    """A ContinuousBatchingConfig with sizes fixed (no memory inference),
    no prefix sharing, no CUDA graphs, synchronous batching: the same
    batches whatever the attention implementation."""
    from transformers import ContinuousBatchingConfig
    return ContinuousBatchingConfig(
        block_size=block_size, num_blocks=num_blocks,
        max_batch_tokens=max_batch_tokens, allow_block_sharing=False,
        use_cuda_graph=False, use_async_batching=False)


def cache_blocks(needed):
    """Blocks for a cache that holds `needed` with room to spare: the FIFO
    scheduler admits one new prefill a step once fewer than 15% of the
    blocks are free."""
    return -(-needed * 4 // 3) + 16


def generate(model, prompts, max_new_tokens, attn_implementation, config,
             timeout=600):
    """Greedy continuous batching of `prompts` with `attn_implementation`:
    the list of GenerationOutput in prompt order (None where one is
    missing). Every request is queued before the manager starts, so that
    its first batch has them all and the batches do not depend on timing
    (generate_batch starts the manager first)."""
    from transformers import GenerationConfig
    from transformers.generation.continuous_batching.utils import (
        WorkloadHints)
    model.set_attn_implementation(attn_implementation)
    gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False)
    hints = WorkloadHints(max_prompt_length=max(len(p) for p in prompts),
                          max_generated_length=max_new_tokens,
                          num_requests=len(prompts))
    manager = model.init_continuous_batching(
        generation_config=gen, continuous_batching_config=config,
        workload_hints=hints)
    ids = manager.add_requests(prompts, max_new_tokens=max_new_tokens)
    results = {}
    deadline = time.monotonic() + timeout
    manager.start()
    try:
        while len(results) < len(ids) and time.monotonic() < deadline:
            r = manager.get_result(timeout=1)
            if r is None:
                if not manager.is_running():
                    break
                continue
            if r.is_finished():
                results[r.request_id] = r
    finally:
        manager.stop(block=True, timeout=60)
        manager.destroy()
    return [results.get(i) for i in ids]


def first_divergence(a, b):
    """Index of the first differing token of two token lists, or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def next_token_logits(model, tokens):
    """float32 logits of the token after `tokens`, from a standard forward
    (transformers' SDPA, no paged cache) of the same model."""
    import torch
    previous = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    try:
        with torch.no_grad():
            ids = torch.tensor([tokens], device=model.device)
            return model(input_ids=ids).logits[0, -1].float()
    finally:
        model.set_attn_implementation(previous)


# The tolerance of a divergence: the two tokens' logits under the reference
# forward differ by at most TIE_TOLERANCE standard deviations of that
# position's logits (a near-tie that bf16 rounding of attention can flip);
# a wrong attention result picks a token far down the distribution.
TIE_TOLERANCE = 0.1


def compare_tokens(model, prompts, ref, other):
    """Per sequence: the first divergence of `other` from `ref` (None if
    none) and, where there is one, both tokens' reference logits there. A
    dict: diverged, positions, ties (list of dicts), worst (the largest
    gap in standard deviations)."""
    rows, worst = [], 0.0
    for i, (p, r, o) in enumerate(zip(prompts, ref, other)):
        t = first_divergence(r.generated_tokens, o.generated_tokens)
        if t is None:
            continue
        if t >= min(len(r.generated_tokens), len(o.generated_tokens)):
            rows.append({"sequence": i, "position": t, "length_differs": True,
                         "gap_std": math.inf})
            worst = math.inf
            continue
        logits = next_token_logits(model, p + r.generated_tokens[:t])
        a, b = r.generated_tokens[t], o.generated_tokens[t]
        std = logits.std().item()
        gap = abs(logits[a].item() - logits[b].item())
        top = logits.max().item()
        rows.append({"sequence": i, "prompt_len": len(p), "position": t,
                     "ref_token": a, "other_token": b,
                     "ref_logit": logits[a].item(),
                     "other_logit": logits[b].item(), "top_logit": top,
                     "logit_std": std, "gap_std": gap / std})
        worst = max(worst, gap / std)
    return {"sequences": len(prompts), "diverged": len(rows),
            "positions": [r["position"] for r in rows], "rows": rows,
            "worst_gap_std": worst}


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


class StepLog:
    """Per generation step: wall time from preparing the batch to updating
    the requests, sequences in the batch, whether it was a decode step
    (every sequence one query token), and the attention calls' GPU time
    (CUDA events around each layer's attention function)."""

    def __init__(self):
        self.steps = []  # [seconds, sequences, is_decode]
        self._events = []  # (step index, start, end)
        self._t0 = None

    def attention_ms(self):
        """Summed attention GPU time of each step, in ms (synchronizes)."""
        import torch
        torch.cuda.synchronize()
        per = [0.0] * len(self.steps)
        for step, start, end in self._events:
            if step < len(per):
                per[step] += start.elapsed_time(end)
        return per

    def summary(self, layers):
        att = self.attention_ms()
        dec = [(s, n, a) for (s, n, d), a in zip(self.steps, att) if d]
        if not dec:
            return {"decode_steps": 0}
        secs = sum(s for s, _, _ in dec)
        toks = sum(n for _, n, _ in dec)
        return {"decode_steps": len(dec), "decode_tokens": toks,
                "decode_seconds": secs, "decode_tokens_per_s": toks / secs,
                "step_ms_median": 1e3 * sorted(s for s, _, _ in dec)[
                    len(dec) // 2],
                "attention_ms_per_step_median": sorted(
                    a for _, _, a in dec)[len(dec) // 2],
                "attention_ms_per_layer_median": sorted(
                    a for _, _, a in dec)[len(dec) // 2] / layers,
                "steps": len(self.steps)}


@contextlib.contextmanager
def measure_steps(attn_keys):
    """Times continuous batching's steps (ContinuousBatchProcessor) and the
    attention functions registered under `attn_keys`; yields a StepLog.
    Everything patched is restored on exit."""
    import torch
    from transformers.generation.continuous_batching import continuous_api
    from transformers.modeling_utils import AttentionInterface
    proc = continuous_api.ContinuousBatchProcessor
    log = StepLog()
    originals = {"prepare_next_batch": proc.prepare_next_batch,
                 "update_batch": proc.update_batch}
    fns = {k: AttentionInterface._global_mapping[k] for k in attn_keys}

    def prepare_next_batch(self):
        log._t0 = time.perf_counter()
        return originals["prepare_next_batch"](self)

    def update_batch(self):
        result = originals["update_batch"](self)
        io = self.inputs_and_outputs
        decode = bool(io.use_block_table) or (
            io.max_seqlen_q == 1 and io.num_q_tokens == io.num_request_in_batch)
        log.steps.append([time.perf_counter() - log._t0,
                          io.num_request_in_batch, decode])
        return result

    def timed(fn):
        def attention(*args, **kwargs):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(*args, **kwargs)
            end.record()
            log._events.append((len(log.steps), start, end))
            return out
        return attention

    proc.prepare_next_batch = prepare_next_batch
    proc.update_batch = update_batch
    for k, fn in fns.items():
        AttentionInterface._global_mapping[k] = timed(fn)
    try:
        yield log
    finally:
        proc.prepare_next_batch = originals["prepare_next_batch"]
        proc.update_batch = originals["update_batch"]
        for k, fn in fns.items():
            AttentionInterface._global_mapping[k] = fn


class StubCache:
    """What the attention functions read of transformers' PagedAttentionCache
    for one full-attention layer: its key/value tensors in transformers'
    layout, and its update() (transformers' own, unbound)."""

    def __init__(self, num_blocks, block_size, kv_heads, head_dim, dtype,
                 device="cuda"):
        import torch
        from transformers.generation.continuous_batching.cache import (
            PagedAttentionCache)
        self.block_size, self.num_blocks = block_size, num_blocks
        self.num_key_value_heads, self.head_dim = kv_heads, head_dim
        self.dtype = dtype
        shape = ((num_blocks + 2) * block_size, kv_heads, head_dim)
        self.key_cache = [torch.randn(shape, dtype=dtype, device=device)]
        self.value_cache = [torch.randn(shape, dtype=dtype, device=device)]
        self.layer_index_to_group_indices = {0: (0, 0)}
        self.sliding_windows = {0: 1}
        self.read_trash_index = num_blocks * block_size
        self.sentinel_index = num_blocks * block_size + 1
        self.write_trash_index = (num_blocks + 1) * block_size
        self.num_groups = 1
        self._update = PagedAttentionCache.update
        self._block_table_key = None

    def update(self, *args, **kwargs):
        return self._update(self, *args, **kwargs)

    def get_block_table_key(self, fn):
        from transformers.generation.continuous_batching.cache import (
            PagedAttentionCache)
        return PagedAttentionCache.get_block_table_key(self, fn)


class DecodeStep:
    """One decode step's attention arguments as continuous batching builds
    them (input_outputs.ContinuousBatchingIOs.get_model_kwargs) for `batch`
    sequences of `context` keys each (this step's included), pages shuffled
    over the cache: read/write indices, the SDPA mask
    (utils.build_attention_mask) and the fast path's block table."""

    def __init__(self, batch, context, num_heads, kv_heads, head_dim,
                 block_size, dtype, seed=0, device="cuda"):
        import torch
        from transformers.generation.continuous_batching.utils import (
            build_attention_mask)
        g = torch.Generator(device="cpu").manual_seed(seed)
        blocks = -(-context // block_size)
        num_blocks = batch * blocks + 4
        self.cache = StubCache(num_blocks, block_size, kv_heads, head_dim,
                               dtype, device)
        perm = torch.randperm(num_blocks, generator=g)[:batch * blocks]
        table = perm.view(batch, blocks).to(torch.int32)
        t = torch.arange(context)
        rows = (table[:, t // block_size].long() * block_size
                + (t % block_size)[None, :])  # [batch, context]
        self.read_index = rows.reshape(-1).to(device)
        self.write_index = rows[:, -1].contiguous().to(device)
        cu_q = list(range(batch + 1))
        cu_k = [b * context for b in range(batch + 1)]
        self.cu_q = torch.tensor(cu_q, dtype=torch.int32, device=device)
        self.cu_k = torch.tensor(cu_k, dtype=torch.int32, device=device)
        self.block_table = table[None].to(device)  # [groups, batch, blocks]
        mask = torch.full((1, 1, batch, batch * context),
                          torch.finfo(dtype).min, dtype=dtype, device=device)
        build_attention_mask(mask, cu_q, cu_k)
        self.mask = mask
        self.batch, self.context = batch, context
        self.query = torch.randn(1, num_heads, batch, head_dim, dtype=dtype,
                                 device=device)
        self.key = torch.randn(1, kv_heads, batch, head_dim, dtype=dtype,
                               device=device)
        self.value = torch.randn_like(self.key)
        self.module = torch.nn.Module()
        self.module.layer_idx = 0
        self.module.num_key_value_groups = num_heads // kv_heads
        self.module.scaling = head_dim ** -0.5
        self.module.is_causal = True

    def kwargs(self, fast):
        """Fresh kwargs, as each step gets (new slices of the same
        storage)."""
        common = {"cache": self.cache, "cu_seq_lens_q": self.cu_q[:],
                  "cu_seq_lens_k": self.cu_k[:], "max_seqlen_q": 1,
                  "use_cache": False}
        if fast:
            return dict(common, block_table=self.block_table[:],
                        max_seqlen_k=1, read_index=[self.read_index[:0]],
                        write_index=[self.write_index[:0]])
        return dict(common, block_table=None, max_seqlen_k=self.context,
                    read_index=[self.read_index[:]],
                    write_index=[self.write_index[:]])


def time_cuda(fn, warmup=2, iters=5):
    """Median GPU ms of fn() over `iters` runs (CUDA events)."""
    import torch
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


# ---------------------------------------------------------------------------
# The comparison the test and the example run
# ---------------------------------------------------------------------------

# PagedAttn's decode against transformers' SDPA on the same call (the
# compare_with_fallback run): largest |difference| over the largest |SDPA
# output| (at least 1). bf16 outputs round to 2^-8 relative; two orders of
# summation differ by a few of those.
ATTENTION_TOLERANCE = 2e-2


def run_comparison(name, fast_key, index_key=None, num_prompts=32,
                   max_new_tokens=128, min_len=8, max_len=600,
                   max_batch_tokens=1024, seed=1, model=None):
    """Generates with transformers' paged SDPA, then with `fast_key`
    (PagedAttn on transformers' block table) and, if given, `index_key`
    (PagedAttn on the block table derived from the read index, registered
    with compare_with_fallback): a dict of what happened."""
    import torch
    spec = MODELS[name]
    model = build_model(name) if model is None else model
    prompts = random_prompts(num_prompts, min_len, max_len,
                             spec["vocab_size"], seed=seed)
    bs = spec["block_size"]
    num_blocks = cache_blocks(
        sum(-(-(len(p) + max_new_tokens) // bs) for p in prompts))
    runs = {"paged|sdpa": None, fast_key: None}
    if index_key:
        runs[index_key] = None
    summary = {"model": name, "config": {
        k: v for k, v in spec.items()}, "prompts": num_prompts,
        "prompt_lens": [min_len, max_len], "max_new_tokens": max_new_tokens,
        "max_batch_tokens": max_batch_tokens, "num_blocks": num_blocks,
        "kernel_config": kernel_configs([name])[0], "runs": {}}
    for key in runs:
        integration.reset_stats()
        with measure_steps([key]) as log:
            t0 = time.perf_counter()
            out = generate(model, prompts, max_new_tokens, key,
                           cb_config(bs, num_blocks, max_batch_tokens))
            seconds = time.perf_counter() - t0
        runs[key] = out
        done = [o for o in out if o is not None and o.error is None
                and len(o.generated_tokens) == max_new_tokens]
        summary["runs"][key] = {
            "seconds": seconds, "complete": len(done),
            "errors": sorted({str(o.error) for o in out
                              if o is not None and o.error is not None}),
            "stats": integration.stats() if key != "paged|sdpa" else None,
            "steps": log.summary(spec["num_hidden_layers"])}
    ref = runs["paged|sdpa"]
    for key in list(runs)[1:]:
        if all(o is not None for o in ref + runs[key]):
            summary["runs"][key]["vs_sdpa"] = compare_tokens(
                model, prompts, ref, runs[key])
    if index_key and all(o is not None for o in runs[fast_key]
                         + runs[index_key]):
        summary["fast_vs_index"] = compare_tokens(
            model, prompts, runs[fast_key], runs[index_key])
    del model
    torch.cuda.empty_cache()
    return summary


def describe(summary):
    """Lines of text for a run_comparison summary."""
    lines = [f"{summary['model']}: {summary['prompts']} prompts of "
             f"{summary['prompt_lens'][0]}..{summary['prompt_lens'][1]} "
             f"tokens, {summary['max_new_tokens']} new tokens each, greedy; "
             f"kernel {summary['kernel_config']}"]
    for key, r in summary["runs"].items():
        st = r["steps"]
        line = (f"  {key}: {r['complete']}/{summary['prompts']} complete in "
                f"{r['seconds']:.1f} s")
        if st.get("decode_steps"):
            line += (f"; {st['decode_steps']} decode steps, "
                     f"{st['decode_tokens_per_s']:.0f} tok/s, attention "
                     f"{st['attention_ms_per_step_median']:.3f} ms/step")
        lines.append(line)
        if r["errors"]:
            lines.append(f"    errors: {r['errors']}")
        if r["stats"]:
            lines.append(f"    paths: {r['stats']}")
        cmp = r.get("vs_sdpa")
        if cmp:
            lines.append(
                f"    vs paged|sdpa: {cmp['diverged']}/{cmp['sequences']} "
                f"sequences diverge (first divergences at tokens "
                f"{sorted(cmp['positions'])}); worst logit gap there "
                f"{cmp['worst_gap_std']:.4f} std (tolerance "
                f"{TIE_TOLERANCE})")
    cmp = summary.get("fast_vs_index")
    if cmp:
        lines.append(f"  block table vs read index: {cmp['diverged']}/"
                     f"{cmp['sequences']} diverge, worst gap "
                     f"{cmp['worst_gap_std']:.4f} std")
    return lines
