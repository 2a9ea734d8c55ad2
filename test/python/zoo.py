"""Deterministic PyTorch test models for the lrc compiler.

Every factory ``make_<name>(size="small"|"app") -> (model, example_input)``
returns a model in eval mode together with an example input. ``"small"``
models build in milliseconds and run on a 1x3x32x32-ish input so numerics
tests stay fast; ``"app"`` models have app-like shapes (224x224 or 256x256
inputs, realistic widths) for benchmarks.

Everything is seeded from the model name, so two calls give bit-identical
weights and inputs, and the global torch RNG is left untouched.

Normalisation statistics are deliberately *not* the identity: BatchNorm
running mean/var and all affine norm parameters are randomised, otherwise a
broken BN/IN folding pass would still produce the right numbers.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ZOO", "SIZES", "make", "randomize_norms"] + [
    "make_vgg", "make_resnet_basic", "make_resnet_bottleneck", "make_mobilenetv2",
    "make_unet", "make_msgnet", "make_wdsr", "make_misc_ops", "make_mobilenetv3", "make_efficientnet",
    "make_shufflenetv2",
]

SIZES = ("small", "app")


def _check_size(size: str) -> bool:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return size == "app"


def _seed_for(name: str, size: str) -> int:
    # crc32 rather than hash(): str hashing is salted per process.
    return zlib.crc32(f"{name}/{size}".encode())


@torch.no_grad()
def randomize_norms(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Give every norm layer non-trivial statistics and affine parameters."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)):
            c = m.num_features
            if getattr(m, "weight", None) is not None:
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
        elif isinstance(m, nn.PReLU):
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.4)
    return model


def _build(name: str, size: str, ctor, input_shape):
    """Seeded construction + randomised norms + eval + seeded example input."""
    seed = _seed_for(name, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ctor()
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_norms(model, gen)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(*input_shape, generator=gen)
    return model, x


def _conv_bn_relu(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(inplace=True),
    )


# --------------------------------------------------------------------------- vgg

class VGG(nn.Module):
    def __init__(self, cfg, in_hw, hidden, num_classes):
        super().__init__()
        layers, c = [], 3
        hw = in_hw
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                hw //= 2
            else:
                # bias=True on purpose: VGG has no BN, so conv bias is exercised here.
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(c * hw * hw, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def make_vgg(size: str = "small"):
    if _check_size(size):
        cfg = [16, 16, "M", 32, 32, "M", 64, 64, 64, "M", 128, 128, 128, "M", 128, 128, 128, "M"]
        return _build("vgg", size, lambda: VGG(cfg, 224, 256, 100), (1, 3, 224, 224))
    cfg = [8, "M", 16, "M", 32, 32, "M"]
    return _build("vgg", size, lambda: VGG(cfg, 32, 32, 10), (1, 3, 32, 32))


# ------------------------------------------------------------------------ resnets

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.shortcut is None else self.shortcut(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # Stride on the 3x3 (torchvision "v1.5") so the 1x1 never subsamples.
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.shortcut is None else self.shortcut(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + idt)


class ResNet(nn.Module):
    def __init__(self, block, depths, widths, num_classes, imagenet_stem):
        super().__init__()
        w0 = widths[0]
        if imagenet_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(3, w0, 7, 2, 3, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = _conv_bn_relu(3, w0)
        layers, cin = [], w0
        for i, (d, w) in enumerate(zip(depths, widths)):
            for j in range(d):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(cin, w, stride))
                cin = w * block.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_resnet_basic(size: str = "small"):
    if _check_size(size):
        # ResNet-18 topology at half width.
        ctor = lambda: ResNet(BasicBlock, [2, 2, 2, 2], [32, 64, 128, 256], 1000, True)
        return _build("resnet_basic", size, ctor, (1, 3, 224, 224))
    ctor = lambda: ResNet(BasicBlock, [1, 2, 1], [8, 16, 32], 10, False)
    return _build("resnet_basic", size, ctor, (1, 3, 32, 32))


def make_resnet_bottleneck(size: str = "small"):
    if _check_size(size):
        # ResNet-50 topology at half width.
        ctor = lambda: ResNet(Bottleneck, [3, 4, 6, 3], [32, 64, 128, 256], 1000, True)
        return _build("resnet_bottleneck", size, ctor, (1, 3, 224, 224))
    ctor = lambda: ResNet(Bottleneck, [1, 2, 1], [4, 8, 16], 10, False)
    return _build("resnet_bottleneck", size, ctor, (1, 3, 32, 32))


# -------------------------------------------------------------------- mobilenetv2

class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = []
        if expand != 1:
            layers.append(_conv_bn_relu(cin, hidden, 1, act=nn.ReLU6))
        layers += [
            _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            # Linear bottleneck: no activation after the projection.
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV2(nn.Module):
    def __init__(self, stem, settings, last, num_classes, stem_stride):
        super().__init__()
        layers = [_conv_bn_relu(3, stem, 3, stem_stride, act=nn.ReLU6)]
        cin = stem
        for t, c, n, s in settings:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_relu(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def make_mobilenetv2(size: str = "small"):
    if _check_size(size):
        # The MobileNetV2 1.0 table (t, c, n, s).
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        ctor = lambda: MobileNetV2(32, settings, 1280, 1000, 2)
        return _build("mobilenetv2", size, ctor, (1, 3, 224, 224))
    # Keeps t=1 (no expansion conv), a residual repeat and a stride-2 block.
    settings = [(1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 2, 2)]
    ctor = lambda: MobileNetV2(8, settings, 32, 10, 1)
    return _build("mobilenetv2", size, ctor, (1, 3, 32, 32))


# ------------------------------------------- mobilenetv3 / efficientnet / shufflenetv2
# The three mobile families torchvision ships beside MobileNetV2, written out here (torchvision is not
# a dependency): squeeze-excitation with hardsigmoid or sigmoid gates, hardswish and SiLU, channel
# split and shuffle.

class SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze, gate):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.act = nn.ReLU() if gate is nn.Hardsigmoid else nn.SiLU()
        self.gate = gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def _cba(cin, cout, k, stride=1, groups=1, act=None):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """MobileNetV3's bneck / EfficientNet's MBConv: expand 1x1, depthwise kxk, SE, project 1x1."""

    def __init__(self, cin, hidden, cout, k, stride, se, act, gate):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers = [] if hidden == cin else [_cba(cin, hidden, 1, act=act)]
        layers.append(_cba(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, se, gate))
        layers.append(_cba(hidden, cout, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


def _mbv3_settings(app: bool):
    # (k, hidden, out, se, act, stride): the MobileNetV3-Small table; "small" keeps one of each kind.
    HS, RE = nn.Hardswish, nn.ReLU
    table = [(3, 16, 16, True, RE, 2), (3, 72, 24, False, RE, 2), (3, 88, 24, False, RE, 1),
             (5, 96, 40, True, HS, 2), (5, 240, 40, True, HS, 1), (5, 240, 40, True, HS, 1),
             (5, 120, 48, True, HS, 1), (5, 144, 48, True, HS, 1), (5, 288, 96, True, HS, 2),
             (5, 576, 96, True, HS, 1), (5, 576, 96, True, HS, 1)]
    if app:
        return 16, table, 576, 1024, 1000
    return 8, [(3, 8, 8, True, RE, 2), (3, 24, 12, False, RE, 1), (5, 36, 12, True, HS, 1),
               (5, 48, 16, True, HS, 2)], 48, 64, 10


class MobileNetV3(nn.Module):
    def __init__(self, app: bool):
        super().__init__()
        stem, table, last, head, classes = _mbv3_settings(app)
        layers, cin = [_cba(3, stem, 3, 2, act=nn.Hardswish)], stem
        for k, hidden, out, se, act, s in table:
            layers.append(MBConv(cin, hidden, out, k, s, _divisible(hidden // 4) if se else 0, act, nn.Hardsigmoid))
            cin = out
        layers.append(_cba(cin, last, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(last, head), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(head, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def _divisible(v, d=8):
    return max(d, (v + d // 2) // d * d)


def make_mobilenetv3(size: str = "small"):
    app = _check_size(size)
    return _build("mobilenetv3", size, lambda: MobileNetV3(app), (1, 3, 224, 224) if app else (1, 3, 32, 32))


class EfficientNet(nn.Module):
    """EfficientNet-B0 (expand ratio, kernel, stride, channels, repeats per stage), SiLU and sigmoid
    SE gates; "small" is two short stages."""

    def __init__(self, app: bool):
        super().__init__()
        if app:
            stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                      (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
            stem, last, classes = 32, 1280, 1000
        else:
            stages = [(1, 3, 1, 8, 1), (4, 5, 2, 12, 2)]
            stem, last, classes = 8, 32, 10
        layers, cin = [_cba(3, stem, 3, 2, act=nn.SiLU)], stem
        for t, k, s, c, n in stages:
            for i in range(n):
                layers.append(MBConv(cin, cin * t, c, k, s if i == 0 else 1, max(1, cin // 4), nn.SiLU, nn.Sigmoid))
                cin = c
        layers.append(_cba(cin, last, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def make_efficientnet(size: str = "small"):
    app = _check_size(size)
    return _build("efficientnet", size, lambda: EfficientNet(app), (1, 3, 224, 224) if app else (1, 3, 32, 32))


class ShuffleUnit(nn.Module):
    """ShuffleNetV2: stride 1 splits the channels in half and transforms one half; stride 2 runs both
    branches on the whole input; then the halves are concatenated and shuffled."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        bin_ = cin if stride == 2 else half
        if stride == 2:
            self.left = nn.Sequential(_cba(cin, cin, 3, 2, groups=cin), _cba(cin, half, 1, act=nn.ReLU))
        self.right = nn.Sequential(_cba(bin_, half, 1, act=nn.ReLU), _cba(half, half, 3, stride, groups=half),
                                   _cba(half, half, 1, act=nn.ReLU))

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            y = torch.cat([a, self.right(b)], 1)
        else:
            y = torch.cat([self.left(x), self.right(x)], 1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleNetV2(nn.Module):
    def __init__(self, app: bool):
        super().__init__()
        stem, widths, repeats, last, classes = ((24, (116, 232, 464), (4, 8, 4), 1024, 1000) if app
                                                else (8, (16, 32), (2, 2), 64, 10))
        layers, cin = [_cba(3, stem, 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)], stem
        for c, n in zip(widths, repeats):
            for i in range(n):
                layers.append(ShuffleUnit(cin, c, 2 if i == 0 else 1))
                cin = c
        layers.append(_cba(cin, last, 1, act=nn.ReLU))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def make_shufflenetv2(size: str = "small"):
    app = _check_size(size)
    return _build("shufflenetv2", size, lambda: ShuffleNetV2(app), (1, 3, 224, 224) if app else (1, 3, 32, 32))


# --------------------------------------------------------------------------- unet

def _double_conv(cin, cout):
    return nn.Sequential(_conv_bn_relu(cin, cout), _conv_bn_relu(cout, cout))


class UNet(nn.Module):
    """Bilinear nn.Upsample on every decoder level except the deepest, which
    uses a ConvTranspose2d, so both upsampling paths are covered."""

    def __init__(self, widths, in_ch=3, out_ch=2):
        super().__init__()
        self.inc = _double_conv(in_ch, widths[0])
        self.downs = nn.ModuleList(
            _double_conv(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        self.pool = nn.MaxPool2d(2)
        ups, convs = [], []
        rev = widths[::-1]
        for i in range(len(rev) - 1):
            deep, skip = rev[i], rev[i + 1]
            if i == 0:
                ups.append(nn.ConvTranspose2d(deep, deep // 2, 2, stride=2))
                cat_ch = deep // 2 + skip
            else:
                ups.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
                cat_ch = deep + skip
            convs.append(_double_conv(cat_ch, skip))
        self.ups = nn.ModuleList(ups)
        self.up_convs = nn.ModuleList(convs)
        self.outc = nn.Conv2d(widths[0], out_ch, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(self.pool(skips[-1])))
        y = skips.pop()
        for up, conv in zip(self.ups, self.up_convs):
            y = conv(torch.cat([up(y), skips.pop()], dim=1))
        return self.outc(y)


def make_unet(size: str = "small"):
    if _check_size(size):
        return _build("unet", size, lambda: UNet([16, 32, 64, 128, 256]), (1, 3, 256, 256))
    return _build("unet", size, lambda: UNet([4, 8, 16]), (1, 3, 32, 32))


# ------------------------------------------------------------------------- msgnet

class _ReflConv(nn.Sequential):
    """Reflection padding + unpadded conv, as in MSG-Net's ConvLayer."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


class _UpConv(nn.Sequential):
    """Nearest upsample then conv (MSG-Net's UpsampleConvLayer); avoids the
    checkerboard artefacts of transposed convs."""

    def __init__(self, cin, cout, k, scale=2):
        layers = [nn.Upsample(scale_factor=scale, mode="nearest")]
        if k > 1:
            layers.append(nn.ReflectionPad2d(k // 2))
        layers.append(nn.Conv2d(cin, cout, k))
        super().__init__(*layers)


def _in(c):
    return nn.InstanceNorm2d(c, affine=True)


class MSGBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.residual = None
        if stride != 1 or cin != planes * 4:
            self.residual = nn.Conv2d(cin, planes * 4, 1, stride)
        # Pre-activation ordering (norm, relu, conv) as in MSG-Net.
        self.body = nn.Sequential(
            _in(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, planes, 1),
            _in(planes), nn.ReLU(inplace=True), _ReflConv(planes, planes, 3, stride),
            _in(planes), nn.ReLU(inplace=True), nn.Conv2d(planes, planes * 4, 1))

    def forward(self, x):
        r = x if self.residual is None else self.residual(x)
        return r + self.body(x)


class MSGUpBottleneck(nn.Module):
    def __init__(self, cin, planes):
        super().__init__()
        self.residual = _UpConv(cin, planes * 4, 1)
        self.body = nn.Sequential(
            _in(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, planes, 1),
            _in(planes), nn.ReLU(inplace=True), _UpConv(planes, planes, 3),
            _in(planes), nn.ReLU(inplace=True), nn.Conv2d(planes, planes * 4, 1))

    def forward(self, x):
        return self.residual(x) + self.body(x)


class MSGNetGenerator(nn.Module):
    """widths = (stem, down1, ngf, up1, up2); MSG-Net uses (64, 32, 128, 32, 16)."""

    def __init__(self, widths, n_res):
        super().__init__()
        c0, d1, ngf, u1, u2 = widths
        e = MSGBottleneck.expansion
        self.model = nn.Sequential(
            _ReflConv(3, c0, 7), _in(c0), nn.ReLU(inplace=True),
            MSGBottleneck(c0, d1, 2), MSGBottleneck(d1 * e, ngf, 2),
            *[MSGBottleneck(ngf * e, ngf) for _ in range(n_res)],
            MSGUpBottleneck(ngf * e, u1), MSGUpBottleneck(u1 * e, u2),
            _in(u2 * e), nn.ReLU(inplace=True), _ReflConv(u2 * e, 3, 7))

    def forward(self, x):
        return self.model(x)


def make_msgnet(size: str = "small"):
    if _check_size(size):
        # MSG-Net's own generator sizes (ngf=128, 6 res blocks) minus CoMatch.
        ctor = lambda: MSGNetGenerator((64, 32, 128, 32, 16), 6)
        return _build("msgnet", size, ctor, (1, 3, 256, 256))
    return _build("msgnet", size, lambda: MSGNetGenerator((8, 4, 8, 4, 2), 1), (1, 3, 32, 32))


# --------------------------------------------------------------------------- wdsr

class WDSRBlock(nn.Module):
    """WDSR-B: wide 1x1 expansion, ReLU, linear low-rank 1x1, then 3x3."""

    def __init__(self, feats, expand, low_rank):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(feats, feats * expand, 1), nn.ReLU(inplace=True),
            nn.Conv2d(feats * expand, low_rank, 1),
            nn.Conv2d(low_rank, feats, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class WDSR(nn.Module):
    def __init__(self, feats, blocks, expand, low_rank, scale=2):
        super().__init__()
        out = 3 * scale * scale
        self.head = nn.Conv2d(3, feats, 3, padding=1)
        self.body = nn.Sequential(*[WDSRBlock(feats, expand, low_rank) for _ in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(feats, out, 3, padding=1), nn.PixelShuffle(scale))
        self.skip = nn.Sequential(nn.Conv2d(3, out, 5, padding=2), nn.PixelShuffle(scale))

    def forward(self, x):
        return self.tail(self.body(self.head(x))) + self.skip(x)


def make_wdsr(size: str = "small"):
    if _check_size(size):
        # WDSR-B widths (32 feats, x6 expansion, 0.8 low rank) at half depth:
        # 16 blocks on a 256x256 LR input takes >1 s per dense fwd pass.
        return _build("wdsr", size, lambda: WDSR(32, 8, 6, 26), (1, 3, 256, 256))
    return _build("wdsr", size, lambda: WDSR(8, 2, 4, 6), (1, 3, 32, 32))


# ------------------------------------------------------------------------ misc_ops

class MiscOps(nn.Module):
    """Touches every op the other zoo models do not."""

    def __init__(self, c, num_classes=10):
        super().__init__()
        self.conv0 = nn.Conv2d(3, c, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)
        self.zpad = nn.ZeroPad2d((1, 2, 1, 0))  # asymmetric on purpose
        self.conv1 = nn.Conv2d(c, c, 3)
        self.prelu = nn.PReLU(c)
        self.rpad = nn.ReplicationPad2d(1)
        self.conv2 = nn.Conv2d(c, c, 3)
        self.hswish = nn.Hardswish()
        # Squeeze-and-excitation: pool -> 1x1 -> relu -> 1x1 -> sigmoid -> broadcast mul.
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 1), nn.Sigmoid())
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.dil = nn.Conv2d(c, c, 3, padding=2, dilation=2)
        self.tanh = nn.Tanh()
        self.grp = nn.Conv2d(c, c, 3, padding=1, groups=2)
        self.htanh = nn.Hardtanh(-0.5, 0.5)
        self.avgpool = nn.AvgPool2d(2)
        self.apool = nn.AdaptiveAvgPool2d((2, 2))
        self.drop = nn.Dropout(0.3)
        self.fc_a = nn.Linear(4 * c, num_classes)
        self.fc_m = nn.Linear(c, num_classes)
        self.c = c

    def forward(self, x):
        x = self.lrelu(self.conv0(x))
        x = self.prelu(self.conv1(self.zpad(x)))
        x = self.hswish(self.conv2(self.rpad(x)))
        x = x * self.se(x)
        x = self.maxpool(x)
        x = self.tanh(self.dil(x)) - self.htanh(self.grp(x))
        x = self.avgpool(x) / 2.0
        a = self.apool(x).view(-1, 4 * self.c)
        m = x.mean((2, 3))
        return self.fc_a(self.drop(a)) + self.fc_m(m.reshape(-1, self.c))


def make_misc_ops(size: str = "small"):
    if _check_size(size):
        return _build("misc_ops", size, lambda: MiscOps(64, 100), (1, 3, 224, 224))
    return _build("misc_ops", size, lambda: MiscOps(8), (1, 3, 32, 32))


ZOO = {
    "vgg": make_vgg,
    "resnet_basic": make_resnet_basic,
    "resnet_bottleneck": make_resnet_bottleneck,
    "mobilenetv2": make_mobilenetv2,
    "unet": make_unet,
    "msgnet": make_msgnet,
    "wdsr": make_wdsr,
    "misc_ops": make_misc_ops,
    "mobilenetv3": make_mobilenetv3,
    "efficientnet": make_efficientnet,
    "shufflenetv2": make_shufflenetv2,
}


def make(name: str, size: str = "small"):
    return ZOO[name](size)


if __name__ == "__main__":  # quick inventory: python test/python/zoo.py [small|app]
    import sys
    import time

    sz = sys.argv[1] if len(sys.argv) > 1 else "small"
    torch.set_num_threads(1)
    for n, f in ZOO.items():
        t0 = time.perf_counter()
        m, x = f(sz)
        t1 = time.perf_counter()
        with torch.no_grad():
            y = m(x)
        t2 = time.perf_counter()
        params = sum(p.numel() for p in m.parameters())
        print(f"{n:18s} in={tuple(x.shape)} out={tuple(y.shape)} params={params:,} "
              f"std={y.std().item():.3g} build={1e3*(t1-t0):.0f}ms fwd={1e3*(t2-t1):.0f}ms")
