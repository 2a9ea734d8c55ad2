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
metric within 2 % of dense (in the direction that matters).
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
from typing import Dict, List, Tuple

import numpy as np
import torch

from . import data as D
from . import metrics as M
from .inference import checkpoint_path

__all__ = ["evaluate", "main", "BUDGET", "budget_terms", "budget_check"]

# (metric, dense vs pruned rule): "db" = absolute dB drop allowed, "rel" = relative
BUDGET = {"superres": [("psnr_y", "db", 0.2)],
          "color": [("psnr_rgb", "rel", 0.02), ("colorfulness", "rel", 0.02)],
          "style": [("style_loss", "rel", 0.02), ("content_loss", "rel", 0.02)]}


def _task(app: str, eval_size: int):
    from .train import TASKS, build_parser

    args = build_parser().parse_args([app, "--eval-size", str(eval_size)])
    for k, v in TASKS[app].defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return TASKS[app](args)


@torch.no_grad()
def evaluate(app: str, dense, pruned, eval_size: int = 256) -> Tuple[List[Dict], List[Tuple[str, List]]]:
    """Per held-out image metrics and the images for the grid: (rows, [(name, [(label, HxWx3)])])."""
    from .colorspace import lab_to_rgb
    from .models import AB_SCALE

    task = _task(app, eval_size)
    rows, grid = [], []
    for name, x in task.eval_tensors():
        if app == "superres":
            s = task.scale
            lr = D.bicubic_down(x, s)
            bic, sr_d, sr_p = D.bicubic_up(lr, s), dense(lr).clamp(0, 1), pruned(lr).clamp(0, 1)
            r = {"image": name}
            for k, y in (("bicubic", bic), ("dense", sr_d), ("pruned", sr_p)):
                r[f"{k}_psnr_y"] = M.psnr(y, x, crop_border=s)
                r[f"{k}_ssim_y"] = M.ssim(y, x, crop_border=s)
            # Thumbnails would hide what x2 SR changes: show the central 80x80, enlarged 2x.
            h, w = x.shape[2:]
            y0, x0 = h // 2 - 40, w // 2 - 40

            def zoom(t):
                return t[:, :, y0:y0 + 80, x0:x0 + 80].repeat_interleave(2, 2).repeat_interleave(2, 3)
            pics = [("bicubic (zoom)", zoom(bic)), ("dense (zoom)", zoom(sr_d)), ("pruned (zoom)", zoom(sr_p)),
                    ("HR (zoom)", zoom(x))]
        elif app == "color":
            L, ab, lab = task.split_lab(x)
            grey = lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(ab)], 1))
            c_d = lab_to_rgb(torch.cat([lab[:, :1], dense(L) * AB_SCALE], 1))
            c_p = lab_to_rgb(torch.cat([lab[:, :1], pruned(L) * AB_SCALE], 1))
            r = {"image": name}
            for k, y in (("grey", grey), ("dense", c_d), ("pruned", c_p)):
                r[f"{k}_psnr_rgb"] = M.psnr(y, x, y_channel=False)
                r[f"{k}_colorfulness"] = M.colorfulness(y)
            r["gt_colorfulness"] = M.colorfulness(x)
            for k in ("dense", "pruned"):
                r[f"{k}_colorfulness_err"] = abs(r[f"{k}_colorfulness"] - r["gt_colorfulness"])
            r["pruned_vs_dense_psnr_rgb"] = M.psnr(c_p, c_d, y_channel=False)
            pics = [("grey input", grey), ("dense", c_d), ("pruned", c_p), ("ground truth", x)]
        else:
            st_d, st_p = dense(x).clamp(0, 1), pruned(x).clamp(0, 1)
            r = {"image": name}
            for k, y in (("input", x), ("dense", st_d), ("pruned", st_p)):
                c, sl = task._terms(y, x)
                r[f"{k}_content_loss"], r[f"{k}_style_loss"] = float(c), float(sl)
            pics = [("content", x), ("dense", st_d), ("pruned", st_p), ("style", task.style)]
        rows.append(r)
        grid.append((name, [(lbl, D.to_uint8(t)) for lbl, t in pics]))
    return rows, grid


def mean_row(rows: List[Dict]) -> Dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"}


