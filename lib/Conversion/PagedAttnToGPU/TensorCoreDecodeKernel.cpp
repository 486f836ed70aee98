//===- TensorCoreDecodeKernel.cpp - the tensor-core decode kernel ---------===//
//
// For query groups of several heads, and multi-token decodes. The grid and
// arguments are those of the CUDA-core kernel: one CTA per (KV head or part
// of its group and of the new queries, sequence, chunk). Its rows of q are
// its heads, or (new query, head) pairs: the L queries of a sequence share
// every key the CTA reads. Each warp works on tiles of 16 tokens with
// mma.sync m16n8k16:
//
//   S   [rows x 16 tokens] = Q [rows padded to 16 x D] * K^T
//   O^T [D x rows]        += V^T [D x 16 tokens] * P^T [16 tokens x rows]
//
// Computing O transposed lets the B operand P^T come straight from S's
// accumulator registers, and keeps the output accumulators to the real
// rows (8 per column block) instead of 16 padded ones.
//
// Warp w takes tiles w, w + W, ... of the chunk and streams them into its
// own ring of `kv_stages` shared-memory buffers with cp.async (L2 only,
// with the L2 prefetch hint: AsyncCopy.cpp), so the loads in flight cost no
// registers and the warps never wait for each other until the end, where
// their softmax states are merged as in the CUDA-core kernel. The eight
// rows one ldmatrix reads sit in different banks: tile rows of a multiple
// of 8 chunks are dense, chunk c of row r stored at chunk c ^ (r mod 8);
// other rows are padded by 16 bytes. Padding every row cost up to 8% of the
// streaming rate: cp.async then fetched each 128-byte line in more L2
// requests (bench/NOTES.md 47).
//
// fp8 caches (KVQuant) are copied as they are, a byte an element, and
// widened to f16 between ldmatrix and the mma (both products then take f16;
// a bf16 q is converted once, times 2^-8 so that it keeps its range). An
// ldmatrix of 16-bit pairs gives a lane four codes: K's are four
// consecutive columns of one token, which the mma takes as a permutation of
// the reduction dim (q's fragments are loaded in the same order); V's,
// transposed, are two columns of two consecutive tokens, reordered so each
// column's two tokens form a pair, which makes the O^T rows of a 16-column
// block interleaved (row g is column 2g, row g + 8 column 2g + 1). K's
// scale multiplies the logits (the CTA's one folded into the logit scale),
// V's the accumulators as they are published; per-token V scales weigh the
// tokens in P over a running reference per row (updateSoftmax).
//
// A CTA with more rows than one warp's mma takes (a group of more than 16
// heads, 8 above head_dim 128, or a multi-token decode's queries beside
// them) splits its warps into row groups (DecodeKernelConfig::mmaRowGroups):
// warp w of each group takes the same tiles for its own rows, and those warps
// share one ring, each copying part of every tile. Where a warp alone syncs
// itself, the ring's sharers meet on a named barrier of their own, and every
// warp runs the same number of iterations: a warp short of a tile works through
// one past the chunk, all of whose keys are masked (with per-warp counts,
// which differ by one between sharers of different rings, racecheck
// reported the merge after the loop as racing across the CTA's barrier;
// with equal counts it reports nothing). A second CTA per KV head would
// read and work through every tile again (bench/NOTES.md 32, 36).
//
//===----------------------------------------------------------------------===//

#include "AsyncCopy.h"
#include "DecodeKernelBuilders.h"
#include "DecodeStages.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::paged_attn;

namespace {
/// mma.sync m16n8k16 with f32 accumulators on 16-bit operands, and the
/// register plumbing around it.
class MmaEmitter {
public:
  MmaEmitter(KernelEmitter &e, Type elemType)
      : e(e), b(e.b), elemType(elemType),
        pairType(VectorType::get({2}, elemType)) {}

  /// One operand register from two 16-bit elements: i32 for bf16 (what
  /// NVVM's mma takes), vector<2xf16> for f16.
  Value operand(Value pair) {
    if (!elemType.isBF16())
      return pair;
    Value word = vector::BitCastOp::create(
        b, VectorType::get({1}, b.getI32Type()), pair);
    return vector::ExtractOp::create(b, word, 0);
  }
  Value zeroOperand() {
    return operand(arith::ConstantOp::create(
        b, DenseElementsAttr::get(pairType, b.getFloatAttr(elemType, 0.0))));
  }
  /// Register `i` of an ldmatrix result.
  Value fragment(Value loaded, int64_t i) {
    return operand(vector::ExtractOp::create(b, loaded, i));
  }
  /// Two f32 values rounded into one operand register.
  Value pack(Value x, Value y) {
    Value pair = vector::FromElementsOp::create(b, VectorType::get({2}, e.f32),
                                                ValueRange{x, y});
    return operand(arith::TruncFOp::create(b, pairType, pair));
  }
  /// d = a * b + c for one m16n8k16 tile; c and d are the four f32
  /// accumulator registers.
  SmallVector<Value> mma(ArrayRef<Value> a, ArrayRef<Value> bOperand,
                         ArrayRef<Value> c) {
    Type f32 = e.f32;
    auto resultType =
        LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
    NVVM::MMATypes type =
        elemType.isBF16() ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
    Value d = NVVM::MmaOp::create(
        b, resultType, a, bOperand, c, ArrayRef<int64_t>{16, 8, 16},
        std::nullopt, std::nullopt, std::array<NVVM::MMATypes, 2>{type, type},
        std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                       NVVM::MMALayout::col});
    SmallVector<Value> result;
    for (int64_t i = 0; i < 4; ++i)
      result.push_back(
          LLVM::ExtractValueOp::create(b, d, ArrayRef<int64_t>{i}));
    return result;
  }

private:
  KernelEmitter &e;
  ImplicitLocOpBuilder &b;
  Type elemType;
  VectorType pairType;
};

/// Builds one tensor-core decode kernel, stage by stage. Each warp's online
/// softmax state has a row per 8-head block; its accumulators are the O^T
/// registers [d block][head block][4].
class TensorCoreDecodeBuilder {
public:
  TensorCoreDecodeBuilder(OpBuilder &builder, gpu::GPUModuleOp module,
                          const DecodeKernelConfig &c);
  gpu::GPUFuncOp build();

private:
  static constexpr int64_t tileTokens = DecodeKernelConfig::kMmaTileTokens;

