"""Every lr op, compiled for the host and compared with PyTorch."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Fn(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, *xs):
        return self.fn(self, *xs)


def x4(n=1, c=3, h=9, w=11):
    return torch.randn(n, c, h, w)


CONVS = {
    "3x3_pad1": dict(cin=4, cout=8, k=3, padding=1),
    "1x1": dict(cin=8, cout=16, k=1),
    "3x3_stride2": dict(cin=4, cout=6, k=3, stride=2, padding=1),
    "5x5_nopad_bias_off": dict(cin=3, cout=5, k=5, bias=False),
    "7x7_stride2_pad3": dict(cin=3, cout=8, k=7, stride=2, padding=3),
    "depthwise": dict(cin=8, cout=8, k=3, padding=1, groups=8),
    "depthwise_mult2": dict(cin=4, cout=8, k=3, padding=1, groups=4),
    "grouped": dict(cin=8, cout=12, k=3, padding=1, groups=2),
    "dilated": dict(cin=4, cout=4, k=3, padding=2, dilation=2),
    "asym_kernel": dict(cin=3, cout=4, k=(1, 3), padding=(0, 1)),
    "same": dict(cin=3, cout=4, k=4, padding="same"),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv2d(check, name):
    p = dict(CONVS[name])
    cin, cout, k = p.pop("cin"), p.pop("cout"), p.pop("k")
    check(nn.Conv2d(cin, cout, k, **p), x4(2, cin, 13, 10))


@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(), nn.Hardswish(),
                                 nn.Hardtanh(-0.5, 0.5), nn.Hardsigmoid(), nn.SiLU(), nn.GELU(), nn.GELU("tanh"),
                                 nn.ELU(0.7), nn.SELU(), nn.CELU(0.5), nn.Mish(), nn.Softplus(),
                                 nn.Softplus(2.0, 3.0)], ids=lambda m: repr(m))
def test_conv_bn_act_fused(check, act):
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    cm = check(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), bn, act), x4())
    assert cm.lr_ir.count('"lr.') == 1, cm.lr_ir  # one fused layer


def test_conv_residual_fused(check):
    m = Fn(lambda s, x: torch.relu(s.mods[0](x) + x), nn.Conv2d(4, 4, 3, padding=1))
    cm = check(m, x4(1, 4, 8, 8))
    assert cm.lr_ir.count('"lr.') == 1, cm.lr_ir


def test_conv_transpose2d(check):
    check(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), x4(1, 4, 5, 7))
    check(nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=2, bias=False), x4(1, 4, 5, 6))


@pytest.mark.parametrize("mod", [nn.ReLU(), nn.ReLU6(), nn.Sigmoid(), nn.Tanh(), nn.Hardswish(), nn.LeakyReLU(0.3),
                                 nn.Hardtanh(-1, 2), nn.PReLU(3), nn.PReLU(1), nn.Hardsigmoid(), nn.SiLU(), nn.GELU(),
                                 nn.GELU("tanh"), nn.ELU(), nn.ELU(0.4), nn.SELU(), nn.CELU(0.5), nn.Mish(),
                                 nn.Softplus(), nn.Softplus(0.5, 2.0)], ids=lambda m: repr(m))
def test_activation(check, mod):
    check(mod, x4() * 4)


def test_unary_math(check):
    """abs, neg, exp, log, sqrt, rsqrt, reciprocal and pow 2 / 0.5 / -0.5 / -1 (scalar and vector
    lanes: 99 elements); a conv followed by one of them fuses it."""
    x = x4(1, 3, 3, 11)
    check(Fn(lambda s, x: (x.abs(), -x, torch.exp(x), torch.log(x.abs() + 0.01), torch.sqrt(x.abs()),
                           torch.rsqrt(x.abs() + 0.5), torch.reciprocal(x.abs() + 0.5), x ** 2,
                           (x.abs() + 0.1) ** 0.5, (x.abs() + 0.1) ** -0.5, (x.abs() + 0.1) ** -1, x ** 1)), x)
    cm = check(nn.Sequential(nn.Conv2d(3, 4, 3), Fn(lambda s, x: torch.exp(x))), x4())
    assert cm.lr_ir.count('"lr.') == 1, cm.lr_ir


def test_log_edge_values():
    import lrc

    cm = lrc.compile(Fn(lambda s, x: torch.log(x)), (torch.ones(1, 20),))
    x = torch.tensor([[0.0, -1.0, 1e-30, 1e30, 1.0, 2.0, 0.5, 3.4e38, 1.2e-38, 7.0] * 2])
    np.testing.assert_allclose(cm(x.numpy()), torch.log(x).numpy(), rtol=1e-6, equal_nan=True)


def test_pow_other_exponents_refused():
    import lrc

    with pytest.raises(lrc.UnsupportedOpError, match="aten.pow with exponent 3"):
        lrc.compile(Fn(lambda s, x: x ** 3), (x4(),))


def test_more_elementwise(check):
    """rsub (1 - x), clamp_min / clamp_max, maximum / minimum with broadcasting, and expand_as into
    broadcasting arithmetic (F.normalize's pattern)."""
    check(Fn(lambda s, x, y: (1 - torch.sigmoid(x), torch.rsub(x, y, alpha=2), torch.rsub(y, x, alpha=3),
                              x.clamp_min(0.2), x.clamp_max(-0.1),
                              torch.maximum(x, y), torch.minimum(y, x), x / y.abs().expand_as(x) + 1)),
          x4(2), x4(2, 3, 1, 11))


def test_expand_into_other_ops_is_refused():
    import lrc

    with pytest.raises(lrc.UnsupportedOpError, match="expand.*broadcasting arithmetic"):
        lrc.compile(Fn(lambda s, x: torch.relu(x[:, :1].expand(1, 3, 9, 11))), (x4(),))


def test_norms_shuffles_conv1d(check):
    """F.normalize (ord-2 norm over channels), ord 1 / inf norms, channel_shuffle, pixel_unshuffle,
    Conv1d (padding, stride, dilation, groups) with BatchNorm1d and ReLU."""
    check(Fn(lambda s, x: (F.normalize(x, dim=1), torch.linalg.vector_norm(x, 1, dim=(2, 3)),
                           torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True),
                           F.channel_shuffle(x, 2), F.pixel_unshuffle(x, 2))), x4(2, 4, 6, 8))
    bn = nn.BatchNorm1d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    check(nn.Sequential(nn.Conv1d(4, 6, 5, padding=2), bn, nn.ReLU(), nn.Conv1d(6, 6, 3, stride=2, dilation=2, groups=3)),
          torch.randn(2, 4, 37))


