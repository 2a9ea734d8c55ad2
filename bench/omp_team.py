"""lrc's own thread team (lib/omp_team.c, what Android builds run on) against LLVM's libomp, on the host.

    .venv/bin/python bench/omp_team.py [--models superres,style:hard,vgg16] [--threads 2] [--rounds 8]

Per model (the pruned Table 1 models), one `lrc.compile(threads=N)` and two ahead-of-time shared
objects from the same LLVM module, identical except for the runtime behind the __kmpc_* calls:
linked against libomp, or with omp_team.c compiled in. Both are loaded into this process and called
in alternating blocks (6 calls each, the first dropped as warm-up; a 0.3 s pause between blocks
because libomp's workers keep spinning for its 200 ms KMP_BLOCKTIME after a region and would steal
the other block's cores). Wall time, medians over all kept calls, with the 1-thread JIT model as
the baseline. Writes bench/results/omp_team.md and omp_team.json atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dense import machine  # noqa: E402
from results_io import utc_stamp, write_atomic  # noqa: E402
from table1 import load_models  # noqa: E402

BLOCK = 6


def shared_objects(cm, td):
    """{runtime: runner} for the two builds of cm's module."""
    from lrc.targets.aot import build_host_artifact, open_native, read_meta

    runners = {}
    for rt, omp_runtime in (("libomp", "libomp"), ("lrc team", "lrc")):
        d = os.path.join(td, omp_runtime)
        os.makedirs(d)
        build_host_artifact(cm, d, omp_runtime)
        runners[rt] = open_native(d, read_meta(d))[0]
    return runners


def bench(name: str, threads: int, rounds: int) -> dict:
    import lrc

    _, pruned, x, _ = load_models(name)
    with torch.no_grad():
        ref = pruned(x).numpy()
    one = lrc.compile(pruned, (x,))
    cm = lrc.compile(pruned, (x,), threads=threads)
    xa = np.ascontiguousarray(x.numpy())
    out = np.empty(cm.output_shapes[0], np.float32)
    with tempfile.TemporaryDirectory(prefix="lrc-omp-bench-") as td:
        runners = shared_objects(cm, td)
        runners["1 thread (JIT)"] = lambda a, o: o.__setitem__(..., one(a))
        errors = {}
        for rt, run in runners.items():
            run(xa, out)
            errors[rt] = float(np.abs(out - ref).max() / max(1e-30, np.abs(ref).max()))
        times = {rt: [] for rt in runners}
        for r in range(rounds):
            order = list(runners)[r % len(runners):] + list(runners)[:r % len(runners)]
            for rt in order:
                time.sleep(0.3)
                for i in range(BLOCK):
                    t = time.perf_counter()
                    runners[rt](xa, out)
                    if i:
                        times[rt].append(time.perf_counter() - t)
    ms = {rt: statistics.median(v) * 1e3 for rt, v in times.items()}
    return {"model": name, "threads": threads, "ms": ms, "rel_error": errors,
            "team_over_libomp": ms["lrc team"] / ms["libomp"],
            "speedup_libomp": ms["1 thread (JIT)"] / ms["libomp"], "speedup_team": ms["1 thread (JIT)"] / ms["lrc team"]}


def to_markdown(rows, meta) -> str:
    L = ["# lrc's thread team vs libomp (host)", "",
         f"Machine: {meta['machine']}, {meta['date']}, {meta['threads']} threads on 2 shared vCPUs. Written by "
         "`bench/omp_team.py`: the same model built twice ahead of time (libomp / lib/omp_team.c), loaded in one "
         f"process, alternating blocks, wall-time medians of {meta['rounds'] * (BLOCK - 1)} calls each. The "
         "1-thread JIT model is the baseline. Ratios < 1 in `team / libomp` mean lrc's team is faster.", "",
         "| model | 1 thread ms | libomp ms | lrc team ms | team / libomp | speedup libomp | speedup team | max rel. error |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["ms"]
        L.append(f"| {r['model']} | {m['1 thread (JIT)']:.2f} | {m['libomp']:.2f} | {m['lrc team']:.2f} | "
                 f"{r['team_over_libomp']:.2f} | {r['speedup_libomp']:.2f}x | {r['speedup_team']:.2f}x | "
                 f"{max(r['rel_error'].values()):.1e} |")
    return "\n".join(L + [""])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="superres,style:hard,vgg16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    a = p.parse_args(argv)
    rows = []
    for name in a.models.split(","):
        r = bench(name, a.threads, a.rounds)
        rows.append(r)
        print(name, {k: round(v, 2) for k, v in r["ms"].items()}, f"team/libomp {r['team_over_libomp']:.2f}", flush=True)
    meta = {"machine": machine(), "threads": a.threads, "rounds": a.rounds,
            "date": utc_stamp()}
    bad = [r["model"] for r in rows if max(r["rel_error"].values()) > 1e-4]
    write_atomic(os.path.join(a.out, "omp_team.md"), to_markdown(rows, meta))
    write_atomic(os.path.join(a.out, "omp_team.json"), json.dumps({"meta": meta, "rows": rows}, indent=1))
    if bad:
        print("numerics outside 1e-4 relative:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
