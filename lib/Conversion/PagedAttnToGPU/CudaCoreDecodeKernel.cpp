//===- CudaCoreDecodeKernel.cpp - the CUDA-core decode kernel -------------===//
//
// Grid (num_kv_heads * ctas_per_kv_head, batch, num_splits), one CTA per (KV
// head or part of its query group, and of a multi-token decode's new
// queries, sequence, chunk): a CTA's rows of q are (query, head) pairs. Lanes
// are grouped so that `threadsPerToken` lanes share one token's row, each
// loading 16-byte vectors; every lane group keeps its own online softmax state
// (max, sum, accumulator) in f32 registers over the tokens it visits, and the
// states are merged by log-sum-exp at the end, first across the lane groups of
// a warp with shuffles, then across warps through shared memory. Logits are
// kept in base 2 (q is prescaled by scale * log2(e)) so that every
// exponential is one ex2.approx.
//
//===----------------------------------------------------------------------===//

#include "DecodeKernelBuilders.h"
#include "DecodeStages.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace mlir::paged_attn;

namespace {
/// Builds one CUDA-core decode kernel, stage by stage.
class CudaCoreDecodeBuilder {
public:
  CudaCoreDecodeBuilder(OpBuilder &builder, gpu::GPUModuleOp module,
                        const DecodeKernelConfig &c);
  gpu::GPUFuncOp build();

private:
  gpu::GPUFuncOp createFunc();
  void emitLaneMapping();
  void loadQ();
  SmallVector<Value> emitFirstPages();
  void emitLoopBody(scf::ForOp loop, size_t numStateValues);
  /// What the loop loads for its `unroll` tokens.
  struct Tokens {
    SmallVector<SmallVector<Value>> k, v; // [token][vector] slices
    SmallVector<Value> valid, positions;  // in the chunk; key positions
    SmallVector<Value> kScales, vScales;  // per-token fp8 scales only
  };
  /// K and V slices of `unroll` tokens from `base`, and whether each token
  /// is in the chunk.
  Tokens loadTokens(Value base, Value lastToken, ArrayRef<Value> pages);
  SmallVector<SmallVector<Value>> computeLogits(const Tokens &t);
  void updateSoftmax(OnlineSoftmax::State &s,
                     ArrayRef<SmallVector<Value>> logits, const Tokens &t);
  void mergeLaneGroups(OnlineSoftmax::State &s);
  void publishWarpState(const OnlineSoftmax::State &s);
  /// The page of token `base + group + u * numGroups`, clamped to
  /// `lastToken`: tokens past a chunk's end read its last token (and are
  /// masked), so every load stays inside the sequence.
  Value loadPage(Value base, int64_t u, Value lastToken);

  const DecodeKernelConfig &c;
  OpBuilder &builder;
  gpu::GPUModuleOp module;
  gpu::GPUFuncOp func;
  std::optional<ImplicitLocOpBuilder> bStorage;
  std::optional<KernelEmitter> eStorage;
  std::optional<ScoreModifiers> rules;
  // The CTA's rows of q: its heads, times its new queries for a
  // multi-token decode.
  const int64_t rows, vecElems, vecsPerThread, threadsPerToken, unroll,
      numGroups;
  DecodeCTA cta;
  KVScales scales;
  Value group, lastPresent;
  SmallVector<Value> columns;
  SmallVector<SmallVector<Value>> qRegs;
  // Each row's query and head, the end of its keys and its ALiBi slope
  // (null without ALiBi).
  SmallVector<CTARow> ctaRows;
  SmallVector<Value> keyEnds, slopes;

  ImplicitLocOpBuilder &b() { return *bStorage; }
  KernelEmitter &e() { return *eStorage; }
  /// The kernel argument the Spec's ABI names `name`.
  Value arg(StringRef name) {
    Value value = getDecodeKernelArg(func, c, name);
    assert(value && "not a parameter of this decode kernel");
    return value;
  }
};
} // namespace

CudaCoreDecodeBuilder::CudaCoreDecodeBuilder(OpBuilder &builder,
                                             gpu::GPUModuleOp module,
                                             const DecodeKernelConfig &c)
    : c(c), builder(builder), module(module), rows(c.rowsPerCTA()),
      vecElems(c.vectorElems()), vecsPerThread(c.vectorsPerThread()),
      threadsPerToken(c.threadsPerToken()),
      unroll(c.strategy.tokensPerLaneGroup),
      numGroups(c.numWarps() * c.tokensPerWarp()) {}

