"""Weight storage of the pruned models: dense vs CSR vs the serialised FKW form vs what the kernels read.

    .venv/bin/python bench/storage.py [--models style,style:hard,color,color:hard,superres,vgg16]

Bytes, not time, so one run is exact (no machine noise). Same pruned models as bench/table1.py. Per
model, over its sparse convs (the layers lrc stores compactly): the non-zero f32 values alone, the
dense weights, CSR (f32 values + int32 column indices + row pointers), FKW (`fkw_format.encode`:
what a pruned layer costs to store or ship) and the kernels' runtime tables; every ratio is over the
non-zero value bytes (issue 4 goal: FKW <= 1.15x). Also each model's worst layer, so a model
average cannot hide one (among layers with >= 1 KiB of non-zero values, and among all). Every layer's FKW bytes are decoded again and checked against its weights.
Writes bench/results/storage.md and storage.json atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from results_io import utc_stamp, write_atomic  # noqa: E402
from table1 import load_models, machine  # noqa: E402

BIG = 1024  # bytes of non-zero values from which a layer counts as big

KEYS = ("nonzero_value_bytes", "dense_bytes", "csr_bytes", "fkw_bytes", "runtime_bytes")


def layer_rows(model, x) -> list[dict]:
    import lrc
    from lrc.codegen.kernels import fkw_format
    from lrc.compiler import optimize
    from lrc.dialects import lr
    from lrc.transforms.fusion import lr_ops
    from lrc.transforms.sparse import storage_report

    module = lrc.import_model(model, (x,))
    optimize(module)
    rows = storage_report(module)
    # the report's sizes are computed, not encoded: encode and decode each layer once here
    convs = [lr.attrs_of(op) for op in lr_ops(module, "lr.conv2d")]
    convs = [a for a in convs if a.get("sparsity") and a["sparsity"]["kind"] != "none"]
    for r, a in zip(rows, convs):
        sp = a["sparsity"]
        lib = sp["library"] if sp["kind"] in ("pattern", "pattern+kernel") else None
        data = fkw_format.encode(a["weight"], lib)
        if len(data) != r["fkw_bytes"] or not np.array_equal(fkw_format.decode(data), a["weight"]):
            raise SystemExit(f"FKW round trip failed on {r['layer']}")
    return rows


def summarize(name: str, rows: list[dict], source: str) -> dict:
    tot = {k: sum(r[k] for r in rows) for k in KEYS}
    nz = max(1, tot["nonzero_value_bytes"])
    worst = max(rows, key=lambda r: r["fkw_over_values"])
    # a layer's ~12-byte header and library are a fixed cost, so the smallest layers are judged apart
    big = [r for r in rows if r["nonzero_value_bytes"] >= BIG] or rows
    worst_big = max(big, key=lambda r: r["fkw_over_values"])
    return {"model": name, "pruned": source, "sparse_convs": len(rows), **tot,
            **{k.replace("_bytes", "_over_values"): tot[k] / nz for k in KEYS[1:]},
            "worst_layer": worst["layer"], "worst_kind": worst["kind"], "worst_nnz": worst["nnz"],
            "worst_fkw_over_values": worst["fkw_over_values"], "worst_big_layer": worst_big["layer"],
            "worst_big_fkw_over_values": worst_big["fkw_over_values"], "layers": rows}


def to_markdown(models: list[dict], meta: dict) -> str:
    L = ["# Weight storage of the pruned models", "",
         f"Machine: {meta['machine']}, {meta['date']}. Written by `bench/storage.py` (bytes: exact, no timing). "
         "Over each model's sparse convs; ratios are over the bytes of the non-zero f32 values alone. "
         "FKW = `lrc.codegen.kernels.fkw_format` (per filter: kept kernels as a ranked channel subset + a "
         "pattern id each; weights dense, no per-weight index), round-trip checked per layer. Runtime = the "
         "int32 offset tables the generated kernels read. Issue 4 goal: FKW <= 1.15x (CSR ~2x).", "",
         "| model | pruned weights | sparse convs | non-zero KiB | dense / nz | CSR / nz | FKW / nz | runtime / nz "
         "| worst layer >= 1 KiB non-zeros: FKW / nz | worst layer of all (non-zeros): FKW / nz |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        L.append(f"| {m['model']} | {m['pruned']} | {m['sparse_convs']} | {m['nonzero_value_bytes'] / 1024:.1f} | "
                 f"{m['dense_over_values']:.2f} | {m['csr_over_values']:.3f} | **{m['fkw_over_values']:.3f}** | "
                 f"{m['runtime_over_values']:.3f} | {m['worst_big_layer']}: {m['worst_big_fkw_over_values']:.3f} | "
                 f"{m['worst_layer']} ({m['worst_nnz']}): {m['worst_fkw_over_values']:.3f} |")
    L += ["", f"Every model within 1.15x: {'yes' if all(m['fkw_over_values'] <= 1.15 for m in models) else '**no**'}; "
          f"every layer with >= 1 KiB of non-zero values: {'yes' if ok(models) else '**no**'}. "
          "Smaller layers pay the fixed ~12-byte header and the pattern library on few values; and at density d "
          "no code for random masks beats about 1 + H(d) / (32 d) (1.128x at d = 0.15), so a 1x1 layer "
          "pruned that hard sits near 1.13-1.14x whatever the header.", ""]
    return "\n".join(L)


def ok(models) -> bool:
    return all(m["fkw_over_values"] <= 1.15 and m["worst_big_fkw_over_values"] <= 1.15 for m in models)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="style,style:hard,color,color:hard,superres,vgg16")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    a = p.parse_args(argv)
    torch.manual_seed(0)
    models = []
    for name in a.models.split(","):
        _, pruned, x, source = load_models(name)
        m = summarize(name, layer_rows(pruned, x), source)
        models.append(m)
        print(f"{name}: FKW {m['fkw_over_values']:.3f}x, CSR {m['csr_over_values']:.3f}x of the non-zero bytes; "
              f"worst layer {m['worst_layer']} {m['worst_fkw_over_values']:.3f}x", flush=True)
    meta = {"machine": machine(), "date": utc_stamp()}
    write_atomic(os.path.join(a.out, "storage.md"), to_markdown(models, meta))
    write_atomic(os.path.join(a.out, "storage.json"), json.dumps({"meta": meta, "models": models}, indent=1))
    return 0 if ok(models) else 1


if __name__ == "__main__":
    sys.exit(main())
