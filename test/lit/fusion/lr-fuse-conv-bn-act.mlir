// RUN: lr-opt %s --split-input-file --lr-fuse-conv-bn-act | FileCheck %s
// RUN: lr-opt %s --split-input-file --pass-pipeline='builtin.module(lr-fuse-conv-bn-act{fold-bn=false})' | FileCheck %s --check-prefix=NOBN

// CHECK-LABEL: func.func @conv_bn_relu
// CHECK: "lr.conv2d"(%arg0) {act = "relu", bias = dense<[-5.000000e-01, -2.000000e+00]>
// CHECK-NOT: lr.batch_norm
// CHECK-NOT: lr.relu
// NOBN-LABEL: func.func @conv_bn_relu
// NOBN: lr.batch_norm
// NOBN: lr.relu
func.func @conv_bn_relu(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.batch_norm"(%0) {mean = dense<[1.0, 2.0]> : tensor<2xf32>, var = dense<[4.0, 1.0]> : tensor<2xf32>, eps = 0.0 : f64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = "lr.relu"(%1) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %2 : tensor<1x2x4x4xf32>
}

// -----

// Parameterized activations carry their parameters into act_params.
// CHECK-LABEL: func.func @conv_leaky
// CHECK: act = "leaky_relu", act_params = array<f64: 2.000000e-01>
// CHECK-LABEL: func.func @conv_clamp
// CHECK: act = "clamp", act_params = array<f64: -1.000000e+00, 1.000000e+00>
func.func @conv_leaky(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.leaky_relu"(%0) {alpha = 0.2 : f64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}
func.func @conv_clamp(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.clamp"(%0) {min = -1.0 : f64, max = 1.0 : f64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// Two activations in a row: only the first fuses (the conv has one act slot).
// CHECK-LABEL: func.func @two_acts
// CHECK: act = "relu"
// CHECK: lr.sigmoid
func.func @two_acts(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.relu"(%0) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = "lr.sigmoid"(%1) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %2 : tensor<1x2x4x4xf32>
}
