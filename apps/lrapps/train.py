"""Train the apps: ``python -m lrapps.train {style,color,superres} [options]``.

Defaults are a CPU run (minutes on one thread; superres about 15) that produces
``apps/checkpoints/<app>_dense.pt``; raise ``--steps``/``--crop``/
``--threads`` for real quality. Everything is seeded (``--seed``), so a
rerun with the same arguments and thread count gives the same checkpoint.

* superres: L1 between the net's output on antialiased-bicubic
  downscaled crops and the original crops.
* color: L2 (or ``--loss l1``) on Lab ab / 110 from the L channel.
* style: content (relu2_2) + Gram style (relu1_2..relu4_3) losses from a
  VGG-16-shaped extractor: ``--vgg-weights FILE`` if you have torchvision
  VGG-16 weights, else seeded random features (lrapps.features).

``--from CKPT`` starts from a checkpoint; ``--prune SCHEME`` (with
``--from``) prunes it with lrprune using the app's recipe and ``--steps``
split between ADMM and masked retraining (``python -m lrapps.prune APP``
is the full pruning CLI that made the shipped ``<app>_pruned.pt``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as D
from . import metrics as M
from . import models
from .colorspace import lab_to_rgb, rgb_to_lab
from .features import CONTENT_LAYER, LAYERS, make_extractor
from .models import AB_SCALE

__all__ = ["Task", "SuperResTask", "ColorTask", "StyleTask", "TASKS", "fit", "main",
           "default_out"]


def _pkg_checkpoint_dir() -> Path:
    apps_dir = Path(__file__).resolve().parents[1]
    # Inside the source tree (pip install -e apps) write next to the package;
    # from a regular install fall back to the working directory.
    if (apps_dir / "pyproject.toml").is_file():
        return apps_dir / "checkpoints"
    return Path("checkpoints")


def default_out(app: str, prune: Optional[str] = None, scale: int = 2) -> Path:
    tag = "dense" if prune is None else prune.replace("+", "_")
    name = app if app != "superres" or scale == 2 else f"superres_x{scale}"
    return _pkg_checkpoint_dir() / f"{name}_{tag}.pt"


class Task:
    """One app's objective, data and evaluation, independent of the loop
    that drives it (dense training here, ADMM pruning in lrapps.prune)."""

    app = ""
    defaults: Dict = {}

    def __init__(self, args):
        self.args = args
        self.multiple = 1
        exclude = self.excluded_images()
        self.train_images = D.get_images("train", args.data, exclude=exclude)
        self.heldout_images = D.get_images("heldout", args.data, exclude=exclude)
        if not self.train_images:
            raise SystemExit("no training images")

    def excluded_images(self) -> Tuple[str, ...]:
        return ()

    def model_config(self) -> Dict:
        return json.loads(self.args.model_config) if self.args.model_config else {}

    def build_model(self) -> nn.Module:
        return models.build(self.app, **self.model_config())

    def sampler(self, seed: int) -> D.CropSampler:
        return D.CropSampler(self.train_images, self.args.crop, seed=seed)

    def loss(self, model, batch) -> Tuple[torch.Tensor, Dict[str, float]]:
        raise NotImplementedError

    def eval_tensors(self) -> List[Tuple[str, torch.Tensor]]:
        size = self.args.eval_size
        return [(n, D.to_tensor(D.center_crop(img, size, self.multiple)).unsqueeze(0))
                for n, img in self.heldout_images]

    @torch.no_grad()
    def evaluate(self, model) -> Dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def render(self, model, x: torch.Tensor) -> torch.Tensor:
        """Model output as an RGB image in [0, 1] for --samples."""
        raise NotImplementedError

    def meta(self) -> Dict:
        return {}


def _mean_dicts(ds: List[Dict[str, float]]) -> Dict[str, float]:
    if not ds:
        return {}
    return {k: float(np.mean([d[k] for d in ds])) for k in ds[0]}


class SuperResTask(Task):
    app = "superres"
    defaults = {"steps": 10000, "batch": 8, "crop": 64, "lr": 1e-3}

    def __init__(self, args):
        super().__init__(args)
        self.scale = args.scale
        self.multiple = self.scale
        if args.crop % self.scale:
            raise SystemExit(f"--crop must be a multiple of the scale ({self.scale})")

    def model_config(self):
        return {"scale": self.scale, **super().model_config()}

    def loss(self, model, hr):
        lr = D.bicubic_down(hr, self.scale)
        loss = F.l1_loss(model(lr), hr)
        return loss, {"l1": loss.item()}

    @torch.no_grad()
    def evaluate(self, model):
        s, rows = self.scale, []
        for _, hr in self.eval_tensors():
            lr = D.bicubic_down(hr, s)
            sr = model(lr).clamp(0, 1)
            bic = D.bicubic_up(lr, s)
            rows.append({"psnr_y": M.psnr(sr, hr, crop_border=s),
                         "ssim_y": M.ssim(sr, hr, crop_border=s),
                         "bicubic_psnr_y": M.psnr(bic, hr, crop_border=s),
                         "bicubic_ssim_y": M.ssim(bic, hr, crop_border=s)})
        return _mean_dicts(rows)

    @torch.no_grad()
    def render(self, model, hr):
        return model(D.bicubic_down(hr, self.scale)).clamp(0, 1)


class ColorTask(Task):
    app = "color"
    defaults = {"steps": 400, "batch": 8, "crop": 96, "lr": 5e-4}

    def __init__(self, args):
        super().__init__(args)
        # Stride-2 convs round odd sides up and the decoder upsamples by exact
        # 2x, so sides must divide by the deepest stride (8 for feature_stride=8).
        self.multiple = 8

    @staticmethod
    def split_lab(rgb):
        lab = rgb_to_lab(rgb)
        return lab[:, :1] / 100.0, lab[:, 1:] / AB_SCALE, lab

    def loss(self, model, rgb):
        x, ab, _ = self.split_lab(rgb)
        pred = model(x)
        loss = F.l1_loss(pred, ab) if self.args.loss == "l1" else F.mse_loss(pred, ab)
        return loss, {self.args.loss: loss.item()}

    @torch.no_grad()
    def evaluate(self, model):
        rows = []
        for _, rgb in self.eval_tensors():
            x, ab, lab = self.split_lab(rgb)
            out = lab_to_rgb(torch.cat([lab[:, :1], model(x) * AB_SCALE], 1))
            gray = lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(ab)], 1))
            rows.append({"psnr_rgb": M.psnr(out, rgb, y_channel=False),
                         "gray_psnr_rgb": M.psnr(gray, rgb, y_channel=False),
                         "colorfulness": M.colorfulness(out),
                         "gt_colorfulness": M.colorfulness(rgb)})
        return _mean_dicts(rows)

    @torch.no_grad()
    def render(self, model, rgb):
        x, _, lab = self.split_lab(rgb)
        return lab_to_rgb(torch.cat([lab[:, :1], model(x) * AB_SCALE], 1))


class StyleTask(Task):
    app = "style"
    defaults = {"steps": 500, "batch": 4, "crop": 96, "lr": 1e-3}

    def excluded_images(self):
        return (self.args.style_image,)

    def __init__(self, args):
        super().__init__(args)
        self.multiple = 4
        vgg_seed = args.seed if getattr(args, "vgg_seed", None) is None else args.vgg_seed
        self.vgg = make_extractor(args.vgg_weights, seed=vgg_seed, width_mult=args.vgg_width)
        name, img = D.resolve_style_image(args.style_image)
        self.style_name = name
        style = D.to_tensor(img).unsqueeze(0)
        h, w = style.shape[2:]
        k = args.style_size / min(h, w)
        style = F.interpolate(style, size=(round(h * k), round(w * k)), mode="bilinear",
                              antialias=True, align_corners=False)
        self.style = style.clamp(0, 1)
        with torch.no_grad():
            self.style_grams = {n: M.gram(f) for n, f in self.vgg(self.style).items()}

    def _terms(self, out, content):
        with torch.no_grad():
            target = self.vgg(content, [CONTENT_LAYER])[CONTENT_LAYER]
        feats = self.vgg(out)
        c = M.content_loss(feats[CONTENT_LAYER], target)
        s = M.style_loss(feats, self.style_grams)
        return c, s

    def loss(self, model, content):
        out = model(content)
        c, s = self._terms(out, content)
        a = self.args
        loss = a.content_weight * c + a.style_weight * s
        return loss, {"content": c.item(), "style": s.item()}

    @torch.no_grad()
    def evaluate(self, model):
        rows = []
        for _, x in self.eval_tensors():
            c, s = self._terms(model(x).clamp(0, 1), x)
            _, s0 = self._terms(x, x)
            rows.append({"content_loss": c.item(), "style_loss": s.item(),
                         "input_style_loss": s0.item()})
        return _mean_dicts(rows)

    @torch.no_grad()
    def render(self, model, x):
        return model(x).clamp(0, 1)

    def meta(self):
        # style_image is for reading; style_spec (as given: a built-in name or a path) is what
        # lets lrapps.quality rebuild the same style target to judge the model on.
        return {"style_image": self.style_name, "style_spec": self.args.style_image, "vgg": self.vgg.source,
                "style_size": self.args.style_size,
                "content_weight": self.args.content_weight,
                "style_weight": self.args.style_weight}


TASKS = {"superres": SuperResTask, "color": ColorTask, "style": StyleTask}


def fit(task: Task, model: nn.Module, steps: int, batch: int, lr: float, seed: int,
        progress: bool = True) -> List[float]:
    """Adam with cosine decay; returns the per-step losses."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(steps, 1))))
    sampler = task.sampler(seed)
    model.train()
    losses: List[float] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc=f"train {task.app}", dynamic_ncols=True)
    for _ in range(steps):
        x = sampler.sample(batch)
        loss, logs = task.loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # Short CPU runs use a high LR; clipping keeps the first steps of
        # the style loss (large Gram mismatch) from blowing up.
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
    if bar is not None:
        bar.close()
    model.eval()
    return losses


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lrapps.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("app", choices=sorted(TASKS))
    g = p.add_argument_group("run")
    g.add_argument("--steps", type=int, help="optimiser steps (per-app default)")
    g.add_argument("--batch", type=int)
    g.add_argument("--crop", type=int, help="training crop side (HR side for superres)")
    g.add_argument("--lr", type=float)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    g.add_argument("--data", metavar="DIR", help="train on your own PNG/JPEG folder")
    g.add_argument("--out", metavar="PATH", help="checkpoint path (default apps/checkpoints/<app>_dense.pt)")
    g.add_argument("--from", dest="from_ckpt", metavar="CKPT", help="start from this checkpoint")
    g.add_argument("--prune", metavar="SCHEME",
                   help="prune the --from model with lrprune (e.g. pattern+kernel); see python -m lrapps.prune")
    g.add_argument("--model-config", metavar="JSON", help="constructor kwargs, e.g. '{\"blocks\": 4}'")
    g.add_argument("--eval-size", type=int, default=256, help="held-out centre-crop side")
    g.add_argument("--samples", metavar="DIR", help="write held-out outputs as PNGs here")
    g.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("superres")
    g.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    g = p.add_argument_group("color")
    g.add_argument("--loss", choices=("l2", "l1"), default="l2")
    g = p.add_argument_group("style")
    g.add_argument("--style-image", default="immunohistochemistry",
                   help="built-in image name or a PNG/JPEG path")
    g.add_argument("--style-size", type=int, default=256, help="style image short side")
    g.add_argument("--vgg-weights", metavar="FILE", help="torchvision VGG-16 state_dict")
    g.add_argument("--vgg-width", type=float, default=0.25,
                   help="width of the random fallback extractor (x VGG-16)")
    g.add_argument("--vgg-seed", type=int,
                   help="seed of the random fallback extractor (default: --seed when training; when pruning, "
                        "the dense model's, so that other --seed values change only the crops)")
    g.add_argument("--content-weight", type=float, default=1.0)
    g.add_argument("--style-weight", type=float, default=5.0)
    return p