gpu::GPUFuncOp CudaCoreDecodeBuilder::createFunc() {
  MLIRContext *ctx = builder.getContext();
  Type f32 = builder.getF32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto accSmemType = MemRefType::get({c.numWarps(), rows, c.spec.headDim}, f32,
                                     MemRefLayoutAttrInterface(), workgroup);
  // [0][warp][row]: max, [1][warp][row]: sum.
  auto statSmemType = MemRefType::get({2, c.numWarps(), rows}, f32,
                                      MemRefLayoutAttrInterface(), workgroup);
  gpu::GPUFuncOp f = createKernel(
      builder, module, c.decodeKernelName(), getDecodeKernelArgTypes(ctx, c),
      {accSmemType, statSmemType}, c.blockSize());
  if (c.strategy.minCTAsPerSM > 0)
    f->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
               builder.getI32IntegerAttr(c.strategy.minCTAsPerSM));
  return f;
}

/// Which token each lane group takes and the column (in elements) of each
/// vector a lane holds: consecutive lanes read consecutive 16-byte pieces of
/// a row. Where the lanes do not divide the row, the last vector of some
/// lanes is past its end (`lastPresent` false): it reads the row's last
/// vector instead, its q is zero so the logits are right, and its
/// accumulator is never stored.
void CudaCoreDecodeBuilder::emitLaneMapping() {
  KernelEmitter &e = this->e();
  Value laneInGroup = e.rem(cta.lane, e.index(threadsPerToken));
  group = e.add(e.mul(cta.warp, e.index(c.tokensPerWarp())),
                e.div(cta.lane, e.index(threadsPerToken)));
  for (int64_t v = 0; v < vecsPerThread; ++v) {
    Value vector = e.add(laneInGroup, e.index(v * threadsPerToken));
    if (c.hasEmptyVectors() && v + 1 == vecsPerThread) {
      Value lastVector = e.index(c.vectorsPerRow() - 1);
      lastPresent = e.ult(vector, e.index(c.vectorsPerRow()));
      vector = e.min(vector, lastVector);
    }
    columns.push_back(e.mul(vector, e.index(vecElems)));
  }
}

/// q for this CTA's rows, prescaled so that logits are in base 2 (and by
/// an fp8 cache's K scale where it is the CTA's), and the rows' key ends
/// and slopes.
void CudaCoreDecodeBuilder::loadQ() {
  KernelEmitter &e = this->e();
  Value qScale = e.fmul(arg("scale"), e.f32Const(M_LOG2E));
  if (scales.k)
    qScale = e.fmul(qScale, scales.k);
  Value qScaleVec = e.splat(qScale, vecElems);
  qRegs.resize(rows);
  for (int64_t h = 0; h < rows; ++h) {
    CTARow row = getCTARow(e, c, cta.firstHead, cta.firstQuery, e.index(h));
    ctaRows.push_back(row);
    keyEnds.push_back(getRowKeyEnd(e, *rules, cta, row));
    slopes.push_back(rules->headSlope(b(), row.head));
    for (int64_t v = 0; v < vecsPerThread; ++v)
      qRegs[h].push_back(e.fmul(
          e.loadF32Vector(arg("q"), getResultIndex(cta.batch, row, {columns[v]}),
                          vecElems),
          qScaleVec));
    if (lastPresent)
      qRegs[h].back() =
          e.select(lastPresent, qRegs[h].back(), e.zeroVector(vecElems));
  }
}

Value CudaCoreDecodeBuilder::loadPage(Value base, int64_t u, Value lastToken) {
  KernelEmitter &e = this->e();
  Value token = e.add(base, e.add(group, e.index(u * numGroups)));
  return e.toIndex(loadPageEntry(e, arg("block_table"), cta.batch, e.min(token, lastToken),
                                 c.spec.pageSize));
}

