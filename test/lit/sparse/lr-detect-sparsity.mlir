// RUN: lr-opt %s --split-input-file --lr-detect-sparsity | FileCheck %s

// A 4-of-9 kernel: a pattern, its library is the tap set found in the weights.
// CHECK-LABEL: func.func @pattern
// CHECK: sparsity = #lr.sparsity<"pattern", [array<i64: 1, 3, 4, 5>], dense<0> : tensor<1x1xi32>>
func.func @pattern(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[0.0, 1.0, 0.0], [2.0, 3.0, 4.0], [0.0, 0.0, 0.0]]]]> : tensor<1x1x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %0 : tensor<1x1x4x4xf32>
}

// -----

// A zero filter (output channel 0) in an otherwise dense 1x1 conv.
// CHECK-LABEL: func.func @filter
// CHECK: sparsity = #lr.sparsity<"filter", [], unit>
func.func @filter(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[0.0]], [[0.0]]], [[[1.0]], [[2.0]]]]> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

// Removed kernels in dense kernels elsewhere: connectivity pruning, -1 marks the removed kernel.
// CHECK-LABEL: func.func @kernel
// CHECK: sparsity = #lr.sparsity<"kernel", [], dense<{{\[\[}}0, -1], [0, 0]]> : tensor<2x2xi32>>
func.func @kernel(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]], [[0.0]]], [[[1.0]], [[2.0]]]]> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

// Dense weights get no attribute; an existing attribute (from lrprune) is kept as it is.
// CHECK-LABEL: func.func @dense_and_annotated
// CHECK: "lr.conv2d"(%arg0)
// CHECK-NOT: sparsity
// CHECK-SAME: tensor<1x1x4x4xf32>
// CHECK: sparsity = #lr.sparsity<"irregular", [], unit>
func.func @dense_and_annotated(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<1x1x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<1.0> : tensor<1x1x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, sparsity = #lr.sparsity<"irregular", [], unit>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %1 : tensor<1x1x4x4xf32>
}
