// RUN: lr-opt %s --split-input-file --lr-pack-sparse-weights | FileCheck %s

// 2 filters x 2 channels of 4-of-9 pattern kernels, one kernel removed: 3 kernels, 12 weights.
// FKW bytes (fkw_format): 12 header (magic + 8 one-byte varints) + 2 library (one 9-tap mask)
// + 1 structure byte (kernel counts 2 and 1: one bit each above the least; filter 0's only 2-of-2
// subset needs no rank bits, filter 1's 1-of-2 one; one pattern, so no pattern-id bits)
// + 12 weights * 4 = 63; CSR: 12 * 8 + 3 * 4 = 108; dense 18 * 4 = 144.
// CHECK-LABEL: func.func @pattern_kernel
// CHECK: lr.storage = {csr_bytes = 108 : i64, dense_bytes = 144 : i64, fkw_bytes = 63 : i64, kernels = 3 : i64, nnz = 12 : i64, patterns = 1 : i64
func.func @pattern_kernel(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [[0.0, 2.0, 0.0], [2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]], [[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 3.0, 0.0], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]]]]> : tensor<2x2x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, sparsity = #lr.sparsity<"pattern+kernel", [array<i64: 1, 3, 4, 5>], dense<[[0, 0], [-1, 0]]> : tensor<2x2xi32>>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

// Convs without sparsity are left alone.
// CHECK-LABEL: func.func @dense
// CHECK-NOT: lr.storage
func.func @dense(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<1x1x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %0 : tensor<1x1x4x4xf32>
}
