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

// -----

// A slice of a slice along the same axis becomes one slice of the source; along another axis both
// stay; a whole-range slice is an identity; duplicate slices merge (CSE).
// CHECK-LABEL: func.func @slice_chains
// CHECK: %[[B:.*]] = "lr.slice"(%arg0) {axis = 1 : i64, end = 5 : i64, start = 1 : i64}
// CHECK: %[[A:.*]] = "lr.slice"(%arg0) {axis = 1 : i64, end = 4 : i64, start = 3 : i64}
// CHECK: %[[C:.*]] = "lr.slice"(%[[B]]) {axis = 2 : i64, end = 3 : i64, start = 1 : i64}
// CHECK-NOT: lr.slice
// CHECK: return %[[A]], %[[C]], %arg0, %[[A]]
func.func @slice_chains(%x: tensor<1x6x4x4xf32>) -> (tensor<1x1x4x4xf32>, tensor<1x4x2x4xf32>, tensor<1x6x4x4xf32>, tensor<1x1x4x4xf32>) {
  %0 = "lr.slice"(%x) {axis = 1 : i64, start = 1 : i64, end = 5 : i64} : (tensor<1x6x4x4xf32>) -> tensor<1x4x4x4xf32>
  %1 = "lr.slice"(%0) {axis = -3 : i64, start = 2 : i64, end = 3 : i64} : (tensor<1x4x4x4xf32>) -> tensor<1x1x4x4xf32>
  %2 = "lr.slice"(%0) {axis = 2 : i64, start = 1 : i64, end = 3 : i64} : (tensor<1x4x4x4xf32>) -> tensor<1x4x2x4xf32>
  %3 = "lr.slice"(%x) {axis = 1 : i64, start = 0 : i64, end = 6 : i64} : (tensor<1x6x4x4xf32>) -> tensor<1x6x4x4xf32>
  %4 = "lr.slice"(%x) {axis = 1 : i64, start = 3 : i64, end = 4 : i64} : (tensor<1x6x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %1, %2, %3, %4 : tensor<1x1x4x4xf32>, tensor<1x4x2x4xf32>, tensor<1x6x4x4xf32>, tensor<1x1x4x4xf32>
}
