//===- AsyncCopy.h - cp.async of K/V rows with an L2 prefetch hint -*- C++ -*-===//
//
// Private to the PagedAttnToGPU conversion (AsyncCopy.cpp says why the copy
// is inline PTX).
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_PAGEDATTNTOGPU_ASYNCCOPY_H
#define LIB_CONVERSION_PAGEDATTNTOGPU_ASYNCCOPY_H

#include "KernelEmitter.h"

namespace mlir {
namespace paged_attn {

/// 16-byte cp.async.cg copies from a memref in global memory into a shared
/// buffer, by byte address: inline PTX, for the L2 prefetch-size hint
/// (`l2PrefetchBytes` 64, 128 or 256; 0 for none) that NVVM's cp.async does
/// not take.
class AsyncCopyEmitter {
public:
  /// `sharedBytes`: the i8 workgroup buffer copies go into.
  AsyncCopyEmitter(KernelEmitter &e, Value sharedBytes, int64_t elementBytes,
                   int64_t l2PrefetchBytes);

  /// A memref's global base address (its offset included) and strides,
  /// computed once per kernel.
  struct Source {
    Value base;
    SmallVector<Value> strides;
  };
  Source source(Value memref);

  /// Copies the 16 bytes at `indices` of `src` (unit innermost stride) to
  /// byte `sharedOffset` of the shared buffer; only where `predicate` (an
  /// i1) holds, when given.
  void copy16(const Source &src, ValueRange indices, Value sharedOffset,
              Value predicate = Value());

private:
  KernelEmitter &e;
  int64_t elementBytes;
  Value sharedBase;
  std::string ptx;
};

} // namespace paged_attn
} // namespace mlir

#endif // LIB_CONVERSION_PAGEDATTNTOGPU_ASYNCCOPY_H