def test_clamp(check):
    check(Fn(lambda s, x: torch.clamp(x, min=-0.5, max=0.7)), x4())
    check(Fn(lambda s, x: torch.clamp(x, min=0.1)), x4())


def test_batch_norm_standalone(check):
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    check(Fn(lambda s, x: s.mods[0](torch.relu(x)), bn), x4(2))


def test_instance_norm(check):
    check(nn.InstanceNorm2d(3, affine=True), x4(2, 3, 17, 19) * 3 + 1)
    check(nn.InstanceNorm2d(3), x4(1, 3, 4, 4))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("yshape", [(1, 3, 9, 11), (1, 3, 1, 1), (11,), (1, 1, 9, 1), (3, 1, 1)])
def test_binary_broadcast(check, op, yshape):
    y = torch.rand(yshape) + 0.5
    m = Fn(lambda s, x, y: getattr(torch, op)(x, y))
    check(m, x4(), y)


def test_binary_scalar(check):
    check(Fn(lambda s, x: (x * 0.5 + 1.0) / 3.0 - 2.0), x4())
    check(Fn(lambda s, x: torch.add(x, x, alpha=2.0)), x4())


def test_concat(check):
    check(Fn(lambda s, x, y: torch.cat([x, y, x], 1)), x4(1, 3), x4(1, 2))
    check(Fn(lambda s, x, y: torch.cat([x, y], 2)), x4(2, 3, 4, 5), x4(2, 3, 2, 5))
    check(Fn(lambda s, x: torch.cat([x, x], 3)), x4(2, 3, 4, 5))


