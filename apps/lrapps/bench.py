"""Dense PyTorch latency of the apps at their benchmark sizes.

``python -m lrapps.bench [--threads 1] [--repeat 5] [--app style ...]``

This is the baseline the compiled (pruned) code is compared against. The
minimum over repeats is reported: on a shared machine the mean mostly
measures other people's jobs.
"""

from __future__ import annotations

import argparse
import time

import torch

from . import models


def latency_ms(model, x, repeat: int = 5, warmup: int = 1) -> float:
    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t)
    return best * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lrapps.bench", description=__doc__)
    p.add_argument("--app", nargs="*", default=sorted(models.APPS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for app in args.app:
        configs = [{}] if app != "superres" else [{"scale": 2}, {"scale": 4}]
        for cfg in configs:
            m = models.build(app, **cfg)
            x = models.example_input(app)
            n = sum(q.numel() for q in m.parameters())
            ms = latency_ms(m, x, args.repeat)
            with torch.no_grad():
                out = tuple(m(x).shape)
            tag = app + (f" x{cfg['scale']}" if cfg else "")
            print(f"{tag:12s} in={tuple(x.shape)} out={out} params={n:,} "
                  f"({n * 4 / 1e6:.1f} MB fp32)  {ms:.0f} ms @ {args.threads} thread(s)")


if __name__ == "__main__":
    main()
