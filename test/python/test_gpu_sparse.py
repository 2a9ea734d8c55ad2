"""Pattern-sparse conv kernels on the GPU targets (lrc.gpu.ops_sparse) against torch, on Vulkan and
OpenCL, with a check that each pruned layer really got the sparse kernel (GpuProgram.kernel_report)."""
import numpy as np
import pytest
import torch

import gpu_cases
from gpu_cases import compile_and_compare
from lrc.gpu import ops_sparse


TARGETS = gpu_cases.gpu_targets()


def report(cm):
    return cm._runner.__self__.prog.kernel_report()


def conv_variants(cm):
    return [v for layer, v in report(cm) if layer.startswith("lr.conv2d")]


@pytest.mark.parametrize("target", TARGETS)
def test_every_kind_strides_groups_fusion(target, monkeypatch):
    monkeypatch.setenv("LRC_SPARSE", "always")
    model, inputs = gpu_cases.sparse_convs()
    cm = compile_and_compare(model, inputs, target)
    variants = conv_variants(cm)
    assert len(variants) == 8, report(cm)
    assert all(v.startswith("sparse-") for v in variants), report(cm)
    # pattern kinds run on the annotated library; the others on tap sets found in the weights
    assert sum(v.startswith("sparse-library") for v in variants) == 3, variants


@pytest.mark.parametrize("target", TARGETS)
def test_pruned_app_model(target):
    model, x, _ = gpu_cases.pruned_app_model("superres")
    cm = compile_and_compare(model, (x,), target)
    variants = conv_variants(cm)
    # auto mode: the heavily pruned 3x3 convs (pattern+kernel) run sparse
    assert sum(v.startswith("sparse-library") for v in variants) >= 6, variants


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("app", ["style", "color"])
def test_other_pruned_apps(target, app):
    # The shipped ADMM checkpoints: style is column-pruned, color pattern+kernel (apps/checkpoints).
    model, x, origin = gpu_cases.pruned_app_model(app)
    cm = compile_and_compare(model, (x,), target)
    assert any(v.startswith("sparse-") for v in conv_variants(cm)), (origin, conv_variants(cm))


@pytest.mark.parametrize("target", TARGETS)
def test_sparse_off_runs_dense(target, monkeypatch):
    monkeypatch.setenv("LRC_SPARSE", "off")
    model, inputs = gpu_cases.pruned_model()
    cm = compile_and_compare(model, inputs, target)
    assert conv_variants(cm) == ["dense"] + ["dense (sparsity annotation not used)"] * 3


def test_pack_reorders_and_skips_removed_kernels():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    lib = [(1, 3, 4, 5), (4, 5, 7, 8)]
    ids = np.array([[0, -1, 1, 0], [-1, -1, -1, -1], [1, 1, 1, 1], [0, 0, -1, -1], [1, -1, -1, -1], [0, 1, 0, 1]],
                   np.int32)
    masks = np.zeros((3, 9), bool)
    masks[0, list(lib[0])] = masks[1, list(lib[1])] = True
    w = w * masks[ids].reshape(6, 4, 3, 3)
    pk = ops_sparse.pack_sparse_gpu(w, np.arange(6, dtype=np.float32), 1,
                                    {"kind": "pattern+kernel", "library": lib, "ids": ids}, plane=25, pixels=7)
    kept = (ids >= 0).sum(axis=1)
    assert sorted(pk.order.tolist()) == list(range(6))
    assert list(kept[pk.order]) == sorted(kept, reverse=True)  # most kernels first
    assert pk.kernels == int(kept.sum()) and pk.macs_per_pixel == 4 * pk.kernels
    assert pk.mac_reduction == pytest.approx(6 * 4 * 9 / (4 * pk.kernels))
    assert np.array_equal(pk.bias, pk.order.astype(np.float32))  # bias follows the slots
    # the weights are exactly the non-zeros, pattern by pattern, with no removed kernel stored
    assert pk.weights.size == 4 * pk.kernels and np.count_nonzero(w) == np.count_nonzero(pk.weights)


def test_pattern_annotation_that_does_not_cover_the_weights():
    w = np.zeros((2, 2, 3, 3), np.float32)
    w[0, 1, 0, 0] = 1.0
    ids = np.array([[0, 0], [0, 0]], np.int32)
    with pytest.raises(ValueError, match=r"kernel \(0, 1\) has non-zeros"):
        ops_sparse.tap_sets(w, {"kind": "pattern", "library": [(1, 3, 4, 5)], "ids": ids})


def test_bad_sparse_mode(monkeypatch):
    monkeypatch.setenv("LRC_SPARSE", "sometimes")
    with pytest.raises(ValueError, match="LRC_SPARSE must be"):
        ops_sparse.sparse_mode()


def test_too_many_tap_sets_fall_back_to_full_kernels():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * (rng.random((8, 8, 3, 3)) < 0.4)
    pats, ids, source = ops_sparse.tap_sets(w, {"kind": "irregular", "library": [], "ids": None})
    assert source == "full" and pats == [tuple(range(9))]
    assert np.array_equal(ids >= 0, (w != 0).reshape(8, 8, 9).any(axis=2))


def test_mismatched_annotation_names_the_layer():
    from torch_mlir import ir

    from lrc.codegen.emit import LayerOp
    w = np.zeros((2, 2, 3, 3), np.float32)
    w[1, 0, 2, 2] = 1.0
    attrs = {"weight": w, "bias": None, "groups": 1, "stride": (1, 1), "padding": (1, 1, 1, 1),
             "dilation": (1, 1), "sparsity": {"kind": "pattern", "library": [(1, 3, 4, 5)], "ids": None}}
    with ir.Context(), ir.Location.unknown():
        op = LayerOp("conv2d", attrs, [(1, 2, 4, 4)], (1, 2, 4, 4), ir.Location.unknown(), "enc.0")
        with pytest.raises(ValueError, match=r"'lr.conv2d' 'enc.0' .*kernel \(1, 0\) has non-zeros at \[8\]"):
            ops_sparse.choose(op)
