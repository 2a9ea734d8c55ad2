"""Shared by the pruning-run tests (test_reference.py, test_distill.py): tiny models, a recipe short
enough for a test, and a sampler wrapper that records which crops a training phase saw."""
from __future__ import annotations

import torch

from lrapps import models

TINY_SR = {"feats": 8, "blocks": 1, "expand": 2, "low_rank": 6}
TINY_COLOR = {"width": 1, "global_width": 0.5}
# Recipe overrides shared by the pruned runs and their references (so they are twins).
FAST = ["--admm-steps", "3", "--retrain-steps", "2", "--update-every", "1", "--crop", "32", "--batch", "2",
        "--eval-size", "32", "--no-progress"]


def save_dense(path, app, cfg, seed=0):
    """A tiny untrained dense checkpoint of `app` at `path`, seeded."""
    torch.manual_seed(seed)
    models.save(path, models.build(app, **cfg), app, {"steps": 7})
    return path


class CropRecorder:
    """Stands in for a training sampler: passes its crops on and keeps the sum of each (rounded), so
    that two runs can be checked to have trained on the same crops in the same order."""

    def __init__(self, sampler):
        self.sampler, self.crops = sampler, []

    def sample(self, b):
        x = self.sampler.sample(b)
        self.crops.append(round(float(x.double().sum()), 6))
        return x
