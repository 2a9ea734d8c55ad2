// RUN: lr-opt %s --split-input-file --lr-shrink-pruned-channels | FileCheck %s

// Filter 1 of the first conv is all zeros: its channel is relu(2.0) = 2 everywhere. The consumer is
// an unpadded 1x1 conv, so that constant goes into its bias (0 + 2 * 3 = 6 and 1 + 2 * 4 = 9) and
// the channel goes away from both convs: 3 -> 2 filters, 3 -> 2 input channels.
// CHECK-LABEL: func.func @fold_constant_channel
// CHECK: %[[A:.*]] = "lr.conv2d"(%arg0) {act = "relu", bias = dense<[5.000000e-01, -1.000000e+00]> : tensor<2xf32>, weight = dense<{{\[}}{{\[}}{{\[}}[1.000000e+00]]], {{\[}}{{\[}}[2.000000e+00]]]]> : tensor<2x1x1x1xf32>} : (tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
// CHECK: "lr.conv2d"(%[[A]]) {bias = dense<[6.000000e+00, 9.000000e+00]> : tensor<2xf32>, weight = dense<{{\[}}{{\[}}{{\[}}[1.000000e+00]], {{\[}}[5.000000e+00]]], {{\[}}{{\[}}[2.000000e+00]], {{\[}}[6.000000e+00]]]]> : tensor<2x2x1x1xf32>}
func.func @fold_constant_channel(%x: tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]]], [[[0.0]]], [[[2.0]]]]> : tensor<3x1x1x1xf32>, bias = dense<[0.5, 2.0, -1.0]> : tensor<3xf32>, act = "relu"} : (tensor<1x1x4x4xf32>) -> tensor<1x3x4x4xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<[[[[1.0]], [[3.0]], [[5.0]]], [[[2.0]], [[4.0]], [[6.0]]]]> : tensor<2x3x1x1xf32>, bias = dense<[0.0, 1.0]> : tensor<2xf32>} : (tensor<1x3x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// A padded 3x3 consumer: the dead filter whose constant is relu(2.0) = 2 stays (border pixels would
// see fewer taps of it); the one whose constant is relu(-1.0) = 0 goes, from both convs.
// CHECK-LABEL: func.func @padded_consumer
// CHECK: %[[A:.*]] = "lr.conv2d"(%arg0) {{.*}}bias = dense<[5.000000e-01, 2.000000e+00]> : tensor<2xf32>{{.*}} -> tensor<1x2x4x4xf32>
// CHECK: "lr.conv2d"(%[[A]]) {{.*}}tensor<2x2x3x3xf32>{{.*}} -> tensor<1x2x4x4xf32>
func.func @padded_consumer(%x: tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]]], [[[0.0]]], [[[0.0]]]]> : tensor<3x1x1x1xf32>, bias = dense<[0.5, 2.0, -1.0]> : tensor<3xf32>, act = "relu"} : (tensor<1x1x4x4xf32>) -> tensor<1x3x4x4xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<1.0> : tensor<2x3x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x3x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// Two dead filters reach a padded conv as the constants 2 and 3: one carries both. The consumer's
// weights for the carrier become W[:, 1] + (3 / 2) * W[:, 2] = 1 + 1.5 * 2 = 4 (exact: both are the
// same plane of ones, zero in the padding, times a constant).
// CHECK-LABEL: func.func @carrier
// CHECK: %[[A:.*]] = "lr.conv2d"(%arg0) {{.*}}bias = dense<[5.000000e-01, 2.000000e+00]> : tensor<2xf32>{{.*}} -> tensor<1x2x4x4xf32>
// CHECK: "lr.conv2d"(%[[A]]) {{.*}}weight = dense<{{\[}}{{\[}}{{\[}}[1.000000e+00, 1.000000e+00, 1.000000e+00], [1.000000e+00, 1.000000e+00, 1.000000e+00], [1.000000e+00, 1.000000e+00, 1.000000e+00]], {{\[}}[4.000000e+00, 4.000000e+00, 4.000000e+00], [4.000000e+00, 4.000000e+00, 4.000000e+00], [4.000000e+00, 4.000000e+00, 4.000000e+00]]]]> : tensor<1x2x3x3xf32>
func.func @carrier(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]]], [[[0.0]]], [[[0.0]]]]> : tensor<3x1x1x1xf32>, bias = dense<[0.5, 2.0, 3.0]> : tensor<3xf32>, act = "relu"} : (tensor<1x1x4x4xf32>) -> tensor<1x3x4x4xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<[[[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]]]> : tensor<1x3x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x3x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %1 : tensor<1x1x4x4xf32>
}

// -----

