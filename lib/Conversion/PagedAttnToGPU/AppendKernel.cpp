//===- AppendKernel.cpp - new tokens' rows into the paged caches ----------===//
//
// Grid (ceil(T * num_kv_heads / rows per CTA)): a group of lanesPerRow
// lanes (a power of two within a warp) owns one (new token, KV head) row
// and moves its K and V rows in 16-byte pieces of k, lane l taking pieces
// l, l + lanesPerRow, ... so that a group's loads are contiguous. Both rows'
// pieces are loaded before anything is stored.
//
// Every lane runs every step, whether its row exists and its token's slot
// is in the cache or not: the per-token scale is a reduction over the
// group by xor shuffles, which all lanes of the warp take part in. Loads
// are clamped into k and v (a row past the last is read as the last one)
// and only stores are predicated.
//
// fp8 caches: each piece is widened to f32, multiplied by the reciprocal
// of its scale (the given one, or the row's own from its largest magnitude,
// which the group's first lane stores) and converted, by cvt.rn.satfinite
// in pairs where the target has it, else by KVDequant's fp8FromF32.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/AppendKernel.h"
#include "KernelEmitter.h"
#include "PagedAttn/Conversion/KVDequant.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <numeric>

using namespace mlir;
using namespace mlir::paged_attn;

namespace {
/// K's or V's side of a row: the new rows, the cache and its scales.
struct RowSide {
  Value source, cache, scales;
};

class AppendKernelBuilder {
public:
  AppendKernelBuilder(OpBuilder &builder, gpu::GPUModuleOp module,
                      const AppendKernelConfig &c)
      : c(c), builder(builder), module(module) {}
  gpu::GPUFuncOp build();

private:
  /// Piece `j` of this lane's row of `source`, clamped into the row.
  Value loadPiece(Value source, int64_t j);
  /// Whether this lane's piece `j` is within the row.
  Value pieceInRow(int64_t j);
  /// The index of piece `j`'s first element in the row (clamped).
  Value pieceColumn(int64_t j);
  /// Writes one side's pieces (as loaded) into its cache row.
  void storeSide(const RowSide &side, ArrayRef<Value> pieces);
  /// The codes of `pieces` (f32) times `reciprocal`, as the cache's type.
  Value quantizePiece(Value piece, Value reciprocal);
  /// The scale of this side's row: loaded, or computed and stored.
  Value sideScale(const RowSide &side, ArrayRef<Value> widened);
  /// Stores `value` where this lane's row is in the cache and `extra`
  /// holds too.
  void storeIf(Value condition, function_ref<void()> store);
  Value arg(StringRef name) {
    return getKernelArg(func, ::paged_attn::appendKernelParams(c.spec), name);
  }

  const AppendKernelConfig &c;
  OpBuilder &builder;
  gpu::GPUModuleOp module;
  gpu::GPUFuncOp func;
  std::optional<ImplicitLocOpBuilder> bStorage;
  std::optional<KernelEmitter> eStorage;
  /// This lane's place in its group, its (clamped) token and KV head, and
  /// where the row goes: page and slot in it, and whether it is written.
  Value laneInRow, token, kvHead, page, offset, writes;

  ImplicitLocOpBuilder &b() { return *bStorage; }
  KernelEmitter &e() { return *eStorage; }
};
} // namespace

Value AppendKernelBuilder::pieceColumn(int64_t j) {
  KernelEmitter &e = this->e();
  Value piece = e.add(laneInRow, e.index(j * c.lanesPerRow()));
  return e.mul(e.min(piece, e.index(c.piecesPerRow() - 1)),
               e.index(c.pieceElems()));
}

Value AppendKernelBuilder::pieceInRow(int64_t j) {
  KernelEmitter &e = this->e();
  return e.ult(e.add(laneInRow, e.index(j * c.lanesPerRow())),
               e.index(c.piecesPerRow()));
}

Value AppendKernelBuilder::loadPiece(Value source, int64_t j) {
  Type elemType = cast<MemRefType>(source.getType()).getElementType();
  return vector::LoadOp::create(
      b(), VectorType::get({c.pieceElems()}, elemType), source,
      ValueRange{token, kvHead, pieceColumn(j)}, /*nontemporal=*/false,
      llvm::MaybeAlign(16));
}

