// Debian's stock mlir-opt runs paged_attn's passes from the plugin: the
// tensor form through bufferization to loops.
// RUN: mlir-opt-22 --load-dialect-plugin=%paged_attn_plugin --load-pass-plugin=%paged_attn_plugin %s \
// RUN:   --pass-pipeline="builtin.module(one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map},convert-paged-attn-to-loops)" \
// RUN:   | FileCheck %s
// RUN: not mlir-opt-22 --load-dialect-plugin=%paged_attn_plugin --load-pass-plugin=%paged_attn_plugin %s \
// RUN:   --pass-pipeline="builtin.module(convert-paged-attn-to-gpu)" 2>&1 | FileCheck %s --check-prefix=GPU
// The chip is checked there too, before anything is lowered.
// RUN: not mlir-opt-22 --load-dialect-plugin=%paged_attn_plugin --load-pass-plugin=%paged_attn_plugin %s \
// RUN:   --pass-pipeline="builtin.module(paged-attn-to-ptx{chip=sm_75})" 2>&1 | FileCheck %s --check-prefix=CHIP
// CHIP: unsupported chip 'sm_75' (expected sm_80, sm_86, sm_89, sm_90 or sm_90a)
// (Plugin passes are reachable through --pass-pipeline only: mlir-opt
// parses its own flags before it loads the plugin.)

// CHECK-LABEL: func.func @decode
// CHECK: memref.alloc
// CHECK: scf.for
// CHECK: math.exp
// CHECK-NOT: paged_attn.decode

// GPU: error: 'paged_attn.decode' op must be bufferized (memref form) before convert-paged-attn-to-gpu
func.func @decode(%q: tensor<?x8x64xf32>, %k: tensor<?x16x2x64xf32>, %v: tensor<?x16x2x64xf32>,
                  %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x8x64xf32> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl
       : tensor<?x8x64xf32>, tensor<?x16x2x64xf32>, tensor<?x16x2x64xf32>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x8x64xf32>
  return %o : tensor<?x8x64xf32>
}
