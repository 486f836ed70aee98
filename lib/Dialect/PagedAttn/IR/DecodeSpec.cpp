//===- DecodeSpec.cpp - the op as the shared DecodeSpec -------------------===//

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"

using namespace mlir;
using namespace mlir::paged_attn;

DecodeSpec mlir::paged_attn::getDecodeSpec(DecodeOp op) {
  // The verifier calls this once the ranks are right. A multi-token q
  // [batch, L, num_heads, head_dim] has the sizes of [batch, num_heads,
  // head_dim] and a query length.
  int64_t q[3] = {op.getQType().getDimSize(0), op.getNumHeads(),
                  op.getHeadDim()};
  ArrayRef<int64_t> cache = op.getCacheType().getShape();
  DType dtype = toDType(op.getElementType()).value_or(DType::F32);
  DecodeSpec spec = DecodeSpec::fromShapes(q, cache.data(), dtype,
                                           toLayout(op.getLayout()));
  spec.queryLen = op.getQueryLen();
  spec.variants = getDecodeVariants(op);
  std::optional<DType> cacheDType = toDType(op.getCacheType().getElementType());
  if (cacheDType && ::paged_attn::isQuantizedCacheDType(*cacheDType))
    spec.kvQuant =
        ::paged_attn::KVQuant{*cacheDType, getKVScaleKind(op.getKScale())};
  return spec;
}

::paged_attn::KVScaleKind mlir::paged_attn::getKVScaleKind(Value scale) {
  using ::paged_attn::KVScaleKind;
  if (!scale)
    return KVScaleKind::Tensor;
  switch (cast<ShapedType>(scale.getType()).getRank()) {
  case 1:
    return KVScaleKind::Head;
  case 3:
    return KVScaleKind::Token;
  default:
    return KVScaleKind::Tensor;
  }
}

DecodeVariants mlir::paged_attn::getDecodeVariants(DecodeOp op) {
  DecodeVariants v;
  v.window = op.getWindowAttr() != nullptr;
  v.softCap = op.getSoftCapAttr() != nullptr;
  v.alibi = op.getAlibiSlopes() != nullptr;
  v.sinks = op.getSinks() != nullptr;
  v.lse = op.getLse() != nullptr || op.getLseOut() != nullptr;
  v.treeMask = op.getTreeMask() != nullptr;
  return v;
}

::paged_attn::MergeSpec mlir::paged_attn::getMergeSpec(MergeOp op) {
  ShapedType parts = op.getPartialOutType();
  bool rank4 = parts.getRank() == 4;
  return ::paged_attn::MergeSpec::forOp(
      rank4 ? parts.getDimSize(2) : 0, rank4 ? parts.getDimSize(3) : 0,
      toDType(parts.getElementType()).value_or(DType::F32),
      op.getSinks() != nullptr,
      op.getLse() != nullptr || op.getLseOut() != nullptr);
}

std::optional<DType> mlir::paged_attn::toDType(Type type) {
  if (type.isF16())
    return DType::F16;
  if (type.isBF16())
    return DType::BF16;
  if (type.isF32())
    return DType::F32;
  if (type.isSignlessInteger(32))
    return DType::I32;
  if (type.isSignlessInteger(64))
    return DType::I64;
  if (type.isSignlessInteger(8))
    return DType::I8;
  if (isa<Float8E4M3FNType>(type))
    return DType::F8E4M3FN;
  if (isa<Float8E5M2Type>(type))
    return DType::F8E5M2;
  return std::nullopt;
}

Type mlir::paged_attn::toMLIRType(MLIRContext *ctx, DType dtype) {
  switch (dtype) {
  case DType::F16:
    return Float16Type::get(ctx);
  case DType::BF16:
    return BFloat16Type::get(ctx);
  case DType::F32:
    return Float32Type::get(ctx);
  case DType::I32:
    return IntegerType::get(ctx, 32);
  case DType::I64:
    return IntegerType::get(ctx, 64);
  case DType::I8:
    return IntegerType::get(ctx, 8);
  case DType::F8E4M3FN:
    return Float8E4M3FNType::get(ctx);
  case DType::F8E5M2:
    return Float8E5M2Type::get(ctx);
  }
  return Type();
}

Layout mlir::paged_attn::toLayout(KVLayout layout) {
  return layout == KVLayout::nhd ? Layout::NHD : Layout::HND;
}

KVLayout mlir::paged_attn::toKVLayout(Layout layout) {
  return layout == Layout::NHD ? KVLayout::nhd : KVLayout::hnd;
}
