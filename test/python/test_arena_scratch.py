"""Conv kernels take their scratch (padded input copies, pixel blocks, strided-1x1 panels, the sparse
kernels' input copies) from one arena region that every layer reuses, not from malloc per call."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import lrc
from lrc.codegen import ops_dense
from lrc.codegen.kernels.conv import SCRATCH_ATTR
from lrc.codegen.lower import ARENA_ATTR, lower_to_kernels


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),          # padded: prep scratch
        torch.nn.Conv2d(16, 24, 1, stride=2),                           # strided 1x1: panel
        torch.nn.Conv2d(24, 24, 5, padding=2), torch.nn.ReLU()).eval()


def _lowered(model, x, threads=1):
    mod = lrc.import_model(model, (x,))
    lrc.optimize(mod)
    return str(lower_to_kernels(mod, threads=threads))


def test_conv_scratch_is_an_arena_region(monkeypatch):
    model, x = _net(), torch.rand(1, 3, 20, 22)
    text = _lowered(model, x)
    need = [int(m) for m in re.findall(rf"{SCRATCH_ATTR} = (\d+)", text)]
    assert len(need) == 3 and all(n > 0 for n in need)
    assert "memref.alloc(" not in text.split("func.func @forward")[0]  # no kernel mallocs its scratch
    monkeypatch.setattr(ops_dense, "ARENA_SCRATCH", False)
    old = _lowered(model, x)
    assert SCRATCH_ATTR not in old and "memref.alloc(" in old
    arena = lambda t: int(re.search(rf"{ARENA_ATTR} = (\d+)", t).group(1))  # noqa: E731
    # one region after the activations, as big as the hungriest layer's scratch (64-byte aligned)
    assert arena(text) - arena(old) >= max(need) and arena(text) - arena(old) < max(need) + 128
    monkeypatch.setattr(ops_dense, "ARENA_SCRATCH", True)
    cm = lrc.compile(model, (x,))
    with torch.no_grad():
        np.testing.assert_allclose(cm(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_split_layers_get_a_scratch_region_per_part():
    """Parts of a layer split over threads run at once: each needs its own scratch."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.rand(1, 32, 40, 40)
    entry = _lowered(model, x, threads=2).split("func.func @forward(")[1].split("func.func")[0]
    # the i8 views handed to the kernels as scratch: one per part, at different offsets, each as big
    # as the part's scratch, not overlapping
    views = [(int(at), int(n)) for at, n in re.findall(r"memref\.view %\w+\[%c(\d+)(?:_\d+)?\]\[\] : "
                                                        r"memref<\d+xi8> to memref<(\d+)xi8>", entry)]
    assert len(views) == 2 and views[0][0] != views[1][0], views
    (a, na), (b, nb) = sorted(views)
    assert a + na <= b
    cm = lrc.compile(model, (x,), threads=2)
    with torch.no_grad():
        np.testing.assert_allclose(cm(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_scratch_argument_too_small_is_caught():
    from torch_mlir import ir
    from torch_mlir.dialects import func

    from lrc.codegen.kernels._builder import Scratch, scratch_arg_type

    with ir.Context(), ir.Location.unknown():
        m = ir.Module.create()
        with ir.InsertionPoint(m.body):
            fn = func.FuncOp("k", ([scratch_arg_type(128)], []))
            fn.add_entry_block()
        with ir.InsertionPoint(fn.entry_block):
            s = Scratch(fn.arguments[0])
            s.alloc(16)  # 64 bytes
            s.alloc(16)
            with pytest.raises(AssertionError, match="scratch argument too small"):
                s.alloc(1)
