"""threads=N: big convs split over output channels and run in OpenMP parallel regions (docs/threads.md).
Numerics against PyTorch; the split itself (balanced by non-zero work); option validation."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import lrprune
import zoo

LIB = [(1, 3, 4, 5), (0, 1, 3, 4), (1, 4, 5, 7), (3, 4, 5, 7), (4, 5, 7, 8), (1, 2, 4, 5)]


class Net(nn.Module):
    """Splittable convs (3x3 with a fused residual, 1x1, strided) plus a small one that stays whole."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 48, 1)
        self.c4 = nn.Conv2d(48, 40, 3, stride=2, padding=1)
        self.c5 = nn.Conv2d(40, 4, 1)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.relu(self.c2(y) + y)
        return self.c5(self.c4(torch.relu(self.c3(y))))


def _net(seed=0, sparse=False):
    torch.manual_seed(seed)
    m = Net().eval()
    if sparse:
        with torch.no_grad():
            for name, kind, rate in (("c2", "pattern+kernel", 0.6), ("c3", "kernel", 0.5), ("c4", "pattern", None)):
                conv = getattr(m, name)
                lib = LIB if kind.startswith("pattern") else None
                conv.weight.copy_(lrprune.project(conv.weight, kind, rate, library=lib))
                conv.lr_sparsity = {"kind": kind, "library": lib or []}
    return m


def _kernels_ir(model, x, threads):
    from lrc.codegen.lower import lower_to_kernels
    from lrc.compiler import optimize
    from lrc.importer import import_model

    m = import_model(model, (x,))
    optimize(m)
    return str(lower_to_kernels(m, threads=threads))


def _parallel_layers(text: str) -> int:
    return text.count("scf.parallel") // 2  # once per entry function (forward, lrc_arena_forward)


@pytest.mark.parametrize("threads", [2, 3])
def test_dense_convs(check, threads, monkeypatch):
    monkeypatch.setenv("LRC_SPARSE", "off")
    m, x = _net(), torch.randn(1, 3, 32, 24)
    check(m, x, threads=threads)
    # c1-c4 split; c5 has 4 filters; c3 (1x1, 48 filters) has too few MACs per input element for 3 parts
    assert _parallel_layers(_kernels_ir(m, x, threads)) == (4 if threads == 2 else 3)


@pytest.mark.parametrize("threads", [2, 3])
def test_pattern_sparse_convs(check, threads, monkeypatch):
    from lrc.codegen import ops_dense

    monkeypatch.setenv("LRC_SPARSE", "always")
    # split even the pruned layers of this small net (too few MACs per input element to pay off)
    monkeypatch.setattr(ops_dense, "MIN_INTENSITY", 0.0)
    m, x = _net(1, sparse=True), torch.randn(1, 3, 32, 24)
    check(m, x, threads=threads)
    text = _kernels_ir(m, x, threads)
    assert _parallel_layers(text) == 4
    # every part of the three pruned layers is a sparse kernel (int32 tables)
    parts = [ln for ln in text.splitlines() if re.search(r"func.func private @\w+_p\d+\(.*xi32>", ln)]
    assert len(parts) == 3 * min(threads, 3)


