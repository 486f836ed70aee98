//===- DecodeKernels.cpp - build decode and merge kernels -----------------===//
//
// The CUDA-core decode kernel (the tensor-core one is in
// DecodeMmaKernel.cpp): grid (num_kv_heads * ctas_per_kv_head, batch,
// num_splits), one CTA per (KV head or part of its query group, sequence,
// chunk). Lanes are grouped so that `threadsPerToken` lanes share one token's
// row, each loading 16-byte vectors; every lane group keeps its own online
// softmax state (max, sum, accumulator) in f32 registers over the tokens it
// visits, and the states are merged by log-sum-exp at the end, first across
// the lane groups of a warp with shuffles, then across warps through shared
// memory. Logits are kept in base 2 (q is prescaled by scale * log2(e)) so
// that every exponential is one ex2.approx.
//
// The merge kernel: grid (num_heads, batch), combines the per-chunk partial
// outputs by their log-sum-exps, many splits at a time.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"
#include "KernelEmitter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::paged_attn;

//===----------------------------------------------------------------------===//
// Argument types
//===----------------------------------------------------------------------===//

/// A memref with the given shape, dynamic offset and outer strides, and a
/// unit innermost stride when `unitInnermost`.
static MemRefType getStridedMemRefType(ArrayRef<int64_t> shape, Type elemType,
                                       bool unitInnermost) {
  SmallVector<int64_t> strides(shape.size(), ShapedType::kDynamic);
  if (unitInnermost)
    strides.back() = 1;
  auto layout = StridedLayoutAttr::get(elemType.getContext(),
                                       ShapedType::kDynamic, strides);
  return MemRefType::get(shape, elemType, layout);
}

namespace {
/// The kernel argument types, by role.
struct KernelTypes {
  MemRefType q, cache, blockTable, seqLens, partialOut, partialLse;

  KernelTypes(MLIRContext *ctx, const DecodeKernelConfig &c) {
    int64_t dyn = ShapedType::kDynamic;
    Type f32 = Float32Type::get(ctx);
    Type i32 = IntegerType::get(ctx, 32);
    q = getStridedMemRefType({dyn, c.numHeads, c.headDim}, c.elementType, true);
    SmallVector<int64_t> cacheShape =
        c.layout == KVLayout::nhd
            ? SmallVector<int64_t>{dyn, c.pageSize, c.numKVHeads, c.headDim}
            : SmallVector<int64_t>{dyn, c.numKVHeads, c.pageSize, c.headDim};
    cache = getStridedMemRefType(cacheShape, c.elementType, true);
    blockTable = getStridedMemRefType({dyn, dyn}, i32, false);
    seqLens = getStridedMemRefType({dyn}, i32, false);
    partialOut =
        getStridedMemRefType({dyn, c.numHeads, dyn, c.headDim}, f32, true);
    partialLse = getStridedMemRefType({dyn, c.numHeads, dyn}, f32, false);
  }
};
} // namespace

SmallVector<Type>
mlir::paged_attn::getDecodeKernelArgTypes(MLIRContext *ctx,
                                          const DecodeKernelConfig &config) {
  KernelTypes t(ctx, config);
  return {t.q,
          t.cache,
          t.cache,
          t.blockTable,
          t.seqLens,
          t.q,
          t.partialOut,
          t.partialLse,
          Float32Type::get(ctx),
          IntegerType::get(ctx, 32)};
}

SmallVector<Type>
mlir::paged_attn::getMergeKernelArgTypes(MLIRContext *ctx,
                                         const DecodeKernelConfig &config) {
  KernelTypes t(ctx, config);
  return {t.partialOut, t.partialLse, t.q, IntegerType::get(ctx, 32)};
}

SmallVector<Type>
mlir::paged_attn::getCheckKernelArgTypes(MLIRContext *ctx,
                                         const DecodeKernelConfig &config) {
  KernelTypes t(ctx, config);
  Type i64 = IntegerType::get(ctx, 64);
  return {t.blockTable, t.seqLens, IntegerType::get(ctx, 32),
          getStridedMemRefType({1}, i64, false)};
}

ArrayRef<StringRef> mlir::paged_attn::getCheckKernelArgNames() {
  static const StringRef names[] = {"block_table", "seq_lens", "num_pages",
                                    "first_bad"};
  return names;
}

ArrayRef<StringRef> mlir::paged_attn::getDecodeKernelArgNames() {
  static const StringRef names[] = {
      "q",   "k_cache",     "v_cache",     "block_table", "seq_lens",
      "out", "partial_out", "partial_lse", "scale",       "num_splits"};
  return names;
}

