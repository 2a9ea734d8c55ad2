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

// elu's three attributes become its act_params (alpha, scale, input_scale); gelu's approximate
// attribute picks the act: "gelu" (erf) or "gelu_tanh".
// CHECK-LABEL: func.func @conv_elu
// CHECK: act = "elu", act_params = array<f64: 5.000000e-01, 2.000000e+00, 1.000000e+00>
// CHECK-NOT: lr.elu
// CHECK-LABEL: func.func @conv_gelu
// CHECK: act = "gelu_tanh"
// CHECK: act = "gelu"
// CHECK-NOT: lr.gelu
// CHECK-LABEL: func.func @linear_silu
// CHECK: "lr.linear"{{.*}}act = "silu"
// CHECK-NOT: lr.silu
func.func @conv_elu(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.elu"(%0) {alpha = 0.5 : f64, scale = 2.0 : f64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}
func.func @conv_gelu(%x: tensor<1x2x4x4xf32>) -> (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) {
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.gelu"(%0) {approximate = "tanh"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %3 = "lr.gelu"(%2) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1, %3 : tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>
}
func.func @linear_silu(%v: tensor<2x3xf32>) -> tensor<2x5xf32> {
  %0 = "lr.linear"(%v) {weight = dense<1.0> : tensor<5x3xf32>} : (tensor<2x3xf32>) -> tensor<2x5xf32>
  %1 = "lr.silu"(%0) : (tensor<2x5xf32>) -> tensor<2x5xf32>
  return %1 : tensor<2x5xf32>
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