  void emitSharedMemory();
  void emitTileShares();
  void emitCopyMapping();
  /// Whether every tile lies in one page: pages of a multiple of 16 tokens
  /// and tiles at multiples of 16 tokens. Then every lane holds the tile's
  /// page, and the copies address rows from the tile's start in each cache
  /// instead of each from its own page.
  bool tilesInOnePage() const { return c.spec.pageSize % tileTokens == 0; }
  /// Whether the tiles start before the chunk: a window's chunks start at
  /// its first key, anywhere in a page, and where tiles lie in one page
  /// they start at the multiple of 16 at or before it; the rows before the
  /// chunk are zero-filled and their keys masked like those past it.
  bool tilesStartBeforeChunk() const {
    return tilesInOnePage() && c.spec.variants.window;
  }
  /// Whether key `token` of a tile is one of the chunk's.
  Value inChunk(Value token);
  /// The caches' dim of a page's tokens.
  int slotDim() const { return ::paged_attn::cacheDims(c.spec.layout).page; }
  /// The page of token l mod 16 of tile `i`, for lane l (or of the tile).
  Value loadTilePage(Value i);
  /// Tile `i` of this warp into ring slot `stage` by cp.async.
  void issueTile(Value i, Value stage, Value page);
  /// Where a tile that lies in one page starts in each cache (the global
  /// addresses of its first token at this CTA's KV head), and where it
  /// lies in the chunk (i32): the rows up to the chunk's end and (where
  /// tiles start before the chunk) those up to its first key.
  struct TileInPage {
    Value kStart, vStart, rows, before;
  };
  /// Whether row `row` of a tile is outside the chunk (i1).
  Value outsideChunk(Value row, const TileInPage &tile);
  TileInPage locateTileInPage(Value base, Value page);
  void issueTileIfAny(Value i, Value stage, Value page);
  void loadQFragments();
  Value emitPrologue();
  /// The lane scales of the first `stages` tiles, where the warp has any.
  SmallVector<Value> emitFirstTokenScales();
  void emitLdMatrixLanes();
  Value ldmatrix(Value tileOffset, int64_t block, bool transpose);
  /// Register `i` of an ldmatrix of fp8 codes as two f16 operand registers
  /// (codes 0-1 and 2-3, after `order`).
  std::pair<Value, Value> fp8Fragment(Value loaded, int64_t i,
                                      ArrayRef<int64_t> order);
  /// Per-token scales: this lane's load for tile `i` (through `page`, the
  /// lane's page of the tile, where the caller has it), and from those of
  /// its warp, the K and V scales of the four tokens its S registers hold
  /// (tokens 2 quadCol + {0, 1} + {0, 8}).
  Value loadLaneTokenScale(Value i, Value page = Value());
  /// Sets tileKScales and tileVScales from the lanes' loads.
  void takeTokenScales(Value laneScale);
  /// The loop's values after the softmax state: the pages of the next tile
  /// to copy, and with per-token scales each head block's V reference
  /// (updateSoftmax) and the lane scales of this tile and the next
  /// stages - 1 (loaded as their tiles' copies are issued).
  int64_t loopExtras() const {
    return scales.perToken() ? 1 + headBlocks + stages : 1;
  }
  void emitLoopBody(scf::ForOp loop);
  SmallVector<SmallVector<Value>> computeScores(Value kTile);
  SmallVector<Value> updateSoftmax(OnlineSoftmax::State &s,
                                   ArrayRef<SmallVector<Value>> scores,
                                   Value base,
                                   SmallVector<SmallVector<Value>> &pFragments,
                                   MutableArrayRef<Value> vRefs);
  /// A row's weights times their tokens' V scales, over the row's running
  /// reference `vRef` (updated): returns the accumulators' factor.
  Value weighByTokenScales(SmallVector<Value> &p, Value alpha, Value &vRef);
  void rescaleAccumulators(OnlineSoftmax::State &s, ArrayRef<Value> alpha);
  void accumulatePV(OnlineSoftmax::State &s, Value vTile,
                    ArrayRef<SmallVector<Value>> pFragments);
  void publishWarpState(const OnlineSoftmax::State &s);
  /// Orders the ring's copies and reads among the warps that share it.
  void syncRingSharers();
  Value tileBase(Value i);
  /// The ring slot of this warp's tile `tile`: tile mod stages.
  Value ringSlot(Value tile);
  Value ringOffset(Value stage, int64_t kv);
  /// Where element `column` (of a 16-byte chunk's first) of tile row `row`
  /// lies in the tile.
  Value tileElement(Value row, Value column);
  /// With swizzled rows: the chunk of row `row` that holds the chunk
  /// starting at element `column`.
  Value swizzledChunk(Value row, Value column);
  /// O^T registers of d block `md` and head block `r`.
  MutableArrayRef<Value> accRegs(OnlineSoftmax::State &s, int64_t md,
                                 int64_t r) {
    return MutableArrayRef<Value>(s.acc).slice((md * headBlocks + r) * 4, 4);
  }

  const DecodeKernelConfig &c;
  OpBuilder &builder;
  gpu::GPUModuleOp module;
  gpu::GPUFuncOp func;
  std::optional<ImplicitLocOpBuilder> bStorage;
  std::optional<KernelEmitter> eStorage;
  std::optional<MmaEmitter> mmaStorage;
  std::optional<AsyncCopyEmitter> asyncCopy;
  std::optional<ScoreModifiers> rules;
  // An fp8 cache's scales; per token, this tile's for this lane's tokens,
  // and each head block's V reference after the loop.
  KVScales scales;
  SmallVector<Value> tileKScales, tileVScales;
  SmallVector<Value> finalVRefs;
  // `rows` of q (heads, times the new queries of a multi-token decode) in
  // row groups of warps, each of `headBlocks` blocks of 8, padded.
  const int64_t stages, d, rows, headBlocks, rowGroups, paddedRows;
  // The warps of one row group, which split the chunk's tiles.
  const int64_t tokenWarps;
  // 16-wide blocks of the head dimension: the k steps of Q*K^T and the row
  // blocks of O^T.
  const int64_t dBlocks;
  // fp8 caches; the tiles' rows in the ring's 16-bit elements (a row of fp8
  // codes is half as many).
  const bool fp8;
  const int64_t chunksPerRow; // 16-byte chunks
  const int64_t rowStride;    // ring elements (DecodeKernelConfig::mmaRingRowBytes)
  const bool swizzled;        // DecodeKernelConfig::mmaRowsSwizzled
  const int64_t tileElems;
  DecodeCTA cta;
  // This warp's place among the tile sharers and its row group's first
  // row; the id of the named barrier it meets the ring's other sharers on.
  Value tokenWarp, rowGroup, firstGroupRow, ringBarrier;
  // In mma fragments a lane holds row `quadRow` (and quadRow + 8) and
  // columns 2 * quadCol, 2 * quadCol + 1.
  Value quadRow, quadCol;
  Value smem, rings, accSmem, statSmem;
  AsyncCopyEmitter::Source kSource, vSource;
  Value warpTiles, lastToken, fullMask, logitScale;
  // The first tile's first key: the chunk's, or the multiple of 16 at or
  // before it (tilesStartBeforeChunk); and the chunk's length (i32 there).
  Value tileOrigin, chunkLength;
  // This lane's ldmatrix address in a tile for 16-column block k, less
  // 64 (k / 4) elements when swizzled (entry k mod 4), else for block 0.
  SmallVector<Value> ldLaneOffsets;
  // With whole-row copies: this lane's row within a copy and its column,
  // and whether it copies (null where every lane does).
  std::pair<Value, Value> laneChunk;
  Value laneCopies;
  // Swizzled rings: where this lane's chunk of copy 0 is stored in its row.
  Value laneStoredChunk;
  SmallVector<SmallVector<Value>> qFragments;
  // Row quadRow + 8r of each head block: its query and head, the end of
  // its keys and its ALiBi slope (null without ALiBi).
  SmallVector<CTARow> laneRows;
  SmallVector<Value> rowKeyEnds, rowSlopes;

