"""Compilation targets. Each target is a module `lrc.targets.<name>` with

    OPTIONS: dict[str, default]          # target-specific keyword options of `lrc.compile`
    build(lr_module, *, opt_level, **options) -> (runner, artifact)

`runner(*inputs, *outputs)` fills the output arrays; `artifact` is what `CompiledModel.save` needs
(None when the target cannot be saved). New targets only add a module here and a name in TARGETS.
"""
from __future__ import annotations

import importlib

TARGETS = ("host", "arm64", "vulkan", "opencl")


def get_target(name: str):
    if name not in TARGETS:
        raise ValueError(f"unknown target '{name}'; choose one of {', '.join(TARGETS)}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise NotImplementedError(f"target '{name}' is not built yet") from None
