"""Held-out quality of the dense and pruned apps: ``python -m lrapps.quality``.

Writes ``bench/results/quality.md`` and one image grid per app
(``bench/results/quality_<app>.png``), from the shipped checkpoints, on the
held-out images (never trained on) at the centre crops training evaluates
on (``--eval-size``, default 256):

* superres x2: Y-channel PSNR/SSIM (border of ``scale`` pixels cropped) of
  bicubic, dense and pruned against the HR crop, LR = antialiased bicubic
  downscale;
* color: RGB PSNR against the ground truth of the grey input (L with ab = 0),
  the dense and the pruned output, PSNR of pruned against dense, and the
  Hasler-Suesstrunk colourfulness of each;
* style: content loss (relu2_2) and style loss (Gram, relu1_2..relu4_3) of
  the input, dense and pruned outputs, with the extractor the checkpoint was
  trained with (seeded random VGG-16-shaped features unless ``--vgg-weights``).

The budget (issue 5): pruned SR within 0.2 dB of dense PSNR; every other
metric within 2 % of dense (in the direction that matters). It is judged two
ways: against the shipped dense checkpoint (the short run pruning starts
from), and against ``apps/checkpoints/<app>_dense_equal.pt`` when present:
that dense model trained for the pruning recipe's extra steps with nothing
pruned (``python -m lrapps.prune APP --reference``), the fair test of what
pruning itself costs. ``--crops 5`` (or 9) averages each held-out image over
more crops (writes ``quality_crops5.md``; the default report uses the centre
crops, as training and the sweep do).
Quality is measured on the PyTorch models; the lrc-compiled ones match them
to 1e-4 relative (apps/tests, and re-checked by ``make demo``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import data as D
from . import metrics as M
from .features import parse_source

__all__ = ["evaluate", "evaluate_models", "eval_options", "task_for", "eval_crops", "main", "BUDGET", "REFERENCES", "budget_terms", "budget_check",
           "reference_path", "reference_mismatch"]

# (metric, dense vs pruned rule): "db" = absolute dB drop allowed, "rel" = relative
BUDGET = {"superres": [("psnr_y", "db", 0.2)],
          "color": [("psnr_rgb", "rel", 0.02), ("colorfulness", "rel", 0.02)],
          "style": [("style_loss", "rel", 0.02), ("content_loss", "rel", 0.02)]}


def eval_options(app: str, meta: Optional[Dict] = None, config: Optional[Dict] = None) -> List[str]:
    """``python -m lrapps.train`` options that rebuild the evaluation a checkpoint was trained
    for, from what it records: the held-out split of the same data (the built-in images or the
    user's ``--data`` folder), for style the same style image and loss network, for super
    resolution the model's scale. Judging a model on another folder's images or against another
    style would give numbers that look right and mean nothing."""
    meta, config = meta or {}, config or {}
    argv = []
    data = meta.get("data")
    if data and data != "builtin":
        if not Path(data).is_dir():
            raise ValueError(f"the model was trained on --data {data}, which is not a folder here; "
                             "run from where it was trained or give the checkpoint's folder")
        argv += ["--data", str(data)]
    if app == "superres" and "scale" in config:
        argv += ["--scale", str(config["scale"])]
    if app == "style":
        spec = meta.get("style_spec") or meta.get("style_image")
        if spec:
            argv += ["--style-image", str(spec)]
        if "style_size" in meta:
            argv += ["--style-size", str(meta["style_size"])]
        try:
            vgg = parse_source(str(meta.get("vgg", "")))
        except ValueError as e:
            raise ValueError(f"style: {e} in the checkpoint") from None
        if "seed" in vgg:
            argv += ["--vgg-seed", str(vgg["seed"]), "--vgg-width", f"{vgg['width_mult']:g}"]
        elif "weights" in vgg:
            argv += ["--vgg-weights", vgg["weights"]]
    return argv


def _task(app: str, eval_size: int, options: Sequence[str] = ()):
    """The app's task with ``options`` (``eval_options``) on the train defaults."""
    from .train import TASKS, build_parser

    args = build_parser().parse_args([app, "--eval-size", str(eval_size), *options])
    for k, v in TASKS[app].defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return TASKS[app](args)


def task_for(app: str, models: Dict, eval_size: int = 256):
    """The evaluation task every model in ``models`` (name -> model) was trained for; a
    ValueError names the models if they disagree (a pruned model from another folder's data,
    another style image, another scale): they cannot be compared on one set of images."""
    from .train import build_parser

    opts = {}
    for name, m in models.items():
        try:
            opts[name] = eval_options(app, getattr(m, "checkpoint_meta", {}), getattr(m, "config", {}))
        except ValueError as e:
            raise ValueError(f"{app}, the {name} model: {e}") from None
    # compare what the options mean (a record without style_size means the default size)
    distinct = {tuple(sorted(vars(build_parser().parse_args([app, *o])).items())) for o in opts.values()}
    if len(distinct) > 1:
        raise ValueError(f"{app}: the models were trained for different evaluations and cannot be judged "
                         "on the same images: " + "; ".join(f"{n}: {' '.join(o) or 'built-in defaults'}"
                                                          for n, o in opts.items()))
    return _task(app, eval_size, next(iter(opts.values()), ()))


# Positions of the extra crops for --crops: fractions of the free space (0 = top/left, 1 = bottom/right).
CROP_LAYOUTS = {1: [(0.5, 0.5)],
                5: [(0.5, 0.5), (0, 0), (0, 1), (1, 0), (1, 1)],
                9: [(fy, fx) for fy in (0, 0.5, 1) for fx in (0, 0.5, 1)]}

# Model variants evaluated, in table/grid order: (key prefix, grid label).
VARIANTS = (("dense", "dense"), ("equal", "dense, equal steps"), ("pruned", "pruned"))


def eval_crops(task, eval_size: int, crops: int = 1) -> List[Tuple[str, List[torch.Tensor]]]:
    """Per held-out image, its crops: the centre crop training evaluates on (the
    first, always), then ``crops - 1`` more at fixed positions (corners, edges):
    more pixels of the same images, a less noisy mean."""
    if crops not in CROP_LAYOUTS:
        raise ValueError(f"crops must be one of {sorted(CROP_LAYOUTS)}, got {crops}")
    if crops == 1:
        return [(n, [x]) for n, x in task.eval_tensors()]
    out = []
    for name, img in task.heldout_images:
        h, w = img.shape[:2]
        ch = min(eval_size, h) // task.multiple * task.multiple
        cw = min(eval_size, w) // task.multiple * task.multiple
        ts = []
        for fy, fx in CROP_LAYOUTS[crops]:
            y, x = (h - ch) // 2 if fy == 0.5 else round(fy * (h - ch)), \
                (w - cw) // 2 if fx == 0.5 else round(fx * (w - cw))
            ts.append(D.to_tensor(img[y:y + ch, x:x + cw]).unsqueeze(0))
        out.append((name, ts))
    return out


@torch.no_grad()
def _metrics(app: str, task, x: torch.Tensor, models: Dict) -> Tuple[Dict, List]:
    """Metrics of one crop for every model in ``models`` (prefix -> model), and the grid pictures."""
    from .colorspace import lab_to_rgb
    from .models import AB_SCALE

    labels = dict(VARIANTS)
    r = {}
    if app == "superres":
        s = task.scale
        lr = D.bicubic_down(x, s)
        outs = {"bicubic": D.bicubic_up(lr, s), **{k: m(lr).clamp(0, 1) for k, m in models.items()}}
        for k, y in outs.items():
            r[f"{k}_psnr_y"] = M.psnr(y, x, crop_border=s)
            r[f"{k}_ssim_y"] = M.ssim(y, x, crop_border=s)
        # Thumbnails would hide what x2 SR changes: show the central 80x80, enlarged 2x.
        h, w = x.shape[2:]
        y0, x0 = h // 2 - 40, w // 2 - 40

        def zoom(t):
            return t[:, :, y0:y0 + 80, x0:x0 + 80].repeat_interleave(2, 2).repeat_interleave(2, 3)
        pics = ([("bicubic (zoom)", zoom(outs["bicubic"]))]
                + [(f"{labels[k]} (zoom)", zoom(outs[k])) for k in models] + [("HR (zoom)", zoom(x))])
    elif app == "color":
        L, ab, lab = task.split_lab(x)
        outs = {"grey": lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(ab)], 1)),
                **{k: lab_to_rgb(torch.cat([lab[:, :1], m(L) * AB_SCALE], 1)) for k, m in models.items()}}
        for k, y in outs.items():
            r[f"{k}_psnr_rgb"] = M.psnr(y, x, y_channel=False)
            r[f"{k}_colorfulness"] = M.colorfulness(y)
        r["gt_colorfulness"] = M.colorfulness(x)
        for k in models:
            r[f"{k}_colorfulness_err"] = abs(r[f"{k}_colorfulness"] - r["gt_colorfulness"])
        if "pruned" in outs and "dense" in outs:
            r["pruned_vs_dense_psnr_rgb"] = M.psnr(outs["pruned"], outs["dense"], y_channel=False)
        pics = ([("grey input", outs["grey"])] + [(labels[k], outs[k]) for k in models]
                + [("ground truth", x)])
    else:
        outs = {"input": x, **{k: m(x).clamp(0, 1) for k, m in models.items()}}
        for k, y in outs.items():
            c, sl = task._terms(y, x)
            r[f"{k}_content_loss"], r[f"{k}_style_loss"] = float(c), float(sl)
        pics = [("content", x)] + [(labels[k], outs[k]) for k in models] + [("style", task.style)]
    return r, pics


