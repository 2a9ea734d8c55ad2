"""PyTorch -> torch dialect -> lr dialect."""
from __future__ import annotations

import torch
from torch_mlir import ir

from .fx_import import export_to_torch_dialect
from .raise_torch import ImportError_ as ModelImportError
from .raise_torch import UnsupportedOpError, raise_torch_module
from .sparsity_annotations import sparsity_annotations

__all__ = ["import_model", "ModelImportError", "UnsupportedOpError"]


def _check_inputs(example_inputs) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    if not example_inputs:
        raise ValueError("example_inputs is empty: lrc needs one example tensor per model input")
    for i, x in enumerate(example_inputs):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"example input #{i} is a {type(x).__name__}, expected a torch.Tensor")
        if x.dtype != torch.float32:
            raise ValueError(f"example input #{i} has dtype {x.dtype}, expected torch.float32")
    return example_inputs


def import_model(model: torch.nn.Module, example_inputs) -> ir.Module:
    """Import `model` (traced at the shapes of `example_inputs`) as an lr-dialect module.

    The returned module lives in its own MLIR context with the lr and torch dialects loaded.
    Sparsity annotations written by `lrprune` (module attribute `lr_sparsity`) become `#lr.sparsity`
    attributes on the corresponding `lr.conv2d` ops.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    example_inputs = _check_inputs(example_inputs)
    was_training = model.training
    model.eval()
    try:
        torch_module, out_spec = export_to_torch_dialect(model, example_inputs)
    finally:
        model.train(was_training)
    lr_module = raise_torch_module(torch_module, sparsity_annotations(model))
    if out_spec:
        with lr_module.context:
            lr_module.operation.attributes[OUT_SPEC_ATTR] = ir.StringAttr.get(out_spec)
    return lr_module


# The model's output structure (fx_import._structure_json: tuple / list / dict nesting) on the lr module.
OUT_SPEC_ATTR = "lrc.out_spec"


def out_spec_of(lr_module) -> str | None:
    attrs = lr_module.operation.attributes
    return ir.StringAttr(attrs[OUT_SPEC_ATTR]).value if OUT_SPEC_ATTR in attrs else None
