"""`make demo`'s program (lrc.demo) end to end on one app: compiles the shipped checkpoints, checks
lrc against torch, writes the images and the grid, and prints the latency table and both quality
verdicts (vs the shipped dense model and vs the equal-steps reference)."""
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_demo_superres(tmp_path, capsys):
    ck = os.path.join(ROOT, "apps", "checkpoints")
    if not os.path.exists(os.path.join(ck, "superres_pruned.pt")):
        pytest.skip("app checkpoints absent")
    from lrc import demo

    rc = demo.main(["--apps", "superres", "--repeats", "2", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert os.path.exists(tmp_path / "out" / "grid.png")
    assert "superres" in out and "lrc pruned" in out
    assert "budget met" in out or "budget MISSED" in out
    if os.path.exists(os.path.join(ck, "superres_dense_equal.pt")):
        assert "fair test" in out and "dense, equal steps" in out
    if os.path.exists(os.path.join(ROOT, "bench", "results", "quality_sweep.json")):
        assert "best rate within the fair budget (quality_sweep.md): " in out and "on every seed judged" in out
