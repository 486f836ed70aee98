"""paged_attn.jax on the GPU against torch's float64 references: jitted
calls on ragged lengths, partial last pages and shuffled page tables, the
variants, multi-token decode, split and unsplit; the call inside a larger
jitted function (projections around it); a jitted decode loop over steps
that writes each step's K and V into a growing cache; and both again with
XLA's command buffers (CUDA graphs) enabled for custom calls. Skipped without jax's
CUDA backend, torch, or a CUDA driver."""
import os
import subprocess
import sys

import pytest

# torch and XLA share the GPU here: XLA must not take most of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import paged_attn  # noqa: E402


def _has_jax_gpu():
    try:
        return bool(jax.devices("cuda"))
    except RuntimeError:
        return False


pytestmark = pytest.mark.skipif(
    not _has_jax_gpu() or not torch.cuda.is_available()
    or not paged_attn.has_driver()[0], reason="needs jax's CUDA backend")

import paged_attn.jax as pa  # noqa: E402
from test_gpu import LIMITS, make, rel_err  # noqa: E402
from test_multi_token_gpu import (make_multi, random_tree,  # noqa: E402
                                  reference)
from test_variants_gpu import check, variant_args  # noqa: E402

JAX_DTYPES = {torch.float16: jnp.float16, torch.bfloat16: jnp.bfloat16,
              torch.float32: jnp.float32}


def to_jax(t):
    """A torch tensor's values as a JAX array on the GPU (through the host:
    exact, bf16 included)."""
    if t.dtype in JAX_DTYPES:
        return jnp.asarray(t.float().cpu().numpy()).astype(JAX_DTYPES[t.dtype])
    return jnp.asarray(t.cpu().numpy())


def to_torch(x):
    return torch.from_numpy(np.array(jnp.asarray(x, jnp.float32)))


# The shapes of the Python tests' kernels (test/gpu/matrix.py's
# PYTHON_TEST_CONFIGS): (dtype, head_dim, page, num_heads, num_kv_heads,
# layout), tensor cores and the CUDA-core kernel.
SHAPES = [("bf16", 128, 16, 32, 8, "nhd"), ("f16", 64, 16, 4, 4, "hnd")]
LENS = [0, 1, 15, 16, 17, 37, 300, 777]
COMBOS = [(), ("lse",), ("window", "sinks", "lse"), ("window", "soft_cap"),
          ("window", "soft_cap", "alibi_slopes", "sinks", "lse")]


def run(shape, query_len, combo, num_splits, tree_kind=None, seed=0,
        rank4=True):
    dtype, d, page, hq, hkv, layout = shape
    q, k, v, bt, sl = make_multi(LENS, query_len, hq, hkv, d, page, dtype,
                                 layout, seed)
    tree = None if tree_kind is None else random_tree(len(LENS), query_len,
                                                      seed, tree_kind)
    kwargs = variant_args(combo, hq, seed=seed)
    return_lse = "lse" in combo
    # Arrays are the jitted call's arguments; window and soft_cap are fixed
    # at trace time.
    arrays = {k: to_jax(v) for k, v in kwargs.items() if torch.is_tensor(v)}
    scalars = {k: v for k, v in kwargs.items() if not torch.is_tensor(v)}
    if tree is not None:
        arrays["tree_mask"] = to_jax(tree)
    jq = to_jax(q if rank4 else q[:, 0])

    @jax.jit
    def call(jq, k, v, bt, sl, arrays):
        return pa.decode(jq, k, v, bt, sl, layout=layout,
                         num_splits=num_splits, return_lse=return_lse,
                         **arrays, **scalars)

    result = call(jq, to_jax(k), to_jax(v), to_jax(bt), to_jax(sl), arrays)
    out, lse = result if return_lse else (result, None)
    assert out.shape == jq.shape and out.dtype == jq.dtype
    ref_out, ref_lse = reference(q, k, v, bt, sl, layout, tree,
                                 kwargs.get("window"), kwargs.get("soft_cap"),
                                 kwargs.get("alibi_slopes"),
                                 kwargs.get("sinks"))
    got_out = to_torch(out).reshape(ref_out.shape)
    got_lse = None if lse is None else to_torch(lse).reshape(ref_lse.shape)
    check(got_out, got_lse, ref_out, ref_lse, dtype, combo)


@pytest.mark.parametrize("num_splits", [1, 3, 0], ids=["unsplit", "split3",
                                                        "auto"])
@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "+".join(c) or "plain")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}_d{s[1]}")
def test_matches_float64(shape, combo, num_splits):
    run(shape, 1, combo, num_splits, seed=3, rank4=False)


