"""The arm64 target: cross-compiled NEON code checked against torch under qemu-aarch64, the artifact
(save/load, weight blob), the generated instructions, options, Android builds and toolchain errors."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn

import lrc
import zoo
from conftest import assert_matches
from lrc.targets import arm64
from lrc.targets.aot import ToolchainError

CROSS_TOOLS = ("clang-22", "mlir-translate-22", "ld.lld-22")
MISSING = [t for t in CROSS_TOOLS + ("qemu-aarch64",) if not shutil.which(t)]
if not os.path.isfile(os.path.join(arm64.SYSROOT, "lib", "ld-linux-aarch64.so.1")):
    MISSING.append(arm64.SYSROOT)
needs_cross = pytest.mark.skipif(bool(MISSING), reason=f"arm64 cross toolchain/qemu absent: {MISSING}")


def _check(model, *inputs, **kw):
    model.eval()
    cm = lrc.compile(model, inputs, target="arm64", **kw)
    with torch.no_grad():
        ref = model(*inputs)
    assert_matches(ref, cm(*inputs), f"arm64 {type(model).__name__}")
    return cm


@needs_cross
@pytest.mark.parametrize("name", ["resnet_basic", "mobilenetv2", "unet", "msgnet", "wdsr", "misc_ops", "mobilenetv3",
                                  "efficientnet", "shufflenetv2"])
def test_zoo_numerics_under_qemu(name):
    model, x = zoo.ZOO[name]("small")
    _check(model, x)


def _conv(cin, cout, k, **kw):
    torch.manual_seed(cin * 100 + cout + k)
    return nn.Sequential(nn.Conv2d(cin, cout, k, **kw), nn.ReLU())


SINGLE_OPS = {
    # odd widths and channel counts leave vector and register-tile remainders at vec=4
    "conv3x3": (lambda: _conv(5, 12, 3, padding=1), (1, 5, 11, 13)),
    "depthwise": (lambda: _conv(12, 12, 3, padding=1, groups=12), (1, 12, 10, 9)),
    "strided": (lambda: _conv(6, 10, 3, stride=2, padding=1), (1, 6, 15, 14)),
    "conv1x1": (lambda: _conv(16, 24, 1), (1, 16, 7, 9)),
    # dense Winograd at vec=4: F(4x4) with a fused pool (odd plane), F(2x2) on a small plane
    "winograd4_pool": (lambda: nn.Sequential(_conv(16, 20, 3, padding=1), nn.MaxPool2d(2)), (1, 16, 13, 18)),
    "winograd2": (lambda: _conv(16, 17, 3, padding=1), (1, 16, 6, 7)),
    "grouped": (lambda: _conv(8, 12, 3, padding=1, groups=4), (1, 8, 9, 9)),
    "linear": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 5, 19)), (2, 3, 5, 5)),
    "conv_transpose": (lambda: nn.ConvTranspose2d(6, 5, 4, stride=2, padding=1), (1, 6, 7, 7)),
    # the non-conv fast paths (fused norm activation, shuffle-based nearest/bilinear x2) at vec=4
    "instance_norm_relu": (lambda: nn.Sequential(nn.InstanceNorm2d(3, affine=True), nn.ReLU()), (2, 3, 9, 11)),
    "upsample_nearest2": (lambda: nn.Upsample(scale_factor=2, mode="nearest"), (2, 3, 5, 13)),
    "upsample_bilinear2": (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (1, 3, 6, 11)),
    # libm calls (expf, logf) from the softmax, polynomial erf / exp in the fused activations, slices
    "acts_slice_softmax": (lambda: _Chain(), (1, 4, 5, 7)),
}


class _Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 6, 3, padding=1), nn.Conv2d(2, 6, 1)

    def forward(self, x):
        p, q = x.chunk(2, 1)
        y = nn.functional.gelu(self.a(p)) + nn.functional.silu(self.b(q)) + nn.functional.elu(self.b(q))
        y = y + nn.functional.softplus(self.b(q)) * nn.functional.mish(self.a(p))
        z = torch.cat([y[:, 1:4], y[:, :3]], 1)
        return torch.softmax(z, 1) + nn.functional.log_softmax(z, -1)


@needs_cross
@pytest.mark.parametrize("name", sorted(SINGLE_OPS))
def test_single_op_under_qemu(name):
    ctor, shape = SINGLE_OPS[name]
    torch.manual_seed(1)
    model = ctor()
    _check(model, torch.randn(*shape))


@pytest.fixture(scope="module")
def resnet():
    if MISSING:
        pytest.skip(f"arm64 cross toolchain/qemu absent: {MISSING}")
    model, x = zoo.ZOO["resnet_basic"]("small")
    cm = lrc.compile(model, (x,), target="arm64", mcpu="cortex-a76")
    with torch.no_grad():
        ref = model(x)
    return cm, x, ref


def test_kernels_are_neon_fmla(resnet):
    cm, *_ = resnet
    asm = arm64.disassemble(cm._artifact["so"])
    fmla = re.findall(r"\bfmla\s+v\d+\.4s", asm)
    # the conv kernels are FMA chains over 4-lane registers; scalar fallbacks would show none
    assert len(fmla) > 100, f"only {len(fmla)} NEON fmla instructions in the arm64 kernels"


def test_save_load_round_trip(resnet, tmp_path):
    cm, x, ref = resnet
    path = tmp_path / "resnet-arm64"
    cm.save(path)
    assert sorted(os.listdir(path)) == ["model.h", "model.json", "model.meta", "model.so", "model.weights"]
    with open(path / "model.so", "rb") as f:
        elf = f.read(20)
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
    meta = json.loads((path / "model.json").read_text())
    assert meta["target"] == "arm64" and meta["options"]["mcpu"] == "cortex-a76"
    # the weights live in the blob, not in the code
    n_params = sum(p.numel() for p in zoo.ZOO["resnet_basic"]("small")[0].parameters())
    assert os.path.getsize(path / "model.weights") >= 4 * n_params * 0.9
    loaded = lrc.load(path)
    assert loaded.target == "arm64"
    assert_matches(ref, loaded(x), "loaded arm64 artifact")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cm.save(path)
    loaded.save(tmp_path / "copy")  # a loaded model saves too
    assert_matches(ref, lrc.load(tmp_path / "copy")(x), "re-saved arm64 artifact")


def test_mismatched_weight_blob_fails_loudly(resnet, tmp_path):
    cm, x, _ = resnet
    cm.save(tmp_path / "a")
    cm.save(tmp_path / "b")  # same model, same build: the blobs are interchangeable
    model2, _ = zoo.ZOO["resnet_basic"]("small")
    other = lrc.compile(model2, (x,), target="arm64")
    other.save(tmp_path / "c")
    shutil.copyfile(tmp_path / "c" / "model.weights", tmp_path / "a" / "model.weights")
    with pytest.raises(RuntimeError, match="different build"):
        lrc.load(tmp_path / "a")(x)


def test_mcpu_option_reaches_clang():
    model = _conv(4, 8, 3, padding=1)
    x = torch.randn(1, 4, 6, 6)
    cm = _check(model, x, mcpu="cortex-a53")
    assert json.loads(open(os.path.join(cm._artifact["dir"], "model.json")).read())["options"]["mcpu"] == "cortex-a53"
    with pytest.raises(ToolchainError, match="not-a-cpu"):
        lrc.compile(model, (x,), target="arm64", mcpu="not-a-cpu")


def test_bad_options():
    model = _conv(4, 8, 3)
    x = torch.randn(1, 4, 6, 6)
    with pytest.raises(ValueError, match="android_api"):
        lrc.compile(model, (x,), target="arm64", android_api=19)
    with pytest.raises(ValueError, match="unknown compile option"):
        lrc.compile(model, (x,), target="arm64", march="armv8-a")


@pytest.mark.skipif(not shutil.which("clang-22") or not shutil.which("ld.lld-22"), reason="clang-22/lld-22 absent")
def test_android_build_links_without_ndk(tmp_path):
    model = _conv(4, 8, 3, padding=1)
    x = torch.randn(1, 4, 6, 6)
    cm = lrc.compile(model, (x,), target="arm64", android_api=24)
    cm.save(tmp_path / "android")
    dyn = arm64.run_tool([arm64.objdump(), "-p", str(tmp_path / "android" / "model.so")], "objdump").stdout
    needed = re.findall(r"NEEDED\s+(\S+)", dyn)
    assert sorted(needed) == ["libc.so", "libm.so"]  # bionic names, not glibc's libc.so.6
    with pytest.raises(NotImplementedError, match="Android"):
        cm(x)
    with pytest.raises(NotImplementedError, match="Android"):
        lrc.load(tmp_path / "android")


def test_clear_error_without_cross_toolchain(monkeypatch, tmp_path):
    model = _conv(4, 8, 3)
    x = torch.randn(1, 4, 6, 6)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find
    with pytest.raises(ToolchainError, match=r"(mlir-translate-22|clang-22) was not found; install it"):
        lrc.compile(model, (x,), target="arm64")


def test_clear_error_without_qemu(resnet, monkeypatch, tmp_path):
    cm, x, _ = resnet
    cm.save(tmp_path / "m")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(arm64, "native", lambda: False)
    with pytest.raises(ToolchainError, match="qemu-aarch64 was not found; install it with `apt-get install qemu-user`"):
        lrc.load(tmp_path / "m")


PATTERNS = [(1, 3, 4, 5), (0, 1, 3, 4), (1, 4, 5, 7), (3, 4, 5, 7), (4, 5, 7, 8), (1, 2, 4, 5)]


@needs_cross
def test_pattern_pruned_model_under_qemu(monkeypatch):
    """Pattern + kernel pruned convs take the sparse kernels at vec=4 and still match torch."""
    lrprune = pytest.importorskip("lrprune")
    from lrc.codegen.lower import lower_to_kernels
    from lrc.compiler import optimize
    from lrc.importer import import_model

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 20, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(20, 12, 3, stride=2, padding=1)).eval()
    with torch.no_grad():
        for conv, kind, rate in ((model[2], "pattern+kernel", 0.5), (model[4], "pattern", None)):
            conv.weight.copy_(lrprune.project(conv.weight, kind, rate, library=PATTERNS))
            conv.lr_sparsity = {"kind": kind, "library": PATTERNS}
    x = torch.randn(1, 3, 9, 14)
    monkeypatch.setenv("LRC_SPARSE", "always")
    m = import_model(model, (x,))
    optimize(m)
    kernels = str(lower_to_kernels(m, vec=arm64.ARM64_VEC))
    # sparse kernels take int32 index tables; the dense ones only f32 buffers
    assert sum(1 for ln in kernels.splitlines() if "func.func private" in ln and "xi32>" in ln) == 2
    _check(model, x)


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.skipif(not shutil.which("cmake"), reason="cmake is not installed")
def test_cmake_cross_build_runs_artifact(resnet, tmp_path):
    """cmake/aarch64-linux-gnu.cmake builds the runtime + lr-run, which loads the artifact's weights."""
    import subprocess

    cm, x, ref = resnet
    cm.save(tmp_path / "m")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", ROOT, "-B", str(build),
                    f"-DCMAKE_TOOLCHAIN_FILE={ROOT}/cmake/aarch64-linux-gnu.cmake"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    x.numpy().tofile(tmp_path / "in.bin")
    q = [arm64.qemu(), "-L", arm64.SYSROOT, str(build / "lr-run"), str(tmp_path / "m")]
    subprocess.run(q + ["--input", str(tmp_path / "in.bin"), "--output", str(tmp_path / "out.bin")], check=True,
                   capture_output=True)
    assert_matches(ref, np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(ref.shape), "cmake lr-run")
    p = subprocess.run(q + ["--iters", "2", "--warmup", "0"], capture_output=True, text=True, check=True)
    assert p.stdout.startswith("median_ms ")


