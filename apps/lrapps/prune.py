"""ADMM structured pruning of the apps with lrprune: ``python -m lrapps.prune {style,color,superres}``.

Per the seed paper's choice of structure per application:

* style transfer: **column** pruning of every conv (the first and last 7x7
  convs included: at full resolution they are 19 % of the MACs, so leaving
  them dense would cap the cut below 4x);
* coloring and super resolution: **pattern + kernel** pruning of the 3x3
  convs (each kept kernel keeps 4 of 9 taps from an 8-pattern library, and a
  fraction of kernels is removed) and **kernel** (connectivity) pruning of
  the 1x1 convs. Coloring keeps its tiny first/last convs and its global FC
  layers dense; super resolution keeps its 3-channel head and its bicubic
  5x5 skip conv dense.

Then: ADMM (task loss + rho/2 ||W - Z + U||^2, Z/U updated every
``--update-every`` steps, rho growing 1.3x per update), hard prune, masked
retraining with ``pruner.attach(optimizer)``. The objective, data and
held-out evaluation are the app's own (``lrapps.train.Task``), so pruning
optimises exactly what dense training did.

The result goes to ``apps/checkpoints/<app>_pruned.pt`` with the
``lr_sparsity`` structure per layer (see ``lrapps.models``), the recipe and
the held-out metrics of the dense and the pruned model in ``meta``.
Seeded (``--seed``), one thread by default.

``--reference`` prunes nothing: it trains the dense model for the recipe's
ADMM + retraining steps with the same schedule (ADMM-phase Adam lr constant,
then a fresh Adam at the retraining lr with cosine decay), sampler, batch,
crop and seed, and writes ``apps/checkpoints/<app>_dense_equal.pt``: the
"dense, equal steps" reference that ``lrapps.quality`` and ``lrapps.sweep``
judge the pruned model against, so extra training is not credited to (or
blamed on) pruning.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import models
from .features import parse_source

__all__ = ["RECIPES", "Recipe", "SCHEMES", "prune", "prune_config", "admm_prune", "recipe_from_args",
           "recipe_meta", "distill_loss", "main"]

# Names lrprune uses for its sparsity kinds.
SCHEMES = ("filter", "channel", "column", "kernel", "pattern", "pattern+kernel", "irregular")
# Schemes under which --rate-1x1 sets the 1x1 convs' kernel rate apart from --rate (prune_config).
RATE_1X1_SCHEMES = ("pattern", "pattern+kernel", "kernel")


@dataclass
class Recipe:
    """What ``python -m lrapps.prune APP`` does by default.

    ``rate``: the main rule's rate (column rate for style, kernel rate of
    the 3x3 pattern+kernel layers otherwise); ``rate_1x1``: kernel rate of
    the 1x1 convs (pattern pruning cannot apply to them)."""

    scheme: str
    rate: float
    rate_1x1: Optional[float]
    admm_steps: int
    retrain_steps: int
    batch: int
    crop: int
    lr: float
    retrain_lr: float
    rho: float
    update_every: int
    # Knowledge distillation weight (0 = none) and teacher checkpoint (None = the starting model).
    distill: float = 0.0
    teacher: Optional[str] = None
    # Comma-separated layer names (or name prefixes, e.g. "colorize") kept dense on top of the app's own.
    keep_dense: Optional[str] = None


# Step counts keep each app near 10 minutes on one thread of the shared box.
RECIPES: Dict[str, Recipe] = {
    # superres: against the converged 10000-step dense model 0.7 / 0.85 (6.35x fewer MACs) costs
    # ~1 dB (bench/results/quality.md); lower rates: bench/results/quality_sweep.md.
    "superres": Recipe("pattern+kernel", rate=0.7, rate_1x1=0.85, admm_steps=1500, retrain_steps=1800,
                       batch=8, crop=64, lr=5e-4, retrain_lr=5e-4, rho=1e-2, update_every=75),
    "color": Recipe("pattern+kernel", rate=0.55, rate_1x1=0.78, admm_steps=500, retrain_steps=500,
                    batch=8, crop=96, lr=2.5e-4, retrain_lr=2.5e-4, rho=1e-2, update_every=25),
    "style": Recipe("column", rate=0.78, rate_1x1=None, admm_steps=700, retrain_steps=700,
                    batch=4, crop=96, lr=5e-4, retrain_lr=5e-4, rho=1e-2, update_every=30),
}

_DENSE = {
    # Cheap and sensitive: the 1-channel input conv and the 2-channel chroma conv.
    "color": ("low.0.0", "colorize.5"),
    # The 3-channel head, and the skip conv that *is* bicubic interpolation.
    "superres": ("head", "skip.0"),
    "style": (),
}


# Fields added after checkpoints were first recorded, with the value that means "not used".
_OPTIONAL_FIELDS = {"distill": 0.0, "teacher": None, "keep_dense": None}


def recipe_meta(recipe: Recipe) -> Dict:
    """The recipe as checkpoints record it: the optional fields only when used, so a plain run's
    record is the same as before they existed (and runs made before compare equal)."""
    d = asdict(recipe)
    return {k: v for k, v in d.items() if not (k in _OPTIONAL_FIELDS and v == _OPTIONAL_FIELDS[k])}


def distill_loss(task, student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """The app's own output loss between student and teacher outputs: what dense training
    compares the output with, here with the teacher's output as the target."""
    if task.app == "superres" or (task.app == "color" and getattr(task.args, "loss", "l2") == "l1"):
        return F.l1_loss(student_out, teacher_out)
    return F.mse_loss(student_out, teacher_out)


