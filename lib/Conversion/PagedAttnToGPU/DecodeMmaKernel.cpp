//===- DecodeMmaKernel.cpp - the tensor-core decode kernel ----------------===//
//
// For query groups of several heads. The grid and arguments are those of
// the CUDA-core kernel: one CTA per (KV head or part of its group, sequence,
// chunk). Each warp works on tiles of 16 tokens with mma.sync m16n8k16:
//
//   S   [heads x 16 tokens] = Q [heads, rows padded to 16 x D] * K^T
//   O^T [D x heads]        += V^T [D x 16 tokens] * P^T [16 tokens x heads]
//
// Computing O transposed lets the B operand P^T come straight from S's
// accumulator registers, and keeps the output accumulators to the real
// heads (8 per column block) instead of 16 padded rows.
//
// Warp w takes tiles w, w + W, ... of the chunk and streams them into its
// own ring of `stagesUsed()` shared-memory buffers with cp.async (L2 only,
// with the L2 prefetch hint: AsyncCopy.cpp), so the loads in flight cost no
// registers and the warps never wait for each other until the end, where
// their softmax states are merged as in the CUDA-core kernel. Tile rows are
// padded by 16 bytes, so the eight rows one ldmatrix reads sit in different
// banks while every address stays a constant offset from a per-lane base (an
// XOR swizzle cost ptxas 16 more registers of hoisted addresses).
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

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

/// Online-softmax state of one warp: per head row the running max (base-2
/// logits) and this lane's part of the running sum, and the O^T accumulator
/// registers [d block][head block][4].
struct MmaSoftmaxState {
  SmallVector<Value> max, sum;
  SmallVector<SmallVector<SmallVector<Value>>> acc;

  SmallVector<Value> flatten() const {
    SmallVector<Value> values(max);
    values.append(sum);
    for (const auto &block : acc)
      for (const auto &regs : block)
        values.append(regs);
    return values;
  }
  static MmaSoftmaxState unflatten(ValueRange values, int64_t headBlocks,
                                   int64_t dBlocks) {
    MmaSoftmaxState s;
    auto it = values.begin();
    s.max.assign(it, it + headBlocks);
    it += headBlocks;
    s.sum.assign(it, it + headBlocks);
    it += headBlocks;
    s.acc.resize(dBlocks);
    for (int64_t md = 0; md < dBlocks; ++md)
      for (int64_t r = 0; r < headBlocks; ++r, it += 4)
        s.acc[md].emplace_back(it, it + 4);
    return s;
  }
};
} // namespace

