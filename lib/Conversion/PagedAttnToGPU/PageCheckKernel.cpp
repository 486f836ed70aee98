//===- PageCheckKernel.cpp - the opt-in page-table check ------------------===//
//
// Grid (batch), one CTA per sequence: finds the first bad seq_lens or
// block_table entry in row-major order and keeps the smallest key in
// first_bad[0] with an atomic min (DecodeKernels.h gives the keys).
//
//===----------------------------------------------------------------------===//

#include "DecodeKernelBuilders.h"
#include "KernelEmitter.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::paged_attn;

gpu::GPUFuncOp mlir::paged_attn::buildPageCheckKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  MLIRContext *ctx = builder.getContext();
  gpu::GPUFuncOp func = createKernel(
      builder, module, c.checkKernelName(),
      getKernelArgTypes(ctx, ::paged_attn::checkKernelParams(c.spec)), {},
      c.checkBlockSize());
  ImplicitLocOpBuilder b(func.getLoc(), builder);
  b.setInsertionPointToStart(&func.getBody().front());
  KernelEmitter e(b);
  auto arg = [&](StringRef name) {
    return getKernelArg(func, ::paged_attn::checkKernelParams(c.spec), name);
  };
  Value blockTable = arg("block_table"), seqLens = arg("seq_lens");
  Value numPages = arg("num_pages"), firstBad = arg("first_bad");
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
      arith::IndexCastOp::create(b, i64, e.mul(maxPages, e.index(c.spec.pageSize)));
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
                e.index(c.spec.pageSize));
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
