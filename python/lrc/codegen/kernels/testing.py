"""Test and benchmark support: JIT a batch of kernels and compute torch references.

Kernels are private functions; each gets a public `<name>_c` wrapper carrying `llvm.emit_c_interface`
that calls it with func.call, which is how the lowering driver uses them. Several kernels share one
module so a test pays the JIT start-up once.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import func


def jit_kernels(emitters: Sequence[tuple[str, Callable[[str], func.FuncOp]]]):
    """`emitters`: (name, emit(name) -> FuncOp). Returns a JitModule exposing `<name>_c`."""
    from lrc.runtime.jit import JitModule

    ctx = ir.Context()
    with ctx, ir.Location.unknown():
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):
            for name, emit in emitters:
                kernel = emit(name)
                wrapper = func.FuncOp(f"{name}_c", (kernel.type.inputs, []))
                wrapper.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
                wrapper.add_entry_block()
                with ir.InsertionPoint(wrapper.entry_block):
                    func.CallOp(kernel, list(wrapper.arguments))
                    func.ReturnOp([])
        module.operation.verify()
        return JitModule(module)


def torch_act(y, act: str, params: Sequence[float] = ()):
    import torch
    import torch.nn.functional as F

    if act == "none":
        return y
    if act == "relu":
        return F.relu(y)
    if act == "relu6":
        return F.relu6(y)
    if act == "leaky_relu":
        return F.leaky_relu(y, params[0])
    if act == "clamp":
        return torch.clamp(y, params[0], params[1])
    if act == "sigmoid":
        return torch.sigmoid(y)
    if act == "tanh":
        return torch.tanh(y)
    if act == "hardswish":
        return F.hardswish(y)
    if act == "hardsigmoid":
        return F.hardsigmoid(y)
    if act == "silu":
        return F.silu(y)
    if act in ("gelu", "gelu_tanh"):
        return F.gelu(y, approximate="tanh" if act == "gelu_tanh" else "none")
    if act in ("abs", "neg", "exp", "log", "sqrt", "rsqrt", "reciprocal", "square"):
        return getattr(torch, act)(y)
    if act == "mish":
        return F.mish(y)
    if act == "softplus":
        return F.softplus(y, params[0], params[1])
    if act == "elu":
        alpha, scale, input_scale = params
        return torch.ops.aten.elu(y, alpha, scale, input_scale)
    raise ValueError(act)


def conv_ref(spec, x, w, b=None, r=None) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    pt, pl, pb, pr = spec.padding
    xt = F.pad(torch.from_numpy(x), (pl, pr, pt, pb))
    y = F.conv2d(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b), spec.stride, 0,
                 spec.dilation, spec.groups)
    if r is not None:
        y = y + torch.from_numpy(r)
    return torch_act(y, spec.act, spec.act_params).numpy()


def conv_transpose_ref(spec, x, w, b=None) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    pt, pl, pb, pr = spec.padding
    # torch only has symmetric padding: run with zero padding and crop.
    y = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                           spec.stride, 0, (0, 0), spec.groups, spec.dilation)
    oh, ow = spec.OH, spec.OW
    full = y.shape[2:]
    # output_padding adds rows/cols at the bottom/right that no input reaches (bias only).
    need_h, need_w = pt + oh, pl + ow
    if need_h > full[0] or need_w > full[1]:
        y = F.pad(y, (0, max(0, need_w - full[1]), 0, max(0, need_h - full[0])))
        if b is not None:
            bb = torch.from_numpy(b).view(1, -1, 1, 1)
            mask = torch.zeros_like(y)
            mask[:, :, full[0]:, :] = 1
            mask[:, :, :, full[1]:] = 1
            y = y + mask * bb
    y = y[:, :, pt:pt + oh, pl:pl + ow]
    return torch_act(y, spec.act, spec.act_params).contiguous().numpy()


def linear_ref(spec, x, w, b=None) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    y = F.linear(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b))
    return torch_act(y, spec.act, spec.act_params).numpy()


def assert_close(out: np.ndarray, ref: np.ndarray, what="") -> float:
    out = np.asarray(out).reshape(-1)
    ref = np.asarray(ref).reshape(-1)
    err = float(np.max(np.abs(out - ref))) if out.size else 0.0
    tol = 1e-4 * float(np.max(np.abs(ref))) + 1e-5 if ref.size else 0.0
    if not err <= tol:  # also catches NaN
        raise AssertionError(f"{what}: max abs err {err} > tol {tol}")
    return err


def prepared_call(jm, name: str, *arrays: np.ndarray) -> Callable[[], None]:
    """A zero-argument callable running `name` on fixed arrays, for timing.

    Builds the memref descriptors and the packed argument array once, so a call costs a few
    microseconds instead of the ~0.2 ms that building ctypes descriptor classes takes per call.
    """
    import ctypes

    from torch_mlir.runtime import np_to_memref

    keep = []
    packed = (ctypes.c_void_p * len(arrays))()
    for i, a in enumerate(arrays):
        if not (isinstance(a, np.ndarray) and a.flags["C_CONTIGUOUS"]):
            raise ValueError("arguments must be C-contiguous numpy arrays")
        desc = np_to_memref.get_ranked_memref_descriptor(a)
        ptr = ctypes.pointer(ctypes.pointer(desc))
        keep.append((a, desc, ptr))
        packed[i] = ctypes.cast(ptr, ctypes.c_void_p)
    fn = jm.engine.lookup(name)

    def call():
        fn(packed)

    call._keep = (keep, packed, fn)  # descriptors must outlive the callable
    return call