def budget_terms(app: str, mean: Dict) -> List[Dict]:
    """Per budget metric: dense, pruned, how much worse pruned is ("db": dB drop;
    "rel": fraction, negative = better) and whether that is within the budget."""
    out = []
    for metric, rule, tol in BUDGET[app]:
        d, p = mean[f"dense_{metric}"], mean[f"pruned_{metric}"]
        if rule == "db":
            worse = d - p
        else:  # losses: lower is better; PSNR and colourfulness: higher is better
            worse = (p - d) / d if metric.endswith("loss") else (d - p) / d
        out.append({"metric": metric, "rule": rule, "tol": tol, "dense": d, "pruned": p,
                    "worse": worse, "ok": bool(worse <= tol)})
    return out


def budget_check(app: str, mean: Dict) -> Tuple[bool, str]:
    """(all metrics within budget, one line per metric)."""
    terms = budget_terms(app, mean)
    texts = []
    for t in terms:
        metric, d, p, worse, tol = t["metric"], t["dense"], t["pruned"], t["worse"], t["tol"]
        if t["rule"] == "db":
            texts.append(f"{metric}: pruned {p:.3f} vs dense {d:.3f} dB (drop {worse:+.3f} dB, budget {tol} dB)")
        else:
            texts.append(f"{metric}: pruned {p:.4g} vs dense {d:.4g} ({100 * worse:+.2f} % worse; "
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


def _atomic_save(img, path: Path) -> None:
    from PIL import Image

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        # 256-colour palette keeps the committed grids small (~4x) at no visible cost at this size.
        img.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(
            tmp, format="PNG", optimize=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fmt(v):
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _table(rows: List[Dict], cols: List[Tuple[str, str]]) -> List[str]:
    out = ["| image | " + " | ".join(h for h, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows + [dict(mean_row(rows), image="**mean**")]:
        out.append(f"| {Path(r['image']).stem if r['image'] != '**mean**' else r['image']} | "
                   + " | ".join(_fmt(r[k]) for _, k in cols) + " |")
    return out


def report(results: Dict, eval_size: int, seconds: float) -> str:
    L = ["# Quality of the dense and pruned apps on held-out images", "",
         "Written by `python -m lrapps.quality` (apps/lrapps/quality.py) from the shipped checkpoints "
         "`apps/checkpoints/<app>_{dense,pruned}.pt`; do not edit by hand.",
         f"Held-out images (never trained on): centre crops of {eval_size} px (rounded down to the "
         "model's multiple). PyTorch fp32 on CPU; the lrc-compiled models match these outputs to 1e-4 "
         f"relative. Host: {platform.machine()}, torch {torch.__version__}; took {seconds:.0f} s.", "",
         "Budget (issue 5): pruned super resolution within 0.2 dB Y-PSNR of dense; coloring PSNR and "
         "colourfulness, style-transfer style and content losses within 2 % of dense.", "",
         "## Summary", "",
         "| app | pruning | conv MACs dense → pruned (bench size) | budget metric | within budget |",
         "|---|---|---|---|---|"]
    for app, res in results.items():
        ok, text = res["budget"]
        m = res["pruned_meta"]
        macs = (f"{m['macs_dense'] / 1e6:.0f} M → {m['macs_pruned'] / 1e6:.0f} M "
                f"(**{m['mac_reduction']:.2f}x**)") if "macs_dense" in m else "n/a"
        L.append(f"| {app} | {res['scheme']} | {macs} | {text} | {'yes' if ok else '**NO**'} |")
    sections = {
        "superres": ("Super resolution x2 (Y channel, border 2 px cropped)",
                     [("bicubic PSNR", "bicubic_psnr_y"), ("dense PSNR", "dense_psnr_y"),
                      ("pruned PSNR", "pruned_psnr_y"), ("bicubic SSIM", "bicubic_ssim_y"),
                      ("dense SSIM", "dense_ssim_y"), ("pruned SSIM", "pruned_ssim_y")]),
        "color": ("Coloring (RGB PSNR vs ground truth; colourfulness M, 0 = grey)",
                  [("grey PSNR", "grey_psnr_rgb"), ("dense PSNR", "dense_psnr_rgb"),
                   ("pruned PSNR", "pruned_psnr_rgb"), ("pruned vs dense PSNR", "pruned_vs_dense_psnr_rgb"),
                   ("dense M", "dense_colorfulness"), ("pruned M", "pruned_colorfulness"),
                   ("ground-truth M", "gt_colorfulness"), ("dense abs(M - M_gt)", "dense_colorfulness_err"),
                   ("pruned abs(M - M_gt)", "pruned_colorfulness_err")]),
        "style": ("Style transfer (content loss relu2_2, style loss Gram relu1_2..4_3; lower is better)",
                  [("input content", "input_content_loss"), ("dense content", "dense_content_loss"),
                   ("pruned content", "pruned_content_loss"), ("input style", "input_style_loss"),
                   ("dense style", "dense_style_loss"), ("pruned style", "pruned_style_loss")]),
    }
    for app, res in results.items():
        title, cols = sections[app]
        m = res["pruned_meta"]
        L += ["", f"## {title}", "", *_table(res["rows"], cols), "",
              f"Grid: `bench/results/quality_{app}.png`. Pruning recipe "
              f"(`python -m lrapps.prune {app}`): `{m.get('recipe')}`; "
              f"ADMM {m.get('admm_seconds', '?')} s + retraining {m.get('retrain_seconds', '?')} s "
              f"on {m.get('threads', '?')} thread(s)."]
        rec = m.get("recipe") or {}
        L.append(f"Training budget: dense {res['dense_meta'].get('steps', '?')} steps; pruned = that dense "
                 f"model + {rec.get('admm_steps', '?')} ADMM + {rec.get('retrain_steps', '?')} masked retraining "
                 "steps on the same objective, so where pruned beats dense, the extra training (the short "
                 "dense runs are not converged) outweighs what pruning cost.")
        if app == "style":
            L.append(f"Loss network: {res['dense_meta'].get('vgg', 'n/a')}; style image "
                     f"{res['dense_meta'].get('style_image', 'n/a')}.")
        if app == "color":
            mean = mean_row(res["rows"])
            d, p = mean["dense_colorfulness"], mean["pruned_colorfulness"]
            L.append(f"Colourfulness pruned vs dense: {100 * (p - d) / d:+.1f} %; distance to the ground "
                     f"truth's colourfulness: dense {mean['dense_colorfulness_err']:.2f}, pruned "
                     f"{mean['pruned_colorfulness_err']:.2f} (a colourfulness *above* the ground truth's, "
                     "as dense on chelsea, is not better).")
        if app == "style":
            mean = mean_row(res["rows"])
            d, p = mean["dense_content_loss"], mean["pruned_content_loss"]
            L.append(f"Content loss pruned vs dense: {100 * (p - d) / d:+.1f} %.")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    from . import models

    p = argparse.ArgumentParser(prog="python -m lrapps.quality", description=__doc__.splitlines()[0])
    p.add_argument("--apps", default="superres,color,style")
    p.add_argument("--eval-size", type=int, default=256)
    root = Path(__file__).resolve().parents[2]
    p.add_argument("--out-dir", default=str(root / "bench" / "results"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = {}
    for app in a.apps.split(","):
        dense = models.load(checkpoint_path(app, dense=True))
        pruned = models.load(checkpoint_path(app, dense=False))
        rows, grid = evaluate(app, dense, pruned, a.eval_size)
        mean = mean_row(rows)
        results[app] = {"rows": rows, "budget": budget_check(app, mean),
                        "scheme": pruned.checkpoint_meta.get("prune", "?"),
                        "pruned_meta": pruned.checkpoint_meta, "dense_meta": dense.checkpoint_meta}
        save_grid(grid, out / f"quality_{app}.png", title=f"{app}: held-out images")
        print(f"{app}: {results[app]['budget'][1]} -> {'OK' if results[app]['budget'][0] else 'MISSED'}")
    text = report(results, a.eval_size, time.time() - t0)
    sweep = out / "quality_sweep.json"
    if sweep.is_file():
        import json
        from .sweep import summary_lines

        text += ("\n## Rate sweep\n\nOther rates (and seeds) than the shipped ones, same recipe otherwise "
                 "(`python -m lrapps.sweep`; table: [quality_sweep.md](quality_sweep.md)):\n\n"
                 + "\n".join(summary_lines(json.loads(sweep.read_text()))) + "\n")
    _atomic_write(out / "quality.md", text)
    print(f"wrote {out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
