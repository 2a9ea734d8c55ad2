// Every op parses, verifies and prints back the same (round trip through the generic form).
// RUN: lr-opt %s | lr-opt | FileCheck %s

// CHECK-LABEL: func.func @all_ops
func.func @all_ops(%x: tensor<1x4x8x8xf32>, %v: tensor<2x3xf32>) -> (tensor<1x4x8x8xf32>, tensor<2x5xf32>) {
  // CHECK: "lr.conv2d"(%arg0) {act = "relu", padding = array<i64: 1, 1, 1, 1>, sparsity = #lr.sparsity<"pattern", [array<i64: 1, 3, 4, 5>], dense<0> : tensor<4x4xi32>>, weight =
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<4x4x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, act = "relu", sparsity = #lr.sparsity<"pattern", [array<i64: 1, 3, 4, 5>], dense<0> : tensor<4x4xi32>>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.conv2d"(%{{.*}}, %{{.*}}) {groups = 4 : i64
  %1 = "lr.conv2d"(%0, %x) {weight = dense<1.0> : tensor<4x1x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, groups = 4 : i64} : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.batch_norm"
  %2 = "lr.batch_norm"(%1) {mean = dense<0.0> : tensor<4xf32>, var = dense<1.0> : tensor<4xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.instance_norm"
  %3 = "lr.instance_norm"(%2) {eps = 1.0e-3 : f64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.relu6"
  %4 = "lr.relu6"(%3) : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.leaky_relu"{{.*}}alpha = 1.000000e-01
  %5 = "lr.leaky_relu"(%4) {alpha = 0.1 : f64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.prelu"
  %6 = "lr.prelu"(%5) {slope = dense<0.25> : tensor<4xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.max_pool2d"
  %7 = "lr.max_pool2d"(%6) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  // CHECK: "lr.upsample"{{.*}}mode = "bilinear"
  %8 = "lr.upsample"(%7) {mode = "bilinear", size = array<i64: 8, 8>} : (tensor<1x4x4x4xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.concat"{{.*}}axis = 1
  %9 = "lr.concat"(%8, %x) {axis = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  // CHECK: "lr.pixel_shuffle"
  %10 = "lr.pixel_shuffle"(%9) {factor = 2 : i64} : (tensor<1x8x8x8xf32>) -> tensor<1x2x16x16xf32>
  // CHECK: "lr.avg_pool2d"
  %11 = "lr.avg_pool2d"(%10) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>} : (tensor<1x2x16x16xf32>) -> tensor<1x2x8x8xf32>
  // CHECK: "lr.pad"{{.*}}mode = "reflect"
  %12 = "lr.pad"(%11) {pads = array<i64: 1, 1, 1, 1>, mode = "reflect"} : (tensor<1x2x8x8xf32>) -> tensor<1x2x10x10xf32>
  // CHECK: "lr.conv_transpose2d"
  %13 = "lr.conv_transpose2d"(%12) {weight = dense<1.0> : tensor<2x4x3x3xf32>, padding = array<i64: 2, 2>} : (tensor<1x2x10x10xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.mul"
  %14 = "lr.mul"(%13, %x) : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.slice"{{.*}}axis = 1 : i64, end = 3 : i64, start = 1 : i64
  %sl = "lr.slice"(%14) {axis = 1 : i64, start = 1 : i64, end = 3 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x2x8x8xf32>
  // CHECK: "lr.softmax"{{.*}}axis = 1 : i64, log = true
  %sm = "lr.softmax"(%14) {axis = 1 : i64, log = true} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.reduce"{{.*}}axes = array<i64: 2, 3>, keepdim = true, kind = "max"
  %rd = "lr.reduce"(%14) {kind = "max", axes = array<i64: 2, 3>, keepdim = true} : (tensor<1x4x8x8xf32>) -> tensor<1x4x1x1xf32>
  // CHECK: "lr.maximum"
  %mx = "lr.maximum"(%14, %x) : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.hardsigmoid"
  %a0 = "lr.hardsigmoid"(%14) : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.silu"
  %a1 = "lr.silu"(%a0) : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.gelu"{{.*}}approximate = "tanh"
  %a2 = "lr.gelu"(%a1) {approximate = "tanh"} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.elu"{{.*}}alpha = 5.000000e-01
  %a3 = "lr.elu"(%a2) {alpha = 0.5 : f64} : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  // CHECK: "lr.adaptive_avg_pool2d"
  %15 = "lr.adaptive_avg_pool2d"(%12) {output_size = array<i64: 3, 3>} : (tensor<1x2x10x10xf32>) -> tensor<1x2x3x3xf32>
  // CHECK: "lr.linear"
  %16 = "lr.linear"(%v) {weight = dense<1.0> : tensor<5x3xf32>, act = "hardswish"} : (tensor<2x3xf32>) -> tensor<2x5xf32>
  // CHECK: "lr.permute"
  %17 = "lr.permute"(%16) {dims = array<i64: 1, 0>} : (tensor<2x5xf32>) -> tensor<5x2xf32>
  // CHECK: "lr.reshape"
  %18 = "lr.reshape"(%17) : (tensor<5x2xf32>) -> tensor<2x5xf32>
  return %14, %18 : tensor<1x4x8x8xf32>, tensor<2x5xf32>
}
