"""PagedAttn: paged-attention decode compiled from MLIR to PTX.

    import torch, paged_attn
    out = paged_attn.decode(q, k_cache, v_cache, block_table, seq_lens)

q: [batch, num_heads, head_dim]; k_cache, v_cache: [pages, page, kv_heads,
head_dim] ("nhd", the default) or [pages, kv_heads, page, head_dim]
("hnd"); block_table: [batch, max_pages] int32; seq_lens: [batch] int32.
Tensors are torch CUDA tensors, objects with __cuda_array_interface__, or
DLPack exporters (read through torch.from_dlpack, without a copy);
the launch goes on torch's current stream (or `stream`), allocates nothing
when `out` and `workspace` are given, and does not synchronise, so CUDA
graphs can capture it. decode() and merge() read torch tensors in C++
(python/src/torch_calls.cpp, a few µs of host time a call) and describe any
other tensor in Python (the checked path); both accept the same calls and
raise the same errors.

fp8 KV caches: k_cache and v_cache of torch.float8_e4m3fn or
torch.float8_e5m2 (q float16 or bfloat16) stand for code * scale, with
k_scale= and v_scale= (both, and only then): a float or a float32 tensor []
(per tensor), a float32 tensor [num_kv_heads] (per head) or one of the
cache's first three dims (per token, read through the page table).

New tokens' K and V rows go into the caches with paged_attn.append(k, v,
slot_mapping, k_cache, v_cache) (k, v: [T, kv_heads, head_dim];
slot_mapping: int64 [T], page * page_size + offset, negative to skip),
quantising them for fp8 caches with the same k_scale= and v_scale= (per
token, the scale caches are written).

A loop that decodes into the same tensors every step (a serving loop with
persistent buffers, or one captured in a CUDA graph) can check them once:

    plan = paged_attn.DecodePlan(q, k_cache, v_cache, block_table, seq_lens)
    out = plan.run()   # each step, after writing q, the caches, seq_lens

Kernels come from the compiler when this build has it (compiled on first use
and cached on disk in $PAGED_ATTN_CACHE_DIR, default ~/.cache/paged_attn,
keyed by config and compiler version; an entry found broken is compiled
again), else from the compiled kernels (paged-attn-compile output) in
$PAGED_ATTN_KERNEL_DIR.
"""

import hashlib
import json
import math
import numbers
import operator
import os
import shutil
import tempfile
import threading

from . import _ext


class PagedAttnError(RuntimeError):
    """A runtime failure: no CUDA driver, a kernel that is not there, a bad
    page table found by the check mode, a CUDA error."""


_ext.set_error_type(PagedAttnError)
# decode()'s and merge()'s first try on every call (_enable_torch_path).
_decode_torch = _ext.decode_torch
_merge_torch = _ext.merge_torch

__all__ = ["decode", "DecodePlan", "merge", "append", "compile",
           "compile_merge", "compile_append", "workspace_size", "PagedAttnError", "has_compiler", "has_driver",
           "cache_dir"]

# torch dtype -> the runtime's dtype name (the float8 ones where this torch
# has them).
_DTYPE_NAMES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32",
                "int32": "i32", "int64": "i64", "bool": "i8", "int8": "i8", "uint8": "i8",
                "float8_e4m3fn": "f8e4m3fn", "float8_e5m2": "f8e5m2"}
# __cuda_array_interface__ typestr -> dtype name.
_TYPESTRS = {"<f2": "f16", "<f4": "f32", "<i4": "i32", "<i8": "i64",
             "|b1": "i8",
             "|i1": "i8", "|u1": "i8"}
# Dtypes numpy's typestrs have no letter for: a void typestr of their size
# is one of them only when the object's .dtype names it ("<V2" and
# bfloat16; "|V1" and float8_e4m3fn or float8_e5m2, as ml_dtypes names
# them).
_VOID_TYPESTRS = {"<V2": {"bfloat16": "bf16"},
                  "|V1": {"float8_e4m3fn": "f8e4m3fn",
                          "float8_e5m2": "f8e5m2"}}
# The C++ Spec's dtypes: their sizes, those q, the caches and out may have,
# and those of quantised (fp8) caches.
_ELEM_BYTES = {name: size for name, size, _ in _ext.dtypes()}
_DATA_DTYPES = frozenset(name for name, _, data in _ext.dtypes() if data)
_FP8_DTYPES = frozenset(_ext.quantized_cache_dtypes())


def has_compiler():
    """True when this build compiles kernels itself."""
    return _ext.has_compiler()


def has_driver():
    """(True, '') when a CUDA driver is usable, else (False, why)."""
    return _ext.has_driver()


def cache_dir():
    return os.environ.get("PAGED_ATTN_CACHE_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache",
                                       "paged_attn"))


# ---------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------


_TORCH_DTYPE_NAMES = None


def _torch_dtype_names():
    """torch dtype -> runtime dtype name, built on first use."""
    global _TORCH_DTYPE_NAMES
    if _TORCH_DTYPE_NAMES is None:
        import torch
        _TORCH_DTYPE_NAMES = {getattr(torch, n): v for n, v in
                              _DTYPE_NAMES.items() if hasattr(torch, n)}
    return _TORCH_DTYPE_NAMES


class _Desc:
    """A tensor as the runtime sees it."""
    __slots__ = ("ptr", "dtype", "shape", "strides", "device")

    def __init__(self, ptr, dtype, shape, strides, device):
        # shape and strides: tuples (the caller converts; this runs six times
        # per decode call).
        self.ptr, self.dtype, self.shape = ptr, dtype, shape
        self.strides, self.device = strides, device

    def as_tuple(self):
        return (self.ptr, self.dtype, self.shape, self.strides)

    def without_dim1(self):
        """The view without its dim 1 (of size 1): a rank-4 q of one new
        query is a single-token decode's rank-3 q."""
        return _Desc(self.ptr, self.dtype, self.shape[:1] + self.shape[2:],
                     self.strides[:1] + self.strides[2:], self.device)


def _contiguous_strides(shape):
    """Row-major strides, in elements, of `shape`."""
    strides, acc = [], 1
    for size in reversed(shape):
        strides.append(acc)
        acc *= size
    return tuple(reversed(strides))


