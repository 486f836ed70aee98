//===- LaunchParams.h - kernel parameters as a launch packs them -*- C++
//-*-===//
//
// The Spec (KernelABI.h) lists each kernel's parameters in launch order; the
// conversion builds the kernels' signatures from the same lists. Here each
// parameter is bound to the runtime value it receives, and a launch packs
// the values by walking the Spec's list: there is no second, hand-written
// parameter order to fall out of step with the kernels.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_LIB_RUNTIME_LAUNCHPARAMS_H
#define PAGEDATTN_LIB_RUNTIME_LAUNCHPARAMS_H

#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Spec/KernelABI.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paged_attn {
namespace detail {

/// What the runtime passes for a kernel parameter. The caller's six tensors
/// come first, in the decode kernel's order.
enum class LaunchValue : uint8_t {
  Q,
  KCache,
  VCache,
  BlockTable,
  SeqLens,
  Out,
  PartialOut, ///< a view of the split-KV workspace
  PartialLse, ///< a view of the split-KV workspace
  Scale,
  NumSplits,
  SplitChunk,
  NumPages,
  FirstBad, ///< the check kernel's result
  Window,
  SoftCap,
  AlibiSlopes,
  Sinks,
  Lse,
  TreeMask,
  KScale,
  VScale,
  K,           ///< paged_attn.append's new rows
  V,           ///< paged_attn.append's new rows
  SlotMapping, ///< paged_attn.append's slots
};
constexpr size_t kNumLaunchValues = size_t(LaunchValue::SlotMapping) + 1;

/// A parameter as the Spec describes it, with the value bound to it. (Of
/// default visibility, as KernelSpec which holds it must be: the public
/// KernelLibrary::find returns one. It has no code of its own to export.)
struct BoundParam {
  KernelParam param;
  LaunchValue value;
};

} // namespace detail
} // namespace paged_attn

// Internal to the runtime: hidden, so that exports.map (paged_attn::*)
// keeps it in the library.
#pragma GCC visibility push(hidden)
namespace paged_attn {
namespace detail {

/// The value bound to the Spec's parameter `name`; none for a parameter
/// this runtime has nothing to pass for.
std::optional<LaunchValue> launchValueFor(std::string_view name);

/// Binds each of `params` to its value; returns empty, or the name of a
/// parameter without one.
std::string bindParams(const std::vector<KernelParam> &params,
                       std::vector<BoundParam> *bound);

/// The values of one launch. A memref is a view: the sizes and strides it
/// points to must outlive the packing.
class LaunchValues {
public:
  void setMemRef(LaunchValue v, const void *data, int rank,
                 const int64_t *sizes, const int64_t *strides) {
    Value &value = values_[size_t(v)];
    value.data = data;
    value.rank = rank;
    value.sizes = sizes;
    value.strides = strides;
  }
  void setMemRef(LaunchValue v, const Tensor &t) {
    setMemRef(v, t.data, t.rank, t.sizes, t.strides);
  }
  void setF32(LaunchValue v, float f) { values_[size_t(v)].f32 = f; }
  void setInt(LaunchValue v, int64_t i) { values_[size_t(v)].integer = i; }

private:
  friend class ParamBuilder;
  struct Value {
    const void *data = nullptr;
    int rank = 0;
    const int64_t *sizes = nullptr, *strides = nullptr;
    float f32 = 0;
    int64_t integer = 0;
  };
  Value values_[kNumLaunchValues];
};

/// Packs a kernel's parameters into one buffer laid out as the kernel's
/// parameter space (each value at its natural alignment), passed to
/// cuLaunchKernel whole (CU_LAUNCH_PARAM_BUFFER_POINTER): one copy instead
/// of one per slot, and no heap allocation. A memref becomes its descriptor
/// (allocated and aligned pointer, offset, sizes, strides), as the
/// manifest's ABI sentence says.
class ParamBuilder {
public:
  /// Packs the parameters of `kernel` in their order. A memref value of
  /// another rank than the Spec's is a runtime bug (validation checks the
  /// caller's tensors against the same lists): reported, not launched.
  Status pack(const std::string &kernel, const std::vector<BoundParam> &params,
              const LaunchValues &values);
  /// The `extra` argument of cuLaunchKernel.
  void **extra();

private:
  bool memref(const LaunchValues::Value &value, size_t rank);
  bool scalar(const LaunchValues::Value &value, DType dtype);
  template <typename T> bool put(T v);

  // The decode kernel has the most: a multi-token one with every variant
  // and per-token scales has 14 memrefs of 40 dims in all (122 eight-byte
  // slots) and four scalars: 1000 bytes with their padding.
  alignas(8) unsigned char bytes_[1024];
  size_t size_ = 0;
  void *extra_[5];
};

} // namespace detail
} // namespace paged_attn
#pragma GCC visibility pop

#endif // PAGEDATTN_LIB_RUNTIME_LAUNCHPARAMS_H
