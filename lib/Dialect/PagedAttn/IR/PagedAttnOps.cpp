//===- PagedAttnOps.cpp - paged_attn operations ---------------------------===//

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>

using namespace mlir;
using namespace mlir::paged_attn;

#define GET_OP_CLASSES
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Builders
//===----------------------------------------------------------------------===//

static FloatAttr buildScaleAttr(OpBuilder &b, std::optional<float> scale) {
  return scale ? b.getF32FloatAttr(*scale) : FloatAttr();
}

void DecodeOp::build(OpBuilder &b, OperationState &state, Value q, Value kCache,
                     Value vCache, Value blockTable, Value seqLens,
                     KVLayout layout, std::optional<float> scale) {
  build(b, state, q.getType(), q, kCache, vCache, blockTable, seqLens,
        /*out=*/Value(), KVLayoutAttr::get(b.getContext(), layout),
        buildScaleAttr(b, scale));
}

void DecodeOp::build(OpBuilder &b, OperationState &state, Value q, Value kCache,
                     Value vCache, Value blockTable, Value seqLens, Value out,
                     KVLayout layout, std::optional<float> scale) {
  build(b, state, /*result=*/Type(), q, kCache, vCache, blockTable, seqLens,
        out, KVLayoutAttr::get(b.getContext(), layout),
        buildScaleAttr(b, scale));
}

int64_t DecodeOp::getNumKVHeads() {
  return getCacheType().getDimSize(
      ::paged_attn::cacheDims(toLayout(getLayout())).kvHeads);
}

int64_t DecodeOp::getPageSize() {
  return getCacheType().getDimSize(
      ::paged_attn::cacheDims(toLayout(getLayout())).page);
}

float DecodeOp::getEffectiveScale() {
  if (FloatAttr scale = getScaleAttr())
    return scale.getValueAsDouble();
  return 1.0f / std::sqrt(static_cast<float>(getHeadDim()));
}

//===----------------------------------------------------------------------===//
// Memory effects
//===----------------------------------------------------------------------===//

void DecodeOp::getEffects(
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>
        &effects) {
  if (!hasPureBufferSemantics())
    return;
  for (OpOperand &operand : getOperation()->getOpOperands()) {
    if (operand.get() == getOut())
      effects.emplace_back(MemoryEffects::Write::get(), &operand,
                           SideEffects::DefaultResource::get());
    else
      effects.emplace_back(MemoryEffects::Read::get(), &operand,
                           SideEffects::DefaultResource::get());
  }
}

//===----------------------------------------------------------------------===//
// Verifier
//===----------------------------------------------------------------------===//

static std::string formatShape(ArrayRef<int64_t> shape) {
  std::string s = "[";
  llvm::raw_string_ostream os(s);
  llvm::interleaveComma(shape, os, [&](int64_t d) {
    if (ShapedType::isDynamic(d))
      os << "?";
    else
      os << d;
  });
  os << "]";
  return s;
}

/// Element types the op computes on: the spec's floating-point dtypes.
static bool isSupportedElementType(Type t) {
  std::optional<DType> dtype = toDType(t);
  return dtype && isDataDType(*dtype);
}

/// The vector-loaded operands of the memref form need unit innermost stride
/// and rows, pages and base offsets on 16-byte boundaries.
static LogicalResult verifyVectorAccess(DecodeOp op, StringRef name,
                                        MemRefType type) {
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(type.getStridesAndOffset(strides, offset)))
    return op.emitOpError()
           << "'" << name << "' must have a strided layout, got " << type;
  if (strides.empty())
    return success();
  if (strides.back() != 1)
    return op.emitOpError()
           << "'" << name
           << "' must have unit stride in its innermost dimension, got "
           << (ShapedType::isDynamic(strides.back())
                   ? std::string("?")
                   : std::to_string(strides.back()));
  int64_t elemBytes = type.getElementTypeBitWidth() / 8;
  for (auto [dim, stride] : llvm::enumerate(ArrayRef(strides).drop_back())) {
    if (ShapedType::isDynamic(stride) || (stride * elemBytes) % 16 == 0)
      continue;
    return op.emitOpError()
           << "'" << name << "' stride of dim " << dim << " is " << stride
           << " elements (" << stride * elemBytes
           << " bytes); it must be a multiple of 16 bytes";
  }
  if (!ShapedType::isDynamic(offset) && (offset * elemBytes) % 16 != 0)
    return op.emitOpError() << "'" << name << "' offset is " << offset
                            << " elements (" << offset * elemBytes
                            << " bytes); it must be a multiple of 16 bytes";
  return success();
}

