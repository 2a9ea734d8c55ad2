// RUN: lr-opt %s --split-input-file --lr-raise-torch | FileCheck %s

// CHECK-LABEL: func.func @forward(%arg0: tensor<1x3x8x8xf32>) -> tensor<1x3x16x16xf32>
// CHECK: %[[R:.*]] = "lr.relu"(%arg0) : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32>
// CHECK: %[[U:.*]] = "lr.upsample"(%[[R]]) {scales = array<f64: 2.000000e+00, 2.000000e+00>, size = array<i64: 16, 16>}
// CHECK: return %[[U]]
func.func @forward(%arg0: !torch.vtensor<[1,3,8,8],f32>) -> !torch.vtensor<[1,3,16,16],f32> {
  %0 = torch.aten.relu %arg0 : !torch.vtensor<[1,3,8,8],f32> -> !torch.vtensor<[1,3,8,8],f32>
  %none = torch.constant.none
  %f2 = torch.constant.float 2.000000e+00
  %1 = torch.prim.ListConstruct %f2, %f2 : (!torch.float, !torch.float) -> !torch.list<float>
  %2 = torch.aten.upsample_nearest2d.vec %0, %none, %1 : !torch.vtensor<[1,3,8,8],f32>, !torch.none, !torch.list<float> -> !torch.vtensor<[1,3,16,16],f32>
  return %2 : !torch.vtensor<[1,3,16,16],f32>
}

// -----

// Weights arrive as literals; conv arguments become attributes (torch padding -> top, left, bottom, right).
// CHECK-LABEL: func.func @conv
// CHECK: "lr.conv2d"(%arg0) {bias = dense<5.000000e-01> : tensor<2xf32>, padding = array<i64: 1, 0, 1, 0>, stride = array<i64: 2, 1>, weight = dense<1.000000e+00> : tensor<2x3x3x1xf32>}
func.func @conv(%arg0: !torch.vtensor<[1,3,8,8],f32>) -> !torch.vtensor<[1,2,4,8],f32> {
  %w = torch.vtensor.literal(dense<1.0> : tensor<2x3x3x1xf32>) : !torch.vtensor<[2,3,3,1],f32>
  %b = torch.vtensor.literal(dense<0.5> : tensor<2xf32>) : !torch.vtensor<[2],f32>
  %i0 = torch.constant.int 0
  %i1 = torch.constant.int 1
  %i2 = torch.constant.int 2
  %s = torch.prim.ListConstruct %i2, %i1 : (!torch.int, !torch.int) -> !torch.list<int>
  %p = torch.prim.ListConstruct %i1, %i0 : (!torch.int, !torch.int) -> !torch.list<int>
  %d = torch.prim.ListConstruct %i1, %i1 : (!torch.int, !torch.int) -> !torch.list<int>
  %0 = torch.aten.conv2d %arg0, %w, %b, %s, %p, %d, %i1 : !torch.vtensor<[1,3,8,8],f32>, !torch.vtensor<[2,3,3,1],f32>, !torch.vtensor<[2],f32>, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.int -> !torch.vtensor<[1,2,4,8],f32>
  return %0 : !torch.vtensor<[1,2,4,8],f32>
}

// -----

