func.func @nan(%q: tensor<?x8x64xf16>, %k: tensor<?x16x2x64xf16>, %v: tensor<?x16x2x64xf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x8x64xf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {scale = 0x7FC00000 : f32} : tensor<?x8x64xf16>, tensor<?x16x2x64xf16>, tensor<?x16x2x64xf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x8x64xf16>
  return %o : tensor<?x8x64xf16>
}
