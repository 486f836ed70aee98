//===- torch_calls.cpp - decode() and merge() on torch tensors ------------===//
//
// paged_attn.decode() and merge() offer their arguments here first. A call
// is taken when every tensor is a torch.Tensor (the class itself) on one
// CUDA device, of a dtype the runtime knows, every option is a plain value
// that Python's checked path takes as it is (a float k_scale or v_scale is
// read as the device tensor Python keeps for its value), and Python has
// made the decoder (merger) of the config before. Then the tensors are read
// through torch's accessors, what was not given is allocated by Python's
// functions for it, and the runtime checks shapes, strides, alignment and
// capacity and launches, as on every call. Any other call returns None and
// takes the checked path (paged_attn/__init__.py), which also runs when the
// runtime refuses a call taken here, so that the error is the one it gives.
//
// Why a call taken here succeeds exactly when it would on the checked
// path: of that path's rules, those the runtime does not check again are
// read here on every call (each tensor's class, that it is on a CUDA
// device, one device for all; k_scale and v_scale given together, with an
// fp8 cache only, a float finite and positive). The others (ranks, dtypes
// and shapes against each other, the op's rules) hold for a call exactly
// when the runtime accepts it with the decoder of the config that q,
// k_cache and k_scale's rank name, as the runtime checks every operand
// against that config's kernel parameters.
//
//===----------------------------------------------------------------------===//

#include "ext.h"

#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/KernelABI.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace nb = nanobind;
using namespace paged_attn;
using namespace paged_attn::python;

