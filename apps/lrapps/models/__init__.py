"""The three application models and their checkpoint format.

A checkpoint (``apps/checkpoints/<app>_dense.pt``) is a plain dict that
``torch.load(..., weights_only=True)`` can read::

    {"app": "superres", "config": {...constructor kwargs...},
     "state_dict": {...}, "meta": {...steps, seed, data, metrics...}}

``load(path)`` rebuilds the model in eval mode.

A pruned checkpoint (``<app>_pruned.pt``, written by :mod:`lrapps.prune`)
adds ``"sparsity"``: ``{layer: lr_sparsity dict}`` (lrprune's export
contract, which ``lrc.compile`` reads) and stores those layers' weights
compactly under ``"sparse_weights"``: ``{param name: {"shape", "mask"
(np.packbits of weight != 0, as uint8), "values" (the non-zeros)}}``
instead of in ``state_dict``. ``load`` puts both back, so the loaded
module carries ``module.lr_sparsity`` exactly as after ``hard_prune()``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .color import AB_SCALE, ColorNet
from .style import MSGNetStyle
from .superres import WDSR

__all__ = ["APPS", "AB_SCALE", "ColorNet", "MSGNetStyle", "WDSR", "build", "example_input",
           "load", "save", "APP_INPUT_SHAPES"]

APPS = {"style": MSGNetStyle, "color": ColorNet, "superres": WDSR}

# Sizes the apps are benchmarked at (docs/apps.md).
APP_INPUT_SHAPES: Dict[str, Tuple[int, ...]] = {
    "style": (1, 3, 256, 256),
    "color": (1, 1, 224, 224),
    "superres": (1, 3, 256, 256),
}


def build(app: str, **config) -> nn.Module:
    if app not in APPS:
        raise ValueError(f"unknown app {app!r}; choose from {sorted(APPS)}")
    return APPS[app](**config)


def example_input(app: str, batch: int = 1, hw: Optional[Tuple[int, int]] = None,
                  seed: int = 0) -> torch.Tensor:
    shape = list(APP_INPUT_SHAPES[app])
    shape[0] = batch
    if hw is not None:
        shape[2:] = hw
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _structure(model: nn.Module) -> Dict[str, dict]:
    """``{layer: lr_sparsity}`` as plain lists (weights_only-loadable)."""
    out = {}
    for name, m in model.named_modules():
        ann = getattr(m, "lr_sparsity", None)
        if isinstance(ann, dict):
            d = dict(ann)
            if d.get("library") is not None:
                d["library"] = [[int(i) for i in p] for p in d["library"]]
            out[name] = d
    return out


def _pack(w: torch.Tensor) -> Dict[str, Any]:
    nz = (w != 0).flatten()
    bits = np.packbits(nz.numpy().astype(np.uint8))
    return {"shape": list(w.shape), "mask": torch.from_numpy(bits), "values": w.flatten()[nz].clone()}


def _unpack(d: Dict[str, Any]) -> torch.Tensor:
    shape = [int(s) for s in d["shape"]]
    n = int(np.prod(shape))
    nz = torch.from_numpy(np.unpackbits(d["mask"].numpy(), count=n).astype(bool))
    if int(nz.sum()) != d["values"].numel():
        raise ValueError(f"corrupt sparse weight: mask has {int(nz.sum())} non-zeros, "
                         f"{d['values'].numel()} values stored")
    w = torch.zeros(n, dtype=d["values"].dtype)
    w[nz] = d["values"]
    return w.reshape(shape)


def save(path, model: nn.Module, app: str, meta: Optional[Dict[str, Any]] = None) -> None:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    ckpt = {"app": app, "config": dict(model.config), "meta": dict(meta or {})}
    structure = _structure(model)
    if structure:
        sparse = {}
        for layer in structure:
            key = f"{layer}.weight"
            sparse[key] = _pack(state.pop(key))
        ckpt["sparsity"] = structure
        ckpt["sparse_weights"] = sparse
    ckpt["state_dict"] = state
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fingerprint(model: nn.Module) -> str:
    """A short hash of a model's weights (names, shapes, dtypes and values). Pruned checkpoints
    record their dense parent's, so that a checkpoint made from an earlier model at the same path is
    never taken for one made from the current model (lrapps.sweep reuse, quality's twin check)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def load(path, map_location="cpu") -> nn.Module:
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    model = build(ckpt["app"], **ckpt["config"])
    state = dict(ckpt["state_dict"])
    for key, d in ckpt.get("sparse_weights", {}).items():
        state[key] = _unpack(d)
    model.load_state_dict(state)
    named = dict(model.named_modules())
    for layer, ann in ckpt.get("sparsity", {}).items():
        d = dict(ann)
        if d.get("library") is not None:
            d["library"] = [tuple(int(i) for i in p) for p in d["library"]]
        named[layer].lr_sparsity = d
    model.checkpoint_meta = ckpt.get("meta", {})
    return model.eval()
