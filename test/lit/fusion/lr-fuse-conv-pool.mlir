// RUN: lr-opt %s --split-input-file --lr-fuse-conv-pool | FileCheck %s
// RUN: lr-opt %s --split-input-file --lr-fuse-conv-pool --lr-lower-to-kernels | FileCheck %s --check-prefix=KERNELS
// RUN: lr-opt %s --split-input-file --lr-lower-to-kernels | FileCheck %s --check-prefix=HINT

// A VGG stage: conv + relu feeding only a 2x2 / stride-2 max pool. The conv is marked (the IR's
// meaning is unchanged); the lowering runs both as one dense conv kernel that writes the pooled
// plane (8x8x8 = 512 floats): no pool kernel, and the arena holds only the kernel's scratch (the
// padded input copy), no buffer for the 8x16x16 conv output.
// CHECK-LABEL: func.func @stage
// CHECK: %[[C:.*]] = "lr.conv2d"(%arg0) {act = "relu", lr.pool_epilogue, padding
// CHECK: "lr.max_pool2d"(%[[C]])
// KERNELS-LABEL: func.func private @stage_l0_conv2d_max_pool2d
// KERNELS-SAME: memref<512xf32>, %{{.*}}: memref<[[N:[0-9]+]]xi8>) attributes {lrc.scratch_bytes = [[N]] : i64}
// KERNELS-NOT: func.func private @stage_l1
// KERNELS-LABEL: func.func @stage
// KERNELS-SAME: lrc.arena_bytes = [[N]] : i64
// KERNELS: call @stage_l0_conv2d_max_pool2d
// KERNELS-NOT: call
// KERNELS: return
// Without the mark the pair lowers to two kernels.
// HINT-LABEL: func.func private @stage_l0_conv2d(
// HINT-LABEL: func.func private @stage_l1_max_pool2d(
func.func @stage(%x: tensor<1x4x16x16xf32>) -> tensor<1x8x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, act = "relu"} : (tensor<1x4x16x16xf32>) -> tensor<1x8x16x16xf32>
  %1 = "lr.max_pool2d"(%0) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>} : (tensor<1x8x16x16xf32>) -> tensor<1x8x8x8xf32>
  return %1 : tensor<1x8x8x8xf32>
}

// -----

// ceil_mode pools whole windows only when the conv output is even: marked here.
// CHECK-LABEL: func.func @ceil_even
// CHECK: "lr.conv2d"(%arg0) {lr.pool_epilogue
func.func @ceil_even(%x: tensor<1x4x16x16xf32>) -> tensor<1x8x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x4x16x16xf32>) -> tensor<1x8x16x16xf32>
  %1 = "lr.max_pool2d"(%0) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, ceil_mode = true} : (tensor<1x8x16x16xf32>) -> tensor<1x8x8x8xf32>
  return %1 : tensor<1x8x8x8xf32>
}

// -----

// A U-Net encoder stage: the conv's result is also a skip connection (returned here). Marked too:
// the fused kernel writes both planes, the 8x16x16 conv output and the 8x8x8 pooled one (its last
// output argument), and no pool kernel reads the conv output back.
// CHECK-LABEL: func.func @skip
// CHECK: "lr.conv2d"(%arg0) {act = "relu", lr.pool_epilogue
// KERNELS-LABEL: func.func private @skip_l0_conv2d_max_pool2d
// KERNELS-SAME: memref<2048xf32>, %{{.*}}: memref<512xf32>, %{{.*}}: memref<{{[0-9]+}}xi8>)
// KERNELS-NOT: func.func private @skip_l1
// KERNELS-LABEL: func.func @skip
// KERNELS: call @skip_l0_conv2d_max_pool2d
// KERNELS-NOT: call
// KERNELS: return
func.func @skip(%x: tensor<1x4x16x16xf32>) -> (tensor<1x8x8x8xf32>, tensor<1x8x16x16xf32>) {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, act = "relu"} : (tensor<1x4x16x16xf32>) -> tensor<1x8x16x16xf32>
  %1 = "lr.max_pool2d"(%0) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>} : (tensor<1x8x16x16xf32>) -> tensor<1x8x8x8xf32>
  return %1, %0 : tensor<1x8x8x8xf32>, tensor<1x8x16x16xf32>
}

// -----

// Not fused: a ceil-mode pool with a partial last window, a 3x3 window, a padded or stride-1 pool,
// a conv with a residual.
// CHECK-LABEL: func.func @not_fusable
// CHECK-NOT: lr.pool_epilogue
// KERNELS-LABEL: func.func @not_fusable
// KERNELS-NOT: conv2d_max_pool2d
func.func @not_fusable(%x: tensor<1x4x8x8xf32>) -> tensor<1x4x1x1xf32> {
  %2 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<4x4x2x2xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x7x7xf32>
  %3 = "lr.max_pool2d"(%2) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>, ceil_mode = true} : (tensor<1x4x7x7xf32>) -> tensor<1x4x4x4xf32>
  %4 = "lr.conv2d"(%3) {weight = dense<0.5> : tensor<4x4x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %5 = "lr.max_pool2d"(%4) {kernel = array<i64: 3, 3>, stride = array<i64: 2, 2>, padding = array<i64: 1, 1>} : (tensor<1x4x4x4xf32>) -> tensor<1x4x2x2xf32>
  %6 = "lr.conv2d"(%5) {weight = dense<0.5> : tensor<4x4x1x1xf32>} : (tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %7 = "lr.max_pool2d"(%6) {kernel = array<i64: 2, 2>, stride = array<i64: 1, 1>} : (tensor<1x4x2x2xf32>) -> tensor<1x4x1x1xf32>
  %8 = "lr.conv2d"(%7, %7) {weight = dense<0.5> : tensor<4x4x1x1xf32>} : (tensor<1x4x1x1xf32>, tensor<1x4x1x1xf32>) -> tensor<1x4x1x1xf32>
  %9 = "lr.max_pool2d"(%8) {kernel = array<i64: 1, 1>, stride = array<i64: 1, 1>} : (tensor<1x4x1x1xf32>) -> tensor<1x4x1x1xf32>
  return %9 : tensor<1x4x1x1xf32>
}

// -----

// A 1x1 conv is marked (legality is structural), but it runs as the flat GEMM kernel, which does not
// pool: the lowering keeps the pool kernel.
// CHECK-LABEL: func.func @pointwise
// CHECK: "lr.conv2d"(%arg0) {lr.pool_epilogue
// KERNELS-LABEL: func.func private @pointwise_l0_conv2d(
// KERNELS-LABEL: func.func private @pointwise_l1_max_pool2d(
func.func @pointwise(%x: tensor<1x4x16x16xf32>) -> tensor<1x8x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x16x16xf32>) -> tensor<1x8x16x16xf32>
  %1 = "lr.max_pool2d"(%0) {kernel = array<i64: 2, 2>, stride = array<i64: 2, 2>} : (tensor<1x8x16x16xf32>) -> tensor<1x8x8x8xf32>
  return %1 : tensor<1x8x8x8xf32>
}
