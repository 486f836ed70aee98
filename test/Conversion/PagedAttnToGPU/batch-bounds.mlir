// RUN: paged-attn-opt %s -split-input-file --convert-paged-attn-to-gpu -verify-diagnostics | FileCheck %s
// RUN: not paged-attn-opt %s -split-input-file --convert-paged-attn-to-gpu=num-splits=65536 2>&1 | FileCheck %s --check-prefix=SPLITS

// The batch and the splits are the launch's grid y and z: an empty static
// batch launches nothing, and sizes past the grid's limits are errors
// rather than launches no GPU accepts.

// CHECK-LABEL: func.func @empty_batch
// CHECK-NOT: gpu.launch_func
// CHECK: return
func.func @empty_batch(%q: memref<0x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>,
                       %bt: memref<0x?xi32>, %sl: memref<0xi32>, %o: memref<0x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<0x32x128xbf16>)
    : memref<0x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<0x?xi32>, memref<0xi32>
  return
}

// -----

func.func @batch_past_grid(%q: memref<70000x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>,
                           %bt: memref<70000x?xi32>, %sl: memref<70000xi32>, %o: memref<70000x32x128xbf16>) {
  // expected-error @+1 {{has a batch of 70000 sequences; one launch takes at most 65535}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<70000x32x128xbf16>)
    : memref<70000x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<70000x?xi32>, memref<70000xi32>
  return
}

// SPLITS: num-splits must be in [1, 65535], got 65536
