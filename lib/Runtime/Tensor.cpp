//===- Tensor.cpp - strided views of device memory ------------------------===//

#include "PagedAttn/Runtime/Runtime.h"

#include <algorithm>

using namespace paged_attn;

Tensor Tensor::contiguous(void *data, DType dtype,
                          std::initializer_list<int64_t> sizes) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  // More than four sizes is no tensor the runtime takes: rank -1 (see
  // below) rather than the first four.
  if (sizes.size() > 4) {
    t.rank = -1;
    return t;
  }
  t.rank = static_cast<int>(sizes.size());
  std::copy(sizes.begin(), sizes.end(), t.sizes);
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.strides[d] = stride;
    // Sizes whose product overflows have no row-major layout: the rank of
    // -1 makes every call refuse the view instead of a wrapped stride.
    if (__builtin_mul_overflow(stride, t.sizes[d], &stride)) {
      t.rank = -1;
      break;
    }
  }
  return t;
}

int64_t Tensor::numElements() const {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d)
    if (__builtin_mul_overflow(n, sizes[d], &n))
      return -1;
  return n;
}
