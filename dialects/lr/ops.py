"""The `lr` dialect: one op per DNN layer, on builtin ranked f32 tensors.

IRDL only declares "variadic tensor operands, one result"; the Python verifier checks everything
else against `spec.OPS` so that a malformed op is reported with its location, its name and the bad
field. Weights live in the op as dense elements attributes: a layer is self-contained, so passes
(BN folding, filter reorder, sparse packing) rewrite one op without chasing constants.
"""
# No `from __future__ import annotations`: ext reads the class annotations as live types.

from typing import Any, Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import ext
from torch_mlir.dialects.ext import Operand, Pure, Result

from .spec import OPS, AttrSpec, OpSpec, ShapeError


class LR(ext.Dialect, name="lr"):
    pass


class SparsityAttr(LR.Attribute, name="sparsity"):
    """`#lr.sparsity<"kind", library, ids>`.

    kind: none|filter|channel|column|kernel|pattern|pattern+kernel|irregular.
    library: array of arrays of flat kernel positions (pattern kinds) or [].
    ids: dense i32 tensor [K, C/groups] of pattern ids per kernel (-1 = kernel removed), or unit.
    """

    kind: ir.StringAttr
    library: Any
    ids: Any


SPARSITY_KINDS = ("none", "filter", "channel", "column", "kernel", "pattern", "pattern+kernel", "irregular")


def _verify(op) -> bool:
    spec = OPS[op.name.split(".", 1)[1]]
    try:
        check(op.operation, spec)
    except ShapeError as e:
        op.location.emit_error(f"'{op.name}' op {e}")
        return False
    return True


def _make_op_class(spec: OpSpec):
    ann = {}
    for name in spec.operand_names:
        if name.endswith("*"):
            ann[name[:-1]] = Sequence[Operand[Any]]
        else:
            ann[name] = Operand[Any]
    ann["out"] = Result[Any]
    ns = {
        "__annotations__": ann,
        "out": ext.result(kw_only=True),
        "__doc__": spec.summary,
        "verify_invariants": staticmethod(_verify),
    }
    cls_name = "".join(p.capitalize() for p in spec.name.split("_")) + "Op"
    return type(cls_name, (LR.Operation,), ns, name=spec.name, traits=[Pure])


OP_CLASSES = {name: _make_op_class(spec) for name, spec in OPS.items()}


def load(context: ir.Context | None = None) -> None:
    """Load the dialect into `context` (or the current one); a no-op when it is there already."""
    ctx = context or ir.Context.current
    if ctx.is_dialect_loaded("lr"):
        return
    with ctx:
        with ir.Location.unknown():
            LR.load()


# ----------------------------------------------------------------------------------------------
# Attribute <-> Python values


def _f32_elements(value: np.ndarray) -> ir.Attribute:
    arr = np.ascontiguousarray(value, dtype=np.float32)
    return ir.DenseElementsAttr.get(arr, type=ir.F32Type.get(), shape=list(arr.shape))


def to_attr(spec: AttrSpec, value) -> ir.Attribute:
    k = spec.kind
    if k == "ints":
        return ir.DenseI64ArrayAttr.get([int(v) for v in value])
    if k == "floats":
        return ir.DenseF64ArrayAttr.get([float(v) for v in value])
    if k == "int":
        return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), int(value))
    if k == "float":
        return ir.FloatAttr.get(ir.F64Type.get(), float(value))
    if k == "str":
        return ir.StringAttr.get(value)
    if k == "bool":
        return ir.BoolAttr.get(bool(value))
    if k == "elements":
        return _f32_elements(value)
    if k == "sparsity":
        return value if isinstance(value, ir.Attribute) else sparsity_attr(**value)
    raise AssertionError(k)


def sparsity_attr(kind: str, library=(), ids: np.ndarray | None = None) -> ir.Attribute:
    lib = ir.ArrayAttr.get([ir.DenseI64ArrayAttr.get([int(p) for p in pat]) for pat in library])
    if ids is None:
        ids_attr = ir.UnitAttr.get()
    else:
        arr = np.ascontiguousarray(ids, dtype=np.int32)
        ids_attr = ir.DenseElementsAttr.get(arr, type=ir.IntegerType.get_signless(32), shape=list(arr.shape))
    return SparsityAttr.get(ir.StringAttr.get(kind), lib, ids_attr)


def sparsity_value(attr) -> dict:
    """Python view of a `#lr.sparsity` attribute: {'kind', 'library', 'ids'}."""
    attr = SparsityAttr(attr) if not isinstance(attr, SparsityAttr) else attr
    kind = ir.StringAttr(attr.kind).value
    library = [tuple(ir.DenseI64ArrayAttr(p)) for p in ir.ArrayAttr(attr.library)]
    raw = attr.ids
    ids = None if str(raw) == "unit" else np.array(ir.DenseIntElementsAttr(raw))
    return {"kind": kind, "library": library, "ids": ids}


