import os

import pytest
import torch
from torch import nn

import lrprune
from lrprune import ADMMPruner, PruneConfig, Rule


def small():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 8x8 out
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),  # 4x4 out
        nn.ReLU(),
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # 4x4 in
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    )


def test_sparsity_of_covers_all_prunable_layers():
    m = small()
    with torch.no_grad():
        m[2].weight[:2] = 0
    s = lrprune.sparsity_of(m)
    assert list(s) == ["0", "2", "4", "6"]
    assert s["2"] == pytest.approx(0.25) and s["0"] == 0.0


def test_report_macs_and_compression():
    m = small()
    p = ADMMPruner(m, PruneConfig(layers={"2": Rule("kernel", 0.5), "4": Rule("filter", 0.5)}))
    p.hard_prune()
    r = p.report(example_input=(1, 1, 8, 8))
    rows = {row["name"]: row for row in r.rows}
    assert rows["0"]["macs_dense"] == 8 * 8 * 4 * 9 and rows["0"]["kind"] == "dense"
    assert rows["2"]["macs_dense"] == 4 * 4 * 8 * 4 * 9
    assert rows["2"]["macs_pruned"] == 4 * 4 * 8 * 4 * 9 // 2
    assert rows["4"]["macs_dense"] == 4 * 4 * 8 * 4 * 4  # input pixels x weights
    assert rows["4"]["macs_pruned"] == rows["4"]["macs_dense"] // 2
    assert rows["6"]["macs_dense"] == 256 * 10
    total = sum(row["params"] for row in r.rows)
    nnz = sum(row["nonzero"] for row in r.rows)
    assert r.compression == pytest.approx(total / nnz)
    md = r.to_markdown()
    assert md.startswith("| layer | type | kind |") and "| 2 | Conv2d | kernel |" in md
    assert "Compression rate" in md and "MAC reduction" in md
    assert str(r) == md
    # batch size does not change per-sample MACs; shapes recorded by a plain forward also work
    m(torch.randn(5, 1, 8, 8))
    r2 = p.report()
    assert [row["macs_pruned"] for row in r2.rows] == [row["macs_pruned"] for row in r.rows]


def test_report_without_shapes_says_na():
    m = small()
    p = ADMMPruner(m, PruneConfig(layers={"2": Rule("kernel", 0.5)}))
    md = p.report().to_markdown()
    assert "n/a" in md and p.report().macs_dense is None
    assert lrprune.report_of(m).rows[1]["kind"] == "dense"  # module-level report works on any model


def test_save_chart_is_atomic_png(tmp_path):
    pytest.importorskip("matplotlib")
    m = small()
    p = ADMMPruner(m, PruneConfig(layers={"2": Rule("kernel", 0.5)}))
    p.hard_prune()
    out = tmp_path / "chart.png"
    out.write_bytes(b"old")
    p.report(torch.zeros(1, 1, 8, 8)).save_chart(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["chart.png"]  # no temp file left behind
    p.save_chart(tmp_path / "no_macs.png")
    assert (tmp_path / "no_macs.png").stat().st_size > 0