ArrayRef<StringRef> mlir::paged_attn::getMergeKernelArgNames() {
  static const StringRef names[] = {"partial_out", "partial_lse", "out",
                                    "num_splits"};
  return names;
}

//===----------------------------------------------------------------------===//
// Emission helpers
//===----------------------------------------------------------------------===//

namespace {
/// Online-softmax state of one lane group for the query heads of a CTA:
/// running max (base-2 logits), running sum and the accumulator slices.
struct SoftmaxState {
  SmallVector<Value> max, sum;
  SmallVector<SmallVector<Value>> acc; // [head][vector]

  SmallVector<Value> flatten() const {
    SmallVector<Value> values(max);
    values.append(sum);
    for (const auto &a : acc)
      values.append(a);
    return values;
  }
  static SoftmaxState unflatten(ValueRange values, int64_t heads,
                                int64_t vectors) {
    SoftmaxState s;
    s.max.assign(values.begin(), values.begin() + heads);
    s.sum.assign(values.begin() + heads, values.begin() + 2 * heads);
    for (int64_t h = 0; h < heads; ++h) {
      auto begin = values.begin() + 2 * heads + h * vectors;
      s.acc.emplace_back(begin, begin + vectors);
    }
    return s;
  }
};
} // namespace

/// Merges state `o` into `s` (log-sum-exp combination), in place.
static void mergeSoftmaxState(KernelEmitter &e, SoftmaxState &s,
                              const SoftmaxState &o, int64_t vecElems) {
  for (size_t h = 0; h < s.max.size(); ++h) {
    Value newMax = e.fmax(s.max[h], o.max[h]);
    Value ref = e.safeMax(newMax);
    Value a = e.exp2(e.fsub(s.max[h], ref));
    Value c = e.exp2(e.fsub(o.max[h], ref));
    s.sum[h] = e.fma(s.sum[h], a, e.fmul(o.sum[h], c));
    Value aVec = e.splat(a, vecElems), cVec = e.splat(c, vecElems);
    for (size_t v = 0; v < s.acc[h].size(); ++v)
      s.acc[h][v] = e.fma(s.acc[h][v], aVec, e.fmul(o.acc[h][v], cVec));
    s.max[h] = newMax;
  }
}

gpu::GPUFuncOp mlir::paged_attn::createKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, StringRef name,
    ArrayRef<Type> argTypes, ArrayRef<Type> workgroupTypes, int64_t blockSize) {
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToEnd(module.getBody());
  auto funcType = builder.getFunctionType(argTypes, {});
  auto func = gpu::GPUFuncOp::create(builder, module.getLoc(), name, funcType,
                                     workgroupTypes);
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(),
                builder.getUnitAttr());
  func.setKnownBlockSizeAttr(
      builder.getDenseI32ArrayAttr({static_cast<int32_t>(blockSize), 1, 1}));
  for (unsigned i = 0; i < workgroupTypes.size(); ++i)
    func.setWorkgroupAttributionAttr(i, "llvm.align",
                                     builder.getI64IntegerAttr(16));
  return func;
}

//===----------------------------------------------------------------------===//
// Start and end of a decode kernel
//===----------------------------------------------------------------------===//

DecodeCTA mlir::paged_attn::emitDecodeCTA(KernelEmitter &e,
                                          const DecodeKernelConfig &c,
                                          gpu::GPUFuncOp func) {
  ImplicitLocOpBuilder &b = e.b;
  // The merge kernel may be scheduled now; it waits for this grid's
  // results itself.
  if (c.programmaticLaunch)
    NVVM::GriddepcontrolOp::create(
        b, NVVM::GridDepActionKindAttr::get(
               b.getContext(), NVVM::GridDepActionKind::launch_dependents));
  DecodeCTA cta;
  cta.tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value ctaX = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  cta.batch = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  cta.split = gpu::BlockIdOp::create(b, gpu::Dimension::z);
  cta.kvHead = e.div(ctaX, e.index(c.ctasPerKVHead()));
  cta.firstHead = e.add(
      e.mul(cta.kvHead, e.index(c.groupSize())),
      e.mul(e.rem(ctaX, e.index(c.ctasPerKVHead())), e.index(c.headsPerCTA())));
  cta.warp = e.div(cta.tid, e.index(32));
  cta.lane = e.rem(cta.tid, e.index(32));

  Value seqLens = func.getArgument(4), numSplitsArg = func.getArgument(9);
  cta.seqLen =
      e.toIndex(memref::LoadOp::create(b, seqLens, ValueRange{cta.batch}));
  cta.numSplits = e.toIndex(numSplitsArg);
  Value step = e.index(c.tokensPerIteration());
  Value chunk =
      e.mul(e.ceilDiv(e.ceilDiv(cta.seqLen, cta.numSplits), step), step);
  cta.chunkBegin = e.min(e.mul(cta.split, chunk), cta.seqLen);
  cta.chunkEnd = e.min(e.add(cta.chunkBegin, chunk), cta.seqLen);
  return cta;
}

