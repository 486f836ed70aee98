//===- LaunchParams.cpp - kernel parameters as a launch packs them --------===//

#include "LaunchParams.h"

#include <cstring>

using namespace paged_attn;
using namespace paged_attn::detail;

std::optional<LaunchValue> detail::launchValueFor(std::string_view name) {
  // The Spec's parameter names (KernelABI.cpp), each bound to what the
  // runtime has for it.
  static constexpr std::pair<std::string_view, LaunchValue> kValues[] = {
      {"q", LaunchValue::Q},
      {"k_cache", LaunchValue::KCache},
      {"v_cache", LaunchValue::VCache},
      {"block_table", LaunchValue::BlockTable},
      {"seq_lens", LaunchValue::SeqLens},
      {"out", LaunchValue::Out},
      {"partial_out", LaunchValue::PartialOut},
      {"partial_lse", LaunchValue::PartialLse},
      {"scale", LaunchValue::Scale},
      {"num_splits", LaunchValue::NumSplits},
      {"split_chunk", LaunchValue::SplitChunk},
      {"num_pages", LaunchValue::NumPages},
      {"first_bad", LaunchValue::FirstBad},
      {"window", LaunchValue::Window},
      {"soft_cap", LaunchValue::SoftCap},
      {"alibi_slopes", LaunchValue::AlibiSlopes},
      {"sinks", LaunchValue::Sinks},
      {"lse", LaunchValue::Lse},
      {"tree_mask", LaunchValue::TreeMask},
      {"k_scale", LaunchValue::KScale},
      {"v_scale", LaunchValue::VScale},
      {"k", LaunchValue::K},
      {"v", LaunchValue::V},
      {"slot_mapping", LaunchValue::SlotMapping},
  };
  for (auto [known, value] : kValues)
    if (name == known)
      return value;
  return std::nullopt;
}

std::string detail::bindParams(const std::vector<KernelParam> &params,
                               std::vector<BoundParam> *bound) {
  bound->clear();
  for (const KernelParam &param : params) {
    std::optional<LaunchValue> value = launchValueFor(param.name);
    if (!value)
      return param.name;
    bound->push_back({param, *value});
  }
  return "";
}

Status ParamBuilder::pack(const std::string &kernel,
                          const std::vector<BoundParam> &params,
                          const LaunchValues &values) {
  size_ = 0;
  for (const BoundParam &bound : params) {
    const LaunchValues::Value &value = values.values_[size_t(bound.value)];
    const KernelParam &param = bound.param;
    bool packed = param.isMemRef ? memref(value, param.shape.size())
                                 : scalar(value, param.dtype);
    if (!packed)
      return Status(StatusCode::InvalidArgument,
                    "cannot pass '" + std::string(param.name) + "' to '" +
                        kernel + "' as the Spec describes it");
  }
  return Status::ok();
}

bool ParamBuilder::memref(const LaunchValues::Value &value, size_t rank) {
  if (value.rank < 0 || size_t(value.rank) != rank)
    return false;
  bool ok = put<uint64_t>(reinterpret_cast<uint64_t>(value.data)) &&
            put<uint64_t>(reinterpret_cast<uint64_t>(value.data)) &&
            put<int64_t>(0);
  for (size_t d = 0; d < rank; ++d)
    ok = ok && put<int64_t>(value.sizes[d]);
  for (size_t d = 0; d < rank; ++d)
    ok = ok && put<int64_t>(value.strides[d]);
  return ok;
}

bool ParamBuilder::scalar(const LaunchValues::Value &value, DType dtype) {
  switch (dtype) {
  case DType::F32:
    return put<float>(value.f32);
  case DType::I32:
    return put<int32_t>(int32_t(value.integer));
  case DType::I64:
    return put<int64_t>(value.integer);
  default:
    return false;
  }
}

template <typename T> bool ParamBuilder::put(T v) {
  size_t at = (size_ + alignof(T) - 1) / alignof(T) * alignof(T);
  if (at + sizeof(T) > sizeof(bytes_))
    return false;
  std::memcpy(bytes_ + at, &v, sizeof(T));
  size_ = at + sizeof(T);
  return true;
}

void **ParamBuilder::extra() {
  extra_[0] = reinterpret_cast<void *>(1); // CU_LAUNCH_PARAM_BUFFER_POINTER
  extra_[1] = bytes_;
  extra_[2] = reinterpret_cast<void *>(2); // CU_LAUNCH_PARAM_BUFFER_SIZE
  extra_[3] = &size_;
  extra_[4] = nullptr; // CU_LAUNCH_PARAM_END
  return extra_;
}
