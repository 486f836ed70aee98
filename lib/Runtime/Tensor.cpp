//===- Tensor.cpp - strided views of device memory ------------------------===//

#include "PagedAttn/Runtime/Runtime.h"

#include <algorithm>

using namespace paged_attn;

Tensor Tensor::contiguous(void *data, DType dtype,
                          std::initializer_list<int64_t> sizes) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.rank = static_cast<int>(std::min<size_t>(sizes.size(), 4));
  int i = 0;
  for (int64_t s : sizes)
    if (i < 4)
      t.sizes[i++] = s;
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.strides[d] = stride;
    stride *= t.sizes[d];
  }
  return t;
}

int64_t Tensor::numElements() const {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d)
    n *= sizes[d];
  return n;
}