void AppendKernelBuilder::storeIf(Value condition, function_ref<void()> store) {
  auto ifOp = scf::IfOp::create(b(), condition, /*withElse=*/false);
  OpBuilder::InsertionGuard guard(b());
  b().setInsertionPointToStart(ifOp.thenBlock());
  store();
}

Value AppendKernelBuilder::quantizePiece(Value piece, Value reciprocal) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  ::paged_attn::DType format = c.spec.kvQuant->dtype;
  int64_t n = c.pieceElems();
  Value scaled = e.fmul(piece, e.splat(reciprocal, n));
  Value codes;
  if (!c.fp8Conversion) {
    codes = fp8FromF32(b, scaled, format);
  } else {
    // cvt.rn.satfinite packs its first operand into the high byte: pairs
    // (x[i+1], x[i]) give bytes in element order.
    Type fp8Type = toMLIRType(b.getContext(), format);
    auto pairType = VectorType::get({2}, b.getI8Type());
    SmallVector<Value> pairs;
    for (int64_t i = 0; i < n; i += 2)
      pairs.push_back(NVVM::ConvertF32x2ToF8x2Op::create(
          b, pairType, vector::ExtractOp::create(b, scaled, i + 1),
          vector::ExtractOp::create(b, scaled, i), NVVM::FPRoundingMode::RN,
          NVVM::SaturationMode::SATFINITE, /*relu=*/false, fp8Type));
    while (pairs.size() > 1) {
      SmallVector<Value> joined;
      for (size_t i = 0; i < pairs.size(); i += 2) {
        int64_t len = cast<VectorType>(pairs[i].getType()).getNumElements();
        SmallVector<int64_t> all(2 * len);
        std::iota(all.begin(), all.end(), 0);
        joined.push_back(
            vector::ShuffleOp::create(b, pairs[i], pairs[i + 1], all));
      }
      pairs = std::move(joined);
    }
    codes = pairs.front();
  }
  Type cacheType = toMLIRType(b.getContext(), format);
  return arith::BitcastOp::create(b, VectorType::get({n}, cacheType), codes);
}

Value AppendKernelBuilder::sideScale(const RowSide &side,
                                     ArrayRef<Value> widened) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  using ::paged_attn::KVScaleKind;
  if (c.spec.kvQuant->scale != KVScaleKind::Token)
    return loadKVScale(b, c.spec.kvQuant->scale, c.spec.layout, side.scales,
                       page, offset, kvHead);
  // The row's largest magnitude: this lane's pieces within the row (NaN
  // kept: maximumf), then the group's lanes by xor shuffles. |x| clears
  // the sign bit (math.absf would become a libdevice call).
  Type i32 = b.getI32Type();
  auto magnitude = [&](Value x) -> Value {
    Value bits = arith::BitcastOp::create(b, i32, x);
    return arith::BitcastOp::create(
        b, b.getF32Type(), arith::AndIOp::create(b, bits, e.i32(0x7fffffff)));
  };
  Value amax = e.f32Const(0.0);
  for (auto [j, piece] : llvm::enumerate(widened)) {
    Value pieceMax = amax;
    for (int64_t i = 0; i < c.pieceElems(); ++i)
      pieceMax = arith::MaximumFOp::create(
          b, pieceMax, magnitude(vector::ExtractOp::create(b, piece, i)));
    amax = e.select(pieceInRow(j), pieceMax, amax);
  }
  for (int64_t offset = c.lanesPerRow() / 2; offset > 0; offset /= 2)
    amax = arith::MaximumFOp::create(b, amax, e.shuffleXor(amax, offset));
  Value scale = tokenScale(b, amax, c.spec.kvQuant->dtype);
  Value firstLane =
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq, laneInRow, e.index(0));
  storeIf(arith::AndIOp::create(b, writes, firstLane), [&] {
    std::array<Value, 4> index =
        ::paged_attn::cacheIndex(c.spec.layout, page, offset, kvHead, Value());
    memref::StoreOp::create(b, scale, side.scales,
                            ValueRange{index[0], index[1], index[2]});
  });
  return scale;
}

