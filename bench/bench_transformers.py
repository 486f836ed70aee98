#!/usr/bin/env python3
"""PagedAttn in transformers' continuous batching against transformers'
own paged attention paths, on the Llama model of
paged_attn.integrations.transformers_testing (32/8 heads, head_dim 128,
4 layers, bf16, block 256).

Two parts, both into --out (default bench/results/<card>-<date>/transformers):

1. step: one decode step's attention as continuous batching calls it, at
   batch 32 and 128 with 2k, 4k and 8k keys a sequence (the arguments
   built as transformers builds them: read/write indices, its SDPA mask,
   its block table; a cache of random K/V with shuffled blocks): GPU ms of
   a step's 4 attention calls (new K/V written, attention computed) for
   paged|sdpa (its cache.update gather, repeat_kv, SDPA with the mask),
   PagedAttn on transformers' block table, PagedAttn on the block table
   derived from the read index, paged_attn.decode alone, and
   paged|flash_attention_2 (flash_attn_with_kvcache) where flash-attn is
   installed.
2. generate: generate_batch-style runs (the requests queued, then served):
   decode tokens/s (sequences of the decode steps over their wall time,
   from preparing the batch to updating the requests) and the attention's
   GPU ms a decode step, per implementation. Each run prefills its prompts
   through transformers' paged SDPA (packed, with a [tokens, keys] mask:
   its cost grows with batch x context x keys read in the step), which
   bounds the sizes here: batch 32 and 128 at 2k, batch 32 at 8k (batch 128
   at 8k prefills for minutes). Runs past --budget seconds are skipped and
   listed as such.
"""
import argparse
import datetime
import json
import os
import sys
import time


def card_slug(torch):
    name = torch.cuda.get_device_name().lower()
    for junk in ("nvidia ", "nvidia-"):
        name = name.replace(junk, "")
    return "nvidia-" + "-".join(name.replace("_", " ").split()[:1])


def step_part(torch, pt, tt, keys, layers, batches, contexts, flash):
    from transformers.integrations.sdpa_paged import (
        sdpa_attention_paged_forward)
    from transformers.modeling_utils import AttentionInterface
    import paged_attn
    spec = tt.MODELS["llama"]
    hq, hkv, d, bs = (spec["num_attention_heads"], spec["num_key_value_heads"],
                      spec["head_dim"], spec["block_size"])
    ours_fast = AttentionInterface._global_mapping[keys[0]]
    ours_index = AttentionInterface._global_mapping[keys[1]]
    rows = []
    for batch in batches:
        for ctx in contexts:
            step = tt.DecodeStep(batch, ctx, hq, hkv, d, bs, torch.bfloat16)
            m, q, k, v = step.module, step.query, step.key, step.value

            def run(fn, fast):
                def go():
                    kw = step.kwargs(fast)
                    for _ in range(layers):
                        fn(m, q, k, v, None, scaling=m.scaling, **kw)
                return go

            def sdpa():
                kw = step.kwargs(False)
                for _ in range(layers):
                    sdpa_attention_paged_forward(m, q, k, v, step.mask,
                                                 scaling=m.scaling, **kw)
            table = step.block_table[0]
            seq_lens = torch.full((batch,), ctx, dtype=torch.int32,
                                  device="cuda")
            kc = step.cache.key_cache[0].view(-1, bs, hkv, d)
            vc = step.cache.value_cache[0].view(-1, bs, hkv, d)
            qd = q[0].transpose(0, 1).contiguous()
            out = torch.empty_like(qd)

            def op():
                for _ in range(layers):
                    paged_attn.decode(qd, kc, vc, table, seq_lens, out=out)
            impls = {"paged|sdpa": sdpa,
                     "paged_attn (block table)": run(ours_fast, True),
                     "paged_attn (read index)": run(ours_index, False),
                     "paged_attn.decode alone": op}
            if flash:
                fa = AttentionInterface._global_mapping[
                    "paged|flash_attention_2"]
                m.config = type("C", (), {
                    "_attn_implementation": "paged|flash_attention_2"})()
                impls["paged|flash_attention_2"] = run(fa, True)
            row = {"batch": batch, "context": ctx, "layers": layers}
            for name, fn in impls.items():
                try:
                    row[name] = tt.time_cuda(fn)
                except Exception as e:  # noqa: BLE001 - recorded
                    row[name] = f"error: {type(e).__name__}: {e}"[:300]
            rows.append(row)
            print(json.dumps(row), flush=True)
            step = impls = None  # noqa: F841 - frees the cache first
            torch.cuda.empty_cache()
    return rows


