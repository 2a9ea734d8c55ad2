"""Running an app on one image: pre/post-processing, shipped checkpoints, compiled-model cache.

Shared by the ``lrc-app`` CLI, ``python -m lrc.demo`` and ``lrapps.quality`` so that all three
feed the networks exactly the same tensors.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import models
from .colorspace import lab_to_rgb, rgb_to_lab
from .models import AB_SCALE

__all__ = ["APPS", "MULTIPLE", "checkpoint_path", "load_app", "preprocess", "postprocess",
           "default_cache_dir", "compile_cached"]

APPS = ("superres", "color", "style")
# Input sides must divide by these (stride-2 stages / exact x2 upsampling).
MULTIPLE = {"superres": 1, "color": 8, "style": 4}


def checkpoint_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "checkpoints"


def checkpoint_path(app: str, dense: bool = False) -> Path:
    if app not in APPS:
        raise ValueError(f"unknown app {app!r}; choose from {', '.join(APPS)}")
    return checkpoint_dir() / f"{app}_{'dense' if dense else 'pruned'}.pt"


def load_app(app: str, dense: bool = False, path=None):
    """The shipped checkpoint (pruned unless ``dense``) in eval mode."""
    p = Path(path) if path else checkpoint_path(app, dense)
    if not p.is_file():
        what = "dense" if dense else "pruned"
        hint = (f"python -m lrapps.train {app}" if dense else f"python -m lrapps.prune {app}")
        raise FileNotFoundError(f"{p}: no {what} {app} checkpoint (make it with `{hint}`)")
    model = models.load(p)
    if model.checkpoint_meta.get("app", app) != app:
        raise ValueError(f"{p} is not a {app} checkpoint")
    return model


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    a = t.detach().clamp(0, 1).squeeze(0).permute(1, 2, 0).mul(255).round().byte().numpy()
    return np.ascontiguousarray(a)


def preprocess(app: str, rgb: np.ndarray) -> Tuple[torch.Tensor, Dict]:
    """HxWx3 uint8 RGB -> (model input 1xCxH'xW', context for :func:`postprocess`).

    Sides are padded (reflect, bottom/right) up to the app's multiple and cropped back after."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    m = MULTIPLE[app]
    x = _to_tensor(rgb)
    ph, pw = -h % m, -w % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    ctx = {"h": h, "w": w}
    if app == "color":
        lab = rgb_to_lab(x)
        ctx["L"] = lab[:, :1]
        return (lab[:, :1] / 100.0).contiguous(), ctx
    return x.contiguous(), ctx


def postprocess(app: str, y: torch.Tensor, ctx: Dict) -> np.ndarray:
    """Model output -> HxWx3 uint8 RGB (s*H x s*W for super resolution)."""
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if app == "color":
        y = lab_to_rgb(torch.cat([ctx["L"], y * AB_SCALE], 1))
    s = y.shape[2] // (ctx["h"] + (-ctx["h"] % MULTIPLE[app]))
    return _to_uint8(y[:, :, : s * ctx["h"], : s * ctx["w"]])


def default_cache_dir() -> Path:
    env = os.environ.get("LRC_APP_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrc-app"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _lrc_digest() -> str:
    """Changes whenever the compiler's sources change (its Python, and the C in lib/ that goes into
    model.so, e.g. the thread team), so stale builds are not reused."""
    import lrc

    root = Path(lrc.__file__).resolve().parent
    lib = root.parent.parent / "lib"
    h = hashlib.sha256()
    for base, p in sorted([(root, p) for p in root.rglob("*.py")] + [(lib, p) for p in lib.rglob("*.[ch]")]):
        h.update(str(p.relative_to(base)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def compile_cached(model, x: torch.Tensor, target: str = "host", cache_dir: Optional[Path] = None,
                   key: str = "", log=None):
    """``lrc.compile(model, (x,), target)``, reusing an artifact saved under ``cache_dir``.

    The cache key covers ``key`` (app + checkpoint digest), the input shape, the target and the
    compiler sources. Returns ``(compiled model, "cache" | "compiled")``. Without ``cache_dir``
    nothing is read or written. A cache entry that fails to load is rebuilt, not trusted."""
    import lrc

    shape = "x".join(map(str, x.shape))
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{key}-{shape}-{target}-{_lrc_digest()}")
    entry = Path(cache_dir) / name if cache_dir else None
    if entry is not None and entry.is_dir():
        try:
            return lrc.load(str(entry)), "cache"
        except Exception as e:  # a damaged entry: rebuild it below
            if log:
                log(f"ignoring unreadable cache entry {entry}: {e}")
    cm = lrc.compile(model, (x,), target=target)
    if entry is not None:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            cm.save(str(entry), overwrite=True)
        except NotImplementedError:
            pass  # this target cannot be saved; still usable now
        except OSError as e:
            if log:
                log(f"could not cache the compiled model in {entry}: {e}")
    return cm, "compiled"


def checkpoint_key(app: str, path: Path) -> str:
    return f"{app}-{Path(path).stem}-{_file_digest(Path(path))}"
