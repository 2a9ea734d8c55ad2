"""Filter-pruned models: zeros everywhere, speed only where the shapes shrink.

    .venv/bin/python bench/filter_pruning.py [--models vgg,resnet_basic,resnet_bottleneck] [--amount 0.5] [--repeats 10]

Each model (bench/dense.py's zoo, app sizes) gets torch.nn.utils.prune.ln_structured (L2, whole
filters) at `--amount` on every conv but the first, the way a user prunes with torch; the zeros
stay in the weights, the BN after each conv keeps its bias. Side by side in one run, 1 thread,
interleaved, CPU time of the calling thread (medians after warm-up):
  torch and ONNX Runtime on the pruned model (no speed-up expected: they run the zeros),
  lrc on the dense model, lrc on the pruned model without lr-shrink-pruned-channels (the sparse
  kernels skip the zero filters, the next convs still read every channel), and lrc with it (the
  default pipeline: dead channels leave both convs around them).
Writes bench/results/filter_pruning.md and filter_pruning.json atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.utils.prune as tprune

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dense import count_macs, machine, ort_session  # noqa: E402  (sets torch to 1 thread)
from results_io import utc_stamp, write_atomic  # noqa: E402

import lrc  # noqa: E402
import zoo  # noqa: E402


def filter_prune(model: torch.nn.Module, amount: float) -> torch.nn.Module:
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1]
    for m in convs[1:]:
        tprune.ln_structured(m, "weight", amount=amount, n=2, dim=0)
        tprune.remove(m, "weight")
    return model


def compile_without_shrink(model, x):
    from lrc import compiler
    from lrc.transforms import DEFAULT_OPT_PIPELINE, run_pipeline

    pipeline = DEFAULT_OPT_PIPELINE.replace("lr-shrink-pruned-channels, ", "")
    saved = compiler.optimize
    compiler.optimize = lambda m: run_pipeline(m, pipeline)
    try:
        return lrc.compile(model, (x,))
    finally:
        compiler.optimize = saved


def conv_channels(cm) -> int:
    import re

    return sum(int(k) for k in re.findall(r"weight = dense(?:_resource)?<[^>]*> : tensor<(\d+)x\d+x\d+x\d+xf32>", cm.lr_ir))


def bench(name: str, amount: float, repeats: int) -> dict:
    dense, x = zoo.ZOO[name]("app")
    pruned, _ = zoo.ZOO[name]("app")
    pruned.load_state_dict(dense.state_dict())
    filter_prune(pruned.eval(), amount)
    xn = x.numpy()
    with torch.no_grad():
        ref = pruned(x).numpy()
    lrc_dense = lrc.compile(dense.eval(), (x,))
    no_shrink = compile_without_shrink(pruned, x)
    shrink = lrc.compile(pruned, (x,))
    errs = {k: float(np.abs(cm(xn) - ref).max()) for k, cm in (("no_shrink", no_shrink), ("shrink", shrink))}
    tol = 1e-4 * float(np.abs(ref).max()) + 1e-5

    def run_torch():
        with torch.no_grad():
            pruned(x)

    runners = {"torch pruned": run_torch, "ORT pruned": ort_session(pruned, x), "lrc dense": lambda: lrc_dense(xn),
               "lrc pruned, no shrink": lambda: no_shrink(xn), "lrc pruned": lambda: shrink(xn)}
    for _ in range(2):
        for r in runners.values():
            r()
    cpu = {k: [] for k in runners}
    order = list(runners)
    for i in range(repeats):
        for k in order[i % len(order):] + order[:i % len(order)]:
            t = time.thread_time()
            runners[k]()
            cpu[k].append(time.thread_time() - t)
    ms = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
    return {"model": name, "input": list(x.shape), "amount": amount, "gmacs_dense": count_macs(dense, x) / 1e9,
            "conv_channels": {"dense": conv_channels(lrc_dense), "no_shrink": conv_channels(no_shrink),
                              "shrink": conv_channels(shrink)},
            "cpu_ms": ms, "max_abs_err": errs, "ok": all(e <= tol for e in errs.values())}


def to_markdown(rows, meta) -> str:
    L = ["# Filter-pruned models: torch / ORT / lrc", "",
         f"Machine: {meta['machine']}, 1 thread, {meta['date']}. Written by `bench/filter_pruning.py`: "
         f"torch.nn.utils.prune.ln_structured (L2 filters, amount {meta['amount']}) on every conv but the first; "
         f"CPU time of the calling thread, medians of {meta['repeats']} interleaved runs (a shared 2-vCPU host: "
         "compare within a row). `speed-up` = ORT pruned / lrc pruned.", "",
         "| model | input | conv output channels dense / no shrink / shrunk | torch pruned ms | ORT pruned ms | lrc dense ms "
         "| lrc pruned, no shrink ms | lrc pruned ms | speed-up vs ORT | vs lrc dense | numerics |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, c = r["cpu_ms"], r["conv_channels"]
        L.append(f"| {r['model']} | {'x'.join(map(str, r['input']))} | {c['dense']} / {c['no_shrink']} / {c['shrink']} | "
                 f"{m['torch pruned']:.1f} | {m['ORT pruned']:.1f} | {m['lrc dense']:.1f} | {m['lrc pruned, no shrink']:.1f} | "
                 f"{m['lrc pruned']:.1f} | {m['ORT pruned'] / m['lrc pruned']:.2f}x | {m['lrc dense'] / m['lrc pruned']:.2f}x | "
                 f"{'ok' if r['ok'] else 'MISMATCH'} |")
    return "\n".join(L + [""])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vgg,resnet_basic,resnet_bottleneck")
    p.add_argument("--amount", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    a = p.parse_args(argv)
    rows = []
    for name in a.models.split(","):
        r = bench(name, a.amount, a.repeats)
        rows.append(r)
        print(name, {k: round(v, 1) for k, v in r["cpu_ms"].items()}, r["conv_channels"], "ok" if r["ok"] else "MISMATCH",
              flush=True)
    meta = {"machine": machine(), "amount": a.amount, "repeats": a.repeats,
            "date": utc_stamp()}
    write_atomic(os.path.join(a.out, "filter_pruning.md"), to_markdown(rows, meta))
    write_atomic(os.path.join(a.out, "filter_pruning.json"), json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
