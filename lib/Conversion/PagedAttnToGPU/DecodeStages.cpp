//===- DecodeStages.cpp - the named stages of a decode kernel -------------===//

#include "DecodeStages.h"

#include "PagedAttn/Conversion/KVDequant.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"
#include "PagedAttn/Spec/KernelABI.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>
#include <numeric>

using namespace mlir;
using namespace mlir::paged_attn;

//===----------------------------------------------------------------------===//
// 1. The CTA and its chunk
//===----------------------------------------------------------------------===//

Value mlir::paged_attn::getDecodeKernelArg(gpu::GPUFuncOp func,
                                          const DecodeKernelConfig &c,
                                          StringRef name) {
  return getKernelArg(func, ::paged_attn::decodeKernelParams(c.spec), name);
}

ScoreModifiers mlir::paged_attn::getScoreRules(KernelEmitter &e,
                                               const DecodeKernelConfig &c,
                                               gpu::GPUFuncOp func) {
  ScoreArgs args{getDecodeKernelArg(func, c, "window"),
                 getDecodeKernelArg(func, c, "soft_cap"),
                 getDecodeKernelArg(func, c, "alibi_slopes"),
                 getDecodeKernelArg(func, c, "tree_mask")};
  ScoreMath gpuMath;
  gpuMath.exp2 = [&e](ImplicitLocOpBuilder &, Value x) { return e.exp2(x); };
  gpuMath.reciprocal = [&e](ImplicitLocOpBuilder &, Value x) {
    return e.reciprocal(x);
  };
  return ScoreModifiers(c.spec, args, gpuMath);
}

DecodeCTA mlir::paged_attn::emitDecodeCTA(KernelEmitter &e,
                                          const DecodeKernelConfig &c,
                                          gpu::GPUFuncOp func,
                                          const ScoreModifiers &rules) {
  ImplicitLocOpBuilder &b = e.b;
  // The merge kernel (or the next decode) may be scheduled now; it waits
  // for this grid's results itself. Launched programmatically, this grid
  // may itself be scheduled while the one before it in the stream drains:
  // it waits for that grid (its writes made visible) before it reads or
  // writes anything, so that only its launch overlaps the other's tail.
  if (c.strategy.programmaticLaunch) {
    NVVM::GriddepcontrolOp::create(
        b, NVVM::GridDepActionKindAttr::get(
               b.getContext(), NVVM::GridDepActionKind::launch_dependents));
    NVVM::GriddepcontrolOp::create(
        b, NVVM::GridDepActionKindAttr::get(b.getContext(),
                                            NVVM::GridDepActionKind::wait));
  }
  DecodeCTA cta;
  cta.tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value ctaX = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  cta.batch = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  cta.split = gpu::BlockIdOp::create(b, gpu::Dimension::z);
  cta.kvHead = e.div(ctaX, e.index(c.ctasPerKVHead()));
  // A KV head's CTAs: (query block, head block), head blocks fastest.
  Value inGroup = e.rem(ctaX, e.index(c.ctasPerKVHead()));
  Value headBlock = inGroup;
  if (c.spec.hasQueryDim()) {
    headBlock = e.rem(inGroup, e.index(c.headCTAsPerKVHead()));
    cta.firstQuery = e.mul(e.div(inGroup, e.index(c.headCTAsPerKVHead())),
                           e.index(c.queriesPerCTA()));
  }
  cta.firstHead = e.add(e.mul(cta.kvHead, e.index(c.groupSize())),
                        e.mul(headBlock, e.index(c.headsPerCTA())));
  cta.warp = e.div(cta.tid, e.index(32));
  cta.lane = e.rem(cta.tid, e.index(32));

  Value seqLens = getDecodeKernelArg(func, c, "seq_lens");
  cta.seqLen =
      e.toIndex(memref::LoadOp::create(b, seqLens, ValueRange{cta.batch}));
  cta.numSplits = e.toIndex(getDecodeKernelArg(func, c, "num_splits"));
  // The splits share the keys the CTA's queries see: up to its last
  // query's key end, from its first query's first visible key (under a
  // window) on.
  Value keysEnd = cta.seqLen, firstKey;
  if (cta.firstQuery) {
    Value lastQuery =
        e.min(e.add(cta.firstQuery, e.index(c.queriesPerCTA() - 1)),
              e.index(c.spec.queryLen - 1));
    keysEnd = rules.queryKeyEnd(b, cta.seqLen, lastQuery);
    firstKey = rules.firstVisibleKey(
        b, rules.queryKeyEnd(b, cta.seqLen, cta.firstQuery));
  } else {
    firstKey = rules.firstVisibleKey(b, cta.seqLen);
  }
  Value visible =
      firstKey ? arith::SubIOp::create(b, keysEnd, firstKey) : keysEnd;
  // Spec's splitChunkLength: an even share of the keys, or split_chunk
  // keys where that is more (a plan that balances a ragged batch's CTAs),
  // in whole loop iterations. num_splits chunks cover the keys either way,
  // whatever the lengths, so a plan made for other lengths stays correct.
  Value step = e.index(c.tokensPerIteration());
  Value evenShare = e.ceilDiv(visible, cta.numSplits);
  Value least = e.toIndex(getDecodeKernelArg(func, c, "split_chunk"));
  Value chunk =
      e.mul(e.ceilDiv(arith::MaxUIOp::create(b, evenShare, least), step), step);
  cta.chunkBegin = e.min(e.mul(cta.split, chunk), visible);
  cta.chunkEnd = e.min(e.add(cta.chunkBegin, chunk), visible);
  if (firstKey) {
    cta.chunkBegin = e.add(cta.chunkBegin, firstKey);
    cta.chunkEnd = e.add(cta.chunkEnd, firstKey);
  }
  return cta;
}

