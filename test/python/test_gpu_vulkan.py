"""target="vulkan": every lr op, zoo and app models against PyTorch on the Vulkan device wgpu finds
(Mesa lavapipe in CI), and the error paths."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import gpu_cases
import lrc
from gpu_cases import CASES, compile_and_compare
from lrc.gpu.errors import DeviceNotFound, KernelBuildError

TARGET = "vulkan"
SEEN_OPS: dict = {}  # case -> lr ops in its compiled IR


def _has_device():
    from lrc.gpu.vulkan_runtime import list_devices
    try:
        return bool(list_devices())
    except DeviceNotFound:
        return False


pytestmark = pytest.mark.skipif(not _has_device(), reason="no Vulkan device (install mesa-vulkan-drivers)")


@pytest.mark.parametrize("case", sorted(CASES))
def test_ops(case):
    model, inputs = CASES[case]()
    cm = compile_and_compare(model, inputs, TARGET)
    SEEN_OPS[case] = gpu_cases.lr_ops_in(cm.lr_ir)


def test_cases_cover_every_lr_op():
    seen = set()
    for case in CASES:
        seen |= SEEN_OPS[case] if case in SEEN_OPS else gpu_cases.lr_ops_of(*CASES[case]())
    assert gpu_cases.GPU_OPS - seen == set()


@pytest.mark.parametrize("name", ["resnet_basic", "mobilenetv2", "unet"])
def test_zoo_model(name):
    import zoo
    model, x = zoo.make(name, "small")
    compile_and_compare(model, (x,), TARGET)


@pytest.mark.parametrize("app", ["style", "color", "superres"])
def test_app_model(app):
    model, x = gpu_cases.app_model(app)
    compile_and_compare(model, (x,), TARGET)


def test_pruned_model_runs_sparse():
    model, inputs = gpu_cases.pruned_model()
    cm = compile_and_compare(model, inputs, TARGET)
    assert cm.lr_ir.count("#lr.sparsity<") == 3
    kinds = [v.split(":")[0] for _, v in cm._runner.__self__.prog.kernel_report() if v != "generic"]
    assert kinds == ["dense", "sparse-library", "sparse-weights", "sparse-library"]


def test_repeated_calls_and_numpy_io():
    model, (x,) = CASES["pads"]()
    cm = lrc.compile(model, (x,), target=TARGET)
    a = cm(x.numpy())
    b = cm((x * 2).numpy())
    with torch.no_grad():
        ref = model(x * 2)
    gpu_cases.assert_close(ref[1], torch.from_numpy(b[1]))
    assert isinstance(a[0], np.ndarray)


def test_no_device_found(monkeypatch):
    import wgpu
    monkeypatch.setattr(wgpu.gpu, "enumerate_adapters_sync", lambda: [])
    with pytest.raises(DeviceNotFound, match="no Vulkan device found"):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target=TARGET)


def test_named_device_not_found():
    with pytest.raises(DeviceNotFound, match="no Vulkan device matching 'no-such-gpu'"):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target=TARGET, device="no-such-gpu")


def test_driver_rejects_kernel(monkeypatch):
    import lrc.gpu.spirv as spirv

    real = spirv.vulkan_binaries
    # a valid header with the body cut off: the driver (naga) must refuse it and say why
    monkeypatch.setattr(spirv, "vulkan_binaries", lambda m, validate=True: [b[:40] for b in real(m, validate)])
    with pytest.raises(KernelBuildError, match=r"(?s)could not build kernel l0_relu for lr.relu.*\n."):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target=TARGET)


def test_op_without_gpu_lowering(monkeypatch):
    from lrc.gpu import program
    monkeypatch.delitem(program.EMITTERS, "pixel_shuffle")
    with pytest.raises(NotImplementedError, match="'lr.pixel_shuffle' has no GPU lowering"):
        lrc.compile(nn.PixelShuffle(2), (torch.randn(1, 4, 2, 2),), target=TARGET)


def test_save_is_not_supported(tmp_path):
    cm = lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target=TARGET)
    with pytest.raises(NotImplementedError, match="target 'vulkan'"):
        cm.save(tmp_path / "m")
