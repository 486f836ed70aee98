//===- PagedAttnOps.cpp - paged_attn operations ---------------------------===//

#include "OperandChecks.h"
#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/CheckedArithmetic.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <numeric>

using namespace mlir;
using namespace mlir::paged_attn;
using namespace mlir::paged_attn::operand_checks;

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
  build(b, state, q.getType(), /*lse=*/Type(), q, kCache, vCache, blockTable,
        seqLens, /*alibi_slopes=*/Value(), /*sinks=*/Value(),
        /*tree_mask=*/Value(), /*k_scale=*/Value(), /*v_scale=*/Value(),
        /*out=*/Value(), /*lse_out=*/Value(),
        KVLayoutAttr::get(b.getContext(), layout), buildScaleAttr(b, scale),
        /*window=*/IntegerAttr(),
        /*soft_cap=*/FloatAttr());
}

void DecodeOp::build(OpBuilder &b, OperationState &state, Value q, Value kCache,
                     Value vCache, Value blockTable, Value seqLens, Value out,
                     KVLayout layout, std::optional<float> scale) {
  build(b, state, /*result=*/Type(), /*lse=*/Type(), q, kCache, vCache,
        blockTable, seqLens, /*alibi_slopes=*/Value(), /*sinks=*/Value(),
        /*tree_mask=*/Value(), /*k_scale=*/Value(), /*v_scale=*/Value(), out,
        /*lse_out=*/Value(), KVLayoutAttr::get(b.getContext(), layout),
        buildScaleAttr(b, scale), /*window=*/IntegerAttr(),
        /*soft_cap=*/FloatAttr());
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
    if (operand.get() == getOut() || operand.get() == getLseOut())
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

std::string operand_checks::formatShape(ArrayRef<int64_t> shape) {
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

bool operand_checks::isSupportedElementType(Type t) {
  std::optional<DType> dtype = toDType(t);
  return dtype && isDataDType(*dtype);
}

LogicalResult operand_checks::verifyMemRef(Operation *op, StringRef name,
                                           MemRefType type, bool vectorRows) {
  if (Attribute space = type.getMemorySpace())
    return op->emitOpError()
           << "'" << name << "' must be in the default memory space, got "
           << space;
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(type.getStridesAndOffset(strides, offset)))
    return op->emitOpError()
           << "'" << name << "' must have a strided layout, got " << type;
  if (!vectorRows || strides.empty())
    return success();
  if (strides.back() != 1)
    return op->emitOpError()
           << "'" << name
           << "' must have unit stride in its innermost dimension, got "
           << (ShapedType::isDynamic(strides.back())
                   ? std::string("?")
                   : std::to_string(strides.back()));
  // Elements to bytes, with no overflow: the stride is checked in bytes.
  int64_t elemBytes = type.getElementTypeBitWidth() / 8;
  auto bytes = [&](int64_t elements) {
    std::optional<int64_t> b = llvm::checkedMul(elements, elemBytes);
    return b ? std::to_string(*b) : std::string("more than 2^63");
  };
  auto aligned = [&](int64_t elements) {
    return elements % (16 / std::gcd<int64_t>(16, elemBytes)) == 0;
  };
  for (auto [dim, stride] : llvm::enumerate(ArrayRef(strides).drop_back())) {
    if (ShapedType::isDynamic(stride) || aligned(stride))
      continue;
    return op->emitOpError()
           << "'" << name << "' stride of dim " << dim << " is " << stride
           << " elements (" << bytes(stride)
           << " bytes); it must be a multiple of 16 bytes";
  }
  if (!ShapedType::isDynamic(offset) && !aligned(offset))
    return op->emitOpError()
           << "'" << name << "' offset is " << offset << " elements ("
           << bytes(offset) << " bytes); it must be a multiple of 16 bytes";
  return success();
}

namespace {
/// The operands by role, and whether the op is the tensor form.
struct DecodeOperands {
  Value inputs[5];
  StringRef names[5] = {"q", "k_cache", "v_cache", "block_table", "seq_lens"};
  bool isTensor;
  Value output;
  StringRef outName;

  explicit DecodeOperands(DecodeOp op)
      : inputs{op.getQ(), op.getKCache(), op.getVCache(), op.getBlockTable(),
               op.getSeqLens()},
        isTensor(isa<RankedTensorType>(op.getQ().getType())),
        output(isTensor ? Value(op.getResult()) : Value(op.getOut())),
        outName(isTensor ? "result" : "out") {}
  ShapedType outType() const { return cast<ShapedType>(output.getType()); }
};
} // namespace

/// All operands tensors with a result, or memrefs writing `outs`.
static LogicalResult verifyForm(DecodeOp op, const DecodeOperands &o) {
  for (Value v : o.inputs)
    if (isa<RankedTensorType>(v.getType()) != o.isTensor)
      return op.emitOpError("'q', 'k_cache', 'v_cache', 'block_table' and "
                            "'seq_lens' must be all tensors or all memrefs");
  for (auto [v, name] :
       {std::pair<Value, StringRef>{op.getAlibiSlopes(), "alibi_slopes"},
        {op.getSinks(), "sinks"},
        {op.getTreeMask(), "tree_mask"},
        {op.getKScale(), "k_scale"},
        {op.getVScale(), "v_scale"}})
    if (v && isa<RankedTensorType>(v.getType()) != o.isTensor)
      return op.emitOpError()
             << "'" << name << "' must be a "
             << (o.isTensor ? "tensor" : "memref") << " as 'q' is";
  if (o.isTensor && op.getOut())
    return op.emitOpError("the tensor form takes no 'outs' operand; it "
                          "returns its result");
  if (o.isTensor && op.getLseOut())
    return op.emitOpError("the tensor form takes no 'lse' operand; it "
                          "returns the log-sum-exp as a second result");
  if (!o.isTensor && op.getLse())
    return op.emitOpError("the memref form has no results; it writes the "
                          "log-sum-exp into its 'lse' operand");
  if (o.isTensor && !op.getResult())
    return op.emitOpError("the tensor form must return a result");
  if (!o.isTensor && op.getResult())
    return op.emitOpError("the memref form has no result; it writes 'outs'");
  if (!o.isTensor && !op.getOut())
    return op.emitOpError("the memref form needs an 'outs' operand");
  return success();
}

static LogicalResult verifyRanks(DecodeOp op, const DecodeOperands &o) {
  int64_t qRank = op.getQType().getRank();
  if (qRank != 3 && qRank != 4)
    return op.emitOpError() << "'q' must have rank 3 ([batch, num_heads, "
                               "head_dim]) or 4 ([batch, L, num_heads, "
                               "head_dim]), got "
                            << qRank;
  int64_t ranks[] = {4, 4, 2, 1};
  StringRef rankDocs[] = {"[pages, page, num_kv_heads, head_dim] or [pages, "
                          "num_kv_heads, page, head_dim]",
                          "the rank of 'k_cache'", "[batch, max_pages]",
                          "[batch]"};
  for (auto [v, name, rank, doc] :
       llvm::zip_equal(ArrayRef(o.inputs).drop_front(),
                       ArrayRef(o.names).drop_front(), ranks, rankDocs)) {
    int64_t got = cast<ShapedType>(v.getType()).getRank();
    if (got != rank)
      return op.emitOpError() << "'" << name << "' must have rank " << rank
                              << " (" << doc << "), got " << got;
  }
  if (o.outType().getRank() != qRank)
    return op.emitOpError() << "'" << o.outName << "' must have the rank of "
                            << "'q' (" << qRank << "), got "
                            << o.outType().getRank();
  return success();
}

static LogicalResult verifyElementTypes(DecodeOp op, const DecodeOperands &o) {
  Type elemType = op.getQType().getElementType();
  if (!isSupportedElementType(elemType))
    return op.emitOpError()
           << "'q' element type must be f16, bf16 or f32, got " << elemType;
  // The caches have q's type or, quantised, an fp8 one (the spec's rules
  // say which q it needs).
  Type cacheType = op.getCacheType().getElementType();
  std::optional<DType> cacheDType = toDType(cacheType);
  bool quantized =
      cacheDType && ::paged_attn::isQuantizedCacheDType(*cacheDType);
  if (cacheType != elemType && !quantized)
    return op.emitOpError() << "'k_cache' element type (" << cacheType
                            << ") must equal the element type of 'q' ("
                            << elemType << ") or be f8E4M3FN or f8E5M2";
  Type vType = cast<ShapedType>(op.getVCache().getType()).getElementType();
  if (vType != cacheType)
    return op.emitOpError()
           << "'v_cache' element type (" << vType
           << ") must equal that of 'k_cache' (" << cacheType << ")";
  Type outType = o.outType().getElementType();
  if (outType != elemType)
    return op.emitOpError()
           << "'" << o.outName << "' element type (" << outType
           << ") must equal the element type of 'q' (" << elemType << ")";
  for (auto [v, name] : llvm::zip_equal(ArrayRef(o.inputs).drop_front(3),
                                        ArrayRef(o.names).drop_front(3))) {
    Type t = cast<ShapedType>(v.getType()).getElementType();
    if (!t.isSignlessInteger(32))
      return op.emitOpError()
             << "'" << name << "' element type must be i32, got " << t;
  }
  return success();
}

/// The static sizes the kernels are specialised on, and the op's rules on
/// them (the spec's, shared with every layer).
static LogicalResult verifySizes(DecodeOp op) {
  ShapedType qType = op.getQType();
  if (llvm::any_of(qType.getShape().drop_front(), ShapedType::isDynamic))
    return op.emitOpError()
           << (op.isMultiToken()
                   ? "L, num_heads and head_dim ('q' dims 1, 2 and 3)"
                   : "num_heads and head_dim ('q' dims 1 and 2)")
           << " must be static, got " << formatShape(qType.getShape());
  ShapedType kType = op.getCacheType();
  ShapedType vType = cast<ShapedType>(op.getVCache().getType());
  for (int64_t dim = 1; dim < 4; ++dim)
    if (kType.isDynamicDim(dim))
      return op.emitOpError("'k_cache' dims 1, 2 and 3 (page, num_kv_heads "
                            "and head_dim in some order) must be static, got ")
             << formatShape(kType.getShape());
  if (kType.getShape() != vType.getShape())
    return op.emitOpError() << "'k_cache' and 'v_cache' must have the same "
                               "shape, got "
                            << formatShape(kType.getShape()) << " and "
                            << formatShape(vType.getShape());
  DecodeSpec spec = getDecodeSpec(op);
  if (spec.headDim >= 1 && kType.getDimSize(3) != spec.headDim)
    return op.emitOpError()
           << "'k_cache' head_dim (" << kType.getDimSize(3)
           << ") must equal the head_dim of 'q' (" << spec.headDim << ")";
  if (std::string error = spec.validate(); !error.empty())
    return op.emitOpError() << error;
  return success();
}

/// Batch sizes agree where static; out has the shape of q.
static LogicalResult verifyBatchAndOut(DecodeOp op, const DecodeOperands &o) {
  ShapedType qType = op.getQType();
  ShapedType outType = o.outType();
  std::pair<StringRef, int64_t> batches[] = {
      {"q", qType.getDimSize(0)},
      {"block_table",
       cast<ShapedType>(op.getBlockTable().getType()).getDimSize(0)},
      {"seq_lens", cast<ShapedType>(op.getSeqLens().getType()).getDimSize(0)},
      {o.outName, outType.getDimSize(0)},
      {"tree_mask",
       op.getTreeMask()
           ? cast<ShapedType>(op.getTreeMask().getType()).getDimSize(0)
           : ShapedType::kDynamic}};
  std::optional<std::pair<StringRef, int64_t>> firstStatic;
  for (auto [name, batch] : batches) {
    if (ShapedType::isDynamic(batch))
      continue;
    if (!firstStatic) {
      firstStatic = {name, batch};
      continue;
    }
    if (batch != firstStatic->second)
      return op.emitOpError()
             << "batch sizes disagree: '" << firstStatic->first << "' has "
             << firstStatic->second << ", '" << name << "' has " << batch;
  }
  for (int64_t dim = 1; dim < qType.getRank(); ++dim)
    if (outType.getDimSize(dim) != qType.getDimSize(dim))
      return op.emitOpError() << "'" << o.outName << "' shape "
                              << formatShape(outType.getShape())
                              << " must equal the shape of 'q' "
                              << formatShape(qType.getShape());
  return success();
}

/// `layout`, `scale`, `window` and `soft_cap` are the op's attributes;
/// others must belong to a dialect (a misspelt `scal` would otherwise be
/// kept and ignored).
static LogicalResult verifyAttributes(DecodeOp op) {
  for (NamedAttribute attr : op->getDiscardableAttrs())
    if (!attr.getName().getValue().contains('.'))
      return op.emitOpError()
             << "has no attribute '" << attr.getName().getValue()
             << "' (its attributes are 'layout', 'scale', 'window' and "
                "'soft_cap')";
  if (FloatAttr scaleAttr = op.getScaleAttr()) {
    double scale = scaleAttr.getValueAsDouble();
    if (!std::isfinite(scale) || scale <= 0.0)
      return op.emitOpError()
             << "scale must be finite and positive, got " << scale;
  }
  if (std::optional<int64_t> window = op.getWindow(); window && *window < 1)
    return op.emitOpError() << "window must be at least 1, got " << *window;
  if (FloatAttr capAttr = op.getSoftCapAttr()) {
    double cap = capAttr.getValueAsDouble();
    if (!std::isfinite(cap) || cap <= 0.0)
      return op.emitOpError()
             << "soft_cap must be finite and positive, got " << cap;
  }
  return success();
}

LogicalResult operand_checks::verifyF32Shape(Operation *op, StringRef name,
                                             Value value,
                                             ArrayRef<int64_t> shape,
                                             StringRef shapeDoc) {
  auto type = cast<ShapedType>(value.getType());
  if (!type.getElementType().isF32())
    return op->emitOpError() << "'" << name << "' element type must be f32, got "
                            << type.getElementType();
  bool matches = type.getRank() == int64_t(shape.size());
  for (int64_t i = 0; matches && i < type.getRank(); ++i)
    matches = ShapedType::isDynamic(shape[i]) || type.isDynamicDim(i) ||
              type.getDimSize(i) == shape[i];
  if (!matches)
    return op->emitOpError()
           << "'" << name << "' must have shape " << shapeDoc << " "
           << formatShape(shape) << ", got " << formatShape(type.getShape());
  if (auto memref = dyn_cast<MemRefType>(type))
    return verifyMemRef(op, name, memref, /*vectorRows=*/false);
  return success();
}

/// The draft-tree mask of a multi-token decode: i1 or i8 [batch, L, L].
static LogicalResult verifyTreeMask(DecodeOp op) {
  Value mask = op.getTreeMask();
  if (!mask)
    return success();
  if (!op.isMultiToken())
    return op.emitOpError("'tree_mask' needs a multi-token 'q' of rank 4 "
                          "([batch, L, num_heads, head_dim])");
  auto type = cast<ShapedType>(mask.getType());
  if (!type.getElementType().isSignlessInteger(1) &&
      !type.getElementType().isSignlessInteger(8))
    return op.emitOpError() << "'tree_mask' element type must be i1 or i8, "
                               "got "
                            << type.getElementType();
  int64_t l = op.getQueryLen();
  if (type.getRank() != 3 || type.getDimSize(1) != l ||
      type.getDimSize(2) != l)
    return op.emitOpError()
           << "'tree_mask' must have shape [batch, L, L] "
           << formatShape({op.getQType().getDimSize(0), l, l}) << ", got "
           << formatShape(type.getShape());
  if (auto memref = dyn_cast<MemRefType>(type))
    return verifyMemRef(op, "tree_mask", memref, /*vectorRows=*/false);
  return success();
}

/// The variants' operands and results: per-head f32 vectors, the
/// log-sum-exp [batch, num_heads] ([batch, L, num_heads] multi-token) and
/// the tree mask.
static LogicalResult verifyVariantOperands(DecodeOp op) {
  int64_t numHeads = op.getNumHeads();
  for (auto [v, name] : {std::pair<Value, StringRef>{op.getAlibiSlopes(),
                                                   "alibi_slopes"},
                         {op.getSinks(), "sinks"}})
    if (v && failed(verifyF32Shape(op, name, v, {numHeads}, "[num_heads]")))
      return failure();
  if (failed(verifyTreeMask(op)))
    return failure();
  Value lse = op.getLse() ? Value(op.getLse()) : Value(op.getLseOut());
  if (!lse)
    return success();
  int64_t batch = op.getQType().getDimSize(0);
  if (op.isMultiToken())
    return verifyF32Shape(op, "lse", lse,
                          {batch, op.getQueryLen(), numHeads},
                          "[batch, L, num_heads]");
  return verifyF32Shape(op, "lse", lse, {batch, numHeads},
                        "[batch, num_heads]");
}

LogicalResult operand_checks::verifyKVScaleOperands(
    Operation *op, Value kScale, Value vScale, ShapedType cacheType,
    KVLayout layout,
    function_ref<std::vector<int64_t>(::paged_attn::KVScaleKind)> shapeOf) {
  Type cacheElemType = cacheType.getElementType();
  std::optional<DType> cacheDType = toDType(cacheElemType);
  if (!cacheDType || !::paged_attn::isQuantizedCacheDType(*cacheDType)) {
    if (!kScale && !vScale)
      return success();
    return op->emitOpError()
           << "'k_scale' and 'v_scale' are the scales of fp8 caches; "
              "'k_cache' is "
           << cacheElemType;
  }
  if (!kScale || !vScale)
    return op->emitOpError()
           << "fp8 caches need both 'k_scale' and 'v_scale' (f32: [] per "
              "tensor, [num_kv_heads] per KV head, or the cache's shape "
              "without head_dim per token), got "
           << (kScale   ? "only 'k_scale'"
               : vScale ? "only 'v_scale'"
                        : "none");
  // One granularity; their layouts may differ (a bufferized slice).
  int64_t rank = cast<ShapedType>(kScale.getType()).getRank();
  int64_t vRank = cast<ShapedType>(vScale.getType()).getRank();
  if (rank != vRank)
    return op->emitOpError() << "'k_scale' and 'v_scale' must have the same "
                                "rank (one granularity), got "
                             << rank << " and " << vRank;
  if (rank != 0 && rank != 1 && rank != 3)
    return op->emitOpError()
           << "'k_scale' must have rank 0 (per tensor), 1 ([num_kv_heads], "
              "per KV head) or 3 ("
           << (layout == KVLayout::nhd ? "[num_pages, page_size, num_kv_heads]"
                                       : "[num_pages, num_kv_heads, page_size]")
           << ", per token), got " << rank;
  using ::paged_attn::KVScaleKind;
  KVScaleKind kind = rank == 0   ? KVScaleKind::Tensor
                     : rank == 1 ? KVScaleKind::Head
                                 : KVScaleKind::Token;
  std::vector<int64_t> shape = shapeOf(kind);
  StringRef doc = rank == 0   ? "[] (per tensor)"
                  : rank == 1 ? "[num_kv_heads] (per KV head)"
                              : "of the cache's first three dims (per token)";
  for (auto [v, name] :
       {std::pair<Value, StringRef>{kScale, "k_scale"}, {vScale, "v_scale"}})
    if (failed(verifyF32Shape(op, name, v, shape, doc)))
      return failure();
  return success();
}

/// The dequantisation scales: both present exactly for fp8 caches, f32 of
/// one type, whose rank says the granularity (DecodeSpec::kvScaleShape).
static LogicalResult verifyKVScales(DecodeOp op) {
  return verifyKVScaleOperands(
      op, op.getKScale(), op.getVScale(), op.getCacheType(), op.getLayout(),
      [&](::paged_attn::KVScaleKind) {
        return getDecodeSpec(op).kvScaleShape(op.getCacheType().getDimSize(0));
      });
}

LogicalResult DecodeOp::verify() {
  DecodeOperands o(*this);
  if (failed(verifyForm(*this, o)) || failed(verifyRanks(*this, o)) ||
      failed(verifyElementTypes(*this, o)) || failed(verifySizes(*this)) ||
      failed(verifyBatchAndOut(*this, o)) || failed(verifyAttributes(*this)) ||
      failed(verifyVariantOperands(*this)) || failed(verifyKVScales(*this)))
    return failure();
  if (o.isTensor)
    return success();
  Value operands[] = {getQ(),          getKCache(),  getVCache(),
                      getBlockTable(), getSeqLens(), getOut()};
  StringRef names[] = {"q",           "k_cache",  "v_cache",
                       "block_table", "seq_lens", "out"};
  bool vectorRows[] = {true, true, true, false, false, true};
  for (auto [v, name, vector] : llvm::zip_equal(operands, names, vectorRows))
    if (failed(
            verifyMemRef(*this, name, cast<MemRefType>(v.getType()), vector)))
      return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// MergeOp
//===----------------------------------------------------------------------===//

void MergeOp::getEffects(
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>
        &effects) {
  if (!hasPureBufferSemantics())
    return;
  for (OpOperand &operand : getOperation()->getOpOperands()) {
    bool written = operand.get() == getOut() || operand.get() == getLseOut();
    effects.emplace_back(written ? MemoryEffects::Write::get()
                                 : static_cast<MemoryEffects::Effect *>(
                                       MemoryEffects::Read::get()),
                         &operand, SideEffects::DefaultResource::get());
  }
}

/// All operands tensors with results, or memrefs writing `outs`.
static LogicalResult verifyMergeForm(MergeOp op, bool isTensor) {
  for (auto [v, name] :
       {std::pair<Value, StringRef>{op.getPartialLse(), "partial_lse"},
        {op.getSinks(), "sinks"}})
    if (v && isa<RankedTensorType>(v.getType()) != isTensor)
      return op.emitOpError()
             << "'" << name << "' must be a "
             << (isTensor ? "tensor" : "memref") << " as 'partial_out' is";
  if (isTensor && (op.getOut() || op.getLseOut()))
    return op.emitOpError("the tensor form takes no 'outs' or 'lse' operand; "
                          "it returns its results");
  if (isTensor && !op.getResult())
    return op.emitOpError("the tensor form must return a result");
  if (!isTensor && (op.getResult() || op.getLse()))
    return op.emitOpError("the memref form has no results; it writes 'outs' "
                          "(and 'lse')");
  if (!isTensor && !op.getOut())
    return op.emitOpError("the memref form needs an 'outs' operand");
  return success();
}

LogicalResult MergeOp::verify() {
  bool isTensor = isa<RankedTensorType>(getPartialOut().getType());
  if (failed(verifyMergeForm(*this, isTensor)))
    return failure();
  ShapedType partsType = getPartialOutType();
  if (partsType.getRank() != 4)
    return emitOpError() << "'partial_out' must have rank 4 ([N, batch, "
                            "num_heads, head_dim]), got "
                         << partsType.getRank();
  Type elemType = partsType.getElementType();
  if (!isSupportedElementType(elemType))
    return emitOpError()
           << "'partial_out' element type must be f16, bf16 or f32, got "
           << elemType;
  if (partsType.isDynamicDim(2) || partsType.isDynamicDim(3))
    return emitOpError("num_heads and head_dim ('partial_out' dims 2 and 3) "
                       "must be static, got ")
           << formatShape(partsType.getShape());
  ::paged_attn::MergeSpec spec = getMergeSpec(*this);
  if (std::string error = spec.validate(); !error.empty())
    return emitOpError() << error;
  ArrayRef<int64_t> parts = partsType.getShape();
  int64_t n = parts[0], batch = parts[1], heads = parts[2], dim = parts[3];
  if (failed(verifyF32Shape(*this, "partial_lse", getPartialLse(),
                            {n, batch, heads}, "[N, batch, num_heads]")))
    return failure();
  Value out = isTensor ? Value(getResult()) : Value(getOut());
  auto outType = cast<ShapedType>(out.getType());
  bool outMatches = outType.getRank() == 3 &&
                    outType.getElementType() == elemType &&
                    outType.getDimSize(1) == heads &&
                    outType.getDimSize(2) == dim &&
                    (ShapedType::isDynamic(batch) || outType.isDynamicDim(0) ||
                     outType.getDimSize(0) == batch);
  if (!outMatches)
    return emitOpError() << "'" << (isTensor ? "result" : "out")
                         << "' must be [batch, num_heads, head_dim] "
                         << formatShape({batch, heads, dim}) << " of "
                         << elemType << ", got " << out.getType();
  if (getSinks() && failed(verifyF32Shape(*this, "sinks", getSinks(), {heads},
                                          "[num_heads]")))
    return failure();
  Value lse = getLse() ? Value(getLse()) : Value(getLseOut());
  if (lse && failed(verifyF32Shape(*this, "lse", lse, {batch, heads},
                                   "[batch, num_heads]")))
    return failure();
  if (isTensor)
    return success();
  if (failed(verifyMemRef(*this, "partial_out",
                          cast<MemRefType>(getPartialOut().getType()),
                          /*vectorRows=*/true)) ||
      failed(verifyMemRef(*this, "out", cast<MemRefType>(out.getType()),
                          /*vectorRows=*/true)))
    return failure();
  return success();
}