namespace {

//===----------------------------------------------------------------------===//
// torch, as Python hands it over
//===----------------------------------------------------------------------===//

/// What the torch calls read tensors with and allocate through, set by
/// Python when torch imports; freed with the module (see defineTorchCalls).
struct Torch {
  nb::object type;                    ///< torch.Tensor
  PyTypeObject *tensorType = nullptr; ///< the same; its instances are taken
  /// torch's dtype objects (singletons) and the runtime's dtypes.
  std::vector<std::pair<nb::object, DType>> dtypes;
  nb::object currentStream; ///< device index -> raw handle of its stream
  nb::object newOut;        ///< q -> decode()'s out
  nb::object newLse;        ///< q -> decode()'s lse
  nb::object newWorkspace;  ///< (bytes, q) -> decode()'s workspace
  nb::object newMergeOut;   ///< partial_out -> merge()'s out
  nb::object newMergeLse;   ///< partial_out -> merge()'s lse
  /// (value, device index) -> the float32 [] tensor on that device that
  /// decode() reads a float k_scale or v_scale from (Python keeps one per
  /// (device, value) and never frees it; it raises while a CUDA graph is
  /// being captured and it has none yet).
  nb::object scaleTensor;
  /// The tensors scaleTensor gave, by (device, value), read: a float
  /// scale seen before costs a lookup.
  std::map<std::pair<int64_t, double>, std::pair<nb::object, Tensor>>
      scaleTensors;
  // torch.Tensor's accessors, looked up once: used on a tensor directly,
  // they skip the lookup of the attribute on it, which costs as much as a
  // method's own work.
  nb::object isCuda, isCpu, dtype, shape, nbytes;      ///< properties
  nb::object getDevice, stride, dataPtr, isContiguous; ///< methods
  nb::object cudaStream = nb::str("cuda_stream");
};

Torch *torchApi = nullptr;

/// torch.Tensor's `name`: a property (a descriptor with a getter) or a
/// method; TypeError when it is not one.
nb::object accessor(nb::handle tensorType, const char *name, bool property) {
  nb::object found = nb::steal(PyObject_GetAttrString(tensorType.ptr(), name));
  if (!found.is_valid())
    throw nb::python_error();
  if (property ? !Py_TYPE(found.ptr())->tp_descr_get
               : !PyCallable_Check(found.ptr()))
    throw nb::type_error(("set_torch: torch.Tensor." + std::string(name) +
                          " is not a " + (property ? "property" : "method"))
                             .c_str());
  return found;
}

/// Clears the error a call into Python raised: the call goes to the
/// checked path, which meets the same error and reports it in its own
/// order. An error that is no Exception (KeyboardInterrupt) propagates.
void clearForCheckedPath() {
  if (!PyErr_ExceptionMatches(PyExc_Exception))
    throw nb::python_error();
  PyErr_Clear();
}

/// The new reference a call into Python returned, or null with its error
/// cleared (clearForCheckedPath).
nb::object resultOrNull(PyObject *result) {
  if (!result)
    clearForCheckedPath();
  return nb::steal(result);
}

/// obj.name, or null (resultOrNull).
nb::object getAttr(nb::handle obj, const nb::object &name) {
  return resultOrNull(PyObject_GetAttr(obj.ptr(), name.ptr()));
}

/// The value of `property` (a descriptor of obj's class) on obj, or null.
nb::object getProperty(const nb::object &property, nb::handle obj) {
  return resultOrNull(
      Py_TYPE(property.ptr())
          ->tp_descr_get(property.ptr(), obj.ptr(),
                         reinterpret_cast<PyObject *>(Py_TYPE(obj.ptr()))));
}

/// fn(arg) (a method of arg's class called on it, or a function), or null.
nb::object callWith(const nb::object &fn, nb::handle arg) {
  return resultOrNull(PyObject_CallOneArg(fn.ptr(), arg.ptr()));
}

/// The value of a Python int that fits in int64_t.
std::optional<int64_t> int64Of(nb::handle obj) {
  if (!obj.is_valid() || !PyLong_Check(obj.ptr()))
    return std::nullopt;
  int overflow = 0;
  long long value = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
  if (value == -1 && PyErr_Occurred()) {
    clearForCheckedPath();
    return std::nullopt;
  }
  if (overflow)
    return std::nullopt;
  return value;
}

/// The value of a Python int in [0, 2^64).
std::optional<uint64_t> uint64Of(nb::handle obj) {
  if (!obj.is_valid() || !PyLong_Check(obj.ptr()))
    return std::nullopt;
  unsigned long long value = PyLong_AsUnsignedLongLong(obj.ptr());
  if (value == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    clearForCheckedPath(); // OverflowError: negative or too large
    return std::nullopt;
  }
  return value;
}

/// Reads a tuple of at most four ints (a torch.Size, a stride tuple).
bool readDims(nb::handle tuple, int64_t (&dims)[4], int *rank) {
  if (!tuple.is_valid() || !PyTuple_Check(tuple.ptr()))
    return false;
  Py_ssize_t n = PyTuple_GET_SIZE(tuple.ptr());
  if (n > 4)
    return false;
  for (Py_ssize_t i = 0; i < n; ++i) {
    std::optional<int64_t> dim = int64Of(PyTuple_GET_ITEM(tuple.ptr(), i));
    if (!dim)
      return false;
    dims[i] = *dim;
  }
  *rank = static_cast<int>(n);
  return true;
}

//===----------------------------------------------------------------------===//
// Tensors
//===----------------------------------------------------------------------===//

/// A torch tensor as the runtime sees it, and its CUDA device.
struct CudaTensor {
  Tensor view;
  int64_t device = -1;
};

/// Reads a torch.Tensor's dtype (one the runtime knows), sizes and strides
/// (rank at most 4) and data pointer, through the accessors the checked
/// path's _describe uses; false for anything else. The caller has checked
/// that `obj` is a torch.Tensor.
bool readTensorView(const Torch &api, nb::handle obj, Tensor *view) {
  nb::object dtype = getProperty(api.dtype, obj);
  auto known =
      std::find_if(api.dtypes.begin(), api.dtypes.end(),
                   [&](const auto &row) { return row.first.is(dtype); });
  if (known == api.dtypes.end())
    return false;
  view->dtype = known->second;
  int rank = 0, strideRank = 0;
  if (!readDims(getProperty(api.shape, obj), view->sizes, &rank) ||
      !readDims(callWith(api.stride, obj), view->strides, &strideRank) ||
      rank != strideRank)
    return false;
  view->rank = rank;
  std::optional<uint64_t> data = uint64Of(callWith(api.dataPtr, obj));
  if (!data)
    return false;
  view->data = reinterpret_cast<void *>(static_cast<uintptr_t>(*data));
  return true;
}

/// Reads `obj` when it is a torch.Tensor on a CUDA device (readTensorView);
/// false for anything else.
bool readCudaTensor(const Torch &api, nb::handle obj, CudaTensor *t) {
  if (Py_TYPE(obj.ptr()) != api.tensorType)
    return false;
  if (!getProperty(api.isCuda, obj).is(nb::handle(Py_True)))
    return false;
  std::optional<int64_t> device = int64Of(callWith(api.getDevice, obj));
  if (!device)
    return false;
  t->device = *device;
  return readTensorView(api, obj, &t->view);
}

/// readCudaTensor for an optional operand: None is an absent tensor (null
/// data); a tensor must be on `device`.
bool readOptional(const Torch &api, nb::handle obj, int64_t device,
                  Tensor *view) {
  if (obj.is_none()) {
    *view = Tensor();
    return true;
  }
  CudaTensor t;
  if (!readCudaTensor(api, obj, &t) || t.device != device)
    return false;
  *view = t.view;
  return true;
}

/// (pointer, bytes) of a workspace given as a contiguous CUDA
/// torch.Tensor, as the checked path's _buffer reads it (its nbytes is
/// numel() * element_size()).
bool readBuffer(const Torch &api, nb::handle obj, uintptr_t *data,
                size_t *bytes) {
  if (Py_TYPE(obj.ptr()) != api.tensorType ||
      !getProperty(api.isCuda, obj).is(nb::handle(Py_True)) ||
      !callWith(api.isContiguous, obj).is(nb::handle(Py_True)))
    return false;
  std::optional<uint64_t> ptr = uint64Of(callWith(api.dataPtr, obj));
  std::optional<int64_t> nbytes = int64Of(getProperty(api.nbytes, obj));
  if (!ptr || !nbytes || *nbytes < 0)
    return false;
  *data = static_cast<uintptr_t>(*ptr);
  *bytes = static_cast<size_t>(*nbytes);
  return true;
}

/// The tensor Python's allocator `make` returns for `like`, read; null
/// where it raised (out of memory: the checked path allocates again and
/// raises in its order) or made something else.
nb::object allocate(const Torch &api, const nb::object &make, nb::handle like,
                    int64_t device, Tensor *view) {
  nb::object made = callWith(make, like);
  CudaTensor t;
  if (!made.is_valid() || !readCudaTensor(api, made, &t) || t.device != device)
    return nb::object();
  *view = t.view;
  return made;
}

//===----------------------------------------------------------------------===//
// Options: the values the checked path takes as they are. Anything else
// (a numpy scalar, a bool for an int, a value out of range) is left to it.
//===----------------------------------------------------------------------===//

/// A float or int that is finite and positive, as a float (as the checked
/// path passes it on).
std::optional<float> positiveNumber(nb::handle obj) {
  double value;
  if (PyFloat_CheckExact(obj.ptr())) {
    value = PyFloat_AS_DOUBLE(obj.ptr());
  } else if (PyLong_CheckExact(obj.ptr())) {
    value = PyLong_AsDouble(obj.ptr());
    if (value == -1.0 && PyErr_Occurred()) {
      clearForCheckedPath(); // OverflowError
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (!(value > 0) || !std::isfinite(value))
    return std::nullopt;
  return static_cast<float>(value);
}

/// An int (not a bool) in [lo, hi].
std::optional<int64_t> integerIn(nb::handle obj, int64_t lo, int64_t hi) {
  if (!PyLong_CheckExact(obj.ptr()))
    return std::nullopt;
  std::optional<int64_t> value = int64Of(obj);
  if (!value || *value < lo || *value > hi)
    return std::nullopt;
  return value;
}

/// True or False themselves.
std::optional<bool> boolOf(nb::handle obj) {
  if (obj.ptr() == Py_True)
    return true;
  if (obj.ptr() == Py_False)
    return false;
  return std::nullopt;
}

/// The layout a str names.
std::optional<Layout> layoutNamed(nb::handle obj) {
  if (!PyUnicode_CheckExact(obj.ptr()))
    return std::nullopt;
  const char *name = PyUnicode_AsUTF8(obj.ptr());
  if (!name) {
    clearForCheckedPath(); // a str that is no UTF-8
    return std::nullopt;
  }
  return parseLayout(name);
}

/// The raw handle of `stream`: an int, a torch stream's cuda_stream, or
/// for None torch's current stream on `device` (as _resolve_stream).
std::optional<uintptr_t> streamHandle(const Torch &api, nb::handle stream,
                                      int64_t device) {
  nb::object handle;
  if (stream.is_none())
    handle = callWith(api.currentStream, nb::int_(device));
  else if (PyLong_CheckExact(stream.ptr()))
    handle = nb::borrow(stream);
  else
    handle = getAttr(stream, api.cudaStream);
  std::optional<uint64_t> value = uint64Of(handle);
  if (!value)
    return std::nullopt;
  return static_cast<uintptr_t>(*value);
}

//===----------------------------------------------------------------------===//
// Host lengths: decode()'s host_seq_lens where they are one of the common
// containers of ints, read without a Python object per entry. Anything else
// (and any value out of range) is left to Python's _host_seq_lens, which
// takes what it can and says what is wrong with the rest.
//===----------------------------------------------------------------------===//

/// `value` as a length: false outside [0, INT32_MAX].
template <typename T> bool lengthOf(T value, int32_t *length) {
  if (value < 0 || value > T(INT32_MAX))
    return false;
  *length = static_cast<int32_t>(value);
  return true;
}

/// `count` lengths of type T at `data`.
template <typename T>
bool readLengths(const void *data, int64_t count,
                 std::vector<int32_t> *lengths) {
  lengths->resize(count);
  const T *values = static_cast<const T *>(data);
  for (int64_t i = 0; i < count; ++i)
    if (!lengthOf(values[i], &(*lengths)[i]))
      return false;
  return true;
}

/// A list or tuple of ints (not bools).
bool readLengthSequence(nb::handle obj, int64_t batch,
                        std::vector<int32_t> *lengths) {
  PyObject *seq = obj.ptr();
  if (!PyList_CheckExact(seq) && !PyTuple_CheckExact(seq))
    return false;
  if (PySequence_Fast_GET_SIZE(seq) != batch)
    return false;
  lengths->resize(batch);
  PyObject **items = PySequence_Fast_ITEMS(seq);
  for (int64_t i = 0; i < batch; ++i) {
    if (!PyLong_CheckExact(items[i]))
      return false;
    std::optional<int64_t> value = int64Of(items[i]);
    if (!value || !lengthOf(*value, &(*lengths)[i]))
      return false;
  }
  return true;
}

/// A one-dimensional buffer (a NumPy array) of native int32 or int64.
bool readLengthBuffer(nb::handle obj, int64_t batch,
                      std::vector<int32_t> *lengths) {
  if (!PyObject_CheckBuffer(obj.ptr()))
    return false;
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_FORMAT | PyBUF_ND) != 0) {
    clearForCheckedPath(); // a buffer that is not C-contiguous
    return false;
  }
  std::string_view format = view.format ? view.format : "B";
  if (!format.empty() && std::string_view("@=<").find(format[0]) !=
                             std::string_view::npos)
    format.remove_prefix(1);
  bool read = false;
  if (view.ndim == 1 && view.shape[0] == batch && format.size() == 1) {
    if (format[0] == 'i' && view.itemsize == 4)
      read = readLengths<int32_t>(view.buf, batch, lengths);
    else if ((format[0] == 'l' || format[0] == 'q') && view.itemsize == 8)
      read = readLengths<int64_t>(view.buf, batch, lengths);
  }
  PyBuffer_Release(&view);
  return read;
}

/// A CPU torch.Tensor of int32 or int64 of one contiguous dimension.
bool readLengthTensor(const Torch &api, nb::handle obj, int64_t batch,
                      std::vector<int32_t> *lengths) {
  Tensor t;
  if (Py_TYPE(obj.ptr()) != api.tensorType ||
      !getProperty(api.isCpu, obj).is(nb::handle(Py_True)) ||
      !readTensorView(api, obj, &t) || t.rank != 1 || t.sizes[0] != batch ||
      (batch > 1 && t.strides[0] != 1) || (batch && !t.data))
    return false;
  if (t.dtype == DType::I32)
    return readLengths<int32_t>(t.data, batch, lengths);
  if (t.dtype == DType::I64)
    return readLengths<int64_t>(t.data, batch, lengths);
  return false;
}

} // namespace