/// Writes a split's partial output `result` (f32, c.vectorElems()) of row
/// `partialRow` at `column` (vector `col` of the row); the first column's
/// writer also writes the row's log-sum-exp `lse()` (base 2).
static void storeSplitPartial(KernelEmitter &e, Value partialOut,
                              Value partialLse, Value batch, Value partialRow,
                              Value split, Value col, Value column,
                              Value result, function_ref<Value()> lse) {
  ImplicitLocOpBuilder &b = e.b;
  e.storeVector(result, partialOut, {batch, partialRow, split, column});
  auto firstColumn = scf::IfOp::create(b, e.ult(col, e.index(1)), false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(firstColumn.thenBlock());
  memref::StoreOp::create(b, lse(), partialLse,
                          ValueRange{batch, partialRow, split});
}

/// Emits `body` for each (row `h` of the CTA, 16-byte column `col`) thread
/// `tid` owns (tid, tid + blockSize, ... of rows * vectorsPerRow), inside a
/// guard that skips padding queries' rows.
static void forEachRowColumn(
    KernelEmitter &e, const DecodeKernelConfig &c, Value tid, Value firstHead,
    Value firstQuery,
    function_ref<void(Value h, Value col, const CTARow &row)> body) {
  ImplicitLocOpBuilder &b = e.b;
  auto loop = scf::ForOp::create(b, tid,
                                 e.index(c.rowsPerCTA() * c.vectorsPerRow()),
                                 e.index(c.blockSize()));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value idx = loop.getInductionVar();
  Value h = e.div(idx, e.index(c.vectorsPerRow()));
  Value col = e.rem(idx, e.index(c.vectorsPerRow()));
  CTARow row = getCTARow(e, c, firstHead, firstQuery, h);
  if (row.valid)
    b.setInsertionPointToStart(
        scf::IfOp::create(b, row.valid, /*withElse=*/false).thenBlock());
  body(h, col, row);
}

scf::IfOp mlir::paged_attn::emitEmptySplitShortcut(KernelEmitter &e,
                                                   const DecodeKernelConfig &c,
                                                   gpu::GPUFuncOp func,
                                                   const DecodeCTA &cta) {
  ImplicitLocOpBuilder &b = e.b;
  Value isSplit = arith::CmpIOp::create(b, arith::CmpIPredicate::ugt,
                                        cta.numSplits, e.index(1));
  Value noKeys = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                       cta.chunkBegin, cta.chunkEnd);
  auto ifEmpty = scf::IfOp::create(b, arith::AndIOp::create(b, isSplit, noKeys),
                                   /*withElseRegion=*/true);
  b.setInsertionPointToStart(ifEmpty.thenBlock());
  // What emitMergeWarpsAndStore writes for a chunk without keys.
  forEachRowColumn(
      e, c, cta.tid, cta.firstHead, cta.firstQuery,
      [&](Value, Value col, const CTARow &row) {
        storeSplitPartial(e, getDecodeKernelArg(func, c, "partial_out"),
                          getDecodeKernelArg(func, c, "partial_lse"),
                          cta.batch, getPartialRow(e, c, row), cta.split, col,
                          e.mul(col, e.index(c.vectorElems())),
                          e.zeroVector(c.vectorElems()),
                          [&] { return e.negInf(); });
      });
  b.setInsertionPointToStart(ifEmpty.elseBlock());
  return ifEmpty;
}

