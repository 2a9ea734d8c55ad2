"""VGG-16-shaped feature extractor for the style-transfer losses.

ImageNet weights cannot be downloaded here, so there are two modes:

* ``VGGFeatures.from_file(path)``: the user's own VGG-16 weights, a
  state_dict in torchvision's layout (``features.0.weight`` ...; the
  classifier and layers after relu4_3 are ignored; ``module.`` prefixes
  and a wrapping ``{"state_dict": ...}`` are accepted). Full width.
* ``VGGFeatures.random(seed, width_mult)``: the fallback. Same topology,
  He-initialised random filters from a fixed seed. Gram matrices of
  random multi-scale conv features still capture texture statistics
  (Ustyuzhaninov et al., "What does it take to generate natural
  textures?", ICLR 2017), so style transfer trains, with coarser results
  than ImageNet features give. Width defaults to 1/4 of VGG-16 so a
  training step is ~16x cheaper on a CPU.

Layers returned (Johnson et al. 2016's choice): relu1_2, relu2_2,
relu3_3, relu4_3.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn

__all__ = ["VGGFeatures", "LAYERS", "CONTENT_LAYER", "make_extractor", "parse_source"]

# torchvision vgg16 "features" indices of the ReLUs we read.
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
CONTENT_LAYER = "relu2_2"
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]  # up to relu4_3
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    def __init__(self, width_mult: float = 1.0):
        super().__init__()
        layers: List[nn.Module] = []
        c = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = max(8, int(round(v * width_mult)))
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=False)]
                c = out
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        self.width_mult = width_mult
        self.source = "uninitialised"
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def random(cls, seed: int = 0, width_mult: float = 0.25) -> "VGGFeatures":
        net = cls(width_mult)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in net.features:
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    # He init keeps activation scale roughly constant with depth,
                    # so every style layer contributes.
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()
        net.source = f"random(seed={seed}, width_mult={width_mult})"
        return net

    @classmethod
    def from_file(cls, path) -> "VGGFeatures":
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        clean = {}
        for k, v in sd.items():
            k = k[len("module."):] if k.startswith("module.") else k
            if not k.startswith("features."):
                continue
            idx = int(k.split(".")[1])
            if idx <= LAYERS["relu4_3"]:
                clean[k] = v
        net = cls(1.0)
        missing, _ = net.load_state_dict(clean, strict=False)
        missing = [m for m in missing if m not in ("mean", "std")]
        if missing:
            raise ValueError(f"{path}: not a torchvision VGG-16 state_dict (missing {missing[:4]})")
        net.source = f"file({path})"
        return net

    def forward(self, x: torch.Tensor, layers=None) -> Dict[str, torch.Tensor]:
        """``x``: RGB in [0, 1]. Returns {layer name: activation}."""
        wanted = {LAYERS[n]: n for n in (layers or LAYERS)}
        last = max(wanted)
        out = {}
        h = (x - self.mean) / self.std
        for i, m in enumerate(self.features):
            h = m(h)
            if i in wanted:
                out[wanted[i]] = h
            if i == last:
                break
        return out


def make_extractor(weights: Optional[str] = None, seed: int = 0,
                   width_mult: float = 0.25) -> VGGFeatures:
    return VGGFeatures.from_file(weights) if weights else VGGFeatures.random(seed, width_mult)


_RANDOM = re.compile(r"random\(seed=(-?\d+), width_mult=([0-9.eE+-]+)\)$")
_FILE = re.compile(r"file\((.+)\)$")


def parse_source(source: str) -> Dict:
    """What a ``VGGFeatures.source`` record (as checkpoints keep it) says the extractor was:
    ``{"seed": int, "width_mult": float}`` for the random fallback, ``{"weights": path}`` for a
    weights file, ``{}`` for no record; a ValueError for anything else."""
    m_rand, m_file = _RANDOM.match(source), _FILE.match(source)
    if m_rand:
        return {"seed": int(m_rand.group(1)), "width_mult": float(m_rand.group(2))}
    if m_file:
        return {"weights": m_file.group(1)}
    if source:
        raise ValueError(f"unknown loss network record {source!r}")
    return {}
