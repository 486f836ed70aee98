//===- PagedAttnDialect.cpp - paged_attn dialect --------------------------===//

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::paged_attn;

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnOpsDialect.cpp.inc"

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnAttrs.cpp.inc"

void PagedAttnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnAttrs.cpp.inc"
      >();
}