  ImplicitLocOpBuilder &b() { return *bStorage; }
  KernelEmitter &e() { return *eStorage; }
  MmaEmitter &mma() { return *mmaStorage; }
  /// The ring's element type, and the mma's: q's, or f16 for fp8 caches.
  Type ringType() { return fp8 ? Type(b().getF16Type()) : c.elementType; }
  /// A bf16 q's factor on its way to f16 for fp8 caches (undone in the
  /// logit scale): its values then keep bf16's range up to 2^8 times f16's
  /// largest.
  static constexpr double kBF16QToF16Scale = 1.0 / 256;
  /// A pair of bf16 q values as f16, times kBF16QToF16Scale. With
  /// cvt.rn.f16x2.f32 named directly: LLVM rewrites a truncation of the
  /// product into a product of the truncation, which would lose the range
  /// the factor keeps.
  Value bf16PairToF16(Value pair) {
    KernelEmitter &e = this->e();
    Value scaled =
        e.fmul(e.extendToF32(pair), e.splat(e.f32Const(kBF16QToF16Scale), 2));
    auto element = [&](int64_t i) {
      return vector::ExtractOp::create(b(), scaled, i).getResult();
    };
    // cvt.rn.f16x2.f32 d, a, b puts a in the upper half.
    return LLVM::CallIntrinsicOp::create(
               b(), VectorType::get({2}, b().getF16Type()),
               b().getStringAttr("llvm.nvvm.ff2f16x2.rn"),
               ValueRange{element(1), element(0)})
        .getResult(0);
  }
  /// The kernel argument the Spec's ABI names `name`.
  Value arg(StringRef name) {
    Value value = getDecodeKernelArg(func, c, name);
    assert(value && "not a parameter of this decode kernel");
    return value;
  }
  /// Whether each copy moves whole rows (the comment on the copies, below,
  /// says when).
  bool copiesWholeRows() const {
    return 32 % chunksPerRow == 0 || chunksPerRow > 16;
  }
  /// Tile rows one whole-row copy moves: 32 / chunksPerRow, or one row of
  /// more than 16 chunks (head_dim <= 256 makes a row at most 32).
  int64_t rowsPerCopy() const {
    return 32 % chunksPerRow == 0 ? 32 / chunksPerRow : 1;
  }
  int64_t copiesPerTile() const {
    return copiesWholeRows() ? tileTokens / rowsPerCopy()
                             : tileTokens * chunksPerRow / 32;
  }
  /// (row, column) of this lane's chunk in copy `copy` of a tile.
  std::pair<Value, Value> copyChunk(int64_t copy);
  /// Where in the rings copy `copy` puts this lane's chunk (row, column)
  /// of the tile at ring offset `tile`.
  Value copyDestination(int64_t copy, Value tile, Value row, Value column);
};
} // namespace

TensorCoreDecodeBuilder::TensorCoreDecodeBuilder(OpBuilder &builder,
                                                 gpu::GPUModuleOp module,
                                                 const DecodeKernelConfig &c)
    : c(c), builder(builder), module(module), stages(c.strategy.kvStages),
      d(c.spec.headDim), rows(c.rowsPerCTA()), headBlocks(c.mmaHeadBlocks()),
      rowGroups(c.mmaRowGroups()), paddedRows(c.mmaPaddedRows()),
      tokenWarps(c.tokenWarps()), dBlocks(d / 16),
      fp8(c.spec.kvQuant.has_value()),
      chunksPerRow(c.mmaRowChunks()), rowStride(c.mmaRingRowBytes() / 2),
      swizzled(c.mmaRowsSwizzled()), tileElems(tileTokens * rowStride) {}

/// Shared memory: per token warp `stages` pairs of K and V tiles; after the
/// loop, the warps' accumulators and softmax statistics.
void TensorCoreDecodeBuilder::emitSharedMemory() {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  Type f32 = b.getF32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                         MemRefLayoutAttrInterface(), workgroup));
  auto view = [&](ArrayRef<int64_t> shape, Type type, int64_t byteOffset) {
    return memref::ViewOp::create(
        b, MemRefType::get(shape, type, MemRefLayoutAttrInterface(), workgroup),
        smem, e.index(byteOffset), ValueRange{});
  };
  rings = view({tokenWarps * stages * 2 * tileElems}, ringType(), 0);
  asyncCopy.emplace(e, smem, c.cacheElementBytes(), c.strategy.l2PrefetchBytes);
  kSource = asyncCopy->source(arg("k_cache"));
  vSource = asyncCopy->source(arg("v_cache"));
  accSmem = view({tokenWarps, paddedRows, d}, f32, 0);
  statSmem =
      view({2, tokenWarps, paddedRows}, f32, tokenWarps * paddedRows * d * 4);
}

/// This warp's share of the chunk's 16-token tiles, and of the CTA's rows.
void TensorCoreDecodeBuilder::emitTileShares() {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  tokenWarp = cta.warp;
  firstGroupRow = e.index(0);
  if (rowGroups > 1) {
    tokenWarp = e.rem(cta.warp, e.index(tokenWarps));
    rowGroup = e.div(cta.warp, e.index(tokenWarps));
    firstGroupRow = e.mul(rowGroup, e.index(headBlocks * 8));
    // Barrier 0 is the CTA's.
    ringBarrier = arith::IndexCastOp::create(b, b.getI32Type(),
                                             e.add(tokenWarp, e.index(1)));
  }
  tileOrigin = cta.chunkBegin;
  if (tilesStartBeforeChunk()) {
    tileOrigin = arith::SubIOp::create(
        b, cta.chunkBegin, e.rem(cta.chunkBegin, e.index(tileTokens)));
    chunkLength = arith::IndexCastOp::create(
        b, b.getI32Type(),
        arith::SubIOp::create(b, cta.chunkEnd, cta.chunkBegin));
  }
  Value numTiles = arith::CeilDivUIOp::create(
      b, arith::SubIOp::create(b, cta.chunkEnd, tileOrigin),
      e.index(tileTokens));
  if (rowGroups > 1) {
    // The same count in every warp (see the top of the file).
    warpTiles = e.ceilDiv(numTiles, e.index(tokenWarps));
  } else {
    warpTiles =
        e.div(arith::SubIOp::create(b, e.add(numTiles, e.index(tokenWarps - 1)),
                                    tokenWarp),
              e.index(tokenWarps));
  }
  lastToken = arith::SubIOp::create(b, cta.chunkEnd, e.index(1));
}

Value TensorCoreDecodeBuilder::tileBase(Value i) {
  KernelEmitter &e = this->e();
  return e.add(tileOrigin,
               e.mul(e.add(e.mul(i, e.index(tokenWarps)), tokenWarp),
                     e.index(tileTokens)));
}

/// In 32 bits: tile indices are below 2^31 (sequence lengths are i32), and
/// a 64-bit remainder by 3 takes a dozen instructions.
Value TensorCoreDecodeBuilder::ringSlot(Value tile) {
  ImplicitLocOpBuilder &b = this->b();
  Value narrow = arith::IndexCastUIOp::create(b, b.getI32Type(), tile);
  return arith::IndexCastUIOp::create(
      b, b.getIndexType(),
      arith::RemUIOp::create(b, narrow, e().i32(stages)));
}

Value TensorCoreDecodeBuilder::ringOffset(Value stage, int64_t kv) {
  KernelEmitter &e = this->e();
  return e.mul(
      e.add(e.mul(e.add(e.mul(tokenWarp, e.index(stages)), stage), e.index(2)),
            e.index(kv)),
      e.index(tileElems));
}

Value TensorCoreDecodeBuilder::tileElement(Value row, Value column) {
  KernelEmitter &e = this->e();
  Value start = e.mul(row, e.index(rowStride));
  if (!swizzled)
    return e.add(start, column);
  return e.add(start, e.mul(swizzledChunk(row, column), e.index(8)));
}

Value TensorCoreDecodeBuilder::swizzledChunk(Value row, Value column) {
  KernelEmitter &e = this->e();
  return arith::XOrIOp::create(b(), e.div(column, e.index(8)),
                               e.rem(row, e.index(8)));
}