def _from_attr(spec: AttrSpec, name: str, attr: ir.Attribute):
    k = spec.kind
    try:
        if k == "ints":
            v = tuple(ir.DenseI64ArrayAttr(attr))
            if spec.length is not None and len(v) != spec.length:
                raise ShapeError(f"attribute '{name}' must have {spec.length} values, got {len(v)}")
            return v
        if k == "floats":
            return tuple(ir.DenseF64ArrayAttr(attr))
        if k == "int":
            return ir.IntegerAttr(attr).value
        if k == "float":
            return ir.FloatAttr(attr).value
        if k == "str":
            v = ir.StringAttr(attr).value
            if spec.choices and v not in spec.choices:
                raise ShapeError(f"attribute '{name}' = \"{v}\" must be one of {', '.join(spec.choices)}")
            return v
        if k == "bool":
            return ir.BoolAttr(attr).value
        if k == "elements":
            dense = ir.DenseFPElementsAttr(attr)
            if not isinstance(dense.type.element_type, ir.F32Type):
                raise ShapeError(f"attribute '{name}' must hold f32 elements")
            return np.array(dense)
        if k == "sparsity":
            v = sparsity_value(attr)
            if v["kind"] not in SPARSITY_KINDS:
                raise ShapeError(f"attribute '{name}' kind \"{v['kind']}\" must be one of {', '.join(SPARSITY_KINDS)}")
            return v
    except ShapeError:
        raise
    except (ValueError, TypeError):
        pass
    expected = {"ints": "array<i64: ...>", "floats": "array<f64: ...>", "int": "an integer",
                "float": "a float", "str": "a string", "bool": "a bool",
                "elements": "dense f32 elements", "sparsity": "#lr.sparsity<...>"}[k]
    raise ShapeError(f"attribute '{name}' must be {expected}, got {attr}")


def attrs_of(op, spec: OpSpec | None = None) -> dict:
    """All declared attributes of `op` as Python values (numpy arrays for weights), defaults filled."""
    op = op.operation if hasattr(op, "operation") else op
    spec = spec or OPS[op.name.split(".", 1)[1]]
    out = {}
    present = dict(op.attributes.items())
    for name, aspec in spec.attrs.items():
        if name in present:
            out[name] = _from_attr(aspec, name, present[name])
        elif aspec.required:
            raise ShapeError(f"requires attribute '{name}'")
        else:
            out[name] = aspec.default
    return out


def tensor_shape(value: ir.Value, what: str) -> tuple[int, ...]:
    t = value.type
    if not isinstance(t, ir.RankedTensorType):
        raise ShapeError(f"{what} must be a ranked tensor, got {t}")
    rt = t
    if not rt.has_static_shape:
        raise ShapeError(f"{what} must have a static shape, got {t}")
    if not isinstance(rt.element_type, ir.F32Type):
        raise ShapeError(f"{what} must have f32 elements, got {t}")
    return tuple(rt.shape)


def check(op: ir.Operation, spec: OpSpec) -> tuple[int, ...]:
    """Verify `op` against its spec; returns the result shape. Raises ShapeError naming the field."""
    n = len(op.operands)
    if n < spec.min_operands or (spec.max_operands is not None and n > spec.max_operands):
        want = (f"{spec.min_operands}" if spec.max_operands == spec.min_operands else
                f"{spec.min_operands} to {spec.max_operands}" if spec.max_operands else f"at least {spec.min_operands}")
        raise ShapeError(f"expects {want} operands, got {n}")
    shapes = [tensor_shape(v, f"operand #{i}") for i, v in enumerate(op.operands)]
    if len(op.results) != 1:
        raise ShapeError(f"must have exactly one result, got {len(op.results)}")
    out_shape = tensor_shape(op.results[0], "result")
    a = attrs_of(op, spec)
    if spec.infer is None:  # reshape: the element count must survive
        if int(np.prod(shapes[0])) != int(np.prod(out_shape)):
            raise ShapeError(f"cannot reshape {list(shapes[0])} ({int(np.prod(shapes[0]))} elements) "
                             f"to {list(out_shape)} ({int(np.prod(out_shape))} elements)")
        return out_shape
    expected = tuple(spec.infer(a, shapes))
    if expected != out_shape:
        raise ShapeError(f"result shape {list(out_shape)} does not match the inferred shape {list(expected)}")
    return out_shape


def infer_shape(name: str, operand_shapes: list[tuple[int, ...]], attrs: dict) -> tuple[int, ...]:
    spec = OPS[name]
    full = {k: attrs.get(k, s.default) for k, s in spec.attrs.items()}
    for k, s in spec.attrs.items():
        if s.required and attrs.get(k) is None:
            raise ShapeError(f"'lr.{name}' requires attribute '{k}'")
    return tuple(spec.infer(full, operand_shapes))


def build(name: str, operands: list[ir.Value], attrs: dict, result_shape=None,
          loc: ir.Location | None = None) -> ir.Operation:
    """Create `lr.<name>` at the current insertion point; infers the result shape unless given.

    `attrs` holds Python values (numpy arrays for weights); defaults are not materialized, which keeps
    the printed IR short. Raises ShapeError (a ValueError) naming the field when they do not fit.
    """
    spec = OPS[name]
    unknown = set(attrs) - set(spec.attrs)
    if unknown:
        raise ShapeError(f"'lr.{name}' has no attribute(s) {sorted(unknown)}")
    if result_shape is None:
        result_shape = infer_shape(name, [tuple(ir.RankedTensorType(v.type).shape) for v in operands], attrs)
    mlir_attrs = {}
    for k, v in attrs.items():
        s = spec.attrs[k]
        if v is None or (not s.required and _equal_default(v, s.default)):
            continue
        mlir_attrs[k] = to_attr(s, v)
    rtype = ir.RankedTensorType.get(list(result_shape), ir.F32Type.get())
    return ir.Operation.create(f"lr.{name}", results=[rtype], operands=list(operands),
                               attributes=mlir_attrs, loc=loc)


def _equal_default(v, default) -> bool:
    if isinstance(v, np.ndarray) or default is None:
        return False
    if isinstance(v, (list, tuple)) and isinstance(default, (list, tuple)):
        return tuple(v) == tuple(default)
    return v == default


def set_attr(op: ir.Operation, name: str, value) -> None:
    """Set (or with value None, remove) a declared attribute of an lr op from a Python value."""
    spec = OPS[op.name.split(".", 1)[1]].attrs[name]
    if value is None:
        if name in op.attributes:
            del op.attributes[name]
        return
    op.attributes[name] = to_attr(spec, value)
