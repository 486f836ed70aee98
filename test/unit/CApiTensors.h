//===- CApiTensors.h - C API views of the C++ tests' tensors ----*- C++ -*-===//
//
// The unit tests build their arguments as C++ Tensors and DecodeParams;
// these give the C API's view of the same memory.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TEST_UNIT_CAPITENSORS_H
#define PAGEDATTN_TEST_UNIT_CAPITENSORS_H

#include "PagedAttn-c/Runtime.h"
#include "PagedAttn/Runtime/Runtime.h"

#include <algorithm>

namespace paged_attn {
namespace capi {

inline paged_attn_tensor toC(const Tensor &t) {
  paged_attn_tensor r{};
  r.data = t.data;
  r.dtype = static_cast<paged_attn_dtype>(t.dtype);
  r.rank = t.rank;
  std::copy(t.sizes, t.sizes + 4, r.sizes);
  std::copy(t.strides, t.strides + 4, r.strides);
  return r;
}

/// The six tensors and the caches' scales of `cpp` (its variants' and
/// options left at the C defaults).
inline paged_attn_decode_params toC(const DecodeParams &cpp) {
  paged_attn_decode_params p;
  paged_attn_decode_params_init(&p);
  p.q = toC(cpp.q);
  p.k_cache = toC(cpp.kCache);
  p.v_cache = toC(cpp.vCache);
  p.block_table = toC(cpp.blockTable);
  p.seq_lens = toC(cpp.seqLens);
  p.out = toC(cpp.out);
  p.k_scale = toC(cpp.kScale);
  p.v_scale = toC(cpp.vScale);
  return p;
}

inline paged_attn_merge_params toC(const MergeParams &cpp) {
  paged_attn_merge_params p{};
  p.partial_out = toC(cpp.partialOut);
  p.partial_lse = toC(cpp.partialLse);
  p.out = toC(cpp.out);
  p.sinks = toC(cpp.sinks);
  p.lse = toC(cpp.lse);
  return p;
}

} // namespace capi
} // namespace paged_attn

#endif // PAGEDATTN_TEST_UNIT_CAPITENSORS_H
