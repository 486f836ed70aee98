func.func @decode(%q: tensor<?x32x128xbf16>, %k_cache: tensor<?x16x8x128xbf16>,
                  %v_cache: tensor<?x16x8x128xbf16>, %block_table: tensor<?x?xi32>,
                  %seq_lens: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %out = paged_attn.decode %q, %k_cache, %v_cache, %block_table, %seq_lens
           {layout = #paged_attn.kv_layout<nhd>}
         : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>,
           tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %out : tensor<?x32x128xbf16>
}