void mlir::paged_attn::emitMergeWarpsAndStore(KernelEmitter &e,
                                              const DecodeKernelConfig &c,
                                              const DecodeEpilogue &ep) {
  ImplicitLocOpBuilder &b = e.b;
  Type f32 = e.f32;
  const int64_t heads = c.headsPerCTA();
  const int64_t vecElems = c.vectorElems();
  Value accSmem = ep.accSmem, statSmem = ep.statSmem, tid = ep.tid,
        batch = ep.batch, split = ep.split, firstHead = ep.firstHead,
        numSplits = ep.numSplits, out = ep.out, partialOut = ep.partialOut,
        partialLse = ep.partialLse;
  Value isSplit = arith::CmpIOp::create(b, arith::CmpIPredicate::ugt, numSplits,
                                        e.index(1));
  auto outLoop = scf::ForOp::create(b, tid, e.index(heads * c.vectorsPerRow()),
                                    e.index(c.blockSize()));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(outLoop.getBody());
    Value idx = outLoop.getInductionVar();
    Value h = e.div(idx, e.index(c.vectorsPerRow()));
    Value col = e.rem(idx, e.index(c.vectorsPerRow()));
    Value column = e.mul(col, e.index(vecElems));
    SmallVector<Value> maxes;
    Value max = e.negInf();
    for (int64_t w = 0; w < c.numWarps; ++w) {
      maxes.push_back(memref::LoadOp::create(
          b, statSmem, ValueRange{e.index(0), e.index(w), h}));
      max = e.fmax(max, maxes.back());
    }
    Value ref = e.safeMax(max);
    Value sum = e.f32Const(0.0);
    Value acc = e.zeroVector(vecElems);
    for (int64_t w = 0; w < c.numWarps; ++w) {
      Value weight = e.exp2(e.fsub(maxes[w], ref));
      Value warpSum = memref::LoadOp::create(
          b, statSmem, ValueRange{e.index(1), e.index(w), h});
      sum = e.fma(weight, warpSum, sum);
      Value warpAcc = vector::LoadOp::create(
          b, VectorType::get({vecElems}, f32), accSmem,
          ValueRange{e.index(w), h, column}, false, llvm::MaybeAlign(16));
      acc = e.fma(e.splat(weight, vecElems), warpAcc, acc);
    }
    Value hasTokens = e.fgt(sum, e.f32Const(0.0));
    Value inv =
        e.select(hasTokens, arith::DivFOp::create(b, e.f32Const(1.0), sum),
                 e.f32Const(0.0));
    Value result = e.fmul(acc, e.splat(inv, vecElems));
    Value head = e.add(firstHead, h);

    auto ifSplit = scf::IfOp::create(b, isSplit, /*withElse=*/true);
    b.setInsertionPointToStart(ifSplit.thenBlock());
    e.storeVector(result, partialOut, {batch, head, split, column});
    auto firstColumn = scf::IfOp::create(b, e.ult(col, e.index(1)), false);
    {
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(firstColumn.thenBlock());
      Value lse = e.select(hasTokens, e.fadd(ref, e.log2(sum)), e.negInf());
      memref::StoreOp::create(b, lse, partialLse,
                              ValueRange{batch, head, split});
    }
    b.setInsertionPointToStart(ifSplit.elseBlock());
    e.storeVector(e.truncateTo(result, c.elementType), out,
                  {batch, head, column});
  }
}

//===----------------------------------------------------------------------===//
// CUDA-core decode kernel
//===----------------------------------------------------------------------===//

