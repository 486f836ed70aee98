//===- xla_ffi.cpp - paged_attn._xla: decode as an XLA FFI custom call ----===//
//
// The handler behind paged_attn.jax.decode: XLA calls it with its buffers on
// its stream, and it launches the runtime's decode there. The decode's
// config (sizes, dtype, layout, variants, fp8 caches) and the kernels'
// location come as attributes fixed at trace time, so the handler reads no
// Python and a compiled executable keeps working after the Python objects
// are gone.
//
// Graph safety: decode() allocates nothing and does not synchronise, and its
// split-KV workspace is a result buffer the call declares (XLA allocates
// it), so XLA may capture the call into a command buffer (a CUDA graph).
// The first call in a context loads the kernels' module (not a stream
// operation, so a capture may include it).
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Spec/DecodeSpec.h"

#include "xla/ffi/api/ffi.h"

#include <nanobind/nanobind.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace nb = nanobind;
namespace ffi = xla::ffi;
using namespace paged_attn;

namespace {

ffi::Error invalidArgument(const std::string &message) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                    "paged_attn.jax.decode: " + message);
}

ffi::Error fromStatus(const Status &s) {
  if (s)
    return ffi::Error::Success();
  return ffi::Error(s.code() == StatusCode::InvalidArgument
                        ? ffi::ErrorCode::kInvalidArgument
                        : ffi::ErrorCode::kInternal,
                    "paged_attn.jax.decode: " + s.message());
}

/// The caches' quantisation the attributes name: none for "" and "", else
/// an fp8 dtype and a scale granularity.
ffi::Error kvQuantOf(std::string_view kvDType, std::string_view kvScale,
                     std::optional<KVQuant> *quant) {
  quant->reset();
  if (kvDType.empty() && kvScale.empty())
    return ffi::Error::Success();
  std::optional<DType> dtype = parseDType(kvDType);
  std::optional<KVScaleKind> kind = parseKVScaleKind(kvScale);
  if (!dtype || !isQuantizedCacheDType(*dtype) || !kind)
    return invalidArgument("bad kv_dtype '" + std::string(kvDType) +
                           "' or kv_scale '" + std::string(kvScale) + "'");
  *quant = KVQuant{*dtype, *kind};
  return ffi::Error::Success();
}

/// The spec the attributes describe, after the op's rules.
ffi::Error specOf(std::string_view dtype, std::string_view layout,
                  std::string_view variants, std::string_view kvDType,
                  std::string_view kvScale, int64_t numHeads,
                  int64_t numKVHeads, int64_t headDim, int64_t pageSize,
                  int64_t queryLen, DecodeSpec *spec) {
  std::optional<DType> parsedDType = parseDType(dtype);
  std::optional<Layout> parsedLayout = parseLayout(layout);
  if (!parsedDType || !parsedLayout)
    return invalidArgument("bad dtype '" + std::string(dtype) +
                           "' or layout '" + std::string(layout) + "'");
  spec->numHeads = numHeads;
  spec->numKVHeads = numKVHeads;
  spec->headDim = headDim;
  spec->pageSize = pageSize;
  spec->dtype = *parsedDType;
  spec->layout = *parsedLayout;
  spec->queryLen = queryLen;
  if (ffi::Error e = kvQuantOf(kvDType, kvScale, &spec->kvQuant); e.failure())
    return e;
  // "window,sinks,...": the variants by their keyword names.
  while (!variants.empty()) {
    size_t comma = variants.find(',');
    std::string_view name = variants.substr(0, comma);
    if (!spec->variants.enable(name))
      return invalidArgument("unknown variant '" + std::string(name) + "'");
    variants =
        comma == std::string_view::npos ? "" : variants.substr(comma + 1);
  }
  if (std::string error = spec->validate(); !error.empty())
    return invalidArgument(error);
  return ffi::Error::Success();
}