// silu, hardsigmoid, gelu (its approximate string), elu / selu / celu (all one lr.elu), mish, softplus (attributes
// at their defaults are not printed).
// CHECK-LABEL: func.func @activations
// CHECK: "lr.silu"(%arg0)
// CHECK: "lr.hardsigmoid"
// CHECK: "lr.gelu"({{.*}}) {approximate = "tanh"}
// CHECK: "lr.elu"({{.*}}) {alpha = 5.000000e-01 : f64, scale = 2.000000e+00 : f64}
// CHECK: "lr.elu"({{.*}}) {alpha = 1.6732632423543772 : f64, scale = 1.0507009873554805 : f64}
// CHECK: "lr.elu"({{.*}}) {alpha = 2.500000e-01 : f64, input_scale = 4.000000e+00 : f64}
// CHECK: "lr.mish"
// CHECK: "lr.softplus"({{.*}}) {beta = 2.000000e+00 : f64}
func.func @activations(%arg0: !torch.vtensor<[1,3,4,4],f32>) -> !torch.vtensor<[1,3,4,4],f32> {
  %0 = torch.aten.silu %arg0 : !torch.vtensor<[1,3,4,4],f32> -> !torch.vtensor<[1,3,4,4],f32>
  %1 = torch.aten.hardsigmoid %0 : !torch.vtensor<[1,3,4,4],f32> -> !torch.vtensor<[1,3,4,4],f32>
  %tanh = torch.constant.str "tanh"
  %2 = torch.aten.gelu %1, %tanh : !torch.vtensor<[1,3,4,4],f32>, !torch.str -> !torch.vtensor<[1,3,4,4],f32>
  %a = torch.constant.float 5.000000e-01
  %s = torch.constant.float 2.000000e+00
  %one = torch.constant.int 1
  %3 = torch.aten.elu %2, %a, %s, %one : !torch.vtensor<[1,3,4,4],f32>, !torch.float, !torch.float, !torch.int -> !torch.vtensor<[1,3,4,4],f32>
  %4 = torch.aten.selu %3 : !torch.vtensor<[1,3,4,4],f32> -> !torch.vtensor<[1,3,4,4],f32>
  %q = torch.constant.float 2.500000e-01
  %5 = torch.aten.celu %4, %q : !torch.vtensor<[1,3,4,4],f32>, !torch.float -> !torch.vtensor<[1,3,4,4],f32>
  %6 = torch.aten.mish %5 : !torch.vtensor<[1,3,4,4],f32> -> !torch.vtensor<[1,3,4,4],f32>
  %t20 = torch.constant.int 20
  %7 = torch.aten.softplus %6, %s, %t20 : !torch.vtensor<[1,3,4,4],f32>, !torch.float, !torch.int -> !torch.vtensor<[1,3,4,4],f32>
  return %7 : !torch.vtensor<[1,3,4,4],f32>
}

// -----

// Slices (negative start, end past the dimension), and split_with_sizes unpacked by
// prim.ListUnpack: one lr.slice per piece.
// CHECK-LABEL: func.func @slices
// CHECK: %[[A:.*]] = "lr.slice"(%arg0) {axis = 1 : i64, end = 4 : i64, start = 2 : i64}
// CHECK: %[[B:.*]] = "lr.slice"(%arg0) {axis = 1 : i64, end = 1 : i64, start = 0 : i64}
// CHECK: %[[C:.*]] = "lr.slice"(%arg0) {axis = 1 : i64, end = 4 : i64, start = 1 : i64}
// CHECK: %[[D:.*]] = "lr.slice"(%[[C]]) {axis = 1 : i64, end = 2 : i64, start = 0 : i64}
// CHECK: "lr.add"(%[[A]], %[[D]])
// CHECK: return {{.*}}, %[[B]]
func.func @slices(%arg0: !torch.vtensor<[1,4,5,5],f32>) -> (!torch.vtensor<[1,2,5,5],f32>, !torch.vtensor<[1,1,5,5],f32>) {
  %i1 = torch.constant.int 1
  %im2 = torch.constant.int -2
  %big = torch.constant.int 9223372036854775807
  %0 = torch.aten.slice.Tensor %arg0, %i1, %im2, %big, %i1 : !torch.vtensor<[1,4,5,5],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,5,5],f32>
  %i3 = torch.constant.int 3
  %sizes = torch.prim.ListConstruct %i1, %i3 : (!torch.int, !torch.int) -> !torch.list<int>
  %1 = torch.aten.split_with_sizes %arg0, %sizes, %i1 : !torch.vtensor<[1,4,5,5],f32>, !torch.list<int>, !torch.int -> !torch.list<vtensor>
  %2:2 = torch.prim.ListUnpack %1 : !torch.list<vtensor> -> !torch.vtensor<[1,1,5,5],f32>, !torch.vtensor<[1,3,5,5],f32>
  %i0 = torch.constant.int 0
  %i2 = torch.constant.int 2
  %3 = torch.aten.slice.Tensor %2#1, %i1, %i0, %i2, %i1 : !torch.vtensor<[1,3,5,5],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,5,5],f32>
  %4 = torch.aten.add.Tensor %0, %3, %i1 : !torch.vtensor<[1,2,5,5],f32>, !torch.vtensor<[1,2,5,5],f32>, !torch.int -> !torch.vtensor<[1,2,5,5],f32>
  return %4, %2#0 : !torch.vtensor<[1,2,5,5],f32>, !torch.vtensor<[1,1,5,5],f32>
}

// -----

