//===- PagedAttnAttrs.td - paged_attn attributes -----------*- tablegen -*-===//

#ifndef PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNATTRS_TD
#define PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNATTRS_TD

include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def PagedAttn_KVLayoutNHD : I32EnumAttrCase<"nhd", 0>;
def PagedAttn_KVLayoutHND : I32EnumAttrCase<"hnd", 1>;

def PagedAttn_KVLayout : I32EnumAttr<"KVLayout",
    "layout of a page of the KV cache",
    [PagedAttn_KVLayoutNHD, PagedAttn_KVLayoutHND]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::paged_attn";
}

def PagedAttn_KVLayoutAttr : EnumAttr<PagedAttn_Dialect, PagedAttn_KVLayout,
                                      "kv_layout"> {
  let summary = "KV cache layout: nhd is [pages, page, kv_heads, head_dim], "
                "hnd is [pages, kv_heads, page, head_dim]";
  let assemblyFormat = "`<` $value `>`";
}

#endif // PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNATTRS_TD