/// With prefetching, the pages of the first iteration are loaded before the
/// loop and each iteration loads the next one's, so the page-table load is
/// off the K/V loads' critical path.
SmallVector<Value> CudaCoreDecodeBuilder::emitFirstPages() {
  KernelEmitter &e = this->e();
  ImplicitLocOpBuilder &b = this->b();
  auto nonEmpty = arith::CmpIOp::create(b, arith::CmpIPredicate::ult,
                                        cta.chunkBegin, cta.chunkEnd);
  SmallVector<Type> pageTypes(unroll, b.getIndexType());
  auto first = scf::IfOp::create(b, pageTypes, nonEmpty, /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(first.thenBlock());
  Value lastToken = e.add(cta.chunkEnd, e.index(-1));
  SmallVector<Value> pages;
  for (int64_t u = 0; u < unroll; ++u)
    pages.push_back(loadPage(cta.chunkBegin, u, lastToken));
  scf::YieldOp::create(b, pages);
  b.setInsertionPointToStart(first.elseBlock());
  scf::YieldOp::create(b, SmallVector<Value>(unroll, e.index(0)));
  return SmallVector<Value>(first.getResults());
}

CudaCoreDecodeBuilder::Tokens
CudaCoreDecodeBuilder::loadTokens(Value base, Value lastToken,
                                  ArrayRef<Value> pages) {
  KernelEmitter &e = this->e();
  ImplicitLocOpBuilder &b = this->b();
  // A lane's slice is vecElems columns (16 bytes of q); an fp8 cache's are
  // 8 bytes.
  Type cacheType =
      ::mlir::paged_attn::toMLIRType(b.getContext(), c.spec.cacheDType());
  auto vectorType = VectorType::get({vecElems}, cacheType);
  llvm::MaybeAlign alignment(vecElems *
                             ::paged_attn::dtypeBytes(c.spec.cacheDType()));
  Tokens t;
  t.k.resize(unroll);
  t.v.resize(unroll);
  for (int64_t u = 0; u < unroll; ++u) {
    Value token = e.add(base, e.add(group, e.index(u * numGroups)));
    t.positions.push_back(token);
    t.valid.push_back(e.ult(token, cta.chunkEnd));
    Value slot = e.rem(e.min(token, lastToken), e.index(c.spec.pageSize));
    for (int64_t v = 0; v < vecsPerThread; ++v) {
      std::array<Value, 4> idx = ::paged_attn::cacheIndex(
          c.spec.layout, pages[u], slot, cta.kvHead, columns[v]);
      t.k[u].push_back(vector::LoadOp::create(b, vectorType, arg("k_cache"), idx,
                                              /*nontemporal=*/false,
                                              alignment));
      t.v[u].push_back(vector::LoadOp::create(b, vectorType, arg("v_cache"), idx,
                                              /*nontemporal=*/false,
                                              alignment));
    }
    if (scales.perToken()) {
      auto [k, v] = scales.load(e, c, pages[u], slot, cta.kvHead);
      t.kScales.push_back(k);
      t.vScales.push_back(v);
    }
  }
  return t;
}

/// Logits [token][row]: partial dot products, a butterfly across the lanes
/// that share a row, the score rules, and -inf past the chunk's end (and
/// for keys a multi-token decode's row does not see).
SmallVector<SmallVector<Value>>
CudaCoreDecodeBuilder::computeLogits(const Tokens &t) {
  KernelEmitter &e = this->e();
  SmallVector<SmallVector<Value>> logits(unroll);
  for (int64_t u = 0; u < unroll; ++u) {
    SmallVector<Value> kF32;
    for (Value k : t.k[u])
      kF32.push_back(dequantizeToF32(e, c, k));
    for (int64_t h = 0; h < rows; ++h) {
      Value dot = e.fmul(qRegs[h][0], kF32[0]);
      for (int64_t v = 1; v < vecsPerThread; ++v)
        dot = e.fma(qRegs[h][v], kF32[v], dot);
      Value logit = e.reduceAdd(dot);
      for (int64_t offset = threadsPerToken / 2; offset > 0; offset /= 2)
        logit = e.fadd(logit, e.shuffleXor(logit, offset));
      if (!t.kScales.empty())
        logit = e.fmul(logit, t.kScales[u]);
      logit = applyScoreRules(e, *rules, logit, [&] {
        return ScorePosition{t.positions[u], keyEnds[h], slopes[h]};
      });
      Value seen = t.valid[u];
      if (Value sees = rowSeesKey(e, *rules, cta, ctaRows[h], keyEnds[h],
                                  t.positions[u]))
        seen = arith::AndIOp::create(b(), seen, sees);
      logits[u].push_back(e.select(seen, logit, e.negInf()));
    }
  }
  return logits;
}

/// The online-softmax update, once per `unroll` tokens. An fp8 cache's V
/// scale weighs each token's row in the accumulator (not in the sum).
void CudaCoreDecodeBuilder::updateSoftmax(OnlineSoftmax::State &s,
                                          ArrayRef<SmallVector<Value>> logits,
                                          const Tokens &t) {
  KernelEmitter &e = this->e();
  OnlineSoftmax softmax(e);
  SmallVector<SmallVector<Value>> vF32(unroll);
  for (int64_t u = 0; u < unroll; ++u)
    for (Value v : t.v[u])
      vF32[u].push_back(dequantizeToF32(e, c, v));
  auto vScale = [&](int64_t u) {
    return t.vScales.empty() ? scales.v : t.vScales[u];
  };
  for (int64_t h = 0; h < rows; ++h) {
    Value newMax = s.max[h];
    for (int64_t u = 0; u < unroll; ++u)
      newMax = e.fmax(newMax, logits[u][h]);
    Value ref = softmax.reference(newMax);
    Value correction = softmax.weight(s.max[h], ref);
    Value sum = e.fmul(s.sum[h], correction);
    Value corrVec = e.splat(correction, vecElems);
    MutableArrayRef<Value> acc(&s.acc[h * vecsPerThread], vecsPerThread);
    for (Value &a : acc)
      a = e.fmul(a, corrVec);
    for (int64_t u = 0; u < unroll; ++u) {
      Value p = softmax.weight(logits[u][h], ref);
      sum = e.fadd(sum, p);
      Value pVec = e.splat(vScale(u) ? e.fmul(p, vScale(u)) : p, vecElems);
      for (int64_t v = 0; v < vecsPerThread; ++v)
        acc[v] = e.fma(pVec, vF32[u][v], acc[v]);
    }
    s.max[h] = newMax;
    s.sum[h] = sum;
  }
}

/// Each lane group takes `unroll` tokens per iteration, loads all of their
/// K and V slices first, then updates its softmax state.
void CudaCoreDecodeBuilder::emitLoopBody(scf::ForOp loop,
                                         size_t numStateValues) {
  KernelEmitter &e = this->e();
  ValueRange iterArgs = loop.getRegionIterArgs();
  OnlineSoftmax::State s = OnlineSoftmax::State::unflatten(
      iterArgs.take_front(numStateValues), rows);
  Value base = loop.getInductionVar();
  Value lastToken = e.add(cta.chunkEnd, e.index(-1));

  SmallVector<Value> pages, nextPages;
  if (c.strategy.prefetchPageTable) {
    pages.assign(iterArgs.begin() + numStateValues, iterArgs.end());
    Value nextBase = e.add(base, e.index(c.tokensPerIteration()));
    for (int64_t u = 0; u < unroll; ++u)
      nextPages.push_back(loadPage(nextBase, u, lastToken));
  } else {
    for (int64_t u = 0; u < unroll; ++u)
      pages.push_back(loadPage(base, u, lastToken));
  }

  Tokens tokens = loadTokens(base, lastToken, pages);
  updateSoftmax(s, computeLogits(tokens), tokens);
  SmallVector<Value> yielded = s.flatten();
  yielded.append(nextPages);
  scf::YieldOp::create(b(), yielded);
}

/// Merges the lane groups of each warp by shuffles.
void CudaCoreDecodeBuilder::mergeLaneGroups(OnlineSoftmax::State &s) {
  KernelEmitter &e = this->e();
  OnlineSoftmax softmax(e);
  for (int64_t offset = threadsPerToken; offset < 32; offset *= 2) {
    OnlineSoftmax::State other;
    for (int64_t h = 0; h < rows; ++h) {
      other.max.push_back(e.shuffleXor(s.max[h], offset));
      other.sum.push_back(e.shuffleXor(s.sum[h], offset));
      for (int64_t v = 0; v < vecsPerThread; ++v)
        other.acc.push_back(
            e.shuffleXorVector(s.acc[h * vecsPerThread + v], offset));
    }
    softmax.merge(s, other, vecsPerThread, vecElems);
  }
}

/// Lane group 0 of each warp publishes the warp's state.
void CudaCoreDecodeBuilder::publishWarpState(const OnlineSoftmax::State &s) {
  KernelEmitter &e = this->e();
  ImplicitLocOpBuilder &b = this->b();
  Value accSmem = func.getWorkgroupAttributions()[0];
  Value statSmem = func.getWorkgroupAttributions()[1];
  auto acc = [&](int64_t h, int64_t v) { return s.acc[h * vecsPerThread + v]; };
  Value isFirstGroup = e.ult(cta.lane, e.index(threadsPerToken));
  auto publish = scf::IfOp::create(b, isFirstGroup, /*withElse=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(publish.thenBlock());
  int64_t storedVectors = lastPresent ? vecsPerThread - 1 : vecsPerThread;
  for (int64_t h = 0; h < rows; ++h)
    for (int64_t v = 0; v < storedVectors; ++v)
      e.storeVector(acc(h, v), accSmem, {cta.warp, e.index(h), columns[v]});
  if (lastPresent) {
    auto ifPresent = scf::IfOp::create(b, lastPresent, /*withElse=*/false);
    OpBuilder::InsertionGuard g2(b);
    b.setInsertionPointToStart(ifPresent.thenBlock());
    for (int64_t h = 0; h < rows; ++h)
      e.storeVector(acc(h, vecsPerThread - 1), accSmem,
                    {cta.warp, e.index(h), columns.back()});
  }
  auto first = scf::IfOp::create(b, e.ult(cta.lane, e.index(1)), false);
  b.setInsertionPointToStart(first.thenBlock());
  for (int64_t h = 0; h < rows; ++h) {
    memref::StoreOp::create(b, s.max[h], statSmem,
                            ValueRange{e.index(0), cta.warp, e.index(h)});
    memref::StoreOp::create(b, s.sum[h], statSmem,
                            ValueRange{e.index(1), cta.warp, e.index(h)});
  }
}

