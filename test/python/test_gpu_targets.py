"""target="vulkan" and target="opencl": every lr op, zoo and app models against PyTorch on the device
each runtime finds (Mesa lavapipe and PoCL in CI), and the error paths."""
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import gpu_cases
import lrc
from gpu_cases import CASES, assert_close, compile_and_compare
from lrc.gpu.errors import DeviceNotFound, KernelBuildError

TARGETS = gpu_cases.gpu_targets()
NAMES = {"vulkan": "Vulkan", "opencl": "OpenCL"}
SEEN_OPS: dict = {}  # (target, case) -> lr ops in its compiled IR


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_ops(case, target):
    model, inputs = CASES[case]()
    cm = compile_and_compare(model, inputs, target)
    SEEN_OPS[target, case] = gpu_cases.lr_ops_in(cm.lr_ir)


@pytest.mark.parametrize("target", TARGETS)
def test_cases_cover_every_lr_op(target):
    seen = set()
    for case in CASES:
        seen |= SEEN_OPS.get((target, case)) or gpu_cases.lr_ops_of(*CASES[case]())
    assert gpu_cases.GPU_OPS - seen == set()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["resnet_basic", "mobilenetv2", "unet", "mobilenetv3", "efficientnet", "shufflenetv2"])
def test_zoo_model(name, target):
    import zoo
    model, x = zoo.make(name, "small")
    compile_and_compare(model, (x,), target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("app", ["style", "color", "superres"])
def test_app_model(app, target):
    model, x = gpu_cases.app_model(app)
    compile_and_compare(model, (x,), target)


@pytest.mark.parametrize("target", TARGETS)
def test_pruned_model_runs_sparse(target):
    model, inputs = gpu_cases.pruned_model()
    cm = compile_and_compare(model, inputs, target)
    assert cm.lr_ir.count("#lr.sparsity<") == 3
    kinds = [v.split(":")[0] for _, v in cm._runner.__self__.prog.kernel_report() if v != "generic"]
    assert kinds == ["dense", "sparse-library", "sparse-weights", "sparse-library"]


@pytest.mark.parametrize("target", TARGETS)
def test_repeated_calls_and_numpy_io(target):
    model, (x,) = CASES["pads"]()
    cm = lrc.compile(model, (x,), target=target)
    a = cm(x.numpy())
    b = cm((x * 2).numpy())
    with torch.no_grad():
        ref = model(x * 2)
    gpu_cases.assert_close(ref[1], torch.from_numpy(b[1]))
    assert isinstance(a[0], np.ndarray)


@pytest.mark.parametrize("target", TARGETS)
def test_no_device_found(target, monkeypatch):
    if target == "vulkan":
        import wgpu
        monkeypatch.setattr(wgpu.gpu, "enumerate_adapters_sync", lambda: [])
    else:
        import pyopencl as cl
        monkeypatch.setattr(cl, "get_platforms", lambda: [])
    with pytest.raises(DeviceNotFound, match=f"no {NAMES[target]} device found"):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target=target)


@pytest.mark.parametrize("target", TARGETS)
def test_named_device_not_found(target):
    with pytest.raises(DeviceNotFound, match=f"no {NAMES[target]} device matching 'no-such-gpu'"):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target=target, device="no-such-gpu")


@pytest.mark.parametrize("target", TARGETS)
def test_driver_rejects_kernel(target, monkeypatch):
    import lrc.gpu.spirv as spirv

    if target == "vulkan":
        real = spirv.vulkan_binaries
        # a valid header with the body cut off: the driver (naga) must refuse it and say why
        monkeypatch.setattr(spirv, "vulkan_binaries", lambda m, validate=True: [b[:40] for b in real(m, validate)])
        match = r"(?s)could not build kernel l0_relu for lr.relu.*\n."
    else:
        # a SPIR bitcode header with garbage after it: the build must fail with the driver's log
        real = spirv.opencl_binaries
        monkeypatch.setattr(spirv, "opencl_binaries",
                            lambda m, validate=True: (real(m, validate)[0][:40], b"BC\xc0\xde" + b"\x00" * 64))
        match = r"(?s)could not build the kernels on .*build log:"
    with pytest.raises(KernelBuildError, match=match):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target=target)


@pytest.mark.parametrize("target", TARGETS)
def test_op_without_gpu_lowering(target, monkeypatch):
    from lrc.gpu import program
    monkeypatch.delitem(program.EMITTERS, "pixel_shuffle")
    with pytest.raises(NotImplementedError, match="'lr.pixel_shuffle' has no GPU lowering"):
        lrc.compile(nn.PixelShuffle(2), (torch.randn(1, 4, 2, 2),), target=target)


@pytest.mark.parametrize("target", TARGETS)
def test_save_and_load(target, tmp_path):
    """A saved GPU model reloads without recompiling and gives the same numbers; the artifact
    holds only the binaries, the launch plan and the weights (lrc.gpu.artifact)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(1, 3, 10, 10)
    cm = lrc.compile(m, (x,), target=target)
    cm.save(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == ["model.json", "model.npz"]
    with pytest.raises(FileExistsError):
        cm.save(tmp_path / "m")
    back = lrc.load(tmp_path / "m")
    assert back.target == target and back.input_shapes == [(1, 3, 10, 10)]
    with torch.no_grad():
        ref = m(x)
    assert_close(ref, back(x))
    assert_close(ref, cm(x))
    back.save(tmp_path / "copy")  # a loaded artifact saves as a copy
    assert_close(ref, lrc.load(tmp_path / "copy")(x))
    with pytest.raises(DeviceNotFound, match="no-such-gpu"):
        lrc.load(tmp_path / "m", device="no-such-gpu")


@pytest.mark.parametrize("target", TARGETS)
def test_load_rejects_a_damaged_artifact(target, tmp_path):
    cm = lrc.compile(nn.Conv2d(2, 2, 3), (torch.randn(1, 2, 5, 5),), target=target)
    cm.save(tmp_path / "m")
    (tmp_path / "m" / "model.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="model.npz is missing or corrupt"):
        lrc.load(tmp_path / "m")

@pytest.mark.parametrize("target", TARGETS)
def test_load_needs_no_compiler(target, tmp_path):
    """Loading and running a saved GPU model imports neither torch-mlir nor torch: numpy and the
    Vulkan / OpenCL binding are enough (what a deployment machine has)."""
    import subprocess
    import sys

    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    x = torch.randn(1, 3, 6, 6)
    lrc.compile(m, (x,), target=target).save(tmp_path / "m")
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        np.save(tmp_path / "ref.npy", m(x).numpy())
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch_mlir", "torch"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np, lrc
cm = lrc.load({str(tmp_path / "m")!r})
out = cm(np.load({str(tmp_path / "x.npy")!r}))
ref = np.load({str(tmp_path / "ref.npy")!r})
err = float(abs(out - ref).max())
assert err <= 1e-3 * float(abs(ref).max()) + 1e-5, err
print("ok", cm.stats["device"])
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]
