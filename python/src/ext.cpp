//===- ext.cpp - paged_attn._ext: the runtime (and compiler) for Python ---===//
//
// A thin nanobind layer: Python (paged_attn/__init__.py) turns tensors into
// (pointer, dtype, sizes, strides) and this module hands them to the C++
// runtime. Runtime errors become paged_attn.PagedAttnError (or ValueError for
// bad arguments), carrying the runtime's message. torch_calls.cpp adds the
// path that reads torch tensors itself, for decode() and merge() calls
// that need no Python description of each tensor.
//
// The facts of a decode that Python needs (its name, the op's rules and
// their messages, where a layout keeps pages and KV heads, the dtypes and
// their sizes, the chips) come from the C++ Spec through this module, so
// that Python has no copy of them to fall out of step.
//
//===----------------------------------------------------------------------===//

#include "ext.h"

#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Spec/AppendSpec.h"
#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/KernelABI.h"
#include "PagedAttn/Spec/TargetInfo.h"

#ifdef PAGED_ATTN_HAVE_COMPILER
#include "PagedAttn/InitAll.h"
#include "PagedAttn/Target/KernelCompiler.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FormatVariadic.h"
#endif

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace nb = nanobind;
using namespace paged_attn;
using namespace paged_attn::python;

namespace {
nb::object errorType; // paged_attn.PagedAttnError, set at import
} // namespace

void paged_attn::python::raise(const Status &s) {
  if (s.code() == StatusCode::InvalidArgument)
    throw nb::value_error(s.message().c_str());
  PyErr_SetString(errorType.ptr(), s.message().c_str());
  throw nb::python_error();
}

