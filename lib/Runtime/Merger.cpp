//===- Merger.cpp - find and launch a paged_attn.merge --------------------===//
//
// A Merger is one entry of a manifest's "merges". merge() checks the
// caller's tensors in the op's order ([N, batch, num_heads, ...] partials),
// then passes the partials to the kernel as the [batch, num_heads, N, ...]
// views its parameters describe (the strides permuted, nothing copied),
// exactly as the op's GPU lowering does with memref.transpose.
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

Merger::~Merger() = default;

Status Merger::create(std::shared_ptr<const KernelLibrary> library,
                      const MergeConfig &config,
                      std::unique_ptr<Merger> *result) {
  if (!library)
    return invalid("no kernel library");
  if (std::string error = config.validate(); !error.empty())
    return invalid(error);
  const MergeKernelSpec *spec = library->findMerge(config);
  if (!spec)
    return noKernelFor("merge kernel", config, library->mergeConfigs());
  std::unique_ptr<Merger> merger(new Merger);
  merger->library_ = std::move(library);
  merger->spec_ = spec;
  merger->config_ = spec->config;
  *result = std::move(merger);
  return Status::ok();
}

namespace {
/// The sizes of a merge: N partials of `batch` sequences.
struct MergeShape {
  int64_t numPartials = 0, batch = 0;
};
} // namespace

/// `t` has rank `rank`, dtype `dtype` and sizes `sizes` (any where
/// negative); else InvalidArgument naming `name` and `doc`.
static Status checkShape(const char *name, const Tensor &t, DType dtype,
                         std::initializer_list<int64_t> sizes,
                         const std::string &doc) {
  if (t.rank != int(sizes.size()))
    return invalid(std::string(name) + " must have rank " +
                   std::to_string(sizes.size()) + " (" + doc + "), got " +
                   std::to_string(t.rank));
  if (unsigned(t.dtype) > unsigned(DType::I8) || t.dtype != dtype)
    return invalid(std::string(name) + " must be " + dtypeName(dtype) + " (" +
                   doc + ")");
  int d = 0;
  for (int64_t expected : sizes) {
    if (t.sizes[d] < 0 || (expected >= 0 && t.sizes[d] != expected))
      return invalid(std::string(name) + " has shape " + shapeString(t) +
                     ", expected " + doc);
    ++d;
  }
  return Status::ok();
}

/// The caller's tensors in the op's terms: their ranks, dtypes and sizes
/// against each other and the config, and the variants' tensors given
/// exactly where the config has them.
static Status checkMergeShapes(const MergeConfig &c, const MergeParams &p,
                               MergeShape *shape) {
  std::string h = std::to_string(c.numHeads), d = std::to_string(c.headDim);
  if (Status s = checkShape("partial_out", p.partialOut, c.dtype,
                            {-1, -1, c.numHeads, c.headDim},
                            "[N, batch, " + h + ", " + d + "]");
      !s)
    return s;
  int64_t n = p.partialOut.sizes[0], batch = p.partialOut.sizes[1];
  std::string nb = "[" + std::to_string(n) + ", " + std::to_string(batch);
  if (Status s = checkShape("partial_lse", p.partialLse, DType::F32,
                            {n, batch, c.numHeads}, nb + ", " + h + "]");
      !s)
    return s;
  if (Status s =
          checkShape("out", p.out, c.dtype, {batch, c.numHeads, c.headDim},
                     "[" + std::to_string(batch) + ", " + h + ", " + d + "]");
      !s)
    return s;
  if (c.sinks) {
    if (Status s = checkShape("sinks", p.sinks, DType::F32, {c.numHeads},
                              "[" + h + "]");
        !s)
      return s;
  } else if (p.sinks.data) {
    return invalid("sinks is given, but merge config " + c.name() +
                   " has none");
  }
  if (c.lse) {
    if (Status s = checkShape("lse", p.lse, DType::F32, {batch, c.numHeads},
                              "[" + std::to_string(batch) + ", " + h + "]");
        !s)
      return s;
  } else if (p.lse.data) {
    return invalid("lse is given, but merge config " + c.name() +
                   " has no log-sum-exp output");
  }
  if (Status s = checkBatch(batch); !s)
    return s;
  if (n > INT32_MAX)
    return invalid("N (" + std::to_string(n) + " partials) must be at most " +
                   std::to_string(INT32_MAX));
  shape->numPartials = n;
  shape->batch = batch;
  return Status::ok();
}

/// `t` with its dims reordered so that dim `order[i]` comes i-th.
static Tensor permuted(const Tensor &t, std::initializer_list<int> order) {
  Tensor view = t;
  int i = 0;
  for (int from : order) {
    view.sizes[i] = t.sizes[from];
    view.strides[i] = t.strides[from];
    ++i;
  }
  return view;
}

/// The caller's tensor bound to `value`; null for scalars.
static const Tensor *operandTensor(LaunchValue value, const MergeParams &p) {
  switch (value) {
  case LaunchValue::PartialOut:
    return &p.partialOut;
  case LaunchValue::PartialLse:
    return &p.partialLse;
  case LaunchValue::Out:
    return &p.out;
  case LaunchValue::Sinks:
    return &p.sinks;
  case LaunchValue::Lse:
    return &p.lse;
  default:
    return nullptr;
  }
}

Status Merger::merge(const MergeParams &p, void *streamPtr) const {
  MergeShape shape;
  if (Status s = checkMergeShapes(config_, p, &shape); !s)
    return s;
  // The kernel's views of the partials: [batch, num_heads, N, ...].
  Tensor partialOut = permuted(p.partialOut, {1, 2, 0, 3});
  Tensor partialLse = permuted(p.partialLse, {1, 2, 0});
  LaunchValues values;
  for (const BoundParam &bound : spec_->merge.params) {
    const Tensor *t = operandTensor(bound.value, p);
    if (!t)
      continue;
    // The pointer, the alignment and the extent, in the caller's order of
    // dims (the sizes were checked above). Nothing of an empty tensor is
    // read or written (no partials, or no sequences), and it may have no
    // pointer.
    if (t->numElements() != 0) {
      KernelParam param = bound.param;
      param.shape.assign(param.shape.size(), kDynamicSize);
      if (Status s = checkTensor(param, *t, -1, ""); !s)
        return s;
    }
    if (bound.value == LaunchValue::PartialOut)
      t = &partialOut;
    else if (bound.value == LaunchValue::PartialLse)
      t = &partialLse;
    values.setMemRef(bound.value, *t);
  }
  values.setInt(LaunchValue::NumSplits, shape.numPartials);

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
  if (shape.batch == 0)
    return Status::ok();
  ParamBuilder args;
  if (Status s = args.pack(spec_->merge.name, spec_->merge.params, values); !s)
    return s;
  // Grid: (heads / rows per CTA, batch), as the op's lowering launches it.
  int64_t ctas = (config_.numHeads + spec_->rowsPerCTA - 1) / spec_->rowsPerCTA;
  CUresult r = d->cuLaunchKernel(fn, unsigned(ctas), unsigned(shape.batch), 1,
                                 unsigned(spec_->merge.block), 1, 1, 0,
                                 static_cast<CUstream>(streamPtr), nullptr,
                                 args.extra());
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "launching " + spec_->merge.name + ": " + describe(*d, r));
  return Status::ok();
}