LogicalResult DecodeOp::verify() {
  // Form: all tensors with a result, or all memrefs writing `outs`.
  Value inputs[] = {getQ(), getKCache(), getVCache(), getBlockTable(),
                    getSeqLens()};
  StringRef names[] = {"q", "k_cache", "v_cache", "block_table", "seq_lens"};
  bool isTensor = isa<RankedTensorType>(getQ().getType());
  for (Value v : inputs)
    if (isa<RankedTensorType>(v.getType()) != isTensor)
      return emitOpError("'q', 'k_cache', 'v_cache', 'block_table' and "
                         "'seq_lens' must be all tensors or all memrefs");
  if (isTensor && getOut())
    return emitOpError("the tensor form takes no 'outs' operand; it returns "
                       "its result");
  if (isTensor && !getResult())
    return emitOpError("the tensor form must return a result");
  if (!isTensor && getResult())
    return emitOpError("the memref form has no result; it writes 'outs'");
  if (!isTensor && !getOut())
    return emitOpError("the memref form needs an 'outs' operand");

  // Ranks.
  int64_t ranks[] = {3, 4, 4, 2, 1};
  StringRef rankDocs[] = {"[batch, num_heads, head_dim]",
                          "[pages, page, num_kv_heads, head_dim] or [pages, "
                          "num_kv_heads, page, head_dim]",
                          "the rank of 'k_cache'", "[batch, max_pages]",
                          "[batch]"};
  for (auto [v, name, rank, doc] :
       llvm::zip_equal(inputs, names, ranks, rankDocs)) {
    int64_t got = cast<ShapedType>(v.getType()).getRank();
    if (got != rank)
      return emitOpError() << "'" << name << "' must have rank " << rank << " ("
                           << doc << "), got " << got;
  }
  Value output = isTensor ? Value(getResult()) : Value(getOut());
  StringRef outName = isTensor ? "result" : "out";
  auto outType = cast<ShapedType>(output.getType());
  if (outType.getRank() != 3)
    return emitOpError() << "'" << outName
                         << "' must have rank 3 ([batch, num_heads, "
                            "head_dim]), got "
                         << outType.getRank();

  // Element types.
  ShapedType qType = getQType();
  Type elemType = qType.getElementType();
  if (!isSupportedElementType(elemType))
    return emitOpError() << "'q' element type must be f16, bf16 or f32, got "
                         << elemType;
  Value sameTypeValues[] = {getKCache(), getVCache(), output};
  StringRef sameTypeNames[] = {"k_cache", "v_cache", outName};
  for (auto [v, name] : llvm::zip_equal(sameTypeValues, sameTypeNames)) {
    Type t = cast<ShapedType>(v.getType()).getElementType();
    if (t != elemType)
      return emitOpError() << "'" << name << "' element type (" << t
                           << ") must equal the element type of 'q' ("
                           << elemType << ")";
  }
  for (auto [v, name] : llvm::zip_equal(ArrayRef(inputs).drop_front(3),
                                        ArrayRef(names).drop_front(3))) {
    Type t = cast<ShapedType>(v.getType()).getElementType();
    if (!t.isSignlessInteger(32))
      return emitOpError() << "'" << name << "' element type must be i32, got "
                           << t;
  }

  // Static sizes the kernels are specialised on.
  if (qType.isDynamicDim(1) || qType.isDynamicDim(2))
    return emitOpError("num_heads and head_dim ('q' dims 1 and 2) must be "
                       "static, got ")
           << formatShape(qType.getShape());
  ShapedType kType = getCacheType();
  ShapedType vType = cast<ShapedType>(getVCache().getType());
  for (int64_t dim = 1; dim < 4; ++dim)
    if (kType.isDynamicDim(dim))
      return emitOpError("'k_cache' dims 1, 2 and 3 (page, num_kv_heads and "
                         "head_dim in some order) must be static, got ")
             << formatShape(kType.getShape());
  if (kType.getShape() != vType.getShape())
    return emitOpError() << "'k_cache' and 'v_cache' must have the same "
                            "shape, got "
                         << formatShape(kType.getShape()) << " and "
                         << formatShape(vType.getShape());

  DecodeSpec spec = getDecodeSpec(*this);
  if (spec.headDim >= 1 && kType.getDimSize(3) != spec.headDim)
    return emitOpError() << "'k_cache' head_dim (" << kType.getDimSize(3)
                         << ") must equal the head_dim of 'q' (" << spec.headDim
                         << ")";
  // The rules on the sizes and dtype, shared with every layer.
  if (std::string error = spec.validate(); !error.empty())
    return emitOpError() << error;

  // Batch sizes, where static.
  std::pair<StringRef, int64_t> batches[] = {
      {"q", qType.getDimSize(0)},
      {"block_table",
       cast<ShapedType>(getBlockTable().getType()).getDimSize(0)},
      {"seq_lens", cast<ShapedType>(getSeqLens().getType()).getDimSize(0)},
      {outName, outType.getDimSize(0)}};
  std::optional<std::pair<StringRef, int64_t>> firstStatic;
  for (auto [name, batch] : batches) {
    if (ShapedType::isDynamic(batch))
      continue;
    if (!firstStatic) {
      firstStatic = {name, batch};
      continue;
    }
    if (batch != firstStatic->second)
      return emitOpError() << "batch sizes disagree: '" << firstStatic->first
                           << "' has " << firstStatic->second << ", '" << name
                           << "' has " << batch;
  }

  for (int64_t dim = 1; dim < 3; ++dim)
    if (outType.getDimSize(dim) != qType.getDimSize(dim))
      return emitOpError() << "'" << outName << "' shape "
                           << formatShape(outType.getShape())
                           << " must equal the shape of 'q' "
                           << formatShape(qType.getShape());

  if (FloatAttr scaleAttr = getScaleAttr()) {
    double scale = scaleAttr.getValueAsDouble();
    if (!std::isfinite(scale) || scale <= 0.0)
      return emitOpError() << "scale must be finite and positive, got "
                           << scale;
  }

  if (!isTensor) {
    Value vectorValues[] = {getQ(), getKCache(), getVCache(), getOut()};
    StringRef vectorNames[] = {"q", "k_cache", "v_cache", "out"};
    for (auto [v, name] : llvm::zip_equal(vectorValues, vectorNames))
      if (failed(
              verifyVectorAccess(*this, name, cast<MemRefType>(v.getType()))))
        return failure();
  }
  return success();
}
