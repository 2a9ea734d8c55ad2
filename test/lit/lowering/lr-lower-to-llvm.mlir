// RUN: lr-opt %s --lr-lower-to-kernels --lr-lower-to-llvm | FileCheck %s

// CHECK: llvm.func @forward(
// CHECK: llvm.func @_mlir_ciface_forward(
// CHECK-NOT: scf.for
// CHECK-NOT: vector.load
func.func @forward(%x: tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32> {
  %0 = "lr.hardswish"(%x) : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32>
  return %0 : tensor<1x3x8x8xf32>
}
