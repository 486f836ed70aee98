// RUN: paged-attn-opt %s --paged-attn-to-ptx=tensor-cores=off | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-ptx | FileCheck %s --check-prefix=MMA
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_80" | FileCheck %s --check-prefix=SM80
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_80 features=+ptx70" | FileCheck %s --check-prefix=PTX70
// RUN: paged-attn-opt %s --paged-attn-to-ptx="emit-binary=false" | FileCheck %s --check-prefix=NVVM
// RUN: paged-attn-opt %s --paged-attn-to-ptx | FileCheck %s --check-prefix=NOLOCAL
// RUN: paged-attn-opt %s --paged-attn-to-ptx=tensor-cores=off | FileCheck %s --check-prefix=NOLOCAL

// Nothing anywhere in the PTX lives in local memory or calls libdevice.
// NOLOCAL-NOT: .local
// NOLOCAL-NOT: __nv_

// The whole pipeline from the tensor form ends in a gpu.binary holding PTX.
// CHECK: gpu.binary @paged_attn_kernels [#gpu.object<#nvvm.target<O = 3, chip = "sm_90", features = "+ptx80">
// CHECK-SAME: assembly = "
// CHECK-SAME: .target sm_90
// CHECK-SAME: .visible .entry paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4(
// Rows arrive as 16-byte loads, reductions are warp shuffles, exponentials
// single ex2.approx instructions, and nothing lives in local memory.
// CHECK-SAME: ld.global.v4.b32
// CHECK-SAME: shfl.sync.bfly.b32
// CHECK-SAME: ex2.approx.ftz.f32
// CHECK-SAME: .visible .entry paged_attn_merge_h32_kv8_d128_p16_bf16_nhd_w4(

// The tensor-core kernel (the default for this GQA config): K and V tiles
// arrive by cp.async into dynamic shared memory, which is declared as the
// unsized extern array it is, fragments come from ldmatrix (transposed for
// V) and the products are bf16 mma.sync with f32 accumulators. The decode
// lets its dependents launch and then waits for the grid before it; the
// merge waits for the decode grid and lets the grid after it launch only
// once it completes.
// MMA: assembly = "
// MMA-SAME: .extern .shared .align 16 .b8 __dynamic_shmem__0[]
// MMA-SAME: .visible .entry paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4(
// MMA-SAME: griddepcontrol.launch_dependents
// MMA-SAME: griddepcontrol.wait
// MMA-SAME: cp.async.cg.shared.global.L2::128B [%r{{[0-9]+}}], [%rd{{[0-9]+}}], 16
// MMA-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// MMA-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// MMA-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// MMA-SAME: .visible .entry paged_attn_merge_h32_kv8_d128_p16_bf16_nhd_w4(
// MMA-SAME: griddepcontrol.wait
// MMA-NOT: griddepcontrol.launch_dependents

// sm_80 has no griddepcontrol: the merge kernel is launched after the
// decode grid as usual. PTX 7.4 for the prefetch hint; with older PTX the
// copies go without it.
// SM80: #nvvm.target<O = 3, chip = "sm_80", features = "+ptx74">
// SM80-SAME: .target sm_80
// SM80-NOT: griddepcontrol
// SM80-SAME: cp.async.cg.shared.global.L2::128B
// SM80-NOT: griddepcontrol
// PTX70: #nvvm.target<O = 3, chip = "sm_80", features = "+ptx70">
// PTX70-NOT: L2::128B
// PTX70: cp.async.cg.shared.global [
// PTX70-NOT: L2::128B

// NVVM: gpu.module @paged_attn_kernels [#nvvm.target<O = 3, chip = "sm_90", features = "+ptx80">]
// NVVM: llvm.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4
// NVVM-SAME: nvvm.kernel
// NVVM: nvvm.shfl.sync bfly
// NVVM: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
func.func @decode(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>,
                  %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}