CTARow mlir::paged_attn::getCTARow(KernelEmitter &e,
                                   const DecodeKernelConfig &c, Value firstHead,
                                   Value firstQuery, Value rowInCTA) {
  CTARow row;
  if (!firstQuery) {
    row.head = e.add(firstHead, rowInCTA);
    return row;
  }
  Value heads = e.index(c.headsPerCTA());
  row.head = e.add(firstHead, e.rem(rowInCTA, heads));
  row.query = e.add(firstQuery, e.div(rowInCTA, heads));
  if (c.hasPaddingQueries()) {
    Value lastQuery = e.index(c.spec.queryLen - 1);
    row.valid = e.ult(row.query, e.index(c.spec.queryLen));
    row.query = e.min(row.query, lastQuery);
  }
  return row;
}

Value mlir::paged_attn::getPartialRow(KernelEmitter &e,
                                      const DecodeKernelConfig &c,
                                      const CTARow &row) {
  if (!row.query)
    return row.head;
  return e.add(e.mul(row.query, e.index(c.spec.numHeads)), row.head);
}

SmallVector<Value> mlir::paged_attn::getResultIndex(Value batch,
                                                    const CTARow &row,
                                                    ArrayRef<Value> trailing) {
  SmallVector<Value> index = {batch};
  if (row.query)
    index.push_back(row.query);
  index.push_back(row.head);
  index.append(trailing.begin(), trailing.end());
  return index;
}

Value mlir::paged_attn::getRowKeyEnd(KernelEmitter &e,
                                     const ScoreModifiers &rules,
                                     const DecodeCTA &cta, const CTARow &row) {
  if (!row.query)
    return cta.seqLen;
  return rules.queryKeyEnd(e.b, cta.seqLen, row.query);
}

Value mlir::paged_attn::rowSeesKey(KernelEmitter &e,
                                   const ScoreModifiers &rules,
                                   const DecodeCTA &cta, const CTARow &row,
                                   Value keyEnd, Value token) {
  if (!row.query)
    return Value();
  ImplicitLocOpBuilder &b = e.b;
  Value sees = e.ult(token, keyEnd);
  if (Value first = rules.firstVisibleKey(b, keyEnd))
    sees = arith::AndIOp::create(
        b, sees,
        arith::CmpIOp::create(b, arith::CmpIPredicate::uge, token, first));
  if (Value allowed =
          rules.treeMaskAllows(b, cta.batch, row.query, token, cta.seqLen))
    sees = arith::AndIOp::create(b, sees, allowed);
  return sees;
}

//===----------------------------------------------------------------------===//
// 2-4. Page lookup, rows as f32, score rules
//===----------------------------------------------------------------------===//

