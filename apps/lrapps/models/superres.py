"""WDSR-B super resolution (Yu et al., 2018), x2 or x4.

Input: low-resolution RGB in [0, 1], NCHW. Output: (N, 3, sH, sW), not
clamped. Weight normalisation from the paper is left out: it only helps
optimisation and would have to be folded away before compiling anyway.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["WDSR", "WideBlock", "bicubic_taps"]


def bicubic_taps(scale: int, radius: int = 2, a: float = -0.75) -> torch.Tensor:
    """(scale, 2*radius+1) 1-D weights: row ``i`` produces HR sub-pixel
    phase ``i`` from LR neighbours at offsets -radius..radius, matching
    ``F.interpolate(mode="bicubic", align_corners=False)`` away from borders."""

    def keys(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        if t < 2:
            return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
        return 0.0

    taps = torch.zeros(scale, 2 * radius + 1)
    for i in range(scale):
        src = (i + 0.5) / scale - 0.5  # LR coordinate of the HR sample, relative
        base = math.floor(src)
        for k in range(base - 1, base + 3):
            taps[i, k + radius] = keys(src - k)
    return taps


class WideBlock(nn.Module):
    """Wide activation: ReLU runs on ``feats*expand`` channels, then a
    linear 1x1 low-rank projection keeps the 3x3 conv cheap."""

    def __init__(self, feats, expand, low_rank):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(feats, feats * expand, 1), nn.ReLU(inplace=True),
            nn.Conv2d(feats * expand, low_rank, 1),
            nn.Conv2d(low_rank, feats, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class WDSR(nn.Module):
    def __init__(self, scale=2, feats=32, blocks=6, expand=4, low_rank=26):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        self.config = {"scale": scale, "feats": feats, "blocks": blocks,
                       "expand": expand, "low_rank": low_rank}
        out = 3 * scale * scale
        self.head = nn.Conv2d(3, feats, 3, padding=1)
        self.body = nn.Sequential(*[WideBlock(feats, expand, low_rank) for _ in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(feats, out, 3, padding=1), nn.PixelShuffle(scale))
        # Global skip: a 5x5 conv of the LR input, so the body only learns
        # the high-frequency residual.
        self.skip = nn.Sequential(nn.Conv2d(3, out, 5, padding=2), nn.PixelShuffle(scale))
        self._init_as_bicubic()

    @torch.no_grad()
    def _init_as_bicubic(self):
        """Start as bicubic upsampling: the skip conv gets bicubic taps and
        the tail starts near zero. A short CPU training run then only has
        to learn the residual, instead of first rediscovering interpolation
        (which otherwise eats most of a few-minute budget)."""
        s = self.config["scale"]
        taps = bicubic_taps(s)
        conv = self.skip[0]
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(3):
            for i in range(s):
                for j in range(s):
                    # PixelShuffle reads channel c*s*s + i*s + j for phase (i, j).
                    conv.weight[c * s * s + i * s + j, c] = torch.outer(taps[i], taps[j])
        self.tail[0].weight.mul_(0.1)
        self.tail[0].bias.zero_()

    def forward(self, x):
        return self.tail(self.body(self.head(x))) + self.skip(x)