// Channel pruning: the consumer never reads channel 0 (its weights there are zero), so the producer
// need not compute it, through the max pool in between (rebuilt with 2 channels).
// CHECK-LABEL: func.func @unread_channel_through_pool
// CHECK: %[[A:.*]] = "lr.conv2d"(%arg0) {{.*}} -> tensor<1x2x4x4xf32>
// CHECK: %[[P:.*]] = "lr.max_pool2d"(%[[A]]) {{.*}} -> tensor<1x2x2x2xf32>
// CHECK: "lr.conv2d"(%[[P]]) {{.*}}tensor<1x2x1x1xf32>{{.*}} -> tensor<1x1x2x2xf32>
func.func @unread_channel_through_pool(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x2x2xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]]], [[[2.0]]], [[[3.0]]]]> : tensor<3x1x1x1xf32>} : (tensor<1x1x4x4xf32>) -> tensor<1x3x4x4xf32>
  %1 = "lr.max_pool2d"(%0) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>} : (tensor<1x3x4x4xf32>) -> tensor<1x3x2x2xf32>
  %2 = "lr.conv2d"(%1) {weight = dense<[[[[0.0]], [[1.0]], [[1.0]]]]> : tensor<1x3x1x1xf32>} : (tensor<1x3x2x2xf32>) -> tensor<1x1x2x2xf32>
  return %2 : tensor<1x1x2x2xf32>
}

// -----

// The producer's result is also returned: its shape cannot change, so nothing is removed.
// CHECK-LABEL: func.func @returned
// CHECK: "lr.conv2d"(%arg0) {{.*}} -> tensor<1x3x4x4xf32>
// CHECK: "lr.conv2d"({{.*}}tensor<1x3x1x1xf32>
func.func @returned(%x: tensor<1x1x4x4xf32>) -> (tensor<1x3x4x4xf32>, tensor<1x1x4x4xf32>) {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]]], [[[0.0]]], [[[3.0]]]]> : tensor<3x1x1x1xf32>} : (tensor<1x1x4x4xf32>) -> tensor<1x3x4x4xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<[[[[0.0]], [[1.0]], [[1.0]]]]> : tensor<1x3x1x1xf32>} : (tensor<1x3x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %0, %1 : tensor<1x3x4x4xf32>, tensor<1x1x4x4xf32>
}

// -----

// A dead filter read through a sigmoid (sigmoid(0) = 0.5, not 0) by a padded conv stays.
// CHECK-LABEL: func.func @sigmoid_in_between
// CHECK: "lr.conv2d"(%arg0) {{.*}} -> tensor<1x2x4x4xf32>
// CHECK: "lr.sigmoid"({{.*}} -> tensor<1x2x4x4xf32>
func.func @sigmoid_in_between(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]]], [[[0.0]]]]> : tensor<2x1x1x1xf32>} : (tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %1 = "lr.sigmoid"(%0) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %2 = "lr.conv2d"(%1) {weight = dense<1.0> : tensor<1x2x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x2x4x4xf32>) -> tensor<1x1x4x4xf32>
  return %2 : tensor<1x1x4x4xf32>
}

// -----

// Every channel could go (the only filter is dead, its constant 0): one stays, no empty tensor,
// and the pass ends.
// CHECK-LABEL: func.func @last_channel
// CHECK: "lr.conv2d"(%arg0) {{.*}} -> tensor<1x1x4x4xf32>
// CHECK: "lr.conv2d"({{.*}}tensor<2x1x1x1xf32>{{.*}} -> tensor<1x2x4x4xf32>
func.func @last_channel(%x: tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.0> : tensor<1x1x1x1xf32>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<1.0> : tensor<2x1x1x1xf32>} : (tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %1 : tensor<1x2x4x4xf32>
}

// -----

// Dead filters with the constants 2, 2 and 3. The first consumer reads them directly (padded); the
// second through a constant pad of value 2, after which only the channels equal to 2 are still
// constant planes. The two 2s share a carrier; the 3 must stay for the second consumer.
// CHECK-LABEL: func.func @carrier_skips_nonconstant
// CHECK: %[[A:.*]] = "lr.conv2d"(%arg0) {{.*}}bias = dense<[5.000000e-01, 2.000000e+00, 3.000000e+00]>{{.*}} -> tensor<1x3x4x4xf32>
// CHECK: "lr.conv2d"(%[[A]]) {{.*}}tensor<1x3x3x3xf32>
// CHECK: %[[P:.*]] = "lr.pad"(%[[A]]) {{.*}} -> tensor<1x3x6x6xf32>
// CHECK: "lr.conv2d"(%[[P]]) {{.*}}tensor<1x3x3x3xf32>
func.func @carrier_skips_nonconstant(%x: tensor<1x1x4x4xf32>) -> (tensor<1x1x4x4xf32>, tensor<1x1x4x4xf32>) {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]]], [[[0.0]]], [[[0.0]]], [[[0.0]]]]> : tensor<4x1x1x1xf32>, bias = dense<[0.5, 2.0, 2.0, 3.0]> : tensor<4xf32>} : (tensor<1x1x4x4xf32>) -> tensor<1x4x4x4xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<1.0> : tensor<1x4x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x4x4x4xf32>) -> tensor<1x1x4x4xf32>
  %2 = "lr.pad"(%0) {pads = array<i64: 1, 1, 1, 1>, value = 2.0} : (tensor<1x4x4x4xf32>) -> tensor<1x4x6x6xf32>
  %3 = "lr.conv2d"(%2) {weight = dense<1.0> : tensor<1x4x3x3xf32>} : (tensor<1x4x6x6xf32>) -> tensor<1x1x4x4xf32>
  return %1, %3 : tensor<1x1x4x4xf32>, tensor<1x1x4x4xf32>
}