namespace {

DType dtypeNamed(const std::string &name) {
  if (std::optional<DType> dtype = parseDType(name))
    return *dtype;
  throw nb::value_error(("unknown dtype '" + name + "'").c_str());
}

[[noreturn]] void badLayout(const std::string &shown) {
  throw nb::value_error(
      ("layout must be 'nhd' or 'hnd', got " + shown).c_str());
}

/// The layout a Python object names; anything but "nhd" or "hnd" is shown
/// in the error as Python's repr shows it.
Layout layoutOf(nb::handle layout) {
  if (nb::isinstance<nb::str>(layout))
    if (std::optional<Layout> parsed =
            parseLayout(nb::cast<std::string>(layout)))
      return *parsed;
  badLayout(nb::repr(layout).c_str());
}

/// The variants named by Python's keywords (the manifest's keys).
DecodeVariants variantsNamed(const std::vector<std::string> &names) {
  DecodeVariants v;
  for (const std::string &name : names)
    if (!v.enable(name))
      throw nb::value_error(("unknown variant '" + name + "' (the variants: " +
                             DecodeVariants::keysDoc() + ")")
                                .c_str());
  return v;
}

/// The dtype `dtype` names, for a spec; ValueError for a name that is none
/// (the spec's validate() says which dtypes it may have).
DType dataDTypeNamed(const std::string &dtype) {
  if (std::optional<DType> parsed = parseDType(dtype))
    return *parsed;
  throw nb::value_error(
      ("dtype must be f16, bf16 or f32, got '" + dtype + "'").c_str());
}

/// The caches' quantisation Python's kv_dtype and kv_scale name: both (an
/// fp8 cache and where its scales are) or neither (caches of q's dtype).
std::optional<KVQuant> kvQuantNamed(const std::optional<std::string> &kvDType,
                                    const std::optional<std::string> &kvScale) {
  if (!kvDType && !kvScale)
    return std::nullopt;
  if (!kvDType || !kvScale)
    throw nb::value_error(
        (std::string("kv_dtype and kv_scale go together: a quantised cache "
                     "needs both, got only ") +
         (kvDType ? "kv_dtype" : "kv_scale"))
            .c_str());
  std::optional<DType> dtype = parseDType(*kvDType);
  if (!dtype || !isQuantizedCacheDType(*dtype))
    throw nb::value_error(
        ("kv_dtype must be f8e4m3fn or f8e5m2, got '" + *kvDType + "'")
            .c_str());
  std::optional<KVScaleKind> scale = parseKVScaleKind(*kvScale);
  if (!scale)
    throw nb::value_error(
        ("kv_scale must be tensor, head or token, got '" + *kvScale + "'")
            .c_str());
  return KVQuant{*dtype, *scale};
}

/// The spec of a decode, after the op's rules (ValueError with the rule's
/// message when one is broken).
DecodeSpec checkedSpec(int64_t numHeads, int64_t numKVHeads, int64_t headDim,
                       int64_t pageSize, const std::string &dtype,
                       nb::handle layout, int64_t numWarps,
                       const std::vector<std::string> &variants,
                       int64_t queryLen = 1,
                       const std::optional<std::string> &kvDType = {},
                       const std::optional<std::string> &kvScale = {}) {
  DecodeSpec spec;
  spec.numHeads = numHeads;
  spec.numKVHeads = numKVHeads;
  spec.headDim = headDim;
  spec.pageSize = pageSize;
  spec.dtype = dataDTypeNamed(dtype);
  spec.layout = layoutOf(layout);
  spec.numWarps = numWarps;
  spec.variants = variantsNamed(variants);
  spec.queryLen = queryLen;
  spec.kvQuant = kvQuantNamed(kvDType, kvScale);
  if (std::string error = spec.validate(); !error.empty())
    throw nb::value_error(error.c_str());
  return spec;
}

/// The spec of a paged_attn.merge, after the op's rules. `variants` names
/// those a merge has: "sinks" and "lse".
MergeSpec checkedMergeSpec(int64_t numHeads, int64_t headDim,
                           const std::string &dtype,
                           const std::vector<std::string> &variants) {
  DecodeVariants v = variantsNamed(variants);
  if (v.window || v.softCap || v.alibi)
    throw nb::value_error("a merge has the sinks and lse variants only");
  MergeSpec spec = MergeSpec::forOp(numHeads, headDim, dataDTypeNamed(dtype),
                                    v.sinks, v.lse);
  if (std::string error = spec.validate(); !error.empty())
    throw nb::value_error(error.c_str());
  return spec;
}

/// The spec of a paged_attn.append, after the op's rules: k and v of
/// `dtype`, caches of the decode of these sizes, dtype, layout and
/// quantisation (kv_dtype and kv_scale both or neither, as decode_spec's).
AppendSpec checkedAppendSpec(int64_t numKVHeads, int64_t headDim,
                             int64_t pageSize, const std::string &dtype,
                             nb::handle layout,
                             const std::optional<std::string> &kvDType,
                             const std::optional<std::string> &kvScale) {
  AppendSpec spec;
  spec.numKVHeads = numKVHeads;
  spec.headDim = headDim;
  spec.pageSize = pageSize;
  spec.dtype = dataDTypeNamed(dtype);
  spec.layout = layoutOf(layout);
  spec.kvQuant = kvQuantNamed(kvDType, kvScale);
  if (std::string error = spec.validate(); !error.empty())
    throw nb::value_error(error.c_str());
  return spec;
}

/// (data pointer, dtype name, sizes, strides in elements)
using TensorDesc = std::tuple<uintptr_t, std::string, std::vector<int64_t>,
                              std::vector<int64_t>>;

Tensor toTensor(const TensorDesc &desc, const char *name) {
  const auto &[ptr, dtype, sizes, strides] = desc;
  if (sizes.size() > 4 || sizes.size() != strides.size())
    throw nb::value_error(
        (std::string(name) + ": at most 4 dimensions, with one stride each")
            .c_str());
  Tensor t;
  t.data = reinterpret_cast<void *>(ptr);
  t.dtype = dtypeNamed(dtype);
  t.rank = static_cast<int>(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    t.sizes[i] = sizes[i];
    t.strides[i] = strides[i];
  }
  return t;
}

struct PyLibrary {
  std::shared_ptr<KernelLibrary> library;
};

#ifdef PAGED_ATTN_HAVE_COMPILER
/// (PTX, manifest JSON) of `set`'s kernels for `chip`; ValueError with the
/// first diagnostic when compilation fails.
std::tuple<std::string, std::string>
compileSet(const mlir::paged_attn::KernelSet &set, const std::string &chip,
           int64_t numWarps, const std::string &ptxName) {
  using namespace mlir;
  DialectRegistry registry;
  mlir::paged_attn::registerAllDialects(registry);
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  std::string firstError;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &diag) {
    if (diag.getSeverity() == DiagnosticSeverity::Error && firstError.empty())
      firstError = diag.str();
    return success();
  });
  mlir::paged_attn::KernelCompileOptions compileOptions;
  compileOptions.chip = chip;
  compileOptions.kernels.numWarps = numWarps;
  FailureOr<mlir::paged_attn::CompiledKernels> compiled;
  {
    nb::gil_scoped_release release;
    compiled =
        mlir::paged_attn::compileKernels(&ctx, set, compileOptions, ptxName);
  }
  if (failed(compiled))
    throw nb::value_error(firstError.empty() ? "compilation failed"
                                             : firstError.c_str());
  std::string manifest = llvm::formatv("{0:2}", compiled->manifest).str();
  return std::make_tuple(compiled->ptx, manifest);
}
#endif

} // namespace