// softmax / log_softmax (both spellings); a negative dim becomes the positive axis.
// CHECK-LABEL: func.func @softmaxes
// CHECK: %[[S:.*]] = "lr.softmax"(%arg0) {axis = 1 : i64}
// CHECK: "lr.softmax"(%[[S]]) {axis = 1 : i64, log = true}
func.func @softmaxes(%arg0: !torch.vtensor<[2,10],f32>) -> !torch.vtensor<[2,10],f32> {
  %m1 = torch.constant.int -1
  %none = torch.constant.none
  %false = torch.constant.bool false
  %0 = torch.aten.softmax.int %arg0, %m1, %none : !torch.vtensor<[2,10],f32>, !torch.int, !torch.none -> !torch.vtensor<[2,10],f32>
  %1 = torch.aten._log_softmax %0, %m1, %false : !torch.vtensor<[2,10],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,10],f32>
  return %1 : !torch.vtensor<[2,10],f32>
}

// -----

// Reductions: amax over the channel with keepdim, max.dim (its unused indices dropped), sum over a
// list of dims; a mean over H, W stays the global average pool.
// CHECK-LABEL: func.func @reductions
// CHECK: "lr.reduce"(%arg0) {axes = array<i64: 1>, keepdim = true, kind = "max"}
// CHECK: "lr.reduce"(%arg0) {axes = array<i64: 3>, kind = "max"}
// CHECK: "lr.reduce"(%arg0) {axes = array<i64: 2, 3>, kind = "sum"}
// CHECK: "lr.adaptive_avg_pool2d"(%arg0)
func.func @reductions(%arg0: !torch.vtensor<[1,4,5,6],f32>) -> (!torch.vtensor<[1,1,5,6],f32>, !torch.vtensor<[1,4,5],f32>, !torch.vtensor<[1,4],f32>, !torch.vtensor<[1,4],f32>) {
  %i1 = torch.constant.int 1
  %i2 = torch.constant.int 2
  %i3 = torch.constant.int 3
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %none = torch.constant.none
  %d1 = torch.prim.ListConstruct %i1 : (!torch.int) -> !torch.list<int>
  %0 = torch.aten.amax %arg0, %d1, %true : !torch.vtensor<[1,4,5,6],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,1,5,6],f32>
  %values, %indices = torch.aten.max.dim %arg0, %i3, %false : !torch.vtensor<[1,4,5,6],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,5],f32>, !torch.vtensor<[1,4,5],si64>
  %d23 = torch.prim.ListConstruct %i2, %i3 : (!torch.int, !torch.int) -> !torch.list<int>
  %2 = torch.aten.sum.dim_IntList %arg0, %d23, %false, %none : !torch.vtensor<[1,4,5,6],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[1,4],f32>
  %3 = torch.aten.mean.dim %arg0, %d23, %false, %none : !torch.vtensor<[1,4,5,6],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[1,4],f32>
  return %0, %values, %2, %3 : !torch.vtensor<[1,1,5,6],f32>, !torch.vtensor<[1,4,5],f32>, !torch.vtensor<[1,4],f32>, !torch.vtensor<[1,4],f32>
}

// -----

