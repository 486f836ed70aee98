func.func @loop(%q: memref<?x8x64xbf16>, %k: memref<?x128x8x64xbf16>, %v: memref<?x128x8x64xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xbf16>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = arith.constant 3 : index
  scf.for %i = %c0 to %n step %c1 {
    paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xbf16>) : memref<?x8x64xbf16>, memref<?x128x8x64xbf16>, memref<?x128x8x64xbf16>, memref<?x?xi32>, memref<?xi32>
  }
  return
}
