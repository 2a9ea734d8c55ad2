// RUN: lr-opt %s --split-input-file --lr-sink-upsample | FileCheck %s
// RUN: lr-opt %s --split-input-file --lr-sink-upsample --lr-fuse-elementwise | FileCheck %s --check-prefix=REFUSE

// MSG-Net's upsample bottleneck: nearest x2, instance norm, relu, 1x1 conv. All three run at the
// input's size; the upsample ends up last, on the conv's (narrower) result.
// CHECK-LABEL: func.func @norm_relu_conv
// CHECK: %[[N:.*]] = "lr.instance_norm"(%arg0){{.*}} -> tensor<1x4x3x5xf32>
// CHECK: %[[R:.*]] = "lr.relu"(%[[N]]){{.*}} -> tensor<1x4x3x5xf32>
// CHECK: %[[C:.*]] = "lr.conv2d"(%[[R]]){{.*}} -> tensor<1x2x3x5xf32>
// CHECK: %[[U:.*]] = "lr.upsample"(%[[C]]) {{.*}}size = array<i64: 6, 10>{{.*}} -> tensor<1x2x6x10xf32>
// CHECK: return %[[U]]
func.func @norm_relu_conv(%x: tensor<1x4x3x5xf32>) -> tensor<1x2x6x10xf32> {
  %0 = "lr.upsample"(%x) {mode = "nearest", size = array<i64: 6, 10>} : (tensor<1x4x3x5xf32>) -> tensor<1x4x6x10xf32>
  %1 = "lr.instance_norm"(%0) : (tensor<1x4x6x10xf32>) -> tensor<1x4x6x10xf32>
  %2 = "lr.relu"(%1) : (tensor<1x4x6x10xf32>) -> tensor<1x4x6x10xf32>
  %3 = "lr.conv2d"(%2) {weight = dense<0.5> : tensor<2x4x1x1xf32>, act = "relu"} : (tensor<1x4x6x10xf32>) -> tensor<1x2x6x10xf32>
  return %3 : tensor<1x2x6x10xf32>
}

// -----

// A 1x1 conv with a fused residual becomes conv -> upsample -> add; lr-fuse-elementwise then fuses
// the add into the conv that produces the residual (the decoder's main path).
// CHECK-LABEL: func.func @residual_shortcut
// CHECK: %[[M:.*]] = "lr.conv2d"(%arg1)
// CHECK: %[[C:.*]] = "lr.conv2d"(%arg0) {{.*}} -> tensor<1x2x2x2xf32>
// CHECK: %[[U:.*]] = "lr.upsample"(%[[C]])
// CHECK: %[[A:.*]] = "lr.add"(%[[U]], %[[M]])
// CHECK: return %[[A]]
// REFUSE-LABEL: func.func @residual_shortcut
// REFUSE: %[[C:.*]] = "lr.conv2d"(%arg0) {{.*}} -> tensor<1x2x2x2xf32>
// REFUSE: %[[U:.*]] = "lr.upsample"(%[[C]])
// REFUSE: %[[M:.*]] = "lr.conv2d"(%arg1, %[[U]])
// REFUSE-NOT: lr.add
// REFUSE: return %[[M]]
func.func @residual_shortcut(%x: tensor<1x4x2x2xf32>, %y: tensor<1x3x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %m = "lr.conv2d"(%y) {weight = dense<0.25> : tensor<2x3x1x1xf32>} : (tensor<1x3x4x4xf32>) -> tensor<1x2x4x4xf32>
  %0 = "lr.upsample"(%x) {mode = "nearest", size = array<i64: 4, 4>, scales = array<f64: 2.0, 2.0>} : (tensor<1x4x2x2xf32>) -> tensor<1x4x4x4xf32>
  %1 = "lr.conv2d"(%0, %m) {weight = dense<0.5> : tensor<2x4x1x1xf32>} : (tensor<1x4x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// Left alone: bilinear (mixes pixels), a non-integer factor, a 3x3 conv, a pad, and an upsample
// with two users.
// CHECK-LABEL: func.func @not_moved
// CHECK: "lr.upsample"(%arg0) {mode = "bilinear"
// CHECK-NEXT: "lr.relu"
// CHECK: "lr.upsample"(%arg0) {{.*}}size = array<i64: 5, 5>
// CHECK-NEXT: "lr.relu"
// CHECK: "lr.upsample"(%arg0) {{.*}}size = array<i64: 4, 4>
// CHECK-NEXT: "lr.conv2d"{{.*}}tensor<2x2x3x3xf32>
// CHECK: %[[U:.*]] = "lr.upsample"(%arg0) {{.*}}size = array<i64: 6, 6>
// CHECK-NEXT: "lr.pad"(%[[U]])
// CHECK: %[[V:.*]] = "lr.upsample"(%arg0) {{.*}}size = array<i64: 8, 8>
// CHECK-NEXT: "lr.relu"(%[[V]])
// CHECK-NEXT: "lr.sigmoid"(%[[V]])
func.func @not_moved(%x: tensor<1x2x2x2xf32>) -> (tensor<1x2x4x4xf32>, tensor<1x2x5x5xf32>, tensor<1x2x4x4xf32>, tensor<1x2x8x8xf32>, tensor<1x2x8x8xf32>, tensor<1x2x8x8xf32>) {
  %0 = "lr.upsample"(%x) {mode = "bilinear", size = array<i64: 4, 4>} : (tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.relu"(%0) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = "lr.upsample"(%x) {mode = "nearest", size = array<i64: 5, 5>} : (tensor<1x2x2x2xf32>) -> tensor<1x2x5x5xf32>
  %3 = "lr.relu"(%2) : (tensor<1x2x5x5xf32>) -> tensor<1x2x5x5xf32>
  %4 = "lr.upsample"(%x) {mode = "nearest", size = array<i64: 4, 4>} : (tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32>
  %5 = "lr.conv2d"(%4) {weight = dense<0.5> : tensor<2x2x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %6 = "lr.upsample"(%x) {mode = "nearest", size = array<i64: 6, 6>} : (tensor<1x2x2x2xf32>) -> tensor<1x2x6x6xf32>
  %7 = "lr.pad"(%6) {pads = array<i64: 1, 1, 1, 1>, mode = "reflect"} : (tensor<1x2x6x6xf32>) -> tensor<1x2x8x8xf32>
  %8 = "lr.upsample"(%x) {mode = "nearest", size = array<i64: 8, 8>} : (tensor<1x2x2x2xf32>) -> tensor<1x2x8x8xf32>
  %9 = "lr.relu"(%8) : (tensor<1x2x8x8xf32>) -> tensor<1x2x8x8xf32>
  %10 = "lr.sigmoid"(%8) : (tensor<1x2x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %1, %3, %5, %7, %9, %10 : tensor<1x2x4x4xf32>, tensor<1x2x5x5xf32>, tensor<1x2x4x4xf32>, tensor<1x2x8x8xf32>, tensor<1x2x8x8xf32>, tensor<1x2x8x8xf32>
}
