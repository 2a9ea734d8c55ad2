"""Ahead-of-time artifacts: save / load from Python, and the C runtime + lr-run built by CMake."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

import lrc
import zoo
from conftest import assert_matches

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, x = zoo.ZOO["resnet_basic"]("small")
    cm = lrc.compile(model, (x,))
    path = tmp_path_factory.mktemp("art") / "resnet"
    cm.save(path)
    with torch.no_grad():
        ref = model(x)
    return path, x, ref, cm


def test_save_writes_artifact(saved):
    path, *_ = saved
    assert sorted(os.listdir(path)) == ["model.h", "model.json", "model.meta", "model.so", "model.weights"]
    assert "_mlir_ciface_forward" in open(path / "model.h").read()


def test_load_runs_and_matches(saved):
    path, x, ref, _ = saved
    cm = lrc.load(path)
    assert_matches(ref, cm(x), "loaded artifact")
    assert isinstance(cm(x.numpy()), np.ndarray)
    with pytest.raises(ValueError, match="expected shape"):
        cm(torch.zeros(1, 3, 4, 4))


def test_save_never_overwrites(saved):
    path, x, ref, cm = saved
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cm.save(path)
    before = os.path.getmtime(path / "model.so")
    cm.save(path, overwrite=True)
    assert os.path.getmtime(path / "model.so") >= before
    assert_matches(ref, lrc.load(path)(x), "overwritten artifact")
    assert [p for p in os.listdir(path.parent) if p.startswith(".lrc-")] == []  # no temp leftovers


def test_artifact_records_march_and_checks_cpu(saved, tmp_path, monkeypatch):
    path, x, ref, cm = saved
    import json

    from lrc.targets import aot

    march = json.load(open(path / "model.json"))["options"]["march"]
    assert march == aot.host_march(cm._artifact["vector_registers"])
    # The same artifact on a CPU without the needed extensions must refuse to load, not SIGILL.
    monkeypatch.setattr(aot, "cpu_flags", lambda: {"sse2"})
    with pytest.raises(RuntimeError, match=f"built for -march={march}, but this CPU lacks avx2"):
        lrc.load(path)


def test_load_rejects_non_artifact(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an lrc artifact"):
        lrc.load(tmp_path)


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory):
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(["cmake", "-S", ROOT, "-B", str(build), "-DCMAKE_C_COMPILER=clang-22"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    return str(build / "lr-run")


@pytest.mark.parametrize("warmup", [0, 2])
def test_lr_run_numerics(saved, lr_run, tmp_path, warmup):
    """With warm-up runs the measured call reuses the arena the runtime keeps per model."""
    path, x, ref, _ = saved
    x.numpy().astype(np.float32).tofile(tmp_path / "in.bin")
    subprocess.run([lr_run, str(path), "--warmup", str(warmup), "--input", str(tmp_path / "in.bin"), "--output",
                    str(tmp_path / "out.bin")], check=True, capture_output=True)
    out = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(ref.shape)
    assert_matches(ref, out, "lr-run output")


def test_loaded_artifact_keeps_its_arena(saved):
    """model.meta / model.json carry the arena size; lrc.load calls lrc_arena_<entry> with one arena
    per thread, so the second call runs on what the first left in it."""
    import json

    path, x, ref, cm = saved
    arena = json.load(open(path / "model.json"))["arena_bytes"]
    assert arena > 0 and f"arena {arena}\n" in open(path / "model.meta").read()
    import ctypes

    assert hasattr(ctypes.CDLL(str(path / "model.so")), "_mlir_ciface_lrc_arena_forward")
    back = lrc.load(path)
    x2 = torch.randn_like(x)
    model, _ = zoo.ZOO["resnet_basic"]("small")
    with torch.no_grad():
        ref2 = model(x2)
    for _ in range(2):
        assert_matches(ref, back(x), "loaded artifact, first input")
        assert_matches(ref2, back(x2), "loaded artifact, second input")


def test_lr_run_timing_and_errors(saved, lr_run, tmp_path):
    path, *_ = saved
    p = subprocess.run([lr_run, str(path), "--iters", "3"], capture_output=True, text=True, check=True)
    assert p.stdout.startswith("median_ms ")
    (tmp_path / "short.bin").write_bytes(b"\0" * 8)
    p = subprocess.run([lr_run, str(path), "--input", str(tmp_path / "short.bin")], capture_output=True, text=True)
    assert p.returncode != 0 and "must hold exactly" in p.stderr
    p = subprocess.run([lr_run, str(tmp_path)], capture_output=True, text=True)
    assert p.returncode != 0 and "cannot open" in p.stderr