@torch.no_grad()
def evaluate(app: str, dense, pruned, eval_size: int = 256, reference=None,
             crops: int = 1) -> Tuple[List[Dict], List[Tuple[str, List]]]:
    """Per held-out image metrics and the images for the grid: (rows, [(name, [(label, HxWx3)])]).

    ``reference``: the dense-equal-steps model (``python -m lrapps.prune APP
    --reference``), measured as ``equal_*``. ``crops`` > 1: each image's
    metrics are the mean over that many crops (``eval_crops``); the grid
    shows the centre crop."""
    variants = {"dense": dense, **({"equal": reference} if reference is not None else {}), "pruned": pruned}
    return evaluate_models(app, variants, eval_size, crops)


@torch.no_grad()
def evaluate_models(app: str, variants: Dict, eval_size: int = 256,
                    crops: int = 1) -> Tuple[List[Dict], List[Tuple[str, List]]]:
    """``evaluate`` for any models, keyed by their prefix in ``VARIANTS`` (e.g. only
    {"equal": reference}: lrapps.sweep adds the reference to stored results this way;
    the metrics are deterministic, so they equal what a joint evaluation gives)."""
    unknown = set(variants) - {k for k, _ in VARIANTS}
    if unknown:
        raise ValueError(f"unknown model variants {sorted(unknown)}; choose from {[k for k, _ in VARIANTS]}")
    task = task_for(app, variants, eval_size)
    if not task.heldout_images:
        raise ValueError(f"{app}: no held-out images in --data {task.args.data} (a folder needs at least "
                         "2 images for one to be held out)")
    rows, grid = [], []
    for name, xs in eval_crops(task, eval_size, crops):
        per_crop = []
        for i, x in enumerate(xs):
            r, pics = _metrics(app, task, x, variants)
            per_crop.append(r)
            if i == 0:
                grid.append((name, [(lbl, D.to_uint8(t)) for lbl, t in pics]))
        rows.append({"image": name, **{k: float(np.mean([r[k] for r in per_crop])) for k in per_crop[0]}})
    return rows, grid