gpu::GPUFuncOp mlir::paged_attn::buildMmaDecodeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  MLIRContext *ctx = builder.getContext();
  constexpr int64_t tileTokens = DecodeKernelConfig::kMmaTileTokens;
  const int64_t numWarps = c.numWarps, stages = c.stagesUsed(), d = c.headDim;
  const int64_t heads = c.headsPerCTA();
  const int64_t headBlocks = c.mmaHeadBlocks();
  const int64_t paddedHeads = 8 * headBlocks;
  // 16-wide blocks of the head dimension: the k steps of Q*K^T and the row
  // blocks of O^T.
  const int64_t dBlocks = d / 16;
  const int64_t chunksPerRow = d / 8; // 16-byte chunks
  const int64_t rowStride = d + 8;    // elements, padded
  const int64_t tileElems = tileTokens * rowStride;
  const bool nhd = c.layout == KVLayout::nhd;
  Type elemType = c.elementType;
  Type f32 = builder.getF32Type();

  gpu::GPUFuncOp func =
      createKernel(builder, module, c.decodeKernelName(),
                   getDecodeKernelArgTypes(ctx, c), {}, c.blockSize());
  if (c.minCTAsPerSM > 0)
    func->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                  builder.getI32IntegerAttr(c.minCTAsPerSM));

  ImplicitLocOpBuilder b(func.getLoc(), builder);
  b.setInsertionPointToStart(&func.getBody().front());
  KernelEmitter e(b);
  MmaEmitter mma(e, elemType);
  Value q = func.getArgument(0), kCache = func.getArgument(1),
        vCache = func.getArgument(2), blockTable = func.getArgument(3),
        out = func.getArgument(5), partialOut = func.getArgument(6),
        partialLse = func.getArgument(7), scale = func.getArgument(8);

  // Where this CTA, warp and lane are, and this CTA's chunk (rounded as in
  // the CUDA-core kernel). In mma fragments a lane holds row `quadRow` (and
  // quadRow + 8) and columns 2 * quadCol, 2 * quadCol + 1.
  DecodeCTA cta = emitDecodeCTA(e, c, func);
  Value tid = cta.tid, batch = cta.batch, split = cta.split,
        kvHead = cta.kvHead, firstHead = cta.firstHead, warp = cta.warp,
        lane = cta.lane, numSplits = cta.numSplits, chunkBegin = cta.chunkBegin,
        chunkEnd = cta.chunkEnd;
  Value quadRow = e.div(lane, e.index(4));
  Value quadCol = e.rem(lane, e.index(4));

  // Shared memory: per warp `stages` pairs of K and V tiles; after the
  // loop, the warps' accumulators and softmax statistics.
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                         MemRefLayoutAttrInterface(), workgroup));
  auto view = [&](ArrayRef<int64_t> shape, Type type, int64_t byteOffset) {
    return memref::ViewOp::create(
        b, MemRefType::get(shape, type, MemRefLayoutAttrInterface(), workgroup),
        smem, e.index(byteOffset), ValueRange{});
  };
  Value rings = view({numWarps * stages * 2 * tileElems}, elemType, 0);
  AsyncCopyEmitter asyncCopy(e, smem, c.elementBytes(), c.l2PrefetchBytes);
  AsyncCopyEmitter::Source kSource = asyncCopy.source(kCache),
                           vSource = asyncCopy.source(vCache);
  Value accSmem = view({numWarps, paddedHeads, d}, f32, 0);
  Value statSmem =
      view({2, numWarps, paddedHeads}, f32, numWarps * paddedHeads * d * 4);

  // This warp's share of the chunk's 16-token tiles.
  Value numTiles = arith::CeilDivUIOp::create(
      b, arith::SubIOp::create(b, chunkEnd, chunkBegin), e.index(tileTokens));
  Value warpTiles = e.div(
      arith::SubIOp::create(b, e.add(numTiles, e.index(numWarps - 1)), warp),
      e.index(numWarps));
  Value lastToken = arith::SubIOp::create(b, chunkEnd, e.index(1));
  auto tileBase = [&](Value i) {
    return e.add(chunkBegin, e.mul(e.add(e.mul(i, e.index(numWarps)), warp),
                                   e.index(tileTokens)));
  };
  auto ringOffset = [&](Value stage, int64_t kv) {
    return e.mul(
        e.add(e.mul(e.add(e.mul(warp, e.index(stages)), stage), e.index(2)),
              e.index(kv)),
        e.index(tileElems));
  };

  // Tile `i` of this warp into ring slot `stage`. The tile's 16 rows are
  // 16 * chunksPerRow 16-byte chunks (a multiple of 32: head_dim is a
  // multiple of 16), which the warp copies 32 at a time in row-major order,
  // so every row is requested at once as full cache lines. When a row's
  // chunks divide 32, copy k moves whole rows: lane l takes row
  // l / chunksPerRow + k * (32 / chunksPerRow) at the same column every
  // time. Otherwise (head_dim 48, 80, 96, 112) a copy ends inside a row and
  // each copy has its own row and column per lane. Lane l holds the page of
  // the tile's token l mod 16 (`page`, loaded one tile ahead); the copying
  // lanes take it by shuffle. Tokens past the chunk's end copy its last
  // token (their logits are masked).
  const int64_t copiesPerTile = tileTokens * chunksPerRow / 32;
  const bool wholeRows = 32 % chunksPerRow == 0;
  // (row, column in elements) of the chunk that this lane moves in copy
  // `copy`.
  auto chunkPosition = [&](Value chunk) -> std::pair<Value, Value> {
    return {e.div(chunk, e.index(chunksPerRow)),
            e.mul(e.rem(chunk, e.index(chunksPerRow)), e.index(8))};
  };
  std::pair<Value, Value> laneChunk;
  if (wholeRows)
    laneChunk = chunkPosition(lane);
  auto copiedChunk = [&](int64_t copy) -> std::pair<Value, Value> {
    if (!wholeRows)
      return chunkPosition(e.add(lane, e.index(copy * 32)));
    return {e.add(laneChunk.first, e.index(copy * (32 / chunksPerRow))),
            laneChunk.second};
  };
  auto loadTilePage = [&](Value i) -> Value {
    Value token =
        e.min(e.add(tileBase(i), e.rem(lane, e.index(tileTokens))), lastToken);
    return memref::LoadOp::create(
        b, blockTable, ValueRange{batch, e.div(token, e.index(c.pageSize))});
  };
  auto issueTile = [&](Value i, Value stage, Value page) {
    Value base = tileBase(i);
    Value kTile = ringOffset(stage, 0), vTile = ringOffset(stage, 1);
    for (int64_t copy = 0; copy < copiesPerTile; ++copy) {
      auto [row, column] = copiedChunk(copy);
      Value rowPage = e.toIndex(
          gpu::ShuffleOp::create(
              b, page, arith::IndexCastOp::create(b, b.getI32Type(), row),
              e.i32(32), gpu::ShuffleMode::IDX)
              .getShuffleResult());
      Value slot =
          e.rem(e.min(e.add(base, row), lastToken), e.index(c.pageSize));
      SmallVector<Value> src =
          nhd ? SmallVector<Value>{rowPage, slot, kvHead, column}
              : SmallVector<Value>{rowPage, kvHead, slot, column};
      Value dst = e.add(e.mul(row, e.index(rowStride)), column);
      Value elemBytes = e.index(c.elementBytes());
      asyncCopy.copy16(kSource, src, e.mul(e.add(kTile, dst), elemBytes));
      asyncCopy.copy16(vSource, src, e.mul(e.add(vTile, dst), elemBytes));
    }
  };
  auto issueTileIfAny = [&](Value i, Value stage, Value page) {
    auto ifAny = scf::IfOp::create(b, e.ult(i, warpTiles), false);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(ifAny.thenBlock());
      issueTile(i, stage, page);
    }
    // Empty groups too, so that group counts are the same in every warp.
    NVVM::CpAsyncCommitGroupOp::create(b);
  };
  Value fullMask = e.i32(-1);

  // q as mma A fragments, one per k step: rows are heads (zero past this
  // CTA's heads), the logit scale is applied to S in f32.
  Value zeroOperand = mma.zeroOperand();
  auto qOperand = [&](int64_t rowBlock, Value column) -> Value {
    if (rowBlock >= headBlocks)
      return zeroOperand;
    Value row = e.add(quadRow, e.index(8 * rowBlock));
    Value valid = e.ult(row, e.index(heads));
    Value head = e.add(firstHead, e.select(valid, row, e.index(0)));
    Value pair = vector::LoadOp::create(
        b, VectorType::get({2}, elemType), q, ValueRange{batch, head, column},
        /*nontemporal=*/false, llvm::MaybeAlign(4));
    return e.select(valid, mma.operand(pair), zeroOperand);
  };
  SmallVector<SmallVector<Value>> qFragments;
  for (int64_t ks = 0; ks < dBlocks; ++ks) {
    Value col = e.add(e.index(ks * 16), e.mul(quadCol, e.index(2)));
    Value colHigh = e.add(col, e.index(8));
    qFragments.push_back({qOperand(0, col), qOperand(1, col),
                          qOperand(0, colHigh), qOperand(1, colHigh)});
  }
  Value logitScale = e.fmul(scale, e.f32Const(M_LOG2E));

  // Prologue: the first stages - 1 tiles in flight, and the pages of the
  // next one. A warp with no tiles loads no pages: its chunk may be empty.
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

  MmaSoftmaxState init;
  for (int64_t r = 0; r < headBlocks; ++r) {
    init.max.push_back(e.negInf());
    init.sum.push_back(e.f32Const(0.0));
  }
  Value zero = e.f32Const(0.0);
  init.acc.assign(dBlocks, SmallVector<SmallVector<Value>>(
                               headBlocks, SmallVector<Value>(4, zero)));

  // The row and 16-byte chunk whose address this lane gives ldmatrix: its
  // four 8x8 matrices are (tokens 0-7, chunk 2k), (0-7, 2k+1), (8-15, 2k),
  // (8-15, 2k+1), which are the B fragments of two 8-token column blocks
  // of K^T and, transposed, the A fragment of one 16-row block of V^T.
  Value ldRow = e.add(e.mul(e.div(lane, e.index(16)), e.index(8)),
                      e.rem(lane, e.index(8)));
  Value ldHalf = e.rem(e.div(lane, e.index(8)), e.index(2));
  Value ldLaneOffset =
      e.add(e.mul(ldRow, e.index(rowStride)), e.mul(ldHalf, e.index(8)));
  auto ldmatrix = [&](Value tileOffset, int64_t block, bool transpose) {
    Value offset = e.add(e.add(tileOffset, ldLaneOffset), e.index(block * 16));
    return nvgpu::LdMatrixOp::create(b, VectorType::get({4, 2}, elemType),
                                     rings, ValueRange{offset}, transpose,
                                     /*numTiles=*/4);
  };

  SmallVector<Value> loopInit = init.flatten();
  loopInit.push_back(firstPages.getResult(0));
  auto loop =
      scf::ForOp::create(b, e.index(0), warpTiles, e.index(1), loopInit);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    ValueRange iterArgs = loop.getRegionIterArgs();
    MmaSoftmaxState s =
        MmaSoftmaxState::unflatten(iterArgs.drop_back(), headBlocks, dBlocks);
    Value ahead = e.add(i, e.index(stages - 1));
    issueTileIfAny(ahead, e.rem(ahead, e.index(stages)), iterArgs.back());
    Value nextPage = loadTilePage(e.add(ahead, e.index(1)));
    NVVM::CpAsyncWaitGroupOp::create(b, static_cast<uint32_t>(stages - 1));
    NVVM::SyncWarpOp::create(b, fullMask);

    Value stage = e.rem(i, e.index(stages));
    Value kTile = ringOffset(stage, 0), vTile = ringOffset(stage, 1);
    Value base = tileBase(i);

    // S for the two 8-token column blocks of this tile.
    SmallVector<SmallVector<Value>> scores(2, SmallVector<Value>(4, zero));
    for (int64_t ks = 0; ks < dBlocks; ++ks) {
      Value k = ldmatrix(kTile, ks, /*transpose=*/false);
      scores[0] = mma.mma(qFragments[ks],
                          {mma.fragment(k, 0), mma.fragment(k, 1)}, scores[0]);
      scores[1] = mma.mma(qFragments[ks],
                          {mma.fragment(k, 2), mma.fragment(k, 3)}, scores[1]);
    }

    // Online softmax per head row; a row's 16 logits are spread over the
    // four lanes of a quad. P^T's B fragments are S's registers, rounded.
    SmallVector<Value> alpha;
    SmallVector<SmallVector<Value>> pFragments;
    for (int64_t r = 0; r < headBlocks; ++r) {
      SmallVector<Value> logits;
      Value tileMax = e.negInf();
      for (int64_t nb = 0; nb < 2; ++nb)
        for (int64_t j = 0; j < 2; ++j) {
          Value token = e.add(
              base, e.add(e.mul(quadCol, e.index(2)), e.index(nb * 8 + j)));
          Value x =
              e.select(e.ult(token, chunkEnd),
                       e.fmul(scores[nb][2 * r + j], logitScale), e.negInf());
          logits.push_back(x);
          tileMax = e.fmax(tileMax, x);
        }
      for (int64_t offset = 1; offset < 4; offset *= 2)
        tileMax = e.fmax(tileMax, e.shuffleXor(tileMax, offset));
      Value newMax = e.fmax(s.max[r], tileMax);
      alpha.push_back(e.exp2(e.fsub(s.max[r], newMax)));
      SmallVector<Value> p;
      Value sum = e.fmul(s.sum[r], alpha.back());
      for (Value x : logits) {
        p.push_back(e.exp2(e.fsub(x, newMax)));
        sum = e.fadd(sum, p.back());
      }
      s.max[r] = newMax;
      s.sum[r] = sum;
      pFragments.push_back({mma.pack(p[0], p[1]), mma.pack(p[2], p[3])});
    }

    // Rescale O^T: its columns 2 * quadCol + {0, 1} are heads whose
    // correction factors live in lanes 4 * head.
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
        SmallVector<Value> &regs = s.acc[md][r];
        regs = {e.fmul(regs[0], a0), e.fmul(regs[1], a1), e.fmul(regs[2], a0),
                e.fmul(regs[3], a1)};
      }
    }

    // O^T += V^T * P^T.
    for (int64_t md = 0; md < dBlocks; ++md) {
      Value v = ldmatrix(vTile, md, /*transpose=*/true);
      SmallVector<Value> a = {mma.fragment(v, 0), mma.fragment(v, 1),
                              mma.fragment(v, 2), mma.fragment(v, 3)};
      for (int64_t r = 0; r < headBlocks; ++r)
        s.acc[md][r] = mma.mma(a, pFragments[r], s.acc[md][r]);
    }
    // Every lane is done with this slot before it is refilled.
    NVVM::SyncWarpOp::create(b, fullMask);
    SmallVector<Value> yielded = s.flatten();
    yielded.push_back(nextPage);
    scf::YieldOp::create(b, yielded);
  }
  MmaSoftmaxState s = MmaSoftmaxState::unflatten(loop.getResults().drop_back(),
                                                 headBlocks, dBlocks);
  for (int64_t r = 0; r < headBlocks; ++r)
    for (int64_t offset = 1; offset < 4; offset *= 2)
      s.sum[r] = e.fadd(s.sum[r], e.shuffleXor(s.sum[r], offset));

  // Publish each warp's state over the (now idle) rings.
  gpu::BarrierOp::create(b);
  for (int64_t md = 0; md < dBlocks; ++md)
    for (int64_t r = 0; r < headBlocks; ++r) {
      Value dim = e.add(e.index(md * 16), quadRow);
      Value head = e.add(e.index(8 * r), e.mul(quadCol, e.index(2)));
      const SmallVector<Value> &regs = s.acc[md][r];
      for (int64_t k = 0; k < 4; ++k)
        memref::StoreOp::create(b, regs[k], accSmem,
                                ValueRange{warp, e.add(head, e.index(k % 2)),
                                           e.add(dim, e.index(8 * (k / 2)))});
    }
  auto firstInQuad = scf::IfOp::create(b, e.ult(quadCol, e.index(1)), false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(firstInQuad.thenBlock());
    for (int64_t r = 0; r < headBlocks; ++r) {
      Value head = e.add(quadRow, e.index(8 * r));
      memref::StoreOp::create(b, s.max[r], statSmem,
                              ValueRange{e.index(0), warp, head});
      memref::StoreOp::create(b, s.sum[r], statSmem,
                              ValueRange{e.index(1), warp, head});
    }
  }
  gpu::BarrierOp::create(b);

  DecodeEpilogue ep{accSmem,   statSmem,  tid, batch,      split,
                    firstHead, numSplits, out, partialOut, partialLse};
  emitMergeWarpsAndStore(e, c, ep);
  gpu::ReturnOp::create(b);
  return func;
}
