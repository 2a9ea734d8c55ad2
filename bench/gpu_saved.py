"""GPU benchmark from saved artifacts: compile here, run on any machine with a Vulkan / OpenCL device.

    .venv/bin/python bench/gpu_saved.py export DIR [--apps style,color,superres] [--targets vulkan,opencl]
    python3 bench/gpu_saved.py run DIR [--repeats 20] [--out bench/results/gpu_saved]

`export` compiles the three apps at their Table-1 sizes (style 1x3x256x256, color 1x1x224x224, superres
1x3x256x256) three ways per GPU target and saves each with `CompiledModel.save` (lrc.gpu.artifact):
  dense          the dense checkpoint, dense conv kernels
  pruned-dense   the ADMM-pruned checkpoint, dense conv kernels on its zero-filled weights (LRC_SPARSE=off)
  pruned-sparse  the same pruned checkpoint, pattern-sparse kernels (LRC_SPARSE=auto, the default)
plus the input and torch's output of each model (numpy files) and a manifest.

`run` needs no compiler (no torch-mlir, no LLVM tools): numpy, lrc's runtime and wgpu / pyopencl. It loads
every artifact on the best device of its API (a real GPU before a CPU implementation), checks it against
torch's output, times end-to-end calls (input upload, every layer in one submission, read-back; median of
--repeats after a warm-up, interleaved rounds) and profiles the layers. Where torch sees a CUDA GPU it
times torch eager on it too (fp32, the same checkpoints and inputs) as the competitor in the same run.
Writes <out>.md and <out>.json atomically.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
for p in (os.path.join(ROOT, "python"), os.path.join(ROOT, "apps")):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402

from results_io import write_atomic  # noqa: E402

GPU_BUDGET = 1e-3  # max error relative to max|torch| (issue 6's budget, test/python/gpu_cases.py)
SIZES = {"style": (1, 3, 256, 256), "color": (1, 1, 224, 224), "superres": (1, 3, 256, 256)}
VARIANTS = {"dense": ("dense", "off"), "pruned-dense": ("pruned", "off"), "pruned-sparse": ("pruned", "auto")}


def checkpoint(app: str, kind: str) -> str:
    return os.path.join(ROOT, "apps", "checkpoints", f"{app}_{kind}.pt")


def export(args) -> None:
    import torch

    import lrc
    from lrapps.models import load

    torch.manual_seed(0)
    os.makedirs(args.dir, exist_ok=False)
    manifest = []
    for app in args.apps.split(","):
        shape = SIZES[app][:2] + (args.hw, args.hw) if args.hw else SIZES[app]
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        np.save(os.path.join(args.dir, f"{app}.x.npy"), x.numpy())
        for variant, (ckpt, sparse) in VARIANTS.items():
            model = load(checkpoint(app, ckpt)).eval()
            with torch.no_grad():
                ref = model(x).numpy()
            np.save(os.path.join(args.dir, f"{app}.{ckpt}.ref.npy"), ref)
            for target in args.targets.split(","):
                os.environ["LRC_SPARSE"] = sparse
                t0 = time.perf_counter()
                try:
                    cm = lrc.compile(model, (x,), target=target)
                finally:
                    os.environ.pop("LRC_SPARSE", None)
                compile_s = time.perf_counter() - t0
                name = f"{app}.{variant}.{target}"
                cm.save(os.path.join(args.dir, name))
                kinds = [v for _, v in cm._runner.__self__.prog.kernel_report()]
                manifest.append({"name": name, "app": app, "variant": variant, "target": target, "input_shape": list(shape),
                                 "checkpoint": os.path.basename(checkpoint(app, ckpt)), "input": f"{app}.x.npy",
                                 "ref": f"{app}.{ckpt}.ref.npy", "compile_s": round(compile_s, 1),
                                 "sparse_kernels": sum(k.startswith("sparse") for k in kinds)})
                print(f"exported {name} ({compile_s:.1f} s)", flush=True)
    write_atomic(os.path.join(args.dir, "manifest.json"), json.dumps(manifest, indent=1))


def _median_rounds(runners: dict, repeats: int) -> dict:
    for f in runners.values():
        f()
    times = {k: [] for k in runners}
    for _ in range(repeats):
        for k, f in runners.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _torch_cuda(apps, shapes, repeats):
    """torch eager fp32 on the CUDA GPU, same checkpoints: {(app, ckpt): seconds} (empty without CUDA)."""
    try:
        import torch
        if not torch.cuda.is_available():
            return {}, None
        from lrapps.models import load
    except Exception as e:  # torch or the app models missing: no competitor, say why
        print("torch CUDA competitor not run:", e, flush=True)
        return {}, None
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 like ours
    torch.backends.cudnn.allow_tf32 = False
    out = {}
    for app in apps:
        x = torch.rand(shapes[app], generator=torch.Generator().manual_seed(0)).cuda()
        for ckpt in ("dense", "pruned"):
            m = load(checkpoint(app, ckpt)).eval().cuda()

            def run(m=m, x=x):
                with torch.no_grad():
                    y = m(x)
                torch.cuda.synchronize()
                return y
            for _ in range(5):
                run()
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                ts.append(time.perf_counter() - t0)
            out[app, ckpt] = statistics.median(ts)
    return out, torch.cuda.get_device_name(0)


def run(args) -> None:
    import lrc

    with open(os.path.join(args.dir, "manifest.json")) as fh:
        manifest = json.load(fh)
    rows, devices, layers = [], {}, {}
    loaded = {}
    for e in manifest:
        try:
            cm = lrc.load(os.path.join(args.dir, e["name"]))
        except Exception as ex:  # a device or driver that cannot run it is a result to report
            rows.append({**e, "error": f"{type(ex).__name__}: {str(ex).splitlines()[0]}"})
            print(e["name"], "not run:", rows[-1]["error"], flush=True)
            continue
        rt = cm._keepalive
        devices[e["target"]] = rt.device_name + (f", {rt.binary_kind}" if hasattr(rt, "binary_kind") else "")
        x = np.load(os.path.join(args.dir, e["input"]))
        ref = np.load(os.path.join(args.dir, e["ref"]))
        y = cm(x)
        err = float(np.abs(y - ref).max() / max(float(np.abs(ref).max()), 1e-12))
        loaded[e["name"]] = (cm, x)
        rows.append({**e, "rel_err": err})
    med = _median_rounds({n: (lambda c, x: (lambda: c(x)))(*v) for n, v in loaded.items()}, args.repeats)
    for r in rows:
        if r["name"] in med:
            r["median_s"] = med[r["name"]]
            cm, x = loaded[r["name"]]
            layers[r["name"]] = cm._keepalive.profile_layers(x, repeats=3)
    apps = list(dict.fromkeys(e["app"] for e in manifest))
    shapes = {e["app"]: tuple(e["input_shape"]) for e in manifest}
    torch_t, cuda_name = _torch_cuda(apps, shapes, args.repeats)
    if cuda_name:
        devices["torch"] = f"{cuda_name} (torch eager CUDA, fp32, cuDNN, TF32 off)"

    by = {(r["app"], r["variant"], r["target"]): r for r in rows}
    targets = list(dict.fromkeys(e["target"] for e in manifest))
    lines = ["# GPU targets on a real GPU: saved lrc artifacts, dense vs pattern-sparse", "",
             f"Written by `bench/gpu_saved.py run` on {datetime.date.today()} from artifacts that "
             "`bench/gpu_saved.py export` compiled on the CPU-only development machine (lrc.compile + "
             "CompiledModel.save; this machine had no compiler). End to end = one call: input upload, every "
             "layer in one submission, read-back; median of "
             f"{args.repeats} interleaved rounds after a warm-up. Numerics checked against torch's CPU output "
             "saved with each artifact (max error relative to max|torch|).", "", "## Devices", ""]
    lines += [f"- **{k}**: {v}" for k, v in devices.items()]
    head = "| app (input) | variant | " + " | ".join(f"{t} ms | {t} err" for t in targets)
    head += " | torch CUDA ms |" if torch_t else " |"
    lines += ["", "## End to end (ms)", "", head, "|---|---|" + "---|---|" * len(targets) + ("---|" if torch_t else "")]
    for app in apps:
        for variant, (ckpt, _) in VARIANTS.items():
            cells = []
            for t in targets:
                r = by.get((app, variant, t))
                if r is None or "median_s" not in r:
                    cells += ["n/a" if r is None else "not run", ""]
                else:
                    bad = " **WRONG**" if r["rel_err"] > GPU_BUDGET else ""
                    cells += [f"{r['median_s'] * 1e3:.2f}", f"{r['rel_err']:.1e}{bad}"]
            if torch_t:
                cells.append(f"{torch_t[app, ckpt] * 1e3:.2f}" if variant != "pruned-sparse" else "")
            lines.append(f"| {app} {shapes[app]} | {variant} | " + " | ".join(cells) + " |")
    lines += ["", "## Speedups (time ratio, same run)", "",
              "| app | target | pruned-sparse vs dense | pruned-sparse vs pruned-dense |"
              + (" pruned-sparse vs torch CUDA dense |" if torch_t else ""),
              "|---|---|---|---|" + ("---|" if torch_t else "")]
    for app in apps:
        for t in targets:
            d, pd, ps = (by.get((app, v, t), {}).get("median_s") for v in VARIANTS)
            if not (d and pd and ps):
                continue
            row = f"| {app} | {t} | {d / ps:.2f}x | {pd / ps:.2f}x |"
            if torch_t:
                row += f" {torch_t[app, 'dense'] / ps:.2f}x |"
            lines.append(row)
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "## Not run", ""] + [f"- {r['name']}: {r['error']}" for r in errors]
    lines += ["", f"## Convs, dense vs pattern-sparse kernels (per-layer profile, ms; slowest {args.top} under "
              "the dense kernel)", ""]
    for app in apps:
        for t in targets:
            dn, sn = f"{app}.pruned-dense.{t}", f"{app}.pruned-sparse.{t}"
            if dn not in layers or sn not in layers:
                continue
            pairs = [(a, b) for a, b in zip(layers[dn], layers[sn]) if a[0].startswith("lr.conv2d")]
            dsum, ssum = sum(a[1] for a, _ in pairs), sum(b[1] for _, b in pairs)
            lines += [f"**{app} on {t}**: {len(pairs)} convs, sum {dsum * 1e3:.2f} ms dense -> {ssum * 1e3:.2f} ms "
                      f"sparse ({dsum / max(ssum, 1e-12):.2f}x); all layers: "
                      f"{sum(s for _, s in layers[dn]) * 1e3:.2f} -> {sum(s for _, s in layers[sn]) * 1e3:.2f} ms", "",
                      "| layer | dense ms | sparse ms | speedup |", "|---|---|---|---|"]
            for a, b in sorted(pairs, key=lambda p: -p[0][1])[:args.top]:
                lines.append(f"| {a[0]} | {a[1] * 1e3:.3f} | {b[1] * 1e3:.3f} | {a[1] / max(b[1], 1e-12):.2f}x |")
            lines.append("")
    write_atomic(args.out + ".md", "\n".join(lines) + "\n")
    write_atomic(args.out + ".json", json.dumps({"devices": devices, "rows": rows, "torch_cuda_s":
                                                 {f"{a}/{c}": v for (a, c), v in torch_t.items()},
                                                 "layers": layers}, indent=1))
    print("\n".join(lines))
    wrong = [r["name"] for r in rows if r.get("rel_err", 0.0) > GPU_BUDGET]
    if wrong:  # the tables are written, but a wrong result must not pass for a timing
        raise SystemExit(f"outside the numerics budget ({GPU_BUDGET:g} of max|torch|): {', '.join(wrong)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("dir")
    e.add_argument("--apps", default="style,color,superres")
    e.add_argument("--targets", default="vulkan,opencl")
    e.add_argument("--hw", type=int, default=0, help="input height = width instead of the Table-1 size (smoke tests)")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--repeats", type=int, default=20)
    r.add_argument("--top", type=int, default=5)
    r.add_argument("--out", default=os.path.join(HERE, "results", "gpu_saved"))
    args = p.parse_args(argv)
    export(args) if args.cmd == "export" else run(args)


if __name__ == "__main__":
    main()