Value mlir::paged_attn::loadPageEntry(KernelEmitter &e, Value blockTable,
                                      Value batch, Value token,
                                      int64_t pageSize) {
  return memref::LoadOp::create(
      e.b, blockTable, ValueRange{batch, e.div(token, e.index(pageSize))});
}

Value mlir::paged_attn::widenFp8ToF16(KernelEmitter &e,
                                      const DecodeKernelConfig &c,
                                      Value codes) {
  ::paged_attn::DType format = c.spec.kvQuant->dtype;
  if (!c.strategy.fp8Conversion)
    return fp8ToF16(e.b, codes, format);
  ImplicitLocOpBuilder &b = e.b;
  auto type = cast<VectorType>(codes.getType());
  Value bytes =
      type.getElementType().isInteger(8)
          ? codes
          : arith::BitcastOp::create(b, type.clone(b.getI8Type()), codes)
                .getResult();
  Type fp8Type = toMLIRType(b.getContext(), format);
  auto pairType = VectorType::get({2}, b.getF16Type());
  // Pairs out and back in by shuffles (which the GPU lowering takes).
  SmallVector<Value> parts;
  for (int64_t i = 0; i < type.getNumElements(); i += 2) {
    Value pair =
        vector::ShuffleOp::create(b, bytes, bytes, ArrayRef<int64_t>{i, i + 1});
    parts.push_back(NVVM::ConvertF8x2ToF16x2Op::create(
        b, pairType, pair, /*relu=*/false, fp8Type));
  }
  while (parts.size() > 1) {
    SmallVector<Value> joined;
    for (size_t i = 0; i < parts.size(); i += 2) {
      int64_t n = cast<VectorType>(parts[i].getType()).getNumElements();
      SmallVector<int64_t> all(2 * n);
      std::iota(all.begin(), all.end(), 0);
      joined.push_back(
          vector::ShuffleOp::create(b, parts[i], parts[i + 1], all));
    }
    parts = std::move(joined);
  }
  return parts.front();
}

Value mlir::paged_attn::dequantizeToF32(KernelEmitter &e,
                                        const DecodeKernelConfig &c,
                                        Value slice) {
  if (!c.spec.kvQuant)
    return e.extendToF32(slice);
  return e.extendToF32(widenFp8ToF16(e, c, slice));
}

KVScales KVScales::get(KernelEmitter &e, const DecodeKernelConfig &c,
                       gpu::GPUFuncOp func, Value kvHead) {
  KVScales s;
  s.kScales = getDecodeKernelArg(func, c, "k_scale");
  s.vScales = getDecodeKernelArg(func, c, "v_scale");
  if (!s.kScales || c.spec.kvQuant->scale == ::paged_attn::KVScaleKind::Token)
    return s;
  s.k = loadKVScale(e.b, c.spec, s.kScales, Value(), Value(), kvHead);
  s.v = loadKVScale(e.b, c.spec, s.vScales, Value(), Value(), kvHead);
  return s;
}

std::pair<Value, Value> KVScales::load(KernelEmitter &e,
                                       const DecodeKernelConfig &c, Value page,
                                       Value slot, Value kvHead) const {
  return {loadKVScale(e.b, c.spec, kScales, page, slot, kvHead),
          loadKVScale(e.b, c.spec, vScales, page, slot, kvHead)};
}

Value mlir::paged_attn::applyScoreRules(
    KernelEmitter &e, const ScoreModifiers &rules, Value base2Logit,
    function_ref<ScorePosition()> position) {
  if (rules.empty())
    return base2Logit;
  Value natural = e.fmul(base2Logit, e.f32Const(M_LN2));
  return e.fmul(rules.apply(e.b, natural, position()), e.f32Const(M_LOG2E));
}

//===----------------------------------------------------------------------===//
// 5. Online softmax
//===----------------------------------------------------------------------===//