def generate_part(torch, pt, tt, keys, configs, new_tokens, budget, start):
    spec = tt.MODELS["llama"]
    bs = spec["block_size"]
    model = tt.build_model("llama")
    rows = []
    for batch, ctx in configs:
        # Decodes start while later prompts still prefill (8192 tokens a
        # step): generate long enough that every sequence then decodes
        # together for `new_tokens` steps.
        prefill_steps = -(-batch * ctx // 8192)
        max_new = prefill_steps + new_tokens
        prompts = tt.random_prompts(batch, ctx, ctx, spec["vocab_size"],
                                    seed=batch + ctx)
        num_blocks = tt.cache_blocks(batch * (-(-(ctx + max_new) // bs)))
        for key in keys:
            row = {"batch": batch, "context": ctx, "impl": key,
                   "max_new_tokens": max_new}
            if time.monotonic() - start > budget:
                row["skipped"] = f"past the {budget} s budget"
                rows.append(row)
                print(json.dumps(row), flush=True)
                continue
            pt.reset_stats()
            try:
                with tt.measure_steps([key]) as log:
                    t0 = time.perf_counter()
                    out = tt.generate(model, prompts, max_new, key,
                                      tt.cb_config(bs, num_blocks, 8192))
                    row["seconds"] = time.perf_counter() - t0
                row["complete"] = sum(
                    1 for o in out if o is not None and o.error is None
                    and len(o.generated_tokens) == max_new)
                row.update(log.summary(spec["num_hidden_layers"]))
                full = [(s, n) for s, n, dec in log.steps
                        if dec and n == batch]
                if full:
                    row["full_batch_decode_steps"] = len(full)
                    row["full_batch_tokens_per_s"] = (
                        sum(n for _, n in full) / sum(s for s, _ in full))
                if key != "paged|sdpa":
                    row["paths"] = pt.stats()
            except Exception as e:  # noqa: BLE001 - recorded
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    return rows


def table(step_rows, gen_rows):
    lines = ["## One decode step's attention (4 layers), GPU ms", ""]
    if step_rows:
        impls = [k for k in step_rows[0]
                 if k not in ("batch", "context", "layers")]
        lines.append("| batch | keys/seq | " + " | ".join(impls) + " |")
        lines.append("|---|---|" + "---|" * len(impls))
        for r in step_rows:
            cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                     for k in impls]
            lines.append(f"| {r['batch']} | {r['context']} | "
                         + " | ".join(cells) + " |")
    lines += ["", "## Continuous batching decode steps", "",
              "| batch | prompt | impl | decode tok/s (full batch) | "
              "attention ms/step | step ms | run s |", "|---|---|---|---|---|"
              "---|---|"]
    for r in gen_rows:
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['batch']} | {r['context']} | {r['impl']} | "
                         f"{r.get('skipped') or r.get('error')} | | | |")
            continue
        tps = r.get("full_batch_tokens_per_s", r.get("decode_tokens_per_s"))
        lines.append(
            f"| {r['batch']} | {r['context']} | {r['impl']} | "
            f"{tps:.0f} | {r.get('attention_ms_per_step_median', 0):.3f} | "
            f"{r.get('step_ms_median', 0):.2f} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--contexts", default="2048,4096,8192")
    ap.add_argument("--generate", default="32x2048,128x2048,32x8192",
                    help="batch x prompt length of the generate runs ('' "
                         "for none)")
    ap.add_argument("--new-tokens", type=int, default=32,
                    help="decode steps with every sequence in the batch")
    ap.add_argument("--budget", type=float, default=170.0,
                    help="seconds after which generate runs are skipped")
    args = ap.parse_args()
    start = time.monotonic()

    import torch
    import transformers
    from paged_attn.integrations import transformers as pt
    from paged_attn.integrations import transformers_testing as tt
    pt.check_version(transformers.__version__)
    keys = [pt.register("paged_attn"),
            pt.register("paged_attn_index", decode_fast_path=False)]
    flash = False
    try:
        from transformers.utils import is_flash_attn_2_available
        flash = bool(is_flash_attn_2_available())
    except ImportError:
        pass

    date = datetime.date.today().isoformat()
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        f"{card_slug(torch)}-{date}", "transformers")
    os.makedirs(out, exist_ok=True)
    meta = {"card": torch.cuda.get_device_name(), "date": date,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "model": tt.MODELS["llama"], "flash_attention_2": flash}
    print(json.dumps(meta), flush=True)

    layers = tt.MODELS["llama"]["num_hidden_layers"]
    step_rows = step_part(
        torch, pt, tt, keys, layers,
        [int(x) for x in args.batches.split(",")],
        [int(x) for x in args.contexts.split(",")], flash)
    gen_keys = ["paged|sdpa"] + keys
    if flash:
        gen_keys.append("paged|flash_attention_2")
    configs = [tuple(int(v) for v in c.split("x"))
               for c in args.generate.split(",") if c]
    gen_rows = generate_part(torch, pt, tt, gen_keys, configs,
                             args.new_tokens, args.budget, start)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "step": step_rows, "generate": gen_rows},
                  f, indent=1)
    text = (f"# transformers {transformers.__version__} continuous batching, "
            f"{meta['card']}, {date}\n\n" + table(step_rows, gen_rows))
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"written to {out} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
