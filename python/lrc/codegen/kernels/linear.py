"""Fully connected layer y = act(x W^T + b) emitted as scf/vector/memref IR.

With batch M = 1 this is a matrix-vector product that is bound by reading the weights once, so the
layout is chosen to make that read a single sequential stream: output features are grouped in blocks
of OB*V, and each group is stored as [IN][OB*V] (the group's weights for input i are adjacent). The
kernel walks a group front to back, broadcasting x[i] once per OB*V weights. Several independent
accumulator sets (S) hide the FMA latency when the weights come from cache. Larger M re-uses each
weight vector for MB rows of x. OUT is zero-padded to a multiple of V only (the last group holds the
leftover blocks); its last vector is stored with a mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func

from ._builder import KernelBuilder, check_act, flat_memref


@dataclass(frozen=True)
class LinearSpec:
    M: int
    IN: int
    OUT: int
    act: str = "none"
    act_params: tuple[float, ...] = ()
    vec: int = 8

    @property
    def flops(self) -> int:
        return 2 * self.M * self.IN * self.OUT


@dataclass(frozen=True)
class _Plan:
    OB: int  # V-blocks of outputs per group
    MB: int  # rows of x per register tile
    S: int  # independent accumulator sets
    U: int  # unroll of the input loop (multiple of S)
    nblk: int  # V-blocks in total

    def groups(self) -> list[tuple[int, int]]:
        """(first block, number of blocks) of every output group."""
        out, b = [], 0
        while b < self.nblk:
            n = min(self.OB, self.nblk - b)
            out.append((b, n))
            b += n
        return out


def _plan(s: LinearSpec) -> _Plan:
    V = s.vec
    nblk = -(-s.OUT // V)
    if s.M == 1:
        return _Plan(OB=min(4, nblk), MB=1, S=2, U=4, nblk=nblk)
    MB = min(s.M, 4)
    return _Plan(OB=min(2, nblk), MB=MB, S=1, U=2, nblk=nblk)


def pack_linear_weights(spec: LinearSpec, weight: np.ndarray, bias: np.ndarray | None) -> list[np.ndarray]:
    if tuple(weight.shape) != (spec.OUT, spec.IN):
        raise ValueError(f"weight shape {tuple(weight.shape)} != {(spec.OUT, spec.IN)}")
    check_act(spec.act, spec.act_params)
    p = _plan(spec)
    V = spec.vec
    weight = np.asarray(weight, np.float32)
    # Written group by group into one buffer: a 25M-weight layer must not be copied several times.
    packed = np.zeros(p.nblk * V * spec.IN, np.float32)
    off = 0
    for b0, nb in p.groups():
        width = nb * V
        dst = packed[off:off + spec.IN * width].reshape(spec.IN, width)
        rows = weight[b0 * V:min(spec.OUT, (b0 + nb) * V)]
        dst[:, :rows.shape[0]] = rows.T
        off += spec.IN * width
    out = [packed]
    if bias is not None:
        bp = np.zeros(p.nblk * V, np.float32)
        bp[: spec.OUT] = np.asarray(bias, np.float32).reshape(-1)
        out.append(bp)
    return out


def emit_linear_func(spec: LinearSpec, name: str, packed: Sequence[np.ndarray]) -> func.FuncOp:
    return _emit_linear(spec, name, packed, residual=False)


def _emit_linear(spec: LinearSpec, name: str, packed: Sequence[np.ndarray], residual: bool) -> func.FuncOp:
    """With `residual`, an extra [M*OUT] argument before the output is added before the activation
    (used by conv.py for 1x1 convolutions on 1x1 images)."""
    check_act(spec.act, spec.act_params)
    p = _plan(spec)
    V, IN, OUT, M = spec.vec, spec.IN, spec.OUT, spec.M
    if packed[0].size != p.nblk * V * IN:
        raise ValueError("packed weights do not match the spec")
    has_bias = len(packed) == 2
    arg_types = [flat_memref(M * IN)] + [flat_memref(a.size) for a in packed] + [flat_memref(M * OUT)] * (1 + residual)
    fn = func.FuncOp(name, (arg_types, []), visibility="private")
    fn.add_entry_block()
    with ir.InsertionPoint(fn.entry_block):
        b = KernelBuilder(fn, V)
        args = list(fn.arguments)
        x, wts, out = args[0], args[1], args[-1]
        bias = args[2] if has_bias else None
        res = args[-2] if residual else None
        S, U = p.S, p.U

        def tile(wbase, col0, nb, m0, mb, last):
            """Rows m0..m0+mb of x against one group of nb output blocks starting at column col0;
            the group's last vector has `last` valid lanes."""
            width = nb * V
            init = [b.splat(0.0)] * (S * mb * nb)

            def step(i, accs, s):
                xs = [b.bcast(x, b.add(b.mul(m0, IN), i, m * IN)) for m in range(mb)]
                wrow = b.add(wbase, b.mul(i, width))
                for j in range(nb):
                    wv = b.load(wts, b.add(wrow, j * V))
                    for m in range(mb):
                        k = (s * mb + m) * nb + j
                        accs[k] = b.fma(wv, xs[m], accs[k])
                return accs

            imain = (IN // U) * U

            def body(i, accs):
                for u in range(U):
                    accs = step(b.add(i, u), accs, u % S)
                return accs

            accs = b.loop(0, imain, U, body, init)
            for i in range(imain, IN):
                accs = step(i, accs, (i - imain) % S)
            for m in range(mb):
                for j in range(nb):
                    acc = accs[m * nb + j]
                    for s_ in range(1, S):
                        acc = arith.addf(acc, accs[(s_ * mb + m) * nb + j])
                    col = b.add(col0, j * V)
                    if bias is not None:
                        acc = arith.addf(acc, b.load(bias, col))
                    oidx = b.add(b.mul(m0, OUT), m * OUT, col)
                    lanes = last if j == nb - 1 else V
                    if res is not None:
                        acc = arith.addf(acc, b.load(res, oidx, lanes))
                    acc = b.activation(acc, spec.act, spec.act_params)
                    b.store(acc, out, oidx, lanes)

        def rows(wbase, col0, nb, last):
            MB = p.MB
            mfull = M // MB
            b.loop(0, mfull, 1, lambda mi, _: tile(wbase, col0, nb, b.mul(mi, MB), MB, last))
            if M % MB:
                tile(wbase, col0, nb, mfull * MB, M % MB, last)

        # Groups that end inside OUT share one scf.for; the rest (at most the last group, which may
        # be narrower or end in a partial vector) are emitted on their own.
        width = p.OB * V
        nloop = OUT // width
        b.loop(0, nloop, 1, lambda gi, _: rows(b.mul(gi, width * IN), b.mul(gi, width), p.OB, V))
        for b0, nb in p.groups()[nloop:]:
            rows(b0 * V * IN, b0 * V, nb, OUT - (b0 + nb - 1) * V)
        func.ReturnOp([])
    return fn
