// RUN: lr-opt %s --split-input-file --lr-fold-batch-norm | FileCheck %s

// BN(mean=[1,2], var=[4,1], eps=0) after a conv of ones: scale=[0.5,1], bias=-mean*scale.
// CHECK-LABEL: func.func @fold_into_conv
// CHECK-NOT: lr.batch_norm
// CHECK: "lr.conv2d"(%arg0) {bias = dense<[-5.000000e-01, -2.000000e+00]> : tensor<2xf32>
// CHECK-SAME: weight = dense<{{\[\[\[\[}}5.000000e-01
func.func @fold_into_conv(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.batch_norm"(%0) {mean = dense<[1.0, 2.0]> : tensor<2xf32>, var = dense<[4.0, 1.0]> : tensor<2xf32>, eps = 0.0 : f64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// A conv whose result has a second user cannot absorb the BN: the other user needs the raw value.
// CHECK-LABEL: func.func @conv_has_two_users
// CHECK: lr.conv2d
// CHECK: lr.batch_norm
func.func @conv_has_two_users(%x: tensor<1x2x4x4xf32>) -> (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.batch_norm"(%0) {mean = dense<0.0> : tensor<2xf32>, var = dense<1.0> : tensor<2xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0, %1 : tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>
}

// -----

// BN on a block argument has no producer to fold into and stays.
// CHECK-LABEL: func.func @no_producer
// CHECK: lr.batch_norm
func.func @no_producer(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %1 = "lr.batch_norm"(%x) {mean = dense<0.0> : tensor<2xf32>, var = dense<1.0> : tensor<2xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// Folding into a linear layer scales its rows.
// CHECK-LABEL: func.func @fold_into_linear
// CHECK-NOT: lr.batch_norm
// CHECK: "lr.linear"(%arg0) {bias = dense<[0.000000e+00, 3.000000e+00]>
func.func @fold_into_linear(%x: tensor<1x3xf32>) -> tensor<1x2xf32> {
  %0 = "lr.linear"(%x) {weight = dense<1.0> : tensor<2x3xf32>} : (tensor<1x3xf32>) -> tensor<1x2xf32>
  %1 = "lr.batch_norm"(%0) {mean = dense<0.0> : tensor<2xf32>, var = dense<1.0> : tensor<2xf32>, bias = dense<[0.0, 3.0]> : tensor<2xf32>, eps = 0.0 : f64} : (tensor<1x2xf32>) -> tensor<1x2xf32>
  return %1 : tensor<1x2xf32>
}
