"""PyTorch module -> torch dialect, through torch-mlir's FX importer.

Layers are kept whole (empty decomposition table) so that each becomes one `lr` op. Weights are
imported as plain dense elements (not torch-mlir's default resource blobs, which it builds through
`tensor.tolist()` and which the Python bindings cannot read back), tagged with their parameter name
so that later errors and sparsity annotations can refer to the user's layer names.
"""
from __future__ import annotations

import numpy as np
import torch
from torch_mlir import fx, ir
from torch_mlir.extras.fx_importer import FxImporterHooks

from .raise_torch import PARAM_NAME_ATTR


class _WeightsAsDenseElements(FxImporterHooks):
    def __init__(self, names_by_ptr: dict[int, str]):
        self.names_by_ptr = names_by_ptr

    def resolve_literal(self, gni, literal, info):
        if not isinstance(literal, torch.Tensor) or literal.dtype not in (torch.float32, torch.int64,
                                                                            torch.int32):
            return None
        arr = np.ascontiguousarray(literal.detach().cpu().numpy())
        elem = {np.float32: ir.F32Type.get(), np.int64: ir.IntegerType.get_signless(64),
                np.int32: ir.IntegerType.get_signless(32)}[arr.dtype.type]
        value = ir.DenseElementsAttr.get(arr, type=elem, shape=list(arr.shape))
        attrs = {"value": value}
        name = self.names_by_ptr.get(literal.data_ptr()) if literal.numel() else None
        if name:
            attrs[PARAM_NAME_ATTR] = ir.StringAttr.get(name)
        vtype = gni._cc.create_vtensor_type(literal.dtype, literal.size())
        return ir.Operation.create("torch.vtensor.literal", results=[vtype], attributes=attrs).result


def export_to_torch_dialect(model: torch.nn.Module, example_inputs: tuple) -> tuple[ir.Module, str | None]:
    """Trace `model` with torch.export and import it as torch-dialect IR (in a fresh context); also
    the structure of its outputs (tuple / list / dict nesting) as `_structure_json` writes it."""
    names = {}
    for n, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.numel():
            names.setdefault(p.data_ptr(), n)
    with torch.no_grad():
        ep = torch.export.export(model, tuple(example_inputs), strict=False)
        module = fx.export_and_import(ep, decomposition_table={}, hooks=_WeightsAsDenseElements(names),
                                      func_name="forward")
    return module, _structure_json(ep.call_spec.out_spec)


def _structure_json(spec) -> str | None:
    """The output structure as lrc's own JSON (read back without torch, so that a saved artifact loads
    on a machine without it): {"t": "leaf"} / {"t": "tuple" | "list", "c": [...]} /
    {"t": "dict", "k": [keys], "c": [...]}; None for anything else (the outputs stay a flat tuple)."""
    import json

    def conv(s):
        if s.is_leaf():
            return {"t": "leaf"}
        kids = [conv(c) for c in s.children()]
        if s.type in (tuple, list):
            return {"t": s.type.__name__, "c": kids}
        if s.type is dict and all(isinstance(k, (str, int)) for k in s.context):
            return {"t": "dict", "k": list(s.context), "c": kids}
        raise TypeError(s.type)
    try:
        return json.dumps(conv(spec))
    except (TypeError, AttributeError):
        return None
