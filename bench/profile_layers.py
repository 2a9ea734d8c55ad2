"""Per-layer time of a compiled model: each fused lr op is compiled alone and timed (1 thread).

    .venv/bin/python bench/profile_layers.py resnet_bottleneck [--size app] [--top 15]
    .venv/bin/python bench/profile_layers.py superres --checkpoint apps/checkpoints/superres_pruned.pt
    .venv/bin/python bench/profile_layers.py vgg16 --table1        (the pruned model of a Table 1 row:
                                                                    vgg16, color:hard, style:hard, ...)
    .venv/bin/python bench/profile_layers.py resnet_basic --in-model   (each layer timed inside the
                                                                    whole model too, next to alone)

Shows where a model's time goes, with GFLOP/s for conv/linear layers, so kernel work is aimed at
the layers that matter.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch_mlir import ir  # noqa: E402
from torch_mlir.dialects import func  # noqa: E402

torch.set_num_threads(1)

import lrc  # noqa: E402
from lrc.codegen.lower import lower_to_kernels  # noqa: E402
from lrc.dialects import lr  # noqa: E402
from lrc.runtime.jit import JitModule  # noqa: E402


def layer_macs(name, attrs, in_shapes, out_shape):
    if name == "conv2d":
        k, cg, kh, kw = attrs["weight"].shape
        return int(np.prod(out_shape)) * cg * kh * kw
    if name == "linear":
        return int(np.prod(out_shape)) * attrs["weight"].shape[1]
    if name == "conv_transpose2d":
        c, kg, kh, kw = attrs["weight"].shape
        return int(np.prod(in_shapes[0])) * kg * kh * kw
    return 0


def nz_macs(name, attrs, out_shape):
    """MACs on non-zero weights (conv/linear), for the sparse layers' GFLOP/s."""
    if name not in ("conv2d", "linear"):
        return 0
    w = np.asarray(attrs["weight"])
    per = int(np.prod(out_shape)) // w.shape[0]
    return per * int(np.count_nonzero(w))


def kernel_kind(name, attrs, in_shape, out_shape) -> str:
    """'sparse' / 'winograd' / 'dense': the kernel the lowering's cost model picks for this conv."""
    if name != "conv2d":
        return "dense" if name == "linear" else ""
    from lrc.codegen.emit import Kernel, LayerOp
    from lrc.codegen.kernels.winograd import use_winograd
    from lrc.codegen.ops_dense import _conv_spec, _sparse_pack

    k = Kernel("", 8)
    op = LayerOp(name=name, attrs=attrs, in_shapes=[in_shape], out_shape=out_shape, location=None)
    spec = _conv_spec(k, op)
    if attrs.get("sparsity") is not None and _sparse_pack(spec, attrs) is not None:
        return "sparse"
    return "winograd" if use_winograd(spec) else "dense"