// The tile's 16 rows are 16 * chunksPerRow 16-byte chunks (a multiple of
// 32: head_dim is a multiple of 16), copied so that every row is requested
// at once as full cache lines:
// - Where a row's chunks divide 32 (head_dim 16, 32, 64, 128, 256), copy k
//   moves whole rows: lane l takes chunk l mod chunksPerRow of row
//   l / chunksPerRow + k * rowsPerCopy, the same column and row offset
//   every time.
// - Rows of more than 16 chunks (head_dim 144 to 240) are copied one per
//   copy the same way, with the lanes past the row predicated off. Copies
//   that went on into the next row kept a row and column per copy and lane,
//   which spilled at head_dim 192 to 240.
// - Shorter rows (head_dim 48, 80, 96, 112) are copied 32 chunks at a time
//   in row-major order, so a copy ends inside a row and each copy has its
//   own row and column per lane: every lane copies, and whole rows with
//   idle lanes took up to 8 copies a tile and spilled on sm_80.
// Pages are loaded one tile ahead. Where a tile lies in one page
// (tilesInOnePage), every lane holds that page, a copy's source is a row
// offset (hoisted) added to the tile's start in the cache, and rows past
// the chunk are zero-filled; so are those before it where a window's chunk
// starts inside a tile (tilesStartBeforeChunk). Otherwise lane l holds the
// page of the tile's token l mod 16 and the copying lanes take it by
// shuffle; tokens past the chunk's end copy its last token. Either way
// their logits are masked.

/// (row, column in elements) of 16-byte chunk `chunk` of a tile.
static std::pair<Value, Value> chunkPosition(KernelEmitter &e, Value chunk,
                                             int64_t chunksPerRow) {
  return {e.div(chunk, e.index(chunksPerRow)),
          e.mul(e.rem(chunk, e.index(chunksPerRow)), e.index(8))};
}

void TensorCoreDecodeBuilder::emitCopyMapping() {
  KernelEmitter &e = this->e();
  if (!copiesWholeRows())
    return;
  laneChunk = chunkPosition(e, cta.lane, chunksPerRow);
  if (32 % chunksPerRow != 0) {
    // One row per copy: every copying lane is on row 0, and a constant row
    // makes each copy's row, and its page's shuffle, constants (60 fewer
    // registers at head_dim 144 to 240).
    laneCopies = e.ult(cta.lane, e.index(chunksPerRow));
    laneChunk.first = e.index(0);
  }
  if (swizzled)
    laneStoredChunk = swizzledChunk(laneChunk.first, laneChunk.second);
}

/// Copy k moves rows laneRow + k * rowsPerCopy (laneRow < rowsPerCopy, both
/// powers of two up to 8 where rows are swizzled), so a row's low three
/// bits are laneRow's OR'd with (k * rowsPerCopy) mod 8: the lane's chunk is
/// stored at copy 0's chunk XOR that constant. Tiles and rows are multiples
/// of 8 chunks, so the lane's place in a tile does not depend on the tile:
/// LLVM hoists it out of the loop, and a copy adds it to the stage's tile.
Value TensorCoreDecodeBuilder::copyDestination(int64_t copy, Value tile,
                                               Value row, Value column) {
  KernelEmitter &e = this->e();
  if (!swizzled)
    return e.add(tile, tileElement(row, column));
  assert(laneStoredChunk && "swizzled rows are copied whole");
  Value dense = e.add(e.mul(row, e.index(rowStride)),
                      e.mul(laneStoredChunk, e.index(8)));
  return e.add(tile, arith::XOrIOp::create(
                         b(), dense, e.index(copy * rowsPerCopy() % 8 * 8)));
}

std::pair<Value, Value> TensorCoreDecodeBuilder::copyChunk(int64_t copy) {
  KernelEmitter &e = this->e();
  if (!copiesWholeRows())
    return chunkPosition(e, e.add(cta.lane, e.index(copy * 32)), chunksPerRow);
  return {e.add(laneChunk.first, e.index(copy * rowsPerCopy())),
          laneChunk.second};
}

Value TensorCoreDecodeBuilder::loadTilePage(Value i) {
  KernelEmitter &e = this->e();
  Value token = tileBase(i);
  if (!tilesInOnePage())
    token = e.add(token, e.rem(cta.lane, e.index(tileTokens)));
  return loadPageEntry(e, arg("block_table"), cta.batch,
                       e.min(token, lastToken), c.spec.pageSize);
}

/// With row groups, group g issues copies g, g + groups, ...: the copy
/// indices stay constants (a copy's row and shuffle do, too) under a
/// branch that is uniform in the warp.
void TensorCoreDecodeBuilder::issueTile(Value i, Value stage, Value page) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  Value base = tileBase(i);
  Value kTile = ringOffset(stage, 0), vTile = ringOffset(stage, 1);
  std::optional<TileInPage> inPage;
  if (tilesInOnePage())
    inPage = locateTileInPage(base, e.toIndex(page));
  auto issueCopy = [&](int64_t copy) {
    auto [row, column] = copyChunk(copy);
    Value elemBytes = e.index(c.elementBytes());
    Value kDest = e.mul(copyDestination(copy, kTile, row, column), elemBytes);
    Value vDest = e.mul(copyDestination(copy, vTile, row, column), elemBytes);
    // `column` is in the ring's 16-bit elements: two fp8 codes each.
    Value cacheColumn = fp8 ? e.mul(column, e.index(2)) : column;
    if (inPage) {
      // Rows outside the chunk are zeros: the slots past a sequence's end
      // (or before a window, in a page reused since) may hold anything,
      // and 0 * NaN would reach the output.
      Value past = outsideChunk(row, *inPage);
      auto address = [&](const AsyncCopyEmitter::Source &src, Value start) {
        Value rowStart = e.mul(row, src.strides[slotDim()]);
        return asyncCopy->offsetBy(start, e.add(rowStart, cacheColumn));
      };
      asyncCopy->copy16(address(kSource, inPage->kStart), kDest, laneCopies,
                        past);
      asyncCopy->copy16(address(vSource, inPage->vStart), vDest, laneCopies,
                        past);
      return;
    }
    Value rowPage = e.toIndex(
        gpu::ShuffleOp::create(
            b, page, arith::IndexCastOp::create(b, b.getI32Type(), row),
            e.i32(32), gpu::ShuffleMode::IDX)
            .getShuffleResult());
    Value slot =
        e.rem(e.min(e.add(base, row), lastToken), e.index(c.spec.pageSize));
    std::array<Value, 4> src = ::paged_attn::cacheIndex(
        c.spec.layout, rowPage, slot, cta.kvHead, cacheColumn);
    asyncCopy->copy16(kSource, src, kDest, laneCopies);
    asyncCopy->copy16(vSource, src, vDest, laneCopies);
  };
  if (rowGroups == 1) {
    for (int64_t copy = 0; copy < copiesPerTile(); ++copy)
      issueCopy(copy);
    return;
  }
  for (int64_t group = 0; group < rowGroups; ++group) {
    OpBuilder::InsertionGuard guard(b);
    auto ours =
        scf::IfOp::create(b,
                          arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                                rowGroup, e.index(group)),
                          /*withElse=*/false);
    b.setInsertionPointToStart(ours.thenBlock());
    for (int64_t copy = group; copy < copiesPerTile(); copy += rowGroups)
      issueCopy(copy);
  }
}

