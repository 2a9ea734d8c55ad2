"""Training/evaluation images: bundled with packages, or the user's folder.

Nothing is downloaded. The built-in images ship inside scikit-image and
scikit-learn wheels, and the split is fixed (never decided at run time):

* ``TRAIN``   - astronaut, rocket, hubble_deep_field, immunohistochemistry,
  retina, motorcycle (left view of ``stereo_motorcycle``), china
* ``HELDOUT`` - coffee, chelsea, flower: never trained on; all reported
  metrics are computed on these only.

The style app's style image (``immunohistochemistry`` by default) is
removed from its content images.

With ``data_dir`` (``--data DIR``) the built-in images are not used. Every
``.png/.jpg/.jpeg`` below DIR (recursively, sorted) is read; a file is
held out when ``crc32(relative path) % 10 == 0`` (~10 %), a rule that
doesn't move other files between splits when files are added. If that
holds out nothing (or everything) and there are at least 2 files, just the
file with the smallest crc32 is held out. A single file is trained on and the held-out
set is empty (training then reports no metrics).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TRAIN", "HELDOUT", "BUILTIN", "IMAGE_EXTS", "load_builtin", "load_image",
           "list_images", "split_folder", "get_images", "CropSampler", "center_crop",
           "to_tensor", "to_uint8", "bicubic_down", "bicubic_up"]

TRAIN = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
         "motorcycle", "china")
HELDOUT = ("coffee", "chelsea", "flower")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")

Image = Tuple[str, np.ndarray]  # (name, HxWx3 uint8)


def _skimage(name):
    def load():
        from skimage import data
        return getattr(data, name)()
    return load


def _motorcycle():
    from skimage import data
    left, _right, _disp = data.stereo_motorcycle()
    return left


def _sklearn(fname):
    def load():
        from sklearn.datasets import load_sample_image
        return load_sample_image(fname)
    return load


BUILTIN = {
    "astronaut": _skimage("astronaut"), "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"), "retina": _skimage("retina"),
    "motorcycle": _motorcycle, "coffee": _skimage("coffee"), "chelsea": _skimage("chelsea"),
    "colorwheel": _skimage("colorwheel"),
    "china": _sklearn("china.jpg"), "flower": _sklearn("flower.jpg"),
}

_cache: Dict[str, np.ndarray] = {}


def _as_rgb_uint8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = np.clip(a * (255 if a.max() <= 1 else 1), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    if a.shape[-1] == 4:
        a = a[..., :3]
    return np.ascontiguousarray(a)


def load_builtin(name: str) -> np.ndarray:
    if name not in BUILTIN:
        raise KeyError(f"unknown built-in image {name!r}; choose from {sorted(BUILTIN)}")
    if name not in _cache:
        _cache[name] = _as_rgb_uint8(BUILTIN[name]())
    return _cache[name]


def load_image(path) -> np.ndarray:
    """Any PNG/JPEG (gray, palette, RGBA, EXIF-rotated) as HxWx3 uint8."""
    from PIL import Image as PILImage, ImageOps
    with PILImage.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def list_images(data_dir) -> List[Path]:
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--data: {root} is not a directory")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def split_folder(data_dir) -> Tuple[List[Path], List[Path]]:
    root = Path(data_dir)
    files = list_images(root)
    if not files:
        raise FileNotFoundError(f"--data: no {'/'.join(IMAGE_EXTS)} images under {root}")
    crc = {p: zlib.crc32(p.relative_to(root).as_posix().encode()) for p in files}
    held = [p for p in files if crc[p] % 10 == 0]
    if len(files) < 2:
        held = []
    elif not held or len(held) == len(files):
        held = [min(files, key=lambda p: crc[p])]
    train = [p for p in files if p not in held]
    return train, held


def get_images(split: str, data_dir=None, exclude: Sequence[str] = ()) -> List[Image]:
    """``split`` is "train" or "heldout"; ``exclude`` drops images by name."""
    if split not in ("train", "heldout"):
        raise ValueError("split must be 'train' or 'heldout'")
    if data_dir is None:
        names = TRAIN if split == "train" else HELDOUT
        return [(n, load_builtin(n)) for n in names if n not in exclude]
    root = Path(data_dir)
    train, held = split_folder(root)
    chosen = train if split == "train" else held
    out = []
    for p in chosen:
        name = p.relative_to(root).as_posix()
        if name not in exclude and str(p) not in exclude:
            out.append((name, load_image(p)))
    return out


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1x)3xHxW float in [0, 1] -> HxWx3 uint8 (rounded, clipped)."""
    if t.dim() == 4:
        t = t[0]
    t = t.detach().float().clamp(0, 1)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def center_crop(img: np.ndarray, size: int, multiple: int = 1) -> np.ndarray:
    """Central ``size`` x ``size`` crop (smaller if the image is), with sides
    rounded down to ``multiple`` so strided models divide evenly."""
    h, w = img.shape[:2]
    ch = min(size, h) // multiple * multiple
    cw = min(size, w) // multiple * multiple
    y, x = (h - ch) // 2, (w - cw) // 2
    return img[y:y + ch, x:x + cw]


def bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscale (what "bicubic LR" means in SR papers),
    output clipped like a saved 8-bit image would be."""
    return F.interpolate(hr, scale_factor=1.0 / scale, mode="bicubic",
                         antialias=True, align_corners=False).clamp_(0, 1)


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0, 1)


class CropSampler:
    """Endless random crops with the 8 flips/90-degree rotations.

    Images are picked uniformly; crops that are almost flat (std below
    ``min_std``, e.g. the black sky of hubble_deep_field or the border of
    retina) are redrawn up to a few times since they teach nothing.
    """

    def __init__(self, images: Sequence[Image], crop: int, seed: int = 0,
                 min_std: float = 0.02, augment: bool = True):
        if not images:
            raise ValueError("CropSampler needs at least one image")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.min_std = min_std
        self.augment = augment
        self.images = [_ensure_min_side(img, crop) for _, img in images]

    def _one(self) -> np.ndarray:
        patch = None
        for _ in range(5):
            img = self.images[self.rng.integers(len(self.images))]
            h, w = img.shape[:2]
            y = self.rng.integers(h - self.crop + 1)
            x = self.rng.integers(w - self.crop + 1)
            patch = img[y:y + self.crop, x:x + self.crop]
            if patch.std() / 255.0 >= self.min_std:
                break
        if self.augment:
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            patch = np.rot90(patch, int(self.rng.integers(4)))
        return patch

    def sample(self, batch: int) -> torch.Tensor:
        """(batch, 3, crop, crop) float in [0, 1]."""
        return torch.stack([to_tensor(self._one()) for _ in range(batch)])

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield self.sample(1)


def _ensure_min_side(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) >= side:
        return img
    from PIL import Image as PILImage
    s = side / min(h, w)
    size = (max(side, round(w * s)), max(side, round(h * s)))
    return np.asarray(PILImage.fromarray(img).resize(size, PILImage.BICUBIC))


def resolve_style_image(spec: str) -> Tuple[str, np.ndarray]:
    """A built-in image name or a path to a PNG/JPEG."""
    if spec in BUILTIN:
        return spec, load_builtin(spec)
    if os.path.isfile(spec):
        return os.path.basename(spec), load_image(spec)
    raise FileNotFoundError(f"style image {spec!r} is neither a built-in ({sorted(BUILTIN)}) "
                            "nor a file")