def _describe(name, t):
    """(pointer, dtype, shape, strides in elements, device) of a torch CUDA
    tensor or a __cuda_array_interface__ object."""
    if type(t).__module__ == "torch":
        if not t.is_cuda:
            raise ValueError(f"{name} must be a CUDA tensor, got device "
                             f"{t.device}")
        dt = (_TORCH_DTYPE_NAMES or _torch_dtype_names()).get(t.dtype)
        if dt is None:
            raise ValueError(f"{name} has dtype {t.dtype}; expected float16, "
                             f"bfloat16, float32 (float8_e4m3fn or "
                             f"float8_e5m2 for fp8 caches, int32 for "
                             f"block_table and seq_lens, int64 for "
                             f"slot_mapping)")
        return _Desc(t.data_ptr(), dt, tuple(t.shape), t.stride(),
                     t.get_device())
    cai = getattr(t, "__cuda_array_interface__", None)
    if cai is None and hasattr(t, "__dlpack__"):
        torch = _torch()
        if torch is None:
            raise ValueError(f"{name} exports only DLPack; reading it needs "
                             f"torch (or pass an object with "
                             f"__cuda_array_interface__)")
        return _describe(name, torch.from_dlpack(t))  # zero-copy view
    if cai is None:
        raise ValueError(f"{name} must be a CUDA tensor (torch, or an object "
                         f"with __cuda_array_interface__ or __dlpack__), got "
                         f"{type(t).__name__}")
    typestr = cai["typestr"]
    dt = _TYPESTRS.get(typestr)
    if dt is None and typestr in _VOID_TYPESTRS:
        dtype_name = str(getattr(t, "dtype", "")).rsplit(".", 1)[-1]
        dt = _VOID_TYPESTRS[typestr].get(dtype_name)
    if dt is None:
        raise ValueError(f"{name} has typestr {typestr!r}; expected float16, "
                         f"bfloat16, float32, int32 or int64 data")
    shape = tuple(cai["shape"])
    elem = _ELEM_BYTES[dt]
    if cai.get("strides") is None:
        strides = _contiguous_strides(shape)
    else:
        if any(s % elem for s in cai["strides"]):
            raise ValueError(f"{name} has strides {cai['strides']} bytes, not "
                             f"whole elements")
        strides = tuple(s // elem for s in cai["strides"])
    return _Desc(int(cai["data"][0]), dt, shape, strides, None)


def _buffer(name, t):
    """(pointer, bytes) of a contiguous CUDA buffer of any dtype, or (0, 0)
    for None."""
    if t is None:
        return 0, 0
    if type(t).__module__.startswith("torch"):
        if not t.is_cuda or not t.is_contiguous():
            raise ValueError(f"{name} must be a contiguous CUDA tensor")
        return t.data_ptr(), t.numel() * t.element_size()
    cai = getattr(t, "__cuda_array_interface__", None)
    if cai is None:
        raise ValueError(f"{name} must be a CUDA buffer (torch, or an object "
                         f"with __cuda_array_interface__), got "
                         f"{type(t).__name__}")
    n = 1
    for s in cai["shape"]:
        n *= s
    itemsize = int(cai["typestr"][2:])
    return int(cai["data"][0]), n * itemsize


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------

_lock = threading.Lock()
_decoders = {}


_spec_names = {}


def _config_name(hq, hkv, d, page, dtype, layout, warps=4, variants=(),
                 query_len=1, kv_quant=None):
    """The config's name (its kernels' and manifest's), after the op's rules
    on it: the C++ Spec's, raising ValueError with the broken rule's
    message. `variants` names the attention variants its kernels have
    ("window", "soft_cap", "alibi_slopes", "sinks", "lse", "tree_mask");
    query_len the new queries of a multi-token decode; kv_quant, for fp8
    caches, (their dtype, where their scales are): ("f8e4m3fn", "head")."""
    kv_dtype, kv_scale = kv_quant or (None, None)
    return _ext.decode_spec(hq, hkv, d, page, dtype, layout, warps,
                            list(variants), query_len, kv_dtype, kv_scale)


def _checked_name(hq, hkv, d, page, dtype, layout, variants=(), query_len=1,
                  kv_quant=None):
    """_config_name, remembered for configs that obey the rules: decode()
    asks on every call."""
    key = (hq, hkv, d, page, dtype, layout, variants, query_len, kv_quant)
    name = _spec_names.get(key)
    if name is None:
        name = _spec_names[key] = _config_name(hq, hkv, d, page, dtype,
                                               layout, 4, variants, query_len,
                                               kv_quant)
    return name


_CACHE_DIMS = {}


def _cache_dims(layout):
    """(page dim, kv_heads dim) of a cache under `layout`, from the C++
    Spec; ValueError for a layout it does not know."""
    dims = _CACHE_DIMS.get(layout) if type(layout) is str else None
    if dims is None:
        dims = _ext.cache_dims(layout)
        _CACHE_DIMS[layout] = dims
    return dims


def _current_chip():
    """The chip the current device runs, as the C++ chip table names it, or
    sm_90 (the common target) without torch, a GPU or a row for it."""
    try:
        import torch
        chip = _ext.chip_for_capability(*torch.cuda.get_device_capability())
    except Exception:  # noqa: BLE001 - no torch or no GPU: the common target
        chip = None
    return chip or "sm_90"


def compile(num_heads, num_kv_heads, head_dim, page_size, dtype="bf16",
            layout="nhd", chip="sm_90", num_warps=4, variants=(),
            query_len=1, kv_dtype=None, kv_scale=None):
    """Compiles a decode kernel pair: returns (ptx: str, manifest: dict).

    variants: the attention variants the kernels have, by decode()'s keyword
    names ("window", "soft_cap", "alibi_slopes", "sinks", "lse",
    "tree_mask"). query_len: new queries per sequence (a multi-token
    decode's L, 1 to 16). kv_dtype and kv_scale (both or neither; as
    paged-attn-compile's --kv-dtype and --kv-scale): fp8 caches,
    "f8e4m3fn" or "f8e5m2", with scales per "tensor", "head" or "token"
    (dtype then f16 or bf16). Needs a build with the compiler
    (has_compiler()).
    """
    if not _ext.has_compiler():
        raise PagedAttnError("this build of paged_attn has no compiler: use "
                             "kernels compiled by paged-attn-compile "
                             "($PAGED_ATTN_KERNEL_DIR)")
    name = _ext.decode_spec(num_heads, num_kv_heads, head_dim, page_size,
                            dtype, layout, num_warps, list(variants),
                            query_len, kv_dtype, kv_scale)
    ptx, manifest = _ext.compile(num_heads, num_kv_heads, head_dim, page_size,
                                 dtype, layout, chip, num_warps, name + ".ptx",
                                 list(variants), query_len, kv_dtype, kv_scale)
    return ptx, json.loads(manifest)


def compile_merge(num_heads, head_dim, dtype="bf16", chip="sm_90",
                  variants=()):
    """Compiles the paged_attn.merge kernel of partials [N, batch,
    num_heads, head_dim] of `dtype`: returns (ptx: str, manifest: dict).
    variants: "sinks", "lse" (merge()'s sinks and return_lse)."""
    if not _ext.has_compiler():
        raise PagedAttnError("this build of paged_attn has no compiler: use "
                             "kernels compiled by paged-attn-compile "
                             "($PAGED_ATTN_KERNEL_DIR)")
    name = "merge_" + _ext.merge_spec(num_heads, head_dim, dtype,
                                      list(variants))
    ptx, manifest = _ext.compile_merge(num_heads, head_dim, dtype, chip,
                                       name + ".ptx", list(variants))
    return ptx, json.loads(manifest)


def compile_append(num_kv_heads, head_dim, page_size, dtype="bf16",
                   layout="nhd", chip="sm_90", kv_dtype=None, kv_scale=None):
    """Compiles the paged_attn.append kernel that writes rows [T,
    num_kv_heads, head_dim] of `dtype` into the caches of the decode of
    these sizes, layout and quantisation (kv_dtype and kv_scale as
    compile()'s): returns (ptx: str, manifest: dict)."""
    if not _ext.has_compiler():
        raise PagedAttnError("this build of paged_attn has no compiler: use "
                             "kernels compiled by paged-attn-compile "
                             "($PAGED_ATTN_KERNEL_DIR)")
    name = "append_" + _ext.append_spec(num_kv_heads, head_dim, page_size,
                                        dtype, layout, kv_dtype, kv_scale)
    ptx, manifest = _ext.compile_append(num_kv_heads, head_dim, page_size,
                                        dtype, layout, chip, name + ".ptx",
                                        kv_dtype, kv_scale)
    return ptx, json.loads(manifest)


def _cache_root():
    """cache_dir(), which must be a directory where it exists."""
    root = cache_dir()
    if os.path.exists(root) and not os.path.isdir(root):
        raise PagedAttnError(f"the kernel cache {root!r} "
                             f"($PAGED_ATTN_CACHE_DIR) is not a directory")
    return root


def _write_entry(root, directory, name, compile_kernels, chip):
    """Compiles a cache entry (compile_kernels(chip) gives its PTX and
    manifest) into a temporary directory and renames it into place, so that
    a reader never sees half an entry. When another process renamed its
    entry there first, that one is kept."""
    ptx, man = compile_kernels(chip)
    try:
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    except OSError as e:
        raise PagedAttnError(f"cannot write to the kernel cache {root!r} "
                             f"($PAGED_ATTN_CACHE_DIR): {e.strerror}") from None
    try:
        with open(os.path.join(tmp, name + ".ptx"), "w") as f:
            f.write(ptx)
        with open(os.path.join(tmp, name + ".json"), "w") as f:
            json.dump(man, f, indent=2)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PagedAttnError(f"cannot write to the kernel cache {root!r} "
                             f"($PAGED_ATTN_CACHE_DIR): {e.strerror}") from None
    try:
        os.rename(tmp, directory)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)


