"""Dense kernel emitters (conv, linear, transposed conv) built with the MLIR Python builders.

See docs/kernels.md for the design and measured speeds.
"""
from .conv import ConvSpec, emit_conv_func, pack_conv_weights
from .conv_transpose import ConvTransposeSpec, emit_conv_transpose_func, pack_conv_transpose_weights
from .linear import LinearSpec, emit_linear_func, pack_linear_weights

__all__ = [
    "ConvSpec", "emit_conv_func", "pack_conv_weights",
    "ConvTransposeSpec", "emit_conv_transpose_func", "pack_conv_transpose_weights",
    "LinearSpec", "emit_linear_func", "pack_linear_weights",
]