gpu::GPUFuncOp mlir::paged_attn::getOrBuildDecodeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  if (gpu::GPUFuncOp existing = lookupKernel(module, c.decodeKernelName()))
    return existing;
  if (c.usesTensorCores())
    return buildMmaDecodeKernel(builder, module, c);

  MLIRContext *ctx = builder.getContext();
  const int64_t heads = c.headsPerCTA();
  const int64_t vecElems = c.vectorElems();
  const int64_t vecsPerThread = c.vectorsPerThread();
  const int64_t threadsPerToken = c.threadsPerToken();
  const int64_t tokensPerWarp = c.tokensPerWarp();
  const int64_t unroll = c.tokensPerGroupIteration();
  const int64_t numGroups = c.numWarps * tokensPerWarp;
  const bool nhd = c.layout == KVLayout::nhd;

  Type f32 = builder.getF32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto accSmemType = MemRefType::get({c.numWarps, heads, c.headDim}, f32,
                                     MemRefLayoutAttrInterface(), workgroup);
  // [0][warp][head]: max, [1][warp][head]: sum.
  auto statSmemType = MemRefType::get({2, c.numWarps, heads}, f32,
                                      MemRefLayoutAttrInterface(), workgroup);
  gpu::GPUFuncOp func = createKernel(
      builder, module, c.decodeKernelName(), getDecodeKernelArgTypes(ctx, c),
      {accSmemType, statSmemType}, c.blockSize());
  if (c.minCTAsPerSM > 0)
    func->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                  builder.getI32IntegerAttr(c.minCTAsPerSM));

  ImplicitLocOpBuilder b(func.getLoc(), builder);
  b.setInsertionPointToStart(&func.getBody().front());
  KernelEmitter e(b);
  Value q = func.getArgument(0), kCache = func.getArgument(1),
        vCache = func.getArgument(2), blockTable = func.getArgument(3),
        out = func.getArgument(5), partialOut = func.getArgument(6),
        partialLse = func.getArgument(7), scale = func.getArgument(8);
  Value accSmem = func.getWorkgroupAttributions()[0];
  Value statSmem = func.getWorkgroupAttributions()[1];

  // Where this CTA and thread are, and this CTA's chunk of the sequence.
  DecodeCTA cta = emitDecodeCTA(e, c, func);
  Value tid = cta.tid, batch = cta.batch, split = cta.split,
        kvHead = cta.kvHead, firstHead = cta.firstHead, warp = cta.warp,
        lane = cta.lane, numSplits = cta.numSplits, chunkBegin = cta.chunkBegin,
        chunkEnd = cta.chunkEnd;
  Value laneInGroup = e.rem(lane, e.index(threadsPerToken));
  Value group = e.add(e.mul(warp, e.index(tokensPerWarp)),
                      e.div(lane, e.index(threadsPerToken)));
  // Column (in elements) of each vector this lane holds: consecutive lanes
  // read consecutive 16-byte pieces of a row. Where the lanes do not divide
  // the row, the last vector of some lanes is past its end (`lastPresent`
  // false): it reads the row's last vector instead, its q is zero so the
  // logits are right, and its accumulator is never stored.
  SmallVector<Value> columns;
  Value lastPresent;
  for (int64_t v = 0; v < vecsPerThread; ++v) {
    Value vector = e.add(laneInGroup, e.index(v * threadsPerToken));
    if (c.hasEmptyVectors() && v + 1 == vecsPerThread) {
      Value lastVector = e.index(c.vectorsPerRow() - 1);
      lastPresent = e.ult(vector, e.index(c.vectorsPerRow()));
      vector = e.min(vector, lastVector);
    }
    columns.push_back(e.mul(vector, e.index(vecElems)));
  }

  Value step = e.index(c.tokensPerIteration());

  // q for this CTA's heads, prescaled so that logits are in base 2.
  Value qScale = e.fmul(scale, e.f32Const(M_LOG2E));
  Value qScaleVec = e.splat(qScale, vecElems);
  SmallVector<SmallVector<Value>> qRegs(heads);
  for (int64_t h = 0; h < heads; ++h) {
    Value head = e.add(firstHead, e.index(h));
    for (int64_t v = 0; v < vecsPerThread; ++v)
      qRegs[h].push_back(e.fmul(
          e.loadF32Vector(q, {batch, head, columns[v]}, vecElems), qScaleVec));
    if (lastPresent)
      qRegs[h].back() =
          e.select(lastPresent, qRegs[h].back(), e.zeroVector(vecElems));
  }

  SoftmaxState init;
  for (int64_t h = 0; h < heads; ++h) {
    init.max.push_back(e.negInf());
    init.sum.push_back(e.f32Const(0.0));
    init.acc.emplace_back(vecsPerThread, e.zeroVector(vecElems));
  }

  // The physical page of token `base + group + u * numGroups`, clamped to
  // `lastToken`: tokens past a chunk's end read its last token (and are
  // masked), so every load stays inside the sequence.
  auto loadPage = [&](Value base, int64_t u, Value lastToken) -> Value {
    Value token = e.add(base, e.add(group, e.index(u * numGroups)));
    Value logicalPage = e.div(e.min(token, lastToken), e.index(c.pageSize));
    return e.toIndex(
        memref::LoadOp::create(b, blockTable, ValueRange{batch, logicalPage}));
  };

  // With prefetching, the pages of the first iteration are loaded before
  // the loop and each iteration loads the next one's, so the page-table
  // load is off the K/V loads' critical path.
  SmallVector<Value> loopInit = init.flatten();
  const size_t numStateValues = loopInit.size();
  if (c.prefetchesPageTable()) {
    auto nonEmpty = arith::CmpIOp::create(b, arith::CmpIPredicate::ult,
                                          chunkBegin, chunkEnd);
    SmallVector<Type> pageTypes(unroll, b.getIndexType());
    auto first = scf::IfOp::create(b, pageTypes, nonEmpty, /*withElse=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(first.thenBlock());
      Value lastToken = e.add(chunkEnd, e.index(-1));
      SmallVector<Value> pages;
      for (int64_t u = 0; u < unroll; ++u)
        pages.push_back(loadPage(chunkBegin, u, lastToken));
      scf::YieldOp::create(b, pages);
      b.setInsertionPointToStart(first.elseBlock());
      scf::YieldOp::create(b, SmallVector<Value>(unroll, e.index(0)));
    }
    loopInit.append(first.getResults().begin(), first.getResults().end());
  }

  // Main loop: each lane group takes `unroll` tokens per iteration, loads
  // all of their K and V slices first, then updates its softmax state.
  auto loop = scf::ForOp::create(b, chunkBegin, chunkEnd, step, loopInit);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    ValueRange iterArgs = loop.getRegionIterArgs();
    SoftmaxState s = SoftmaxState::unflatten(
        iterArgs.take_front(numStateValues), heads, vecsPerThread);
    Value base = loop.getInductionVar();
    Value lastToken = e.add(chunkEnd, e.index(-1));

    SmallVector<Value> pages, nextPages;
    if (c.prefetchesPageTable()) {
      pages.assign(iterArgs.begin() + numStateValues, iterArgs.end());
      Value nextBase = e.add(base, step);
      for (int64_t u = 0; u < unroll; ++u)
        nextPages.push_back(loadPage(nextBase, u, lastToken));
    } else {
      for (int64_t u = 0; u < unroll; ++u)
        pages.push_back(loadPage(base, u, lastToken));
    }

    SmallVector<Value> valid;
    SmallVector<SmallVector<Value>> kRegs(unroll), vRegs(unroll);
    for (int64_t u = 0; u < unroll; ++u) {
      Value token = e.add(base, e.add(group, e.index(u * numGroups)));
      valid.push_back(e.ult(token, chunkEnd));
      Value slot = e.rem(e.min(token, lastToken), e.index(c.pageSize));
      for (int64_t v = 0; v < vecsPerThread; ++v) {
        SmallVector<Value> idx =
            nhd ? SmallVector<Value>{pages[u], slot, kvHead, columns[v]}
                : SmallVector<Value>{pages[u], kvHead, slot, columns[v]};
        kRegs[u].push_back(vector::LoadOp::create(
            b, VectorType::get({vecElems}, c.elementType), kCache, idx,
            /*nontemporal=*/false, llvm::MaybeAlign(16)));
        vRegs[u].push_back(vector::LoadOp::create(
            b, VectorType::get({vecElems}, c.elementType), vCache, idx,
            /*nontemporal=*/false, llvm::MaybeAlign(16)));
      }
    }

    // Logits: partial dot products, then a butterfly across the lanes that
    // share a row.
    SmallVector<SmallVector<Value>> logits(unroll); // [token][head]
    for (int64_t u = 0; u < unroll; ++u) {
      SmallVector<Value> kF32;
      for (Value k : kRegs[u])
        kF32.push_back(e.extendToF32(k));
      for (int64_t h = 0; h < heads; ++h) {
        Value dot = e.fmul(qRegs[h][0], kF32[0]);
        for (int64_t v = 1; v < vecsPerThread; ++v)
          dot = e.fma(qRegs[h][v], kF32[v], dot);
        Value logit = e.reduceAdd(dot);
        for (int64_t offset = threadsPerToken / 2; offset > 0; offset /= 2)
          logit = e.fadd(logit, e.shuffleXor(logit, offset));
        logits[u].push_back(e.select(valid[u], logit, e.negInf()));
      }
    }

    // Online softmax update, once per `unroll` tokens.
    SmallVector<SmallVector<Value>> vF32(unroll);
    for (int64_t u = 0; u < unroll; ++u)
      for (Value v : vRegs[u])
        vF32[u].push_back(e.extendToF32(v));
    for (int64_t h = 0; h < heads; ++h) {
      Value newMax = s.max[h];
      for (int64_t u = 0; u < unroll; ++u)
        newMax = e.fmax(newMax, logits[u][h]);
      Value ref = e.safeMax(newMax);
      Value correction = e.exp2(e.fsub(s.max[h], ref));
      Value sum = e.fmul(s.sum[h], correction);
      Value corrVec = e.splat(correction, vecElems);
      SmallVector<Value> acc;
      for (Value a : s.acc[h])
        acc.push_back(e.fmul(a, corrVec));
      for (int64_t u = 0; u < unroll; ++u) {
        Value p = e.exp2(e.fsub(logits[u][h], ref));
        sum = e.fadd(sum, p);
        Value pVec = e.splat(p, vecElems);
        for (int64_t v = 0; v < vecsPerThread; ++v)
          acc[v] = e.fma(pVec, vF32[u][v], acc[v]);
      }
      s.max[h] = newMax;
      s.sum[h] = sum;
      s.acc[h] = acc;
    }
    SmallVector<Value> yielded = s.flatten();
    yielded.append(nextPages);
    scf::YieldOp::create(b, yielded);
  }
  SoftmaxState s = SoftmaxState::unflatten(
      loop.getResults().take_front(numStateValues), heads, vecsPerThread);

  // Merge the lane groups of each warp.
  for (int64_t offset = threadsPerToken; offset < 32; offset *= 2) {
    SoftmaxState other;
    for (int64_t h = 0; h < heads; ++h) {
      other.max.push_back(e.shuffleXor(s.max[h], offset));
      other.sum.push_back(e.shuffleXor(s.sum[h], offset));
      other.acc.emplace_back();
      for (Value a : s.acc[h])
        other.acc.back().push_back(e.shuffleXorVector(a, offset));
    }
    mergeSoftmaxState(e, s, other, vecElems);
  }

  // Lane group 0 of each warp publishes the warp's state.
  Value isFirstGroup = e.ult(lane, e.index(threadsPerToken));
  auto publish = scf::IfOp::create(b, isFirstGroup, /*withElse=*/false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(publish.thenBlock());
    int64_t storedVectors = lastPresent ? vecsPerThread - 1 : vecsPerThread;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t v = 0; v < storedVectors; ++v)
        e.storeVector(s.acc[h][v], accSmem, {warp, e.index(h), columns[v]});
    if (lastPresent) {
      auto ifPresent = scf::IfOp::create(b, lastPresent, /*withElse=*/false);
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(ifPresent.thenBlock());
      for (int64_t h = 0; h < heads; ++h)
        e.storeVector(s.acc[h].back(), accSmem,
                      {warp, e.index(h), columns.back()});
    }
    auto first = scf::IfOp::create(b, e.ult(lane, e.index(1)), false);
    b.setInsertionPointToStart(first.thenBlock());
    for (int64_t h = 0; h < heads; ++h) {
      memref::StoreOp::create(b, s.max[h], statSmem,
                              ValueRange{e.index(0), warp, e.index(h)});
      memref::StoreOp::create(b, s.sum[h], statSmem,
                              ValueRange{e.index(1), warp, e.index(h)});
    }
  }
  gpu::BarrierOp::create(b);

  DecodeEpilogue ep{accSmem,   statSmem,  tid, batch,      split,
                    firstHead, numSplits, out, partialOut, partialLse};
  emitMergeWarpsAndStore(e, c, ep);
  gpu::ReturnOp::create(b);
  return func;
}

