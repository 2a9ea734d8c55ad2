"""The three application models and their checkpoint format.

A checkpoint (``apps/checkpoints/<app>_dense.pt``) is a plain dict that
``torch.load(..., weights_only=True)`` can read::

    {"app": "superres", "config": {...constructor kwargs...},
     "state_dict": {...}, "meta": {...steps, seed, data, metrics...}}

``load(path)`` rebuilds the model in eval mode.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

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


def save(path, model: nn.Module, app: str, meta: Optional[Dict[str, Any]] = None) -> None:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"app": app, "config": dict(model.config), "state_dict": state,
                "meta": dict(meta or {})}, path)


def load(path, map_location="cpu") -> nn.Module:
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    model = build(ckpt["app"], **ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.checkpoint_meta = ckpt.get("meta", {})
    return model.eval()