/// A tile past the chunk (a row group's warp short of a tile) has no rows
/// of it: `rows` is then negative, and its page the chunk's last token's,
/// at the tile's slots, which lie in that page all the same. The first
/// tile of a window's chunk may start up to 15 rows before it, in the
/// chunk's first page.
TensorCoreDecodeBuilder::TileInPage
TensorCoreDecodeBuilder::locateTileInPage(Value base, Value page) {
  KernelEmitter &e = this->e();
  Value slot = e.rem(base, e.index(c.spec.pageSize));
  auto start = [&](const AsyncCopyEmitter::Source &src) {
    return asyncCopy->baseAddress(
        src, asyncCopy->elementOffset(
                 src, ::paged_attn::cacheIndex(c.spec.layout, page, slot,
                                               cta.kvHead, e.index(0))));
  };
  // Sequence lengths are i32.
  auto rowsTo = [&](Value token) -> Value {
    return arith::IndexCastOp::create(b(), b().getI32Type(),
                                      arith::SubIOp::create(b(), token, base));
  };
  Value rows = rowsTo(cta.chunkEnd);
  Value before = tilesStartBeforeChunk() ? rowsTo(cta.chunkBegin) : Value();
  return {start(kSource), start(vSource), rows, before};
}

/// Without a window only rows past the chunk; with one, the unsigned
/// distance from the chunk's first key covers both ends.
Value TensorCoreDecodeBuilder::outsideChunk(Value row, const TileInPage &tile) {
  ImplicitLocOpBuilder &b = this->b();
  Value row32 = arith::IndexCastOp::create(b, b.getI32Type(), row);
  if (!tile.before)
    return arith::CmpIOp::create(b, arith::CmpIPredicate::sge, row32,
                                 tile.rows);
  return arith::CmpIOp::create(b, arith::CmpIPredicate::uge,
                               arith::SubIOp::create(b, row32, tile.before),
                               chunkLength);
}

Value TensorCoreDecodeBuilder::inChunk(Value token) {
  KernelEmitter &e = this->e();
  if (!tilesStartBeforeChunk())
    return e.ult(token, cta.chunkEnd);
  return e.ult(arith::SubIOp::create(b(), token, cta.chunkBegin),
               arith::SubIOp::create(b(), cta.chunkEnd, cta.chunkBegin));
}

void TensorCoreDecodeBuilder::issueTileIfAny(Value i, Value stage, Value page) {
  ImplicitLocOpBuilder &b = this->b();
  auto ifAny = scf::IfOp::create(b, e().ult(i, warpTiles), false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifAny.thenBlock());
    issueTile(i, stage, page);
  }
  // Empty groups too, so that group counts are the same in every warp.
  NVVM::CpAsyncCommitGroupOp::create(b);
}

/// q as mma A fragments, one per k step: rows are this warp's row group's
/// rows (zero past the CTA's), the logit scale is applied to S in f32.
void TensorCoreDecodeBuilder::loadQFragments() {
  KernelEmitter &e = this->e();
  Value zeroOperand = mma().zeroOperand();
  auto qOperand = [&](int64_t rowBlock, Value column) -> Value {
    if (rowBlock >= headBlocks)
      return zeroOperand;
    Value row = e.add(firstGroupRow, e.add(quadRow, e.index(8 * rowBlock)));
    Value valid = e.ult(row, e.index(rows));
    CTARow at = getCTARow(e, c, cta.firstHead, cta.firstQuery,
                          e.select(valid, row, e.index(0)));
    Value pair =
        vector::LoadOp::create(b(), VectorType::get({2}, c.elementType), arg("q"),
                               getResultIndex(cta.batch, at, {column}),
                               /*nontemporal=*/false, llvm::MaybeAlign(4));
    if (fp8 && c.elementType.isBF16())
      pair = bf16PairToF16(pair);
    return e.select(valid, mma().operand(pair), zeroOperand);
  };
  for (int64_t ks = 0; ks < dBlocks; ++ks) {
    // Lane columns 2 quadCol + {0, 1} and + 8 of the k step; with fp8
    // caches, K's columns come as 4 quadCol + {0, 1} and + {2, 3}.
    Value col = e.add(e.index(ks * 16), e.mul(quadCol, e.index(fp8 ? 4 : 2)));
    Value colHigh = e.add(col, e.index(fp8 ? 2 : 8));
    qFragments.push_back({qOperand(0, col), qOperand(1, col),
                          qOperand(0, colHigh), qOperand(1, colHigh)});
  }
  logitScale = e.fmul(arg("scale"), e.f32Const(M_LOG2E));
  if (fp8 && c.elementType.isBF16())
    logitScale = e.fmul(logitScale, e.f32Const(1.0 / kBF16QToF16Scale));
  if (scales.k)
    logitScale = e.fmul(logitScale, scales.k);
  // Rows past this CTA's rows are padding: they read row 0's slope.
  for (int64_t r = 0; r < headBlocks; ++r) {
    Value row = e.add(firstGroupRow, e.add(quadRow, e.index(8 * r)));
    CTARow at = getCTARow(e, c, cta.firstHead, cta.firstQuery,
                          e.select(e.ult(row, e.index(rows)), row, e.index(0)));
    laneRows.push_back(at);
    rowKeyEnds.push_back(getRowKeyEnd(e, *rules, cta, at));
    rowSlopes.push_back(rules->headSlope(b(), at.head));
  }
}

/// The first stages - 1 tiles in flight, and the pages of the next one. A
/// warp with no tiles loads no pages: its chunk may be empty.
Value TensorCoreDecodeBuilder::emitPrologue() {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  Value hasTiles = e.ult(e.index(0), warpTiles);
  auto firstPages = scf::IfOp::create(b, TypeRange{b.getI32Type()}, hasTiles,
                                      /*withElse=*/true);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(firstPages.thenBlock());
    for (int64_t s = 0; s + 1 < stages; ++s) {
      Value tile = e.index(s);
      Value page = loadTilePage(tile);
      auto ifAny = scf::IfOp::create(b, e.ult(tile, warpTiles), false);
      b.setInsertionPointToStart(ifAny.thenBlock());
      issueTile(tile, tile, page);
      b.setInsertionPointAfter(ifAny);
    }
    scf::YieldOp::create(b, loadTilePage(e.index(stages - 1)));
    b.setInsertionPointToStart(firstPages.elseBlock());
    scf::YieldOp::create(b, e.i32(0));
  }
  for (int64_t s = 0; s + 1 < stages; ++s)
    NVVM::CpAsyncCommitGroupOp::create(b);
  return firstPages.getResult(0);
}

