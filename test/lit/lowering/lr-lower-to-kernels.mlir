// RUN: lr-opt %s --split-input-file --lr-lower-to-kernels | FileCheck %s
// RUN: lr-opt %s --split-input-file --lr-lower-to-kernels=vec=4 | FileCheck %s --check-prefix=NEON

// A 3x3 conv becomes a register-blocked vector kernel; the entry point keeps the model's signature
// in destination-passing style with the C interface. The kernel's padded input copy is a view of
// its scratch argument, which the entry passes from the arena (here the arena's only content).
// CHECK: func.func private @forward_l0_conv2d({{.*}}, %[[S:arg[0-9]+]]: memref<[[N:[0-9]+]]xi8>) attributes {lrc.scratch_bytes = [[N]] : i64}
// CHECK-NOT: memref.alloc
// CHECK: memref.view %[[S]]
// CHECK: vector.fma
// CHECK-LABEL: func.func @forward(%arg0: memref<1x8x16x16xf32>, %arg1: memref<1x8x16x16xf32>) attributes {llvm.emit_c_interface,
// CHECK-SAME: lrc.arena_bytes = [[N]] : i64}
// CHECK: memref.reinterpret_cast %arg0
// CHECK: %[[A:.*]] = memref.alloc() {alignment = 64 : i64} : memref<[[N]]xi8>
// CHECK: %[[V:.*]] = memref.view %[[A]]{{.*}} to memref<[[N]]xi8>
// CHECK: call @forward_l0_conv2d({{.*}}, %[[V]])
// NEON: vector<4xf32>
func.func @forward(%x: tensor<1x8x16x16xf32>) -> tensor<1x8x16x16xf32> {
  %0 = "lr.conv2d"(%x) {weight = dense<0.5> : tensor<8x8x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, act = "relu"} : (tensor<1x8x16x16xf32>) -> tensor<1x8x16x16xf32>
  return %0 : tensor<1x8x16x16xf32>
}

// -----

// Intermediates live in one arena; a reshape is an alias (no kernel); the last layer writes the
// caller's output buffer directly.
// CHECK-LABEL: func.func private @forward_l0_relu
// CHECK: vector.load
// CHECK: arith.maximumf
// CHECK-NOT: func.func private @forward_l1_reshape
// CHECK-LABEL: func.func @forward
// CHECK: %[[ARENA:.*]] = memref.alloc() {alignment = 64 : i64} : memref<512xi8>
// CHECK: memref.view %[[ARENA]]
// CHECK: call @forward_l0_relu
// CHECK: call @forward_l1_sigmoid
// CHECK: memref.dealloc %[[ARENA]]
func.func @forward(%x: tensor<2x64xf32>) -> tensor<128xf32> {
  %0 = "lr.relu"(%x) : (tensor<2x64xf32>) -> tensor<2x64xf32>
  %1 = "lr.reshape"(%0) : (tensor<2x64xf32>) -> tensor<128xf32>
  %2 = "lr.sigmoid"(%1) : (tensor<128xf32>) -> tensor<128xf32>
  return %2 : tensor<128xf32>
}

// -----

// torch.cat of three tensors is a chain of two binary concats, written by one kernel.
// CHECK-LABEL: func.func @forward
// CHECK-COUNT-1: call @forward_l0_concat
// CHECK-NOT: call
func.func @forward(%x: tensor<1x2x4x4xf32>, %y: tensor<1x3x4x4xf32>) -> tensor<1x7x4x4xf32> {
  %0 = "lr.concat"(%x, %y) {axis = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<1x3x4x4xf32>) -> tensor<1x5x4x4xf32>
  %1 = "lr.concat"(%0, %x) {axis = 1 : i64} : (tensor<1x5x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x7x4x4xf32>
  return %1 : tensor<1x7x4x4xf32>
}

// -----

// Returning an input needs a copy into the output buffer.
// CHECK-LABEL: func.func @forward
// CHECK: linalg.copy
func.func @forward(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}