def _set_aside(root, directory):
    """Removes a broken cache entry: renamed away first (atomically, as
    entries are written), then deleted."""
    aside = None
    try:
        aside = tempfile.mkdtemp(prefix=".broken-", dir=root)
        os.rename(directory, os.path.join(aside, "entry"))
    except FileNotFoundError:
        pass  # another process moved it first
    except OSError as e:
        raise PagedAttnError(f"the kernel cache entry {directory!r} is broken "
                             f"and cannot be replaced ({e.strerror}): delete "
                             f"it") from None
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def _cached_library(name, compile_kernels, chip):
    """(manifest path, library) of the cached kernels named `name`,
    compiled by compile_kernels(chip) -> (ptx, manifest) on a miss. An entry
    the runtime cannot load (a truncated or missing manifest or PTX, invalid
    JSON: a write or a deletion that was cut short) is compiled again."""
    root = _cache_root()
    key = hashlib.sha256(
        f"{name}|{chip}|{_ext.compiler_version()}".encode()).hexdigest()[:16]
    directory = os.path.join(root, f"{name}-{chip}-{key}")
    manifest = os.path.join(directory, name + ".json")
    if os.path.lexists(directory):
        try:
            return manifest, _ext.Library(manifest)
        except PagedAttnError as e:
            if not _ext.has_compiler():
                raise PagedAttnError(f"the kernel cache entry {directory!r} "
                                     f"is broken ({e}): delete it") from None
        _set_aside(root, directory)
    _write_entry(root, directory, name, compile_kernels, chip)
    try:
        return manifest, _ext.Library(manifest)
    except PagedAttnError as e:
        raise PagedAttnError(f"the kernel cache entry {directory!r} cannot be "
                             f"read ({e}): delete it") from None


def _decode_compiler(args):
    """compile_kernels for _cached_library: the decode kernels of `args`,
    (hq, hkv, d, page, dtype, layout[, variants[, query_len[,
    kv_quant]]])."""
    shape, variants = args[:6], (args[6] if len(args) > 6 else ())
    query_len = args[7] if len(args) > 7 else 1
    kv_dtype, kv_scale = (args[8] if len(args) > 8 else None) or (None, None)
    return lambda chip: compile(*shape, chip=chip, variants=variants,
                                query_len=query_len, kv_dtype=kv_dtype,
                                kv_scale=kv_scale)


def _cached_manifest(name, args, chip):
    """Path of the cached manifest for a decode config, compiling it on a
    miss (or when the entry is broken)."""
    return _cached_library(name, _decode_compiler(args), chip)[0]


def _library_source(name, compile_kernels):
    """(path, library) of the kernel library that holds `name`: the
    on-disk cache's manifest (compiling on a miss) in a build with the
    compiler, unless $PAGED_ATTN_KERNEL_DIR names a directory of compiled
    kernels to use instead (then the path is that directory)."""
    kernel_dir = os.environ.get("PAGED_ATTN_KERNEL_DIR")
    if _ext.has_compiler() and not kernel_dir:
        return _cached_library(name, compile_kernels, _current_chip())
    if kernel_dir:
        return kernel_dir, _ext.Library(kernel_dir, directory=True)
    raise PagedAttnError(
        f"no kernel for {name}: this build has no compiler; set "
        f"PAGED_ATTN_KERNEL_DIR to a directory of kernels compiled by "
        f"paged-attn-compile")


def _library_for(name, compile_kernels):
    """The kernel library that holds `name` (see _library_source)."""
    return _library_source(name, compile_kernels)[1]


def _cached(cache, key, make):
    """cache[key], made by make() under the lock on the first call (once,
    whichever thread gets there first)."""
    value = cache.get(key)
    if value is not None:
        return value
    with _lock:
        value = cache.get(key)
        if value is None:
            value = cache[key] = make()
        return value


def _decoder(hq, hkv, d, page, dtype, layout, variants=(), query_len=1,
             kv_quant=None):
    """The decoder of a config; kv_quant: None, or an fp8 cache's (dtype,
    scale granularity)."""
    def make():
        name = _checked_name(hq, hkv, d, page, dtype, layout, variants,
                             query_len, kv_quant)
        lib = _library_for(name, _decode_compiler(
            (hq, hkv, d, page, dtype, layout, variants, query_len,
             kv_quant)))
        kv_dtype, kv_scale = kv_quant or (None, None)
        dec = _ext.Decoder(lib, hq, hkv, d, page, dtype, layout, 4,
                           list(variants), query_len, kv_dtype, kv_scale)
        if query_len == 1 and "tree_mask" not in variants:
            _ext.register_decoder(dec)  # decode()'s torch calls find it now
        return dec
    return _cached(_decoders,
                   (hq, hkv, d, page, dtype, layout, variants, query_len,
                    kv_quant),
                   make)


_mergers = {}


def _merger(hq, d, dtype, variants):
    """The merge kernel of (hq, d, dtype) with `variants` ("sinks", "lse")."""
    def make():
        name = "merge_" + _ext.merge_spec(hq, d, dtype, list(variants))
        lib = _library_for(name, lambda chip: compile_merge(
            hq, d, dtype, chip=chip, variants=variants))
        merger = _ext.Merger(lib, hq, d, dtype, list(variants))
        _ext.register_merger(merger)
        return merger
    return _cached(_mergers, (hq, d, dtype, variants), make)


_appenders = {}


def _appender(hkv, d, page, dtype, layout, kv_quant):
    """The append kernel of (hkv, d, page, dtype, layout) and kv_quant
    (None, or an fp8 cache's (dtype, scale granularity))."""
    def make():
        kv_dtype, kv_scale = kv_quant or (None, None)
        name = "append_" + _ext.append_spec(hkv, d, page, dtype, layout,
                                            kv_dtype, kv_scale)
        lib = _library_for(name, lambda chip: compile_append(
            hkv, d, page, dtype, layout, chip=chip, kv_dtype=kv_dtype,
            kv_scale=kv_scale))
        return _ext.Appender(lib, hkv, d, page, dtype, layout, kv_dtype,
                             kv_scale)
    return _cached(_appenders, (hkv, d, page, dtype, layout, kv_quant), make)


# ---------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------


def _positive_number(name, value):
    """`value` (a Python or numpy int or float, or anything else float()
    takes but a string) as a float that is finite and positive; ValueError
    naming `name` else."""
    try:
        if isinstance(value, (str, bytes, bool)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a finite positive number, got "
                         f"{value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be finite and positive, got {value}")
    return number


def _scale_value(scale):
    """The scale decode() passes: 0.0 (1/sqrt(head_dim)) for None, else a
    finite positive number."""
    return 0.0 if scale is None else _positive_number("scale", scale)


# The variants in the Spec's order, by decode()'s keyword names.
_VARIANTS = ("window", "soft_cap", "alibi_slopes", "sinks", "lse",
             "tree_mask")


def _variants_of(window, soft_cap, alibi_slopes, sinks, return_lse,
                 tree_mask=None):
    """The variants a call asks for, as the names decode() takes them."""
    given = (window is not None, soft_cap is not None,
             alibi_slopes is not None, sinks is not None, bool(return_lse),
             tree_mask is not None)
    return tuple(name for name, on in zip(_VARIANTS, given) if on)


def _int_option(name, value, lo, hi):
    """`value` as an int in [lo, hi]; ValueError naming the option else
    (where the runtime's binding would raise a bare TypeError or clamp)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        n = None
    if n is None or not lo <= n <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got "
                         f"{value!r}")
    return n


_MAX_SPLITS = 65535
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


def _launch_options(scale, num_splits, max_seq_len, capacity):
    """decode()'s scale, num_splits and max_seq_len, checked; max_seq_len
    None is the page table's `capacity`."""
    if max_seq_len is None:
        max_seq_len = capacity
    return (_scale_value(scale),
            _int_option("num_splits", num_splits, 0, _MAX_SPLITS),
            _int_option("max_seq_len", max_seq_len, 0, _INT64_MAX))


def _check_ranks(tensors):
    for name, t, rank in tensors:
        if len(t.shape) != rank:
            raise ValueError(f"{name} must have {rank} dimensions, got shape "
                             f"{tuple(t.shape)}")


