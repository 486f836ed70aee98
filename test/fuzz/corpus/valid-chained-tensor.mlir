func.func @chained(%q: tensor<?x16x128xf16>, %k: tensor<?x2x16x128xf16>, %v: tensor<?x2x16x128xf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x16x128xf16> {
  %r0 = paged_attn.decode %q, %k, %v, %bt, %sl {layout = #paged_attn.kv_layout<hnd>} : tensor<?x16x128xf16>, tensor<?x2x16x128xf16>, tensor<?x2x16x128xf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x16x128xf16>
  %r1 = paged_attn.decode %r0, %k, %v, %bt, %sl {layout = #paged_attn.kv_layout<hnd>} : tensor<?x16x128xf16>, tensor<?x2x16x128xf16>, tensor<?x2x16x128xf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x16x128xf16>
  return %r1 : tensor<?x16x128xf16>
}