SmallVector<Value> OnlineSoftmax::State::flatten() const {
  SmallVector<Value> values(max);
  values.append(sum);
  values.append(acc);
  return values;
}

OnlineSoftmax::State OnlineSoftmax::State::unflatten(ValueRange values,
                                                     int64_t rows) {
  State s;
  s.max.assign(values.begin(), values.begin() + rows);
  s.sum.assign(values.begin() + rows, values.begin() + 2 * rows);
  s.acc.assign(values.begin() + 2 * rows, values.end());
  return s;
}

Value OnlineSoftmax::inverseSum(Value sum) {
  return e.select(nonEmpty(sum),
                  arith::DivFOp::create(e.b, e.f32Const(1.0), sum),
                  e.f32Const(0.0));
}

Value OnlineSoftmax::inverseSum(Value sum, Value nonEmpty) {
  return e.select(nonEmpty, arith::DivFOp::create(e.b, e.f32Const(1.0), sum),
                  e.f32Const(0.0));
}

Value OnlineSoftmax::logSumExp(Value ref, Value sum, Value nonEmpty) {
  return e.select(nonEmpty, e.fadd(ref, e.log2(sum)), e.negInf());
}

Value OnlineSoftmax::sinkWeight(Value sink, Value ref) {
  return weight(e.fmul(sink, e.f32Const(M_LOG2E)), ref);
}

Value OnlineSoftmax::sinkFactor(Value sink, Value ref, Value sum) {
  return e.fmul(sum, inverseSum(e.fadd(sum, sinkWeight(sink, ref))));
}

void OnlineSoftmax::merge(State &s, const State &o, int64_t accPerRow,
                          int64_t vecElems) {
  for (size_t h = 0; h < s.max.size(); ++h) {
    Value newMax = e.fmax(s.max[h], o.max[h]);
    Value ref = reference(newMax);
    Value a = weight(s.max[h], ref);
    Value c = weight(o.max[h], ref);
    s.sum[h] = e.fma(s.sum[h], a, e.fmul(o.sum[h], c));
    Value aVec = e.splat(a, vecElems), cVec = e.splat(c, vecElems);
    for (int64_t v = 0; v < accPerRow; ++v) {
      Value &acc = s.acc[h * accPerRow + v];
      acc = e.fma(acc, aVec, e.fmul(o.acc[h * accPerRow + v], cVec));
    }
    s.max[h] = newMax;
  }
}

//===----------------------------------------------------------------------===//
// 6. The end of a decode kernel
//===----------------------------------------------------------------------===//

namespace {
/// A row slice merged across the warps.
struct MergedRow {
  Value result; // normalised
  Value ref, sum, nonEmpty;
};
} // namespace

/// Merges the warps' states of row `h`, column `column` (in elements) from
/// shared memory.
static MergedRow mergeWarpsOfRow(KernelEmitter &e, const DecodeKernelConfig &c,
                const DecodeEpilogue &ep, Value h, Value column) {
  ImplicitLocOpBuilder &b = e.b;
  OnlineSoftmax softmax(e);
  const int64_t vecElems = c.vectorElems();
  SmallVector<Value> maxes;
  Value max = e.negInf();
  for (int64_t w = 0; w < c.tokenWarps(); ++w) {
    maxes.push_back(memref::LoadOp::create(
        b, ep.statSmem, ValueRange{e.index(0), e.index(w), h}));
    max = e.fmax(max, maxes.back());
  }
  Value ref = softmax.reference(max);
  Value sum = e.f32Const(0.0);
  Value acc = e.zeroVector(vecElems);
  for (int64_t w = 0; w < c.tokenWarps(); ++w) {
    Value weight = softmax.weight(maxes[w], ref);
    Value warpSum = memref::LoadOp::create(
        b, ep.statSmem, ValueRange{e.index(1), e.index(w), h});
    sum = e.fma(weight, warpSum, sum);
    Value warpAcc = vector::LoadOp::create(
        b, VectorType::get({vecElems}, e.f32), ep.accSmem,
        ValueRange{e.index(w), h, column}, false, llvm::MaybeAlign(16));
    acc = e.fma(e.splat(weight, vecElems), warpAcc, acc);
  }
  Value nonEmpty = softmax.nonEmpty(sum);
  Value inv = softmax.inverseSum(sum, nonEmpty);
  return {e.fmul(acc, e.splat(inv, vecElems)), ref, sum, nonEmpty};
}

