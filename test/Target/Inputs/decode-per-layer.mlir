// A decode per layer in a loop, over each layer's slice of a stacked KV
// cache and into its slice of the output: subviews at the loop's index.
func.func @layers(%q: memref<?x8x64xbf16>, %k: memref<?x?x16x2x64xbf16>,
                  %v: memref<?x?x16x2x64xbf16>, %bt: memref<?x?xi32>,
                  %sl: memref<?xi32>, %o: memref<?x?x8x64xbf16>)
    attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %layers = memref.dim %k, %c0 : memref<?x?x16x2x64xbf16>
  %pages = memref.dim %k, %c1 : memref<?x?x16x2x64xbf16>
  %batch = memref.dim %q, %c0 : memref<?x8x64xbf16>
  scf.for %l = %c0 to %layers step %c1 {
    %kl = memref.subview %k[%l, 0, 0, 0, 0] [1, %pages, 16, 2, 64] [1, 1, 1, 1, 1]
        : memref<?x?x16x2x64xbf16> to memref<?x16x2x64xbf16, strided<[2048, 128, 64, 1], offset: ?>>
    %vl = memref.subview %v[%l, 0, 0, 0, 0] [1, %pages, 16, 2, 64] [1, 1, 1, 1, 1]
        : memref<?x?x16x2x64xbf16> to memref<?x16x2x64xbf16, strided<[2048, 128, 64, 1], offset: ?>>
    %ol = memref.subview %o[%l, 0, 0, 0] [1, %batch, 8, 64] [1, 1, 1, 1]
        : memref<?x?x8x64xbf16> to memref<?x8x64xbf16, strided<[512, 64, 1], offset: ?>>
    paged_attn.decode %q, %kl, %vl, %bt, %sl
        outs(%ol : memref<?x8x64xbf16, strided<[512, 64, 1], offset: ?>>)
        : memref<?x8x64xbf16>, memref<?x16x2x64xbf16, strided<[2048, 128, 64, 1], offset: ?>>,
          memref<?x16x2x64xbf16, strided<[2048, 128, 64, 1], offset: ?>>,
          memref<?x?xi32>, memref<?xi32>
  }
  return
}
