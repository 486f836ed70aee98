func.func @result_shape(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x16x128xbf16> {
  %r = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x16x128xbf16>
  return %r : tensor<?x16x128xbf16>
}
