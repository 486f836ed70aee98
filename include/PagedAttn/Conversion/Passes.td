//===- Passes.td - paged_attn conversion passes ------------*- tablegen -*-===//

#ifndef PAGEDATTN_CONVERSION_PASSES_TD
#define PAGEDATTN_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertPagedAttnToGPU : Pass<"convert-paged-attn-to-gpu", "ModuleOp"> {
  let summary = "Lower the memref form of paged_attn.decode to GPU kernels";
  let description = [{
    Replaces each memref-form `paged_attn.decode` with host-side
    `gpu.launch_func` ops and adds to a `gpu.module` a decode kernel and a
    split-KV merge kernel specialised on (num_heads, num_kv_heads, head_dim,
    page_size, element type, layout). One CTA serves one KV head of one
    sequence (or one chunk of it, with split-KV) and all of that KV head's
    query heads, so K and V are read once. Rows are read as 16-byte vectors,
    softmax is online in f32 registers and reductions are warp shuffles.

    The kernels take `num_splits` and `scale` as launch arguments, so one
    compiled pair serves every batch size, sequence length and scale. With
    `num_splits` 1 the decode kernel writes `out` directly; otherwise it
    writes per-chunk partial outputs and log-sum-exps into the workspace and
    the merge kernel combines them. The host code emitted here launches with
    the pass's `num-splits`; a runtime picks its own.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::memref::MemRefDialect",
    "::mlir::NVVM::NVVMDialect", "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
  let options = [
    Option<"numSplits", "num-splits", "int64_t", /*default=*/"1",
           "Chunks each sequence is split into by the emitted host code">,
    Option<"numWarps", "num-warps", "int64_t", /*default=*/"4",
           "Warps per CTA of the decode kernel">,
    Option<"tokensPerLaneGroup", "tokens-per-lane-group", "int64_t",
           /*default=*/"0",
           "Tokens a lane group loads per loop iteration (0: by registers)">,
    Option<"maxHeadsPerCTA", "max-heads-per-cta", "int64_t", /*default=*/"0",
           "Most query heads one CTA serves (0: by registers)">,
    Option<"prefetchPageTable", "prefetch-page-table", "std::string",
           /*default=*/"\"auto\"",
           "Load the next iteration's page-table entries during this one: "
           "auto (when a thread's softmax state is small), on or off">,
    Option<"minCTAsPerSM", "min-ctas-per-sm", "int64_t", /*default=*/"0",
           "CTAs per SM ptxas must fit the decode kernel to (0: no limit)">,
  ];
}

def ConvertPagedAttnToLoops : Pass<"convert-paged-attn-to-loops"> {
  let summary = "Lower the memref form of paged_attn.decode to scalar loops";
  let description = [{
    The reference semantics of `paged_attn.decode` as scf loops over memrefs
    with f32 accumulation and a two-pass (max, then sum) softmax. Meant for
    checking the op's meaning on the CPU, not for speed.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect", "::mlir::scf::SCFDialect"
  ];
}

#endif // PAGEDATTN_CONVERSION_PASSES_TD
