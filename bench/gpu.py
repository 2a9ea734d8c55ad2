"""GPU targets benchmark: lrc `vulkan` and `opencl` vs lrc `host` vs torch eager, side by side in one run.

    .venv/bin/python bench/gpu.py [--models style,color,superres,mobilenetv2] [--hw 64] [--repeats 10]
                                  [--threads 1] [--vulkan-device NAME] [--opencl-device NAME]

Runs on whatever Vulkan / OpenCL devices are present (Mesa lavapipe and PoCL on CPU-only machines,
a real GPU when there is one; --*-device picks one by name) and names the device of every number.
`--threads` caps the CPU implementations (LP_NUM_THREADS for lavapipe, POCL_CPU_MAX_CU_NUM for PoCL)
and torch / host, so CPU-emulated "GPUs" are compared with the 1-thread CPU code on equal terms.
End-to-end times are medians of interleaved rounds (one call of every competitor per round);
per-layer times come from each runtime's profiler (Vulkan: one submission per layer, waited on;
OpenCL: profiling events), median of 3. Writes bench/results/gpu.md and gpu.json atomically.

Second part (--sparse-models, default the three apps): the pruned app (the ADMM checkpoint where one
exists, else the dense checkpoint projected onto pattern+kernel / kernel by lrprune) compiled twice per
GPU target, once with the dense conv kernel on the zero-filled weights (LRC_SPARSE=off) and once with
the pattern-sparse kernels (LRC_SPARSE=auto), timed side by side in interleaved rounds, plus per-layer
dense vs sparse times of every conv.
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
sys.path.insert(0, os.path.join(HERE, "..", "test", "python"))


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="style,color,superres,mobilenetv2")
    p.add_argument("--hw", type=int, default=64, help="input height = width")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--targets", default="host,vulkan,opencl")
    p.add_argument("--vulkan-device", default=None)
    p.add_argument("--opencl-device", default=None)
    p.add_argument("--sparse-models", default="style,color,superres")
    p.add_argument("--top", type=int, default=6, help="slowest layers listed per model and target")
    p.add_argument("--out", default=os.path.join(HERE, "results", "gpu"))
    return p.parse_args()


ARGS = _parse()
# must be set before the drivers load
os.environ.setdefault("LP_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("POCL_CPU_MAX_CU_NUM", str(ARGS.threads))

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

import lrc  # noqa: E402
from results_io import write_atomic  # noqa: E402


def model_and_input(name: str, hw: int):
    if name in ("style", "color", "superres"):
        from gpu_cases import app_model
        return app_model(name, hw)
    import zoo
    m, x = zoo.make(name, "small")
    return m, x


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def runtime_of(cm):
    return getattr(cm._runner, "__self__", None)  # the Vulkan / OpenCL runtime behind a compiled model


def timed_rounds(runners: dict, repeats: int) -> dict:
    for f in runners.values():  # warm-up (drivers compile lazily on first dispatch)
        with torch.no_grad():
            f()
    times = {k: [] for k in runners}
    for _ in range(repeats):
        for k, f in runners.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def sparse_vs_dense(name: str, targets: list[str], devices: dict) -> dict:
    """Dense vs pattern-sparse GPU kernels on the pruned app, per target: end to end and per conv."""
    from gpu_cases import pruned_app_model

    model, x, origin = pruned_app_model(name, ARGS.hw)
    with torch.no_grad():
        ref = model(x).numpy()
    compiled, info, runners = {}, {}, {}
    for t in targets:
        for mode in ("off", "auto"):
            os.environ["LRC_SPARSE"] = mode
            try:
                cm = lrc.compile(model, (x,), target=t)
            except Exception as e:
                info[t] = f"not run: {type(e).__name__}: {str(e).splitlines()[0]}"
                break
            finally:
                os.environ.pop("LRC_SPARSE", None)
            err = float(np.abs(cm(x).numpy() - ref).max() / max(np.abs(ref).max(), 1e-12))
            info[f"{t}/{mode}"] = f"rel. error {err:.1e}"
            compiled[t, mode] = cm
            runners[f"{t}/{mode}"] = (lambda c: (lambda: c(x)))(cm)
    med = timed_rounds(runners, ARGS.repeats)
    layers = {}
    for t in targets:
        if (t, "auto") not in compiled:
            continue
        dense_rt, sparse_rt = runtime_of(compiled[t, "off"]), runtime_of(compiled[t, "auto"])
        dense = dense_rt.profile_layers(x.numpy(), repeats=3)
        sparse = sparse_rt.profile_layers(x.numpy(), repeats=3)
        rows = []
        for (lname, d), (lname2, sp), (_, variant) in zip(dense, sparse, sparse_rt.prog.kernel_report()):
            assert lname == lname2, (lname, lname2)
            if lname.startswith("lr.conv2d"):
                rows.append({"layer": lname, "variant": variant, "dense_s": d, "sparse_s": sp})
        layers[t] = rows
    print(name, "sparse vs dense", {k: f"{v * 1e3:.1f} ms" for k, v in med.items()}, flush=True)
    return {"model": name, "origin": origin, "input": list(x.shape), "median_s": med, "info": info,
            "layers": layers}


def sparse_lines(sparse: list, targets: list[str], devices: dict) -> list[str]:
    lines = ["", "## Pattern-sparse vs dense GPU kernels on the pruned apps", "",
             "Same pruned model, same device, compiled with the dense conv kernel on its zero-filled weights "
             "(`LRC_SPARSE=off`) and with the pattern-sparse kernels (`LRC_SPARSE=auto`, the default), timed in "
             "the same interleaved rounds. Models: `admm` = the ADMM-pruned checkpoint "
             "(`apps/checkpoints/<app>_pruned.pt`); `projected` = the dense checkpoint projected by lrprune onto "
             "pattern+kernel (3x3, rate 0.5, per-layer library) / kernel (1x1, rate 0.75), untrained "
             "(timing only).", "",
             "| model (input, pruning) | " + " | ".join(f"{t} dense | {t} sparse | speedup" for t in targets) + " |",
             "|---|" + "---|---|---|" * len(targets)]
    for r in sparse:
        cells = []
        for t in targets:
            d, s = r["median_s"].get(f"{t}/off"), r["median_s"].get(f"{t}/auto")
            cells += [f"{d * 1e3:.1f}", f"{s * 1e3:.1f}", f"{d / s:.2f}x"] if d and s else ["n/a"] * 3
        lines.append(f"| {r['model']} {tuple(r['input'])}, {r['origin']} | " + " | ".join(cells) + " |")
    lines += ["", "Layers listed as `dense` run the same dense kernel in both builds (too little pruned for the cost model); the gap between their two times is the run-to-run noise of the shared machine.",
              "", "Max error relative to max|torch|: " + "; ".join(
        f"{r['model']} " + ", ".join(f"{k}: {v}" for k, v in r["info"].items()) for r in sparse), ""]
    for r in sparse:
        for t, rows in r["layers"].items():
            dsum, ssum = sum(x["dense_s"] for x in rows), sum(x["sparse_s"] for x in rows)
            nsp = sum(x["variant"].startswith("sparse") for x in rows)
            lines += [f"**{r['model']} convs on {t}** ({devices.get(t, t)}): {len(rows)} convs, {nsp} sparse; "
                      f"sum {dsum * 1e3:.1f} ms dense -> {ssum * 1e3:.1f} ms ({dsum / ssum:.2f}x). "
                      f"Slowest {ARGS.top} under the dense kernel:", "",
                      "| layer | kernel (sparse build) | dense ms | sparse ms | speedup |", "|---|---|---|---|---|"]
            for x in sorted(rows, key=lambda x: -x["dense_s"])[:ARGS.top]:
                lines.append(f"| {x['layer']} | {x['variant']} | {x['dense_s'] * 1e3:.2f} | "
                             f"{x['sparse_s'] * 1e3:.2f} | {x['dense_s'] / x['sparse_s']:.2f}x |")
            lines.append("")
    return lines


def main():
    targets = [t for t in ARGS.targets.split(",") if t]
    devices = {"host": f"{cpu_name()} (lrc host JIT, {ARGS.threads} thread)",
               "torch": f"{cpu_name()} (torch eager, {ARGS.threads} thread)"}
    results = []
    for name in ARGS.models.split(","):
        model, x = model_and_input(name, ARGS.hw)
        with torch.no_grad():
            ref = model(x).numpy()
        runners = {"torch": lambda: model(x)}
        compiled, info = {}, {}
        for t in targets:
            opts = {}
            if t == "vulkan" and ARGS.vulkan_device:
                opts["device"] = ARGS.vulkan_device
            if t == "opencl" and ARGS.opencl_device:
                opts["device"] = ARGS.opencl_device
            try:
                cm = lrc.compile(model, (x,), target=t, **opts)
            except Exception as e:  # a missing device is a result worth reporting, not a crash
                info[t] = f"not run: {type(e).__name__}: {str(e).splitlines()[0]}"
                continue
            rt = runtime_of(cm)
            if rt is not None and hasattr(rt, "device_name"):
                devices[t] = rt.device_name
            out = cm(x)
            err = float(np.abs(out.numpy() - ref).max() / max(np.abs(ref).max(), 1e-12))
            info[t] = f"compile {cm.stats['compile_s']:.1f} s, rel. error {err:.1e}"
            compiled[t] = cm
            runners[t] = (lambda c: (lambda: c(x)))(cm)
        med = timed_rounds(runners, ARGS.repeats)
        layers = {}
        for t, cm in compiled.items():
            rt = runtime_of(cm)
            if rt is not None and hasattr(rt, "profile_layers"):
                layers[t] = rt.profile_layers(x.numpy(), repeats=3)
        results.append({"model": name, "input": list(x.shape), "median_s": med, "info": info, "layers": layers})
        print(name, {k: f"{v * 1e3:.1f} ms" for k, v in med.items()}, info, flush=True)

    lines = ["# GPU targets: end-to-end and per-layer latency", "",
             f"Written by `bench/gpu.py` on {datetime.date.today()}; input {ARGS.hw}x{ARGS.hw}, "
             f"{ARGS.repeats} interleaved rounds after a warm-up, medians; CPU implementations capped at "
             f"{ARGS.threads} thread(s) (LP_NUM_THREADS / POCL_CPU_MAX_CU_NUM). The machine is shared with "
             "other jobs, so compare only within a row.", "", "## Devices", ""]
    for k, v in devices.items():
        lines.append(f"- **{k}**: {v}")
    lines += ["", "## End to end (ms; ratio = time / torch eager)", "",
              "| model (input) | torch | " + " | ".join(targets) + " |",
              "|---|---|" + "---|" * len(targets)]
    for r in results:
        tt = r["median_s"]["torch"]
        cells = []
        for t in targets:
            v = r["median_s"].get(t)
            cells.append(f"{v * 1e3:.1f} ({v / tt:.2f}x)" if v is not None else "n/a")
        lines.append(f"| {r['model']} {tuple(r['input'])} | {tt * 1e3:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Compile time and max error relative to max|torch| per target:", ""]
    for r in results:
        lines.append(f"- {r['model']}: " + "; ".join(f"{t}: {s}" for t, s in r["info"].items()))
    lines += ["", f"## Slowest layers (ms, per-layer profile; top {ARGS.top})", ""]
    for r in results:
        for t, lay in r["layers"].items():
            total = sum(s for _, s in lay)
            lines.append(f"**{r['model']} on {t}** ({devices.get(t, t)}): {len(lay)} kernels, sum {total * 1e3:.1f} ms")
            lines += ["", "| layer | ms | share |", "|---|---|---|"]
            for lname, s in sorted(lay, key=lambda p: -p[1])[:ARGS.top]:
                lines.append(f"| {lname} | {s * 1e3:.2f} | {s / total:.0%} |")
            lines.append("")
    gpu_targets = [t for t in targets if t in ("vulkan", "opencl")]
    sparse = [sparse_vs_dense(m, gpu_targets, devices) for m in ARGS.sparse_models.split(",") if m]
    if sparse:
        lines += sparse_lines(sparse, gpu_targets, devices)
    write_atomic(ARGS.out + ".md", "\n".join(lines))
    write_atomic(ARGS.out + ".json", json.dumps({"devices": devices, "threads": ARGS.threads, "hw": ARGS.hw,
                                                 "results": results, "sparse": sparse}, indent=1))
    print("wrote", ARGS.out + ".md")


if __name__ == "__main__":
    main()