class LowIntensity(nn.Module):
    """Pruned convs with too few MACs per input element for channel parts: a 1x1 (panels) and a 3x3
    big enough for the sliding-window copy (row blocks)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(16, 16, 1)
        self.b = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) + x)


def _pruned_low_intensity(seed: int) -> LowIntensity:
    """LowIntensity with its 1x1 kernel-pruned and its 3x3 pattern+kernel-pruned (annotated)."""
    torch.manual_seed(seed)
    m = LowIntensity().eval()
    with torch.no_grad():
        for conv, kind, rate in ((m.a, "kernel", 0.6), (m.b, "pattern+kernel", 0.5)):
            lib = LIB if kind.startswith("pattern") else None
            conv.weight.copy_(lrprune.project(conv.weight, kind, rate, library=lib))
            conv.lr_sparsity = {"kind": kind, "library": lib or []}
    return m


@pytest.mark.parametrize("threads", [2, 3])
def test_pixel_parts_for_low_intensity_sparse_convs(check, threads, monkeypatch):
    from lrc.codegen.emit import LayerOp
    from lrc.codegen.ops_dense import conv_channel_split, conv_pixel_split

    monkeypatch.setenv("LRC_SPARSE", "always")
    m = _pruned_low_intensity(seed=2)
    x = torch.randn(1, 16, 97, 90)  # a partial last panel and a partial last row block
    check(m, x, threads=threads)
    text = _kernels_ir(m, x, threads)
    assert _parallel_layers(text) == 2
    parts = [ln for ln in text.splitlines() if re.search(r"func.func private @\w+_p\d+\(.*xi32>", ln)]
    assert len(parts) == 2 * threads
    for conv in (m.a, m.b):
        w = conv.weight.detach().numpy()
        attrs = {"weight": w, "bias": conv.bias.detach().numpy(), "groups": 1, "stride": (1, 1),
                 "padding": (1, 1, 1, 1) if conv is m.b else (0, 0, 0, 0), "dilation": (1, 1),
                 "sparsity": {"kind": "pattern+kernel" if conv is m.b else "kernel",
                              "library": LIB if conv is m.b else None}}
        op = LayerOp("conv2d", attrs, [(1, 16, 97, 90)], (1, 16, 97, 90), None)
        assert conv_channel_split(op, threads) is None  # the pixel parts are what splits it
        ranges = conv_pixel_split(op, threads, 8)
        assert len(ranges) == threads and ranges[0][0] == 0
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_split_balances_nonzero_work(monkeypatch):
    from lrc.codegen import ops_dense
    from lrc.codegen.emit import LayerOp
    from lrc.codegen.ops_dense import conv_channel_split

    # A dense 3x3 conv this size would run as Winograd and split by tile rows (test_kernels_winograd);
    # channel parts balance the direct and sparse kernels' work.
    monkeypatch.setattr(ops_dense, "WINOGRAD_ROW_PARTS", False)
    w = np.ones((64, 16, 3, 3), np.float32)
    w[32:, :, :, 1:] = 0  # the last 32 filters do a third of the work of the first 32
    op = LayerOp("conv2d", {"weight": w, "groups": 1}, [(1, 16, 64, 64)], (1, 64, 64, 64), None)
    parts = conv_channel_split(op, 2)
    work = [np.count_nonzero(w[a:b]) for a, b in parts]
    assert parts[0][0] == 0 and parts[-1][1] == 64 and all(a % 8 == 0 for a, _ in parts)
    assert parts[0][1] < 32  # not the equal-filter-count split
    assert max(work) / min(work) < 1.3
    assert conv_channel_split(op, 1) is None
    w1 = np.ones((32, 64, 1, 1), np.float32)  # 1x1, 16 MACs per input element per part: stays whole
    assert conv_channel_split(LayerOp("conv2d", {"weight": w1, "groups": 1}, [(1, 64, 64, 64)], (1, 32, 64, 64),
                                      None), 2) is None
    assert conv_channel_split(LayerOp("conv2d", {"weight": w, "groups": 1}, [(2, 16, 64, 64)],
                                      (2, 64, 64, 64), None), 2) is None  # batch > 1 stays whole


@pytest.mark.parametrize("name,force", [("resnet_basic", False), ("unet", True), ("msgnet", True)])
def test_zoo_models(check, name, force, monkeypatch):
    from lrc.codegen import ops_dense

    if force:  # the small zoo sizes are below the split thresholds: split anyway to test the wiring
        monkeypatch.setattr(ops_dense, "MIN_INTENSITY", 0.0)
        monkeypatch.setattr(ops_dense, "MIN_PART_MACS", 1024)
    model, x = zoo.ZOO[name]("small")
    check(model, x, threads=2)
    assert _parallel_layers(_kernels_ir(model, x, 2)) >= 2  # unet small: only its two 16-filter convs


def test_save_load_threaded(tmp_path):
    import lrc

    m, x = _net(2), torch.randn(1, 3, 16, 16)
    cm = lrc.compile(m, (x,), threads=2)
    cm.save(tmp_path / "a")
    loaded = lrc.load(tmp_path / "a")
    with torch.no_grad():
        ref = m(x).numpy()
    from conftest import assert_matches

    assert_matches(ref, loaded(x), "loaded threaded artifact")
    # in a fresh process (no JIT has loaded libomp there) the .so must bring its OpenMP runtime along
    import subprocess
    import sys

    so = str(tmp_path / "a" / "model.so")
    code = f"import ctypes, os; ctypes.CDLL({so!r}, mode=os.RTLD_NOW)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_threads_option_validation(bad):
    import lrc

    with pytest.raises(ValueError, match="threads"):
        lrc.compile(_net(), (torch.randn(1, 3, 8, 8),), threads=bad)


def _arm64_ready():
    import os
    import shutil

    from lrc.targets import arm64

    return (all(shutil.which(t) for t in ("clang-22", "ld.lld-22", "mlir-translate-22", "qemu-aarch64"))
            and os.path.isfile(os.path.join(arm64.SYSROOT, "lib", "ld-linux-aarch64.so.1")))


@pytest.mark.skipif(not _arm64_ready(), reason="arm64 cross toolchain / qemu absent")
@pytest.mark.parametrize("sparse", [False, True])
def test_arm64_threads_under_qemu(sparse, tmp_path):
    """arm64 threads=2: the same split as on the host, OpenMP regions in the NEON code, libomp.so.5
    carried inside the artifact (found through $ORIGIN), numerics under qemu, save / load."""
    import os
    import subprocess

    import lrc
    from lrc.targets import arm64

    m = _net(seed=3, sparse=sparse)
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        ref = m(x).numpy()
    cm = lrc.compile(m, (x,), target="arm64", threads=2)
    np.testing.assert_allclose(cm(x).numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max() + 1e-5)
    d = cm._artifact["dir"]
    assert "libomp.so.5" in os.listdir(d)
    dyn = subprocess.run([arm64.objdump(), "-p", "-T", os.path.join(d, "model.so")], capture_output=True,
                         text=True).stdout
    assert re.search(r"NEEDED\s+libomp\.so\.5", dyn) and re.search(r"RUNPATH\s+\$ORIGIN", dyn), dyn[:2000]
    assert "__kmpc_fork_call" in dyn
    cm.save(tmp_path / "m")
    back = lrc.load(tmp_path / "m")
    assert back.target == "arm64"
    np.testing.assert_allclose(back(x).numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max() + 1e-5)


def test_arm64_threads_errors(monkeypatch):
    import lrc
    from lrc.targets.aot import ToolchainError

    with pytest.raises(NotImplementedError, match="android_api=24: omp_runtime='libomp' needs the Android NDK"):
        lrc.compile(_net(), (torch.randn(1, 3, 8, 8),), target="arm64", threads=2, android_api=24,
                    omp_runtime="libomp")
    with pytest.raises(ValueError, match="omp_runtime must be one of"):
        lrc.compile(_net(), (torch.randn(1, 3, 8, 8),), target="arm64", threads=2, omp_runtime="gomp")
    monkeypatch.setenv("LRC_AARCH64_LIBOMP", "/no/such/libomp.so.5")
    with pytest.raises(ToolchainError, match="LRC_AARCH64_LIBOMP points at /no/such/libomp.so.5"):
        lrc.compile(_net(), (torch.randn(1, 3, 8, 8),), target="arm64", threads=2)


class ChannelWise(nn.Module):
    """Instance norm (+ fused ReLU), reflection pad, nearest and bilinear upsampling, PReLU and a
    pool between convs: the channel-wise layers that run as channel parts."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 13, 3, padding=1)
        self.norm = nn.InstanceNorm2d(13, affine=True)
        self.prelu = nn.PReLU(13)
        self.c2 = nn.Conv2d(13, 6, 3)

    def forward(self, x):
        y = torch.relu(self.norm(self.prelu(self.c1(x))))  # prelu sees negative inputs: its slopes matter
        y = nn.functional.pad(y, (2, 1, 1, 2), mode="reflect")
        y = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        y = nn.functional.max_pool2d(y, 2)
        y = nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return self.c2(torch.sigmoid(y))