// group_norm: the (image, group) runs normalised by lr.instance_norm on a [1, N*G, C/G*H*W] view,
// the per-channel affine as a batch_norm with zero mean and unit variance (eps 0).
// CHECK-LABEL: func.func @group_norm
// CHECK: %[[V:.*]] = "lr.reshape"(%arg0) : (tensor<2x4x3x3xf32>) -> tensor<1x4x18xf32>
// CHECK: %[[N:.*]] = "lr.instance_norm"(%[[V]]) {eps = 1.000000e-03 : f64}
// CHECK: %[[B:.*]] = "lr.reshape"(%[[N]]) : (tensor<1x4x18xf32>) -> tensor<2x4x3x3xf32>
// CHECK: "lr.batch_norm"(%[[B]]) {bias = dense<5.000000e-01> : tensor<4xf32>, eps = 0.000000e+00 : f64
func.func @group_norm(%arg0: !torch.vtensor<[2,4,3,3],f32>) -> !torch.vtensor<[2,4,3,3],f32> {
  %g = torch.constant.int 2
  %w = torch.vtensor.literal(dense<2.0> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %b = torch.vtensor.literal(dense<0.5> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %eps = torch.constant.float 1.000000e-03
  %false = torch.constant.bool false
  %0 = torch.aten.group_norm %arg0, %g, %w, %b, %eps, %false : !torch.vtensor<[2,4,3,3],f32>, !torch.int, !torch.vtensor<[4],f32>, !torch.vtensor<[4],f32>, !torch.float, !torch.bool -> !torch.vtensor<[2,4,3,3],f32>
  return %0 : !torch.vtensor<[2,4,3,3],f32>
}

// -----

// Element-wise math: pow with exponent 2 / 0.5 / -0.5 / -1 becomes square / sqrt / rsqrt / reciprocal.
// CHECK-LABEL: func.func @math
// CHECK: %[[A:.*]] = "lr.abs"(%arg0)
// CHECK: %[[S:.*]] = "lr.square"(%[[A]])
// CHECK: "lr.rsqrt"(%[[S]])
func.func @math(%arg0: !torch.vtensor<[1,3,4,4],f32>) -> !torch.vtensor<[1,3,4,4],f32> {
  %0 = torch.aten.abs %arg0 : !torch.vtensor<[1,3,4,4],f32> -> !torch.vtensor<[1,3,4,4],f32>
  %two = torch.constant.int 2
  %1 = torch.aten.pow.Tensor_Scalar %0, %two : !torch.vtensor<[1,3,4,4],f32>, !torch.int -> !torch.vtensor<[1,3,4,4],f32>
  %h = torch.constant.float -5.000000e-01
  %2 = torch.aten.pow.Tensor_Scalar %1, %h : !torch.vtensor<[1,3,4,4],f32>, !torch.float -> !torch.vtensor<[1,3,4,4],f32>
  return %2 : !torch.vtensor<[1,3,4,4],f32>
}

// -----

// conv1d is a conv2d over an [N, C, 1, L] view (kernel 1 x k); rsub is other - x.
// CHECK-LABEL: func.func @conv1d_rsub
// CHECK: %[[V:.*]] = "lr.reshape"(%arg0) : (tensor<1x2x9xf32>) -> tensor<1x2x1x9xf32>
// CHECK: %[[C:.*]] = "lr.conv2d"(%[[V]]) {{{.*}}padding = array<i64: 0, 1, 0, 1>, stride = array<i64: 1, 2>, weight = dense<1.000000e+00> : tensor<3x2x1x3xf32>}
// CHECK: %[[R:.*]] = "lr.reshape"(%[[C]]) : (tensor<1x3x1x5xf32>) -> tensor<1x3x5xf32>
// CHECK: "lr.sub"(%{{.*}}, %[[R]])
func.func @conv1d_rsub(%arg0: !torch.vtensor<[1,2,9],f32>) -> !torch.vtensor<[1,3,5],f32> {
  %w = torch.vtensor.literal(dense<1.0> : tensor<3x2x3xf32>) : !torch.vtensor<[3,2,3],f32>
  %none = torch.constant.none
  %i1 = torch.constant.int 1
  %i2 = torch.constant.int 2
  %s = torch.prim.ListConstruct %i2 : (!torch.int) -> !torch.list<int>
  %p = torch.prim.ListConstruct %i1 : (!torch.int) -> !torch.list<int>
  %d = torch.prim.ListConstruct %i1 : (!torch.int) -> !torch.list<int>
  %0 = torch.aten.conv1d %arg0, %w, %none, %s, %p, %d, %i1 : !torch.vtensor<[1,2,9],f32>, !torch.vtensor<[3,2,3],f32>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.int -> !torch.vtensor<[1,3,5],f32>
  %one = torch.constant.float 1.000000e+00
  %1 = torch.aten.rsub.Scalar %0, %one, %i1 : !torch.vtensor<[1,3,5],f32>, !torch.float, !torch.int -> !torch.vtensor<[1,3,5],f32>
  return %1 : !torch.vtensor<[1,3,5],f32>
}

// -----

// Bicubic resize arrives as a torch.operator (the torch dialect has no op for it).
// CHECK-LABEL: func.func @bicubic
// CHECK: "lr.upsample"(%arg0) {mode = "bicubic", scales = array<f64: 2.000000e+00, 2.000000e+00>, size = array<i64: 8, 8>}
func.func @bicubic(%arg0: !torch.vtensor<[1,3,4,4],f32>) -> !torch.vtensor<[1,3,8,8],f32> {
  %none = torch.constant.none
  %false = torch.constant.bool false
  %f2 = torch.constant.float 2.000000e+00
  %s = torch.prim.ListConstruct %f2, %f2 : (!torch.float, !torch.float) -> !torch.list<float>
  %0 = torch.operator "torch.aten.upsample_bicubic2d.vec"(%arg0, %none, %false, %s) : (!torch.vtensor<[1,3,4,4],f32>, !torch.none, !torch.bool, !torch.list<float>) -> !torch.vtensor<[1,3,8,8],f32>
  return %0 : !torch.vtensor<[1,3,8,8],f32>
}
