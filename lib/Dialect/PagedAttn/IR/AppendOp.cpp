//===- AppendOp.cpp - paged_attn.append -----------------------------------===//

#include "OperandChecks.h"
#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace mlir::paged_attn;
using namespace mlir::paged_attn::operand_checks;

::paged_attn::AppendSpec mlir::paged_attn::getAppendSpec(AppendOp op) {
  // The verifier calls this once the ranks are right.
  ::paged_attn::AppendSpec spec;
  ShapedType k = op.getKType(), cache = op.getCacheType();
  Layout layout = toLayout(op.getLayout());
  spec.numKVHeads = k.getDimSize(1);
  spec.headDim = k.getDimSize(2);
  spec.pageSize = cache.getDimSize(::paged_attn::cacheDims(layout).page);
  spec.dtype = toDType(k.getElementType()).value_or(DType::F32);
  spec.layout = layout;
  std::optional<DType> cacheDType = toDType(cache.getElementType());
  if (cacheDType && ::paged_attn::isQuantizedCacheDType(*cacheDType))
    spec.kvQuant =
        ::paged_attn::KVQuant{*cacheDType, getKVScaleKind(op.getKScale())};
  return spec;
}

void AppendOp::getEffects(
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>
        &effects) {
  if (!hasPureBufferSemantics())
    return;
  SmallVector<Value> written = getUpdatedOperands();
  for (OpOperand &operand : getOperation()->getOpOperands()) {
    bool writes = llvm::is_contained(written, operand.get());
    effects.emplace_back(writes ? MemoryEffects::Write::get()
                                : static_cast<MemoryEffects::Effect *>(
                                      MemoryEffects::Read::get()),
                         &operand, SideEffects::DefaultResource::get());
  }
}

namespace {
/// The operands by role.
struct AppendOperands {
  Value values[5];
  StringRef names[5] = {"k", "v", "slot_mapping", "k_cache", "v_cache"};

  explicit AppendOperands(AppendOp op)
      : values{op.getK(), op.getV(), op.getSlotMapping(), op.getKCache(),
               op.getVCache()} {}
  ShapedType type(int i) const { return cast<ShapedType>(values[i].getType()); }
};
} // namespace

/// All operands tensors with the updated ones returned, or all memrefs
/// written in place.
static LogicalResult verifyAppendForm(AppendOp op, const AppendOperands &o) {
  bool isTensor = op.hasPureTensorSemantics();
  for (auto [v, name] : llvm::zip_equal(o.values, o.names))
    if (isa<RankedTensorType>(v.getType()) != isTensor)
      return op.emitOpError("'k', 'v', 'slot_mapping', 'k_cache' and "
                            "'v_cache' must be all tensors or all memrefs");
  for (auto [v, name] : {std::pair<Value, StringRef>{op.getKScale(), "k_scale"},
                         {op.getVScale(), "v_scale"}})
    if (v && isa<RankedTensorType>(v.getType()) != isTensor)
      return op.emitOpError()
             << "'" << name << "' must be a "
             << (isTensor ? "tensor" : "memref") << " as 'k' is";
  if (!isTensor && !op.getResults().empty())
    return op.emitOpError("the memref form has no results; it writes the "
                          "caches in place");
  return success();
}

/// The tensor form returns each operand it writes, with its type.
static LogicalResult verifyAppendResults(AppendOp op) {
  if (!op.hasPureTensorSemantics())
    return success();
  SmallVector<Value> updated = op.getUpdatedOperands();
  bool matches = op.getResults().size() == updated.size();
  for (auto [result, operand] : llvm::zip(op.getResults(), updated))
    matches = matches && result.getType() == operand.getType();
  if (matches)
    return success();
  std::string expected;
  llvm::raw_string_ostream os(expected);
  llvm::interleaveComma(updated, os, [&](Value v) { os << v.getType(); });
  return op.emitOpError() << "the tensor form must return the updated "
                          << (updated.size() == 2
                                  ? "'k_cache' and 'v_cache'"
                                  : "'k_cache', 'v_cache', 'k_scale' and "
                                    "'v_scale' (per-token scales are "
                                    "written)")
                          << ": (" << expected << "), got "
                          << op.getResults().size() << " results";
}

static LogicalResult verifyAppendRanks(AppendOp op, const AppendOperands &o) {
  const std::pair<int64_t, StringRef> ranks[] = {
      {3, "[T, num_kv_heads, head_dim]"},
      {3, "[T, num_kv_heads, head_dim]"},
      {1, "[T]"},
      {4, "[pages, page, num_kv_heads, head_dim] or [pages, num_kv_heads, "
          "page, head_dim]"},
      {4, "the rank of 'k_cache'"}};
  for (int i = 0; i < 5; ++i)
    if (o.type(i).getRank() != ranks[i].first)
      return op.emitOpError()
             << "'" << o.names[i] << "' must have rank " << ranks[i].first
             << " (" << ranks[i].second << "), got " << o.type(i).getRank();
  return success();
}