def mean_row(rows: List[Dict]) -> Dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"}


# What pruned is judged against: prefix in the metric rows -> wording.
REFERENCES = {"dense": "shipped dense", "equal": "dense, equal steps"}


def budget_terms(app: str, mean: Dict, ref: str = "dense") -> List[Dict]:
    """Per budget metric: reference, pruned, how much worse pruned is ("db": dB drop;
    "rel": fraction, negative = better) and whether that is within the budget.

    ``ref``: "dense" (the shipped dense checkpoint) or "equal" (the dense model
    trained for the pruning recipe's extra steps, nothing pruned: the fair test
    of what pruning costs). The reference value is under "dense" either way."""
    if ref not in REFERENCES:
        raise ValueError(f"unknown reference {ref!r}; choose from {sorted(REFERENCES)}")
    out = []
    for metric, rule, tol in BUDGET[app]:
        if f"{ref}_{metric}" not in mean:
            raise KeyError(f"{app}: no {ref}_{metric} in the measured metrics (reference not evaluated?)")
        d, p = mean[f"{ref}_{metric}"], mean[f"pruned_{metric}"]
        if rule == "db":
            worse = d - p
        else:  # losses: lower is better; PSNR and colourfulness: higher is better
            worse = (p - d) / d if metric.endswith("loss") else (d - p) / d
        out.append({"metric": metric, "rule": rule, "tol": tol, "reference": ref, "dense": d, "pruned": p,
                    "worse": worse, "ok": bool(worse <= tol)})
    return out


