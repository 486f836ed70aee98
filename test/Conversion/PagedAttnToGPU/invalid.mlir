// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu -split-input-file -verify-diagnostics
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu=num-splits=0 -split-input-file 2>&1 | FileCheck %s --check-prefix=SPLITS

// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu=prefetch-page-table=sometimes -split-input-file 2>&1 | FileCheck %s --check-prefix=PREFETCH
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu=tokens-per-lane-group=17 -split-input-file 2>&1 | FileCheck %s --check-prefix=UNROLL

// SPLITS: num-splits must be at least 1, got 0
// PREFETCH: prefetch-page-table must be auto, on or off, got 'sometimes'
// UNROLL: tokens-per-lane-group must be in [0, 16], got 17

func.func @tensor_form(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>,
                       %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{must be bufferized (memref form) before convert-paged-attn-to-gpu}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}
