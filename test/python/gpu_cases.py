"""Models shared by the Vulkan and OpenCL tests: together they use every lr op (checked by the tests),
at small shapes because lavapipe and PoCL run kernels on the CPU."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from lrc.dialects.lr.spec import OPS


class Fn(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, *xs):
        return self.fn(self, *xs)


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _bn(c, seed=1):
    bn = nn.BatchNorm2d(c)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return bn


def _seeded(seed, ctor):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ctor().eval()


def conv_variants():
    # stride/pad/dilation/groups/bias/fused BN+act/residual in one network
    def ctor():
        return Fn(lambda s, x: (
            s.mods[2](s.mods[1](s.mods[0](x))),
            torch.relu(s.mods[3](s.mods[0](x)) + s.mods[0](x)),
            s.mods[4](x), s.mods[5](x), s.mods[6](x), s.mods[7](x)),
            nn.Conv2d(4, 8, 3, padding=1), _bn(8), nn.Hardswish(), nn.Conv2d(8, 8, 3, padding=1),
            nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.Conv2d(4, 8, 3, padding=1, groups=4),
            nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), nn.Conv2d(4, 5, (1, 3), padding=(0, 1)))
    return _seeded(1, ctor), (_x(2, 4, 9, 7),)


def conv_acts():
    def ctor():
        return Fn(lambda s, x: tuple(m(x) for m in s.mods),
                  *[nn.Sequential(nn.Conv2d(3, 4, 3), _bn(4), act) for act in
                    (nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(), nn.Hardtanh(-0.5, 0.5),
                     nn.Hardsigmoid(), nn.SiLU(), nn.GELU(), nn.GELU("tanh"), nn.ELU(0.7), nn.SELU(), nn.Mish(),
                     nn.Softplus(2.0, 3.0))])
    return _seeded(2, ctor), (_x(1, 3, 7, 8),)


def conv_transpose():
    def ctor():
        return Fn(lambda s, x: (s.mods[0](x), s.mods[1](x)),
                  nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
                  nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=2, bias=False))
    return _seeded(3, ctor), (_x(1, 4, 5, 6),)


def activations():
    def ctor():
        return Fn(lambda s, x: (torch.relu(x), F.relu6(x), torch.sigmoid(x), torch.tanh(x), F.hardswish(x),
                                F.leaky_relu(x, 0.3), torch.clamp(x, -0.5, 0.7), s.mods[0](x), s.mods[1](x),
                                F.hardsigmoid(x), F.silu(x), F.gelu(x), F.gelu(x, approximate="tanh"), F.elu(x, 0.7),
                                F.selu(x), F.mish(x), F.softplus(x), x.abs(), -x, torch.exp(x), torch.log(x.abs() + 0.1),
                                torch.sqrt(x.abs()), torch.rsqrt(x.abs() + 0.5), torch.reciprocal(x.abs() + 0.5),
                                x ** 2),
                  nn.PReLU(3), nn.PReLU(1))
    return _seeded(4, ctor), (_x(1, 3, 5, 6) * 4,)


def norms():
    def ctor():
        return Fn(lambda s, x: (s.mods[0](torch.relu(x)), s.mods[1](x), s.mods[2](x), s.mods[3](x),
                                F.layer_norm(x.permute(0, 2, 3, 1), (3,)).permute(0, 3, 1, 2)),
                  _bn(3), nn.InstanceNorm2d(3, affine=True), nn.InstanceNorm2d(3), nn.GroupNorm(1, 3))
    m = _seeded(5, ctor)
    with torch.no_grad():
        m.mods[1].weight.uniform_(0.5, 1.5)
        m.mods[1].bias.uniform_(-1, 1)
    return m, (_x(2, 3, 9, 11) * 3 + 1,)


def binaries():
    model = Fn(lambda s, x, y, z: (x + y, x - z, x * y, x / (z * z + 0.5), x + x, (x * 0.5 + 1.0) / 3.0 - 2.0,
                                   y / (x * x + 1), torch.maximum(x, y), torch.minimum(z, x), 1 - x))
    return model.eval(), (_x(1, 3, 4, 5), _x(1, 3, 1, 1, seed=1), _x(5, seed=2))


def data_movement():
    model = Fn(lambda s, x, y: (torch.cat([x, y, x], 1), torch.cat([x, x], 3), x.flatten(1),
                                x.view(1, 3, 20).permute(0, 2, 1) * 2, F.pixel_shuffle(torch.cat([x, x, y, y], 1), 2),
                                x.transpose(2, 3), x[:, 1:3], x[:, :, 1:3] + torch.chunk(y, 2, 2)[1],
                                torch.softmax(x * 4, 1), F.log_softmax(y, -1), x.amax(1, keepdim=True) * y.mean(1),
                                y.sum((1, 2)), torch.min(x, 3)[0], F.adaptive_max_pool2d(y, 1)))
    return model.eval(), (_x(1, 3, 4, 5), _x(1, 3, 4, 5, seed=1))


def pads():
    return Fn(lambda s, x: (F.pad(x, (1, 2, 3, 0), value=0.5), F.pad(x, (1, 2, 3, 0), mode="reflect"),
                            F.pad(x, (2, 0, 1, 1), mode="replicate"))).eval(), (_x(1, 2, 6, 7),)


def pools():
    return Fn(lambda s, x: (F.max_pool2d(x, 2), F.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, ceil_mode=True),
                            F.max_pool2d(x, 3, 1, dilation=2), F.avg_pool2d(x, 2), F.avg_pool2d(x, 3, 2, 1),
                            F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                            F.avg_pool2d(x, 3, 2, ceil_mode=True), F.adaptive_avg_pool2d(x, (5, 4)),
                            F.adaptive_avg_pool2d(x, 1), x.mean((2, 3)))).eval(), (_x(1, 3, 11, 12),)


def resizes():
    return Fn(lambda s, x: (F.interpolate(x, scale_factor=2, mode="nearest"), F.interpolate(x, size=(13, 7)),
                            F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                            F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=True),
                            F.interpolate(x, size=(20, 5), mode="bilinear"),
                            F.interpolate(x, scale_factor=2, mode="bicubic"),
                            F.interpolate(x, size=(4, 13), mode="bicubic", align_corners=True))).eval(), (_x(1, 3, 6, 9),)


def linears():
    def ctor():
        return Fn(lambda s, x, y: (s.mods[0](x), s.mods[1](y), torch.relu(s.mods[2](x.view(3, 37, 1).squeeze(2)))),
                  nn.Linear(37, 19), nn.Linear(8, 5, bias=False), nn.Linear(37, 9))
    return _seeded(6, ctor), (_x(3, 37), _x(2, 2, 8, seed=1))


CASES = {f.__name__: f for f in (conv_variants, conv_acts, conv_transpose, activations, norms, binaries,
                                  data_movement, pads, pools, resizes, linears)}

# reshape is an alias on the GPU (every buffer is flat), all other ops have kernels
GPU_OPS = set(OPS)


def lr_ops_in(lr_ir: str) -> set:
    import re
    return set(re.findall(r'"lr\.([a-z_0-9]+)"', lr_ir))


def assert_close(ref, out, what="", rel=1e-3):
    """The GPU budget of issue 6: max abs error <= rel * max|ref| + 1e-5."""
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref
    out = out.detach().numpy() if isinstance(out, torch.Tensor) else out
    assert ref.shape == out.shape, f"{what}: shape {out.shape} != reference {ref.shape}"
    err = float(abs(ref - out).max()) if ref.size else 0.0
    tol = rel * float(abs(ref).max() if ref.size else 0.0) + 1e-5
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g}"


def compile_and_compare(model, inputs, target, **kw):
    import lrc

    model.eval()
    cm = lrc.compile(model, inputs, target=target, **kw)
    with torch.no_grad():
        ref = model(*inputs)
    out = cm(*inputs)
    refs = ref if isinstance(ref, tuple) else (ref,)
    outs = out if isinstance(out, tuple) else (out,)
    assert len(refs) == len(outs)
    for i, (r, o) in enumerate(zip(refs, outs)):
        assert_close(r, o, f"{target} output #{i}")
    return cm


def app_model(app, hw=16):
    """A trained app checkpoint (apps/checkpoints) at a small input size."""
    import os

    from lrapps.models import load

    root = os.path.join(os.path.dirname(__file__), "..", "..", "apps", "checkpoints")
    model = load(os.path.join(root, f"{app}_dense.pt"))
    x = torch.rand(1, 1 if app == "color" else 3, hw, hw, generator=torch.Generator().manual_seed(0))
    return model, x


def lr_ops_of(model, inputs):
    """The lr ops a model becomes after the default fusion pipeline (no code generation)."""
    from lrc.compiler import optimize
    from lrc.importer import import_model

    m = import_model(model.eval(), inputs)
    optimize(m)
    return lr_ops_in(m.operation.get_asm(large_elements_limit=16))


def pruned_model():
    """A conv net pruned by lrprune (pattern+kernel, kernel, pattern), carrying #lr.sparsity annotations:
    the three pruned convs get the sparse GPU kernel, the first (dense) one the dense kernel."""
    import lrprune

    lib = [(1, 3, 4, 5), (0, 1, 3, 4), (1, 4, 5, 7), (3, 4, 5, 7), (4, 5, 7, 8), (1, 2, 4, 5)]

    def ctor():
        return Fn(lambda s, x: s.mods[3](torch.relu(s.mods[2](torch.relu(s.mods[1](torch.relu(s.mods[0](x))))))),
                  nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 12, 1),
                  nn.Conv2d(12, 8, 3, stride=2, padding=1))
    m = _seeded(7, ctor)
    with torch.no_grad():
        for i, kind, rate in ((1, "pattern+kernel", 0.6), (2, "kernel", 0.6), (3, "pattern", None)):
            conv = m.mods[i]
            lb = lib if kind.startswith("pattern") else None
            conv.weight.copy_(lrprune.project(conv.weight, kind, rate, library=lb))
            conv.lr_sparsity = {"kind": kind, "library": lb or []}
    return m, (_x(1, 3, 10, 12),)


LIB = [(1, 3, 4, 5), (0, 1, 3, 4), (1, 4, 5, 7), (3, 4, 5, 7), (4, 5, 7, 8), (1, 2, 4, 5)]


def prune_conv(conv, kind, rate=None, library=None):
    """Project a conv's weight onto `kind` with lrprune and annotate it like lrprune's hard_prune."""
    import lrprune

    lb = library if kind.startswith("pattern") else None
    with torch.no_grad():
        conv.weight.copy_(lrprune.project(conv.weight, kind, rate, library=lb))
    conv.lr_sparsity = {"kind": kind, "library": lb or []}


def sparse_convs():
    """Pruned convs of every supported kind through the sparse GPU kernel: padding, stride 1/2,
    groups, dilation, non-square kernels, fused BN / bias / activation / residual."""
    def ctor():
        return Fn(lambda s, x: (
            torch.relu(s.mods[0](x)),                                # pattern, pad 1, relu
            s.mods[1](x),                                            # pattern+kernel, stride 2, no bias
            torch.relu(s.mods[3](s.mods[2](x)) + x),                 # kernel, BN, residual + relu
            F.leaky_relu(s.mods[4](x), 0.1),                         # pattern+kernel, groups 2
            s.mods[5](x),                                            # kernel, 1x1 stride 2
            s.mods[6](x),                                            # irregular, 5x5 dilation 2
            torch.sigmoid(s.mods[7](x)),                             # filter, no padding
            s.mods[8](x)),                                           # pattern, 1x3 tap sets from weights
            nn.Conv2d(8, 12, 3, padding=1), nn.Conv2d(8, 6, 3, stride=2, padding=1, bias=False),
            nn.Conv2d(8, 8, 3, padding=1), _bn(8), nn.Conv2d(8, 8, 3, padding=1, groups=2),
            nn.Conv2d(8, 5, 1, stride=2), nn.Conv2d(8, 4, 5, padding=4, dilation=2), nn.Conv2d(8, 6, 3),
            nn.Conv2d(8, 6, (1, 3), padding=(0, 1)))
    m = _seeded(8, ctor)
    prune_conv(m.mods[0], "pattern", library=LIB)
    prune_conv(m.mods[1], "pattern+kernel", 0.5, library=LIB)
    prune_conv(m.mods[2], "kernel", 0.6)
    prune_conv(m.mods[4], "pattern+kernel", 0.4, library=LIB)
    prune_conv(m.mods[5], "kernel", 0.5)
    prune_conv(m.mods[6], "irregular", 0.8)
    prune_conv(m.mods[7], "filter", 0.5)
    prune_conv(m.mods[8], "kernel", 0.5)
    return m, (_x(2, 8, 9, 11, seed=3),)


def pruned_app_model(app, hw=16):
    """A pruned app: the ADMM-pruned checkpoint where one exists (apps/checkpoints/<app>_pruned.pt),
    else the dense checkpoint projected onto pattern+kernel (3x3, rate 0.5) / kernel (1x1, rate 0.75)
    by lrprune with its default per-layer library (untrained after projection: fine for timing and
    numerics, not for image quality)."""
    import os

    from lrapps.models import load

    root = os.path.join(os.path.dirname(__file__), "..", "..", "apps", "checkpoints")
    path = os.path.join(root, f"{app}_pruned.pt")
    x = torch.rand(1, 1 if app == "color" else 3, hw, hw, generator=torch.Generator().manual_seed(0))
    if os.path.exists(path):
        return load(path).eval(), x, "admm"
    model, _ = app_model(app, hw)
    for name, conv in model.named_modules():
        if isinstance(conv, nn.Conv2d) and conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3] > 16:
            import lrprune
            from lrprune.patterns import PatternLibrary
            if tuple(conv.weight.shape[2:]) == (3, 3):
                lib = PatternLibrary.from_weights([conv.weight.detach()])
                prune_conv(conv, "pattern+kernel", 0.5, library=[tuple(p) for p in lib.patterns])
            elif tuple(conv.weight.shape[2:]) == (1, 1):
                prune_conv(conv, "kernel", 0.75)
    return model.eval(), x, "projected"


def has_device(target: str) -> bool:
    from lrc.gpu.errors import DeviceNotFound

    mod = __import__(f"lrc.gpu.{target}_runtime", fromlist=["list_devices"])
    try:
        return bool(mod.list_devices())
    except DeviceNotFound:
        return False


def gpu_targets():
    """pytest params for both GPU targets, each skipped when its runtime finds no device."""
    import pytest

    driver = {"vulkan": "mesa-vulkan-drivers", "opencl": "pocl-opencl-icd"}
    return [pytest.param(t, marks=pytest.mark.skipif(not has_device(t), reason=f"no {t} device (install {driver[t]})"))
            for t in ("vulkan", "opencl")]