def budget_check(app: str, mean: Dict, ref: str = "dense") -> Tuple[bool, str]:
    """(all metrics within budget, one line per metric), pruned against ``ref``."""
    terms = budget_terms(app, mean, ref)
    who = REFERENCES[ref]
    texts = []
    for t in terms:
        metric, d, p, worse, tol = t["metric"], t["dense"], t["pruned"], t["worse"], t["tol"]
        if t["rule"] == "db":
            texts.append(f"{metric}: pruned {p:.3f} vs {who} {d:.3f} dB (drop {worse:+.3f} dB, budget {tol} dB)")
        else:
            texts.append(f"{metric}: pruned {p:.4g} vs {who} {d:.4g} ({100 * worse:+.2f} % worse; "
                         f"negative = better; budget {100 * tol:.0f} %)")
    return all(t["ok"] for t in terms), "; ".join(texts)


def save_grid(grid, path, tile: int = 160, title: str = "") -> None:
    """Rows = images, columns = variants; labels on top. Written atomically."""
    from PIL import Image, ImageDraw

    cols = len(grid[0][1])
    pad, head = 4, 16
    W = cols * (tile + pad) + pad
    H = len(grid) * (tile + pad + head) + pad + (head if title else 0)
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = pad
    if title:
        draw.text((pad, y), title, fill=(0, 0, 0))
        y += head
    for name, pics in grid:
        for j, (lbl, img) in enumerate(pics):
            x = pad + j * (tile + pad)
            draw.text((x, y), f"{Path(name).stem}: {lbl}"[:32], fill=(0, 0, 0))
            im = Image.fromarray(img)
            im.thumbnail((tile, tile), Image.LANCZOS)
            canvas.paste(im, (x + (tile - im.width) // 2, y + head + (tile - im.height) // 2))
        y += tile + pad + head
    _atomic_save(canvas, Path(path))


def _publish(path: Path, write) -> None:
    """Atomically create or replace `path`: write(tmp_path) fills a temporary file beside it, which
    then replaces `path` (mode 0644); on any failure the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_save(img, path: Path) -> None:
    from PIL import Image

    # 256-colour palette keeps the committed grids small (~4x) at no visible cost at this size.
    _publish(path, lambda tmp: img.quantize(256, method=Image.Quantize.FASTOCTREE,
                                            dither=Image.Dither.FLOYDSTEINBERG).save(tmp, format="PNG", optimize=True))


def _atomic_write(path: Path, text: str) -> None:
    _publish(path, lambda tmp: Path(tmp).write_text(text))


def _fmt(v):
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _table(rows: List[Dict], cols: List[Tuple[str, str]]) -> List[str]:
    out = ["| image | " + " | ".join(h for h, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows + [dict(mean_row(rows), image="**mean**")]:
        out.append(f"| {Path(r['image']).stem if r['image'] != '**mean**' else r['image']} | "
                   + " | ".join(_fmt(r[k]) for _, k in cols) + " |")
    return out


def _verdict_cell(res: Dict, ref: str) -> Tuple[str, str]:
    if ref not in res["budget"]:
        return "no reference checkpoint (`python -m lrapps.prune APP --reference`)", "n/a"
    ok, text = res["budget"][ref]
    return text, "yes" if ok else "**NO**"


def _change(mean: Dict, metric: str, a: str, b: str) -> str:
    """Signed change of ``metric`` from variant ``a`` to ``b``."""
    x, y = mean[f"{a}_{metric}"], mean[f"{b}_{metric}"]
    return f"{y - x:+.3f} dB" if metric == "psnr_y" else f"{100 * (y - x) / x:+.1f} %"


def report(results: Dict, eval_size: int, seconds: float, crops: int = 1, sources: Optional[str] = None) -> str:
    """``sources``: which checkpoints and images (default: the shipped checkpoints, the built-in images)."""
    sources = sources or "the checkpoints `apps/checkpoints/<app>_{dense,dense_equal,pruned}.pt`"
    where = (f"centre crops of {eval_size} px" if crops == 1 else
             f"{crops} crops of {eval_size} px per image (centre, then corners/edges; per-image values "
             "are means over the crops)")
    L = ["# Quality of the dense and pruned apps on held-out images", "",
         f"Written by `python -m lrapps.quality` (apps/lrapps/quality.py) from {sources}; do not edit by hand.",
         f"Held-out images (never trained on): {where} (rounded down to the "
         "model's multiple). PyTorch fp32 on CPU; the lrc-compiled models match these outputs to 1e-4 "
         f"relative. Host: {platform.machine()}, torch {torch.__version__}; took {seconds:.0f} s.", "",
         "Budget (issue 5): pruned super resolution within 0.2 dB Y-PSNR of dense; coloring PSNR and "
         "colourfulness, style-transfer style and content losses within 2 % of dense.", "",
         "Two references for \"dense\":", "",
         "* **shipped dense** (`<app>_dense.pt`): the dense run the pruned model starts from. The "
         "pruned model gets that model's training *plus* the pruning recipe's ADMM and masked-retraining "
         "steps, so this comparison mixes what pruning costs with what the extra training does.",
         "* **dense, equal steps** (`<app>_dense_equal.pt`, `python -m lrapps.prune APP --reference`): the "
         "shipped dense model trained further with nothing pruned, for exactly the recipe's ADMM + "
         "retraining steps with the same schedule (ADMM-phase Adam lr, then a fresh Adam at the retraining "
         "lr with cosine decay), objective, batch, crop, seed and crop sequence; only the ADMM penalty, "
         "the hard prune and the masks are missing. Pruned and this reference differ only by pruning: "
         "**this is the fair test of what pruning costs**.", "",
         "## Summary", "",
         "| app | pruning | conv MACs dense → pruned (bench size) | pruned vs shipped dense | within budget "
         "| pruned vs dense, equal steps (fair test) | within budget | extra training alone (equal steps vs "
         "shipped dense) |",
         "|---|---|---|---|---|---|---|---|"]
    for app, res in results.items():
        m = res["pruned_meta"]
        macs = (f"{m['macs_dense'] / 1e6:.0f} M → {m['macs_pruned'] / 1e6:.0f} M "
                f"(**{m['mac_reduction']:.2f}x**)") if "macs_dense" in m else "n/a"
        t1, ok1 = _verdict_cell(res, "dense")
        t2, ok2 = _verdict_cell(res, "equal")
        mean = mean_row(res["rows"])
        alone = ("; ".join(f"{metric} {_change(mean, metric, 'dense', 'equal')}" for metric, _, _ in BUDGET[app])
                 if "equal" in res["budget"] else "n/a")
        L.append(f"| {app} | {res['scheme']} | {macs} | {t1} | {ok1} | {t2} | {ok2} | {alone} |")
    for note in (res.get("reference_note") for res in results.values()):
        if note:
            L += ["", note]
    sections = {
        "superres": ("Super resolution x2 (Y channel, border 2 px cropped)",
                     [("bicubic PSNR", "bicubic_psnr_y"), ("dense PSNR", "dense_psnr_y"),
                      ("equal-steps PSNR", "equal_psnr_y"),
                      ("pruned PSNR", "pruned_psnr_y"), ("bicubic SSIM", "bicubic_ssim_y"),
                      ("dense SSIM", "dense_ssim_y"), ("equal-steps SSIM", "equal_ssim_y"),
                      ("pruned SSIM", "pruned_ssim_y")]),
        "color": ("Coloring (RGB PSNR vs ground truth; colourfulness M, 0 = grey)",
                  [("grey PSNR", "grey_psnr_rgb"), ("dense PSNR", "dense_psnr_rgb"),
                   ("equal-steps PSNR", "equal_psnr_rgb"),
                   ("pruned PSNR", "pruned_psnr_rgb"), ("pruned vs dense PSNR", "pruned_vs_dense_psnr_rgb"),
                   ("dense M", "dense_colorfulness"), ("equal-steps M", "equal_colorfulness"),
                   ("pruned M", "pruned_colorfulness"),
                   ("ground-truth M", "gt_colorfulness"), ("dense abs(M - M_gt)", "dense_colorfulness_err"),
                   ("equal-steps abs(M - M_gt)", "equal_colorfulness_err"),
                   ("pruned abs(M - M_gt)", "pruned_colorfulness_err")]),
        "style": ("Style transfer (content loss relu2_2, style loss Gram relu1_2..4_3; lower is better)",
                  [("input content", "input_content_loss"), ("dense content", "dense_content_loss"),
                   ("equal-steps content", "equal_content_loss"),
                   ("pruned content", "pruned_content_loss"), ("input style", "input_style_loss"),
                   ("dense style", "dense_style_loss"), ("equal-steps style", "equal_style_loss"),
                   ("pruned style", "pruned_style_loss")]),
    }
    for app, res in results.items():
        title, cols = sections[app]
        cols = [c for c in cols if c[1] in res["rows"][0]]
        m = res["pruned_meta"]
        L += ["", f"## {title}", "", *_table(res["rows"], cols), "",
              f"Grid: `bench/results/quality_{app}.png` (centre crops). Pruning recipe "
              f"(`python -m lrapps.prune {app}`): `{m.get('recipe')}`; "
              f"ADMM {m.get('admm_seconds', '?')} s + retraining {m.get('retrain_seconds', '?')} s "
              f"on {m.get('threads', '?')} thread(s)."]
        rec = m.get("recipe") or {}
        L.append(f"Training budget: dense {res['dense_meta'].get('steps', '?')} steps; pruned = that dense "
                 f"model + {rec.get('admm_steps', '?')} ADMM + {rec.get('retrain_steps', '?')} masked retraining "
                 "steps on the same objective; dense, equal steps = that dense model + the same "
                 f"{rec.get('admm_steps', '?')} + {rec.get('retrain_steps', '?')} steps, nothing pruned.")
        mean = mean_row(res["rows"])
        if app == "style":
            L.append(f"Loss network: {res['dense_meta'].get('vgg', 'n/a')}; style image "
                     f"{res['dense_meta'].get('style_image', 'n/a')}.")
        if app == "color":
            d, p = mean["dense_colorfulness"], mean["pruned_colorfulness"]
            above = [r["image"] for r in res["rows"] if r["dense_colorfulness"] > r["gt_colorfulness"]]
            L.append(f"Colourfulness pruned vs dense: {100 * (p - d) / d:+.1f} %; distance to the ground "
                     f"truth's colourfulness: dense {mean['dense_colorfulness_err']:.2f}, pruned "
                     f"{mean['pruned_colorfulness_err']:.2f} (a colourfulness *above* the ground truth's"
                     + (f", as dense on {', '.join(above)}," if above else "") + " is not better).")
        if app == "style":
            d, p = mean["dense_content_loss"], mean["pruned_content_loss"]
            L.append(f"Content loss pruned vs dense: {100 * (p - d) / d:+.1f} %.")
        if "equal" in res["budget"]:
            L.append("Against the equal-steps reference: "
                     + "; ".join(f"{metric} pruned {_change(mean, metric, 'equal', 'pruned')}, extra training "
                                 f"alone {_change(mean, metric, 'dense', 'equal')}" for metric, _, _ in BUDGET[app])
                     + f" → {'within' if res['budget']['equal'][0] else '**outside**'} the budget.")
    if crops > 1:
        L += ["", "Grids: the centre crops, as in [quality.md](quality.md)."]
    return "\n".join(L) + "\n"


def reference_path(app: str) -> Path:
    from .inference import checkpoint_dir

    return checkpoint_dir() / f"{app}_dense_equal.pt"


def reference_mismatch(ref_meta: Dict, pruned_meta: Dict, dense_from: str) -> List[str]:
    """Why a reference checkpoint is not the equal-steps twin of the pruned one (empty if it is)."""
    why = []
    if ref_meta.get("reference") != "dense_equal_steps":
        why.append("not made by `python -m lrapps.prune APP --reference`")
    r, p = ref_meta.get("recipe") or {}, pruned_meta.get("recipe") or {}
    for k in ("admm_steps", "retrain_steps", "batch", "crop", "lr", "retrain_lr"):
        if r.get(k) != p.get(k):
            why.append(f"{k} {r.get(k)} vs the pruned run's {p.get(k)}")
    for k in ("seed", "from"):
        if ref_meta.get(k) != pruned_meta.get(k):
            why.append(f"{k} {ref_meta.get(k)!r} vs the pruned run's {pruned_meta.get(k)!r}")
    if pruned_meta.get("from") is not None and pruned_meta.get("from") != dense_from:
        why.append(f"the pruned model starts from {pruned_meta.get('from')}, not {dense_from}")
    # the same path may have held other weights (a dense model retrained in place); checkpoints from
    # before prune recorded fingerprints have none, and only their paths can be compared
    fr, fp = ref_meta.get("from_fingerprint"), pruned_meta.get("from_fingerprint")
    if fr and fp and fr != fp:
        why.append(f"made from other weights at {ref_meta.get('from')} (fingerprint {fr} vs the pruned run's {fp})")
    return why


def main(argv=None) -> int:
    from . import models
    from .inference import checkpoint_path

    p = argparse.ArgumentParser(prog="python -m lrapps.quality", description=__doc__.splitlines()[0])
    p.add_argument("--apps", default="superres,color,style")
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--crops", type=int, default=1, choices=sorted(CROP_LAYOUTS),
                   help="crops per held-out image: 1 = the centre crop (as training evaluates), 5 = centre + "
                        "4 corners, 9 = 3x3 grid; means over more pixels of the same images")
    root = Path(__file__).resolve().parents[2]
    p.add_argument("--out-dir", help="default bench/results (the shipped checkpoints) or out/quality "
                                     "(with --dense / --pruned)")
    p.add_argument("--no-reference", action="store_true",
                   help="ignore apps/checkpoints/<app>_dense_equal.pt (only the shipped-dense verdict)")
    g = p.add_argument_group("your own checkpoints (one app; judged on the held-out split of the data "
                             "they were trained on, e.g. your --data folder)")
    g.add_argument("--dense", metavar="CKPT", help="dense model (default apps/checkpoints/<app>_dense.pt)")
    g.add_argument("--pruned", metavar="CKPT", help="pruned model (default apps/checkpoints/<app>_pruned.pt)")
    g.add_argument("--reference", metavar="CKPT",
                   help="dense, equal-steps reference (python -m lrapps.prune APP --reference --from DENSE)")
    a = p.parse_args(argv)
    apps = [x for x in a.apps.split(",") if x]
    unknown = [x for x in apps if x not in BUDGET]
    if unknown:
        raise SystemExit(f"--apps: unknown app(s) {', '.join(unknown)}; choose from {', '.join(BUDGET)}")
    custom = {k: getattr(a, k) for k in ("dense", "pruned", "reference") if getattr(a, k)}
    if custom:
        if len(apps) != 1:
            raise SystemExit(f"--{next(iter(custom))} names one app's checkpoint: give --apps with that app alone")
        for k, f in custom.items():
            if not Path(f).is_file():
                raise SystemExit(f"--{k} {f}: no such checkpoint")
            c_app = torch.load(f, map_location="cpu", weights_only=True).get("app")
            if c_app != apps[0]:
                raise SystemExit(f"--{k} {f} is a {c_app!r} checkpoint, not {apps[0]!r}")
    torch.set_num_threads(1)
    # the committed report describes the shipped checkpoints: a run on others does not replace it
    out = Path(a.out_dir or (Path("out") / "quality" if custom else root / "bench" / "results"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = {}
    for app in apps:
        dense_file = Path(a.dense) if a.dense else checkpoint_path(app, dense=True)
        dense = models.load(dense_file)
        pruned = models.load(a.pruned or checkpoint_path(app, dense=False))
        ref, note = None, None
        ref_file = Path(a.reference) if a.reference else reference_path(app)
        if not a.no_reference and ref_file.is_file():
            ref = models.load(ref_file)
            # as lrapps.prune records "from": relative to the repository when inside it
            shown = (str(dense_file.resolve().relative_to(root)) if dense_file.resolve().is_relative_to(root)
                     else str(dense_file))
            why = reference_mismatch(ref.checkpoint_meta, pruned.checkpoint_meta, shown)
            if why:
                note = (f"**{app}: `{ref_file.name}` is not the equal-steps twin of the pruned run** ("
                        + "; ".join(why) + "); its verdict is shown but is not the fair test.")
                print(f"{app}: warning: " + "; ".join(why))
        pfp = pruned.checkpoint_meta.get("from_fingerprint")
        if pfp and pfp != models.fingerprint(dense):
            # same path, other weights: the dense model was retrained after the pruned one was made
            warn = (f"**{app}: the pruned model was made from other weights than `{dense_file.name}` holds "
                    f"now** (retrained since? rerun `python -m lrapps.prune {app}`); the comparison below is "
                    "not of a model with its own pruned version.")
            print(f"{app}: warning: the pruned model was made from other dense weights than {dense_file}")
            note = warn + (" " + note if note else "")
        try:
            rows, grid = evaluate(app, dense, pruned, a.eval_size, reference=ref, crops=a.crops)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        mean = mean_row(rows)
        budget = {"dense": budget_check(app, mean, "dense")}
        if ref is not None:
            budget["equal"] = budget_check(app, mean, "equal")
        results[app] = {"rows": rows, "budget": budget, "reference_note": note,
                        "scheme": pruned.checkpoint_meta.get("prune", "?"),
                        "pruned_meta": pruned.checkpoint_meta, "dense_meta": dense.checkpoint_meta}
        if a.crops == 1:  # with more crops the grid (centre crops) would be the same pictures again
            save_grid(grid, out / f"quality_{app}.png", title=f"{app}: held-out images")
        for ref_name, (ok, text) in budget.items():
            print(f"{app} vs {REFERENCES[ref_name]}: {text} -> {'OK' if ok else 'MISSED'}")
    sources = None
    if custom:
        app = apps[0]
        data = results[app]["dense_meta"].get("data", "builtin")
        sources = (", ".join(f"{k} `{f}`" for k, f in custom.items()) + " (the others: the shipped ones), "
                   "held-out images of " + ("the built-in split" if data == "builtin" else f"`{data}`"))
    text = report(results, a.eval_size, time.time() - t0, a.crops, sources)
    sweep = out / "quality_sweep.json"
    if sweep.is_file() and a.crops == 1 and not custom:  # the sweep measured centre crops
        import json
        from .sweep import summary_lines

        text += ("\n## Rate sweep\n\nOther rates (and seeds) than the shipped ones, same recipe otherwise "
                 "(`python -m lrapps.sweep`; table: [quality_sweep.md](quality_sweep.md)):\n\n"
                 + "\n".join(summary_lines(json.loads(sweep.read_text()))) + "\n")
    name = "quality.md" if a.crops == 1 else f"quality_crops{a.crops}.md"
    _atomic_write(out / name, text)
    print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