static LogicalResult verifyAppendElementTypes(AppendOp op,
                                              const AppendOperands &o) {
  Type elemType = o.type(0).getElementType();
  if (!isSupportedElementType(elemType))
    return op.emitOpError()
           << "'k' element type must be f16, bf16 or f32, got " << elemType;
  if (o.type(1).getElementType() != elemType)
    return op.emitOpError()
           << "'v' element type (" << o.type(1).getElementType()
           << ") must equal that of 'k' (" << elemType << ")";
  if (!o.type(2).getElementType().isSignlessInteger(64))
    return op.emitOpError() << "'slot_mapping' element type must be i64, got "
                            << o.type(2).getElementType();
  Type cacheType = o.type(3).getElementType();
  std::optional<DType> cacheDType = toDType(cacheType);
  bool quantized =
      cacheDType && ::paged_attn::isQuantizedCacheDType(*cacheDType);
  if (cacheType != elemType && !quantized)
    return op.emitOpError() << "'k_cache' element type (" << cacheType
                            << ") must equal the element type of 'k' ("
                            << elemType << ") or be f8E4M3FN or f8E5M2";
  if (o.type(4).getElementType() != cacheType)
    return op.emitOpError()
           << "'v_cache' element type (" << o.type(4).getElementType()
           << ") must equal that of 'k_cache' (" << cacheType << ")";
  return success();
}

/// Whether static sizes agree (a dynamic size agrees with any).
static bool sizesAgree(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// The static sizes the kernel is specialised on, the number of new tokens
/// agreeing, and the spec's rules.
static LogicalResult verifyAppendSizes(AppendOp op, const AppendOperands &o) {
  ShapedType k = o.type(0), v = o.type(1), kCache = o.type(3);
  if (k.isDynamicDim(1) || k.isDynamicDim(2))
    return op.emitOpError("num_kv_heads and head_dim ('k' dims 1 and 2) "
                          "must be static, got ")
           << formatShape(k.getShape());
  for (int64_t dim = 0; dim < 3; ++dim)
    if (!sizesAgree(k.getDimSize(dim), v.getDimSize(dim)))
      return op.emitOpError() << "'k' and 'v' must have the same shape, got "
                              << formatShape(k.getShape()) << " and "
                              << formatShape(v.getShape());
  int64_t tokens[] = {k.getDimSize(0), v.getDimSize(0),
                      o.type(2).getDimSize(0)};
  for (int i = 1; i < 3; ++i)
    if (!sizesAgree(tokens[0], tokens[i]) || !sizesAgree(tokens[1], tokens[i]))
      return op.emitOpError()
             << "the number of new tokens (T) disagrees: 'k' is "
             << formatShape(k.getShape()) << ", 'v' "
             << formatShape(v.getShape()) << " and 'slot_mapping' "
             << formatShape(o.type(2).getShape());
  for (int64_t dim = 1; dim < 4; ++dim)
    if (kCache.isDynamicDim(dim))
      return op.emitOpError("'k_cache' dims 1, 2 and 3 (page, num_kv_heads "
                            "and head_dim in some order) must be static, got ")
             << formatShape(kCache.getShape());
  if (kCache.getShape() != o.type(4).getShape())
    return op.emitOpError() << "'k_cache' and 'v_cache' must have the same "
                               "shape, got "
                            << formatShape(kCache.getShape()) << " and "
                            << formatShape(o.type(4).getShape());
  ::paged_attn::CacheDims dims =
      ::paged_attn::cacheDims(toLayout(op.getLayout()));
  if (kCache.getDimSize(dims.kvHeads) != k.getDimSize(1) ||
      kCache.getDimSize(3) != k.getDimSize(2))
    return op.emitOpError()
           << "'k_cache' " << formatShape(kCache.getShape())
           << " must hold rows of 'k' (num_kv_heads " << k.getDimSize(1)
           << " as dim " << dims.kvHeads << " under layout "
           << stringifyKVLayout(op.getLayout()) << ", head_dim "
           << k.getDimSize(2) << " as dim 3)";
  if (std::string error = getAppendSpec(op).validate(); !error.empty())
    return op.emitOpError() << error;
  return success();
}

/// `layout` is the op's one attribute; others must belong to a dialect.
static LogicalResult verifyAppendAttributes(AppendOp op) {
  for (NamedAttribute attr : op->getDiscardableAttrs())
    if (!attr.getName().getValue().contains('.'))
      return op.emitOpError()
             << "has no attribute '" << attr.getName().getValue()
             << "' (its one attribute is 'layout')";
  return success();
}

LogicalResult AppendOp::verify() {
  AppendOperands o(*this);
  if (failed(verifyAppendForm(*this, o)) ||
      failed(verifyAppendRanks(*this, o)) ||
      failed(verifyAppendElementTypes(*this, o)) ||
      failed(verifyAppendSizes(*this, o)) ||
      failed(verifyAppendAttributes(*this)))
    return failure();
  auto scaleShape = [&](::paged_attn::KVScaleKind) {
    return getAppendSpec(*this).kvScaleShape(getCacheType().getDimSize(0));
  };
  if (failed(verifyKVScaleOperands(*this, getKScale(), getVScale(),
                                   getCacheType(), getLayout(), scaleShape)) ||
      failed(verifyAppendResults(*this)))
    return failure();
  if (hasPureTensorSemantics())
    return success();
  const bool vectorRows[] = {true, true, false, true, true};
  for (int i = 0; i < 5; ++i)
    if (failed(verifyMemRef(*this, o.names[i], cast<MemRefType>(o.type(i)),
                            vectorRows[i])))
      return failure();
  return success();
}
