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

def PagedAttn_DecodeKernelCudaCores : I32EnumAttrCase<"cuda_cores", 0>;
def PagedAttn_DecodeKernelTensorCores : I32EnumAttrCase<"tensor_cores", 1>;

def PagedAttn_DecodeKernelKind : I32EnumAttr<"DecodeKernelKind",
    "the decode kernel a strategy uses",
    [PagedAttn_DecodeKernelCudaCores, PagedAttn_DecodeKernelTensorCores]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::paged_attn";
}

def PagedAttn_DecodeStrategyAttr
    : AttrDef<PagedAttn_Dialect, "DecodeStrategy"> {
  let mnemonic = "decode_strategy";
  let summary = "how a decode op is lowered to GPU kernels";
  let description = [{
    The kernel strategy `paged-attn-select-decode-kernel` chose for one
    decode op, kept on the op as the discardable attribute
    `paged_attn.strategy` until `convert-paged-attn-to-gpu` builds its
    kernels, and read back by `paged-attn-compile` for the manifest: the
    kernel (`cuda_cores` or `tensor_cores`), warps per CTA, query heads per
    CTA, the tensor-core kernel's shared-memory K/V stages per ring (2 to 4,
    and up to 8 where two row groups of warps share each ring) and L2
    prefetch hint (0 for the CUDA-core kernel), the CUDA-core kernel's tokens per lane
    group and page-table prefetch (0 and false for the tensor-core kernel),
    the CTAs per SM asked of ptxas, whether the decode and merge kernels
    are launched programmatically, and for a multi-token decode the new
    queries per CTA
    (a CTA serves `queries_per_cta * heads_per_cta` rows; 1, the default,
    is not printed), and for fp8 caches whether the kernels widen them with
    the chip's fp8 conversion instructions (`fp8_conversion`: sm_89 with
    PTX 8.1, sm_90; false, the default, is not printed: integer
    arithmetic).

    ```mlir
    paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores,
      num_warps = 4, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128,
      tokens_per_lane_group = 0, prefetch_page_table = false,
      min_ctas_per_sm = 0, programmatic_launch = true>
    ```
  }];
  let parameters = (ins
    EnumParameter<PagedAttn_DecodeKernelKind>:$kernel,
    "int64_t":$num_warps,
    "int64_t":$heads_per_cta,
    "int64_t":$kv_stages,
    "int64_t":$l2_prefetch,
    "int64_t":$tokens_per_lane_group,
    "bool":$prefetch_page_table,
    "int64_t":$min_ctas_per_sm,
    "bool":$programmatic_launch,
    DefaultValuedParameter<"int64_t", "1">:$queries_per_cta,
    DefaultValuedParameter<"bool", "false">:$fp8_conversion
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

#endif // PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNATTRS_TD
