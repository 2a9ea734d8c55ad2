"""lib/omp_team.c, lrc's own fork/join team behind the __kmpc_* calls of threaded code (the runtime
of threaded Android builds, and of arm64 builds with omp_runtime="lrc"): its C test driver natively
and on aarch64 under qemu, then whole models through it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DRIVER = os.path.join(ROOT, "test", "native", "omp_team_test.c")
DLCLOSE = os.path.join(ROOT, "test", "native", "omp_team_dlclose.c")
TEAM = os.path.join(ROOT, "lib", "omp_team.c")


def _have(*tools):
    return all(shutil.which(t) for t in tools)


def _arm64_ready():
    from lrc.targets import arm64

    return (_have("clang-22", "ld.lld-22", "mlir-translate-22", "qemu-aarch64")
            and os.path.isfile(os.path.join(arm64.SYSROOT, "lib", "ld-linux-aarch64.so.1")))


def _build(tmp_path, target=None):
    """(driver, dlclose program, its model-like .so) for the native host or `target`."""
    cross = [f"--target={target}"] if target else []
    link = cross + (["-fuse-ld=lld"] if target else [])
    obj = tmp_path / "team.o"
    # the team as model.so gets it (freestanding, no libc headers, inline atomics); the rest is ordinary C
    subprocess.run(["clang-22", *cross, "-O2", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-fPIC",
                    *(["-mno-outline-atomics"] if target else []), "-c", TEAM, "-o", obj], check=True)
    subprocess.run(["clang-22", *link, "-O2", "-Wall", "-pthread", DRIVER, str(obj), "-o", tmp_path / "driver"],
                   check=True)
    subprocess.run(["clang-22", *link, "-O2", "-Wall", "-fPIC", "-shared", "-DMODEL", DLCLOSE, str(obj), "-o",
                    tmp_path / "model.so"], check=True)
    subprocess.run(["clang-22", *link, "-O2", "-Wall", DLCLOSE, "-ldl", "-o", tmp_path / "dlclose"], check=True)
    return tmp_path / "driver", tmp_path / "dlclose", tmp_path / "model.so"


def _ok(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (cmd, r.returncode, r.stdout + r.stderr)


@pytest.mark.skipif(not _have("clang-22"), reason="clang-22 absent")
def test_team_native(tmp_path):
    driver, dlclose, so = _build(tmp_path)
    _ok([driver])
    _ok([dlclose, so])


@pytest.mark.skipif(not _arm64_ready(), reason="arm64 cross toolchain / qemu absent")
def test_team_aarch64_under_qemu(tmp_path):
    from lrc.targets import arm64

    driver, dlclose, so = _build(tmp_path, "aarch64-linux-gnu")
    _ok(["qemu-aarch64", "-L", arm64.SYSROOT, driver])
    _ok(["qemu-aarch64", "-L", arm64.SYSROOT, dlclose, so])


def _net():
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(8, 32, 1), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1), nn.InstanceNorm2d(16),
                         nn.ReLU(), nn.Conv2d(16, 4, 3, padding=1)).eval()


def _dynamic(so):
    from lrc.targets import arm64

    return subprocess.run([arm64.objdump(), "-p", "-T", so], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(not _arm64_ready(), reason="arm64 cross toolchain / qemu absent")
@pytest.mark.parametrize("threads", [2, 3])
def test_arm64_model_on_lrc_team_under_qemu(threads, monkeypatch, tmp_path):
    """A model whose layers are split (channel parts and output-channel parts) runs on lrc's team:
    torch's numbers, no libomp in the artifact, the team's symbols not exported."""
    import lrc
    import lrc.codegen.lower as lower

    monkeypatch.setattr(lower, "MIN_PART_ELEMS", 256)  # split even at this test's size
    m, x = _net(), torch.randn(1, 8, 24, 20)
    with torch.no_grad():
        ref = m(x).numpy()
    cm = lrc.compile(m, (x,), target="arm64", threads=threads, omp_runtime="lrc")
    np.testing.assert_allclose(cm(x).numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max() + 1e-5)
    d = cm._artifact["dir"]
    assert "libomp.so.5" not in os.listdir(d)
    dyn = _dynamic(os.path.join(d, "model.so"))
    assert "NEEDED" in dyn and not re.search(r"NEEDED\s+libomp", dyn), dyn[:2000]
    assert "__kmpc" not in dyn  # hidden: a libomp loaded by the app is never interposed
    assert re.search(r"\*UND\*.*pthread_create", dyn)
    cm.save(tmp_path / "m")
    with open(tmp_path / "m" / "model.json") as f:
        assert json.load(f)["options"]["omp_runtime"] == "lrc"
    back = lrc.load(tmp_path / "m")
    np.testing.assert_allclose(back(x).numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max() + 1e-5)


@pytest.mark.skipif(not _have("clang-22", "ld.lld-22", "mlir-translate-22"), reason="cross toolchain absent")
def test_android_threads_build_on_lrc_team(tmp_path):
    """Android + threads: lrc's team is the default runtime; the .so needs only bionic's libc / libm
    (pthreads are in libc there) and carries the parallel regions."""
    import lrc

    cm = lrc.compile(_net(), (torch.randn(1, 8, 16, 16),), target="arm64", threads=2, android_api=24)
    assert cm._artifact["options"]["omp_runtime"] == "lrc"
    dyn = _dynamic(cm._artifact["so"])
    needed = re.findall(r"NEEDED\s+(\S+)", dyn)
    assert set(needed) <= {"libc.so", "libm.so"}, needed
    assert "__kmpc" not in dyn and re.search(r"\*UND\*.*pthread_create", dyn)
    with pytest.raises(NotImplementedError, match="built for Android"):
        cm(torch.randn(1, 8, 16, 16))
    cm.save(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == ["model.h", "model.json", "model.meta", "model.so", "model.weights"]
