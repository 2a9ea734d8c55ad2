"""The `lr` (layer-wise representation) MLIR dialect, defined in Python over IRDL."""
from .ops import (LR, OP_CLASSES, SPARSITY_KINDS, SparsityAttr, attrs_of, build, check, infer_shape, load,
                  set_attr, sparsity_attr, sparsity_value)
from .spec import ACT_PARAMS, ACTIVATION_OPS, ACTIVATIONS, OPS, ShapeError, activation_of, broadcast_shapes

__all__ = ["LR", "OP_CLASSES", "OPS", "ACTIVATIONS", "ACTIVATION_OPS", "ACT_PARAMS", "activation_of",
           "SPARSITY_KINDS", "SparsityAttr", "ShapeError", "attrs_of", "build", "check", "infer_shape", "load", "set_attr", "sparsity_attr", "sparsity_value",
           "broadcast_shapes"]
