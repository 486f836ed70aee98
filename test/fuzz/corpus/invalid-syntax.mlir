func.func @broken(%q: memref<?x32x128xbf16>) {
  paged_attn.decode %q
}
