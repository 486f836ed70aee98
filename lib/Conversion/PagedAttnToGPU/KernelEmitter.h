//===- KernelEmitter.h - shared pieces of the decode kernels ----*- C++ -*-===//
//
// Private to the PagedAttnToGPU conversion: the arithmetic helpers every
// kernel is written with, and kernel creation.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_PAGEDATTNTOGPU_KERNELEMITTER_H
#define LIB_CONVERSION_PAGEDATTNTOGPU_KERNELEMITTER_H

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <limits>

namespace mlir {
namespace paged_attn {

/// Thin helpers over an ImplicitLocOpBuilder for the index and f32
/// arithmetic the kernels are made of.
class KernelEmitter {
public:
  KernelEmitter(ImplicitLocOpBuilder &b) : b(b), f32(b.getF32Type()) {}

  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value i32(int64_t v) {
    return arith::ConstantIntOp::create(b, b.getI32Type(), v);
  }
  Value f32Const(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  Value negInf() { return f32Const(-std::numeric_limits<double>::infinity()); }
  Value zeroVector(int64_t n) {
    auto type = VectorType::get({n}, f32);
    return arith::ConstantOp::create(
        b, DenseElementsAttr::get(type, b.getF32FloatAttr(0.0)));
  }

  Value add(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, x, y); }
  Value div(Value x, Value y) { return arith::DivUIOp::create(b, x, y); }
  Value rem(Value x, Value y) { return arith::RemUIOp::create(b, x, y); }
  Value min(Value x, Value y) { return arith::MinUIOp::create(b, x, y); }
  Value ceilDiv(Value x, Value y) {
    return arith::CeilDivUIOp::create(b, x, y);
  }
  Value ult(Value x, Value y) {
    return arith::CmpIOp::create(b, arith::CmpIPredicate::ult, x, y);
  }
  Value toIndex(Value v) {
    return arith::IndexCastUIOp::create(b, b.getIndexType(), v);
  }

  Value fadd(Value x, Value y) { return arith::AddFOp::create(b, x, y); }
  Value fsub(Value x, Value y) { return arith::SubFOp::create(b, x, y); }
  Value fmul(Value x, Value y) { return arith::MulFOp::create(b, x, y); }
  // x * y + z, fused by the back end (math.fma would become a libdevice
  // call).
  Value fma(Value x, Value y, Value z) {
    auto contract = arith::FastMathFlagsAttr::get(
        b.getContext(), arith::FastMathFlags::contract);
    Value product = arith::MulFOp::create(b, x, y, contract);
    return arith::AddFOp::create(b, product, z, contract);
  }
  Value fmax(Value x, Value y) {
    return LLVM::CallIntrinsicOp::create(
               b, f32, b.getStringAttr("llvm.maxnum.f32"), ValueRange{x, y})
        .getResult(0);
  }
  // One ex2/lg2.approx instruction each. llvm.exp2 is rewritten to a
  // libdevice call by convert-gpu-to-nvvm, so name the NVVM intrinsics.
  Value exp2(Value x) { return callIntrinsic("llvm.nvvm.ex2.approx.ftz.f", x); }
  Value log2(Value x) { return callIntrinsic("llvm.nvvm.lg2.approx.ftz.f", x); }
  /// 1 / x to about 1 ulp, one rcp.approx (arith.divf is the IEEE division,
  /// a subroutine).
  Value reciprocal(Value x) {
    return callIntrinsic("llvm.nvvm.rcp.approx.ftz.f", x);
  }
  Value callIntrinsic(StringRef name, Value x) {
    return LLVM::CallIntrinsicOp::create(b, f32, b.getStringAttr(name),
                                         ValueRange{x})
        .getResult(0);
  }
  Value splat(Value scalar, int64_t n) {
    return vector::BroadcastOp::create(b, VectorType::get({n}, f32), scalar);
  }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, c, x, y);
  }
  Value feq(Value x, Value y) {
    return arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, x, y);
  }
  Value fgt(Value x, Value y) {
    return arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, x, y);
  }
  /// max, or 0 where max is -inf: a safe reference point for exp2(x - ref)
  /// when nothing has been seen yet (avoids -inf - -inf).
  Value safeMax(Value m) { return select(feq(m, negInf()), f32Const(0.0), m); }

  Value shuffleXor(Value v, int64_t offset) {
    return gpu::ShuffleOp::create(b, v, i32(offset), i32(32),
                                  gpu::ShuffleMode::XOR)
        .getShuffleResult();
  }
  /// Shuffles every element of a small f32 vector.
  Value shuffleXorVector(Value v, int64_t offset) {
    int64_t n = cast<VectorType>(v.getType()).getNumElements();
    Value result = v;
    for (int64_t i = 0; i < n; ++i) {
      Value e = vector::ExtractOp::create(b, v, i);
      result = vector::InsertOp::create(b, shuffleXor(e, offset), result, i);
    }
    return result;
  }

  /// A 16-byte-aligned vector load of `n` elements, widened to f32.
  Value loadF32Vector(Value memref, ValueRange indices, int64_t n) {
    Type elemType = cast<MemRefType>(memref.getType()).getElementType();
    Value v = vector::LoadOp::create(
        b, VectorType::get({n}, elemType), memref, indices,
        /*nontemporal=*/false, llvm::MaybeAlign(16));
    return extendToF32(v);
  }
  Value extendToF32(Value v) {
    auto type = cast<VectorType>(v.getType());
    if (type.getElementType().isF32())
      return v;
    return arith::ExtFOp::create(b, VectorType::get(type.getShape(), f32), v);
  }
  Value truncateTo(Value v, Type elemType) {
    if (elemType.isF32())
      return v;
    auto type = cast<VectorType>(v.getType());
    return arith::TruncFOp::create(
        b, VectorType::get(type.getShape(), elemType), v);
  }
  void storeVector(Value v, Value memref, ValueRange indices) {
    vector::StoreOp::create(b, v, memref, indices, /*nontemporal=*/false,
                            llvm::MaybeAlign(16));
  }
  /// Sum of the elements of an f32 vector.
  Value reduceAdd(Value v) {
    return vector::ReductionOp::create(b, vector::CombiningKind::ADD, v);
  }

  ImplicitLocOpBuilder &b;
  Type f32;
};

inline gpu::GPUFuncOp lookupKernel(gpu::GPUModuleOp module, StringRef name) {
  return module.lookupSymbol<gpu::GPUFuncOp>(name);
}

/// A kernel `name` with the given arguments, workgroup buffers (16-byte
/// aligned) and known block size, at the end of `module`.
gpu::GPUFuncOp createKernel(OpBuilder &builder, gpu::GPUModuleOp module,
                            StringRef name, ArrayRef<Type> argTypes,
                            ArrayRef<Type> workgroupTypes, int64_t blockSize);

} // namespace paged_attn
} // namespace mlir

#endif // LIB_CONVERSION_PAGEDATTNTOGPU_KERNELEMITTER_H
