//===- PagedAttn.h - paged_attn dialect -------------------------*- C++ -*-===//

#ifndef PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTN_H
#define PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTN_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnOpsDialect.h.inc"

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnAttrs.h.inc"

#define GET_OP_CLASSES
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnOps.h.inc"

#endif // PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTN_H
