//===- PagedAttnDialect.td - paged_attn dialect ------------*- tablegen -*-===//

#ifndef PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNDIALECT_TD
#define PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNDIALECT_TD

include "mlir/IR/OpBase.td"

def PagedAttn_Dialect : Dialect {
  let name = "paged_attn";
  let cppNamespace = "::mlir::paged_attn";
  let summary = "Paged-attention decode over a KV cache kept in fixed-size pages";
  let description = [{
    The `paged_attn` dialect models the attention step of LLM token generation
    (decode): one query token per sequence attends over that sequence's keys
    and values, which live in a pool of fixed-size pages addressed through a
    page table. Kernels are specialised on the static head counts, head
    dimension, page size, element type and cache layout.
  }];
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

#endif // PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNDIALECT_TD
