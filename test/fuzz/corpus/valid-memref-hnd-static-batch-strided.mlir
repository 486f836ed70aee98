func.func @memref_hnd_static_batch_strided(%q: memref<2x16x32xf32>,
    %k: memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>,
    %v: memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>,
    %bt: memref<2x5xi32>, %sl: memref<2xi32>, %o: memref<2x16x32xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<2x16x32xf32>)
    {layout = #paged_attn.kv_layout<hnd>, scale = 0.5 : f32}
    : memref<2x16x32xf32>, memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>,
      memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>, memref<2x5xi32>, memref<2xi32>
  return
}
