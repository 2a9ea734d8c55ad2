// RUN: lr-opt %s --split-input-file --lr-raise-torch --verify-diagnostics

func.func @forward(%arg0: !torch.vtensor<[1,4],f32>) -> !torch.vtensor<[1,4],f32> {
  // expected-error @+1 {{lrc has no lowering for aten.sign}}
  %0 = torch.aten.sign %arg0 : !torch.vtensor<[1,4],f32> -> !torch.vtensor<[1,4],f32>
  return %0 : !torch.vtensor<[1,4],f32>
}

// -----

// expected-error @+1 {{input #0 has dtype si64}}
func.func @forward(%arg0: !torch.vtensor<[1,4],si64>) -> !torch.vtensor<[1,4],si64> {
  %0 = torch.aten.relu %arg0 : !torch.vtensor<[1,4],si64> -> !torch.vtensor<[1,4],si64>
  return %0 : !torch.vtensor<[1,4],si64>
}

// -----

func.func @gelu_unknown_approximation(%arg0: !torch.vtensor<[1,3,4,4],f32>) -> !torch.vtensor<[1,3,4,4],f32> {
  %s = torch.constant.str "sigmoid"
  // expected-error @+1 {{aten.gelu with approximate='sigmoid'}}
  %0 = torch.aten.gelu %arg0, %s : !torch.vtensor<[1,3,4,4],f32>, !torch.str -> !torch.vtensor<[1,3,4,4],f32>
  return %0 : !torch.vtensor<[1,3,4,4],f32>
}

// -----

// An op the torch dialect itself does not define arrives as torch.operator: named by its real name.
func.func @operator_op(%arg0: !torch.vtensor<[1,3,4,4],f32>) -> !torch.vtensor<[1,3,8,8],f32> {
  %none = torch.constant.none
  %false = torch.constant.bool false
  // expected-error @+1 {{lrc has no lowering for aten.grid_sampler_2d (at}}
  %0 = torch.operator "torch.aten.grid_sampler_2d"(%arg0, %none, %false, %none) : (!torch.vtensor<[1,3,4,4],f32>, !torch.none, !torch.bool, !torch.none) -> !torch.vtensor<[1,3,8,8],f32>
  return %0 : !torch.vtensor<[1,3,8,8],f32>
}

// -----

func.func @softmax_to_double(%arg0: !torch.vtensor<[2,10],f32>) -> !torch.vtensor<[2,10],f32> {
  %m1 = torch.constant.int -1
  %f64 = torch.constant.int 7
  // expected-error @+1 {{aten.softmax.int to dtype 7}}
  %0 = torch.aten.softmax.int %arg0, %m1, %f64 : !torch.vtensor<[2,10],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,10],f32>
  return %0 : !torch.vtensor<[2,10],f32>
}
