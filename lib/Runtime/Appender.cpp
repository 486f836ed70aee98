//===- Appender.cpp - find and launch a paged_attn.append -----------------===//
//
// An Appender is one entry of a manifest's "appends". append() checks the
// caller's tensors against the Spec's parameters of the append kernel (the
// checks decode's operands get: rank, dtype, sizes, 16-byte rows where the
// kernel moves vectors, the extent), with T from k and the page pool from
// k_cache, then launches one CTA per rows_per_cta (token, KV head) rows.
//
//===----------------------------------------------------------------------===//

#include "LaunchParams.h"
#include "Manifest.h"
#include "ModuleCache.h"
#include "Validation.h"

#include <climits>

using namespace paged_attn;
using namespace paged_attn::cuda;
using namespace paged_attn::detail;

Appender::~Appender() = default;

Status Appender::create(std::shared_ptr<const KernelLibrary> library,
                        const AppendConfig &config,
                        std::unique_ptr<Appender> *result) {
  if (!library)
    return invalid("no kernel library");
  if (std::string error = config.validate(); !error.empty())
    return invalid(error);
  const AppendKernelSpec *spec = library->findAppend(config);
  if (!spec)
    return noKernelFor("append kernel", config, library->appendConfigs());
  std::unique_ptr<Appender> appender(new Appender);
  appender->library_ = std::move(library);
  appender->spec_ = spec;
  appender->config_ = spec->config;
  *result = std::move(appender);
  return Status::ok();
}

/// The caller's tensor bound to `value`; null for values append() has none
/// of.
static const Tensor *operandTensor(LaunchValue value, const AppendParams &p) {
  switch (value) {
  case LaunchValue::K:
    return &p.k;
  case LaunchValue::V:
    return &p.v;
  case LaunchValue::SlotMapping:
    return &p.slotMapping;
  case LaunchValue::KCache:
    return &p.kCache;
  case LaunchValue::VCache:
    return &p.vCache;
  case LaunchValue::KScale:
    return &p.kScale;
  case LaunchValue::VScale:
    return &p.vScale;
  default:
    return nullptr;
  }
}

/// How messages name the expected shape of an operand.
static const char *shapeDoc(LaunchValue value, const AppendConfig &config) {
  switch (value) {
  case LaunchValue::K:
  case LaunchValue::V:
    return "[T, num_kv_heads, head_dim]";
  case LaunchValue::SlotMapping:
    return "[T]";
  case LaunchValue::KCache:
  case LaunchValue::VCache:
    return cacheShapeDoc(config.layout);
  case LaunchValue::KScale:
  case LaunchValue::VScale:
    return kvScaleShapeDoc(config.kvQuant, config.layout);
  default:
    return "";
  }
}

/// Whether `value`'s first dimension counts the pages of the pool (the
/// caches' and per-token scales'); the others' counts the new tokens.
static bool countsPages(LaunchValue value) {
  return value == LaunchValue::KCache || value == LaunchValue::VCache ||
         value == LaunchValue::KScale || value == LaunchValue::VScale;
}

/// Scales for caches of k's dtype would be ignored: refused, as decode
/// refuses them.
static Status checkNoScales(const AppendConfig &config, const AppendParams &p) {
  if (config.kvQuant)
    return Status::ok();
  for (auto [name, scale] :
       {std::pair{"k_scale", &p.kScale}, std::pair{"v_scale", &p.vScale}})
    if (scale->data)
      return invalid(std::string(name) + " is given, but append config " +
                     config.name() +
                     " has no quantised KV cache (its caches are " +
                     dtypeName(config.dtype) + ")");
  return Status::ok();
}

/// The kernel writes K rows to k_cache and V rows to v_cache (and, per
/// token, their scales): the same memory for both would have V overwrite
/// K.
static Status checkDistinctOutputs(const AppendConfig &config,
                                   const AppendParams &p) {
  if (p.kCache.data && p.kCache.data == p.vCache.data &&
      p.kCache.numElements() != 0)
    return invalid("k_cache and v_cache are the same memory: append writes "
                   "both");
  if (config.kvQuant && config.kvQuant->scale == KVScaleKind::Token &&
      p.kScale.data && p.kScale.data == p.vScale.data &&
      p.kScale.numElements() != 0)
    return invalid("k_scale and v_scale are the same memory: a per-token "
                   "append writes both");
  return Status::ok();
}

/// Checks the caller's tensors in the append kernel's parameter order; k's
/// first dimension is T and k_cache's the page pool: the other operands
/// must agree with them. Returns T.
static Status checkOperands(const AppendKernelSpec &spec, const AppendParams &p,
                            int64_t *numTokens) {
  if (Status s = checkNoScales(spec.config, p); !s)
    return s;
  int64_t pages = -1, tokens = -1;
  for (const BoundParam &bound : spec.append.params) {
    const Tensor *t = operandTensor(bound.value, p);
    if (!t)
      continue;
    int64_t &dim0 = countsPages(bound.value) ? pages : tokens;
    if (Status s = checkTensorOrEmpty(bound.param, *t, dim0,
                                      shapeDoc(bound.value, spec.config));
        !s)
      return s;
    if (!bound.param.shape.empty() && bound.param.shape[0] == kDynamicSize)
      dim0 = t->sizes[0];
  }
  if (Status s = checkDistinctOutputs(spec.config, p); !s)
    return s;
  *numTokens = tokens;
  return Status::ok();
}

/// The CTAs of an append of `numTokens` tokens: (T * num_kv_heads) /
/// rows_per_cta, rounded up, which must fit a grid's x dimension.
static Status gridSize(const AppendKernelSpec &spec, int64_t numTokens,
                       int64_t *ctas) {
  int64_t rows = 0;
  if (__builtin_mul_overflow(numTokens, spec.config.numKVHeads, &rows) ||
      (*ctas = rows / spec.rowsPerCTA + (rows % spec.rowsPerCTA != 0)) >
          INT32_MAX)
    return invalid("T (" + std::to_string(numTokens) + " tokens) of " +
                   std::to_string(spec.config.numKVHeads) +
                   " KV heads needs more than " + std::to_string(INT32_MAX) +
                   " CTAs of " + std::to_string(spec.rowsPerCTA) +
                   " rows (a grid's x dimension): append fewer tokens per "
                   "call");
  return Status::ok();
}

Status Appender::append(const AppendParams &p, void *streamPtr) const {
  int64_t numTokens = 0, ctas = 0;
  if (Status s = checkOperands(*spec_, p, &numTokens); !s)
    return s;
  if (Status s = gridSize(*spec_, numTokens, &ctas); !s)
    return s;
  LaunchValues values;
  for (const BoundParam &bound : spec_->append.params)
    if (const Tensor *t = operandTensor(bound.value, p))
      values.setMemRef(bound.value, *t);

  const Driver *d;
  if (Status s = requireDriver(&d); !s)
    return s;
  CUcontext ctx;
  CUdevice device;
  if (Status s = currentContext(*d, &ctx, &device); !s)
    return s;
  CUfunction fn = nullptr;
  if (Status s = ModuleCache::get().lookup(*d, ctx, *spec_, &fn); !s)
    return s;
  if (ctas == 0)
    return Status::ok();
  ParamBuilder args;
  if (Status s = args.pack(spec_->append.name, spec_->append.params, values);
      !s)
    return s;
  CUresult r = d->cuLaunchKernel(
      fn, unsigned(ctas), 1, 1, unsigned(spec_->append.block), 1, 1, 0,
      static_cast<CUstream>(streamPtr), nullptr, args.extra());
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "launching " + spec_->append.name + ": " + describe(*d, r));
  return Status::ok();
}