class _Distiller:
    """Records the model's input and output while ``task.loss`` runs (a forward hook, so every
    task's loss works unchanged) and scores the output against the frozen teacher's."""

    def __init__(self, task, model: nn.Module, teacher: nn.Module, weight: float):
        self.task, self.teacher, self.weight = task, teacher, weight
        self.seen = []
        self.handle = model.register_forward_hook(lambda m, inp, out: self.seen.append((inp, out)))

    def __call__(self) -> torch.Tensor:
        if len(self.seen) != 1:
            raise RuntimeError(f"distillation: the {self.task.app} loss called the model {len(self.seen)} "
                               "times per step; expected once")
        inp, out = self.seen.pop()
        with torch.no_grad():
            target = self.teacher(*inp)
        if target.shape != out.shape:
            raise ValueError(f"distillation: the teacher's output {tuple(target.shape)} does not match the "
                             f"{self.task.app} model's {tuple(out.shape)} (another scale or head?)")
        return self.weight * distill_loss(self.task, out, target)

    def remove(self):
        self.handle.remove()


def _kept(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def prune_config(app: str, model: nn.Module, scheme: str, rate: float, rate_1x1: Optional[float],
                 rho: float = 1e-2, update_every: int = 50, keep_dense: Optional[str] = None):
    """An lrprune ``PruneConfig`` naming every layer of ``model`` exactly. ``keep_dense``:
    comma-separated layer names or prefixes (``colorize`` = every layer under it) left dense."""
    import lrprune

    if scheme not in SCHEMES:
        raise ValueError(f"unknown pruning scheme {scheme!r}; choose from {SCHEMES}")
    named = lrprune.prunable_layers(model)
    keep = [p.strip() for p in (keep_dense or "").split(",") if p.strip()]
    unknown = [p for p in keep if not any(_kept(n, [p]) for n, _ in named)]
    if unknown:
        raise ValueError(f"keep_dense: no prunable layer is named {', '.join(unknown)} or lies under it; "
                         f"the {app} model's are {', '.join(n for n, _ in named)}")
    layers = {}
    for name, m in named:
        if name in _DENSE.get(app, ()) or _kept(name, keep) or isinstance(m, nn.Linear):
            layers[name] = None
            continue
        one_by_one = tuple(m.weight.shape[2:]) == (1, 1)
        if one_by_one and scheme in ("pattern", "pattern+kernel"):
            layers[name] = None if rate_1x1 is None else ("kernel", rate_1x1)
        elif one_by_one and scheme == "kernel" and rate_1x1 is not None:
            # --rate-1x1 sets the 1x1 convs apart here too, so that e.g. connectivity pruning of
            # the 1x1 convs alone (rate 0 on the 3x3 convs) can be asked for
            layers[name] = ("kernel", rate_1x1)
        elif scheme == "pattern":
            layers[name] = ("pattern", None)
        else:
            layers[name] = (scheme, rate)
    return lrprune.PruneConfig(layers=layers, default=None, skip_first=False, skip_last=False,
                               rho=rho, rho_factor=1.3, rho_max=1.0, admm_interval=update_every)


def _cosine(opt, steps):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(steps, 1))))


def _loop(task, model, opt, sched, sampler, steps, batch, desc, progress, pruner=None, admm=False,
          distiller=None):
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc=desc, dynamic_ncols=True)
    model.train()
    losses = []
    for _ in range(steps):
        x = sampler.sample(batch)
        loss, logs = task.loss(model, x)
        total = pruner.loss(loss) if admm else loss
        if distiller is not None:
            kd = distiller()
            total = total + kd
            logs["kd"] = kd.item()
        opt.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if sched is not None:
            sched.step()
        if admm:
            res = pruner.step()
            if res is not None:
                logs["resid"] = pruner.max_residual()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
    if bar is not None:
        bar.close()
    model.eval()
    return losses