//===----------------------------------------------------------------------===//
// Merge kernel
//===----------------------------------------------------------------------===//

gpu::GPUFuncOp mlir::paged_attn::getOrBuildMergeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  if (gpu::GPUFuncOp existing = lookupKernel(module, c.mergeKernelName()))
    return existing;

  // One CTA per (head, sequence). Its threads split the work two ways: a
  // thread owns one 16-byte column of the output row (`colThreads` of them)
  // and every `splitLanes`-th split, so the partials of many splits are
  // loaded at once; the split lanes are then summed through shared memory
  // (by one thread per column: at most 32 lanes, which rows of one to three
  // vectors would exceed, keep that sum within registers on sm_80).
  MLIRContext *ctx = builder.getContext();
  const int64_t block = c.mergeBlockSize();
  const int64_t vecElems = c.vectorElems();
  const int64_t vecs = c.vectorsPerRow();
  const int64_t colThreads = std::min(vecs, block);
  const int64_t splitLanes = std::min<int64_t>(block / colThreads, 32);
  // The partial outputs are f32: loaded and kept in 16-byte pieces.
  const int64_t f32VecElems = 4;
  const int64_t pieces = vecElems / f32VecElems;
  Type f32 = builder.getF32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto smemType = [&](ArrayRef<int64_t> shape) {
    return MemRefType::get(shape, f32, MemRefLayoutAttrInterface(), workgroup);
  };
  gpu::GPUFuncOp func = createKernel(
      builder, module, c.mergeKernelName(), getMergeKernelArgTypes(ctx, c),
      {smemType({block / 32}), smemType({block}), smemType({block, vecElems})},
      block);
  ImplicitLocOpBuilder b(func.getLoc(), builder);
  b.setInsertionPointToStart(&func.getBody().front());
  KernelEmitter e(b);
  Value partialOut = func.getArgument(0), partialLse = func.getArgument(1),
        out = func.getArgument(2);
  Value numSplits = e.toIndex(func.getArgument(3));
  // Launched early (programmatic dependent launch): wait for the decode
  // grid's partial results.
  if (c.programmaticLaunch)
    NVVM::GriddepcontrolOp::create(b, NVVM::GridDepActionKindAttr::get(
                                          ctx, NVVM::GridDepActionKind::wait));
  Value maxSmem = func.getWorkgroupAttributions()[0];
  Value sumSmem = func.getWorkgroupAttributions()[1];
  Value accSmem = func.getWorkgroupAttributions()[2];

  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value batch = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value warp = e.div(tid, e.index(32));
  Value lane = e.rem(tid, e.index(32));

  // The largest log-sum-exp: every thread takes every block-th split, then
  // warps and the CTA reduce.
  auto maxLoop = scf::ForOp::create(b, tid, numSplits, e.index(block),
                                    ValueRange{e.negInf()});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(maxLoop.getBody());
    Value lse = memref::LoadOp::create(
        b, partialLse, ValueRange{batch, head, maxLoop.getInductionVar()});
    scf::YieldOp::create(b, e.fmax(maxLoop.getRegionIterArgs()[0], lse));
  }
  Value warpMax = maxLoop.getResult(0);
  for (int64_t offset = 16; offset > 0; offset /= 2)
    warpMax = e.fmax(warpMax, e.shuffleXor(warpMax, offset));
  auto firstLane = scf::IfOp::create(b, e.ult(lane, e.index(1)), false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(firstLane.thenBlock());
    memref::StoreOp::create(b, warpMax, maxSmem, ValueRange{warp});
  }
  gpu::BarrierOp::create(b);
  Value max = e.negInf();
  for (int64_t w = 0; w < block / 32; ++w)
    max =
        e.fmax(max, memref::LoadOp::create(b, maxSmem, ValueRange{e.index(w)}));
  Value ref = e.safeMax(max);

  Value colInGroup = e.rem(tid, e.index(colThreads));
  Value splitLane = e.div(tid, e.index(colThreads));
  Value activeLane = e.ult(splitLane, e.index(splitLanes));
  // A uniform loop over groups of columns: every thread reaches the
  // barriers in it.
  auto colLoop =
      scf::ForOp::create(b, e.index(0), e.index(vecs), e.index(colThreads));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(colLoop.getBody());
    Value col = e.add(colLoop.getInductionVar(), colInGroup);
    Value valid =
        arith::AndIOp::create(b, activeLane, e.ult(col, e.index(vecs)));
    Value column = e.mul(col, e.index(vecElems));
    SmallVector<Value> init = {e.f32Const(0.0)};
    for (int64_t p = 0; p < pieces; ++p)
      init.push_back(e.zeroVector(f32VecElems));
    Value first = e.select(valid, splitLane, numSplits);
    auto splitLoop =
        scf::ForOp::create(b, first, numSplits, e.index(splitLanes), init);
    {
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(splitLoop.getBody());
      Value sp = splitLoop.getInductionVar();
      ValueRange carried = splitLoop.getRegionIterArgs();
      Value lse =
          memref::LoadOp::create(b, partialLse, ValueRange{batch, head, sp});
      Value weight = e.exp2(e.fsub(lse, ref));
      SmallVector<Value> next = {e.fadd(carried[0], weight)};
      for (int64_t p = 0; p < pieces; ++p) {
        Value piece = vector::LoadOp::create(
            b, VectorType::get({f32VecElems}, f32), partialOut,
            ValueRange{batch, head, sp,
                       e.add(column, e.index(p * f32VecElems))},
            false, llvm::MaybeAlign(16));
        next.push_back(
            e.fma(e.splat(weight, f32VecElems), piece, carried[1 + p]));
      }
      scf::YieldOp::create(b, next);
    }
    memref::StoreOp::create(b, splitLoop.getResult(0), sumSmem,
                            ValueRange{tid});
    for (int64_t p = 0; p < pieces; ++p)
      e.storeVector(splitLoop.getResult(1 + p), accSmem,
                    {tid, e.index(p * f32VecElems)});
    gpu::BarrierOp::create(b);

    // Split lane 0 of each column adds up the lanes and writes.
    auto writer = scf::IfOp::create(
        b, arith::AndIOp::create(b, valid, e.ult(splitLane, e.index(1))),
        false);
    {
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(writer.thenBlock());
      Value total = e.f32Const(0.0);
      SmallVector<Value> acc(pieces, e.zeroVector(f32VecElems));
      for (int64_t l = 0; l < splitLanes; ++l) {
        Value slot = e.add(colInGroup, e.index(l * colThreads));
        total =
            e.fadd(total, memref::LoadOp::create(b, sumSmem, ValueRange{slot}));
        for (int64_t p = 0; p < pieces; ++p)
          acc[p] = e.fadd(acc[p],
                          vector::LoadOp::create(
                              b, VectorType::get({f32VecElems}, f32), accSmem,
                              ValueRange{slot, e.index(p * f32VecElems)}, false,
                              llvm::MaybeAlign(16)));
      }
      Value inv = e.select(e.fgt(total, e.f32Const(0.0)),
                           arith::DivFOp::create(b, e.f32Const(1.0), total),
                           e.f32Const(0.0));
      Value invVec = e.splat(inv, f32VecElems);
      for (Value &a : acc)
        a = e.fmul(a, invVec);
      // 16-bit outputs take 8 elements per 16-byte store: join the halves.
      Value result = acc[0];
      if (pieces == 2)
        result = vector::ShuffleOp::create(
            b, acc[0], acc[1], ArrayRef<int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
      e.storeVector(e.truncateTo(result, c.elementType), out,
                    {batch, head, column});
    }
    // The next group of columns reuses the buffers.
    gpu::BarrierOp::create(b);
  }
  gpu::ReturnOp::create(b);
  return func;
}