@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("query_len,combo,tree_kind", [
    (2, (), None), (4, (), torch.bool), (7, ("lse",), torch.int8),
    (4, ("window", "soft_cap", "alibi_slopes", "sinks", "lse"), torch.bool),
    (16, (), torch.bool)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}_d{s[1]}")
def test_multi_token_matches_float64(shape, query_len, combo, tree_kind,
                                     num_splits):
    run(shape, query_len, combo, num_splits, tree_kind, seed=query_len)


def test_rank_4_single_query():
    run(SHAPES[0], 1, ("lse",), 3, seed=11)


def test_auto_split_of_long_ragged_sequences():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    lens = [4000, 1, 2500, 17]
    q, k, v, bt, sl = make(lens, hq, hkv, d, page, dtype, layout, seed=5)
    lowered = jax.jit(pa.decode).lower(*(to_jax(t) for t in (q, k, v, bt, sl)))
    assert "num_splits = 1 :" not in lowered.as_text()  # the device chose
    out = lowered.compile()(*(to_jax(t) for t in (q, k, v, bt, sl)))
    ref, _ = reference(q[:, None], k, v, bt, sl, layout)
    assert rel_err(to_torch(out), ref[:, 0]) <= LIMITS[dtype]


def test_inside_a_jitted_layer_with_projections():
    dtype, d, page, hq, hkv, layout = SHAPES[0]
    q, k, v, bt, sl = make(LENS, hq, hkv, d, page, dtype, layout, seed=8)
    g = torch.Generator().manual_seed(8)
    width = 256
    x = torch.rand(len(LENS), width, generator=g) - 0.5
    wq = (torch.rand(width, hq * d, generator=g) - 0.5) / 8
    wo = (torch.rand(hq * d, width, generator=g) - 0.5) / 8
    x, wq, wo = (t.to(torch.bfloat16) for t in (x, wq, wo))

    def project(x, wq):
        return (x @ wq).reshape(len(LENS), hq, d)

    @jax.jit
    def layer(x, wq, wo, k, v, bt, sl):
        attn = pa.decode(project(x, wq), k, v, bt, sl)
        return attn.reshape(len(LENS), hq * d) @ wo, project(x, wq)

    y, q_used = layer(*(to_jax(t) for t in (x, wq, wo, k, v, bt, sl)))
    # float64 from the q the layer fed the decode (its projection's own
    # rounding is XLA's, not ours).
    q_used = to_torch(q_used).to(torch.bfloat16)
    ref_attn, _ = reference(q_used[:, None], k, v, bt, sl, layout)
    ref = ref_attn[:, 0].reshape(len(LENS), hq * d) @ wo.double()
    assert rel_err(to_torch(y), ref) <= 2e-2


def decode_loop(steps, layout="nhd", num_splits=0):
    """A jitted loop of `steps` decode steps: each writes the step's new K
    and V at position seq_lens[b] of its sequence (through the page table,
    crossing page boundaries), then decodes with the grown lengths.
    Returns (outputs [steps, batch, hq, d], the final caches, the inputs)."""
    dtype, d, page, hq, hkv, _ = SHAPES[0]
    start = [5, 16, 31, 0]
    final = [n + steps for n in start]
    q, k, v, bt, _ = make(final, hq, hkv, d, page, dtype, layout, seed=21)
    g = torch.Generator().manual_seed(22)
    qs = ((torch.rand(steps, len(start), hq, d, generator=g) * 2 - 1)
          .to(torch.bfloat16))
    new_k = ((torch.rand(steps, len(start), hkv, d, generator=g) * 2 - 1)
             .to(torch.bfloat16))
    new_v = ((torch.rand(steps, len(start), hkv, d, generator=g) * 2 - 1)
             .to(torch.bfloat16))
    rows = torch.arange(len(start))

    @jax.jit
    def loop(k, v, bt, sl, qs, new_k, new_v):
        def step(carry, xs):
            k, v, sl = carry
            q, nk, nv = xs
            page_ids = bt[jnp.arange(len(start)), sl // page]
            k = k.at[page_ids, sl % page].set(nk)
            v = v.at[page_ids, sl % page].set(nv)
            sl = sl + 1
            return (k, v, sl), pa.decode(q, k, v, bt, sl,
                                         max_seq_len=max(final),
                                         num_splits=num_splits)
        (k, v, _), outs = jax.lax.scan(step, (k, v, sl), (qs, new_k, new_v))
        return outs, k, v

    sl0 = torch.tensor(start, dtype=torch.int32)
    outs, k_end, v_end = loop(to_jax(k), to_jax(v), to_jax(bt), to_jax(sl0),
                              to_jax(qs), to_jax(new_k), to_jax(new_v))
    # The reference cache: the starting one with every step's rows written.
    k_ref, v_ref = k.cpu().clone(), v.cpu().clone()
    for s in range(steps):
        pos = sl0 + s
        pages = bt.cpu()[rows, (pos // page).long()].long()
        k_ref[pages, pos % page] = new_k[s]
        v_ref[pages, pos % page] = new_v[s]
    return outs, (k_end, v_end), (qs, k_ref, v_ref, bt, sl0)


def check_loop(steps, num_splits):
    outs, (k_end, v_end), (qs, k_ref, v_ref, bt, sl0) = decode_loop(
        steps, num_splits=num_splits)
    assert torch.equal(to_torch(k_end), k_ref.float())
    assert torch.equal(to_torch(v_end), v_ref.float())
    for s in range(steps):
        sl = (sl0 + s + 1).cuda()
        ref, _ = reference(qs[s][:, None].cuda(), k_ref.cuda(), v_ref.cuda(),
                           bt, sl, "nhd")
        assert rel_err(to_torch(outs[s]), ref[:, 0]) <= LIMITS["bf16"], s


@pytest.mark.parametrize("num_splits", [1, 3])
def test_decode_loop_over_a_growing_cache(num_splits):
    check_loop(40, num_splits)


def test_loop_and_layer_with_command_buffers_enabled():
    """The loop and the layer again in a process whose XLA may put every
    command sequence, custom calls and loops included, into command buffers
    (CUDA graphs): the handler declares itself compatible, so the results
    must not change. (XLA 0.11 forms command buffers from thunks after the
    HLO passes, so an HLO dump cannot show whether it did.)"""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_gpu_graph_min_graph_size=1"
                        " --xla_gpu_enable_command_buffer=FUSION,CUBLAS,"
                        "CUBLASLT,CUSTOM_CALL,WHILE,CONDITIONAL,"
                        "DYNAMIC_SLICE_FUSION").strip()
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         __file__, "-k", "growing_cache or projections"],
        cwd=tests, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 passed" in result.stdout