def profile(model, x, repeats=5, chain=True):
    from lrc.transforms import DEFAULT_OPT_PIPELINE

    mod = lrc.import_model(model, (x,))
    lrc.optimize(mod, DEFAULT_OPT_PIPELINE if chain else DEFAULT_OPT_PIPELINE.replace(", lr-fuse-pointwise-chain", ""))
    fn = [o for o in mod.body.operations if o.operation.name == "func.func"][0]
    rows = []
    ctx = mod.context
    from lrc.transforms.pointwise_chain import CHAIN_ATTR, chain_consumer

    fused = set()  # consumers profiled together with their marked producer (lr-fuse-pointwise-chain)
    for i, op in enumerate(fn.regions[0].blocks[0].operations):
        op = op.operation
        if not op.name.startswith("lr.") or op.name == "lr.reshape" or op in fused:
            continue
        # A marked 1x1 pair is timed as one layer, as the lowering may fuse it into one kernel.
        user = chain_consumer(op) if CHAIN_ATTR in op.attributes else None
        ops = [op] if user is None else [op, user]
        fused.update(ops[1:])
        last = ops[-1]
        with ctx, ir.Location.unknown():
            single = ir.Module.create()
            in_types = [v.type for v in op.operands] + [v.type for v in list(last.operands)[1:] if user is not None]
            with ir.InsertionPoint(single.body):
                f = func.FuncOp("forward", (in_types, [last.results[0].type]))
                b = f.add_entry_block()
            with ir.InsertionPoint(b):
                args = list(b.arguments)
                clone = op.clone()
                for j in range(len(op.operands)):
                    clone.operands[j] = args[j]
                if user is not None:
                    c2 = user.clone()
                    c2.operands[0] = clone.results[0]
                    for j in range(1, len(user.operands)):
                        c2.operands[j] = args[len(op.operands) + j - 1]
                    clone = c2
                func.ReturnOp([clone.results[0]])
            jit = JitModule(lower_to_kernels(single))
        ins = [np.random.rand(*t.shape).astype(np.float32) for t in in_types]
        out = np.empty(tuple(last.results[0].type.shape), np.float32)
        jit.call("forward", *ins, out)
        ts = []
        for _ in range(repeats):
            # CPU time of this thread: other jobs share the host's cores.
            t = time.thread_time()
            jit.call("forward", *ins, out)
            ts.append(time.thread_time() - t)
        ms = statistics.median(ts) * 1e3
        name = op.name[3:]
        attrs = lr.attrs_of(op)
        macs = layer_macs(name, attrs, [tuple(t.shape) for t in in_types], tuple(op.results[0].type.shape))
        desc = name
        if name == "conv2d":
            k, cg, kh, kw = attrs["weight"].shape
            desc = conv_desc(kh, kw, attrs["stride"][0], attrs["groups"], k, tuple(in_types[0].shape))
        if user is not None:
            a2 = lr.attrs_of(user)
            macs += layer_macs("conv2d", a2, [tuple(op.results[0].type.shape)], tuple(user.results[0].type.shape))
            desc = chain_desc(desc, a2["weight"].shape[0])
        nz = nz_macs(name, attrs, tuple(op.results[0].type.shape))
        kind = "chain" if user is not None else kernel_kind(name, attrs, tuple(in_types[0].shape),
                                                            tuple(op.results[0].type.shape))
        if user is not None:
            nz += nz_macs("conv2d", lr.attrs_of(user), tuple(user.results[0].type.shape))
        rows.append({"i": i, "layer": desc, "ms": ms, "gflops": 2 * macs / (ms * 1e-3) / 1e9 if macs else 0.0,
                     "nz_gflops": 2 * nz / (ms * 1e-3) / 1e9 if nz else 0.0, "kind": kind,
                     "macs": macs, "nz_macs": nz})
    return rows


def conv_desc(kh, kw, stride, groups, k, in_shape) -> str:
    """How both profiles name a conv layer (print_in_model matches the two by these names)."""
    return f"conv {kh}x{kw} s{stride} g{groups} {in_shape[1]}->{k} @{in_shape[2]}x{in_shape[3]}"


def chain_desc(first: str, k2: int) -> str:
    return f"{first}+1x1 ->{k2} (chain)"


def describe(layer) -> str:
    """A lowered layer (codegen.emit.LayerOp) in the words `profile` uses."""
    a = layer.attrs
    if layer.name != "conv2d":
        return layer.name
    chain = a.get("pointwise_chain")
    if chain is not None:  # the fused pair, named after its first conv as profile() names it
        s1 = chain.first.spec
        return chain_desc(conv_desc(s1.KH, s1.KW, s1.stride[0], s1.groups, s1.K, (s1.N, s1.C, s1.H, s1.W)),
                          chain.second.spec.K)
    k, cg, kh, kw = a["weight"].shape
    desc = conv_desc(kh, kw, a["stride"][0], a["groups"], k, layer.in_shapes[0])
    return desc + " + max_pool2d (fused)" if a.get("pool") else desc


