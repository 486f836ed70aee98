//===- MergeKernel.cpp - combine split-KV partial results -----------------===//
//
// Combines partial outputs by their log-sum-exps: a split decode's (f32,
// base-2 log-sum-exps) or the merge op's (its own dtype, natural
// log-sum-exps, read through strided views). Two thread mappings
// (MergeMapping):
// - split lanes, grid (rows, batch): one CTA per (row, sequence), a row
//   being a head (a (new query, head) pair of a multi-token decode), and
//   many partials ("splits") at a time. A thread owns one 16-byte column of
//   the output row (`colThreads` of them) and every `splitLanes`-th split,
//   so the partials of many splits are loaded at once; the split lanes are
//   then summed through shared memory (by one thread per column: at most 32
//   lanes, which rows of one to three vectors would exceed, keep that sum
//   within registers on sm_80).
// - column threads, grid (heads / rows per CTA, batch): a thread owns one
//   16-byte column of one row and folds in the row's partials a few at a
//   time with an online max, loading them together; nothing is shared.
// With sinks, each head's sink logit joins the denominator here, once for
// all the partials; with a log-sum-exp output, the writer of a row's first
// column writes it (natural log).
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
class MergeKernelBuilder {
public:
  MergeKernelBuilder(OpBuilder &builder, gpu::GPUModuleOp module,
                     const MergeKernelConfig &c)
      : c(c), builder(builder), module(module), block(c.blockSize()),
        vecElems(c.vectorElems()), vecs(c.vectorsPerRow()),
        colThreads(std::min(vecs, block)),
        splitLanes(std::min<int64_t>(block / colThreads, 32)),
        pieces(vecElems / kF32VecElems) {}
  gpu::GPUFuncOp build();

private:
  /// The split-lanes body (see the file comment).
  void emitSplitLanes();
  /// The column-threads body.
  void emitColumnThreads();
  /// One step of a column thread's fold: partials [first, first + k) of
  /// its row (those that exist) merged into `state` (max, sum, pieces) by
  /// an online max.
  SmallVector<Value> emitColumnStep(Value first, Value column,
                                    ValueRange state);
  /// The partial outputs are loaded and kept in f32 pieces of 4 (16 bytes
  /// of f32 partials, 8 of 16-bit ones).
  static constexpr int64_t kF32VecElems = 4;

  /// The largest log-sum-exp: every thread takes every block-th split, then
  /// warps and the CTA reduce.
  Value emitMaxLse();
  /// This thread's weighted sum of its splits' partials of column `column`:
  /// (the sum of weights, the pieces).
  scf::ForOp emitSplitLoop(Value column, Value first, Value ref);
  /// Split lane 0 of each column adds up the lanes and writes.
  void emitWrite(Value column);
  /// Normalises a column's weighted sum `acc` (pieces) by `total` and the
  /// sink's weight, against `ref`, and writes it (and the log-sum-exp).
  void emitFinish(Value column, Value total, SmallVector<Value> acc);
  /// Piece `p` of partial `split`'s 16-byte column at `column`, in f32.
  Value loadPiece(Value split, Value column, int64_t p);
  /// Every piece of partial `split`'s column at `column`, from one 16-byte
  /// load (partials of the output's dtype: the merge op's).
  SmallVector<Value> loadColumn(Value split, Value column);
  /// The argument the Spec's ABI names `name`; null when absent.
  Value arg(StringRef name);
  /// Where the result's row is in out and lse: [batch, (query,) head, ...].
  SmallVector<Value> resultIndex(ArrayRef<Value> trailing);
  /// Sets row, head and query from the partials' row.
  void setRow(Value partialRow);

  /// Partial `split`'s log-sum-exp, in base 2.
  Value loadLse(Value split);