def _two_phases(task, model: nn.Module, recipe: Recipe, seed: int, progress: bool, names, pruner=None,
                teacher: Optional[nn.Module] = None) -> Dict:
    """The schedule both a pruning run and its fair reference train with, so that they cannot drift
    apart: one sampler (the same crops in the same order); Adam at ``recipe.lr`` constant for
    ``admm_steps``; then a fresh Adam at ``recipe.retrain_lr`` with cosine decay for
    ``retrain_steps``. With ``pruner``: the first phase adds the ADMM penalty, the pruner
    hard-prunes between the phases and masks the second. With ``teacher``: both phases add
    ``recipe.distill`` x the distillation loss. ``names``: progress labels of the phases."""
    sampler = task.sampler(seed)
    distiller = _Distiller(task, model, teacher, recipe.distill) if teacher is not None else None
    log = {}
    t0 = time.time()
    if recipe.admm_steps:
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        losses = _loop(task, model, opt, None, sampler, recipe.admm_steps, recipe.batch, names[0], progress,
                       pruner, admm=pruner is not None, distiller=distiller)
        log["admm_final_loss"] = float(np.mean(losses[-20:]))
        if pruner is not None:
            log["admm_max_residual"] = pruner.max_residual()
    log["admm_seconds"] = round(time.time() - t0, 1)
    if pruner is not None:
        pruner.hard_prune()
    t1 = time.time()
    if recipe.retrain_steps:
        opt = torch.optim.Adam(model.parameters(), lr=recipe.retrain_lr)
        handle = pruner.attach(opt) if pruner is not None else None
        losses = _loop(task, model, opt, _cosine(opt, recipe.retrain_steps), sampler,
                       recipe.retrain_steps, recipe.batch, names[1], progress, distiller=distiller)
        if handle is not None:
            handle.remove()
        log["retrain_final_loss"] = float(np.mean(losses[-20:]))
    log["retrain_seconds"] = round(time.time() - t1, 1)
    if distiller is not None:
        distiller.remove()
    return log


def admm_prune(task, model: nn.Module, recipe: Recipe, seed: int = 0, progress: bool = True,
               teacher: Optional[nn.Module] = None):
    """ADMM, hard prune, masked retraining, in place. Returns (pruner, log dict).

    ``recipe.distill`` > 0: distil from ``teacher`` (default: a frozen copy of ``model`` as it is
    now, i.e. the dense model before pruning)."""
    import lrprune

    if recipe.distill < 0 or not math.isfinite(recipe.distill):
        raise ValueError(f"distill weight must be >= 0, got {recipe.distill}")
    if recipe.distill > 0:
        teacher = copy.deepcopy(model) if teacher is None else teacher
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    else:
        teacher = None
    cfg = prune_config(task.app, model, recipe.scheme, recipe.rate, recipe.rate_1x1,
                       recipe.rho, recipe.update_every, recipe.keep_dense)
    pruner = lrprune.ADMMPruner(model, cfg)
    log = _two_phases(task, model, recipe, seed, progress, (f"admm {task.app}", f"retrain {task.app}"), pruner,
                      teacher)
    pruner.apply_masks()
    pruner.remove()  # hooks only; weights and lr_sparsity stay
    return pruner, log


def equal_steps_reference(task, model: nn.Module, recipe: Recipe, seed: int = 0, progress: bool = True):
    """The fair dense reference for a pruning run, in place: ``admm_prune``'s schedule
    (``_two_phases``) with nothing pruned: only the ADMM penalty, the hard prune and the masks are
    left out. Returns a log dict."""
    return _two_phases(task, model, recipe, seed, progress,
                       (f"reference {task.app} (ADMM-phase schedule)", f"reference {task.app} (retrain schedule)"))


def prune(task, model, scheme: str, steps: int, args):
    """``python -m lrapps.train APP --prune SCHEME --from CKPT``: the app's
    recipe with ``scheme`` and ``steps`` (split evenly between ADMM and
    retraining) substituted."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown pruning scheme {scheme!r}; choose from {SCHEMES}")
    r = RECIPES[task.app]
    half = max(steps // 2, 1)
    recipe = Recipe(**{**asdict(r), "scheme": scheme, "admm_steps": half, "retrain_steps": steps - half,
                       "batch": args.batch, "crop": args.crop})
    admm_prune(task, model, recipe, seed=args.seed, progress=not args.no_progress)
    return model


def conv_macs(model: nn.Module, app: str) -> Dict[str, float]:
    """Dense and pruned conv/linear MACs at the app's benchmark size."""
    import lrprune

    rep = lrprune.report_of(model, models.example_input(app))
    return {"macs_dense": float(rep.macs_dense), "macs_pruned": float(rep.macs_pruned),
            "mac_reduction": float(rep.macs_dense) / max(float(rep.macs_pruned), 1.0)}