gpu::GPUFuncOp CudaCoreDecodeBuilder::build() {
  func = createFunc();
  bStorage.emplace(func.getLoc(), builder);
  b().setInsertionPointToStart(&func.getBody().front());
  eStorage.emplace(b());
  KernelEmitter &e = this->e();

  rules.emplace(getScoreRules(e, c, func));
  cta = emitDecodeCTA(e, c, func, *rules);
  scf::IfOp ifEmpty = emitEmptySplitShortcut(e, c, func, cta);
  scales = KVScales::get(e, c, func, cta.kvHead);
  emitLaneMapping();
  loadQ();
  OnlineSoftmax::State init;
  for (int64_t h = 0; h < rows; ++h) {
    init.max.push_back(e.negInf());
    init.sum.push_back(e.f32Const(0.0));
    for (int64_t v = 0; v < vecsPerThread; ++v)
      init.acc.push_back(e.zeroVector(vecElems));
  }
  SmallVector<Value> loopInit = init.flatten();
  const size_t numStateValues = loopInit.size();
  if (c.strategy.prefetchPageTable)
    loopInit.append(emitFirstPages());

  auto loop = scf::ForOp::create(b(), cta.chunkBegin, cta.chunkEnd,
                                 e.index(c.tokensPerIteration()), loopInit);
  {
    OpBuilder::InsertionGuard guard(b());
    b().setInsertionPointToStart(loop.getBody());
    emitLoopBody(loop, numStateValues);
  }
  OnlineSoftmax::State s = OnlineSoftmax::State::unflatten(
      loop.getResults().take_front(numStateValues), rows);
  mergeLaneGroups(s);
  publishWarpState(s);
  gpu::BarrierOp::create(b());

  emitMergeWarpsAndStore(
      e, c,
      getDecodeEpilogue(func, c, cta, func.getWorkgroupAttributions()[0],
                        func.getWorkgroupAttributions()[1]));
  b().setInsertionPointAfter(ifEmpty);
  gpu::ReturnOp::create(b());
  return func;
}

gpu::GPUFuncOp mlir::paged_attn::buildCudaCoreDecodeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  return CudaCoreDecodeBuilder(builder, module, c).build();
}