def test_slice_narrow_split_chunk(check):
    """Channel and spatial slices (negative and past-the-end bounds), narrow, split by size and by
    sizes, chunk with a short last piece, on batch 2; a whole-range slice is no op at all."""
    check(Fn(lambda s, x: (x[:, 1:3], x[:, -2:], x[:, :, 2:-1], x[..., 3:100], torch.narrow(x, 1, 1, 2))), x4(2, 4))
    check(Fn(lambda s, x: torch.split(x, 2, 1)), x4(2, 5))
    check(Fn(lambda s, x: tuple(t * (i + 1) for i, t in enumerate(torch.split(x, [1, 3, 1], 1)))), x4(1, 5))
    check(Fn(lambda s, x: x.chunk(2, 1)[1] - x.chunk(2, 1)[0][:, :2]), x4(1, 5))
    check(Fn(lambda s, x: torch.chunk(x, 3, 2)), x4(1, 3, 8, 5))
    cm = check(Fn(lambda s, x: x[:, 0:3] + 1), x4(1, 3))
    assert '"lr.slice"' not in cm.lr_ir


def test_shufflenet_unit(check):
    """ShuffleNetV2's stride-1 unit: chunk, a branch on one half, concat, channel shuffle."""
    branch = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 4, 1))

    def unit(s, x):
        a, b = x.chunk(2, 1)
        y = torch.cat([a, s.mods[0](b)], 1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
    check(Fn(unit, branch), x4(1, 8, 10, 12))


def test_softmax(check):
    """Last axis of a classifier head, the channel axis of NCHW (vectorised over pixels, with a
    scalar tail), a middle axis, log_softmax; large logits do not overflow."""
    head = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    check(Fn(lambda s, x: (torch.softmax(s.mods[0](x), -1), F.log_softmax(s.mods[0](x), 1)), head), x4(2))
    check(Fn(lambda s, x: (torch.softmax(x * 30, 1), F.log_softmax(x, dim=1), torch.softmax(x, 2))), x4(2, 5, 3, 7))


def test_reductions(check):
    """Channel mean / amax (CBAM), sum / min over trailing axes (vector lanes plus a scalar tail),
    max.dim values, keepdim or not, whole-tensor mean and sum, the global max pool; the spatial mean
    stays the global average pool."""
    check(Fn(lambda s, x: (x.mean(1, keepdim=True), x.amax(1), torch.max(x, 1)[0], torch.min(x, 3, keepdim=True)[0],
                           x.sum((2, 3)), x.amin((1, 2, 3)), x.sum(-1), x.mean(), x.sum(),
                           F.adaptive_max_pool2d(x, 1), x.mean((-1, -2)))), x4(2, 5, 7, 9))
    cm = check(Fn(lambda s, x: x.mean((2, 3))), x4(1, 3, 8, 8))
    assert '"lr.adaptive_avg_pool2d"' in cm.lr_ir and '"lr.reduce"' not in cm.lr_ir


def test_cbam_attention(check):
    """CBAM's spatial attention: channel mean and max, a 7x7 conv, sigmoid gating."""
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())

    def cbam(s, x):
        y = s.mods[0](x)
        a = torch.sigmoid(s.mods[1](torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], 1)))
        return y * a
    check(Fn(cbam, conv, nn.Conv2d(2, 1, 7, padding=3)), x4(1, 3, 16, 20))


def test_reductions_refused():
    import lrc

    with pytest.raises(lrc.UnsupportedOpError, match=r"over dims \[1, 3\].*not adjacent"):
        lrc.compile(Fn(lambda s, x: x.sum((1, 3))), (x4(),))
    with pytest.raises(lrc.UnsupportedOpError, match="result #1 of aten.max.dim"):
        lrc.compile(Fn(lambda s, x: torch.max(x, 1)[1].float()), (x4(),))
    with pytest.raises(lrc.UnsupportedOpError, match=r"adaptive_max_pool2d to \[2, 2\]"):
        lrc.compile(Fn(lambda s, x: F.adaptive_max_pool2d(x, 2)), (x4(),))


def _randomise(norm):
    with torch.no_grad():
        if getattr(norm, "weight", None) is not None:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-1, 1)
    return norm


@pytest.mark.parametrize("norm", [nn.GroupNorm(2, 6), nn.GroupNorm(3, 6, affine=False), nn.GroupNorm(1, 6),
                                  nn.GroupNorm(6, 6)], ids=repr)
