// RUN: lr-opt %s --lr-lower-to-kernels --lr-lower-to-llvm | FileCheck %s

// Float mul / add carry the contract flag, so that LLVM may fuse them into FMAs.
// CHECK: llvm.fadd {{.*}} {fastmathFlags = #llvm.fastmath<contract>} : vector<8xf32>
// CHECK: llvm.fmul {{.*}} {fastmathFlags = #llvm.fastmath<contract>} : vector<8xf32>
// CHECK: llvm.func @forward(
// CHECK: llvm.func @_mlir_ciface_forward(
// CHECK-NOT: scf.for
// CHECK-NOT: vector.load
func.func @forward(%x: tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32> {
  %0 = "lr.hardswish"(%x) : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32>
  return %0 : tensor<1x3x8x8xf32>
}
