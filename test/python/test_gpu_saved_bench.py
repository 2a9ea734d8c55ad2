"""bench/gpu_saved.py: artifacts exported here run from their directory alone (the path a real GPU
machine without the compiler takes), numerics checked, tables written."""
import json
import os
import subprocess
import sys

import pytest

import gpu_cases

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")



@pytest.mark.skipif(not gpu_cases.has_device("vulkan"), reason="no Vulkan device (install mesa-vulkan-drivers)")
def test_export_then_run(tmp_path):
    script = os.path.join(ROOT, "bench", "gpu_saved.py")
    art, out = tmp_path / "art", tmp_path / "res"
    subprocess.run([sys.executable, script, "export", str(art), "--apps", "superres", "--targets", "vulkan",
                    "--hw", "16"], check=True, capture_output=True, timeout=600)
    manifest = json.loads((art / "manifest.json").read_text())
    assert [e["variant"] for e in manifest] == ["dense", "pruned-dense", "pruned-sparse"]
    assert manifest[2]["sparse_kernels"] > 0 and manifest[1]["sparse_kernels"] == 0
    subprocess.run([sys.executable, script, "run", str(art), "--repeats", "1", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    rows = json.loads((tmp_path / "res.json").read_text())["rows"]
    assert len(rows) == 3 and all(r["rel_err"] < 1e-3 for r in rows), rows
    md = (tmp_path / "res.md").read_text()
    assert "| superres (1, 3, 16, 16) | pruned-sparse |" in md and "pruned-sparse vs dense" in md
    assert "WRONG" not in md
    # a wrong reference (as a device that miscomputes would give): marked, and the run fails
    import numpy as np
    ref = art / manifest[0]["ref"]
    np.save(ref, np.load(ref) + 1.0)
    bad = subprocess.run([sys.executable, script, "run", str(art), "--repeats", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "outside the numerics budget" in bad.stderr
    assert "**WRONG**" in (tmp_path / "res.md").read_text()