NB_MODULE(_ext, m) {
  m.doc() = "PagedAttn runtime (and compiler, when built in)";

  m.def("set_error_type", [](nb::object type) { errorType = type; });

  m.def(
      "has_driver",
      []() {
        std::string why;
        bool ok = hasDriver(&why);
        return std::make_tuple(ok, why);
      },
      "(True, '') when a CUDA driver is usable, else (False, why)");

  m.def(
      "decode_spec",
      [](int64_t numHeads, int64_t numKVHeads, int64_t headDim,
         int64_t pageSize, const std::string &dtype, nb::handle layout,
         int64_t numWarps, const std::vector<std::string> &variants,
         int64_t queryLen, const std::optional<std::string> &kvDType,
         const std::optional<std::string> &kvScale) {
        return checkedSpec(numHeads, numKVHeads, headDim, pageSize, dtype,
                           layout, numWarps, variants, queryLen, kvDType,
                           kvScale)
            .name();
      },
      nb::arg("num_heads"), nb::arg("num_kv_heads"), nb::arg("head_dim"),
      nb::arg("page_size"), nb::arg("dtype"), nb::arg("layout").none(),
      nb::arg("num_warps") = 4,
      nb::arg("variants") = std::vector<std::string>(),
      nb::arg("query_len") = 1, nb::arg("kv_dtype").none() = nb::none(),
      nb::arg("kv_scale").none() = nb::none(),
      "The config's name (h32_kv8_d128_p16_bf16_nhd_w4), after the op's "
      "rules on it: ValueError with the rule's message when one is broken. "
      "kv_dtype and kv_scale (both or neither): the caches' fp8 format and "
      "where their scales are");

  m.def(
      "cache_dims",
      [](nb::handle layout) {
        CacheDims dims = cacheDims(layoutOf(layout));
        return std::make_tuple(dims.page, dims.kvHeads);
      },
      nb::arg("layout").none(),
      "(page dim, kv_heads dim) of a 4-D cache under `layout`");

  m.def(
      "dtypes",
      []() {
        std::vector<std::tuple<std::string, size_t, bool>> rows;
        for (DType dtype :
             {DType::F16, DType::BF16, DType::F32, DType::I32, DType::I64,
              DType::I8, DType::F8E4M3FN, DType::F8E5M2})
          rows.emplace_back(dtypeName(dtype), dtypeBytes(dtype),
                            isDataDType(dtype));
        return rows;
      },
      "[(name, bytes, whether q, the caches and out may have it)]");

  m.def(
      "quantized_cache_dtypes",
      []() {
        std::vector<std::string> names;
        for (DType dtype : {DType::F8E4M3FN, DType::F8E5M2})
          if (isQuantizedCacheDType(dtype))
            names.push_back(dtypeName(dtype));
        return names;
      },
      "The dtypes a quantised KV cache may have (the fp8 formats)");

  m.def(
      "kv_scale_shape",
      [](const std::string &kind, int64_t numKVHeads, int64_t pageSize,
         nb::handle layout, int64_t numPages) {
        std::optional<KVScaleKind> parsed = parseKVScaleKind(kind);
        if (!parsed)
          throw nb::value_error(
              ("kv_scale must be tensor, head or token, got '" + kind + "'")
                  .c_str());
        DecodeSpec spec;
        spec.numKVHeads = numKVHeads;
        spec.pageSize = pageSize;
        spec.layout = layoutOf(layout);
        spec.kvQuant = KVQuant{DType::F8E4M3FN, *parsed};
        return spec.kvScaleShape(numPages);
      },
      nb::arg("kind"), nb::arg("num_kv_heads"), nb::arg("page_size"),
      nb::arg("layout").none(), nb::arg("num_pages"),
      "The shape of k_scale and v_scale of granularity `kind` (tensor, head "
      "or token) for caches of these sizes (DecodeSpec::kvScaleShape)");

  m.def(
      "chip_for_capability",
      [](int major, int minor) -> std::optional<std::string> {
        if (const TargetInfo *target = targetForComputeCapability(major, minor))
          return std::string(target->chip);
        return std::nullopt;
      },
      nb::arg("major"), nb::arg("minor"),
      "The chip the kernels are built for on a device of this compute "
      "capability, or None");

  m.def(
      "supported_chips",
      []() {
        std::vector<std::string> chips;
        for (const TargetInfo &target : supportedTargets())
          chips.push_back(target.chip);
        return chips;
      },
      "The chips the kernels can be built for, oldest first");

  m.def("has_compiler", []() {
#ifdef PAGED_ATTN_HAVE_COMPILER
    return true;
#else
    return false;
#endif
  });

  nb::class_<PyLibrary>(m, "Library")
      .def(
          "__init__",
          [](PyLibrary *self, const std::string &path, bool directory) {
            new (self) PyLibrary();
            check(directory ? KernelLibrary::loadDirectory(path, &self->library)
                            : KernelLibrary::load(path, &self->library));
          },
          nb::arg("path"), nb::arg("directory") = false)
      .def("configs",
           [](const PyLibrary &self) {
             std::vector<std::string> names;
             for (const KernelConfig &c : self.library->configs())
               names.push_back(c.name());
             return names;
           })
      .def("merge_configs",
           [](const PyLibrary &self) {
             std::vector<std::string> names;
             for (const MergeConfig &c : self.library->mergeConfigs())
               names.push_back(c.name());
             return names;
           })
      .def("append_configs", [](const PyLibrary &self) {
        std::vector<std::string> names;
        for (const AppendConfig &c : self.library->appendConfigs())
          names.push_back(c.name());
        return names;
      });

  nb::class_<PyDecoder>(m, "Decoder")
      .def(
          "__init__",
          [](PyDecoder *self, const PyLibrary &library, int64_t numHeads,
             int64_t numKVHeads, int64_t headDim, int64_t pageSize,
             const std::string &dtype, nb::handle layout, int64_t numWarps,
             const std::vector<std::string> &variants, int64_t queryLen,
             const std::optional<std::string> &kvDType,
             const std::optional<std::string> &kvScale) {
            std::unique_ptr<Decoder> decoder;
            check(Decoder::create(library.library,
                                  checkedSpec(numHeads, numKVHeads, headDim,
                                              pageSize, dtype, layout, numWarps,
                                              variants, queryLen, kvDType,
                                              kvScale),
                                  &decoder));
            new (self) PyDecoder{std::move(decoder)};
          },
          nb::arg("library"), nb::arg("num_heads"), nb::arg("num_kv_heads"),
          nb::arg("head_dim"), nb::arg("page_size"), nb::arg("dtype"),
          nb::arg("layout").none(), nb::arg("num_warps") = 4,
          nb::arg("variants") = std::vector<std::string>(),
          nb::arg("query_len") = 1, nb::arg("kv_dtype").none() = nb::none(),
          nb::arg("kv_scale").none() = nb::none())
      .def("workspace_size",
           [](const PyDecoder &self, int64_t batch, int64_t numSplits) {
             size_t bytes = 0;
             check(self.decoder->workspaceSize(batch, numSplits, &bytes));
             return bytes;
           })
      .def("max_workspace_size",
           [](const PyDecoder &self, int64_t batch, int64_t maxSeqLen) {
             size_t bytes = 0;
             check(self.decoder->maxWorkspaceSize(batch, maxSeqLen, &bytes));
             return bytes;
           })
      .def("default_num_splits",
           [](const PyDecoder &self, int64_t batch, int64_t maxSeqLen) {
             int splits = 0;
             check(self.decoder->defaultNumSplits(batch, maxSeqLen, &splits));
             return splits;
           })
      .def(
          "decode",
          [](const PyDecoder &self, const TensorDesc &q, const TensorDesc &k,
             const TensorDesc &v, const TensorDesc &blockTable,
             const TensorDesc &seqLens, const TensorDesc &out, float scale,
             int64_t maxSeqLen, int numSplits, uintptr_t workspace,
             size_t workspaceBytes, bool checkPageTable, uintptr_t stream,
             int64_t window, float softCap,
             const std::optional<TensorDesc> &alibiSlopes,
             const std::optional<TensorDesc> &sinks,
             const std::optional<TensorDesc> &lse,
             const std::optional<TensorDesc> &treeMask,
             const std::optional<TensorDesc> &kScale,
             const std::optional<TensorDesc> &vScale,
             nb::handle hostSeqLens) {
            DecodeParams p;
            std::vector<int32_t> hostLengths;
            if (!hostSeqLens.is_none()) {
              const std::vector<int64_t> &qSizes = std::get<2>(q);
              hostLengths =
                  hostSeqLensOf(hostSeqLens, qSizes.empty() ? 0 : qSizes[0]);
              p.hostSeqLens = hostLengths.data();
            }
            if (treeMask)
              p.treeMask = toTensor(*treeMask, "tree_mask");
            if (kScale)
              p.kScale = toTensor(*kScale, "k_scale");
            if (vScale)
              p.vScale = toTensor(*vScale, "v_scale");
            p.window = window;
            p.softCap = softCap;
            if (alibiSlopes)
              p.alibiSlopes = toTensor(*alibiSlopes, "alibi_slopes");
            if (sinks)
              p.sinks = toTensor(*sinks, "sinks");
            if (lse)
              p.lse = toTensor(*lse, "lse");
            p.q = toTensor(q, "q");
            p.kCache = toTensor(k, "k_cache");
            p.vCache = toTensor(v, "v_cache");
            p.blockTable = toTensor(blockTable, "block_table");
            p.seqLens = toTensor(seqLens, "seq_lens");
            p.out = toTensor(out, "out");
            p.scale = scale;
            p.maxSeqLen = maxSeqLen;
            p.numSplits = numSplits;
            p.workspace = reinterpret_cast<void *>(workspace);
            p.workspaceBytes = workspaceBytes;
            p.checkPageTable = checkPageTable;
            Status s;
            {
              // Launches are asynchronous; the check mode synchronises.
              nb::gil_scoped_release release;
              s = self.decoder->decode(p, reinterpret_cast<void *>(stream));
            }
            check(s);
          },
          nb::arg("q"), nb::arg("k_cache"), nb::arg("v_cache"),
          nb::arg("block_table"), nb::arg("seq_lens"), nb::arg("out"),
          nb::arg("scale"), nb::arg("max_seq_len"), nb::arg("num_splits"),
          nb::arg("workspace"), nb::arg("workspace_bytes"),
          nb::arg("check_page_table"), nb::arg("stream"), nb::arg("window") = 0,
          nb::arg("soft_cap") = 0.0f,
          nb::arg("alibi_slopes").none() = nb::none(),
          nb::arg("sinks").none() = nb::none(),
          nb::arg("lse").none() = nb::none(),
          nb::arg("tree_mask").none() = nb::none(),
          nb::arg("k_scale").none() = nb::none(),
          nb::arg("v_scale").none() = nb::none(),
          nb::arg("host_seq_lens").none() = nb::none());

  m.def(
      "merge_spec",
      [](int64_t numHeads, int64_t headDim, const std::string &dtype,
         const std::vector<std::string> &variants) {
        return checkedMergeSpec(numHeads, headDim, dtype, variants).name();
      },
      nb::arg("num_heads"), nb::arg("head_dim"), nb::arg("dtype"),
      nb::arg("variants") = std::vector<std::string>(),
      "The merge config's name (h32_d128_bf16_ln), after the op's rules");

  nb::class_<PyMerger>(m, "Merger")
      .def(
          "__init__",
          [](PyMerger *self, const PyLibrary &library, int64_t numHeads,
             int64_t headDim, const std::string &dtype,
             const std::vector<std::string> &variants) {
            std::unique_ptr<Merger> merger;
            check(Merger::create(
                library.library,
                checkedMergeSpec(numHeads, headDim, dtype, variants), &merger));
            new (self) PyMerger{std::move(merger)};
          },
          nb::arg("library"), nb::arg("num_heads"), nb::arg("head_dim"),
          nb::arg("dtype"), nb::arg("variants") = std::vector<std::string>())
      .def(
          "merge",
          [](const PyMerger &self, const TensorDesc &partialOut,
             const TensorDesc &partialLse, const TensorDesc &out,
             const std::optional<TensorDesc> &sinks,
             const std::optional<TensorDesc> &lse, uintptr_t stream) {
            MergeParams p;
            p.partialOut = toTensor(partialOut, "partial_out");
            p.partialLse = toTensor(partialLse, "partial_lse");
            p.out = toTensor(out, "out");
            if (sinks)
              p.sinks = toTensor(*sinks, "sinks");
            if (lse)
              p.lse = toTensor(*lse, "lse");
            Status s;
            {
              nb::gil_scoped_release release;
              s = self.merger->merge(p, reinterpret_cast<void *>(stream));
            }
            check(s);
          },
          nb::arg("partial_out"), nb::arg("partial_lse"), nb::arg("out"),
          nb::arg("sinks").none(), nb::arg("lse").none(), nb::arg("stream"));

  m.def(
      "append_spec",
      [](int64_t numKVHeads, int64_t headDim, int64_t pageSize,
         const std::string &dtype, nb::handle layout,
         const std::optional<std::string> &kvDType,
         const std::optional<std::string> &kvScale) {
        return checkedAppendSpec(numKVHeads, headDim, pageSize, dtype, layout,
                                 kvDType, kvScale)
            .name();
      },
      nb::arg("num_kv_heads"), nb::arg("head_dim"), nb::arg("page_size"),
      nb::arg("dtype"), nb::arg("layout").none(),
      nb::arg("kv_dtype").none() = nb::none(),
      nb::arg("kv_scale").none() = nb::none(),
      "The append config's name (kv8_d128_p16_bf16_nhd_f8e4m3fn_token), "
      "after the op's rules: ValueError with the rule's message when one is "
      "broken");

  nb::class_<PyAppender>(m, "Appender")
      .def(
          "__init__",
          [](PyAppender *self, const PyLibrary &library, int64_t numKVHeads,
             int64_t headDim, int64_t pageSize, const std::string &dtype,
             nb::handle layout, const std::optional<std::string> &kvDType,
             const std::optional<std::string> &kvScale) {
            std::unique_ptr<Appender> appender;
            check(Appender::create(library.library,
                                   checkedAppendSpec(numKVHeads, headDim,
                                                     pageSize, dtype, layout,
                                                     kvDType, kvScale),
                                   &appender));
            new (self) PyAppender{std::move(appender)};
          },
          nb::arg("library"), nb::arg("num_kv_heads"), nb::arg("head_dim"),
          nb::arg("page_size"), nb::arg("dtype"), nb::arg("layout").none(),
          nb::arg("kv_dtype").none() = nb::none(),
          nb::arg("kv_scale").none() = nb::none())
      .def_prop_ro(
          "name",
          [](const PyAppender &self) { return self.appender->config().name(); })
      .def(
          "append",
          [](const PyAppender &self, const TensorDesc &k, const TensorDesc &v,
             const TensorDesc &slotMapping, const TensorDesc &kCache,
             const TensorDesc &vCache, const std::optional<TensorDesc> &kScale,
             const std::optional<TensorDesc> &vScale, uintptr_t stream) {
            AppendParams p;
            p.k = toTensor(k, "k");
            p.v = toTensor(v, "v");
            p.slotMapping = toTensor(slotMapping, "slot_mapping");
            p.kCache = toTensor(kCache, "k_cache");
            p.vCache = toTensor(vCache, "v_cache");
            if (kScale)
              p.kScale = toTensor(*kScale, "k_scale");
            if (vScale)
              p.vScale = toTensor(*vScale, "v_scale");
            Status s;
            {
              nb::gil_scoped_release release;
              s = self.appender->append(p, reinterpret_cast<void *>(stream));
            }
            check(s);
          },
          nb::arg("k"), nb::arg("v"), nb::arg("slot_mapping"),
          nb::arg("k_cache"), nb::arg("v_cache"), nb::arg("k_scale").none(),
          nb::arg("v_scale").none(), nb::arg("stream"));

  defineTorchCalls(m);

#ifdef PAGED_ATTN_HAVE_COMPILER
  m.def(
      "compile_merge",
      [](int64_t numHeads, int64_t headDim, const std::string &dtype,
         const std::string &chip, const std::string &ptxName,
         const std::vector<std::string> &variants) {
        mlir::paged_attn::KernelSet set;
        set.merges.push_back(
            checkedMergeSpec(numHeads, headDim, dtype, variants));
        return compileSet(set, chip, 4, ptxName);
      },
      nb::arg("num_heads"), nb::arg("head_dim"), nb::arg("dtype"),
      nb::arg("chip"), nb::arg("ptx_name"),
      nb::arg("variants") = std::vector<std::string>());

  m.def(
      "compile_append",
      [](int64_t numKVHeads, int64_t headDim, int64_t pageSize,
         const std::string &dtype, nb::handle layout, const std::string &chip,
         const std::string &ptxName, const std::optional<std::string> &kvDType,
         const std::optional<std::string> &kvScale) {
        mlir::paged_attn::KernelSet set;
        set.appends.push_back(checkedAppendSpec(
            numKVHeads, headDim, pageSize, dtype, layout, kvDType, kvScale));
        return compileSet(set, chip, 4, ptxName);
      },
      nb::arg("num_kv_heads"), nb::arg("head_dim"), nb::arg("page_size"),
      nb::arg("dtype"), nb::arg("layout").none(), nb::arg("chip"),
      nb::arg("ptx_name"), nb::arg("kv_dtype").none() = nb::none(),
      nb::arg("kv_scale").none() = nb::none());

  m.def(
      "compile",
      [](int64_t numHeads, int64_t numKVHeads, int64_t headDim,
         int64_t pageSize, const std::string &dtype, nb::handle layout,
         const std::string &chip, int64_t numWarps, const std::string &ptxName,
         const std::vector<std::string> &variants, int64_t queryLen,
         const std::optional<std::string> &kvDType,
         const std::optional<std::string> &kvScale) {
        mlir::paged_attn::KernelSet set;
        set.decodes.push_back(
            checkedSpec(numHeads, numKVHeads, headDim, pageSize, dtype, layout,
                        numWarps, variants, queryLen, kvDType, kvScale));
        return compileSet(set, chip, numWarps, ptxName);
      },
      nb::arg("num_heads"), nb::arg("num_kv_heads"), nb::arg("head_dim"),
      nb::arg("page_size"), nb::arg("dtype"), nb::arg("layout").none(),
      nb::arg("chip"), nb::arg("num_warps"), nb::arg("ptx_name"),
      nb::arg("variants") = std::vector<std::string>(),
      nb::arg("query_len") = 1, nb::arg("kv_dtype").none() = nb::none(),
      nb::arg("kv_scale").none() = nb::none());

  m.def("compiler_version",
        []() { return mlir::paged_attn::getCompilerVersion(); });
#endif
}
