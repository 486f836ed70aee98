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

  /// The element offset of `indices` in `src` (unit innermost stride).
  Value elementOffset(const Source &src, ValueRange indices);

  /// Copies the 16 bytes at `indices` of `src` (unit innermost stride) to
  /// byte `sharedOffset` of the shared buffer; only where `predicate` (an
  /// i1) holds, when given.
  void copy16(const Source &src, ValueRange indices, Value sharedOffset,
              Value predicate = Value()) {
    copy16(address(src, elementOffset(src, indices)), sharedOffset,
           predicate);
  }
  /// The global address (i64) of element `offset` of `src`.
  Value address(const Source &src, Value offset) {
    return offsetBy(src.base, offset);
  }
  /// The global address `elements` elements past `global`.
  Value offsetBy(Value global, Value elements);
  /// The same, as a base that byte offsets are added to: LLVM does not see
  /// through it, so it cannot fold those offsets back into an element
  /// index (which costs four instructions a copy instead of one 64-bit add).
  Value baseAddress(const Source &src, Value offset);
  /// The same from global address `global`; where `zeroFill` (an i1, when
  /// given) holds, the 16 bytes are zeros instead and nothing is read.
  void copy16(Value global, Value sharedOffset, Value predicate,
              Value zeroFill = Value());

private:
  KernelEmitter &e;
  int64_t elementBytes;
  Value sharedBase;
  // "cp.async... [dst], [src], 16", without its source size and ';'.
  std::string ptx;
};

} // namespace paged_attn
} // namespace mlir

#endif // LIB_CONVERSION_PAGEDATTNTOGPU_ASYNCCOPY_H