SmallVector<Value> TensorCoreDecodeBuilder::emitFirstTokenScales() {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  SmallVector<Type> types(stages, e.f32);
  auto first = scf::IfOp::create(b, types, e.ult(e.index(0), warpTiles),
                                 /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(first.thenBlock());
  SmallVector<Value> loaded;
  for (int64_t tile = 0; tile < stages; ++tile)
    loaded.push_back(loadLaneTokenScale(e.index(tile)));
  scf::YieldOp::create(b, loaded);
  b.setInsertionPointToStart(first.elseBlock());
  scf::YieldOp::create(b, SmallVector<Value>(stages, e.f32Const(0.0)));
  return SmallVector<Value>(first.getResults());
}

/// The row and 16-byte chunk whose address this lane gives ldmatrix: its
/// four 8x8 matrices are (tokens 0-7, chunk 2k), (0-7, 2k+1), (8-15, 2k),
/// (8-15, 2k+1), which are the B fragments of two 8-token column blocks of
/// K^T and, transposed, the A fragment of one 16-row block of V^T.
void TensorCoreDecodeBuilder::emitLdMatrixLanes() {
  KernelEmitter &e = this->e();
  Value ldRow = e.add(e.mul(e.div(cta.lane, e.index(16)), e.index(8)),
                      e.rem(cta.lane, e.index(8)));
  Value ldHalf = e.rem(e.div(cta.lane, e.index(8)), e.index(2));
  // Block k's chunk 2k + ldHalf: its low three bits 2 (k mod 4) + ldHalf
  // carry the swizzle, the rest is a constant.
  for (int64_t k = 0; k < (swizzled ? 4 : 1); ++k)
    ldLaneOffsets.push_back(
        tileElement(ldRow, e.mul(e.add(e.index(2 * k), ldHalf), e.index(8))));
}

Value TensorCoreDecodeBuilder::ldmatrix(Value tileOffset, int64_t block,
                                        bool transpose) {
  KernelEmitter &e = this->e();
  Value lane = swizzled ? ldLaneOffsets[block % 4] : ldLaneOffsets[0];
  int64_t rest = swizzled ? block / 4 * 64 : block * 16;
  Value offset = e.add(e.add(tileOffset, lane), e.index(rest));
  return nvgpu::LdMatrixOp::create(b(), VectorType::get({4, 2}, ringType()),
                                   rings, ValueRange{offset}, transpose,
                                   /*numTiles=*/4);
}

std::pair<Value, Value>
TensorCoreDecodeBuilder::fp8Fragment(Value loaded, int64_t i,
                                     ArrayRef<int64_t> order) {
  ImplicitLocOpBuilder &b = this->b();
  auto codesType = VectorType::get({4}, b.getI8Type());
  Value codes = vector::BitCastOp::create(
      b, codesType, vector::ExtractOp::create(b, loaded, i));
  if (!order.empty())
    codes = vector::ShuffleOp::create(b, codes, codes, order);
  Value halves = widenFp8ToF16(e(), c, codes);
  auto half = [&](int64_t first) {
    return vector::ShuffleOp::create(b, halves, halves,
                                     ArrayRef<int64_t>{first, first + 1});
  };
  return {half(0), half(2)};
}

/// Lanes 0-15 load K's scale of token l of the tile, lanes 16-31 V's of
/// token l - 16 (through the page table, as the copies do).
Value TensorCoreDecodeBuilder::loadLaneTokenScale(Value i, Value page) {
  KernelEmitter &e = this->e();
  Value token = e.min(e.add(tileBase(i), e.rem(cta.lane, e.index(tileTokens))),
                      lastToken);
  // A row before the chunk takes its first key's scale: its slot may hold
  // anything.
  if (tilesStartBeforeChunk())
    token = arith::MaxUIOp::create(b(), token, cta.chunkBegin);
  page = page ? e.toIndex(page)
              : e.toIndex(loadPageEntry(e, arg("block_table"), cta.batch, token,
                                        c.spec.pageSize));
  Value slot = e.rem(token, e.index(c.spec.pageSize));
  auto [kScale, vScale] = scales.load(e, c, page, slot, cta.kvHead);
  return e.select(e.ult(cta.lane, e.index(tileTokens)), kScale, vScale);
}

/// Each lane's four tokens' K and V scales, from the lanes that loaded
/// them (K's in lanes 0-15, V's in 16-31).
void TensorCoreDecodeBuilder::takeTokenScales(Value mine) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  tileKScales.clear();
  tileVScales.clear();
  for (int64_t nb = 0; nb < 2; ++nb)
    for (int64_t j = 0; j < 2; ++j) {
      Value lane = e.add(e.mul(quadCol, e.index(2)), e.index(nb * 8 + j));
      auto from = [&](Value srcLane) {
        return gpu::ShuffleOp::create(
                   b, mine,
                   arith::IndexCastOp::create(b, b.getI32Type(), srcLane),
                   e.i32(32), gpu::ShuffleMode::IDX)
            .getShuffleResult();
      };
      tileKScales.push_back(from(lane));
      tileVScales.push_back(from(e.add(lane, e.index(tileTokens))));
    }
}

/// V's per-token scales weigh the tokens' rows in P, which the mma takes in
/// f16: a weight times its scale enters over the row's reference, 2^-15
/// times the largest weighted |scale| the row has seen (decayed with the
/// softmax's max, at least the smallest normal f32), so that every entry
/// stays within 2^15 (f16 holds 65504) and every token whose weighted scale
/// is within 2^-29 of the largest stays in f16's normal range (2^-14 and
/// up), whatever the scales. A weighted scale is not a token's share of the
/// output: a token of large scale and tiny codes sets the reference while
/// the tokens that carry the row may sit far below it, which a reference
/// of the largest itself (entries within 1) pushed into f16's subnormals,
/// rounded to a few percent (bench/NOTES.md 40 and 42). The power of two
/// is exact: where nothing was subnormal the result is the same. The
/// accumulators are kept in units of the reference, rescaled as it moves
/// (with the softmax's alpha) and multiplied by it as they are published.
Value TensorCoreDecodeBuilder::weighByTokenScales(SmallVector<Value> &p,
                                                  Value alpha, Value &vRef) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  // |w| as max(w, -w): math.absf would become a libdevice call.
  Value rowMax = e.f32Const(0.0);
  for (auto [weight, scale] : llvm::zip_equal(p, tileVScales)) {
    Value w = e.fmul(weight, scale);
    rowMax = e.fmax(rowMax, e.fmax(w, arith::NegFOp::create(b, w)));
  }
  for (int64_t offset = 1; offset < 4; offset *= 2)
    rowMax = e.fmax(rowMax, e.shuffleXor(rowMax, offset));
  Value decayed = e.fmul(vRef, alpha);
  // Within [2^-126, 2^126], so that its one-instruction reciprocal (about
  // an ulp; the accumulators are multiplied back by the reference itself)
  // is a normal number.
  Value newRef = e.fmax(e.fmax(decayed, e.fmul(rowMax, e.f32Const(0x1p-15f))),
                        e.f32Const(std::numeric_limits<float>::min()));
  newRef = arith::MinimumFOp::create(b, newRef, e.f32Const(0x1p126f));
  Value inverse = e.reciprocal(newRef);
  for (auto [weight, scale] : llvm::zip_equal(p, tileVScales))
    weight = e.fmul(e.fmul(weight, scale), inverse);
  vRef = newRef;
  return e.fmul(decayed, inverse);
}

/// S for the two 8-token column blocks of this tile.
SmallVector<SmallVector<Value>>
TensorCoreDecodeBuilder::computeScores(Value kTile) {
  Value zero = e().f32Const(0.0);
  SmallVector<SmallVector<Value>> scores(2, SmallVector<Value>(4, zero));
  if (fp8) {
    // Matrix m of an ldmatrix at 32-column block j is k step 2j + m % 2 of
    // column block m / 2; its register is that step's B fragment.
    for (int64_t j = 0; j < dBlocks / 2; ++j) {
      Value k = ldmatrix(kTile, j, /*transpose=*/false);
      for (int64_t m = 0; m < 4; ++m) {
        auto [low, high] = fp8Fragment(k, m, {});
        SmallVector<Value> &block = scores[m / 2];
        block = mma().mma(qFragments[2 * j + m % 2], {low, high}, block);
      }
    }
    return scores;
  }
  for (int64_t ks = 0; ks < dBlocks; ++ks) {
    Value k = ldmatrix(kTile, ks, /*transpose=*/false);
    scores[0] =
        mma().mma(qFragments[ks], {mma().fragment(k, 0), mma().fragment(k, 1)},
                  scores[0]);
    scores[1] =
        mma().mma(qFragments[ks], {mma().fragment(k, 2), mma().fragment(k, 3)},
                  scores[1]);
  }
  return scores;
}