DecodeEpilogue mlir::paged_attn::getDecodeEpilogue(gpu::GPUFuncOp func,
                                                  const DecodeKernelConfig &c,
                                                  const DecodeCTA &cta,
                                                  Value accSmem,
                                                  Value statSmem) {
  auto arg = [&](StringRef name) { return getDecodeKernelArg(func, c, name); };
  DecodeEpilogue ep{
      accSmem,    statSmem,           cta.tid,           cta.batch,
      cta.split,  cta.firstHead,      cta.firstQuery,    cta.numSplits,
      arg("out"), arg("partial_out"), arg("partial_lse")};
  ep.sinks = arg("sinks");
  ep.lse = arg("lse");
  return ep;
}

/// Row `h`'s column `col` (`row` its query and head): the warps' states
/// merged, then written as the split's partial or, unsplit, as out (with
/// the sink in its denominator, and the natural log-sum-exp where asked).
static void storeMergedRow(KernelEmitter &e, const DecodeKernelConfig &c,
                           const DecodeEpilogue &ep, OnlineSoftmax &softmax,
                           Value isSplit, Value h, Value col,
                           const CTARow &row) {
  ImplicitLocOpBuilder &b = e.b;
  Value column = e.mul(col, e.index(c.vectorElems()));
  MergedRow merged = mergeWarpsOfRow(e, c, ep, h, column);
  Value partialRow = getPartialRow(e, c, row);

  auto ifSplit = scf::IfOp::create(b, isSplit, /*withElse=*/true);
  b.setInsertionPointToStart(ifSplit.thenBlock());
  storeSplitPartial(e, ep.partialOut, ep.partialLse, ep.batch, partialRow,
                    ep.split, col, column, merged.result, [&] {
                      return softmax.logSumExp(merged.ref, merged.sum,
                                               merged.nonEmpty);
                    });
  b.setInsertionPointToStart(ifSplit.elseBlock());
  Value result = merged.result;
  if (ep.sinks) {
    Value sink = memref::LoadOp::create(b, ep.sinks, ValueRange{row.head});
    result =
        e.fmul(result, e.splat(softmax.sinkFactor(sink, merged.ref, merged.sum),
                               c.vectorElems()));
  }
  e.storeVector(e.truncateTo(result, c.elementType), ep.out,
                getResultIndex(ep.batch, row, {column}));
  if (ep.lse) {
    auto first = scf::IfOp::create(b, e.ult(col, e.index(1)), false);
    OpBuilder::InsertionGuard g2(b);
    b.setInsertionPointToStart(first.thenBlock());
    Value lse2 = softmax.logSumExp(merged.ref, merged.sum, merged.nonEmpty);
    memref::StoreOp::create(b, e.fmul(lse2, e.f32Const(M_LN2)), ep.lse,
                            getResultIndex(ep.batch, row, {}));
  }
}

void mlir::paged_attn::emitMergeWarpsAndStore(KernelEmitter &e,
                                              const DecodeKernelConfig &c,
                                              const DecodeEpilogue &ep) {
  ImplicitLocOpBuilder &b = e.b;
  OnlineSoftmax softmax(e);
  Value isSplit = arith::CmpIOp::create(b, arith::CmpIPredicate::ugt,
                                        ep.numSplits, e.index(1));
  forEachRowColumn(e, c, ep.tid, ep.firstHead, ep.firstQuery,
                   [&](Value h, Value col, const CTARow &row) {
                     storeMergedRow(e, c, ep, softmax, isSplit, h, col, row);
                   });
}
