//===- AppendKernel.h - the kernel paged_attn.append lowers to --*- C++ -*-===//
//
// One kernel per AppendSpec: a group of lanes per (new token, KV head) row,
// each lane moving 16-byte pieces of the K and V rows into the caches (and
// quantising them for fp8 caches). Its parameters are the Spec's
// (appendKernelParams); its launch is grid (ceil(T * num_kv_heads /
// rowsPerCTA())), block (blockSize()).
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_APPENDKERNEL_H
#define PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_APPENDKERNEL_H

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"
#include "PagedAttn/Spec/AppendSpec.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include <string>

namespace mlir {
namespace paged_attn {

/// The discardable attribute the selection pass puts on an append op with
/// fp8 caches when the target converts f32 to fp8 in hardware
/// (cvt.rn.satfinite); without it the kernel converts with integer
/// arithmetic (KVDequant's fp8FromF32: the same codes).
constexpr StringLiteral kFp8ConversionAttrName = "paged_attn.fp8_conversion";

struct AppendKernelConfig {
  ::paged_attn::AppendSpec spec;
  bool fp8Conversion = false;

  static constexpr int64_t kBlockSize = 256;

  std::string kernelName() const {
    return ::paged_attn::appendOpKernelName(spec);
  }
  /// Elements of k in one 16-byte piece, and pieces per row.
  int64_t pieceElems() const {
    return 16 / int64_t(::paged_attn::dtypeBytes(spec.dtype));
  }
  int64_t piecesPerRow() const { return spec.headDim / pieceElems(); }
  /// Lanes sharing a row: a power of two (their reductions are xor
  /// shuffles within a warp), at most a warp.
  int64_t lanesPerRow() const {
    int64_t lanes = 1;
    while (lanes < piecesPerRow() && lanes < 32)
      lanes *= 2;
    return lanes;
  }
  int64_t piecesPerLane() const {
    return (piecesPerRow() + lanesPerRow() - 1) / lanesPerRow();
  }
  int64_t rowsPerCTA() const { return kBlockSize / lanesPerRow(); }
  int64_t blockSize() const { return kBlockSize; }
};

/// Returns the kernel for `config` in `module`, building it first if the
/// module does not hold it yet.
gpu::GPUFuncOp getOrBuildAppendKernel(OpBuilder &builder,
                                      gpu::GPUModuleOp module,
                                      const AppendKernelConfig &config);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_APPENDKERNEL_H