//===----------------------------------------------------------------------===//
// Page-table check kernel
//===----------------------------------------------------------------------===//

gpu::GPUFuncOp mlir::paged_attn::getOrBuildCheckKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  if (gpu::GPUFuncOp existing = lookupKernel(module, c.checkKernelName()))
    return existing;
  MLIRContext *ctx = builder.getContext();
  gpu::GPUFuncOp func =
      createKernel(builder, module, c.checkKernelName(),
                   getCheckKernelArgTypes(ctx, c), {}, c.checkBlockSize());
  ImplicitLocOpBuilder b(func.getLoc(), builder);
  b.setInsertionPointToStart(&func.getBody().front());
  KernelEmitter e(b);
  Value blockTable = func.getArgument(0), seqLens = func.getArgument(1);
  Value numPages = func.getArgument(2), firstBad = func.getArgument(3);
  Type i64 = b.getI64Type();

  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value batch = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value maxPages = memref::DimOp::create(b, blockTable, 1);
  Value keysPerRow = e.add(maxPages, e.index(1));
  Value rowKey = e.mul(batch, keysPerRow);
  auto record = [&](Value key) {
    memref::AtomicRMWOp::create(b, arith::AtomicRMWKind::mins,
                                arith::IndexCastOp::create(b, i64, key),
                                firstBad, ValueRange{e.index(0)});
  };

  Value seqLen = arith::ExtSIOp::create(
      b, i64, memref::LoadOp::create(b, seqLens, ValueRange{batch}));
  Value capacity =
      arith::IndexCastOp::create(b, i64, e.mul(maxPages, e.index(c.pageSize)));
  Value zero64 = arith::ConstantIntOp::create(b, i64, 0);
  Value lenValid = arith::AndIOp::create(
      b, arith::CmpIOp::create(b, arith::CmpIPredicate::sge, seqLen, zero64),
      arith::CmpIOp::create(b, arith::CmpIPredicate::sle, seqLen, capacity));
  auto badLen = scf::IfOp::create(
      b,
      arith::AndIOp::create(
          b,
          arith::XOrIOp::create(
              b, lenValid, arith::ConstantIntOp::create(b, b.getI1Type(), 1)),
          e.ult(tid, e.index(1))),
      false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(badLen.thenBlock());
    record(rowKey);
  }
  // Pages the sequence uses; none when its length is bad.
  Value usedPages =
      e.ceilDiv(arith::IndexCastOp::create(
                    b, b.getIndexType(),
                    arith::SelectOp::create(b, lenValid, seqLen, zero64)),
                e.index(c.pageSize));
  auto scan =
      scf::ForOp::create(b, tid, usedPages, e.index(c.checkBlockSize()));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(scan.getBody());
    Value j = scan.getInductionVar();
    Value page = memref::LoadOp::create(b, blockTable, ValueRange{batch, j});
    Value bad = arith::OrIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::slt, page, e.i32(0)),
        arith::CmpIOp::create(b, arith::CmpIPredicate::sge, page, numPages));
    auto ifBad = scf::IfOp::create(b, bad, false);
    b.setInsertionPointToStart(ifBad.thenBlock());
    record(e.add(rowKey, e.add(j, e.index(1))));
  }
  gpu::ReturnOp::create(b);
  return func;
}
