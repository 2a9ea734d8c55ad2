"""Automatic colouring after Iizuka, Simo-Serra & Ishikawa (SIGGRAPH 2016).

Input: (N, 1, H, W) lightness ``L / 100`` in [0, 1]; H and W multiples
of 8. Output: (N, 2, H, W) chroma ``ab / AB_SCALE`` in [-1, 1] (tanh).
Use :func:`lrapps.colorspace.lab_to_rgb` to get an image back.

Differences from the paper, all for running at any input size on a phone:
the global branch uses global average pooling instead of FC layers on a
fixed 224x224 resized copy, it shares the low-level features of the input
itself, and widths are scaled down (``width`` multiplies 1/4 of the
paper's channel counts; ``global_width`` the same for the global branch,
which holds most parameters but almost no compute).

``feature_stride=8`` is the paper's layout (mid-level features at H/8).
The default 4 skips the third stride-2 conv: same parameter count (the
checkpoint stays < 10 MB) but 2.5x the compute, so the dense model lands
near 100 ms at 224x224 instead of ~40 ms, and chroma comes from a finer
grid.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ColorNet", "AB_SCALE"]

AB_SCALE = 110.0  # |a|, |b| stay below ~110 for sRGB colours


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True))


class ColorNet(nn.Module):
    def __init__(self, width=2, feature_stride=4, global_width=0.5):
        super().__init__()
        if feature_stride not in (4, 8):
            raise ValueError("feature_stride must be 4 or 8")
        self.config = {"width": width, "feature_stride": feature_stride,
                       "global_width": global_width}
        w = lambda c: c * width // 4  # noqa: E731  (paper channels -> ours)
        gw = lambda c: int(c * global_width) // 4  # noqa: E731
        s3 = 2 if feature_stride == 8 else 1
        self.low = nn.Sequential(
            _conv(1, w(64), 2), _conv(w(64), w(128)),
            _conv(w(128), w(128), 2), _conv(w(128), w(256)),
            _conv(w(256), w(256), s3), _conv(w(256), w(512)))
        self.mid = nn.Sequential(_conv(w(512), w(512)), _conv(w(512), w(256)))
        self.glob_conv = nn.Sequential(
            _conv(w(512), gw(512), 2), _conv(gw(512), gw(512)),
            _conv(gw(512), gw(512), 2), _conv(gw(512), gw(512)),
            nn.AdaptiveAvgPool2d(1))
        self.glob_fc = nn.Sequential(
            nn.Linear(gw(512), gw(1024)), nn.ReLU(inplace=True),
            nn.Linear(gw(1024), gw(512)), nn.ReLU(inplace=True),
            nn.Linear(gw(512), w(256)), nn.ReLU(inplace=True))
        self.fusion = nn.Sequential(nn.Conv2d(w(256) * 2, w(256), 1), nn.ReLU(inplace=True))
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
        self.colorize = nn.Sequential(
            _conv(w(256), w(128)),
            *([up()] if feature_stride == 8 else []),
            _conv(w(128), w(64)), _conv(w(64), w(64)),
            up(),
            _conv(w(64), w(32)),
            nn.Conv2d(w(32), 2, 3, 1, 1), nn.Tanh(),
            up())
        self._gdim = w(256)

    def forward(self, x):
        low = self.low(x)
        mid = self.mid(low)
        g = self.glob_fc(torch.flatten(self.glob_conv(low), 1))
        # Nearest-upsampling the 1x1 map *is* the broadcast to every pixel,
        # and keeps the graph inside the op set lrc compiles (no expand).
        g = F.interpolate(g.reshape(-1, self._gdim, 1, 1), size=mid.shape[2:], mode="nearest")
        fused = self.fusion(torch.cat([mid, g], dim=1))
        return self.colorize(fused)
