"""Dense kernel benchmark: lrc's emitted conv / linear / transposed-conv kernels vs torch, 1 thread.

Each kernel is JIT-compiled through the shipping pipeline (lrc.targets.llvm via JitModule) and called
through a prepared ctypes call (descriptors built once), so the numbers are kernel time, not the
~0.2 ms per call that JitModule.call spends building descriptors. lrc and torch calls alternate so that
both see the same machine load; the table reports the median of the runs (and the best run).

    .venv/bin/python bench/kernels.py            # full table -> bench/results/kernels.md
    .venv/bin/python bench/kernels.py --quick    # fewer runs, no 25088x4096 linear, no file
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import torch  # noqa: E402

from results_io import write_atomic  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lrc.codegen.kernels.conv import ConvSpec, emit_conv_func, pack_conv_weights, vector_registers  # noqa: E402
from lrc.codegen.kernels.conv_transpose import (ConvTransposeSpec, emit_conv_transpose_func,  # noqa: E402
                                               pack_conv_transpose_weights)
from lrc.codegen.kernels.linear import LinearSpec, emit_linear_func, pack_linear_weights  # noqa: E402
from lrc.codegen.kernels.testing import (assert_close, conv_ref, conv_transpose_ref, jit_kernels,  # noqa: E402
                                         linear_ref, prepared_call)

P1 = (1, 1, 1, 1)


@dataclass
class Case:
    name: str
    spec: object
    quick: bool = True


CASES = [
    Case("conv 3x3 64->64 128x128", ConvSpec(1, 64, 128, 128, 64, 3, 3, padding=P1)),
    Case("conv 3x3 64->64 56x56", ConvSpec(1, 64, 56, 56, 64, 3, 3, padding=P1)),
    Case("conv 3x3 s2 64->64 112x112", ConvSpec(1, 64, 112, 112, 64, 3, 3, stride=(2, 2), padding=P1)),
    Case("conv 1x1 64->256 56x56", ConvSpec(1, 64, 56, 56, 256, 1, 1)),
    Case("depthwise 3x3 32ch 112x112", ConvSpec(1, 32, 112, 112, 32, 3, 3, padding=P1, groups=32)),
    Case("conv 7x7 3->32 256x256", ConvSpec(1, 3, 256, 256, 32, 7, 7, padding=(3, 3, 3, 3))),
    Case("conv 1x1 192->26 256x256 (pixel blocks)", ConvSpec(1, 192, 256, 256, 26, 1, 1)),
    Case("conv 3x3 26->32 256x256 (row bands)", ConvSpec(1, 26, 256, 256, 32, 3, 3, padding=P1)),
    Case("conv 3x3 256->256 7x7", ConvSpec(1, 256, 7, 7, 256, 3, 3, padding=P1)),
    Case("linear 4096->1000 (M=1)", LinearSpec(1, 4096, 1000)),
    Case("linear 25088->4096 (M=1)", LinearSpec(1, 25088, 4096), quick=False),
    Case("conv_transpose 3x3 s2 64->32 56x56", ConvTransposeSpec(1, 64, 56, 56, 32, 3, 3, (2, 2), P1, (1, 1))),
    Case("conv_transpose 4x4 s2 64->32 56x56", ConvTransposeSpec(1, 64, 56, 56, 32, 4, 4, (2, 2), P1)),
]


def _setup(case: Case, rng):
    """(inputs, packed, out, emit, torch_fn, reference)"""
    s = case.spec
    if isinstance(s, ConvSpec):
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = (rng.standard_normal((s.K, s.C // s.groups, s.KH, s.KW)) * 0.1).astype(np.float32)
        b = rng.standard_normal(s.K).astype(np.float32)
        packed = pack_conv_weights(s, w, b)
        out = np.zeros(s.N * s.K * s.OH * s.OW, np.float32)
        xt, wt, bt = map(torch.from_numpy, (x, w, b))
        pt, pl, pb, pr = s.padding
        assert (pt, pl) == (pb, pr)
        fn = lambda: F.conv2d(xt, wt, bt, s.stride, (pt, pl), s.dilation, s.groups)  # noqa: E731
        return x, packed, out, lambda n: emit_conv_func(s, n, packed), fn, lambda: conv_ref(s, x, w, b)
    if isinstance(s, LinearSpec):
        x = rng.standard_normal((s.M, s.IN)).astype(np.float32)
        w = (rng.standard_normal((s.OUT, s.IN)) * 0.01).astype(np.float32)
        b = rng.standard_normal(s.OUT).astype(np.float32)
        packed = pack_linear_weights(s, w, b)
        out = np.zeros(s.M * s.OUT, np.float32)
        xt, wt, bt = map(torch.from_numpy, (x, w, b))
        return x, packed, out, lambda n: emit_linear_func(s, n, packed), lambda: F.linear(xt, wt, bt), \
            lambda: linear_ref(s, x, w, b)
    x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
    w = (rng.standard_normal((s.C, s.K // s.groups, s.KH, s.KW)) * 0.1).astype(np.float32)
    b = rng.standard_normal(s.K).astype(np.float32)
    packed = pack_conv_transpose_weights(s, w, b)
    out = np.zeros(s.N * s.K * s.OH * s.OW, np.float32)
    xt, wt, bt = map(torch.from_numpy, (x, w, b))
    pt, pl, _, _ = s.padding
    fn = lambda: F.conv_transpose2d(xt, wt, bt, s.stride, (pt, pl), s.output_padding, s.groups, s.dilation)  # noqa: E731
    return x, packed, out, lambda n: emit_conv_transpose_func(s, n, packed), fn, lambda: conv_transpose_ref(s, x, w, b)


def _time(fn_a, fn_b, runs: int, warmup: int = 3):
    for _ in range(warmup):
        fn_a()
        fn_b()
    ta, tb = [], []
    for _ in range(runs):
        t = time.perf_counter()
        fn_a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        fn_b()
        tb.append(time.perf_counter() - t)
    return np.array(ta), np.array(tb)


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
        else:
            model = platform.processor()
        flags = open("/proc/cpuinfo").read()
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?"
        fam = next((line.split(":")[1].strip() for line in out.splitlines() if line.startswith("CPU family:")), "?")
        mod = next((line.split(":")[1].strip() for line in out.splitlines() if line.startswith("Model:")), "?")
        return f"{model} (family {fam}, model {mod}, {isa}), {os.cpu_count()} vCPUs"
    except Exception:  # pragma: no cover - informational only
        return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs, skip the 400 MB linear, write no file")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per kernel (default 20, quick 10)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "kernels.md"))
    args = ap.parse_args(argv)
    runs = args.runs or (10 if args.quick else 20)
    torch.set_num_threads(1)
    # the tiles the host target builds (32 registers on AVX-512VL hosts, else 16)
    from lrc.codegen.kernels import conv as convk
    from lrc.targets.host import host_vector_registers

    convk.VECTOR_REGISTERS = convk.VECTOR_REGISTERS or host_vector_registers()
    rng = np.random.default_rng(0)
    rows = []
    for case in CASES:
        if args.quick and not case.quick:
            continue
        x, packed, out, emit, torch_fn, ref = _setup(case, rng)
        t0 = time.perf_counter()
        jm = jit_kernels([("k", emit)])
        call = prepared_call(jm, "k_c", x.reshape(-1), *packed, out)
        call()  # the first call finishes JIT compilation
        compile_s = time.perf_counter() - t0
        assert_close(out, ref(), case.name)
        ta, tb = _time(call, torch_fn, runs)
        flops = case.spec.flops
        r = dict(name=case.name, lrc=np.median(ta), lrc_min=ta.min(), torch=np.median(tb), torch_min=tb.min(),
                 flops=flops, compile=compile_s)
        rows.append(r)
        print(f"{case.name:38s} lrc {r['lrc'] * 1e3:8.3f} ms {flops / r['lrc'] / 1e9:6.1f} GF/s | "
              f"torch {r['torch'] * 1e3:8.3f} ms {flops / r['torch'] / 1e9:6.1f} GF/s | "
              f"lrc/torch {r['lrc'] / r['torch']:.2f} | compile {compile_s:.2f} s", flush=True)
        del jm, call
    table = [
        "| kernel | lrc ms (median / best) | lrc GFLOP/s | torch ms (median / best) | torch GFLOP/s | lrc/torch time | JIT s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        table.append(
            f"| {r['name']} | {r['lrc'] * 1e3:.3f} / {r['lrc_min'] * 1e3:.3f} | {r['flops'] / r['lrc'] / 1e9:.1f} | "
            f"{r['torch'] * 1e3:.3f} / {r['torch_min'] * 1e3:.3f} | {r['flops'] / r['torch'] / 1e9:.1f} | "
            f"{r['lrc'] / r['torch']:.2f} | {r['compile']:.2f} |")
    if args.quick:
        return 0
    text = "\n".join([
        "# Dense kernel benchmark (bench/kernels.py)",
        "",
        f"- machine: {machine()}",
        f"- date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- torch {torch.__version__}, 1 thread (torch.set_num_threads(1)); lrc kernels with vec=8 "
        f"(vector<8xf32>), tiles for {vector_registers(8)} vector registers, JIT at -O3 through "
        f"lrc.targets.llvm.LLVM_PIPELINE",
        f"- {runs} timed runs after 3 warm-up runs, lrc and torch alternating; median and best wall time",
        "- batch 1, fp32, bias added, no activation; FLOPs = 2 x MACs (transposed conv: MACs of the "
        "useful taps)",
        "- the machine is shared with other developers: expect +-10% between runs",
        "",
        *table,
        "",
    ])
    dst = Path(args.out)
    write_atomic(str(dst), text)
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
