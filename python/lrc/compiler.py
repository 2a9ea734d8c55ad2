"""`lrc.compile`: PyTorch module -> lr -> fused lr -> kernels -> machine code."""
from __future__ import annotations

import time

import torch
from torch_mlir import ir

from .compiled_model import CompiledModel
from .importer import import_model, out_spec_of
from .transforms import DEFAULT_OPT_PIPELINE, run_pipeline

from .targets import TARGETS, get_target  # noqa: F401  (TARGETS re-exported)


def _shapes(module: ir.Module, fn: str = "forward"):
    for op in module.body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == fn:
            t = op.type
            return [tuple(x.shape) for x in t.inputs], [tuple(x.shape) for x in t.results]
    raise ValueError(f"no function @{fn} in the module")


def optimize(lr_module: ir.Module, pipeline: str = DEFAULT_OPT_PIPELINE) -> ir.Module:
    """Run the lr-level optimization pipeline (fusion, cleanup) in place."""
    return run_pipeline(lr_module, pipeline)


def compile(model: torch.nn.Module, example_inputs, target: str = "host", *, fuse: bool = True,
            opt_level: int = 3, **options) -> CompiledModel:
    """Compile `model` for `target` at the shapes of `example_inputs`.

    Options: `fuse` (run conv/BN/activation/residual fusion, default True), `opt_level` (LLVM), and
    the target's own options (`lrc.targets.<target>.OPTIONS`).
    """
    tgt = get_target(target)
    unknown = set(options) - set(getattr(tgt, "OPTIONS", {}))
    if unknown:
        raise ValueError(f"unknown compile option(s) {sorted(unknown)} for target '{target}'; "
                         f"it accepts {sorted(getattr(tgt, 'OPTIONS', {}))}")
    t0 = time.perf_counter()
    lr_module = import_model(model, example_inputs)
    t1 = time.perf_counter()
    if fuse:
        optimize(lr_module)
    lr_text = lr_module.operation.get_asm(large_elements_limit=16)
    in_shapes, out_shapes = _shapes(lr_module)
    runner, artifact = tgt.build(lr_module, opt_level=opt_level, **options)
    t2 = time.perf_counter()
    stats = {"import_s": t1 - t0, "compile_s": t2 - t1, "total_s": t2 - t0}
    return CompiledModel(runner, in_shapes, out_shapes, target, lr_text, artifact, stats,
                         out_spec=out_spec_of(lr_module))
