func.func @q_element_type(%q: memref<?x32x128xi8>, %k: memref<?x16x8x128xi8>, %v: memref<?x16x8x128xi8>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xi8>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xi8>) : memref<?x32x128xi8>, memref<?x16x8x128xi8>, memref<?x16x8x128xi8>, memref<?x?xi32>, memref<?xi32>
  return
}
