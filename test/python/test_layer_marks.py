"""lower.LAYER_MARKS: the per-layer callbacks bench/profile_layers.py --in-model times a whole model with."""
from __future__ import annotations

import ctypes

import numpy as np
import torch

import lrc
from lrc.codegen import lower as L
from lrc.codegen.lower import lower_to_kernels
from lrc.runtime.jit import JitModule


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(8, 4, 1), torch.nn.Sigmoid()).eval()


def test_marks_follow_every_layer_in_order(monkeypatch):
    model, x = _net(), torch.rand(1, 3, 16, 16)
    mod = lrc.import_model(model, (x,))
    lrc.optimize(mod)
    marks: list = []
    monkeypatch.setattr(L, "LAYER_MARKS", marks)
    jit = JitModule(lower_to_kernels(mod))
    (fname, layers), = marks
    # conv + ReLU + pool is one fused layer (lr-fuse-conv-pool), then the 1x1 conv + sigmoid
    assert fname == "forward" and [(l.name, l.attrs.get("pool", 0)) for l in layers] == [("conv2d", 2), ("conv2d", 0)]
    seen = []
    cb = ctypes.CFUNCTYPE(None, ctypes.c_int64)(seen.append)
    jit.engine.register_runtime(L.MARK_FN, cb)
    out = np.empty((1, 4, 8, 8), np.float32)
    jit.call("forward", x.numpy(), out)
    assert seen == [0, 1]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_no_marks_by_default():
    model, x = _net(), torch.rand(1, 3, 16, 16)
    mod = lrc.import_model(model, (x,))
    lrc.optimize(mod)
    assert L.LAYER_MARKS is None
    assert L.MARK_FN not in str(lower_to_kernels(mod))
