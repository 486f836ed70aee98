func.func @misspelt(%q: tensor<?x8x64xf16>, %k: tensor<?x2x16x64xf16>, %v: tensor<?x2x16x64xf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x8x64xf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {layuot = #paged_attn.kv_layout<hnd>} : tensor<?x8x64xf16>, tensor<?x2x16x64xf16>, tensor<?x2x16x64xf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}
