"""`make demo`: the three apps, dense and pruned, compiled by lrc for this host.

For style transfer, coloring and x2 super resolution at their benchmark sizes (style 1x3x256x256,
color 1x1x224x224, superres 1x3x256x256 -> 512x512), with the shipped checkpoints
(apps/checkpoints/<app>_{dense,pruned}.pt):

1. compile the dense and the pruned network with `lrc.compile(model, (x,))` (the pruned one carries
   lrprune's `lr_sparsity` annotations; lrc decides which layers get sparse kernels);
2. run both compiled networks on the bundled held-out images (never trained on), check them against
   PyTorch, and write input/dense/pruned images plus a before/after grid to `out/`;
3. time PyTorch eager, ONNX Runtime (dense) and lrc dense / pruned side by side on one thread
   (interleaved runs after a warm-up, median) and print a Table-1-style latency table;
4. print the held-out quality figures (the same as bench/results/quality.md).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import warnings

SIZES = {"style": (256, 256), "color": (224, 224), "superres": (256, 256)}


def _ort_runner(model, x):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import torch

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), f, dynamo=False, opset_version=17)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(f.getvalue(), so, providers=["CPUExecutionProvider"])
    name, xn = sess.get_inputs()[0].name, x.numpy()
    return lambda: sess.run(None, {name: xn})


def _heldout_inputs(app):
    """[(name, HxWx3 uint8 crop at the benchmark size)] of the held-out images."""
    from lrapps import data as D

    h, w = SIZES[app]
    out = []
    for name, img in D.get_images("heldout"):
        if img.shape[0] < h or img.shape[1] < w:
            continue
        y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        out.append((os.path.splitext(name)[0], img[y:y + h, x:x + w]))
    return out


def _save_png(rgb, path):
    from PIL import Image

    tmp = f"{path}.tmp{os.getpid()}"
    Image.fromarray(rgb).save(tmp, format="PNG")
    os.replace(tmp, path)


def _grid(rows, path, tile=160):
    """rows: [(label, [(caption, HxWx3 uint8)])] -> one PNG, captions above each tile."""
    from PIL import Image, ImageDraw

    cols = max(len(r[1]) for r in rows)
    pad, head = 4, 14
    canvas = Image.new("RGB", (cols * (tile + pad) + pad, len(rows) * (tile + head + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, pics) in enumerate(rows):
        y = pad + i * (tile + head + pad)
        for j, (cap, img) in enumerate(pics):
            x = pad + j * (tile + pad)
            draw.text((x, y), f"{label}: {cap}"[:30], fill="black")
            im = Image.fromarray(img)
            im.thumbnail((tile, tile), Image.LANCZOS)
            canvas.paste(im, (x + (tile - im.width) // 2, y + head + (tile - im.height) // 2))
    tmp = f"{path}.tmp{os.getpid()}"
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10, help="timed runs per runner (median)")
    p.add_argument("--apps", default="style,color,superres")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    p.add_argument("--checkpoints", default=os.path.join(root, "apps", "checkpoints"))
    p.add_argument("--out", default="out", help="folder for the output images and grid")
    p.add_argument("--no-quality", action="store_true", help="skip the held-out quality figures")
    a = p.parse_args(argv)
    t_start = time.perf_counter()

    import numpy as np
    import torch

    import lrc
    from lrapps import inference as I
    from lrapps import models

    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    apps = a.apps.split(",")
    for app in apps:
        if app not in SIZES:
            print(f"error: unknown app '{app}'; choose from {', '.join(SIZES)}", file=sys.stderr)
            return 2
    loaded = {}
    for app in apps:
        paths = {v: os.path.join(a.checkpoints, f"{app}_{v}.pt") for v in ("dense", "pruned")}
        missing = [q for q in paths.values() if not os.path.isfile(q)]
        if missing:
            print(f"error: missing checkpoint(s) {missing}; make them with `python -m lrapps.train {app}` "
                  f"and `python -m lrapps.prune {app}`", file=sys.stderr)
            return 2
        loaded[app] = {v: models.load(q) for v, q in paths.items()}

    rows, grid_rows, ok = [], [], True
    for app in apps:
        dense, pruned = loaded[app]["dense"], loaded[app]["pruned"]
        images = _heldout_inputs(app)
        inputs = [(n, *I.preprocess(app, img)) for n, img in images]
        x0 = inputs[0][1]
        cms, compile_s = {}, {}
        for v, m in (("dense", dense), ("pruned", pruned)):
            t0 = time.perf_counter()
            cms[v] = lrc.compile(m, (x0,))
            compile_s[v] = time.perf_counter() - t0
            print(f"  {app} {v}: compiled in {compile_s[v]:.1f} s", flush=True)

        errs = {"dense": 0.0, "pruned": 0.0}
        for (name, x, ctx), (_, img) in zip(inputs, images):
            pics = [("input" if app != "color" else "grey input",
                     I.postprocess("color", torch.zeros(1, 2, *x.shape[2:]), ctx) if app == "color" else img)]
            for v, m in (("dense", dense), ("pruned", pruned)):
                with torch.no_grad():
                    ref = m(x).numpy()
                y = cms[v](x.numpy())
                err = float(np.abs(y - ref).max())
                tol = 1e-4 * float(np.abs(ref).max()) + 1e-5
                errs[v] = max(errs[v], err / tol)
                ok = ok and err <= tol
                rgb = I.postprocess(app, torch.from_numpy(y), ctx)
                _save_png(rgb, os.path.join(a.out, f"{app}_{name}_{v}.png"))
                pics.append((f"lrc {v}", rgb))
            _save_png(pics[0][1], os.path.join(a.out, f"{app}_{name}_input.png"))
            if app == "color":
                pics.append(("original", img))
            if app == "superres":
                # Thumbnails hide what x2 SR changes: show the central 64x64 of the input enlarged
                # (nearest) next to the same region of each output.
                h, w = img.shape[:2]
                y0, x0c = h // 2 - 32, w // 2 - 32
                zoom = [("nearest x2", np.repeat(np.repeat(img[y0:y0 + 64, x0c:x0c + 64], 2, 0), 2, 1))]
                zoom += [(c, im[2 * y0:2 * y0 + 128, 2 * x0c:2 * x0c + 128]) for c, im in pics[1:]]
                pics = zoom
            grid_rows.append((f"{app} {name}", pics))

        def run_torch(model=dense, x=x0):
            with torch.no_grad():
                model(x)

        xn = x0.numpy()
        runners = {"torch": run_torch}
        ort_run = _ort_runner(dense, x0)
        if ort_run:
            runners["ort"] = ort_run
        runners["lrc dense"] = lambda: cms["dense"](xn)
        runners["lrc pruned"] = lambda: cms["pruned"](xn)
        for r in runners.values():
            r()
        times = {k: [] for k in runners}
        for _ in range(a.repeats):
            for k, r in runners.items():
                t = time.perf_counter()
                r()
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        macs = pruned.checkpoint_meta.get("mac_reduction")
        rows.append((app, list(x0.shape), med, errs, compile_s, macs, pruned.checkpoint_meta.get("prune", "?")))

    _grid(grid_rows, os.path.join(a.out, "grid.png"))
    print(f"\nwrote {len(grid_rows) * 3} images and {os.path.join(a.out, 'grid.png')}\n")

    print("Latency, 1 thread, median of", a.repeats, "interleaved runs (ms); speedups are vs torch dense")
    hdr = (f"{'app':9s} {'input':13s} {'pruning':15s} {'MACs cut':>8s} {'torch':>8s} {'ORT':>8s} "
           f"{'lrc dense':>10s} {'lrc pruned':>11s} {'dense x':>8s} {'pruned x':>9s}")
    print(hdr)
    print("-" * len(hdr))
    for app, shape, med, errs, cs, macs, scheme in rows:
        ort_ms = med.get("ort", float("nan"))
        print(f"{app:9s} {'x'.join(map(str, shape)):13s} {scheme:15s} "
              f"{(f'{macs:.2f}x' if macs else 'n/a'):>8s} {med['torch']:8.1f} {ort_ms:8.1f} "
              f"{med['lrc dense']:10.1f} {med['lrc pruned']:11.1f} "
              f"{med['torch'] / med['lrc dense']:7.2f}x {med['torch'] / med['lrc pruned']:8.2f}x")
    print("\nlrc vs PyTorch on the held-out images (max abs err / tolerance 1e-4*max|ref|+1e-5; <= 1 passes):")
    for app, _, _, errs, cs, _, _ in rows:
        print(f"  {app:9s} dense {errs['dense']:.3f}  pruned {errs['pruned']:.3f}   "
              f"(compile {cs['dense']:.1f} s / {cs['pruned']:.1f} s)")

    if not a.no_quality:
        from lrapps import quality as Q
        from lrapps import sweep as S

        sweep_file = S.ROOT / "bench" / "results" / "quality_sweep.json"
        sweep_data = json.loads(sweep_file.read_text()) if sweep_file.is_file() else None
        print("\nQuality on the held-out images (PyTorch models; see bench/results/quality.md):")
        for app in apps:
            # the dense model trained for the pruning recipe's extra steps, nothing pruned (lrapps.prune
            # --reference): the fair test of what pruning costs, shown next to the shipped dense model
            ref_path = os.path.join(a.checkpoints, f"{app}_dense_equal.pt")
            reference = models.load(ref_path) if os.path.exists(ref_path) else None
            qrows, _ = Q.evaluate(app, loaded[app]["dense"], loaded[app]["pruned"], reference=reference)
            mean = Q.mean_row(qrows)
            good, text = Q.budget_check(app, mean)
            if app == "superres":
                extra = (f"bicubic {mean['bicubic_psnr_y']:.2f} dB, dense {mean['dense_psnr_y']:.2f} dB, "
                         f"pruned {mean['pruned_psnr_y']:.2f} dB (Y-PSNR)")
            elif app == "color":
                extra = (f"grey {mean['grey_psnr_rgb']:.2f} dB, dense {mean['dense_psnr_rgb']:.2f} dB, "
                         f"pruned {mean['pruned_psnr_rgb']:.2f} dB (RGB PSNR)")
            else:
                extra = (f"style loss input {mean['input_style_loss']:.4f}, dense {mean['dense_style_loss']:.4f}, "
                         f"pruned {mean['pruned_style_loss']:.4f}")
            print(f"  {app:9s} {extra}\n  {'':9s} budget {'met' if good else 'MISSED'}: {text}")
            if reference is not None:
                fair, ftext = Q.budget_check(app, mean, "equal")
                print(f"  {'':9s} fair test {'met' if fair else 'MISSED'}: {ftext}")
            best = S.best_rates(sweep_data, app) if sweep_data else None
            if best:
                print(f"  {'':9s} best rate within the fair budget (quality_sweep.md): {best}")

    print(f"\ndemo took {time.perf_counter() - t_start:.0f} s")
    if not ok:
        print("ERROR: an lrc output differs from PyTorch beyond 1e-4 relative", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
