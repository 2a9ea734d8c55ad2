"""`make demo`: compile the three application networks for this host and compare latency.

For each app (style transfer, coloring, super resolution) at its benchmark size: compile with lrc,
check the result against PyTorch, and time PyTorch eager, ONNX Runtime and lrc side by side on one
thread (interleaved runs, median). Uses the trained checkpoints in apps/checkpoints when present.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings


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


def _load_app(app: str, ckpt_dir: str):
    from lrapps import models

    path = os.path.join(ckpt_dir, f"{app}_dense.pt")
    if os.path.isfile(path):
        return models.load(path), "trained"
    return models.build(app).eval(), "untrained"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--apps", default="style,color,superres")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    p.add_argument("--checkpoints", default=os.path.join(root, "apps", "checkpoints"))
    a = p.parse_args(argv)

    import numpy as np
    import torch

    import lrc

    torch.set_num_threads(1)
    from lrapps import models

    rows = []
    for app in a.apps.split(","):
        model, which = _load_app(app, a.checkpoints)
        x = models.example_input(app)
        t0 = time.perf_counter()
        cm = lrc.compile(model, (x,))
        compile_s = time.perf_counter() - t0
        with torch.no_grad():
            ref = model(x).numpy()
        xn = x.numpy()
        err = float(np.abs(cm(xn) - ref).max())

        def run_torch(model=model, x=x):
            with torch.no_grad():
                model(x)

        runners = {"torch": run_torch, "lrc": lambda cm=cm, xn=xn: cm(xn)}
        ort_run = _ort_runner(model, x)
        if ort_run:
            runners["ort"] = ort_run
        for r in runners.values():
            r()
        times = {k: [] for k in runners}
        for _ in range(a.repeats):
            for k, r in runners.items():
                t = time.perf_counter()
                r()
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append((app, which, list(x.shape), compile_s, med, err, float(np.abs(ref).max())))
        print(f"  {app}: compiled in {compile_s:.1f} s", flush=True)

    print()
    print(f"{'app':10s} {'weights':9s} {'input':15s} {'torch ms':>9s} {'ORT ms':>8s} {'lrc ms':>8s} "
          f"{'vs torch':>9s} {'vs ORT':>7s} {'max err':>9s}")
    ok = True
    for app, which, shape, cs, med, err, scale in rows:
        ort_ms = med.get("ort", float("nan"))
        print(f"{app:10s} {which:9s} {'x'.join(map(str, shape)):15s} {med['torch']:9.1f} {ort_ms:8.1f} "
              f"{med['lrc']:8.1f} {med['torch'] / med['lrc']:8.2f}x {ort_ms / med['lrc']:6.2f}x {err:9.1e}")
        ok = ok and err <= 1e-4 * scale + 1e-5
    print("\nlrc dense code, 1 thread; speedups > 1 mean lrc is faster. Pruned + sparse code: see the README status.")
    if not ok:
        print("ERROR: lrc output differs from PyTorch beyond 1e-4 relative", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