def profile_in_model(model, x, repeats=21):
    """Each layer's CPU time inside the whole compiled model: the entry function calls back into
    Python after every layer (lower.LAYER_MARKS), which reads the thread's CPU clock. Differences from
    `profile` (each layer compiled and timed alone, its data hot) show what a layer loses to the
    model around it: inputs and weights coming from L3 or DRAM, the previous layer's write-backs.
    Returns (rows, whole-model ms with marks, without marks, the lowered layers)."""
    import ctypes

    from lrc.codegen import lower as L
    from lrc.codegen.lower import arena_entry
    from lrc.runtime.arena import entry_arena_bytes
    from lrc.transforms import DEFAULT_OPT_PIPELINE

    jits = {}
    for marked in (True, False):
        mod = lrc.import_model(model, (x,))
        lrc.optimize(mod, DEFAULT_OPT_PIPELINE)
        marks = [] if marked else None
        L.LAYER_MARKS = marks
        try:
            kernels = lower_to_kernels(mod)
        finally:
            L.LAYER_MARKS = None
        jits[marked] = (JitModule(kernels), entry_arena_bytes(kernels, "forward"), marks)
    stamps: list = []
    cb = ctypes.CFUNCTYPE(None, ctypes.c_int64)(lambda t: stamps.append((t, time.thread_time_ns())))
    jits[True][0].engine.register_runtime(L.MARK_FN, cb)
    xin = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    out = np.empty(tuple(model(x).shape), np.float32)
    runs = {True: [], False: []}
    per_layer: dict = {}
    for r in range(repeats + 2):
        for marked in ((True, False) if r % 2 else (False, True)):
            jit, nbytes, _ = jits[marked]
            arena = np.empty(max(nbytes, 1), np.uint8)
            args = [xin, out] + ([arena] if nbytes else [])
            entry = arena_entry("forward") if nbytes else "forward"
            jit.call(entry, *args)  # the arena's pages faulted in, as a kept arena's are
            stamps.clear()
            t0 = time.thread_time_ns()
            jit.call(entry, *args)
            t1 = time.thread_time_ns()
            if r < 2:
                continue
            runs[marked].append((t1 - t0) / 1e6)
            if marked:
                prev = t0
                for t, ts in stamps:
                    per_layer.setdefault(t, []).append((ts - prev) / 1e6)
                    prev = ts
    fname, layers = jits[True][2][0]
    rows = [{"i": t, "layer": describe(layers[t]), "ms": statistics.median(v)} for t, v in sorted(per_layer.items())]
    return rows, statistics.median(runs[True]), statistics.median(runs[False]), layers


def main(argv=None):
    import zoo

    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--size", default="app")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--checkpoint", help="an lrapps checkpoint (e.g. apps/checkpoints/superres_pruned.pt); "
                   "the model argument is then the app name, for its example input")
    p.add_argument("--no-chain", action="store_true", help="without lr-fuse-pointwise-chain (1x1 pairs unfused)")
    p.add_argument("--table1", action="store_true", help="the model argument names a bench/table1.py row "
                   "(vgg16, color:hard, style:hard, ...): profile its pruned model")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--in-model", action="store_true",
                   help="also time every layer inside the whole compiled model (profile_in_model) and show "
                        "both columns")
    p.add_argument("--ort", action="store_true", help="with --in-model: ONNX Runtime's own per-node times "
                   "(its profiler, 1 thread) for the same layers, matched by kind and output shape")
    a = p.parse_args(argv)
    # Same tiles as the host target builds (32 vector registers on AVX-512VL CPUs).
    from lrc.codegen.kernels import conv as convk
    from lrc.targets.host import host_vector_registers

    convk.VECTOR_REGISTERS = convk.VECTOR_REGISTERS or host_vector_registers()
    if a.table1:
        sys.path.insert(0, os.path.join(HERE, "..", "apps"))
        import table1

        _, model, x, _ = table1.load_models(a.model)
    elif a.checkpoint:
        sys.path.insert(0, os.path.join(HERE, "..", "apps"))
        from lrapps import models

        model, x = models.load(a.checkpoint), models.example_input(a.model)
    else:
        model, x = zoo.ZOO[a.model](a.size)
    if a.in_model:
        return print_in_model(a, model.eval(), x)
    rows = profile(model.eval(), x, repeats=a.repeats, chain=not a.no_chain)
    total = sum(r["ms"] for r in rows)
    print(f"{a.model}: {len(rows)} layers, sum {total:.1f} ms")
    by_kind: dict = {}
    for r in rows:
        k = r["layer"].split(" @")[0] if r["layer"].startswith("conv ") else r["layer"]
        k = k.split(" ")[0] + (" " + k.split(" ")[1] if k.startswith("conv ") else "")
        k = f"{k} ({r['kind']})" if r["kind"] else k
        by_kind[k] = by_kind.get(k, 0) + r["ms"]
    for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {k:20s} {v:8.2f} ms  {100 * v / total:5.1f}%")
    print("top layers:")
    for r in sorted(rows, key=lambda r: -r["ms"])[:a.top]:
        nz = f"  {r['nz_gflops']:6.1f} non-zero ({r['macs'] / max(1, r['nz_macs']):.2f}x fewer)" if r["nz_macs"] else ""
        print(f"  #{r['i']:<4d} {r['layer']:45s} {r['kind']:8s} {r['ms']:8.2f} ms  {r['gflops']:6.1f} GFLOP/s{nz}")