bool endsWith(const std::string &s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The decoders call sites have asked for, by kernels and config name: made
/// once per process and kept (a Decoder is thread-safe).
ffi::Error decoderFor(std::string_view kernels, const DecodeSpec &spec,
                      const Decoder **result) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<KernelLibrary>> libraries;
  static std::map<std::string, std::unique_ptr<Decoder>> decoders;
  std::lock_guard<std::mutex> lock(mutex);
  std::string path(kernels);
  std::unique_ptr<Decoder> &decoder = decoders[path + "|" + spec.name()];
  if (!decoder) {
    std::shared_ptr<KernelLibrary> &library = libraries[path];
    if (!library) {
      bool manifest = endsWith(path, ".json");
      Status s = manifest ? KernelLibrary::load(path, &library)
                          : KernelLibrary::loadDirectory(path, &library);
      if (!s)
        return fromStatus(s);
    }
    if (Status s = Decoder::create(library, spec, &decoder); !s)
      return fromStatus(s);
  }
  *result = decoder.get();
  return ffi::Error::Success();
}

std::optional<DType> dtypeOf(ffi::DataType type) {
  switch (type) {
  case ffi::DataType::F16:
    return DType::F16;
  case ffi::DataType::BF16:
    return DType::BF16;
  case ffi::DataType::F32:
    return DType::F32;
  case ffi::DataType::S32:
    return DType::I32;
  case ffi::DataType::S8:
  case ffi::DataType::U8:
  case ffi::DataType::PRED: // one byte per element, as the tree mask's i8
    return DType::I8;
  case ffi::DataType::F8E4M3FN:
    return DType::F8E4M3FN;
  case ffi::DataType::F8E5M2:
    return DType::F8E5M2;
  default:
    return std::nullopt;
  }
}

/// A row-major view of an XLA buffer (the call asks for default layouts).
ffi::Error tensorOf(const char *name, const ffi::AnyBuffer &buffer,
                    Tensor *tensor) {
  std::optional<DType> dtype = dtypeOf(buffer.element_type());
  auto dims = buffer.dimensions();
  if (!dtype || dims.size() > 4)
    return invalidArgument(std::string(name) +
                           " has an element type or rank the runtime does "
                           "not take");
  tensor->data = buffer.untyped_data();
  tensor->dtype = *dtype;
  tensor->rank = static_cast<int>(dims.size());
  int64_t stride = 1;
  for (int i = tensor->rank - 1; i >= 0; --i) {
    tensor->sizes[i] = dims[i];
    tensor->strides[i] = stride;
    stride *= dims[i];
  }
  return ffi::Error::Success();
}

/// The workspace result, rounded up to the 256 bytes the runtime needs
/// (the call declares 256 bytes more than the decode uses).
void *alignedWorkspace(const ffi::AnyBuffer &workspace, size_t *bytes) {
  auto address = reinterpret_cast<uintptr_t>(workspace.untyped_data());
  uintptr_t aligned = (address + 255) & ~uintptr_t(255);
  size_t size = workspace.size_bytes();
  *bytes = size >= aligned - address ? size - (aligned - address) : 0;
  return *bytes ? reinterpret_cast<void *>(aligned) : nullptr;
}