  const MergeKernelConfig &c;
  OpBuilder &builder;
  gpu::GPUModuleOp module;
  const int64_t block, vecElems, vecs, colThreads, splitLanes, pieces;
  gpu::GPUFuncOp func;
  std::optional<ImplicitLocOpBuilder> bStorage;
  std::optional<KernelEmitter> eStorage;
  /// The partials' row, and the result's head (and new query, for a
  /// multi-token decode's merge: row = query * num_heads + head; null
  /// otherwise, where row and head are one).
  Value numSplits, tid, row, head, query, batch, warp, lane, colInGroup, ref;
  /// e^sink / 2^ref, once per row (null without sinks).
  Value sinkWeight;

  ImplicitLocOpBuilder &b() { return *bStorage; }
  KernelEmitter &e() { return *eStorage; }
  Value smem(unsigned i) { return func.getWorkgroupAttributions()[i]; }
};
} // namespace

Value MergeKernelBuilder::emitMaxLse() {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  auto maxLoop = scf::ForOp::create(b, tid, numSplits, e.index(block),
                                    ValueRange{e.negInf()});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(maxLoop.getBody());
    Value lse = loadLse(maxLoop.getInductionVar());
    scf::YieldOp::create(b, e.fmax(maxLoop.getRegionIterArgs()[0], lse));
  }
  Value warpMax = maxLoop.getResult(0);
  for (int64_t offset = 16; offset > 0; offset /= 2)
    warpMax = e.fmax(warpMax, e.shuffleXor(warpMax, offset));
  auto firstLane = scf::IfOp::create(b, e.ult(lane, e.index(1)), false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(firstLane.thenBlock());
    memref::StoreOp::create(b, warpMax, smem(0), ValueRange{warp});
  }
  gpu::BarrierOp::create(b);
  Value max = e.negInf();
  for (int64_t w = 0; w < block / 32; ++w)
    max =
        e.fmax(max, memref::LoadOp::create(b, smem(0), ValueRange{e.index(w)}));
  return max;
}

scf::ForOp MergeKernelBuilder::emitSplitLoop(Value column, Value first,
                                             Value ref) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  OnlineSoftmax softmax(e);
  SmallVector<Value> init = {e.f32Const(0.0)};
  for (int64_t p = 0; p < pieces; ++p)
    init.push_back(e.zeroVector(kF32VecElems));
  auto splitLoop =
      scf::ForOp::create(b, first, numSplits, e.index(splitLanes), init);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(splitLoop.getBody());
  Value sp = splitLoop.getInductionVar();
  ValueRange carried = splitLoop.getRegionIterArgs();
  Value weight = softmax.weight(loadLse(sp), ref);
  SmallVector<Value> next = {e.fadd(carried[0], weight)};
  for (int64_t p = 0; p < pieces; ++p) {
    Value piece = loadPiece(sp, column, p);
    next.push_back(e.fma(e.splat(weight, kF32VecElems), piece, carried[1 + p]));
  }
  scf::YieldOp::create(b, next);
  return splitLoop;
}

Value MergeKernelBuilder::loadPiece(Value split, Value column, int64_t p) {
  KernelEmitter &e = this->e();
  int64_t pieceBytes =
      kF32VecElems * int64_t(::paged_attn::dtypeBytes(c.spec.partialDType));
  return e.extendToF32(vector::LoadOp::create(
      b(), VectorType::get({kF32VecElems}, c.partialType), arg("partial_out"),
      ValueRange{batch, row, split, e.add(column, e.index(p * kF32VecElems))},
      false, llvm::MaybeAlign(pieceBytes)));
}

SmallVector<Value> MergeKernelBuilder::loadColumn(Value split, Value column) {
  KernelEmitter &e = this->e();
  Value loaded = e.extendToF32(vector::LoadOp::create(
      b(), VectorType::get({vecElems}, c.partialType), arg("partial_out"),
      ValueRange{batch, row, split, column}, false, llvm::MaybeAlign(16)));
  if (pieces == 1)
    return {loaded};
  SmallVector<Value> result;
  for (int64_t p = 0; p < pieces; ++p) {
    SmallVector<int64_t> lanes;
    for (int64_t i = 0; i < kF32VecElems; ++i)
      lanes.push_back(p * kF32VecElems + i);
    result.push_back(vector::ShuffleOp::create(b(), loaded, loaded, lanes));
  }
  return result;
}

