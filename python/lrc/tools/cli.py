"""`lrc`: compile a PyTorch model from the command line, run a compiled one, report its sparsity.

    lrc compile model.pt --input-shape 1x3x224x224 -o model.lrc [--target arm64 --threads 4 --android-api 24]
    lrc compile mypkg.nets:make_net --weights ckpt.pt --input-shape 1x3x256x256 -o net.lrc
    lrc run model.lrc [--input x.npy] [--output y.npy] [--iters 20]
    lrc report model.pt --input-shape 1x3x224x224

MODEL is a file written by `torch.save(model)` (a whole nn.Module; it is unpickled, so only load
files you trust), or `module.path:callable` that returns an nn.Module (with `--weights`, a
state_dict file loaded into it). `compile` checks the compiled model against PyTorch on a random
input before it writes anything, and writes the artifact directory atomically; an existing output
is kept unless `--force`. Errors print one line `lrc: error: ...` and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import io
import os
import statistics
import sys
import time

from .atomic_write import write_atomic


class CliError(Exception):
    pass


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise CliError(f"--input-shape '{text}': expected sizes like 1x3x224x224") from None
    if not dims or any(d < 1 for d in dims):
        raise CliError(f"--input-shape '{text}': every size must be a positive integer")
    return dims


def load_model(spec: str, weights: str | None):
    import torch

    if ":" in spec and not os.path.exists(spec):
        mod_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise CliError(f"model '{spec}': cannot import {attr} from {mod_name} ({e})") from None
        model = factory()
    else:
        if not os.path.isfile(spec):
            raise CliError(f"model '{spec}': no such file (and not module.path:callable)")
        try:
            model = torch.load(spec, map_location="cpu", weights_only=False)
        except Exception as e:  # a corrupt or foreign file: say which, not a traceback
            raise CliError(f"model '{spec}': not a file written by torch.save ({type(e).__name__}: {e})") from None
    if not isinstance(model, torch.nn.Module):
        what = "a state_dict (load it into your model class and pass module:callable with --weights)" \
            if isinstance(model, dict) else type(model).__name__
        raise CliError(f"model '{spec}': expected an nn.Module, got {what}")
    if weights:
        if not os.path.isfile(weights):
            raise CliError(f"--weights '{weights}': no such file")
        try:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except Exception as e:
            raise CliError(f"--weights '{weights}': does not fit the model ({type(e).__name__}: {e})") from None
    return model.eval()


def _target_options(args) -> dict:
    opts = {}
    if args.threads != 1:
        opts["threads"] = args.threads
    if args.target == "arm64":
        if args.mcpu:
            opts["mcpu"] = args.mcpu
        if args.android_api:
            opts["android_api"] = args.android_api
    elif args.mcpu or args.android_api:
        raise CliError(f"--mcpu / --android-api apply to --target arm64, not {args.target}")
    return opts


def cmd_compile(args) -> None:
    import numpy as np
    import torch

    import lrc

    out = os.path.abspath(args.output)
    if os.path.exists(out) and not args.force:
        raise CliError(f"{out} exists; pass --force to replace it")
    model = load_model(args.model, args.weights)
    x = torch.randn(parse_shape(args.input_shape), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    try:
        cm = lrc.compile(model, (x,), target=args.target, **_target_options(args))
    except (ValueError, NotImplementedError) as e:
        raise CliError(f"cannot compile {args.model}: {e}") from None
    compile_s = time.perf_counter() - t0
    with torch.no_grad():
        ref = model(x)
    check = "not run here (Android build)" if args.target == "arm64" and args.android_api else None
    if check is None:
        got = cm(x)
        pairs = zip(ref if isinstance(ref, tuple) else (ref,), got if isinstance(got, tuple) else (got,))
        worst = 0.0
        for r, g in pairs:
            r, g = r.numpy(), np.asarray(g)
            err, tol = float(np.abs(r - g).max()), 1e-4 * float(np.abs(r).max()) + 1e-5
            if not err <= tol:
                raise CliError(f"the compiled model differs from PyTorch (max abs error {err:.3g} > {tol:.3g}); "
                               "nothing was written")
            worst = max(worst, err / max(float(np.abs(r).max()), 1e-30))
        check = f"matches PyTorch (max error {worst:.1e} of max|output|)"
    cm.save(out, overwrite=args.force)
    sparse = cm.lr_ir.count("#lr.sparsity<")
    convs = cm.lr_ir.count('"lr.conv2d"')
    print(f"lrc: compiled {args.model} for {args.target} in {compile_s:.1f} s: {convs} convs, {sparse} with sparse "
          f"structure; {check}; wrote {out}")


def cmd_run(args) -> None:
    import numpy as np

    import lrc

    if not os.path.isdir(args.artifact):
        raise CliError(f"{args.artifact}: no such artifact directory")
    try:
        cm = lrc.load(args.artifact)
    except (FileNotFoundError, ValueError, RuntimeError, NotImplementedError) as e:
        raise CliError(str(e)) from None
    shape = tuple(cm.input_shapes[0])
    if args.input:
        try:
            x = np.load(args.input).astype(np.float32)
        except (OSError, ValueError) as e:
            raise CliError(f"--input '{args.input}': not a .npy array ({e})") from None
        if x.shape != shape:
            raise CliError(f"--input '{args.input}': shape {list(x.shape)}, the model takes {list(shape)}")
    else:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = cm(x)
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        cm(x)
        times.append(time.perf_counter() - t)
    if args.output:
        if os.path.abspath(args.output) == os.path.abspath(args.input or ""):
            raise CliError("--output is the input file; refusing to overwrite it")
        buf = io.BytesIO()
        np.save(buf, np.asarray(y if not isinstance(y, tuple) else y[0]))
        write_atomic(args.output, buf.getvalue())
    msg = f"lrc: {args.artifact} ({cm.target}): input {list(shape)} -> output {list(np.shape(y))}"
    if times:
        msg += f"; median {statistics.median(times) * 1e3:.2f} ms over {len(times)} runs"
    print(msg)


def cmd_report(args) -> None:
    import torch

    import lrc
    from lrc.compiler import optimize
    from lrc.transforms.sparse import storage_report

    model = load_model(args.model, args.weights)
    x = torch.randn(parse_shape(args.input_shape))
    try:
        module = lrc.import_model(model, (x,))
    except (ValueError, NotImplementedError) as e:
        raise CliError(f"cannot import {args.model}: {e}") from None
    optimize(module)
    rows = storage_report(module)
    if not rows:
        print("lrc: no conv with sparse structure (after lr-shrink-pruned-channels removed dead channels)")
        return
    print(f"{'layer':32s} {'kind':15s} {'non-zeros':>10s} {'dense/nz':>9s} {'CSR/nz':>7s} {'FKW/nz':>7s}")
    for r in rows:
        nz = max(1, r["nonzero_value_bytes"])
        print(f"{r['layer'][:32]:32s} {r['kind']:15s} {r['nnz']:10d} {r['dense_bytes'] / nz:9.2f} "
              f"{r['csr_bytes'] / nz:7.3f} {r['fkw_bytes'] / nz:7.3f}")
    tot = {k: sum(r[k] for r in rows) for k in ("nonzero_value_bytes", "dense_bytes", "csr_bytes", "fkw_bytes")}
    nz = max(1, tot["nonzero_value_bytes"])
    print(f"{'all sparse convs':32s} {'':15s} {tot['nonzero_value_bytes'] // 4:10d} {tot['dense_bytes'] / nz:9.2f} "
          f"{tot['csr_bytes'] / nz:7.3f} {tot['fkw_bytes'] / nz:7.3f}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lrc", description="Compile pruned PyTorch models with lrc.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="compile a model into an artifact directory")
    r = sub.add_parser("report", help="per-layer sparsity and storage of a model")
    for q in (c, r):
        q.add_argument("model", help="torch.save'd nn.Module file, or module.path:callable")
        q.add_argument("--weights", help="state_dict file to load into the model")
        q.add_argument("--input-shape", required=True, help="e.g. 1x3x224x224")
    c.add_argument("-o", "--output", required=True, help="artifact directory to write")
    c.add_argument("--target", default="host", choices=("host", "arm64", "vulkan", "opencl"))
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--mcpu", help="arm64: CPU to tune for (default cortex-a76)")
    c.add_argument("--android-api", type=int, help="arm64: build for Android at this API level (e.g. 24)")
    c.add_argument("--force", action="store_true", help="replace an existing output directory")
    u = sub.add_parser("run", help="run (and time) a compiled artifact")
    u.add_argument("artifact")
    u.add_argument("--input", help=".npy input (default: a random one)")
    u.add_argument("--output", help=".npy file for the first output")
    u.add_argument("--iters", type=int, default=0, help="timed runs after the first (median printed)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"compile": cmd_compile, "run": cmd_run, "report": cmd_report}[args.cmd](args)
    except CliError as e:
        print(f"lrc: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