def build_parser() -> argparse.ArgumentParser:
    from .train import build_parser as train_parser

    p = train_parser()
    p.prog = "python -m lrapps.prune"
    p.description = __doc__
    g = p.add_argument_group("pruning (defaults: lrapps.prune.RECIPES)")
    g.add_argument("--scheme", choices=SCHEMES)
    g.add_argument("--rate", type=float, help="main rate (column rate for style; 3x3 kernel rate otherwise)")
    g.add_argument("--rate-1x1", type=float,
                   help="kernel rate of the 1x1 convs (pattern, pattern+kernel and kernel schemes)")
    g.add_argument("--admm-steps", type=int)
    g.add_argument("--retrain-steps", type=int)
    g.add_argument("--retrain-lr", type=float)
    g.add_argument("--rho", type=float, help="initial ADMM penalty")
    g.add_argument("--update-every", type=int, help="steps between ADMM Z/U updates")
    g.add_argument("--distill", type=float, metavar="W",
                   help="knowledge distillation: add W x the app's output loss against a frozen teacher's "
                        "output during ADMM and retraining (default 0: none)")
    g.add_argument("--teacher", metavar="CKPT",
                   help="teacher for --distill (default: the dense model the run starts from)")
    g.add_argument("--keep-dense", metavar="LAYERS",
                   help="comma-separated layer names or prefixes left dense besides the app's own, e.g. "
                        "colorize,fusion (every layer under colorize, and fusion)")
    g.add_argument("--reference", action="store_true",
                   help="prune nothing: train the dense model with the recipe's exact schedule (ADMM-phase "
                        "steps and lr, then retraining steps and lr), the fair 'dense, equal steps' "
                        "reference; default --out apps/checkpoints/<app>_dense_equal.pt")
    return p


def _shown_path(path) -> str:
    """A path as checkpoints record it (like ``from``): relative to the repository when inside it,
    so the record does not depend on where the checkout lives."""
    root = Path(__file__).resolve().parents[2]
    p = Path(path).resolve()
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(path)


def recipe_from_args(args) -> Recipe:
    """The app's recipe with the options given on the command line substituted
    (lrapps.sweep uses it to tell whether a checkpoint was made by this recipe)."""
    over = {"scheme": args.scheme, "rate": args.rate, "rate_1x1": args.rate_1x1,
            "admm_steps": args.admm_steps, "retrain_steps": args.retrain_steps, "batch": args.batch,
            "crop": args.crop, "lr": args.lr, "retrain_lr": args.retrain_lr, "rho": args.rho,
            "update_every": args.update_every, "distill": args.distill, "keep_dense": args.keep_dense,
            "teacher": _shown_path(args.teacher) if args.teacher else None}
    return Recipe(**{**asdict(RECIPES[args.app]), **{k: v for k, v in over.items() if v is not None}})


