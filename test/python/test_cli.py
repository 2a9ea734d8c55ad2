"""The `lrc` command: compile a saved model into an artifact, run it, report its sparsity, and fail
with one clear line (exit status 2) on bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lrc.tools.cli import main

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def make_net():
    """The factory `lrc compile test_cli:make_net` imports (test/python is on sys.path in tests)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(24, 4, 1))


@pytest.fixture
def saved(tmp_path):
    m = make_net().eval()
    with torch.no_grad():
        m[2].weight[::2] = 0  # half the filters: lr-shrink-pruned-channels removes most of them
        m[2].weight[1::2, :, 0, 0] = 0  # and irregular zeros in the others
    path = tmp_path / "net.pt"
    torch.save(m, path)
    return m, path


def test_compile_run_matches_torch(saved, tmp_path, capsys):
    m, path = saved
    out = tmp_path / "net.lrc"
    assert main(["compile", str(path), "--input-shape", "1x3x20x18", "-o", str(out)]) == 0
    assert "matches PyTorch" in capsys.readouterr().out
    x = np.random.default_rng(1).standard_normal((1, 3, 20, 18)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                 "--iters", "3"]) == 0
    assert "median" in capsys.readouterr().out
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    y = np.load(tmp_path / "y.npy")
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-5


def test_factory_with_weights_and_report(saved, tmp_path, capsys):
    m, _ = saved
    torch.save(m.state_dict(), tmp_path / "w.pt")
    assert main(["compile", "test_cli:make_net", "--weights", str(tmp_path / "w.pt"), "--input-shape", "1,3,16,16",
                 "-o", str(tmp_path / "f.lrc")]) == 0
    assert main(["report", "test_cli:make_net", "--weights", str(tmp_path / "w.pt"), "--input-shape", "1x3x16x16"]) == 0
    text = capsys.readouterr().out
    assert "FKW/nz" in text and "all sparse convs" in text


@pytest.mark.parametrize("case", ["missing", "state_dict", "garbage", "shape", "exists", "bad_weights", "factory"])
def test_errors(saved, tmp_path, capsys, case):
    m, path = saved
    out = tmp_path / "o.lrc"
    args = ["compile", str(path), "--input-shape", "1x3x8x8", "-o", str(out)]
    want = {"missing": "no such file", "state_dict": "got a state_dict", "garbage": "not a file written by torch.save",
            "shape": "expected sizes like", "exists": "exists; pass --force", "bad_weights": "does not fit the model",
            "factory": "cannot import"}[case]
    if case == "missing":
        args[1] = str(tmp_path / "nope.pt")
    elif case == "state_dict":
        torch.save(m.state_dict(), tmp_path / "sd.pt")
        args[1] = str(tmp_path / "sd.pt")
    elif case == "garbage":
        (tmp_path / "g.pt").write_bytes(b"not a pickle")
        args[1] = str(tmp_path / "g.pt")
    elif case == "shape":
        args[3] = "1x3xbig"
    elif case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "bad_weights":
        torch.save({"0.weight": torch.zeros(1)}, tmp_path / "w.pt")
        args += ["--weights", str(tmp_path / "w.pt")]
    elif case == "factory":
        args[1] = "test_cli:no_such_factory"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrc: error: ") and want in err, err
    if case == "exists":
        assert os.listdir(out) == ["keep.txt"]  # nothing of the user's was touched


def test_run_errors(saved, tmp_path, capsys):
    _, path = saved
    out = tmp_path / "net.lrc"
    assert main(["compile", str(path), "--input-shape", "1x3x8x8", "-o", str(out)]) == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 9, 9), np.float32))
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy")]) == 2
    assert "the model takes [1, 3, 8, 8]" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "x.npy")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert np.load(tmp_path / "x.npy").shape == (1, 3, 8, 8)
    assert main(["run", str(tmp_path / "nothing")]) == 2


def test_console_script(saved, tmp_path):
    """The installed `lrc` (and tools/lrc from the source tree) run the same main."""
    _, path = saved
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "lrc"), "compile", str(path), "--input-shape",
                        "1x3x8x8", "-o", str(tmp_path / "c.lrc")], capture_output=True, text=True)
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