def test_group_norm(check, norm):
    """Groups of channels normalised as one run each (1 group: over C, H, W; C groups: instance norm)."""
    cm = check(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), _randomise(norm), nn.ReLU()), x4(2, 3, 9, 10) * 2 + 1)
    assert '"lr.instance_norm"' in cm.lr_ir


def test_layer_norm(check):
    """ConvNeXt's channels-last LayerNorm (permute, normalise C, permute back) and a LayerNorm over
    the last two dims, with and without the elementwise affine."""
    ln = _randomise(nn.LayerNorm(6))
    check(Fn(lambda s, x: s.mods[1](s.mods[0](x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
             nn.Conv2d(3, 6, 7, padding=3, groups=3), ln), x4(2, 3, 8, 9))
    check(Fn(lambda s, x: (F.layer_norm(x, (9, 11)), s.mods[0](x)), _randomise(nn.LayerNorm([9, 11]))), x4(1, 3) * 3)
    check(Fn(lambda s, x: s.mods[0](x), nn.LayerNorm(11, elementwise_affine=False)), x4(1, 3))


def test_slice_with_step_is_refused():
    import lrc

    with pytest.raises(lrc.UnsupportedOpError, match="aten.slice with step 2"):
        lrc.compile(Fn(lambda s, x: x[:, ::2]), (x4(1, 4),))


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=3, stride=1, dilation=2)])
def test_max_pool(check, kw):
    check(nn.MaxPool2d(**kw), x4(1, 3, 11, 12))


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
                                dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_avg_pool(check, kw):
    check(nn.AvgPool2d(**kw), x4(1, 3, 11, 12))


@pytest.mark.parametrize("size", [1, (2, 3), (5, 4), (9, 11)])
def test_adaptive_avg_pool(check, size):
    check(nn.AdaptiveAvgPool2d(size), x4(1, 3, 9, 11))


def test_spatial_mean(check):
    check(Fn(lambda s, x: x.mean((2, 3))), x4(2))
    check(Fn(lambda s, x: x.mean((-1, -2), keepdim=True)), x4(2))


@pytest.mark.parametrize("kw", [dict(scale_factor=2, mode="nearest"), dict(size=(13, 7), mode="nearest"),
                                dict(scale_factor=2, mode="bilinear", align_corners=False),
                                dict(scale_factor=1.5, mode="bilinear", align_corners=True),
                                dict(size=(20, 5), mode="bilinear", align_corners=False),
                                dict(scale_factor=2, mode="bicubic"), dict(scale_factor=3, mode="bicubic"),
                                dict(scale_factor=1.5, mode="bicubic", align_corners=True),
                                dict(size=(23, 5), mode="bicubic"), dict(size=(4, 30), mode="bicubic", align_corners=True)])
def test_upsample(check, kw):
    check(nn.Upsample(**kw), x4(1, 3, 6, 9))


def test_pixel_shuffle(check):
    check(nn.PixelShuffle(2), x4(1, 12, 5, 6))
    check(nn.PixelShuffle(3), x4(2, 9, 4, 3))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad(check, mode):
    check(Fn(lambda s, x: F.pad(x, (1, 2, 3, 0), mode=mode, **({"value": 0.5} if mode == "constant" else {}))),
          x4(1, 3, 6, 7))


def test_pad_modules(check):
    check(nn.ReflectionPad2d(3), x4(1, 2, 8, 8))
    check(nn.ZeroPad2d((2, 0, 1, 1)), x4(1, 2, 5, 5))


def test_linear(check):
    check(nn.Linear(37, 19), torch.randn(3, 37))
    check(nn.Linear(8, 5, bias=False), torch.randn(1, 8))
    check(nn.Sequential(nn.Linear(16, 9), nn.ReLU()), torch.randn(2, 16))


def test_reshape_flatten_permute(check):
    check(Fn(lambda s, x: x.flatten(1)), x4(2))
    check(Fn(lambda s, x: x.view(1, 3, 99).permute(0, 2, 1) * 2), x4(1, 3, 9, 11))
    check(Fn(lambda s, x: x.transpose(2, 3).unsqueeze(0)), x4(1, 3, 4, 5))


def test_dropout_is_identity_in_eval(check):
    check(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.ReLU()), x4())


def test_multiple_inputs_and_outputs(check):
    check(Fn(lambda s, x, y: (x + 1, torch.relu(y), x)), x4(), x4(1, 2, 3, 4))
