"""Quality metrics for the three apps.

* :func:`psnr`, :func:`ssim` - on the BT.601 Y channel by default (the SR
  convention), images in [0, 1], optional border crop.
* :func:`colorfulness` - Hasler & Suesstrunk (2003), on a 0..255 scale.
* :func:`gram`, :func:`content_loss`, :func:`style_loss` - the
  perceptual losses of Gatys et al. / Johnson et al., normalised per layer
  (see :func:`style_loss`).

All take NCHW (or CHW) float tensors; numpy HxWx3 uint8 arrays are also
accepted by psnr/ssim/colorfulness.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .colorspace import rgb_to_y

__all__ = ["psnr", "ssim", "colorfulness", "gram", "content_loss", "style_loss"]


def _as_nchw(img) -> torch.Tensor:
    if isinstance(img, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(img))
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        t = t.float()
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    else:
        t = img.detach().float()
    return t.unsqueeze(0) if t.dim() == 3 else t


def _prep(a, b, y_channel: bool, crop_border: int):
    a, b = _as_nchw(a), _as_nchw(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.clamp(0, 1), b.clamp(0, 1)
    if y_channel and a.shape[1] == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    if crop_border:
        c = crop_border
        a, b = a[..., c:-c, c:-c], b[..., c:-c, c:-c]
    return a.double(), b.double()


def psnr(a, b, y_channel: bool = True, crop_border: int = 0) -> float:
    """PSNR in dB for images in [0, 1] (mean over the batch of per-image PSNR)."""
    a, b = _prep(a, b, y_channel, crop_border)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    vals = [100.0 if m == 0 else 10 * math.log10(1.0 / m) for m in mse.tolist()]
    return float(sum(vals) / len(vals))


def _gauss(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a, b, y_channel: bool = True, crop_border: int = 0,
         win: int = 11, sigma: float = 1.5) -> float:
    """SSIM (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5,
    K1=0.01, K2=0.03, data range 1, averaged over the valid region (no
    padding) and the channels - matches skimage's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``."""
    a, b = _prep(a, b, y_channel, crop_border)
    c = a.shape[1]
    g = _gauss(win, sigma)
    kh = g.view(1, 1, win, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, win).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a ** 2
    sbb = blur(b * b) - mu_b ** 2
    sab = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(s.flatten(1).mean(1).mean())


def colorfulness(img) -> float:
    """Hasler & Suesstrunk M (0 = grey; ~15 "slightly", ~33 "moderately",
    ~59 "quite", ~82 "highly", ~109 "extremely" colourful). Batch mean."""
    t = _as_nchw(img).clamp(0, 1).double() * 255.0
    r, g, b = t[:, 0], t[:, 1], t[:, 2]
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return float((std + 0.3 * mean).mean())


def gram(f: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C), normalised by C*H*W so it is size-independent."""
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between activations, divided by the target's mean square so the
    value does not depend on the extractor's weight scale (random vs
    ImageNet VGG)."""
    return F.mse_loss(feat, target) / target.pow(2).mean().clamp_min(1e-12)


def style_loss(feats: Dict[str, torch.Tensor], target_grams: Dict[str, torch.Tensor],
               layers: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Mean over layers of ||G(feat) - G_target||^2 / mean(G_target^2).

    The per-layer normalisation weights all layers equally whatever their
    activation scale; ``target_grams`` may have batch 1 (one style image)."""
    layers = list(layers or target_grams)
    total = 0.0
    for name in layers:
        g = gram(feats[name])
        t = target_grams[name].expand_as(g)
        total = total + F.mse_loss(g, t) / t.pow(2).mean().clamp_min(1e-12)
    return total / len(layers)
