//===- Passes.td - paged_attn conversion passes ------------*- tablegen -*-===//

#ifndef PAGEDATTN_CONVERSION_PASSES_TD
#define PAGEDATTN_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

// The decode kernels' code-generation options: declared once, shared by the
// passes that choose a kernel strategy (DecodeKernelOptions is their typed
// form; paged-attn-to-ptx, paged-attn-to-host and paged-attn-compile
// forward them here).
defvar PagedAttn_DecodeKernelOptions = [
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
  Option<"tensorCores", "tensor-cores", "std::string", /*default=*/"\"auto\"",
         "Decode with mma.sync over the query group: auto (16-bit q, "
         "groups of 4 or more heads), on (wherever supported) or off">,
  Option<"kvStages", "kv-stages", "int64_t", /*default=*/"3",
         "Shared-memory K/V tiles per warp of the tensor-core kernel "
         "(2 to 4; a ring that a multi-token CTA's row groups share holds "
         "this many per sharing warp)">,
  Option<"l2Prefetch", "l2-prefetch", "int64_t", /*default=*/"128",
         "Bytes the tensor-core kernel's cp.async copies ask L2 to fetch "
         "around each request: 0 (no hint), 64, 128 or 256">,
  Option<"sharedMemoryLimit", "shared-memory-limit", "int64_t",
         /*default=*/"0",
         "Shared memory a CTA may use on the target in bytes (0: no "
         "limit); the tensor-core kernel drops stages to fit, or gives way "
         "to the CUDA-core kernel">,
  Option<"programmaticLaunch", "programmatic-launch", "bool",
         /*default=*/"false",
         "Let the merge kernel launch while the decode grid runs, and the "
         "decode kernel while the grid before it drains (griddepcontrol, "
         "sm_90 and later); the runtime launches them with programmatic "
         "stream serialization">,
  Option<"fp8Conversions", "fp8-conversions", "bool", /*default=*/"false",
         "The target converts fp8 pairs to f16 in one instruction "
         "(cvt.rn.f16x2.e4m3x2: sm_89 with PTX 8.1, sm_90 with PTX 7.8): "
         "fp8 caches are widened with it rather than with integer "
         "arithmetic">,
];

def SelectDecodeKernel
    : Pass<"paged-attn-select-decode-kernel", "ModuleOp"> {
  let summary = "Choose each decode op's kernel strategy and record it";
  let description = [{
    Decides, for every `paged_attn.decode` op without one, how it is lowered
    to GPU kernels, and records the choice on the op as the discardable
    attribute `paged_attn.strategy` (a `#paged_attn.decode_strategy`):
    which decode kernel (tensor cores for a 16-bit q with head_dim a
    multiple of 16 up to 256, of 32 with fp8 caches, when `tensor-cores`
    asks for them and the kernel fits the shared memory, else CUDA cores),
    whether fp8 caches are widened with the target's conversion
    instructions, its warps, query heads
    per CTA, the tensor-core kernel's shared-memory stages and L2 prefetch
    hint, the CUDA-core kernel's tokens per lane group and page-table
    prefetch. `convert-paged-attn-to-gpu` builds what the attribute says, and
    `paged-attn-compile` reads it back into the manifest. `paged-attn-to-ptx`
    and `paged-attn-to-host` run this pass with the limits of their chip.
    A `paged_attn.append` into fp8 caches is marked
    `paged_attn.fp8_conversion` where `fp8-conversions` is set (its kernel
    then converts with `cvt.rn.satfinite`).
  }];
  let options = PagedAttn_DecodeKernelOptions;
}

def ConvertPagedAttnToGPU : Pass<"convert-paged-attn-to-gpu", "ModuleOp"> {
  let summary = "Lower the memref form of paged_attn.decode to GPU kernels";
  let description = [{
    Replaces each memref-form `paged_attn.decode` with host-side
    `gpu.launch_func` ops and adds to a `gpu.module` a decode kernel and a
    split-KV merge kernel specialised on (num_heads, num_kv_heads, head_dim,
    page_size, element type, layout). One CTA serves one KV head of one
    sequence (or one chunk of it, with split-KV) and all of that KV head's
    query heads, so K and V are read once. Softmax is online, in f32.

    Two decode kernels compute this. The tensor-core one (`tensor-cores`
    auto: a 16-bit q, head_dim a multiple of 16 up to 256 (of 32 with fp8
    caches), four or more query heads per KV head) streams 16-token K/V tiles per warp into
    dynamic shared memory with cp.async, `kv-stages` deep, and computes
    Q*K^T and (V^T * P^T) with mma.sync; its launch asks for that dynamic
    shared memory. The CUDA-core one reads rows as 16-byte vectors into
    registers, with lanes of a row reducing by warp shuffles.

    An op's kernels are those of its `paged_attn.strategy` attribute (set by
    `paged-attn-select-decode-kernel`, or by hand: it is checked against the
    op); an op without one gets the strategy this pass's options select.

    The kernels take `num_splits` and `scale` as launch arguments, so one
    compiled pair serves every batch size, sequence length and scale. With
    `num_splits` 1 the decode kernel writes `out` directly; otherwise it
    writes per-chunk partial outputs and log-sum-exps into the workspace and
    the merge kernel combines them. The host code emitted here launches with
    the pass's `num-splits`; a runtime picks its own.

    A memref-form `paged_attn.merge` becomes a launch of the merge kernel
    built for its dtype, and a memref-form `paged_attn.append` a launch of
    its append kernel: a group of lanes per (new token, KV head) row moving
    16-byte pieces, quantising for fp8 caches (with `cvt.rn.satfinite` where
    the selection marked the op `paged_attn.fp8_conversion`), over
    ceil(T * num_kv_heads / rows per CTA) CTAs.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::memref::MemRefDialect",
    "::mlir::NVVM::NVVMDialect", "::mlir::nvgpu::NVGPUDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect"
  ];
  let options = !listconcat([
    Option<"numSplits", "num-splits", "int64_t", /*default=*/"1",
           "Chunks each sequence is split into by the emitted host code">],
    PagedAttn_DecodeKernelOptions);
}

def ConvertPagedAttnToLoops : Pass<"convert-paged-attn-to-loops"> {
  let summary = "Lower the memref form of paged_attn.decode to scalar loops";
  let description = [{
    The reference semantics of `paged_attn.decode` as scf loops over memrefs
    with f32 accumulation and a two-pass (max, then sum) softmax, of
    `paged_attn.merge`, and of `paged_attn.append` element by element. Meant
    for checking the ops' meaning on the CPU, not for speed.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect", "::mlir::scf::SCFDialect"
  ];
}

def ExternDynamicSharedMemory
    : Pass<"paged-attn-extern-dynamic-shared-memory", "::mlir::gpu::GPUModuleOp"> {
  let summary = "Declare dynamic shared memory as `.extern .shared` in PTX";
  let description = [{
    `convert-gpu-to-nvvm` lowers `gpu.dynamic_shared_memory` to an internal
    zero-length `llvm.mlir.global` in address space 3, which the NVPTX back
    end prints as a one-byte static `.shared` variable: accesses past its
    first byte then only work because the dynamic allocation happens to
    follow it. This pass gives those globals external linkage, so the PTX
    declares the unsized `.extern .shared` array that dynamic shared memory
    is. Runs after `convert-gpu-to-nvvm`, inside the `gpu.module`.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // PAGEDATTN_CONVERSION_PASSES_TD