SmallVector<Value> MergeKernelBuilder::emitColumnStep(Value first, Value column,
                                                      ValueRange state) {
  KernelEmitter &e = this->e();
  OnlineSoftmax softmax(e);
  int64_t k = MergeKernelConfig::kPartialsPerStep;
  // Every load first, so that they are in flight together; those past the
  // last partial are not made (their weight is 0).
  SmallVector<Value> lses;
  SmallVector<SmallVector<Value>> parts(k);
  for (int64_t j = 0; j < k; ++j) {
    Value split = e.add(first, e.index(j));
    SmallVector<Type> types(1 + pieces, VectorType::get({kF32VecElems}, e.f32));
    types[0] = e.f32;
    auto load = scf::IfOp::create(b(), types, e.ult(split, numSplits),
                                  /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b());
      b().setInsertionPointToStart(load.thenBlock());
      SmallVector<Value> loaded = {loadLse(split)};
      loaded.append(loadColumn(split, column));
      scf::YieldOp::create(b(), loaded);
      b().setInsertionPointToStart(load.elseBlock());
      SmallVector<Value> none = {e.negInf()};
      none.append(pieces, e.zeroVector(kF32VecElems));
      scf::YieldOp::create(b(), none);
    }
    lses.push_back(load.getResult(0));
    for (int64_t p = 0; p < pieces; ++p)
      parts[j].push_back(load.getResult(1 + p));
  }
  Value max = state[0];
  for (Value lse : lses)
    max = e.fmax(max, lse);
  Value stepRef = softmax.reference(max);
  // The state so far, rescaled to the new max (0 while it is empty).
  Value rescale = softmax.weight(state[0], stepRef);
  Value sum = e.fmul(state[1], rescale);
  SmallVector<Value> acc;
  for (int64_t p = 0; p < pieces; ++p)
    acc.push_back(e.fmul(state[2 + p], e.splat(rescale, kF32VecElems)));
  for (int64_t j = 0; j < k; ++j) {
    Value weight = softmax.weight(lses[j], stepRef);
    sum = e.fadd(sum, weight);
    for (int64_t p = 0; p < pieces; ++p)
      acc[p] = e.fma(e.splat(weight, kF32VecElems), parts[j][p], acc[p]);
  }
  SmallVector<Value> next = {max, sum};
  next.append(acc);
  return next;
}

Value MergeKernelBuilder::loadLse(Value split) {
  Value lse = memref::LoadOp::create(b(), arg("partial_lse"),
                                     ValueRange{batch, row, split});
  if (c.spec.naturalLse)
    lse = e().fmul(lse, e().f32Const(M_LOG2E));
  return lse;
}

Value MergeKernelBuilder::arg(StringRef name) {
  return getKernelArg(func, ::paged_attn::mergeKernelParams(c.spec), name);
}

void MergeKernelBuilder::setRow(Value partialRow) {
  row = head = partialRow;
  if (!c.spec.queryDim)
    return;
  KernelEmitter &e = this->e();
  query = e.div(partialRow, e.index(c.spec.numHeads));
  head = e.rem(partialRow, e.index(c.spec.numHeads));
}

SmallVector<Value> MergeKernelBuilder::resultIndex(ArrayRef<Value> trailing) {
  SmallVector<Value> index = {batch};
  if (query)
    index.push_back(query);
  index.push_back(head);
  index.append(trailing.begin(), trailing.end());
  return index;
}

