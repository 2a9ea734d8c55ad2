// RUN: lr-opt %s --split-input-file --verify-diagnostics

func.func @missing_weight(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{'lr.conv2d' op requires attribute 'weight'}}
  %0 = "lr.conv2d"(%x) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @wrong_result_shape(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{'lr.conv2d' op result shape [1, 2, 4, 4] does not match the inferred shape [1, 2, 2, 2]}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x3x3xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @bad_act(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{attribute 'act' = "softsign" must be one of none, relu}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, act = "softsign"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @act_params_missing(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{'act_params' must have 1 values for act = "leaky_relu", got 0}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, act = "leaky_relu"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @elu_act_params(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{'act_params' must have 3 values for act = "elu", got 1}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, act = "elu", act_params = array<f64: 1.0>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @gelu_approximate(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{attribute 'approximate' = "erf" must be one of none, tanh}}
  %0 = "lr.gelu"(%x) {approximate = "erf"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @groups_do_not_divide(%x: tensor<1x3x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{'groups' = 2 must divide input channels 3 and output channels 2}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x1x1x1xf32>, groups = 2 : i64} : (tensor<1x3x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @bias_shape(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{'bias' must have shape [2], got [3]}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, bias = dense<0.0> : tensor<3xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @stride_wrong_arity(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{attribute 'stride' must have 2 values, got 3}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, stride = array<i64: 1, 1, 1>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @weight_not_elements(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{attribute 'weight' must be dense f32 elements, got 1 : i64}}
  %0 = "lr.conv2d"(%x) {weight = 1 : i64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @residual_shape(%x: tensor<1x2x4x4xf32>, %r: tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{residual operand must have the output shape [1, 2, 4, 4], got [1, 2, 2, 2]}}
  %0 = "lr.conv2d"(%x, %r) {weight = dense<1.0> : tensor<2x2x1x1xf32>} : (tensor<1x2x4x4xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @bad_sparsity_kind(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{attribute 'sparsity' kind "random" must be one of none, filter, channel}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x1x1xf32>, sparsity = #lr.sparsity<"random", [], unit>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @f64_input(%x: tensor<1x2xf64>) -> tensor<1x2xf64> {
  // expected-error @+1 {{'lr.relu' op operand #0 must have f32 elements, got tensor<1x2xf64>}}
  %0 = "lr.relu"(%x) : (tensor<1x2xf64>) -> tensor<1x2xf64>
  return %0 : tensor<1x2xf64>
}

// -----

func.func @dynamic_shape(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  // expected-error @+1 {{'lr.relu' op operand #0 must have a static shape, got tensor<?x2xf32>}}
  %0 = "lr.relu"(%x) : (tensor<?x2xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}

// -----

func.func @no_broadcast(%x: tensor<2x3xf32>, %y: tensor<4xf32>) -> tensor<2x3xf32> {
  // expected-error @+1 {{operand shapes [2, 3] and [1, 4] do not broadcast (dimension 1)}}
  %0 = "lr.add"(%x, %y) : (tensor<2x3xf32>, tensor<4xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

func.func @concat_mismatch(%x: tensor<1x2x4x4xf32>, %y: tensor<1x2x3x4xf32>) -> tensor<1x4x4x4xf32> {
  // expected-error @+1 {{operand #1 shape [1, 2, 3, 4] does not match [1, 2, 4, 4] off the concat axis 1}}
  %0 = "lr.concat"(%x, %y) {axis = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<1x2x3x4xf32>) -> tensor<1x4x4x4xf32>
  return %0 : tensor<1x4x4x4xf32>
}

// -----

func.func @reshape_count(%x: tensor<1x2x4x4xf32>) -> tensor<30xf32> {
  // expected-error @+1 {{cannot reshape [1, 2, 4, 4] (32 elements) to [30] (30 elements)}}
  %0 = "lr.reshape"(%x) : (tensor<1x2x4x4xf32>) -> tensor<30xf32>
  return %0 : tensor<30xf32>
}

// -----

func.func @reflect_pad_too_big(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x12x4xf32> {
  // expected-error @+1 {{reflect 'pads' [4, 0, 4, 0] must be smaller than the input size 4x4}}
  %0 = "lr.pad"(%x) {pads = array<i64: 4, 0, 4, 0>, mode = "reflect"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x12x4xf32>
  return %0 : tensor<1x2x12x4xf32>
}

// -----

func.func @pixel_shuffle_channels(%x: tensor<1x6x4x4xf32>) -> tensor<1x1x8x8xf32> {
  // expected-error @+1 {{input channels 6 must be divisible by 'factor'^2 = 4}}
  %0 = "lr.pixel_shuffle"(%x) {factor = 2 : i64} : (tensor<1x6x4x4xf32>) -> tensor<1x1x8x8xf32>
  return %0 : tensor<1x1x8x8xf32>
}

// -----

func.func @linear_in_features(%x: tensor<1x3xf32>) -> tensor<1x2xf32> {
  // expected-error @+1 {{'weight' must have shape [OUT, 3], got [2, 4]}}
  %0 = "lr.linear"(%x) {weight = dense<1.0> : tensor<2x4xf32>} : (tensor<1x3xf32>) -> tensor<1x2xf32>
  return %0 : tensor<1x2xf32>
}

// -----

func.func @bn_channels(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{'mean' must have shape [2] (one value per channel), got [3]}}
  %0 = "lr.batch_norm"(%x) {mean = dense<0.0> : tensor<3xf32>, var = dense<1.0> : tensor<2xf32>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @wrong_operand_count(%x: tensor<1x2xf32>) -> tensor<1x2xf32> {
  // expected-error @+1 {{'lr.relu' op expects 1 operands, got 2}}
  %0 = "lr.relu"(%x, %x) : (tensor<1x2xf32>, tensor<1x2xf32>) -> tensor<1x2xf32>
  return %0 : tensor<1x2xf32>
}

// -----

func.func @upsample_nearest_align(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x8x8xf32> {
  // expected-error @+1 {{'align_corners' is only meaningful for mode = "bilinear"}}
  %0 = "lr.upsample"(%x) {size = array<i64: 8, 8>, align_corners = true} : (tensor<1x2x4x4xf32>) -> tensor<1x2x8x8xf32>
  return %0 : tensor<1x2x8x8xf32>
}

// -----

func.func @pattern_out_of_kernel(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{sparsity pattern #0 [0, 1, 4, 9] must list distinct kernel positions in [0, 9)}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, sparsity = #lr.sparsity<"pattern", [array<i64: 0, 1, 4, 9>], unit>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @pattern_ids_shape(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{sparsity ids must have shape [2, 2] (filters x channels per group), got [2]}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, sparsity = #lr.sparsity<"pattern", [array<i64: 0, 1, 4, 5>], dense<0> : tensor<2xi32>>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @pattern_id_range(%x: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  // expected-error @+1 {{sparsity ids must be in [-1, 1) (-1 = removed kernel), got values in [0, 3]}}
  %0 = "lr.conv2d"(%x) {weight = dense<1.0> : tensor<2x2x3x3xf32>, padding = array<i64: 1, 1, 1, 1>, sparsity = #lr.sparsity<"pattern", [array<i64: 0, 1, 4, 5>], dense<[[0, 3], [0, 0]]> : tensor<2x2xi32>>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

func.func @slice_bounds(%x: tensor<1x4x8x8xf32>) -> tensor<1x2x8x8xf32> {
  // expected-error @+1 {{'start' = 3, 'end' = 5 must satisfy 0 <= start < end <= 4 (dimension 1 of [1, 4, 8, 8])}}
  %0 = "lr.slice"(%x) {axis = 1 : i64, start = 3 : i64, end = 5 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x2x8x8xf32>
  return %0 : tensor<1x2x8x8xf32>
}

// -----

func.func @slice_result_shape(%x: tensor<1x4x8x8xf32>) -> tensor<1x3x8x8xf32> {
  // expected-error @+1 {{result}}
  %0 = "lr.slice"(%x) {axis = 1 : i64, start = 1 : i64, end = 3 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x3x8x8xf32>
  return %0 : tensor<1x3x8x8xf32>
}

// -----

func.func @softmax_axis(%x: tensor<2x10xf32>) -> tensor<2x10xf32> {
  // expected-error @+1 {{'axis' = 2 is out of range for rank 2}}
  %0 = "lr.softmax"(%x) {axis = 2 : i64} : (tensor<2x10xf32>) -> tensor<2x10xf32>
  return %0 : tensor<2x10xf32>
}

// -----

func.func @reduce_axes_not_adjacent(%x: tensor<1x4x8x8xf32>) -> tensor<1x8xf32> {
  // expected-error @+1 {{'axes' = [1, 3] are not adjacent}}
  %0 = "lr.reduce"(%x) {kind = "sum", axes = array<i64: 1, 3>} : (tensor<1x4x8x8xf32>) -> tensor<1x8xf32>
  return %0 : tensor<1x8xf32>
}

// -----

func.func @reduce_kind(%x: tensor<1x4x8x8xf32>) -> tensor<1x8x8xf32> {
  // expected-error @+1 {{attribute 'kind' = "prod" must be one of sum, mean, max, min}}
  %0 = "lr.reduce"(%x) {kind = "prod", axes = array<i64: 1>} : (tensor<1x4x8x8xf32>) -> tensor<1x8x8xf32>
  return %0 : tensor<1x8x8xf32>
}