ORT_KINDS = {"conv2d": ("Conv", "FusedConv", "NchwcConv"), "max_pool2d": ("MaxPool", "NchwcMaxPool"),
             "avg_pool2d": ("AveragePool", "NchwcAveragePool"), "linear": ("Gemm", "FusedGemm", "MatMul"),
             "adaptive_avg_pool2d": ("GlobalAveragePool", "NchwcGlobalAveragePool", "AveragePool")}


def ort_node_times(model, x, repeats=25):
    """ONNX Runtime's own per-node times for the model (1 thread, `SessionOptions.enable_profiling`):
    [(op type, output shape, median ms)] in execution order, for the nodes after ORT's graph rewrites
    (its convs run in NCHWc, fused with their activation and residual add)."""
    import json
    import tempfile

    from dense import ort_inference_session  # (bench/dense.py; it pins torch to 1 thread, as here)

    sess = ort_inference_session(model, x, profile_prefix=os.path.join(tempfile.mkdtemp(), "ort"))
    feed = {sess.get_inputs()[0].name: x.numpy()}
    for _ in range(repeats):
        sess.run(None, feed)
    with open(sess.end_profiling()) as fh:
        events = json.load(fh)
    order, times = [], {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            if e["name"] not in times:
                order.append((e["name"], e["args"].get("op_name", "?"),
                              tuple(next(iter(e["args"]["output_type_shape"][0].values())))))
            times.setdefault(e["name"], []).append(e["dur"] / 1e3)
    return [(op, shape, statistics.median(times[n][3:] or times[n])) for n, op, shape in order]


def match_ort(layers, nodes):
    """For each lowered layer, the ORT node computing the same output (same kind, output shape), taken
    in order; None where ORT has no such node (it fused the layer away or runs it differently)."""
    out, pos = [], 0
    for layer in layers:
        # a conv with a fused pool (lr-fuse-conv-pool) writes the pool's plane: ORT's pool node plus
        # the conv node right before it
        pooled = layer.name == "conv2d" and layer.attrs.get("pool") and not layer.attrs.get("pool_keep")
        kinds = ORT_KINDS["max_pool2d"] if pooled else ORT_KINDS.get(layer.name, ())
        shape = tuple(layer.out_shape)
        hit = None
        for j in range(pos, len(nodes)):
            op, oshape, ms = nodes[j]
            if op in kinds and (oshape == shape or oshape[:1] + oshape[2:] == shape[:1] + shape[2:] and
                                len(oshape) == len(shape) and oshape[1] >= shape[1]):
                if pooled:
                    conv = next((nodes[i][2] for i in range(j - 1, pos - 1, -1)
                                 if nodes[i][0] in ORT_KINDS["conv2d"]), None)
                    if conv is None:
                        continue
                    ms += conv
                hit, pos = ms, j + 1
                break
        out.append(hit)
    return out


def print_in_model(a, model, x):
    inm, with_marks, without, layers = profile_in_model(model, x, repeats=max(a.repeats, 11))
    ort_ms = match_ort(layers, ort_node_times(model, x)) if a.ort else [None] * len(layers)
    alone = {r["layer"]: [] for r in inm}
    for r in profile(model, x, repeats=a.repeats, chain=not a.no_chain):
        alone.setdefault(r["layer"], []).append(r["ms"])
    total = sum(r["ms"] for r in inm)
    print(f"{a.model}: whole model {without:.2f} ms (CPU time; {with_marks:.2f} with the per-layer callbacks), "
          f"sum in model {total:.2f} ms, sum alone {sum(sum(v) for v in alone.values()):.2f} ms")
    if a.ort:
        both = [(r["ms"], o) for r, o in zip(inm, ort_ms) if o is not None]
        print(f"  ORT (its own profile, in its model): {sum(o for _, o in both):.2f} ms over the {len(both)} "
              f"matched layers, lrc {sum(m for m, _ in both):.2f} ms over the same")
    print(f"  {'#':>4s} {'layer':45s} {'in model':>9s} {'alone':>8s} {'ratio':>6s}" + ("   ORT  lrc/ORT" if a.ort else ""))
    seen: dict = {}
    for r, o in zip(inm, ort_ms):
        k = seen.get(r["layer"], 0)
        seen[r["layer"]] = k + 1
        lone = alone.get(r["layer"], [])
        al = lone[k] if k < len(lone) else float("nan")
        extra = "" if not a.ort else (f" {o:7.3f} {r['ms'] / o:6.2f}" if o else "       -      -")
        print(f"  {r['i']:4d} {r['layer']:45s} {r['ms']:8.3f}  {al:8.3f} {r['ms'] / al:6.2f}{extra}")


if __name__ == "__main__":
    main()
