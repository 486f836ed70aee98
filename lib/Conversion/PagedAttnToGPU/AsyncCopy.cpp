//===- AsyncCopy.cpp - cp.async of K/V rows with an L2 prefetch hint ------===//
//
// The tensor-core kernel copies every K/V row whole, 16 bytes a lane. The
// `.L2::128B` qualifier of cp.async has L2 fetch the surrounding 128 bytes
// on a miss, so DRAM sees fewer, larger requests: decode 1-3% faster on
// H200, the same load pattern 2-3% faster in a probe on H100 (bench/NOTES.md
// 18). NVVM's cp.async takes no such qualifier, so the copy is one line of
// inline PTX on byte addresses built from the cache's base pointer and
// strides.
//
//===----------------------------------------------------------------------===//

#include "AsyncCopy.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::paged_attn;

AsyncCopyEmitter::AsyncCopyEmitter(KernelEmitter &e, Value sharedBytes,
                                   int64_t elementBytes,
                                   int64_t l2PrefetchBytes)
    : e(e), elementBytes(elementBytes) {
  ImplicitLocOpBuilder &b = e.b;
  Value base = memref::ExtractAlignedPointerAsIndexOp::create(b, sharedBytes);
  sharedBase = arith::IndexCastOp::create(b, b.getI32Type(), base);
  ptx = "cp.async.cg.shared.global";
  if (l2PrefetchBytes > 0)
    ptx += ".L2::" + std::to_string(l2PrefetchBytes) + "B";
  ptx += " [$0], [$1], 16";
}

AsyncCopyEmitter::Source AsyncCopyEmitter::source(Value memref) {
  ImplicitLocOpBuilder &b = e.b;
  auto metadata = memref::ExtractStridedMetadataOp::create(b, memref);
  Value pointer = memref::ExtractAlignedPointerAsIndexOp::create(
      b, metadata.getBaseBuffer());
  Value generic = arith::IndexCastOp::create(
      b, b.getI64Type(),
      e.add(pointer, e.mul(metadata.getOffset(), e.index(elementBytes))));
  Value global = NVVM::InlinePtxOp::create(
                     b, TypeRange{b.getI64Type()}, ValueRange{generic},
                     ValueRange{}, "cvta.to.global.u64 $0, $1;", Value())
                     .getResult(0);
  return {global, SmallVector<Value>(metadata.getStrides())};
}

Value AsyncCopyEmitter::elementOffset(const Source &src, ValueRange indices) {
  Value element = indices.back(); // unit innermost stride
  for (size_t i = 0; i + 1 < indices.size(); ++i)
    element = e.add(element, e.mul(indices[i], src.strides[i]));
  return element;
}

Value AsyncCopyEmitter::offsetBy(Value global, Value elements) {
  ImplicitLocOpBuilder &b = e.b;
  return arith::AddIOp::create(
      b, global,
      arith::IndexCastOp::create(b, b.getI64Type(),
                                 e.mul(elements, e.index(elementBytes))));
}

Value AsyncCopyEmitter::baseAddress(const Source &src, Value offset) {
  ImplicitLocOpBuilder &b = e.b;
  return NVVM::InlinePtxOp::create(b, TypeRange{b.getI64Type()},
                                   ValueRange{address(src, offset)},
                                   ValueRange{}, "mov.b64 $0, $1;", Value())
      .getResult(0);
}

/// A zero fill is cp.async's source size 0: it writes the 16 bytes as zeros
/// and reads nothing.
void AsyncCopyEmitter::copy16(Value global, Value sharedOffset,
                              Value predicate, Value zeroFill) {
  ImplicitLocOpBuilder &b = e.b;
  Value shared = arith::AddIOp::create(
      b, sharedBase,
      arith::IndexCastOp::create(b, b.getI32Type(), sharedOffset));
  if (!zeroFill) {
    NVVM::InlinePtxOp::create(b, TypeRange{}, ValueRange{shared, global},
                              ValueRange{}, ptx + ";", predicate);
    return;
  }
  Value sourceBytes = e.select(zeroFill, e.i32(0), e.i32(16));
  NVVM::InlinePtxOp::create(b, TypeRange{},
                            ValueRange{shared, global, sourceBytes},
                            ValueRange{}, ptx + ", $2;", predicate);
}
