// RUN: lr-opt %s --lr-lower-to-kernels --verify-diagnostics

func.func @forward(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'math.exp' is not an lr op; run lr-raise-torch first}}
  %0 = math.exp %x : tensor<4xf32>
  return %0 : tensor<4xf32>
}