def main(argv=None) -> Dict:
    from .train import TASKS, default_out

    args = build_parser().parse_args(argv)
    if args.prune:
        raise SystemExit("use --scheme with python -m lrapps.prune (--prune belongs to lrapps.train)")
    recipe = recipe_from_args(args)
    if args.reference and (recipe.distill or recipe.teacher):
        raise SystemExit("--reference trains the dense model alone: --distill/--teacher do not apply (a "
                         "distilled run's fair reference is the plain --reference run)")
    if recipe.distill < 0 or not math.isfinite(recipe.distill):
        raise SystemExit(f"--distill must be a finite weight >= 0, got {recipe.distill}")
    if recipe.teacher and not recipe.distill:
        raise SystemExit("--teacher needs --distill W with W > 0")
    if args.rate_1x1 is not None and recipe.scheme not in RATE_1X1_SCHEMES:
        # prune_config gives the 1x1 convs their own rate only under these schemes; the others
        # prune them at --rate, so the option would be silently ignored
        raise SystemExit(f"--rate-1x1 applies to the {', '.join(RATE_1X1_SCHEMES)} schemes only; --scheme "
                         f"{recipe.scheme} prunes the 1x1 convs at --rate")
    args.batch, args.crop, args.lr = recipe.batch, recipe.crop, recipe.lr
    args.steps = recipe.admm_steps + recipe.retrain_steps

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    src = Path(args.from_ckpt) if args.from_ckpt else default_out(args.app, None, args.scale)
    if not src.is_file():
        raise SystemExit(f"{src}: no dense checkpoint; train one first (python -m lrapps.train {args.app})")
    model = models.load(src)
    if model.checkpoint_meta.get("app", args.app) != args.app:
        raise SystemExit(f"{src} is not a {args.app} checkpoint")
    if args.app == "style" and args.vgg_seed is None and args.vgg_weights is None:
        # prune against the random loss network the dense model was trained with: --seed then only
        # changes the crops (a seed's own ADMM run and reference), not the objective
        try:
            args.vgg_seed = parse_source(str(model.checkpoint_meta.get("vgg", ""))).get("seed")
        except ValueError as e:
            raise SystemExit(f"style: {src}: {e}") from None
    task = TASKS[args.app](args)
    if args.app == "style":
        meta = model.checkpoint_meta
        for key, mine in (("vgg", task.vgg.source), ("style_image", task.style_name)):
            if meta.get(key) is not None and meta[key] != mine:
                raise SystemExit(f"style: {src} was trained with {key} {meta[key]}, this run would prune with "
                                 f"{mine}: pruning must keep the objective the dense model was trained on "
                                 "(--vgg-seed / --vgg-width / --vgg-weights / --style-image)")
    from_fingerprint = models.fingerprint(model)
    tag = "_dense_equal" if args.reference else "_pruned"
    out = Path(args.out) if args.out else src.with_name(src.name.replace("_dense", tag)
                                                         if "_dense" in src.name else f"{args.app}{tag}.pt")
    if out.resolve() == src.resolve():
        raise SystemExit(f"--out {out} would overwrite the dense checkpoint it starts from")

    teacher = None
    if recipe.teacher:
        tpath = Path(args.teacher)  # as given; the recipe records it repository-relative
        if not tpath.is_file():
            raise SystemExit(f"--teacher {tpath}: no such checkpoint")
        t_app = torch.load(tpath, map_location="cpu", weights_only=True).get("app")
        if t_app != args.app:
            raise SystemExit(f"--teacher {tpath} is not a {args.app} checkpoint (app {t_app!r})")
        teacher = models.load(tpath)
    dense_metrics = task.evaluate(model) if task.heldout_images else {}
    if args.reference:
        log = equal_steps_reference(task, model, recipe, seed=args.seed, progress=not args.no_progress)
    else:
        _, log = admm_prune(task, model, recipe, seed=args.seed, progress=not args.no_progress, teacher=teacher)
    metrics = task.evaluate(model) if task.heldout_images else {}
    macs = conv_macs(model, args.app)

    root = Path(__file__).resolve().parents[2]
    shown = src.resolve().relative_to(root) if src.resolve().is_relative_to(root) else src
    meta = {"app": args.app, "from": str(shown), "from_fingerprint": from_fingerprint,
            "prune": None if args.reference else recipe.scheme,
            "recipe": recipe_meta(recipe), "seed": args.seed, "threads": args.threads,
            "data": args.data or "builtin", **log, **macs,
            "heldout": [n for n, _ in task.heldout_images], "dense_metrics": dense_metrics,
            "metrics": metrics, **task.meta()}
    if args.reference:
        # Steps on top of the dense checkpoint, as for a pruned model; "steps" = total
        # from scratch so the reference reads like a (longer) dense run.
        src_steps = model.checkpoint_meta.get("steps")
        meta.update({"reference": "dense_equal_steps", "extra_steps": args.steps,
                     "steps": src_steps + args.steps if isinstance(src_steps, int) else None,
                     "dense_steps": src_steps})
    out.parent.mkdir(parents=True, exist_ok=True)
    models.save(out, model, args.app, meta)
    if args.reference:
        print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB): dense reference, {args.steps} extra steps, "
              "nothing pruned")
    else:
        print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB); conv MACs {macs['macs_dense'] / 1e6:.0f}M -> "
              f"{macs['macs_pruned'] / 1e6:.0f}M ({macs['mac_reduction']:.2f}x)")
    print("held-out dense: ", json.dumps({k: round(v, 4) for k, v in dense_metrics.items()}))
    print("held-out reference:" if args.reference else "held-out pruned:", json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    if args.samples:
        from .train import _write_samples
        _write_samples(task, model, Path(args.samples))
    return meta


if __name__ == "__main__":
    main()
