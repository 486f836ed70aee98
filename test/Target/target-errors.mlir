// The chip and PTX features are checked against the chip table before
// anything is lowered (stock LLVM would abort in instruction selection or
// crash on an empty chip), and the kernel options the pipeline forwards to
// paged-attn-select-decode-kernel are checked there.
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="chip=sm_75" 2>&1 | FileCheck %s --check-prefix=SM75
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="chip=" 2>&1 | FileCheck %s --check-prefix=EMPTY
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="chip=SM_90" 2>&1 | FileCheck %s --check-prefix=UPPER
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="chip=sm_100" 2>&1 | FileCheck %s --check-prefix=SM100
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="features=+ptx74" 2>&1 | FileCheck %s --check-prefix=OLDPTX
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="features=garbage" 2>&1 | FileCheck %s --check-prefix=GARBAGE
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="kv-stages=9" 2>&1 | FileCheck %s --check-prefix=STAGES
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="bogus=1" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_86 tensor-cores=off num-splits=2 emit-binary=false" | FileCheck %s --check-prefix=FORWARDED
// RUN: not paged-attn-compile %s --chip sm_90 --features +ptx60 -o %t 2>&1 | FileCheck %s --check-prefix=COMPILE60
// RUN: not paged-attn-compile %s --features garbage -o %t 2>&1 | FileCheck %s --check-prefix=COMPILEGARBAGE
// RUN: not paged-attn-compile %s --bogus=3 -o %t 2>&1 | FileCheck %s --check-prefix=COMPILEUNKNOWN

// SM75: unsupported chip 'sm_75' (expected sm_80, sm_86, sm_89, sm_90 or sm_90a)
// EMPTY: unsupported chip '' (expected
// UPPER: unsupported chip 'SM_90'
// SM100: unsupported chip 'sm_100'
// OLDPTX: PTX 7.4 cannot target sm_90: it needs +ptx78 or later
// GARBAGE: PTX features must be one +ptxNN of a PTX ISA version the compiler knows (+ptx70 to +ptx90), got 'garbage'
// STAGES: kv-stages must be in [2, 4], got 9
// UNKNOWN: unknown option 'bogus'
// FORWARDED: gpu.module @paged_attn_kernels [#nvvm.target<O = 3, chip = "sm_86", features = "+ptx74">]
// FORWARDED-NOT: ldmatrix
// FORWARDED: llvm.func @paged_attn_merge_h32_kv8_d128_p16_bf16_nhd_w4
// COMPILE60: paged-attn-compile: error: PTX features must be one +ptxNN
// COMPILEGARBAGE: paged-attn-compile: error: PTX features must be one +ptxNN
// COMPILEUNKNOWN: paged-attn-compile: error: unknown option '--bogus'

func.func @gqa4(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>,
                %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>,
                %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>)
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}
