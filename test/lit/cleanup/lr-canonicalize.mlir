// RUN: lr-opt %s --split-input-file --lr-canonicalize | FileCheck %s

// CHECK-LABEL: func.func @identities
// CHECK-NEXT: return %arg0
func.func @identities(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.reshape"(%x) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.pad"(%0) {pads = array<i64: 0, 0, 0, 0>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = "lr.permute"(%1) {dims = array<i64: 0, 1, 2, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %2 : tensor<1x2x4x4xf32>
}

// -----

// Dead layers go (lr ops are Pure); reshape chains collapse to one reshape.
// CHECK-LABEL: func.func @dead_and_chain
// CHECK-NOT: lr.relu
// CHECK: %[[R:.*]] = "lr.reshape"(%arg0) : (tensor<1x2x4x4xf32>) -> tensor<32xf32>
// CHECK-NEXT: return %[[R]]
func.func @dead_and_chain(%x: tensor<1x2x4x4xf32>) -> tensor<32xf32> {
  %dead = "lr.relu"(%x) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %0 = "lr.reshape"(%x) : (tensor<1x2x4x4xf32>) -> tensor<2x16xf32>
  %1 = "lr.reshape"(%0) : (tensor<2x16xf32>) -> tensor<32xf32>
  return %1 : tensor<32xf32>
}