bool paged_attn::python::readHostSeqLens(nb::handle obj, int64_t batch,
                                         std::vector<int32_t> *lengths) {
  if (readLengthSequence(obj, batch, lengths) ||
      readLengthBuffer(obj, batch, lengths))
    return true;
  return torchApi && readLengthTensor(*torchApi, obj, batch, lengths);
}

std::vector<int32_t> paged_attn::python::hostSeqLensOf(nb::handle obj,
                                                      int64_t batch) {
  std::vector<int32_t> lengths;
  if (readHostSeqLens(obj, batch, &lengths))
    return lengths;
  // Python's rules: its error, or the lengths as a list of ints.
  nb::object checked = nb::module_::import_("paged_attn")
                           .attr("_host_seq_lens")(obj, batch);
  if (!readLengthSequence(checked, batch, &lengths))
    throw nb::value_error("host_seq_lens: cannot be read");
  return lengths;
}

namespace {

//===----------------------------------------------------------------------===//
// The decoders and mergers Python made, by config
//===----------------------------------------------------------------------===//

/// (num_heads, num_kv_heads, head_dim, page_size, dtype, layout, variants,
/// the caches' quantisation)
using DecodeKey = std::tuple<int64_t, int64_t, int64_t, int64_t, DType, Layout,
                             unsigned, unsigned>;
/// (num_heads, head_dim, dtype, sinks, lse)
using MergeKey = std::tuple<int64_t, int64_t, DType, bool, bool>;

unsigned variantBits(const DecodeVariants &v) {
  return unsigned(v.window) | unsigned(v.softCap) << 1 |
         unsigned(v.alibi) << 2 | unsigned(v.sinks) << 3 | unsigned(v.lse) << 4;
}

/// 0 for caches of q's dtype, else one number per (fp8 dtype, scale kind).
unsigned kvQuantBits(const std::optional<KVQuant> &quant) {
  if (!quant)
    return 0;
  return 1 + unsigned(quant->dtype) * 3 + unsigned(quant->scale);
}

DecodeKey decodeKey(const KernelConfig &c) {
  return {c.numHeads,
          c.numKVHeads,
          c.headDim,
          c.pageSize,
          c.dtype,
          c.layout,
          variantBits(c.variants),
          kvQuantBits(c.kvQuant)};
}

/// Read and written with the GIL held. Never freed: it holds no Python
/// object, and so may live as long as the process.
struct Registry {
  std::map<DecodeKey, std::shared_ptr<const Decoder>> decoders;
  std::map<MergeKey, std::shared_ptr<const Merger>> mergers;
};

Registry &registry() {
  static Registry *instance = new Registry;
  return *instance;
}

template <typename Map>
typename Map::mapped_type find(const Map &map,
                               const typename Map::key_type &key) {
  auto it = map.find(key);
  return it == map.end() ? nullptr : it->second;
}

//===----------------------------------------------------------------------===//
// decode
//===----------------------------------------------------------------------===//

/// The largest num_splits the checked path takes (its _MAX_SPLITS; the
/// runtime's bound, the grid's z dimension).
constexpr int64_t kMaxNumSplits = 65535;

/// decode()'s arguments: the five tensors, out, workspace, then its other
/// keywords in its order.
struct DecodeArgs {
  nb::handle q, k, v, blockTable, seqLens, out, workspace, scale, layout,
      numSplits, maxSeqLen, checkPageTable, stream, window, softCap,
      alibiSlopes, sinks, returnLse, lse, kScale, vScale, treeMask,
      hostSeqLens;
};

/// The options into `p` and `variants`; false where one is left to the
/// checked path.
bool readDecodeOptions(const DecodeArgs &a, DecodeParams *p, Layout *layout,
                       DecodeVariants *variants) {
  std::optional<Layout> named = layoutNamed(a.layout);
  std::optional<int64_t> numSplits = integerIn(a.numSplits, 0, kMaxNumSplits);
  std::optional<bool> checkPageTable = boolOf(a.checkPageTable);
  std::optional<bool> returnLse = boolOf(a.returnLse);
  if (!named || !numSplits || !checkPageTable || !returnLse)
    return false;
  *layout = *named;
  p->numSplits = static_cast<int>(*numSplits);
  p->checkPageTable = *checkPageTable;
  if (!a.scale.is_none()) {
    std::optional<float> scale = positiveNumber(a.scale);
    if (!scale)
      return false;
    p->scale = *scale;
  }
  if (!a.maxSeqLen.is_none()) {
    std::optional<int64_t> bound = integerIn(a.maxSeqLen, 0, INT64_MAX);
    if (!bound)
      return false;
    p->maxSeqLen = *bound;
  }
  if (!a.window.is_none()) {
    std::optional<int64_t> window = integerIn(a.window, 1, INT64_MAX);
    if (!window)
      return false;
    p->window = *window;
  }
  if (!a.softCap.is_none()) {
    std::optional<float> cap = positiveNumber(a.softCap);
    if (!cap)
      return false;
    p->softCap = *cap;
  }
  variants->window = !a.window.is_none();
  variants->softCap = !a.softCap.is_none();
  variants->alibi = !a.alibiSlopes.is_none();
  variants->sinks = !a.sinks.is_none();
  variants->lse = *returnLse || !a.lse.is_none();
  return true;
}

/// The granularity whose scales have rank `rank` (the rank of the Spec's
/// kvScaleShape for it), if one has.
std::optional<KVScaleKind> kvScaleKindOfRank(int rank) {
  for (KVScaleKind kind :
       {KVScaleKind::Tensor, KVScaleKind::Head, KVScaleKind::Token}) {
    DecodeSpec spec;
    spec.kvQuant = KVQuant{DType::F8E4M3FN, kind};
    if (spec.kvScaleShape(1).size() == size_t(rank))
      return kind;
  }
  return std::nullopt;
}

/// The quantisation that the caches' dtype and k_scale's rank name (none
/// for caches of another dtype without scales); false where the checked
/// path is left to say what is wrong (an fp8 cache without both scales,
/// scales without one, a k_scale of no granularity's rank).
bool kvQuantOf(const DecodeParams &p, std::optional<KVQuant> *quant) {
  bool scaled = p.kScale.data || p.vScale.data;
  if (!isQuantizedCacheDType(p.kCache.dtype)) {
    quant->reset();
    return !scaled;
  }
  std::optional<KVScaleKind> kind = kvScaleKindOfRank(p.kScale.rank);
  if (!p.kScale.data || !p.vScale.data || !kind)
    return false;
  *quant = KVQuant{p.kCache.dtype, *kind};
  return true;
}

/// The decoder of the config q, k_cache and k_scale name, where Python made
/// it.
std::shared_ptr<const Decoder> decoderFor(const DecodeParams &p, Layout layout,
                                          const DecodeVariants &variants) {
  const Tensor &q = p.q, &k = p.kCache;
  std::optional<KVQuant> quant;
  if (q.rank != 3 || k.rank != 4 || !kvQuantOf(p, &quant))
    return nullptr;
  CacheDims dims = cacheDims(layout);
  return find(registry().decoders,
              DecodeKey{q.sizes[1], k.sizes[dims.kvHeads], q.sizes[2],
                        k.sizes[dims.page], q.dtype, layout,
                        variantBits(variants), kvQuantBits(quant)});
}

/// The workspace bytes the checked path allocates (workspace_size()).
std::optional<size_t> workspaceBytes(const Decoder &decoder,
                                     const DecodeParams &p) {
  int64_t batch = p.q.sizes[0];
  size_t bytes = 0;
  if (p.numSplits)
    return decoder.workspaceSize(batch, p.numSplits, &bytes)
               ? std::optional<size_t>(bytes)
               : std::nullopt;
  int64_t maxSeqLen = p.maxSeqLen;
  if (maxSeqLen < 0 &&
      __builtin_mul_overflow(p.blockTable.sizes[1], decoder.config().pageSize,
                             &maxSeqLen))
    return std::nullopt;
  return decoder.maxWorkspaceSize(batch, maxSeqLen, &bytes)
             ? std::optional<size_t>(bytes)
             : std::nullopt;
}

/// k_scale or v_scale into `view`: None is absent; a tensor must be on
/// `device`; a float (finite and positive, as the checked path takes it) is
/// read as the float32 [] tensor Python keeps on `device` for its value.
bool readScale(Torch &api, nb::handle obj, int64_t device, Tensor *view) {
  if (!PyFloat_CheckExact(obj.ptr()))
    return readOptional(api, obj, device, view);
  double value = PyFloat_AS_DOUBLE(obj.ptr());
  if (!(value > 0) || !std::isfinite(value))
    return false;
  auto key = std::make_pair(device, value);
  auto it = api.scaleTensors.find(key);
  if (it == api.scaleTensors.end()) {
    nb::object made = resultOrNull(
        PyObject_CallFunction(api.scaleTensor.ptr(), "OL", obj.ptr(),
                              static_cast<long long>(device)));
    CudaTensor t;
    if (!made.is_valid() || !readCudaTensor(api, made, &t) ||
        t.device != device || t.view.dtype != DType::F32 || t.view.rank != 0)
      return false;
    it = api.scaleTensors.emplace(key, std::make_pair(made, t.view)).first;
  }
  *view = it->second.second;
  return true;
}

/// decode()'s tensors into `p`, all on one CUDA device (`*device`), and the
/// workspace when given; false for a call left to the checked path.
bool readDecodeTensors(Torch &api, const DecodeArgs &a, DecodeParams *p,
                       int64_t *device) {
  CudaTensor q, k, v, blockTable, seqLens;
  if (!readCudaTensor(api, a.q, &q) || !readCudaTensor(api, a.k, &k) ||
      !readCudaTensor(api, a.v, &v) ||
      !readCudaTensor(api, a.blockTable, &blockTable) ||
      !readCudaTensor(api, a.seqLens, &seqLens))
    return false;
  *device = q.device;
  if (k.device != *device || v.device != *device ||
      blockTable.device != *device || seqLens.device != *device)
    return false;
  p->q = q.view;
  p->kCache = k.view;
  p->vCache = v.view;
  p->blockTable = blockTable.view;
  p->seqLens = seqLens.view;
  uintptr_t workspace = 0;
  if (!readOptional(api, a.out, *device, &p->out) ||
      !readOptional(api, a.alibiSlopes, *device, &p->alibiSlopes) ||
      !readOptional(api, a.sinks, *device, &p->sinks) ||
      !readOptional(api, a.lse, *device, &p->lse) ||
      !readScale(api, a.kScale, *device, &p->kScale) ||
      !readScale(api, a.vScale, *device, &p->vScale) ||
      (!a.workspace.is_none() &&
       !readBuffer(api, a.workspace, &workspace, &p->workspaceBytes)))
    return false;
  p->workspace = reinterpret_cast<void *>(workspace);
  return true;
}

/// What decode() and merge() allocated: out and lse, and decode()'s
/// workspace, which must live until the launch is queued.
struct Allocated {
  nb::object out, lse, workspace;
};

/// Allocates what a decode() call did not give, as the checked path does;
/// false where an allocation failed (the checked path allocates again and
/// reports it, or an error of its own first).
bool allocateMissing(const Torch &api, const DecodeArgs &a,
                     const Decoder &decoder, bool lseVariant, int64_t device,
                     DecodeParams *p, Allocated *made) {
  made->out = nb::borrow(a.out);
  made->lse = nb::borrow(a.lse);
  if (made->out.is_none() &&
      !(made->out = allocate(api, api.newOut, a.q, device, &p->out)).is_valid())
    return false;
  if (lseVariant && made->lse.is_none() &&
      !(made->lse = allocate(api, api.newLse, a.q, device, &p->lse)).is_valid())
    return false;
  if (!a.workspace.is_none())
    return true;
  std::optional<size_t> bytes = workspaceBytes(decoder, *p);
  if (!bytes)
    return false; // the checked path's workspace_size() says why
  if (!*bytes)
    return true;
  made->workspace = resultOrNull(PyObject_CallFunction(
      api.newWorkspace.ptr(), "nO", Py_ssize_t(*bytes), a.q.ptr()));
  uintptr_t workspace = 0;
  if (!made->workspace.is_valid() ||
      !readBuffer(api, made->workspace, &workspace, &p->workspaceBytes))
    return false;
  p->workspace = reinterpret_cast<void *>(workspace);
  return true;
}

/// host_seq_lens into `lengths` (which `p` then points into); false where
/// they are left to the checked path, as is a tree mask (a multi-token
/// decode).
bool readHostLengths(const DecodeArgs &a, DecodeParams *p,
                     std::vector<int32_t> *lengths) {
  if (!a.treeMask.is_none())
    return false;
  if (a.hostSeqLens.is_none())
    return true;
  if (p->q.rank < 1 || !readHostSeqLens(a.hostSeqLens, p->q.sizes[0], lengths))
    return false;
  p->hostSeqLens = lengths->data();
  return true;
}

nb::object decodeTorch(const DecodeArgs &a) {
  if (!torchApi || Py_TYPE(a.q.ptr()) != torchApi->tensorType)
    return nb::none();
  Torch &api = *torchApi;
  DecodeParams p;
  Layout layout;
  DecodeVariants variants;
  int64_t device = -1;
  std::vector<int32_t> hostLengths;
  if (!readDecodeOptions(a, &p, &layout, &variants) ||
      !readDecodeTensors(api, a, &p, &device) ||
      !readHostLengths(a, &p, &hostLengths))
    return nb::none();
  std::optional<uintptr_t> stream = streamHandle(api, a.stream, device);
  std::shared_ptr<const Decoder> decoder = decoderFor(p, layout, variants);
  Allocated made;
  if (!stream || !decoder ||
      !allocateMissing(api, a, *decoder, variants.lse, device, &p, &made))
    return nb::none();
  Status s;
  {
    // Launches are asynchronous; the check mode synchronises.
    nb::gil_scoped_release release;
    s = decoder->decode(p, reinterpret_cast<void *>(*stream));
  }
  check(s);
  if (variants.lse)
    return nb::make_tuple(made.out, made.lse);
  return made.out;
}

//===----------------------------------------------------------------------===//
// merge
//===----------------------------------------------------------------------===//

/// merge()'s arguments, in its order.
struct MergeArgs {
  nb::handle partialOut, partialLse, sinks, returnLse, out, lse, stream;
};

/// merge()'s tensors into `p`, all on one CUDA device (`*device`); false
/// for a call left to the checked path.
bool readMergeTensors(const Torch &api, const MergeArgs &a, MergeParams *p,
                      int64_t *device) {
  CudaTensor partials, partialLses;
  if (!readCudaTensor(api, a.partialOut, &partials) ||
      !readCudaTensor(api, a.partialLse, &partialLses) ||
      partialLses.device != partials.device)
    return false;
  *device = partials.device;
  p->partialOut = partials.view;
  p->partialLse = partialLses.view;
  return readOptional(api, a.out, *device, &p->out) &&
         readOptional(api, a.sinks, *device, &p->sinks) &&
         readOptional(api, a.lse, *device, &p->lse);
}

/// The merger of the config partial_out names, where Python made it.
std::shared_ptr<const Merger> mergerFor(const MergeParams &p, bool sinks,
                                        bool lse) {
  const Tensor &partials = p.partialOut;
  if (partials.rank != 4)
    return nullptr;
  return find(registry().mergers, MergeKey{partials.sizes[2], partials.sizes[3],
                                           partials.dtype, sinks, lse});
}

/// Allocates out and lse where the call did not give them, as the checked
/// path does; false where an allocation failed.
bool allocateMissing(const Torch &api, const MergeArgs &a, bool lseVariant,
                     int64_t device, MergeParams *p, Allocated *made) {
  made->out = nb::borrow(a.out);
  made->lse = nb::borrow(a.lse);
  if (made->out.is_none() &&
      !(made->out =
            allocate(api, api.newMergeOut, a.partialOut, device, &p->out))
           .is_valid())
    return false;
  return !lseVariant || !made->lse.is_none() ||
         (made->lse =
              allocate(api, api.newMergeLse, a.partialOut, device, &p->lse))
             .is_valid();
}

nb::object mergeTorch(const MergeArgs &a) {
  if (!torchApi || Py_TYPE(a.partialOut.ptr()) != torchApi->tensorType)
    return nb::none();
  const Torch &api = *torchApi;
  std::optional<bool> returnLse = boolOf(a.returnLse);
  MergeParams p;
  int64_t device = -1;
  if (!returnLse || !readMergeTensors(api, a, &p, &device))
    return nb::none();
  bool lseVariant = *returnLse || !a.lse.is_none();
  std::optional<uintptr_t> stream = streamHandle(api, a.stream, device);
  std::shared_ptr<const Merger> merger =
      mergerFor(p, !a.sinks.is_none(), lseVariant);
  Allocated made;
  if (!stream || !merger ||
      !allocateMissing(api, a, lseVariant, device, &p, &made))
    return nb::none();
  Status s;
  {
    nb::gil_scoped_release release;
    s = merger->merge(p, reinterpret_cast<void *>(*stream));
  }
  check(s);
  if (lseVariant)
    return nb::make_tuple(made.out, made.lse);
  return made.out;
}

} // namespace