/// The online softmax per head row; a row's 16 logits are spread over the
/// four lanes of a quad. Returns each row's correction factor; P^T's B
/// fragments are S's registers, rounded. Every tile holds at least one
/// token of the chunk, so the new max is finite, except in a multi-token
/// decode, whose rows may see none of a tile's keys, and with row groups,
/// whose warps may take a tile past the chunk: there the weights are taken
/// against a safe reference (0 for a max of -inf).
SmallVector<Value> TensorCoreDecodeBuilder::updateSoftmax(
    OnlineSoftmax::State &s, ArrayRef<SmallVector<Value>> scores, Value base,
    SmallVector<SmallVector<Value>> &pFragments,
    MutableArrayRef<Value> vRefs) {
  KernelEmitter &e = this->e();
  OnlineSoftmax softmax(e);
  SmallVector<Value> alpha;
  for (int64_t r = 0; r < headBlocks; ++r) {
    SmallVector<Value> logits;
    Value tileMax = e.negInf();
    for (int64_t nb = 0; nb < 2; ++nb)
      for (int64_t j = 0; j < 2; ++j) {
        Value token =
            e.add(base, e.add(e.mul(quadCol, e.index(2)), e.index(nb * 8 + j)));
        // Accumulator registers 2r and 2r + 1 hold row quadRow + 8r.
        Value score = e.fmul(scores[nb][2 * r + j], logitScale);
        if (!tileKScales.empty())
          score = e.fmul(score, tileKScales[nb * 2 + j]);
        Value logit = applyScoreRules(e, *rules, score, [&] {
          return ScorePosition{token, rowKeyEnds[r], rowSlopes[r]};
        });
        Value seen = inChunk(token);
        if (Value sees =
                rowSeesKey(e, *rules, cta, laneRows[r], rowKeyEnds[r], token))
          seen = arith::AndIOp::create(b(), seen, sees);
        Value x = e.select(seen, logit, e.negInf());
        logits.push_back(x);
        tileMax = e.fmax(tileMax, x);
      }
    for (int64_t offset = 1; offset < 4; offset *= 2)
      tileMax = e.fmax(tileMax, e.shuffleXor(tileMax, offset));
    Value newMax = e.fmax(s.max[r], tileMax);
    Value ref =
        cta.firstQuery || rowGroups > 1 ? softmax.reference(newMax) : newMax;
    alpha.push_back(softmax.weight(s.max[r], ref));
    SmallVector<Value> p;
    Value sum = e.fmul(s.sum[r], alpha.back());
    for (Value x : logits) {
      p.push_back(softmax.weight(x, ref));
      sum = e.fadd(sum, p.back());
    }
    s.max[r] = newMax;
    s.sum[r] = sum;
    // Per-token V scales weigh the tokens' rows in O (not in the sum).
    if (!vRefs.empty())
      alpha.back() = weighByTokenScales(p, alpha.back(), vRefs[r]);
    pFragments.push_back({mma().pack(p[0], p[1]), mma().pack(p[2], p[3])});
  }
  return alpha;
}

/// Rescales O^T: its columns 2 * quadCol + {0, 1} are heads whose
/// correction factors live in lanes 4 * head.
void TensorCoreDecodeBuilder::rescaleAccumulators(OnlineSoftmax::State &s,
                                                  ArrayRef<Value> alpha) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  for (int64_t r = 0; r < headBlocks; ++r) {
    Value srcLane = arith::IndexCastOp::create(b, b.getI32Type(),
                                               e.mul(quadCol, e.index(8)));
    Value a0 = gpu::ShuffleOp::create(b, alpha[r], srcLane, e.i32(32),
                                      gpu::ShuffleMode::IDX)
                   .getShuffleResult();
    Value a1 = gpu::ShuffleOp::create(
                   b, alpha[r], arith::AddIOp::create(b, srcLane, e.i32(4)),
                   e.i32(32), gpu::ShuffleMode::IDX)
                   .getShuffleResult();
    for (int64_t md = 0; md < dBlocks; ++md) {
      MutableArrayRef<Value> regs = accRegs(s, md, r);
      SmallVector<Value> scaled = {e.fmul(regs[0], a0), e.fmul(regs[1], a1),
                                   e.fmul(regs[2], a0), e.fmul(regs[3], a1)};
      llvm::copy(scaled, regs.begin());
    }
  }
}

/// O^T += V^T * P^T.
void TensorCoreDecodeBuilder::accumulatePV(
    OnlineSoftmax::State &s, Value vTile,
    ArrayRef<SmallVector<Value>> pFragments) {
  if (fp8) {
    // Transposed, matrix m at 32-column block j holds columns 2g, 2g + 1
    // of tokens 2 quadCol, + 1 (+ 8 for m >= 2) of d block 2j + m % 2;
    // ordered as two (column, both tokens) pairs, they are the A fragment's
    // rows g and g + 8 of that block.
    const int64_t byColumn[] = {0, 2, 1, 3};
    for (int64_t j = 0; j < dBlocks / 2; ++j) {
      Value v = ldmatrix(vTile, j, /*transpose=*/true);
      for (int64_t half = 0; half < 2; ++half) {
        auto [rowLow, rowHigh] = fp8Fragment(v, half, byColumn);
        auto [rowLow8, rowHigh8] = fp8Fragment(v, half + 2, byColumn);
        SmallVector<Value> a = {rowLow, rowHigh, rowLow8, rowHigh8};
        for (int64_t r = 0; r < headBlocks; ++r) {
          MutableArrayRef<Value> regs = accRegs(s, 2 * j + half, r);
          SmallVector<Value> sum = mma().mma(a, pFragments[r], regs);
          llvm::copy(sum, regs.begin());
        }
      }
    }
    return;
  }
  for (int64_t md = 0; md < dBlocks; ++md) {
    Value v = ldmatrix(vTile, md, /*transpose=*/true);
    SmallVector<Value> a = {mma().fragment(v, 0), mma().fragment(v, 1),
                            mma().fragment(v, 2), mma().fragment(v, 3)};
    for (int64_t r = 0; r < headBlocks; ++r) {
      MutableArrayRef<Value> regs = accRegs(s, md, r);
      SmallVector<Value> sum = mma().mma(a, pFragments[r], regs);
      llvm::copy(sum, regs.begin());
    }
  }
}