void AppendKernelBuilder::storeSide(const RowSide &side,
                                    ArrayRef<Value> pieces) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  SmallVector<Value> stored(pieces);
  if (c.spec.kvQuant) {
    SmallVector<Value> widened;
    for (Value piece : pieces)
      widened.push_back(e.extendToF32(piece));
    Value reciprocal =
        arith::DivFOp::create(b, e.f32Const(1.0), sideScale(side, widened));
    for (auto [piece, wide] : llvm::zip_equal(stored, widened))
      piece = quantizePiece(wide, reciprocal);
  }
  for (auto [j, piece] : llvm::enumerate(stored)) {
    storeIf(arith::AndIOp::create(b, writes, pieceInRow(j)), [&] {
      std::array<Value, 4> index = ::paged_attn::cacheIndex(
          c.spec.layout, page, offset, kvHead, pieceColumn(j));
      int64_t bytes = c.pieceElems() *
                      int64_t(::paged_attn::dtypeBytes(c.spec.cacheDType()));
      vector::StoreOp::create(b, piece, side.cache, index,
                              /*nontemporal=*/false, llvm::MaybeAlign(bytes));
    });
  }
}

gpu::GPUFuncOp AppendKernelBuilder::build() {
  MLIRContext *ctx = builder.getContext();
  func = createKernel(
      builder, module, c.kernelName(),
      getKernelArgTypes(ctx, ::paged_attn::appendKernelParams(c.spec)), {},
      c.blockSize());
  bStorage.emplace(func.getLoc(), builder);
  ImplicitLocOpBuilder &b = *bStorage;
  b.setInsertionPointToStart(&func.getBody().front());
  eStorage.emplace(b);
  KernelEmitter &e = *eStorage;

  // This lane's row, clamped to the last for loads; the launch has at
  // least one row.
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value rowInCTA = e.div(tid, e.index(c.lanesPerRow()));
  laneInRow = e.rem(tid, e.index(c.lanesPerRow()));
  Value row = e.add(e.mul(gpu::BlockIdOp::create(b, gpu::Dimension::x),
                          e.index(c.rowsPerCTA())),
                    rowInCTA);
  Value k = arg("k"), v = arg("v");
  Value numKVHeads = e.index(c.spec.numKVHeads);
  Value rows = e.mul(memref::DimOp::create(b, k, 0), numKVHeads);
  Value loadRow = e.min(row, arith::SubIOp::create(b, rows, e.index(1)));
  token = e.div(loadRow, numKVHeads);
  kvHead = e.rem(loadRow, numKVHeads);

  // Where the row goes: its token's slot, if within the cache.
  Type i64 = b.getI64Type();
  Value slot = memref::LoadOp::create(b, arg("slot_mapping"), token);
  Value pageSize = e.index(c.spec.pageSize);
  Value capacity = arith::IndexCastOp::create(
      b, i64, e.mul(memref::DimOp::create(b, arg("k_cache"), 0), pageSize));
  Value zero = arith::ConstantIntOp::create(b, i64, 0);
  using P = arith::CmpIPredicate;
  writes = arith::AndIOp::create(
      b, e.ult(row, rows),
      arith::AndIOp::create(b, arith::CmpIOp::create(b, P::sge, slot, zero),
                            arith::CmpIOp::create(b, P::slt, slot, capacity)));
  Value slotIndex = arith::IndexCastOp::create(
      b, b.getIndexType(), arith::MaxSIOp::create(b, slot, zero));
  page = e.div(slotIndex, pageSize);
  offset = e.rem(slotIndex, pageSize);

  RowSide sides[] = {{k, arg("k_cache"), arg("k_scale")},
                     {v, arg("v_cache"), arg("v_scale")}};
  SmallVector<Value> pieces[2];
  for (int side = 0; side < 2; ++side)
    for (int64_t j = 0; j < c.piecesPerLane(); ++j)
      pieces[side].push_back(loadPiece(sides[side].source, j));
  for (int side = 0; side < 2; ++side)
    storeSide(sides[side], pieces[side]);
  gpu::ReturnOp::create(b);
  return func;
}

gpu::GPUFuncOp
mlir::paged_attn::getOrBuildAppendKernel(OpBuilder &builder,
                                         gpu::GPUModuleOp module,
                                         const AppendKernelConfig &config) {
  if (auto existing = module.lookupSymbol<gpu::GPUFuncOp>(config.kernelName()))
    return existing;
  return AppendKernelBuilder(builder, module, config).build();
}
