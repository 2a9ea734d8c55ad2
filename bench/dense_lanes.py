"""Dense conv kernels at 8 vs 16 f32 lanes, layer by layer, and what `dense_lanes` picks (1 thread).

Both widths are JIT-compiled with 32 vector registers and called through prepared ctypes calls,
alternating their order every run; CPU time (`time.thread_time`), medians. Needs an AVX-512F/VL
CPU (the 16-lane code uses zmm registers).

    .venv/bin/python bench/dense_lanes.py            # -> bench/results/dense_lanes.md
    .venv/bin/python bench/dense_lanes.py --quick    # fewer layers and runs, no file
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from results_io import utc_stamp, write_atomic  # noqa: E402

from lrc.codegen.kernels import conv as convk  # noqa: E402
from lrc.codegen.kernels.conv import ConvSpec, dense_lanes, emit_conv_func, pack_conv_weights  # noqa: E402
from lrc.codegen.kernels.testing import assert_close, conv_ref, jit_kernels, prepared_call  # noqa: E402
from lrc.targets.aot import cpu_flags  # noqa: E402


def conv(cin, cout, hw, k=3, s=1, groups=1, residual=False):
    return ConvSpec(1, cin, hw, hw, cout, k, k, stride=(s, s), padding=(k // 2,) * 4, groups=groups, act="relu",
                    residual=residual)


LAYERS = [conv(3, 32, 224, 7, 2), conv(3, 16, 224), conv(16, 16, 224), conv(32, 32, 112), conv(64, 64, 112),
          conv(32, 32, 256), conv(32, 26, 256), conv(32, 64, 256, s=2), conv(32, 32, 56), conv(64, 64, 56),
          conv(64, 64, 112, s=2), conv(128, 128, 32), conv(32, 128, 56, 1), conv(128, 32, 56, 1),
          conv(32, 128, 56, 1, residual=True), conv(128, 512, 28, 1), conv(512, 128, 28, 1),
          conv(128, 256, 56, 1, s=2), conv(192, 26, 256, 1), conv(26, 192, 256, 1), conv(96, 96, 56, groups=96)]
QUICK = LAYERS[:3] + LAYERS[8:9] + LAYERS[12:13]


def describe(s: ConvSpec) -> str:
    kind = "depthwise " if s.groups == s.C and s.groups > 1 else ""
    res = " + residual" if s.residual else ""
    return f"{kind}{s.KH}x{s.KW} s{s.stride[0]} {s.C}->{s.K} at {s.H}x{s.W} (out {s.OW} wide){res}"


def measure(spec: ConvSpec, runs: int, rng) -> dict:
    x = rng.standard_normal((1, spec.C, spec.H, spec.W)).astype(np.float32)
    w = (rng.standard_normal((spec.K, spec.C // spec.groups, spec.KH, spec.KW)) * 0.1).astype(np.float32)
    b = rng.standard_normal(spec.K).astype(np.float32)
    r = rng.standard_normal((1, spec.K, spec.OH, spec.OW)).astype(np.float32) if spec.residual else None
    ref = conv_ref(spec, x, w, b, r)
    emit, args = [], {}
    for lanes in (8, 16):
        s = replace(spec, vec=lanes)
        packed = pack_conv_weights(s, w, b)
        emit.append((f"k{lanes}", lambda name, s=s, packed=packed: emit_conv_func(s, name, packed)))
        args[lanes] = [x] + packed + ([r] if r is not None else []) + [np.zeros_like(ref)]
    jm = jit_kernels(emit)
    calls = {lanes: prepared_call(jm, f"k{lanes}_c", *args[lanes]) for lanes in (8, 16)}
    for lanes, call in calls.items():
        call()
        assert_close(args[lanes][-1], ref, f"{describe(spec)} at {lanes} lanes")
    times = {8: [], 16: []}
    for i in range(runs):
        for lanes in ((8, 16) if i % 2 else (16, 8)):
            t0 = time.thread_time()
            calls[lanes]()
            times[lanes].append(time.thread_time() - t0)
    med = {lanes: statistics.median(v) for lanes, v in times.items()}
    return {"gflops": {lanes: spec.flops / t / 1e9 for lanes, t in med.items()}, "ratio": med[16] / med[8],
            "picked": dense_lanes(spec)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dense_lanes.md"))
    args = ap.parse_args(argv)
    if not {"avx512f", "avx512vl"} <= cpu_flags():
        print("dense_lanes: this CPU has no AVX-512F/VL; 16-lane kernels cannot run here", file=sys.stderr)
        return 2
    os.environ.pop("LRC_VECTOR_REGISTERS", None)
    convk.VECTOR_REGISTERS = 32
    rng = np.random.default_rng(0)
    rows = []
    for spec in QUICK if args.quick else LAYERS:
        runs = max(11, min(41, int(0.3 / (spec.flops / 1e11))))
        m = measure(spec, 5 if args.quick else runs, rng)
        line = (f"| {describe(spec)} | {m['gflops'][8]:.0f} | {m['gflops'][16]:.0f} | {m['ratio']:.3f} | "
                f"{m['picked']} |")
        print(line, flush=True)
        rows.append(line)
    if args.quick:
        return 0
    text = "\n".join([
        "# Dense conv kernels: 8 vs 16 lanes",
        "",
        f"Machine: {platform.processor() or platform.machine()}, 1 thread, 32 vector registers. {utc_stamp()}.",
        "Written by `bench/dense_lanes.py`; kernel alone, CPU time, medians (11-41 runs, the two widths",
        "alternating). `picked`: what `conv.dense_lanes` gives the layer on this CPU. A shared machine:",
        "compare the two columns of a row, not rows with each other.",
        "",
        "| layer | GFLOP/s, 8 lanes | GFLOP/s, 16 lanes | time 16 / 8 | picked |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])
    write_atomic(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
