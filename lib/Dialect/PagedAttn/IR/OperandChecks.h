//===- OperandChecks.h - verifier checks the ops share ----------*- C++ -*-===//
//
// The rules on operands that paged_attn.decode, merge and append have in
// common: how shapes are spelt in messages, memref layouts, f32 operands of
// a given shape, and the fp8 caches' scales.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_LIB_DIALECT_PAGEDATTN_IR_OPERANDCHECKS_H
#define PAGEDATTN_LIB_DIALECT_PAGEDATTN_IR_OPERANDCHECKS_H

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"

#include <string>
#include <vector>

namespace mlir {
namespace paged_attn {
namespace operand_checks {

/// "[?, 32, 128]".
std::string formatShape(ArrayRef<int64_t> shape);

/// Element types the ops compute on: the spec's floating-point dtypes.
bool isSupportedElementType(Type t);

/// The memref form's operands: in the default memory space (the kernels
/// address global memory), strided; the vector-loaded ones (`vectorRows`)
/// with a unit innermost stride and rows, pages and base offsets on 16-byte
/// boundaries.
LogicalResult verifyMemRef(Operation *op, StringRef name, MemRefType type,
                           bool vectorRows);

/// An f32 operand or result of `shape` (dynamic sizes of `shape` match any
/// size; static sizes of the value must equal them): the slopes, the sinks,
/// the log-sum-exp and the scales.
LogicalResult verifyF32Shape(Operation *op, StringRef name, Value value,
                             ArrayRef<int64_t> shape, StringRef shapeDoc);

/// The scales of fp8 caches (`cacheType`): both present exactly when the
/// cache is fp8, of one rank (0, 1 or 3: the granularity), each f32 of
/// `shapeOf(granularity)`.
LogicalResult verifyKVScaleOperands(
    Operation *op, Value kScale, Value vScale, ShapedType cacheType,
    KVLayout layout,
    function_ref<std::vector<int64_t>(::paged_attn::KVScaleKind)> shapeOf);

} // namespace operand_checks
} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_LIB_DIALECT_PAGEDATTN_IR_OPERANDCHECKS_H