def _config(q, k, bt, layout, kv_scale=None):
    """(hq, hkv, d, page) of q and a cache, after the tensors' own checks
    (ranks, dtypes, head_dim) and the op's rules (the C++ Spec's: the GQA
    ratio, head_dim's bound, row bytes, fp8 caches' q). Checked before any
    kernel is looked up, so a call that breaks a rule gets the rule's
    message. kv_scale: the granularity of an fp8 cache's scales, which
    such a cache must have (and no other)."""
    page_dim, kv_dim = _cache_dims(layout)
    _check_q_rank(q)
    _check_ranks((("k_cache", k, 4), ("block_table", bt, 2)))
    if q.dtype not in _DATA_DTYPES:
        raise ValueError(f"q must be float16, bfloat16 or float32, got {q.dtype}")
    kv_quant = _kv_quant(k, kv_scale)
    if kv_quant is None and k.dtype != q.dtype:
        raise ValueError(f"k_cache dtype ({k.dtype}) must equal q's "
                         f"({q.dtype})")
    if bt.dtype != "i32":
        raise ValueError(f"block_table must be int32, got {bt.dtype}")
    hq, d = q.shape[-2:]
    page, hkv = k.shape[page_dim], k.shape[kv_dim]
    if k.shape[3] != d:
        raise ValueError(f"k_cache head_dim ({k.shape[3]}) must equal q's "
                         f"({d})")
    _checked_name(hq, hkv, d, page, q.dtype, layout, (), _query_len(q),
                  kv_quant)
    return hq, hkv, d, page


# How messages name k_scale's and v_scale's shapes.
_SCALE_SHAPES_DOC = ("[] (per tensor), [num_kv_heads] (per head) or the "
                     "cache's first three dims (per token: [num_pages, "
                     "page_size, num_kv_heads] nhd, [num_pages, "
                     "num_kv_heads, page_size] hnd)")


def _kv_quant(k, kv_scale):
    """An fp8 cache's (dtype, kv_scale), None for a cache of q's dtype;
    ValueError where k_cache's dtype and the scales disagree."""
    if k.dtype in _FP8_DTYPES:
        if kv_scale is None:
            raise ValueError(f"k_cache is {k.dtype}, an fp8 cache: k_scale "
                             f"and v_scale are required, each a float or a "
                             f"float32 tensor of shape {_SCALE_SHAPES_DOC}")
        return k.dtype, kv_scale
    if kv_scale is not None:
        raise ValueError(f"k_scale and v_scale are for fp8 caches "
                         f"(float8_e4m3fn, float8_e5m2); k_cache is "
                         f"{k.dtype}")
    return None


def _check_q_rank(q):
    if len(q.shape) not in (3, 4):
        raise ValueError("q must have 3 dimensions ([batch, num_heads, "
                         "head_dim]) or 4 ([batch, L, num_heads, head_dim], "
                         f"L new queries per sequence), got shape "
                         f"{tuple(q.shape)}")


def _query_len(q):
    """L of a multi-token q [batch, L, num_heads, head_dim]; 1 for rank 3."""
    return q.shape[1] if len(q.shape) == 4 else 1


def _check_and_config(q, k, v, bt, sl, layout, kv_scale=None):
    _check_q_rank(q)
    _check_ranks((("k_cache", k, 4), ("v_cache", v, 4),
                  ("block_table", bt, 2), ("seq_lens", sl, 1)))
    hq, hkv, d, page = _config(q, k, bt, layout, kv_scale)
    if k.dtype in _FP8_DTYPES:
        if v.dtype != k.dtype:
            raise ValueError(f"v_cache dtype ({v.dtype}) must equal "
                             f"k_cache's ({k.dtype})")
    elif v.dtype != q.dtype:
        raise ValueError(f"v_cache dtype ({v.dtype}) must equal q's "
                         f"({q.dtype})")
    if sl.dtype != "i32":
        raise ValueError(f"seq_lens must be int32, got {sl.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k_cache and v_cache shapes differ: {k.shape} and "
                         f"{v.shape}")
    devices = {t.device for t in (q, k, v, bt, sl) if t.device is not None}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")
    batch = q.shape[0]
    if bt.shape[0] != batch or sl.shape[0] != batch:
        raise ValueError(f"batch sizes disagree: q {batch}, block_table "
                         f"{bt.shape[0]}, seq_lens {sl.shape[0]}")
    return batch, hq, hkv, d, page


def _per_head(name, t, hq):
    """A described f32 [num_heads] tensor (the slopes, the sinks)."""
    d = _describe(name, t)
    if d.dtype != "f32" or tuple(d.shape) != (hq,):
        raise ValueError(f"{name} must be float32 of shape ({hq},) "
                         f"[num_heads], got {d.dtype} {tuple(d.shape)}")
    return d


# ---------------------------------------------------------------------------
# fp8 caches' scales
# ---------------------------------------------------------------------------

# The scales' granularities by the rank of their shape (the C++ Spec's
# kvScaleShape: [] per tensor, [num_kv_heads] per head, three dims per
# token).
_KV_SCALE_KINDS = {len(_ext.kv_scale_shape(kind, 1, 1, "nhd", 1)): kind
                   for kind in ("tensor", "head", "token")}


def _is_number(x):
    """A Python or numpy int or float (not a bool): a per-tensor scale."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _scale_kind(x):
    """The granularity k_scale `x` names: "tensor" for a number, else by its
    shape's rank; None for None or anything else (_kv_scales says why)."""
    if x is None:
        return None
    if _is_number(x):
        return "tensor"
    shape = getattr(x, "shape", None)
    if shape is None:
        cai = getattr(x, "__cuda_array_interface__", None)
        shape = cai.get("shape") if isinstance(cai, dict) else None
    try:
        return _KV_SCALE_KINDS.get(len(shape))
    except TypeError:
        return None


def _scale_arg(name, x):
    """k_scale or v_scale as given: a finite positive number (a float), or
    a described tensor."""
    if _is_number(x):
        try:
            value = float(x)
        except (TypeError, ValueError, OverflowError):
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be finite and positive, got {x}")
        return value
    if (isinstance(x, (str, bytes, bool)) or not (
            type(x).__module__.startswith("torch")
            or hasattr(x, "__cuda_array_interface__")
            or hasattr(x, "__dlpack__"))):
        raise ValueError(f"{name} must be a positive float or a float32 "
                         f"CUDA tensor of shape {_SCALE_SHAPES_DOC}, got "
                         f"{type(x).__name__}")
    return _describe(name, x)


def _kv_scales(k_scale, v_scale):
    """(granularity, k_scale, v_scale) of decode()'s scales, each a float
    or a described tensor, checked as far as they go without the caches'
    sizes: given together, a float finite and positive, a tensor of a
    granularity's rank, both of one granularity. (None, None, None)
    without scales."""
    if k_scale is None and v_scale is None:
        return None, None, None
    if k_scale is None or v_scale is None:
        missing = "k_scale" if k_scale is None else "v_scale"
        raise ValueError(f"k_scale and v_scale go together: {missing} is "
                         f"missing")
    ks, vs = _scale_arg("k_scale", k_scale), _scale_arg("v_scale", v_scale)
    kinds = []
    for name, s in (("k_scale", ks), ("v_scale", vs)):
        if type(s) is float:
            kinds.append("tensor")
            continue
        kind = _KV_SCALE_KINDS.get(len(s.shape))
        if kind is None:
            raise ValueError(f"{name} must be a float or a float32 tensor of "
                             f"shape {_SCALE_SHAPES_DOC}, got shape "
                             f"{tuple(s.shape)}")
        kinds.append(kind)
    if kinds[0] != kinds[1]:
        raise ValueError(f"v_scale must have k_scale's granularity "
                         f"({kinds[0]}), got one per {kinds[1]}")
    return kinds[0], ks, vs


def _scale_operand(name, s, want, device):
    """A scale checked against the caches: a float as it is, or a
    described tensor that must be float32 of shape `want` on `device` (q's,
    where known)."""
    if type(s) is float:
        return s
    if s.dtype != "f32" or tuple(s.shape) != want:
        raise ValueError(f"{name} must be float32 of shape {want}, got "
                         f"{s.dtype} {tuple(s.shape)}")
    if device is not None and s.device is not None and s.device != device:
        devices = {device, s.device}
        raise ValueError(f"all tensors must be on one device, got {devices}")
    return s


def _scale_desc(name, s, device):
    """A checked scale as the runtime takes it: a described tensor, or a
    float's tensor on `device` (_scale_tensor)."""
    if type(s) is float:
        return _describe(name, _scale_tensor_for(name, s, device))
    return s


_scale_tensors = {}