void paged_attn::python::defineTorchCalls(nb::module_ &m) {
  // The torch objects go with the module, while the interpreter still runs:
  // Python's allocators keep paged_attn's globals (its decoders) alive.
  m.attr("_torch_owner") = nb::capsule(&torchApi, [](void *) noexcept {
    delete std::exchange(torchApi, nullptr);
  });

  m.def(
      "set_torch",
      [](nb::handle tensorType, const std::vector<nb::tuple> &dtypes,
         nb::object currentStream, nb::object newOut, nb::object newLse,
         nb::object newWorkspace, nb::object newMergeOut,
         nb::object newMergeLse, nb::object scaleTensor) {
        if (!PyType_Check(tensorType.ptr()))
          throw nb::type_error("set_torch: torch.Tensor expected");
        auto api = std::make_unique<Torch>();
        api->tensorType = reinterpret_cast<PyTypeObject *>(tensorType.ptr());
        api->type = nb::borrow(tensorType);
        api->isCuda = accessor(tensorType, "is_cuda", /*property=*/true);
        api->isCpu = accessor(tensorType, "is_cpu", true);
        api->dtype = accessor(tensorType, "dtype", true);
        api->shape = accessor(tensorType, "shape", true);
        api->nbytes = accessor(tensorType, "nbytes", true);
        api->getDevice = accessor(tensorType, "get_device", false);
        api->stride = accessor(tensorType, "stride", false);
        api->dataPtr = accessor(tensorType, "data_ptr", false);
        api->isContiguous = accessor(tensorType, "is_contiguous", false);
        for (const nb::tuple &row : dtypes) {
          std::optional<DType> dtype =
              parseDType(nb::cast<std::string>(row[1]));
          if (!dtype)
            throw nb::value_error("set_torch: unknown dtype name");
          api->dtypes.emplace_back(nb::borrow(row[0]), *dtype);
        }
        api->currentStream = std::move(currentStream);
        api->newOut = std::move(newOut);
        api->newLse = std::move(newLse);
        api->newWorkspace = std::move(newWorkspace);
        api->newMergeOut = std::move(newMergeOut);
        api->newMergeLse = std::move(newMergeLse);
        api->scaleTensor = std::move(scaleTensor);
        // No call is reading the previous one: they read it with the GIL
        // held, which this holds.
        delete std::exchange(torchApi, api.release());
      },
      nb::arg("tensor_type"), nb::arg("dtypes"), nb::arg("current_stream"),
      nb::arg("new_out"), nb::arg("new_lse"), nb::arg("new_workspace"),
      nb::arg("new_merge_out"), nb::arg("new_merge_lse"),
      nb::arg("scale_tensor"),
      "Lets decode_torch and merge_torch take torch tensors: torch.Tensor, "
      "[(torch dtype, runtime dtype name)], device -> current raw stream, "
      "the allocators of what decode() and merge() allocate, and (value, "
      "device) -> the float32 [] tensor a float k_scale or v_scale is read "
      "from");

  m.def(
      "register_decoder",
      [](const PyDecoder &decoder) {
        registry().decoders[decodeKey(decoder.decoder->config())] =
            decoder.decoder;
      },
      nb::arg("decoder"),
      "decode_torch takes calls of this decoder's config from now on");

  m.def(
      "register_merger",
      [](const PyMerger &merger) {
        const MergeConfig &c = merger.merger->config();
        registry()
            .mergers[MergeKey{c.numHeads, c.headDim, c.dtype, c.sinks, c.lse}] =
            merger.merger;
      },
      nb::arg("merger"),
      "merge_torch takes calls of this merger's config from now on");

  // Positional arguments as one tuple: nanobind refuses None for a named
  // parameter unless annotated, and most of these are None.
  m.def(
      "decode_torch",
      [](nb::args args) {
        if (args.size() != 23)
          throw nb::type_error("decode_torch takes decode()'s 23 arguments");
        auto at = [&](Py_ssize_t i) {
          return nb::handle(PyTuple_GET_ITEM(args.ptr(), i));
        };
        return decodeTorch({at(0),  at(1),  at(2),  at(3),  at(4),  at(5),
                            at(6),  at(7),  at(8),  at(9),  at(10), at(11),
                            at(12), at(13), at(14), at(15), at(16), at(17),
                            at(18), at(19), at(20), at(21), at(22)});
      },
      "decode()'s arguments: the five tensors, out, workspace, then its "
      "other keywords in its order; its result, or None for a call left to "
      "the checked path");

  m.def(
      "read_host_seq_lens",
      [](nb::handle lengths, int64_t batch) -> nb::object {
        std::vector<int32_t> read;
        if (!readHostSeqLens(lengths, batch, &read))
          return nb::none();
        nb::list list;
        for (int32_t length : read)
          list.append(length);
        return list;
      },
      nb::arg("host_seq_lens").none(), nb::arg("batch"),
      "host_seq_lens as decode_torch and Decoder.decode read them without "
      "Python (a list of ints), or None where they leave them to Python's "
      "_host_seq_lens");

  m.def(
      "merge_torch",
      [](nb::args args) {
        if (args.size() != 7)
          throw nb::type_error("merge_torch takes merge()'s 7 arguments");
        auto at = [&](Py_ssize_t i) {
          return nb::handle(PyTuple_GET_ITEM(args.ptr(), i));
        };
        return mergeTorch({at(0), at(1), at(2), at(3), at(4), at(5), at(6)});
      },
      "merge()'s arguments (partial_out, partial_lse, sinks, return_lse, "
      "out, lse, stream): its result, or None for a call left to the "
      "checked path");
}
