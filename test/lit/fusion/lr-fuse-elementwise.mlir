// RUN: lr-opt %s --split-input-file --lr-fuse-elementwise | FileCheck %s

// ResNet tail: conv + residual add + relu becomes one conv with a residual operand.
// CHECK-LABEL: func.func @residual_relu
// CHECK: %[[C:.*]] = "lr.conv2d"(%arg0, %arg1) {act = "relu"
// CHECK-NOT: lr.add
// CHECK-NOT: lr.relu
// CHECK: return %[[C]]
func.func @residual_relu(%x: tensor<1x2x4x4xf32>, %r: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.add"(%r, %0) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = "lr.relu"(%1) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %2 : tensor<1x2x4x4xf32>
}

// -----

// A per-channel constant add is a bias.
// CHECK-LABEL: func.func @bias_add
// CHECK: "lr.conv2d"(%arg0) {bias = dense<[1.500000e+00, 2.500000e+00]>
// CHECK-NOT: lr.add
func.func @bias_add(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %b = arith.constant dense<[[[1.0]], [[2.0]]]> : tensor<2x1x1xf32>
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, bias = dense<0.5> : tensor<2xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.add"(%0, %b) : (tensor<1x2x4x4xf32>, tensor<2x1x1xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// A broadcasting add that is neither a bias nor a same-shape residual stays.
// CHECK-LABEL: func.func @row_broadcast
// CHECK: lr.conv2d
// CHECK: lr.add
func.func @row_broadcast(%x: tensor<1x2x4x4xf32>, %r: tensor<4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.add"(%0, %r) : (tensor<1x2x4x4xf32>, tensor<4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// A conv that already has an activation cannot take a residual (the add would come after it).
// CHECK-LABEL: func.func @act_before_add
// CHECK: "lr.conv2d"(%arg0) {act = "relu"
// CHECK: lr.add
func.func @act_before_add(%x: tensor<1x2x4x4xf32>, %r: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, act = "relu"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.add"(%0, %r) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}
