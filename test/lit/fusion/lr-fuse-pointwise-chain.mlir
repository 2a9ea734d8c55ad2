// RUN: lr-opt %s --split-input-file --lr-fuse-pointwise-chain | FileCheck %s
// RUN: lr-opt %s --split-input-file --lr-fuse-pointwise-chain --lr-lower-to-kernels | FileCheck %s --check-prefix=KERNELS
// RUN: lr-opt %s --split-input-file --lr-lower-to-kernels | FileCheck %s --check-prefix=HINT

// WDSR's wide block: 1x1 expand + relu feeding only a 1x1 reduce. The expand is marked (the meaning
// of the IR is unchanged); the reduce is not (it is the consumer).
// CHECK-LABEL: func.func @expand_reduce
// CHECK: %[[H:.*]] = "lr.conv2d"(%arg0) {act = "relu", lr.pointwise_chain, sparsity
// CHECK: %[[Y:.*]] = "lr.conv2d"(%[[H]]) {sparsity
// CHECK-NOT: lr.pointwise_chain
// CHECK: return %[[Y]]
// Both convs are sparse enough for the sparse kernels: one fused kernel reads the block's input and
// walks two int32-indexed stages through two panels, views of its scratch argument; the entry calls
// one conv kernel, and its arena holds only that scratch (no intermediate activation).
// KERNELS-LABEL: func.func private @expand_reduce_l0_conv2d
// KERNELS-SAME: %[[S:arg[0-9]+]]: memref<[[N:[0-9]+]]xi8>) attributes {lrc.scratch_bytes = [[N]] : i64}
// KERNELS-NOT: memref.alloc
// KERNELS-COUNT-2: memref.view %[[S]]
// KERNELS-NOT: memref.alloc
// KERNELS-NOT: func.func private @expand_reduce_l1
// KERNELS-LABEL: func.func @expand_reduce
// KERNELS-SAME: lrc.arena_bytes = [[N]] : i64
// KERNELS: memref.alloc() {alignment = 64 : i64} : memref<[[N]]xi8>
// KERNELS: call @expand_reduce_l0_conv2d
// KERNELS-NOT: call
// KERNELS: return
func.func @expand_reduce(%x: tensor<1x4x8x8xf32>) -> tensor<1x2x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[2.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[-1.0]]], [[[0.0]], [[0.0]], [[3.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[1.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]]]> : tensor<8x4x1x1xf32>, act = "relu", sparsity = #lr.sparsity<"kernel", [], unit>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<[[[[1.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[2.0]]]]> : tensor<2x8x1x1xf32>, sparsity = #lr.sparsity<"kernel", [], unit>} : (tensor<1x8x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %1 : tensor<1x2x8x8xf32>
}

// -----

// Dense weights: marked too (legality is structural); the lowering keeps two dense GEMM kernels.
// CHECK-LABEL: func.func @dense_pair
// CHECK: "lr.conv2d"(%arg0) {lr.pointwise_chain, weight
// KERNELS-LABEL: func.func @dense_pair
// KERNELS: call @dense_pair_l0_conv2d
// KERNELS: call @dense_pair_l1_conv2d
func.func @dense_pair(%x: tensor<1x4x8x8xf32>) -> tensor<1x2x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<0.25> : tensor<2x8x1x1xf32>} : (tensor<1x8x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %1 : tensor<1x2x8x8xf32>
}

// -----

// The consumer may take a residual (the block's skip): still a pair.
// CHECK-LABEL: func.func @consumer_residual
// CHECK: "lr.conv2d"(%arg0) {lr.pointwise_chain
// CHECK: "lr.conv2d"(%{{.*}}, %arg1)
func.func @consumer_residual(%x: tensor<1x4x8x8xf32>, %r: tensor<1x2x8x8xf32>) -> tensor<1x2x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0, %r) {weight = dense<0.25> : tensor<2x8x1x1xf32>} : (tensor<1x8x8x8xf32>, tensor<1x2x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %1 : tensor<1x2x8x8xf32>
}

// -----

// The intermediate has a second user: it must be stored, no mark.
// CHECK-LABEL: func.func @two_users
// CHECK-NOT: lr.pointwise_chain
func.func @two_users(%x: tensor<1x4x8x8xf32>) -> (tensor<1x2x8x8xf32>, tensor<1x8x8x8xf32>) {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<0.25> : tensor<2x8x1x1xf32>} : (tensor<1x8x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %1, %0 : tensor<1x2x8x8xf32>, tensor<1x8x8x8xf32>
}

// -----