def _scale_tensor(value, device):
    """The float32 [] tensor holding `value` on CUDA device `device` (an
    index): made on first use and kept, never freed, so that every call
    with this value (and any CUDA graph that captured one) reads the same
    memory. Made by a blocking copy, so its value is there for any stream;
    ValueError while the current stream is capturing a graph (the copy
    cannot be captured): make the first call with this value before the
    capture, or pass a tensor."""
    key = (device, value)
    t = _scale_tensors.get(key)
    if t is not None:
        return t
    torch = _TORCH
    with _lock:
        t = _scale_tensors.get(key)
        if t is None:
            with torch.cuda.device(device):
                if torch.cuda.is_current_stream_capturing():
                    raise ValueError(
                        f"a float scale ({value}) is put on the GPU on its "
                        f"first use, which a CUDA graph capture cannot "
                        f"hold: call decode() with it once before "
                        f"capturing, or pass a float32 tensor of shape []")
                t = torch.tensor(value, dtype=torch.float32).to(
                    torch.device("cuda", device))
            _scale_tensors[key] = t
        return t


def _scale_tensor_for(name, value, device):
    """_scale_tensor(value, device) for k_scale or v_scale `name`, on
    torch's current device where the tensors do not say (arrays without
    torch's device index)."""
    torch = _torch()
    if torch is None:
        raise ValueError(f"{name} given as a float needs torch to put it on "
                         f"the GPU; without torch, pass a float32 CUDA array "
                         f"of shape []")
    try:
        if device is None:
            device = torch.cuda.current_device()
        return _scale_tensor(value, device)
    except (RuntimeError, AssertionError) as e:  # no GPU, a CUDA error
        raise PagedAttnError(f"{name}: cannot put {value} on the GPU: "
                             f"{e}") from None


def _host_seq_lens(lengths, batch):
    """decode()'s host_seq_lens as a list of `batch` int32 values."""
    if getattr(lengths, "is_cuda", False) or \
            hasattr(lengths, "__cuda_array_interface__"):
        raise ValueError("host_seq_lens must be in host memory (a list, a "
                         "CPU tensor or a NumPy array), got a GPU array")
    if hasattr(lengths, "tolist"):
        lengths = lengths.tolist()
    try:
        lengths = list(lengths)
    except TypeError:
        raise ValueError(f"host_seq_lens must be a sequence of integers, got "
                         f"{type(lengths).__name__}") from None
    if len(lengths) != batch:
        raise ValueError(f"host_seq_lens has {len(lengths)} entries for a "
                         f"batch of {batch}")
    return [_int_option(f"host_seq_lens[{i}]", n, 0, _INT32_MAX)
            for i, n in enumerate(lengths)]


def _prepare(q, k_cache, v_cache, block_table, seq_lens, out, workspace,
             scale, layout, num_splits, max_seq_len, check_page_table,
             window=None, soft_cap=None, alibi_slopes=None, sinks=None,
             lse=None, tree_mask=None, k_scale=None, v_scale=None,
             host_seq_lens=None):
    """Checks a call and returns (decoder, the decoder's arguments but the
    stream, the variants' and the scales' arguments)."""
    qd = _describe("q", q)
    kd = _describe("k_cache", k_cache)
    vd = _describe("v_cache", v_cache)
    btd = _describe("block_table", block_table)
    sld = _describe("seq_lens", seq_lens)
    od = _describe("out", out)
    kv_scale, ks, vs = _kv_scales(k_scale, v_scale)
    batch, hq, hkv, d, page = _check_and_config(qd, kd, vd, btd, sld, layout,
                                                kv_scale)
    if od.shape != qd.shape or od.dtype != qd.dtype:
        raise ValueError(f"out must match q: shape {qd.shape} {qd.dtype}, got "
                         f"{od.shape} {od.dtype}")
    scale, num_splits, max_seq_len = _launch_options(
        scale, num_splits, max_seq_len, btd.shape[1] * page)
    variants = _variants_of(window, soft_cap, alibi_slopes, sinks,
                            lse is not None, tree_mask)
    query_len = _query_len(qd)
    # A rank-4 q of one new query and no tree mask is a single-token decode.
    single = len(qd.shape) == 4 and query_len == 1 and tree_mask is None
    per_query = (batch, query_len) if len(qd.shape) == 4 else (batch,)
    extra = {}
    if window is not None:
        extra["window"] = _int_option("window", window, 1, _INT64_MAX)
    if soft_cap is not None:
        extra["soft_cap"] = _positive_number("soft_cap", soft_cap)
    if alibi_slopes is not None:
        extra["alibi_slopes"] = _per_head("alibi_slopes", alibi_slopes,
                                          hq).as_tuple()
    if sinks is not None:
        extra["sinks"] = _per_head("sinks", sinks, hq).as_tuple()
    if lse is not None:
        ld = _describe("lse", lse)
        if ld.dtype != "f32" or tuple(ld.shape) != per_query + (hq,):
            names = "[batch, L, num_heads]" if len(per_query) == 2 else \
                "[batch, num_heads]"
            raise ValueError(f"lse must be float32 of shape "
                             f"{per_query + (hq,)} {names}, got {ld.dtype} "
                             f"{tuple(ld.shape)}")
        extra["lse"] = (ld.without_dim1() if single else ld).as_tuple()
    if host_seq_lens is not None:
        extra["host_seq_lens"] = _host_seq_lens(host_seq_lens, batch)
    if tree_mask is not None:
        md = _describe("tree_mask", tree_mask)
        if len(qd.shape) != 4:
            raise ValueError("tree_mask needs a multi-token q of 4 dimensions "
                             "[batch, L, num_heads, head_dim]")
        want = (batch, query_len, query_len)
        if md.dtype != "i8" or tuple(md.shape) != want:
            raise ValueError(f"tree_mask must be bool or int8 of shape {want} "
                             f"[batch, L, L], got {md.dtype} "
                             f"{tuple(md.shape)}")
        extra["tree_mask"] = md.as_tuple()
    kv_quant = None
    if kv_scale is not None:
        kv_quant = (kd.dtype, kv_scale)
        want = tuple(_ext.kv_scale_shape(kv_scale, hkv, page, layout,
                                         kd.shape[0]))
        ks = _scale_operand("k_scale", ks, want, qd.device)
        vs = _scale_operand("v_scale", vs, want, qd.device)
    if single:
        qd, od = qd.without_dim1(), od.without_dim1()
        query_len = 1
    dec = _decoder(hq, hkv, d, page, qd.dtype, layout, variants, query_len,
                   kv_quant)
    if kv_quant is not None:
        # After the decoder: a float becomes a device tensor only for a
        # call that launches.
        extra["k_scale"], extra["v_scale"] = (
            _scale_desc(name, s, qd.device).as_tuple()
            for name, s in (("k_scale", ks), ("v_scale", vs)))
    ws_ptr, ws_bytes = _buffer("workspace", workspace)
    return dec, (qd.as_tuple(), kd.as_tuple(), vd.as_tuple(), btd.as_tuple(),
                 sld.as_tuple(), od.as_tuple(), scale, max_seq_len,
                 num_splits, ws_ptr, ws_bytes, bool(check_page_table)), extra