/// The call: q, k_cache, v_cache, block_table, seq_lens, then the
/// variants' tensors in the Spec's order (alibi_slopes, sinks, tree_mask)
/// and an fp8 cache's k_scale and v_scale; results out, workspace, then lse
/// where the config has it.
ffi::Error executeDecode(void *stream, ffi::AnyBuffer q, ffi::AnyBuffer k,
                         ffi::AnyBuffer v, ffi::AnyBuffer blockTable,
                         ffi::AnyBuffer seqLens, ffi::RemainingArgs extraArgs,
                         ffi::Result<ffi::AnyBuffer> out,
                         ffi::Result<ffi::AnyBuffer> workspace,
                         ffi::RemainingRets extraRets, std::string_view kernels,
                         std::string_view dtype, std::string_view layout,
                         std::string_view variants, std::string_view kvDType,
                         std::string_view kvScale, int64_t numHeads,
                         int64_t numKVHeads, int64_t headDim, int64_t pageSize,
                         int64_t queryLen, float scale, int64_t numSplits,
                         int64_t maxSeqLen, int64_t window, float softCap) {
  DecodeSpec spec;
  if (ffi::Error e = specOf(dtype, layout, variants, kvDType, kvScale, numHeads,
                            numKVHeads, headDim, pageSize, queryLen, &spec);
      e.failure())
    return e;
  const Decoder *decoder = nullptr;
  if (ffi::Error e = decoderFor(kernels, spec, &decoder); e.failure())
    return e;

  DecodeParams p;
  struct Operand {
    const char *name;
    const ffi::AnyBuffer &buffer;
    Tensor *tensor;
  };
  for (const Operand &o : {Operand{"q", q, &p.q}, Operand{"k_cache", k, &p.kCache},
                           Operand{"v_cache", v, &p.vCache},
                           Operand{"block_table", blockTable, &p.blockTable},
                           Operand{"seq_lens", seqLens, &p.seqLens},
                           Operand{"out", *out, &p.out}})
    if (ffi::Error e = tensorOf(o.name, o.buffer, o.tensor); e.failure())
      return e;

  // The variants' operands, in the order the Python side passes them.
  size_t next = 0;
  auto takeArg = [&](const char *name, Tensor *tensor) -> ffi::Error {
    ffi::ErrorOr<ffi::AnyBuffer> buffer = extraArgs.get<ffi::AnyBuffer>(next++);
    if (buffer.has_error())
      return invalidArgument(std::string("missing operand ") + name);
    return tensorOf(name, *buffer, tensor);
  };
  const DecodeVariants &has = spec.variants;
  if (has.alibi)
    if (ffi::Error e = takeArg("alibi_slopes", &p.alibiSlopes); e.failure())
      return e;
  if (has.sinks)
    if (ffi::Error e = takeArg("sinks", &p.sinks); e.failure())
      return e;
  if (has.treeMask)
    if (ffi::Error e = takeArg("tree_mask", &p.treeMask); e.failure())
      return e;
  if (spec.kvQuant) {
    if (ffi::Error e = takeArg("k_scale", &p.kScale); e.failure())
      return e;
    if (ffi::Error e = takeArg("v_scale", &p.vScale); e.failure())
      return e;
  }
  if (has.lse) {
    ffi::ErrorOr<ffi::Result<ffi::AnyBuffer>> lse =
        extraRets.get<ffi::AnyBuffer>(0);
    if (lse.has_error())
      return invalidArgument("missing result lse");
    if (ffi::Error e = tensorOf("lse", **lse, &p.lse); e.failure())
      return e;
  }
  if (has.window)
    p.window = window;
  if (has.softCap)
    p.softCap = softCap;

  p.scale = scale;
  p.numSplits = static_cast<int>(numSplits);
  p.maxSeqLen = maxSeqLen;
  p.workspace = alignedWorkspace(*workspace, &p.workspaceBytes);
  return fromStatus(decoder->decode(p, stream));
}

} // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    PagedAttnDecodeExecute, executeDecode,
    ffi::Ffi::Bind()
        .Ctx<ffi::PlatformStream<void *>>()
        .Arg<ffi::AnyBuffer>() // q
        .Arg<ffi::AnyBuffer>() // k_cache
        .Arg<ffi::AnyBuffer>() // v_cache
        .Arg<ffi::AnyBuffer>() // block_table
        .Arg<ffi::AnyBuffer>() // seq_lens
        .RemainingArgs()       // alibi_slopes, sinks, tree_mask, k/v_scale
        .Ret<ffi::AnyBuffer>() // out
        .Ret<ffi::AnyBuffer>() // workspace
        .RemainingRets()       // lse
        .Attr<std::string_view>("kernels")
        .Attr<std::string_view>("dtype")
        .Attr<std::string_view>("layout")
        .Attr<std::string_view>("variants")
        .Attr<std::string_view>("kv_dtype")
        .Attr<std::string_view>("kv_scale")
        .Attr<int64_t>("num_heads")
        .Attr<int64_t>("num_kv_heads")
        .Attr<int64_t>("head_dim")
        .Attr<int64_t>("page_size")
        .Attr<int64_t>("query_len")
        .Attr<float>("scale")
        .Attr<int64_t>("num_splits")
        .Attr<int64_t>("max_seq_len")
        .Attr<int64_t>("window")
        .Attr<float>("soft_cap"),
    {ffi::Traits::kCmdBufferCompatible});

NB_MODULE(_xla, m) {
  m.doc() = "paged_attn.jax's XLA FFI handler";
  // A capsule, as jax.ffi.register_ffi_target takes a handler.
  m.def("decode_handler", []() {
    return nb::capsule(reinterpret_cast<void *>(&PagedAttnDecodeExecute));
  });
}
