"""Glue from lr conv/linear ops to the register-blocked vector kernels in `codegen.kernels`."""
from __future__ import annotations

import os

import numpy as np

from .emit import Arg, Kernel, KernelSig, LayerOp


def _act(a):
    return a.get("act", "none"), tuple(a.get("act_params") or ())


def sparse_mode() -> str:
    """LRC_SPARSE: auto (cost model, default) | always (every annotated conv) | off (dense kernels)."""
    mode = os.environ.get("LRC_SPARSE", "auto")
    if mode not in ("auto", "always", "off"):
        raise ValueError(f"LRC_SPARSE must be auto, always or off, got {mode!r}")
    return mode


def _sparse_pack(spec, a):
    """The compact sparse form of a conv carrying #lr.sparsity, or None for the dense kernel.

    Pattern kinds use the attribute's library (every kernel's non-zeros must fit a pattern);
    other kinds derive tap sets from the zeros in the weights. `auto` keeps the dense kernel
    unless the sparse one does enough fewer MACs to be faster (sparse_conv.worth_it).
    """
    sp = a.get("sparsity")
    mode = sparse_mode()
    if sp is None or sp["kind"] == "none" or mode == "off":
        return None
    import dataclasses

    from .kernels.sparse_conv import pack_sparse_conv, sparse_lanes, worth_it

    lib = sp["library"] if sp["kind"] in ("pattern", "pattern+kernel") else None
    # The sparse kernel picks its own lane width (16 on AVX-512 where the plane allows it).
    spec = dataclasses.replace(spec, vec=sparse_lanes(spec))
    pack = pack_sparse_conv(spec, a["weight"], a["bias"], library=lib)
    return pack if mode == "always" or worth_it(pack) else None


def emit_conv2d(k: Kernel, op: LayerOp) -> KernelSig:
    from .kernels.conv import ConvSpec, emit_conv_func, pack_conv_weights

    n, c, h, w = op.in_shapes[0]
    a = op.attrs
    kk, _, kh, kw = a["weight"].shape
    act, params = _act(a)
    spec = ConvSpec(N=n, C=c, H=h, W=w, K=kk, KH=kh, KW=kw, stride=tuple(a["stride"]),
                    padding=tuple(a["padding"]), dilation=tuple(a["dilation"]), groups=a["groups"], act=act,
                    act_params=params, residual=len(op.in_shapes) == 2, vec=k.vec)
    sparse = _sparse_pack(spec, a)
    if sparse is not None:
        from .kernels.sparse_conv import emit_sparse_conv_func

        packed = sparse.arrays()
        fn = emit_sparse_conv_func(sparse, k.name)
    else:
        packed = pack_conv_weights(spec, a["weight"], a["bias"])
        fn = emit_conv_func(spec, k.name, packed)
    args = [Arg("in", 0)] + [Arg("param", array=np.ascontiguousarray(p).reshape(-1)) for p in packed]
    if spec.residual:
        args.append(Arg("in", 1))
    args.append(Arg("out"))
    return KernelSig(args=args, types=list(fn.type.inputs))


def emit_linear(k: Kernel, op: LayerOp) -> KernelSig:
    from .kernels.linear import LinearSpec, emit_linear_func, pack_linear_weights

    a = op.attrs
    out_f, in_f = a["weight"].shape
    m = int(np.prod(op.in_shapes[0][:-1])) if len(op.in_shapes[0]) > 1 else 1
    act, params = _act(a)
    spec = LinearSpec(M=m, IN=in_f, OUT=out_f, act=act, act_params=params, vec=k.vec)
    packed = pack_linear_weights(spec, a["weight"], a["bias"])
    fn = emit_linear_func(spec, k.name, packed)
    args = [Arg("in", 0)] + [Arg("param", array=np.ascontiguousarray(p).reshape(-1)) for p in packed] + [Arg("out")]
    return KernelSig(args=args, types=list(fn.type.inputs))


def emit_conv_transpose2d(k: Kernel, op: LayerOp) -> KernelSig:
    from .kernels.conv_transpose import ConvTransposeSpec, emit_conv_transpose_func, pack_conv_transpose_weights

    n, c, h, w = op.in_shapes[0]
    a = op.attrs
    cw, kg, kh, kw = a["weight"].shape
    act, params = _act(a)
    ph, pw = a["padding"]
    spec = ConvTransposeSpec(N=n, C=c, H=h, W=w, K=kg * a["groups"], KH=kh, KW=kw, stride=tuple(a["stride"]),
                             padding=(ph, pw, ph, pw), output_padding=tuple(a["output_padding"]),
                             dilation=tuple(a["dilation"]), groups=a["groups"], act=act, act_params=params,
                             vec=k.vec)
    packed = pack_conv_transpose_weights(spec, a["weight"], a["bias"])
    fn = emit_conv_transpose_func(spec, k.name, packed)
    args = [Arg("in", 0)] + [Arg("param", array=np.ascontiguousarray(p).reshape(-1)) for p in packed] + [Arg("out")]
    return KernelSig(args=args, types=list(fn.type.inputs))