@pytest.mark.parametrize("threads", [2, 3])
def test_channel_parts_of_channelwise_layers(check, threads, monkeypatch):
    import lrc.codegen.lower as lower

    monkeypatch.setattr(lower, "MIN_PART_ELEMS", 256)  # split even at this test's size
    torch.manual_seed(3)
    m = ChannelWise().eval()
    with torch.no_grad():
        m.norm.weight.uniform_(0.5, 2)
        m.norm.bias.uniform_(-1, 1)
        m.prelu.weight.copy_(torch.linspace(-0.5, 0.9, 13))  # a different slope per channel
    x = torch.randn(1, 3, 23, 18)
    check(m, x, threads=threads)
    text = _kernels_ir(m, x, threads)
    # norm(+relu), pad, nearest, prelu, pool, bilinear, sigmoid; the convs are too small to split
    assert _parallel_layers(text) == 7
    # the norm's kernel carries the name of the ReLU it absorbed
    assert len(re.findall(r"func.func private @\w+_relu_p\d+\(", text)) == min(threads, 13)
    monkeypatch.setattr(lower, "MIN_PART_ELEMS", 1 << 17)
    assert _parallel_layers(_kernels_ir(m, x, threads)) == 0  # the default: too small to pay
    check(m, torch.randn(2, 3, 9, 10), threads=threads)  # batch 2 stays whole


@pytest.mark.skipif(not _arm64_ready(), reason="arm64 cross toolchain / qemu absent")
def test_arm64_pixel_and_channel_parts_under_qemu(monkeypatch):
    """arm64 threads=2 with pixel parts (a sparse 1x1 on panels, a sparse 3x3 on row blocks) and
    channel parts (instance norm, pad, upsample, ...): the NEON kernels of each part, under qemu."""
    import lrc
    import lrc.codegen.lower as lower

    monkeypatch.setenv("LRC_SPARSE", "always")
    monkeypatch.setattr(lower, "MIN_PART_ELEMS", 256)
    low = _pruned_low_intensity(seed=5)
    m = nn.Sequential(low, nn.Conv2d(16, 3, 1), nn.InstanceNorm2d(3, affine=True), nn.ReLU(),
                      nn.Upsample(scale_factor=2)).eval()
    x = torch.randn(1, 16, 61, 50)
    # row-block parts of the 3x3, channel parts of the norm (+ReLU) and of the upsample
    assert _parallel_layers(_kernels_ir(m, x, 2)) == 3
    with torch.no_grad():
        ref = m(x).numpy()
    cm = lrc.compile(m, (x,), target="arm64", threads=2)
    np.testing.assert_allclose(cm(x).numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max() + 1e-5)
