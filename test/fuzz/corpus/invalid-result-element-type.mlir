func.func @result_element_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xf32> {
  %r = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xf32>
  return %r : tensor<?x32x128xf32>
}