void TensorCoreDecodeBuilder::emitLoopBody(scf::ForOp loop) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  Value i = loop.getInductionVar();
  ValueRange iterArgs = loop.getRegionIterArgs();
  OnlineSoftmax::State s = OnlineSoftmax::State::unflatten(
      iterArgs.drop_back(loopExtras()), headBlocks);
  Value page = iterArgs[iterArgs.size() - loopExtras()];
  ValueRange laneScales = iterArgs.take_back(stages);
  SmallVector<Value> vRefs;
  if (scales.perToken()) {
    takeTokenScales(laneScales.front());
    llvm::append_range(vRefs, iterArgs.drop_back(stages).take_back(headBlocks));
  }
  Value ahead = e.add(i, e.index(stages - 1));
  issueTileIfAny(ahead, ringSlot(ahead), page);
  Value nextPage = loadTilePage(e.add(ahead, e.index(1)));
  NVVM::CpAsyncWaitGroupOp::create(b, static_cast<uint32_t>(stages - 1));
  syncRingSharers();

  Value stage = ringSlot(i);
  Value kTile = ringOffset(stage, 0), vTile = ringOffset(stage, 1);
  Value base = tileBase(i);
  SmallVector<SmallVector<Value>> scores = computeScores(kTile);
  SmallVector<SmallVector<Value>> pFragments;
  SmallVector<Value> alpha =
      updateSoftmax(s, scores, base, pFragments, vRefs);
  rescaleAccumulators(s, alpha);
  accumulatePV(s, vTile, pFragments);
  // Every lane is done with this slot before it is refilled.
  syncRingSharers();
  SmallVector<Value> yielded = s.flatten();
  yielded.push_back(nextPage);
  if (scales.perToken()) {
    yielded.append(vRefs);
    // The scales of tile i + stages, through the page loaded above for
    // its copy (back by now): `stages` iterations before they are used.
    yielded.append(laneScales.begin() + 1, laneScales.end());
    yielded.push_back(loadLaneTokenScale(e.add(i, e.index(stages)), nextPage));
  }
  scf::YieldOp::create(b, yielded);
}

void TensorCoreDecodeBuilder::syncRingSharers() {
  if (rowGroups == 1) {
    NVVM::SyncWarpOp::create(b(), fullMask);
    return;
  }
  NVVM::BarrierOp::create(b(), TypeRange{}, ringBarrier,
                          e().i32(32 * rowGroups), {}, Value{});
}

/// Publishes each warp's state over the (now idle) rings, at its token
/// warp and its rows in the CTA.
void TensorCoreDecodeBuilder::publishWarpState(const OnlineSoftmax::State &s) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  gpu::BarrierOp::create(b);
  // An fp8 cache's V scale, where it is the CTA's; per token, the
  // references the accumulators are kept in units of: head column 2
  // quadCol + j's is row 2 quadCol + j's, in lane 4 (2 quadCol + j).
  Value vScale = scales.v;
  SmallVector<std::array<Value, 2>> columnRefs;
  for (Value ref : finalVRefs) {
    Value srcLane = arith::IndexCastOp::create(b, b.getI32Type(),
                                               e.mul(quadCol, e.index(8)));
    columnRefs.push_back(
        {gpu::ShuffleOp::create(b, ref, srcLane, e.i32(32),
                                gpu::ShuffleMode::IDX)
             .getShuffleResult(),
         gpu::ShuffleOp::create(b, ref,
                                arith::AddIOp::create(b, srcLane, e.i32(4)),
                                e.i32(32), gpu::ShuffleMode::IDX)
             .getShuffleResult()});
  }
  for (int64_t md = 0; md < dBlocks; ++md)
    for (int64_t r = 0; r < headBlocks; ++r) {
      // Registers 2h and 2h + 1 hold O^T row quadRow + 8h: column quadRow
      // + 8h of the d block, or with fp8 caches 2 quadRow + h.
      Value dim =
          e.add(e.index(md * 16), fp8 ? e.mul(quadRow, e.index(2)) : quadRow);
      Value head = e.add(firstGroupRow,
                         e.add(e.index(8 * r), e.mul(quadCol, e.index(2))));
      for (int64_t k = 0; k < 4; ++k) {
        Value acc = s.acc[(md * headBlocks + r) * 4 + k];
        if (vScale)
          acc = e.fmul(acc, vScale);
        if (!columnRefs.empty())
          acc = e.fmul(acc, columnRefs[r][k % 2]);
        memref::StoreOp::create(
            b, acc, accSmem,
            ValueRange{tokenWarp, e.add(head, e.index(k % 2)),
                       e.add(dim, e.index((fp8 ? 1 : 8) * (k / 2)))});
      }
    }
  auto firstInQuad = scf::IfOp::create(b, e.ult(quadCol, e.index(1)), false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(firstInQuad.thenBlock());
    for (int64_t r = 0; r < headBlocks; ++r) {
      Value head = e.add(firstGroupRow, e.add(quadRow, e.index(8 * r)));
      memref::StoreOp::create(b, s.max[r], statSmem,
                              ValueRange{e.index(0), tokenWarp, head});
      memref::StoreOp::create(b, s.sum[r], statSmem,
                              ValueRange{e.index(1), tokenWarp, head});
    }
  }
  gpu::BarrierOp::create(b);
}

gpu::GPUFuncOp TensorCoreDecodeBuilder::build() {
  MLIRContext *ctx = builder.getContext();
  func = createKernel(builder, module, c.decodeKernelName(),
                      getDecodeKernelArgTypes(ctx, c), {}, c.blockSize());
  if (c.strategy.minCTAsPerSM > 0)
    func->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                  builder.getI32IntegerAttr(c.strategy.minCTAsPerSM));
  bStorage.emplace(func.getLoc(), builder);
  b().setInsertionPointToStart(&func.getBody().front());
  eStorage.emplace(b());
  mmaStorage.emplace(e(), ringType());
  KernelEmitter &e = this->e();

  rules.emplace(getScoreRules(e, c, func));
  cta = emitDecodeCTA(e, c, func, *rules);
  scf::IfOp ifEmpty = emitEmptySplitShortcut(e, c, func, cta);
  scales = KVScales::get(e, c, func, cta.kvHead);
  quadRow = e.div(cta.lane, e.index(4));
  quadCol = e.rem(cta.lane, e.index(4));
  emitSharedMemory();
  emitTileShares();
  emitCopyMapping();
  fullMask = e.i32(-1);
  loadQFragments();
  Value firstPage = emitPrologue();

  OnlineSoftmax::State init;
  for (int64_t r = 0; r < headBlocks; ++r) {
    init.max.push_back(e.negInf());
    init.sum.push_back(e.f32Const(0.0));
  }
  init.acc.assign(dBlocks * headBlocks * 4, e.f32Const(0.0));
  emitLdMatrixLanes();

  SmallVector<Value> loopInit = init.flatten();
  loopInit.push_back(firstPage);
  if (scales.perToken()) {
    loopInit.append(headBlocks, e.f32Const(0.0));
    loopInit.append(emitFirstTokenScales());
  }
  auto loop =
      scf::ForOp::create(b(), e.index(0), warpTiles, e.index(1), loopInit);
  {
    OpBuilder::InsertionGuard guard(b());
    b().setInsertionPointToStart(loop.getBody());
    emitLoopBody(loop);
  }
  OnlineSoftmax::State s = OnlineSoftmax::State::unflatten(
      loop.getResults().drop_back(loopExtras()), headBlocks);
  if (scales.perToken())
    llvm::append_range(finalVRefs, loop.getResults()
                                       .drop_back(stages)
                                       .take_back(headBlocks));
  for (int64_t r = 0; r < headBlocks; ++r)
    for (int64_t offset = 1; offset < 4; offset *= 2)
      s.sum[r] = e.fadd(s.sum[r], e.shuffleXor(s.sum[r], offset));
  publishWarpState(s);

  emitMergeWarpsAndStore(e, c,
                         getDecodeEpilogue(func, c, cta, accSmem, statSmem));
  b().setInsertionPointAfter(ifEmpty);
  gpu::ReturnOp::create(b());
  return func;
}

gpu::GPUFuncOp mlir::paged_attn::buildTensorCoreDecodeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  return TensorCoreDecodeBuilder(builder, module, c).build();
}