def workspace_size(q, k_cache, block_table, *, layout="nhd", max_seq_len=None,
                   num_splits=0, variants=(), kv_scale=None):
    """Bytes of workspace decode() may need for these shapes (split-KV):
    for `num_splits` chunks per sequence, or the automatic choice when 0.
    variants: those decode() is called with, by its keyword names
    ("window", "soft_cap", "alibi_slopes", "sinks", "lse", "tree_mask").
    kv_scale: for an fp8 k_cache (and only then), the granularity of
    decode()'s k_scale and v_scale: "tensor", "head" or "token".
    q of 4 dimensions is a multi-token decode's."""
    qd = _describe("q", q)
    kd = _describe("k_cache", k_cache)
    btd = _describe("block_table", block_table)
    if kd.dtype in _FP8_DTYPES and kv_scale is None:
        raise ValueError(f"k_cache is {kd.dtype}, an fp8 cache: kv_scale must "
                         f"name its scales' granularity ('tensor', 'head' or "
                         f"'token')")
    if kd.dtype not in _FP8_DTYPES and kv_scale is not None:
        raise ValueError(f"kv_scale is for fp8 caches (float8_e4m3fn, "
                         f"float8_e5m2); k_cache is {kd.dtype}")
    hq, hkv, d, page = _config(qd, kd, btd, layout, kv_scale)
    num_splits = _int_option("num_splits", num_splits, 0, _MAX_SPLITS)
    if max_seq_len is None:
        max_seq_len = btd.shape[1] * page
    max_seq_len = _int_option("max_seq_len", max_seq_len, 0, _INT64_MAX)
    unknown = [v for v in variants if v not in _VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; they are {_VARIANTS}")
    variants = tuple(v for v in _VARIANTS if v in variants)
    query_len = _query_len(qd)
    if len(qd.shape) == 4 and "tree_mask" not in variants and query_len == 1:
        qd = qd.without_dim1()
    dec = _decoder(hq, hkv, d, page, qd.dtype, layout, variants, query_len,
                   _kv_quant(kd, kv_scale))
    if num_splits:
        return dec.workspace_size(qd.shape[0], num_splits)
    return dec.max_workspace_size(qd.shape[0], max_seq_len)


def decode(q, k_cache, v_cache, block_table, seq_lens, *, scale=None,
           layout="nhd", out=None, workspace=None, num_splits=0,
           max_seq_len=None, check_page_table=False, stream=None,
           window=None, soft_cap=None, alibi_slopes=None, sinks=None,
           return_lse=False, lse=None, k_scale=None, v_scale=None,
           tree_mask=None, host_seq_lens=None):
    """softmax(scale * q . K^T) . V per sequence and query head over the first
    seq_lens[b] tokens of each sequence's pages; returns `out`, or
    (out, lse) with return_lse.

    fp8 KV caches: k_cache and v_cache of float8_e4m3fn or float8_e5m2 (q
    float16 or bfloat16), element x standing for x * k_scale (x * v_scale),
    each scale of one granularity: a float or a float32 tensor [] (per
    tensor), float32 [num_kv_heads] (per head), or float32 of the cache's
    first three dims, [num_pages, page_size, num_kv_heads] nhd or
    [num_pages, num_kv_heads, page_size] hnd (per token, read through the
    page table as the cache is). Both are required with fp8 caches and
    refused with others. A float is put on the GPU once per (device, value)
    and kept there (never freed), so later calls allocate and copy nothing
    and CUDA graphs may capture them: make the first call with a value
    before capturing (as the warm-up that loads the kernels), or pass a
    tensor, which also lets a captured graph see new values.

    Multi-token decode (speculative decoding's verification step): q of
    [batch, L, num_heads, head_dim] (L from 1 to 16) holds L new queries per
    sequence, whose tokens are the last L of seq_lens[b] (already in the
    cache); query i sees the keys before seq_lens[b] - L + 1 + i (causal
    among the new tokens; a sequence shorter than L leaves its first
    queries no key: zeros, lse -inf). out has q's shape, lse [batch, L,
    num_heads]. tree_mask: bool or int8 [batch, L, L]; query i sees new
    token j <= i only where tree_mask[b, i, j] is nonzero (keys before the
    new tokens always), as EAGLE's and Medusa's draft trees need.

    scale: default 1/sqrt(head_dim). workspace: a CUDA buffer of at least
    workspace_size(...) bytes (allocated from torch when None and needed).
    num_splits: chunks per sequence, 0 for automatic. max_seq_len: an upper
    bound of seq_lens (default: the page table's capacity). check_page_table:
    validate block_table and seq_lens on the GPU first (synchronises).
    stream: a CUDA stream handle (int) or torch.cuda.Stream; default torch's
    current stream.

    host_seq_lens: seq_lens as the host knows them (a list of ints, a CPU
    tensor or a NumPy array of batch entries), as serving loops keep them.
    With num_splits 0 they plan the split: one chunk length for the whole
    batch, so that a ragged batch's long sequences take more CTAs than its
    short ones (without them every sequence is split the same number of
    ways and the longest decides the time). Only the balance depends on
    them: the result is right for any seq_lens on the GPU, and a CUDA
    graph captured with them may be replayed after the lengths change.

    The attention variants (the op's documentation gives their semantics;
    each has its own kernels, compiled or looked up on first use):
    window: attend only the last `window` keys (FlashInfer's window_left
    + 1). soft_cap: logits become soft_cap * tanh(logit / soft_cap).
    alibi_slopes: float32 [num_heads]; adds slope * (t - (seq_len - 1)).
    sinks: float32 [num_heads] sink logits, in the softmax's denominator
    only. return_lse: also return the natural log-sum-exp of the attended
    logits, float32 [batch, num_heads] (-inf for a sequence with none),
    written into `lse` when given.
    """
    args = (q, k_cache, v_cache, block_table, seq_lens, out, workspace, scale,
            layout, num_splits, max_seq_len, check_page_table, stream, window,
            soft_cap, alibi_slopes, sinks, return_lse, lse, k_scale, v_scale,
            tree_mask, host_seq_lens)
    if tree_mask is not None or len(getattr(q, "shape", ())) == 4:
        # Multi-token decodes take the checked path (the torch path reads
        # single-token calls).
        return _call_checked(_checked_decode, args)
    return _dispatch(_decode_torch, _checked_decode, args)


def _dispatch(torch_call, checked, args):
    """A call on the torch path (python/src/torch_calls.cpp) first, and on
    the checked path where that path leaves it (returns None) or the
    runtime refused it there (_call_checked says which error is raised)."""
    try:
        result = torch_call(*args)
    except (ValueError, PagedAttnError) as error:
        return _call_checked(checked, args, refused=error)
    if result is None:
        return _call_checked(checked, args)
    return result


def _checked_decode(q, k_cache, v_cache, block_table, seq_lens, out,
                    workspace, scale, layout, num_splits, max_seq_len,
                    check_page_table, stream, window, soft_cap, alibi_slopes,
                    sinks, return_lse, lse, k_scale=None, v_scale=None,
                    tree_mask=None, host_seq_lens=None):
    """decode() described and checked in Python (and out, lse and the
    workspace allocated) up to the launch: (the launch, its arguments, its
    keywords, decode()'s result)."""
    variants = _variants_of(window, soft_cap, alibi_slopes, sinks,
                            return_lse or lse is not None, tree_mask)
    tensors = _resolve_tensors(q, k_cache, v_cache, block_table, seq_lens,
                               out, workspace, layout, max_seq_len, num_splits,
                               variants, k_scale)
    lse = _resolve_lse(lse, variants, tensors[0])
    dec, args, extra = _prepare(*tensors, scale, layout, num_splits,
                                max_seq_len, check_page_table, window,
                                soft_cap, alibi_slopes, sinks, lse, tree_mask,
                                k_scale, v_scale, host_seq_lens)
    args += (_resolve_stream(stream, tensors[0]),)
    result = (tensors[5], lse) if "lse" in variants else tensors[5]
    return dec.decode, args, extra, result


def _call_checked(checked, args, refused=None):
    """A call through the checked path: checked(*args) describes and checks
    it in Python and returns (launch, arguments, keywords, result).

    refused: the runtime's error for the same call made through the torch
    path (python/src/torch_calls.cpp). Then nothing is launched: the checked
    path's error is raised where its own checks fail first (as they did
    before the launch in that path), else `refused`, the error its launch
    would have met."""
    if refused is None:
        launch, launch_args, keywords, result = checked(*args)
        launch(*launch_args, **keywords)
        return result
    try:
        checked(*args)
    except Exception as error:  # noqa: BLE001 - raised as it is
        raise error from None  # not as a consequence of `refused`
    raise refused


class DecodePlan:
    """decode() with its tensors fixed: checked once, launched by run().

    Takes decode()'s arguments (but the stream) and keeps references to the
    tensors, whose addresses, shapes and strides run() reuses: write new
    values into them between runs (q, the caches, block_table, seq_lens,
    the slopes and sinks), never new tensors. seq_lens may grow up to
    max_seq_len (default: the page table's capacity). run() returns `out`
    (and the log-sum-exp with return_lse); its host time is the C++
    runtime's (which still checks shapes, alignment and capacity, and
    raises as decode() does) plus one call, where decode() also reads its
    tensors through torch's accessors (or describes them in Python).
    """

    def __init__(self, q, k_cache, v_cache, block_table, seq_lens, *,
                 scale=None, layout="nhd", out=None, workspace=None,
                 num_splits=0, max_seq_len=None, check_page_table=False,
                 window=None, soft_cap=None, alibi_slopes=None, sinks=None,
                 return_lse=False, lse=None, k_scale=None, v_scale=None,
                 tree_mask=None):
        variants = _variants_of(window, soft_cap, alibi_slopes, sinks,
                                return_lse or lse is not None, tree_mask)
        self._tensors = _resolve_tensors(q, k_cache, v_cache, block_table,
                                         seq_lens, out, workspace, layout,
                                         max_seq_len, num_splits, variants,
                                         k_scale)
        self.lse = _resolve_lse(lse, variants, self._tensors[0])
        self._variant_tensors = (alibi_slopes, sinks, tree_mask, k_scale,
                                 v_scale)
        self._decoder, self._args, self._extra = _prepare(
            *self._tensors, scale, layout, num_splits, max_seq_len,
            check_page_table, window, soft_cap, alibi_slopes, sinks,
            self.lse, tree_mask, k_scale, v_scale)
        self.out = self._tensors[5]

    def run(self, stream=None, host_seq_lens=None):
        """Launches the decode on `stream` (default: torch's current stream
        on the tensors' device) and returns `out` (or (out, lse)).

        host_seq_lens: this run's seq_lens as the host knows them, as
        decode() takes them, to plan the split (a plan made without
        num_splits; the workspace it allocates covers every plan)."""
        extra = self._extra
        if host_seq_lens is not None:
            extra = dict(extra, host_seq_lens=host_seq_lens)
        self._decoder.decode(*self._args,
                             _resolve_stream(stream, self._tensors[0]),
                             **extra)
        if self.lse is not None:
            return self.out, self.lse
        return self.out


# ---------------------------------------------------------------------------
# merge
# ---------------------------------------------------------------------------


def merge(partial_out, partial_lse, *, sinks=None, return_lse=False,
          out=None, lse=None, stream=None):
    """Combines N partial results of one attention (each over its own keys:
    the splits of a long sequence, a cascade's shared prefix and suffix,
    the shards of a context-parallel decode) by their log-sum-exps, as
    paged_attn.merge does; returns `out`, or (out, lse) with return_lse.

    partial_out: [N, batch, num_heads, head_dim], float16, bfloat16 or
    float32; partial_lse: float32 [N, batch, num_heads], the natural
    log-sum-exp of each partial's logits (-inf for an empty partial, which
    adds nothing); decode(..., return_lse=True) gives both for one partial.
    sinks: float32 [num_heads] sink logits, in the denominator once.
    out: [batch, num_heads, head_dim] of partial_out's dtype (allocated from
    torch when None). return_lse: also the log-sum-exp of all partials,
    float32 [batch, num_heads] (sinks excluded), written into `lse` when
    given. stream: as decode()'s.
    """
    args = (partial_out, partial_lse, sinks, return_lse, out, lse, stream)
    return _dispatch(_merge_torch, _checked_merge, args)


def _checked_merge(partial_out, partial_lse, sinks, return_lse, out, lse,
                   stream):
    """merge() described and checked in Python (and out and lse allocated)
    up to the launch, as _checked_decode."""
    torch = _torch()
    if torch is not None:
        partial_out, partial_lse, sinks, out, lse = (
            _from_dlpack(torch, t) for t in (partial_out, partial_lse, sinks,
                                             out, lse))
    pd = _describe("partial_out", partial_out)
    ld = _describe("partial_lse", partial_lse)
    _check_ranks((("partial_out", pd, 4), ("partial_lse", ld, 3)))
    if pd.dtype not in _DATA_DTYPES:
        raise ValueError(f"partial_out must be float16, bfloat16 or float32, "
                         f"got {pd.dtype}")
    n, batch, hq, d = pd.shape
    if ld.dtype != "f32" or tuple(ld.shape) != (n, batch, hq):
        raise ValueError(f"partial_lse must be float32 of shape "
                         f"{(n, batch, hq)} [N, batch, num_heads], got "
                         f"{ld.dtype} {tuple(ld.shape)}")
    variants = tuple(name for name, on in (
        ("sinks", sinks is not None),
        ("lse", bool(return_lse) or lse is not None)) if on)
    is_torch = torch is not None and type(partial_out).__module__ == "torch"
    if out is None or ("lse" in variants and lse is None):
        if not is_torch:
            raise ValueError("out (and lse with return_lse) are required "
                             "unless partial_out is a torch tensor")
        if out is None:
            out = _new_merge_out(partial_out)
        if "lse" in variants and lse is None:
            lse = _new_merge_lse(partial_out)
    od = _describe("out", out)
    if tuple(od.shape) != (batch, hq, d) or od.dtype != pd.dtype:
        raise ValueError(f"out must be {pd.dtype} of shape {(batch, hq, d)} "
                         f"[batch, num_heads, head_dim], got {od.dtype} "
                         f"{tuple(od.shape)}")
    sd = _per_head("sinks", sinks, hq) if sinks is not None else None
    lsed = None
    if lse is not None:
        lsed = _describe("lse", lse)
        if lsed.dtype != "f32" or tuple(lsed.shape) != (batch, hq):
            raise ValueError(f"lse must be float32 of shape {(batch, hq)} "
                             f"[batch, num_heads], got {lsed.dtype} "
                             f"{tuple(lsed.shape)}")
    devices = {t.device for t in (pd, ld, od, sd, lsed)
               if t is not None and t.device is not None}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")
    # The op's rules (the C++ Spec's) before any kernel is looked up.
    _ext.merge_spec(hq, d, pd.dtype, list(variants))
    merger = _merger(hq, d, pd.dtype, variants)
    args = (pd.as_tuple(), ld.as_tuple(), od.as_tuple(),
            sd.as_tuple() if sd else None, lsed.as_tuple() if lsed else None,
            _resolve_stream(stream, partial_out))
    return merger.merge, args, {}, (out, lse) if "lse" in variants else out


# ---------------------------------------------------------------------------
# append
# ---------------------------------------------------------------------------


def append(k, v, slot_mapping, k_cache, v_cache, *, k_scale=None,
           v_scale=None, layout="nhd", stream=None):
    """Writes T new tokens' K and V rows into the paged caches, in place, as
    paged_attn.append does (returns None).

    k, v: [T, num_kv_heads, head_dim], float16, bfloat16 or float32 (float16
    or bfloat16 for fp8 caches). slot_mapping: int64 [T]; token t goes to
    page slot // page_size, offset slot % page_size; a negative slot
    (padding) or one past the pool (num_pages * page_size or more) is
    skipped. Non-negative slots of one call must be distinct. k_cache,
    v_cache: decode()'s caches under `layout` ("nhd" [pages, page,
    kv_heads, head_dim] or "hnd" [pages, kv_heads, page, head_dim]), of k's
    dtype (rows copied bit for bit), or float8_e4m3fn / float8_e5m2 with
    k_scale= and v_scale= as decode() takes them: a float or a float32
    tensor [] (per tensor) or [num_kv_heads] (per head), read (codes are x
    * (1 / scale), rounded to the nearest fp8 value, saturating); or per
    token, the scale caches of the cache's first three dims, written (each
    row's scale is max |x| / the format's largest value, at least 2^-126).
    stream: as decode()'s. Tensors are torch CUDA tensors,
    __cuda_array_interface__ objects or DLPack exporters, on one device;
    nothing is allocated (a float scale is put on the GPU on its first
    use, as decode()'s) and nothing synchronises, so CUDA graphs can
    capture it.
    """
    launch, args = _checked_append(k, v, slot_mapping, k_cache, v_cache,
                                   k_scale, v_scale, layout, stream)
    launch(*args)


def _check_append_tensors(kd, vd, sd, kcd, vcd, kv_scale, layout):
    """(T, hkv, d, page, kv_quant) of append()'s described tensors, after
    their own checks (ranks, dtypes, shapes against each other and the
    caches, one device) and the op's rules (the C++ Spec's)."""
    page_dim, kv_dim = _cache_dims(layout)
    _check_ranks((("k", kd, 3), ("v", vd, 3), ("slot_mapping", sd, 1),
                  ("k_cache", kcd, 4), ("v_cache", vcd, 4)))
    if kd.dtype not in _DATA_DTYPES:
        raise ValueError(f"k must be float16, bfloat16 or float32, got "
                         f"{kd.dtype}")
    if vd.dtype != kd.dtype or tuple(vd.shape) != tuple(kd.shape):
        raise ValueError(f"v must match k: {kd.dtype} {tuple(kd.shape)}, got "
                         f"{vd.dtype} {tuple(vd.shape)}")
    tokens = kd.shape[0]
    if sd.dtype != "i64":
        raise ValueError(f"slot_mapping must be int64, got {sd.dtype}")
    if tuple(sd.shape) != (tokens,):
        raise ValueError(f"slot_mapping must have one slot per token of k "
                         f"(T = {tokens}), got shape {tuple(sd.shape)}")
    kv_quant = _kv_quant(kcd, kv_scale)
    if kv_quant is None and kcd.dtype != kd.dtype:
        raise ValueError(f"k_cache dtype ({kcd.dtype}) must equal k's "
                         f"({kd.dtype}), or be float8_e4m3fn or float8_e5m2 "
                         f"with k_scale and v_scale")
    if vcd.dtype != kcd.dtype:
        raise ValueError(f"v_cache dtype ({vcd.dtype}) must equal k_cache's "
                         f"({kcd.dtype})")
    if tuple(vcd.shape) != tuple(kcd.shape):
        raise ValueError(f"k_cache and v_cache shapes differ: "
                         f"{tuple(kcd.shape)} and {tuple(vcd.shape)}")
    hkv, d, page = kcd.shape[kv_dim], kcd.shape[3], kcd.shape[page_dim]
    if tuple(kd.shape[1:]) != (hkv, d):
        raise ValueError(f"k has shape {tuple(kd.shape)}, expected [T, "
                         f"num_kv_heads, head_dim] with the caches' "
                         f"num_kv_heads {hkv} and head_dim {d}")
    devices = {t.device for t in (kd, vd, sd, kcd, vcd)
               if t.device is not None}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")
    kv_dtype, kv_scale_kind = kv_quant or (None, None)
    _ext.append_spec(hkv, d, page, kd.dtype, layout, kv_dtype, kv_scale_kind)
    return tokens, hkv, d, page, kv_quant


def _checked_append(k, v, slot_mapping, k_cache, v_cache, k_scale, v_scale,
                    layout, stream):
    """append() described and checked in Python up to the launch: (the
    launch, its arguments)."""
    torch = _torch()
    if torch is not None:
        k, v, slot_mapping, k_cache, v_cache, k_scale, v_scale = (
            _from_dlpack(torch, t) for t in (k, v, slot_mapping, k_cache,
                                             v_cache, k_scale, v_scale))
    kd, vd = _describe("k", k), _describe("v", v)
    sd = _describe("slot_mapping", slot_mapping)
    kcd, vcd = _describe("k_cache", k_cache), _describe("v_cache", v_cache)
    kv_scale, ks, vs = _kv_scales(k_scale, v_scale)
    _, hkv, d, page, kv_quant = _check_append_tensors(kd, vd, sd, kcd, vcd,
                                                      kv_scale, layout)
    scales = (None, None)
    if kv_quant is not None:
        want = tuple(_ext.kv_scale_shape(kv_scale, hkv, page, layout,
                                         kcd.shape[0]))
        device = kd.device
        scales = tuple(
            _scale_desc(name, _scale_operand(name, s, want, device),
                        device).as_tuple()
            for name, s in (("k_scale", ks), ("v_scale", vs)))
    appender = _appender(hkv, d, page, kd.dtype, layout, kv_quant)
    return appender.append, (kd.as_tuple(), vd.as_tuple(), sd.as_tuple(),
                             kcd.as_tuple(), vcd.as_tuple(), *scales,
                             _resolve_stream(stream, k))


def _resolve_lse(lse, variants, q):
    """The log-sum-exp output: `lse`, or a new torch tensor [batch,
    num_heads] when asked for and not given."""
    if "lse" not in variants or lse is not None:
        return lse
    torch = _torch()
    if torch is None or type(q).__module__ != "torch":
        raise ValueError("lse is required with return_lse unless q is a "
                         "torch tensor")
    return _new_lse(q)


def _resolve_tensors(q, k_cache, v_cache, block_table, seq_lens, out,
                     workspace, layout, max_seq_len, num_splits, variants=(),
                     k_scale=None):
    """decode()'s tensors with DLPack exporters read through torch, and out
    and the workspace allocated from torch when not given (for an fp8
    cache, of the config k_scale names; where k_scale and k_cache disagree,
    none: _prepare then says why)."""
    torch = _torch()
    if torch is not None:
        # DLPack exporters become zero-copy torch views, so they get torch's
        # stream and allocations like torch tensors.
        q, k_cache, v_cache, block_table, seq_lens, out = (
            _from_dlpack(torch, t) for t in (q, k_cache, v_cache,
                                             block_table, seq_lens, out))
    is_torch = torch is not None and type(q).__module__ == "torch"
    if out is None:
        if not is_torch:
            raise ValueError("out is required unless q is a torch tensor")
        out = _new_out(q)
    kv_scale = _scale_kind(k_scale)
    fp8 = (type(k_cache).__module__ == "torch"
           and (_TORCH_DTYPE_NAMES or _torch_dtype_names()).get(
               k_cache.dtype) in _FP8_DTYPES)
    if workspace is None and is_torch and (kv_scale is not None) == fp8:
        n = workspace_size(q, k_cache, block_table, layout=layout,
                           max_seq_len=max_seq_len, num_splits=num_splits,
                           variants=variants, kv_scale=kv_scale)
        if n:
            workspace = _new_workspace(n, q)
    return q, k_cache, v_cache, block_table, seq_lens, out, workspace


def _resolve_stream(stream, q):
    """A raw stream handle: `stream` itself, a torch stream's handle, or
    torch's current stream (on q's device for a torch q), or 0."""
    if stream is None:
        torch = _torch()
        if torch is not None and type(q).__module__ == "torch":
            return _current_stream(torch, q.get_device())
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.current_stream().cuda_stream
        return 0
    if hasattr(stream, "cuda_stream"):
        return stream.cuda_stream
    return int(stream)


_TORCH = None


def _torch():
    """torch, or None where it is not installed (looked up once)."""
    global _TORCH
    if _TORCH is None:
        try:
            import torch
            _TORCH = torch
        except ImportError:
            _TORCH = False
    return _TORCH or None


def _from_dlpack(torch, t):
    if (t is None or type(t).__module__ == "torch"
            or hasattr(t, "__cuda_array_interface__")
            or not hasattr(t, "__dlpack__")):
        return t
    return torch.from_dlpack(t)


def _current_stream(torch, device):
    """The raw handle of torch's current stream on `device`."""
    return _current_stream_function(torch)(device)


def _current_stream_function(torch):
    """device -> the raw handle of torch's current stream on it."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw
    return lambda device: torch.cuda.current_stream(device).cuda_stream


# What decode() and merge() allocate when not given; the checked path and
# the torch path (which calls these from C++) allocate the same.


def _new_out(q):
    return _TORCH.empty_like(q)


def _new_lse(q):
    """float32 [batch, num_heads] ([batch, L, num_heads] for a multi-token
    q) on q's device."""
    # new_empty skips building a torch.device from q.device.
    return q.new_empty(q.shape[:-1], dtype=_TORCH.float32)


def _new_workspace(nbytes, q):
    return q.new_empty(nbytes, dtype=_TORCH.uint8)


def _new_merge_out(partial_out):
    """[batch, num_heads, head_dim] of partial_out's dtype and device."""
    return partial_out.new_empty(tuple(partial_out.shape[1:]))


def _new_merge_lse(partial_out):
    """float32 [batch, num_heads] on partial_out's device."""
    return partial_out.new_empty(tuple(partial_out.shape[1:3]),
                                 dtype=_TORCH.float32)


def _enable_torch_path():
    """Lets _ext take decode() and merge() calls on torch CUDA tensors
    itself (python/src/torch_calls.cpp): it reads each tensor through
    torch's accessors in C++, where the checked path describes it in
    Python. Without torch, every call takes the checked path."""
    torch = _torch()
    if torch is None:
        return
    try:
        _ext.set_torch(torch.Tensor, list(_torch_dtype_names().items()),
                       _current_stream_function(torch), _new_out, _new_lse,
                       _new_workspace, _new_merge_out, _new_merge_lse,
                       _scale_tensor)
    except (AttributeError, TypeError):
        pass  # a torch.Tensor without the accessors read: the checked path


_enable_torch_path()

from . import _torch_ops  # noqa: E402,F401  registers paged_attn::decode
