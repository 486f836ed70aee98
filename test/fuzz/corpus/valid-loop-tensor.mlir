func.func @loop(%q: tensor<2x32x64xf32>, %k: tensor<7x1x4x64xf32>, %v: tensor<7x1x4x64xf32>, %bt: tensor<2x7xi32>, %sl: tensor<2xi32>) -> tensor<2x32x64xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = arith.constant 2 : index
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %q) -> (tensor<2x32x64xf32>) {
    %d = paged_attn.decode %acc, %k, %v, %bt, %sl {scale = 1.0 : f32} : tensor<2x32x64xf32>, tensor<7x1x4x64xf32>, tensor<7x1x4x64xf32>, tensor<2x7xi32>, tensor<2xi32> -> tensor<2x32x64xf32>
    scf.yield %d : tensor<2x32x64xf32>
  }
  return %r : tensor<2x32x64xf32>
}