def main(argv=None) -> Dict:
    args = build_parser().parse_args(argv)
    cls = TASKS[args.app]
    for k, v in cls.defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    task = cls(args)
    if args.from_ckpt:
        model = models.load(args.from_ckpt)
        if model.checkpoint_meta.get("app", args.app) != args.app:
            raise SystemExit(f"{args.from_ckpt} is not a {args.app} checkpoint")
    else:
        if args.prune:
            raise SystemExit("--prune needs --from CKPT (a dense checkpoint)")
        model = task.build_model()
    out = Path(args.out) if args.out else default_out(args.app, args.prune, args.scale)

    t0 = time.time()
    if args.prune:
        from .prune import prune
        model = prune(task, model, args.prune, args.steps, args)
        losses: List[float] = []
    else:
        losses = fit(task, model, args.steps, args.batch, args.lr, args.seed,
                     progress=not args.no_progress)
    train_s = time.time() - t0
    metrics = task.evaluate(model) if task.heldout_images else {}

    meta = {"app": args.app, "steps": args.steps, "batch": args.batch, "crop": args.crop,
            "lr": args.lr, "seed": args.seed, "threads": args.threads,
            "data": args.data or "builtin", "from": args.from_ckpt, "prune": args.prune,
            "train_seconds": round(train_s, 1),
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "heldout": [n for n, _ in task.heldout_images], "metrics": metrics, **task.meta()}
    out.parent.mkdir(parents=True, exist_ok=True)
    models.save(out, model, args.app, meta)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) after {train_s:.0f}s")
    print("held-out metrics:", json.dumps({k: round(v, 4) for k, v in metrics.items()})
          if metrics else "none (no held-out images)")

    if args.samples:
        _write_samples(task, model, Path(args.samples))
    return meta


def _write_samples(task: Task, model: nn.Module, folder: Path) -> None:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in task.eval_tensors():
        stem = Path(name).stem
        Image.fromarray(D.to_uint8(task.render(model, x))).save(folder / f"{task.app}_{stem}.png")
        Image.fromarray(D.to_uint8(x)).save(folder / f"{task.app}_{stem}_input.png")


if __name__ == "__main__":
    main()