// Not pointwise: a 3x3 consumer, a strided or padded 1x1 producer, a grouped 1x1.
// CHECK-LABEL: func.func @not_pointwise
// CHECK-NOT: lr.pointwise_chain
func.func @not_pointwise(%x: tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<0.25> : tensor<4x8x3x3xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x8x8x8xf32>) -> tensor<1x4x8x8xf32>
  %2 = "lr.conv2d"(%1) {weight = dense<0.5> : tensor<4x4x1x1xf32>, stride = array<i64: 2, 2>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  %3 = "lr.conv2d"(%2) {weight = dense<0.5> : tensor<4x2x1x1xf32>, groups = 2} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %4 = "lr.conv2d"(%3) {weight = dense<0.5> : tensor<4x4x1x1xf32>, padding = array<i64: 1, 1, 1, 1>} : (tensor<1x4x4x4xf32>) -> tensor<1x4x6x6xf32>
  %5 = "lr.conv2d"(%4) {weight = dense<0.5> : tensor<4x4x3x3xf32>} : (tensor<1x4x6x6xf32>) -> tensor<1x4x4x4xf32>
  return %5 : tensor<1x4x4x4xf32>
}

// -----

// A producer with a residual of its own is not a pair (its output would have to be stored anyway).
// CHECK-LABEL: func.func @producer_residual
// CHECK-NOT: lr.pointwise_chain
func.func @producer_residual(%x: tensor<1x4x8x8xf32>, %r: tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32> {
  %0 = "lr.conv2d"(%x, %r) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x8x8xf32>, tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<0.25> : tensor<8x8x1x1xf32>} : (tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  return %1 : tensor<1x8x8x8xf32>
}

// -----

// An intermediate used as the consumer's residual (operand #1), not its input, is not a pair.
// CHECK-LABEL: func.func @intermediate_as_residual
// CHECK-NOT: lr.pointwise_chain
func.func @intermediate_as_residual(%x: tensor<1x4x8x8xf32>, %y: tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%y, %0) {weight = dense<0.25> : tensor<8x8x1x1xf32>} : (tensor<1x8x8x8xf32>, tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  return %1 : tensor<1x8x8x8xf32>
}

// -----

// Three 1x1 convs in a row: pairs are disjoint, only the first two form one.
// CHECK-LABEL: func.func @three
// CHECK: "lr.conv2d"(%arg0) {lr.pointwise_chain
// CHECK-NOT: lr.pointwise_chain
// CHECK: return
func.func @three(%x: tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x4x1x1xf32>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<0.25> : tensor<8x8x1x1xf32>} : (tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %2 = "lr.conv2d"(%1) {weight = dense<0.5> : tensor<4x8x1x1xf32>} : (tensor<1x8x8x8xf32>) -> tensor<1x4x8x8xf32>
  return %2 : tensor<1x4x8x8xf32>
}

// -----

// A stale mark (the intermediate has a second user) is only a hint: the pass drops it, and the
// lowering alone does not fuse either, it checks legality again.
// CHECK-LABEL: func.func @stale_mark
// CHECK-NOT: lr.pointwise_chain
// HINT-LABEL: func.func @stale_mark
// HINT: call @stale_mark_l0_conv2d
// HINT: call @stale_mark_l1_conv2d
func.func @stale_mark(%x: tensor<1x4x8x8xf32>) -> (tensor<1x2x8x8xf32>, tensor<1x8x8x8xf32>) {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[2.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[-1.0]]], [[[0.0]], [[0.0]], [[3.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[1.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]]]> : tensor<8x4x1x1xf32>, lr.pointwise_chain, sparsity = #lr.sparsity<"kernel", [], unit>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<[[[[1.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[2.0]]]]> : tensor<2x8x1x1xf32>, sparsity = #lr.sparsity<"kernel", [], unit>} : (tensor<1x8x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %1, %0 : tensor<1x2x8x8xf32>, tensor<1x8x8x8xf32>
}

// -----

// The same mark on a legal sparse pair: the pass keeps it, the lowering alone fuses it (one conv kernel).
// CHECK-LABEL: func.func @marked_pair
// CHECK: "lr.conv2d"(%arg0) {lr.pointwise_chain
// HINT-LABEL: func.func @marked_pair
// HINT: call @marked_pair_l0_conv2d
// HINT-NOT: call
// HINT: return
func.func @marked_pair(%x: tensor<1x4x8x8xf32>) -> tensor<1x2x8x8xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<[[[[1.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[2.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[-1.0]]], [[[0.0]], [[0.0]], [[3.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[1.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]]]]> : tensor<8x4x1x1xf32>, lr.pointwise_chain, sparsity = #lr.sparsity<"kernel", [], unit>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8x8xf32>
  %1 = "lr.conv2d"(%0) {weight = dense<[[[[1.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[0.0]], [[2.0]]]]> : tensor<2x8x1x1xf32>, sparsity = #lr.sparsity<"kernel", [], unit>} : (tensor<1x8x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %1 : tensor<1x2x8x8xf32>
}
