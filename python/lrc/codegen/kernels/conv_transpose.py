"""Transposed 2-D convolution as per-phase sub-convolutions.

Output row oh only receives kernel rows kh with kh*dh = oh + pt (mod sh). Splitting the output into its
sh x sw phases (oh = sh*t + ph, ow = sw*r + pw) therefore turns the transposed conv into sh*sw ordinary
stride-1 convolutions over the un-stuffed input, each with a sub-kernel of about KH/sh x KW/sw taps:
no multiplications by inserted zeros. Each phase runs through the dense conv emitter (conv.py) into a
scratch buffer, and the phases are interleaved into the output (vector.interleave for sw == 2, a scalar
scatter otherwise). Stride 1 is a single phase written straight into the output.

Phase sub-kernel taps, ordered by input offset, form an arithmetic progression (dilation
dh / gcd(dh, sh)); a negative first offset becomes top/left zero padding of the sub-conv, a positive one
crops the input. A phase that no tap reaches holds act(bias).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, memref, vector

from ._builder import KernelBuilder, check_act, flat_memref
from .conv import _ConvEmitter, _Geom, _pack, _plan


@dataclass(frozen=True)
class ConvTransposeSpec:
    N: int
    C: int
    H: int
    W: int
    K: int
    KH: int
    KW: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right (torch's padding)
    output_padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    act: str = "none"
    act_params: tuple[float, ...] = ()
    vec: int = 8

    @property
    def OH(self) -> int:
        pt, _, pb, _ = self.padding
        return (self.H - 1) * self.stride[0] - pt - pb + self.dilation[0] * (self.KH - 1) + self.output_padding[0] + 1

    @property
    def OW(self) -> int:
        _, pl, _, pr = self.padding
        return (self.W - 1) * self.stride[1] - pl - pr + self.dilation[1] * (self.KW - 1) + self.output_padding[1] + 1

    @property
    def flops(self) -> int:
        """Useful multiply-adds (taps that meet a real input pixel are not counted separately)."""
        return 2 * self.N * self.C * (self.K // self.groups) * self.H * self.W * self.KH * self.KW


@dataclass(frozen=True)
class _Axis:
    """One output phase along one axis."""

    phase: int
    count: int  # output positions in this phase
    taps: tuple[int, ...]  # kernel indices, ordered by increasing input offset
    first_offset: int  # input offset of taps[0]
    dil: int  # offset step between consecutive taps


def _axis_phases(out: int, stride: int, pad: int, dil: int, ksize: int) -> list[_Axis]:
    res = []
    for ph in range(min(stride, out)):
        count = -(-(out - ph) // stride)
        ks = [k for k in range(ksize) if (ph + pad - k * dil) % stride == 0]
        ks.sort(key=lambda k: (ph + pad - k * dil) // stride)
        offs = [(ph + pad - k * dil) // stride for k in ks]
        step = dil // gcd(dil, stride)
        assert all(b - a == step for a, b in zip(offs, offs[1:]))
        res.append(_Axis(ph, count, tuple(ks), offs[0] if offs else 0, step))
    return res


def _phases(spec: ConvTransposeSpec):
    pt, pl, _, _ = spec.padding
    rows = _axis_phases(spec.OH, spec.stride[0], pt, spec.dilation[0], spec.KH)
    cols = _axis_phases(spec.OW, spec.stride[1], pl, spec.dilation[1], spec.KW)
    return rows, cols


def _sub_geom(spec: ConvTransposeSpec, ah: _Axis, aw: _Axis) -> _Geom:
    return _Geom(spec.N, spec.C, spec.H, spec.W, spec.K, len(ah.taps), len(aw.taps), ah.count, aw.count,
                 1, 1, ah.dil, aw.dil, -ah.first_offset, -aw.first_offset, 1, 1, spec.groups, spec.act,
                 tuple(spec.act_params), False, spec.vec)


def _check(spec: ConvTransposeSpec) -> None:
    check_act(spec.act, spec.act_params)
    if spec.C % spec.groups or spec.K % spec.groups:
        raise ValueError("channels not divisible by groups")
    if spec.OH < 1 or spec.OW < 1:
        raise ValueError(f"empty output for {spec}")
    if min(spec.padding) < 0 or min(spec.output_padding) < 0:
        raise ValueError("negative padding")


def pack_conv_transpose_weights(spec: ConvTransposeSpec, weight: np.ndarray, bias: np.ndarray | None) -> list[np.ndarray]:
    """One packed conv weight per phase that has taps (row-phase major), then the bias if any."""
    _check(spec)
    G = spec.groups
    Cg, Kg = spec.C // G, spec.K // G
    want = (spec.C, Kg, spec.KH, spec.KW)
    if tuple(weight.shape) != want:
        raise ValueError(f"weight shape {tuple(weight.shape)} != {want}")
    # [C, Kg, KH, KW] -> conv layout [K, Cg, KH, KW]
    w = np.asarray(weight, np.float32).reshape(G, Cg, Kg, spec.KH, spec.KW).transpose(0, 2, 1, 3, 4)
    w = w.reshape(spec.K, Cg, spec.KH, spec.KW)
    rows, cols = _phases(spec)
    out = []
    for ah in rows:
        for aw in cols:
            if not ah.taps or not aw.taps:
                continue
            g = _sub_geom(spec, ah, aw)
            sub = w[:, :, list(ah.taps)][:, :, :, list(aw.taps)]
            out.append(_pack(g, _plan(g), sub))
    if bias is not None:
        out.append(np.ascontiguousarray(np.asarray(bias, np.float32).reshape(spec.K)))
    return out


def emit_conv_transpose_func(spec: ConvTransposeSpec, name: str, packed: Sequence[np.ndarray]) -> func.FuncOp:
    _check(spec)
    rows, cols = _phases(spec)
    nsub = sum(1 for ah in rows for aw in cols if ah.taps and aw.taps)
    if len(packed) not in (nsub, nsub + 1):
        raise ValueError("packed weights do not match the spec")
    has_bias = len(packed) == nsub + 1
    V = spec.vec
    N, K, OH, OW = spec.N, spec.K, spec.OH, spec.OW
    sh, sw = spec.stride
    arg_types = [flat_memref(N * spec.C * spec.H * spec.W)] + [flat_memref(a.size) for a in packed]
    arg_types.append(flat_memref(N * K * OH * OW))
    fn = func.FuncOp(name, (arg_types, []), visibility="private")
    fn.add_entry_block()
    with ir.InsertionPoint(fn.entry_block):
        b = KernelBuilder(fn, V)
        args = list(fn.arguments)
        x, out = args[0], args[-1]
        bias = args[1 + nsub] if has_bias else None
        wi = 0
        single = len(rows) == 1 and len(cols) == 1
        for ah in rows:
            bufs = []
            for aw in cols:
                size = N * K * ah.count * aw.count
                dst = out if single else memref.alloc(flat_memref(size), [], [], alignment=64)
                if ah.taps and aw.taps:
                    g = _sub_geom(spec, ah, aw)
                    _ConvEmitter(g, _plan(g), x, args[1 + wi], bias, None, dst, b).run()
                    wi += 1
                else:
                    _fill_bias(b, spec, dst, bias, ah.count * aw.count)
                bufs.append((aw, dst))
            if not single:
                _scatter_rows(b, spec, ah, bufs, out)
                for _, buf in bufs:
                    memref.dealloc(buf)
        func.ReturnOp([])
    return fn


def _fill_bias(b: KernelBuilder, spec: ConvTransposeSpec, dst, bias, plane: int) -> None:
    """dst[n, k, :] = act(bias[k]) for a phase no kernel tap reaches."""
    V = b.V

    def per_nk(i, _):
        k = arith.remui(b.v(i), b.c(spec.K)) if spec.N > 1 else i
        val = b.bcast(bias, k) if bias is not None else b.splat(0.0)
        val = b.activation(val, spec.act, spec.act_params)
        base = b.mul(i, plane)
        b.loop(0, plane // V, 1, lambda j, _: b.store(val, dst, b.add(base, b.mul(j, V))))
        if plane % V:
            b.store(val, dst, b.add(base, (plane // V) * V), plane % V)

    b.loop(0, spec.N * spec.K, 1, per_nk)


def _scatter_rows(b: KernelBuilder, spec: ConvTransposeSpec, ah: _Axis, bufs, out) -> None:
    """Interleave the column phases of output row phase ah into the strided rows of `out`."""
    V = b.V
    sh, sw = spec.stride
    OH, OW = spec.OH, spec.OW
    T = ah.count

    def per_row(i, _):
        # i runs over (n, k, t); phase buffers are [n, k, t, r]
        nk = arith.divui(b.v(i), b.c(T)) if T > 1 else i
        t = arith.remui(b.v(i), b.c(T)) if T > 1 else 0
        orow = b.add(b.mul(nk, OH * OW), b.mul(t, sh * OW), ah.phase * OW)
        if sw == 2 and len(bufs) == 2:
            (a0, p0), (a1, p1) = bufs
            r0 = b.mul(i, a0.count)
            r1 = b.mul(i, a1.count)
            nfull = OW // (2 * V)

            def vec_body(j, _):
                e = b.load(p0, b.add(r0, b.mul(j, V)))
                o = b.load(p1, b.add(r1, b.mul(j, V)))
                b.store(vector.interleave(e, o), out, b.add(orow, b.mul(j, 2 * V)))

            b.loop(0, nfull, 1, vec_body)
            rem = OW - nfull * 2 * V
            if rem:
                e = b.load(p0, b.add(r0, nfull * V), (rem + 1) // 2)
                o = b.load(p1, b.add(r1, nfull * V), rem // 2) if rem // 2 else b.splat(0.0)
                b.store(vector.interleave(e, o), out, b.add(orow, nfull * 2 * V), rem)
        else:
            for aw, buf in bufs:
                rb = b.mul(i, aw.count)

                def col(r, _, rb=rb, aw=aw, buf=buf):
                    val = memref.load(buf, [b.v(b.add(rb, r))])
                    memref.store(val, out, [b.v(b.add(orow, b.mul(r, sw), aw.phase))])

                b.loop(0, aw.count, 1, col)

    b.loop(0, spec.N * spec.K * T, 1, per_row)
