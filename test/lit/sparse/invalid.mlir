// RUN: lr-opt %s --lr-pack-sparse-weights --verify-diagnostics

// The weights have a non-zero outside every pattern of the library: packing would drop it.
func.func @outside_pattern(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  // expected-error @+1 {{'lr.conv2d' sparsity: kernel (0, 0) has non-zeros at [0, 1, 3, 4, 5], which no pattern of the library covers}}
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[9.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]]> : tensor<1x1x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, sparsity = #lr.sparsity<"pattern", [array<i64: 1, 3, 4, 5>], dense<0> : tensor<1x1xi32>>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %0 : tensor<1x1x4x4xf32>
}
