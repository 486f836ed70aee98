func.func @tensor_hnd_static_batch(%q: tensor<4x8x64xf16>, %k: tensor<100x2x16x64xf16>,
    %v: tensor<100x2x16x64xf16>, %bt: tensor<4x7xi32>, %sl: tensor<4xi32>) -> tensor<4x8x64xf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {layout = #paged_attn.kv_layout<hnd>}
       : tensor<4x8x64xf16>, tensor<100x2x16x64xf16>, tensor<100x2x16x64xf16>,
         tensor<4x7xi32>, tensor<4xi32> -> tensor<4x8x64xf16>
  return %o : tensor<4x8x64xf16>
}