@pytest.mark.skipif(not shutil.which("cmake"), reason="cmake is not installed")
def test_android_cmake_explains_missing_sysroot(tmp_path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "LRC_ANDROID_SYSROOT"}
    p = subprocess.run(["cmake", "-S", ROOT, "-B", str(tmp_path / "b"),
                        f"-DCMAKE_TOOLCHAIN_FILE={ROOT}/cmake/aarch64-linux-android.cmake"],
                       capture_output=True, text=True, env=env)
    assert p.returncode != 0 and "LRC_ANDROID_SYSROOT" in p.stderr and "NDK" in p.stderr


def test_host_loader_rejects_foreign_weights(tmp_path):
    """The artifact code is shared: the Python (ctypes) loader checks the blob's build id too."""
    model = _conv(4, 8, 3, padding=1)
    x = torch.randn(1, 4, 6, 6)
    lrc.compile(model, (x,)).save(tmp_path / "a")
    lrc.compile(model, (x,)).save(tmp_path / "b")
    assert_matches(model(x).detach(), lrc.load(tmp_path / "a")(x), "host artifact")
    shutil.copyfile(tmp_path / "b" / "model.weights", tmp_path / "a" / "model.weights")
    with pytest.raises(ValueError, match="different build"):
        lrc.load(tmp_path / "a")
    (tmp_path / "b" / "model.weights").write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="not an lrc weight blob"):
        lrc.load(tmp_path / "b")