void MergeKernelBuilder::emitWrite(Value column) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  Value total = e.f32Const(0.0);
  SmallVector<Value> acc(pieces, e.zeroVector(kF32VecElems));
  for (int64_t l = 0; l < splitLanes; ++l) {
    Value slot = e.add(colInGroup, e.index(l * colThreads));
    total = e.fadd(total, memref::LoadOp::create(b, smem(1), ValueRange{slot}));
    for (int64_t p = 0; p < pieces; ++p)
      acc[p] =
          e.fadd(acc[p], vector::LoadOp::create(
                             b, VectorType::get({kF32VecElems}, e.f32), smem(2),
                             ValueRange{slot, e.index(p * kF32VecElems)}, false,
                             llvm::MaybeAlign(16)));
  }
  emitFinish(column, total, std::move(acc));
}

void MergeKernelBuilder::emitFinish(Value column, Value total,
                                    SmallVector<Value> acc) {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  OnlineSoftmax softmax(e);
  // With a sink, its weight joins the denominator (a row with no key
  // stays 0: its accumulators are).
  Value inv =
      softmax.inverseSum(sinkWeight ? e.fadd(total, sinkWeight) : total);
  Value invVec = e.splat(inv, kF32VecElems);
  for (Value &a : acc)
    a = e.fmul(a, invVec);
  // 16-bit outputs take 8 elements per 16-byte store: join the halves.
  Value result = acc[0];
  if (pieces == 2)
    result = vector::ShuffleOp::create(
        b, acc[0], acc[1], ArrayRef<int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
  e.storeVector(e.truncateTo(result, c.elementType), arg("out"),
                resultIndex({column}));
  if (Value lse = arg("lse")) {
    auto first = scf::IfOp::create(b, e.ult(column, e.index(1)), false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(first.thenBlock());
    Value lse2 = softmax.logSumExp(ref, total, softmax.nonEmpty(total));
    memref::StoreOp::create(b, e.fmul(lse2, e.f32Const(M_LN2)), lse,
                            resultIndex({}));
  }
}

gpu::GPUFuncOp MergeKernelBuilder::build() {
  MLIRContext *ctx = builder.getContext();
  Type f32 = builder.getF32Type();
  auto workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto smemType = [&](ArrayRef<int64_t> shape) {
    return MemRefType::get(shape, f32, MemRefLayoutAttrInterface(), workgroup);
  };
  // Shared memory (split lanes): the warps' max log-sum-exps, then the
  // split lanes' sums and accumulators.
  SmallVector<Type> shared;
  if (c.mapping == MergeMapping::SplitLanes)
    shared = {smemType({block / 32}), smemType({block}),
              smemType({block, vecElems})};
  func = createKernel(
      builder, module, c.kernelName,
      getKernelArgTypes(ctx, ::paged_attn::mergeKernelParams(c.spec)), shared,
      block);
  bStorage.emplace(func.getLoc(), builder);
  b().setInsertionPointToStart(&func.getBody().front());
  eStorage.emplace(b());
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  numSplits = e.toIndex(arg("num_splits"));
  // Launched early (programmatic dependent launch): wait for the decode
  // grid's partial results. The grid after it is scheduled only once this
  // one completes (no launch_dependents): a decode scheduled while the
  // merge runs was slower in graph replay at 1 x 32k (bench/NOTES.md 50).
  if (c.programmaticLaunch)
    NVVM::GriddepcontrolOp::create(b, NVVM::GridDepActionKindAttr::get(
                                          ctx, NVVM::GridDepActionKind::wait));
  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  if (c.mapping == MergeMapping::SplitLanes)
    emitSplitLanes();
  else
    emitColumnThreads();
  gpu::ReturnOp::create(b);
  return func;
}

void MergeKernelBuilder::emitSplitLanes() {
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  setRow(gpu::BlockIdOp::create(b, gpu::Dimension::x));
  batch = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  warp = e.div(tid, e.index(32));
  lane = e.rem(tid, e.index(32));
  ref = OnlineSoftmax(e).reference(emitMaxLse());
  if (Value sinks = arg("sinks")) {
    Value sink = memref::LoadOp::create(b, sinks, ValueRange{head});
    sinkWeight = OnlineSoftmax(e).sinkWeight(sink, ref);
  }

  colInGroup = e.rem(tid, e.index(colThreads));
  Value splitLane = e.div(tid, e.index(colThreads));
  Value activeLane = e.ult(splitLane, e.index(splitLanes));
  // A uniform loop over groups of columns: every thread reaches the
  // barriers in it.
  auto colLoop =
      scf::ForOp::create(b, e.index(0), e.index(vecs), e.index(colThreads));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(colLoop.getBody());
  Value col = e.add(colLoop.getInductionVar(), colInGroup);
  Value valid = arith::AndIOp::create(b, activeLane, e.ult(col, e.index(vecs)));
  Value column = e.mul(col, e.index(vecElems));
  scf::ForOp splitLoop =
      emitSplitLoop(column, e.select(valid, splitLane, numSplits), ref);
  memref::StoreOp::create(b, splitLoop.getResult(0), smem(1), ValueRange{tid});
  for (int64_t p = 0; p < pieces; ++p)
    e.storeVector(splitLoop.getResult(1 + p), smem(2),
                  {tid, e.index(p * kF32VecElems)});
  gpu::BarrierOp::create(b);
  auto writer = scf::IfOp::create(
      b, arith::AndIOp::create(b, valid, e.ult(splitLane, e.index(1))), false);
  {
    OpBuilder::InsertionGuard g2(b);
    b.setInsertionPointToStart(writer.thenBlock());
    emitWrite(column);
  }
  // The next group of columns reuses the buffers.
  gpu::BarrierOp::create(b);
}

void MergeKernelBuilder::emitColumnThreads() {
  assert(!c.spec.queryDim && "column threads merge the op's partials");
  assert(c.spec.partialDType == c.spec.dtype &&
         "column threads load 16-byte columns of the output's dtype");
  ImplicitLocOpBuilder &b = this->b();
  KernelEmitter &e = this->e();
  Value rowInCTA = e.div(tid, e.index(vecs));
  setRow(e.add(e.mul(gpu::BlockIdOp::create(b, gpu::Dimension::x),
                     e.index(c.rowsPerCTA())),
               rowInCTA));
  batch = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  Value column = e.mul(e.rem(tid, e.index(vecs)), e.index(vecElems));
  // The last CTA's rows past num_heads have nothing to merge.
  auto inRange =
      scf::IfOp::create(b, e.ult(row, e.index(c.spec.numHeads)), false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(inRange.thenBlock());
  SmallVector<Value> init = {e.negInf(), e.f32Const(0.0)};
  for (int64_t p = 0; p < pieces; ++p)
    init.push_back(e.zeroVector(kF32VecElems));
  auto fold =
      scf::ForOp::create(b, e.index(0), numSplits,
                         e.index(MergeKernelConfig::kPartialsPerStep), init);
  {
    OpBuilder::InsertionGuard g2(b);
    b.setInsertionPointToStart(fold.getBody());
    scf::YieldOp::create(b, emitColumnStep(fold.getInductionVar(), column,
                                           fold.getRegionIterArgs()));
  }
  OnlineSoftmax softmax(e);
  ref = softmax.reference(fold.getResult(0));
  if (Value sinks = arg("sinks"))
    sinkWeight = softmax.sinkWeight(
        memref::LoadOp::create(b, sinks, ValueRange{head}), ref);
  emitFinish(column, fold.getResult(1),
             SmallVector<Value>(fold.getResults().drop_front(2)));
}

gpu::GPUFuncOp mlir::paged_attn::buildMergeKernel(OpBuilder &builder,
                                                  gpu::GPUModuleOp module,
                                                  const MergeKernelConfig &c) {
  return MergeKernelBuilder(builder, module, c).build();
}
