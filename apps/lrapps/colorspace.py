"""sRGB <-> CIE Lab (D65) and Y (luma) in torch, channels at dim -3.

Written here (rather than calling skimage.color per image) so conversion
runs batched inside the training step and stays differentiable; the tests
check it against skimage.color.
"""

from __future__ import annotations

import torch

__all__ = ["rgb_to_lab", "lab_to_rgb", "rgb_to_y", "gray_to_rgb"]

_RGB2XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPS = 0.008856
_KAPPA = 7.787


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", m.to(x.dtype), x)


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.dtype).view(3, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> Lab with L in [0, 100], a/b roughly in [-110, 110]."""
    rgb = rgb.clamp(0, 1)
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).clamp_min(1e-8) ** 2.4, rgb / 12.92)
    xyz = _mix(_RGB2XYZ, lin) / _per_channel(_WHITE, rgb)
    f = torch.where(xyz > _EPS, xyz.clamp_min(_EPS) ** (1 / 3), _KAPPA * xyz + 16 / 116)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> sRGB in [0, 1] (out-of-gamut colours are clipped)."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-3)
    xyz = torch.where(f ** 3 > _EPS, f ** 3, (f - 16 / 116) / _KAPPA)
    lin = _mix(_XYZ2RGB, xyz * _per_channel(_WHITE, lab)).clamp_min(0)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(1e-8) ** (1 / 2.4) - 0.055, 12.92 * lin)
    return rgb.clamp(0, 1)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma in [16/255, 235/255], the channel SR papers score on."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=rgb.dtype, device=rgb.device) / 255.0
    return (rgb * w.view(3, 1, 1)).sum(-3, keepdim=True) + 16.0 / 255.0


def gray_to_rgb(gray: torch.Tensor) -> torch.Tensor:
    return gray.expand(*gray.shape[:-3], 3, *gray.shape[-2:])
