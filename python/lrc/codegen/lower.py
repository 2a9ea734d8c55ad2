"""`lr-lower-to-kernels`: lr functions on tensors -> kernel calls on flat memrefs.

Each layer becomes a private kernel function (see emit.py); the entry function keeps the model's
signature in destination-passing style, `@forward(%in..: memref<NxCxHxW>, %out..: memref<...>)`,
marked `llvm.emit_c_interface`. Intermediate tensors live in one arena whose offsets come from a
liveness-based first-fit plan, so peak memory is a few activations rather than all of them, and
reshapes are free aliases (every buffer is a contiguous row-major array).

With `threads > 1`, big single-image convs are split into parts over output channels (one kernel per
part, writing its own contiguous slice of the output); the entry runs a layer's parts in an
`scf.parallel` that the LLVM pipeline turns into an OpenMP parallel region (docs/threads.md).
Every other layer, and the order of layers, stays as with one thread.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, memref, scf

from lrc.dialects import lr

from .emit import Kernel, LayerOp
from .ops_dense import (chain_pixel_split, conv_channel_split, conv_pixel_split, emit_conv2d, emit_conv2d_part,
                        emit_conv2d_pixel_part, emit_conv_transpose2d, emit_linear, emit_pointwise_chain_part,
                        even_ranges, sparse_conv_pack)
from .ops_elementwise import ACTIVATIONS, activation_of, emit_activation, emit_batch_norm, emit_binary, emit_prelu
from .ops_spatial import (emit_adaptive_avg_pool, emit_concat, emit_instance_norm, emit_pad, emit_permute,
                          emit_pixel_shuffle, emit_pool, emit_reduce, emit_slice, emit_softmax,
                          emit_upsample)

EMITTERS = {
    "conv2d": emit_conv2d, "conv_transpose2d": emit_conv_transpose2d, "linear": emit_linear,
    **{name: emit_activation for name in ACTIVATIONS},
    "prelu": emit_prelu, "batch_norm": emit_batch_norm, "instance_norm": emit_instance_norm,
    "add": emit_binary, "sub": emit_binary, "mul": emit_binary, "div": emit_binary, "maximum": emit_binary,
    "minimum": emit_binary,
    "concat": emit_concat, "slice": emit_slice, "softmax": emit_softmax, "reduce": emit_reduce,
    "permute": emit_permute, "pad": emit_pad,
    "max_pool2d": emit_pool, "avg_pool2d": emit_pool, "adaptive_avg_pool2d": emit_adaptive_avg_pool,
    "upsample": emit_upsample, "pixel_shuffle": emit_pixel_shuffle,
}

ALIGN = 64  # bytes; every arena buffer starts on a cache line

# Per-layer timing inside a whole model (bench/profile_layers.py --in-model): a list makes the lowering
# record each lowered function's layers in it, as (function, [LayerOp, ...]), and call the external
# @lrc_layer_mark(t) after layer t in the entry functions (the caller registers it with the
# ExecutionEngine). None, the default, emits neither: compiled models carry no hooks.
LAYER_MARKS: list | None = None
MARK_FN = "lrc_layer_mark"

# Layers that treat every channel on its own: with N = 1 a channel range of the input and of the
# output is one contiguous slice each, so a part is the same kernel over fewer channels.
CHANNELWISE = {"instance_norm", "pad", "upsample", "max_pool2d", "avg_pool2d", "prelu"} | ACTIVATIONS
# Output elements a part must write to be worth a fork/join (~0.5 MB).
MIN_PART_ELEMS = 1 << 17


def channelwise_split(op: LayerOp, threads: int) -> list[tuple[int, int]] | None:
    """Channel ranges [c0, c1) for `threads` parts of a channel-wise layer, or None to keep it whole."""
    if threads <= 1 or op.name not in CHANNELWISE or len(op.in_shapes) != 1 or len(op.out_shape) != 4:
        return None
    if op.in_shapes[0][0] != 1 or op.in_shapes[0][1] != op.out_shape[1]:
        return None
    c = op.out_shape[1]
    parts = min(threads, c)
    if parts < 2 or _numel(op.out_shape) < MIN_PART_ELEMS * parts:
        return None
    return even_ranges(c, parts)


def _channel_part(op: LayerOp, c0: int, c1: int) -> LayerOp:
    """The layer over channels [c0, c1): per-channel parameters sliced, shapes narrowed."""
    import dataclasses

    attrs = dict(op.attrs)
    for key in ("weight", "bias", "slope"):  # instance_norm's affine, prelu's slope
        v = attrs.get(key)
        if v is not None and np.ndim(v) == 1 and np.size(v) == op.out_shape[1]:
            attrs[key] = np.ascontiguousarray(np.asarray(v)[c0:c1])
    narrow = lambda shape: (shape[0], c1 - c0) + tuple(shape[2:])  # noqa: E731
    return dataclasses.replace(op, attrs=attrs, in_shapes=[narrow(op.in_shapes[0])], out_shape=narrow(op.out_shape))


class LoweringError(ValueError):
    """An op the lowering cannot handle; `location` points at it."""

    def __init__(self, message: str, location=None):
        super().__init__(message)
        self.location = location


class LoweringNotImplemented(NotImplementedError):
    def __init__(self, message: str, location=None):
        super().__init__(message)
        self.location = location


def _numel(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _shape(v: ir.Value) -> tuple[int, ...]:
    return tuple(v.type.shape)


@dataclass
class Buf:
    kind: str  # arg | out | arena | global
    index: int = 0  # arg/out position, arena byte offset
    numel: int = 0
    name: str = ""


class _Arena:
    """First-fit allocator over byte offsets; freed ranges coalesce."""

    def __init__(self):
        self.free: list[tuple[int, int]] = []  # (offset, size), sorted
        self.size = 0

    def alloc(self, nbytes: int) -> int:
        nbytes = -(-nbytes // ALIGN) * ALIGN
        for i, (off, sz) in enumerate(self.free):
            if sz >= nbytes:
                if sz == nbytes:
                    del self.free[i]
                else:
                    self.free[i] = (off + nbytes, sz - nbytes)
                return off
        # grow: reuse a free tail block if it touches the end
        if self.free and self.free[-1][0] + self.free[-1][1] == self.size:
            off, sz = self.free.pop()
            self.size = off + nbytes
            return off
        off = self.size
        self.size += nbytes
        return off

    def release(self, off: int, nbytes: int) -> None:
        nbytes = -(-nbytes // ALIGN) * ALIGN
        self.free.append((off, nbytes))
        self.free.sort()
        merged = []
        for o, s in self.free:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((o, s))
        self.free = merged


def lower_to_kernels(module: ir.Module, vec: int = 8, threads: int = 1) -> ir.Module:
    """A new module (same context) holding the kernels and the `@forward`-style entry points.

    `threads > 1` splits the heavy layers into parallel parts; the result then needs the OpenMP
    lowering (targets.llvm.lower_to_llvm(openmp=True)) and libomp at run time."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    ctx = module.context
    lr.load(ctx)
    with ctx, ir.Location.unknown(ctx):
        out = ir.Module.create()
        for op in module.body.operations:
            if op.operation.name == "func.func":
                _lower_func(op, out, vec, threads)
    return out


def _lower_func(f, out_module: ir.Module, vec: int, threads: int = 1):
    fname = ir.StringAttr(f.attributes["sym_name"]).value
    block = f.regions[0].blocks[0]
    ops = list(block.operations)
    ret = ops[-1]
    body_ops = ops[:-1]
    buf: dict = {}
    alias_of: dict = {}

    def root(v):
        while v in alias_of:
            v = alias_of[v]
        return v

    for i, a in enumerate(block.arguments):
        buf[a] = Buf("arg", i, _numel(_shape(a)))

    globals_ip = ir.InsertionPoint(out_module.body)
    gcount = [0]

    def make_global(arr: np.ndarray) -> Buf:
        name = f"__{fname}_c{gcount[0]}"
        gcount[0] += 1
        arr = np.ascontiguousarray(arr).reshape(-1)
        elem = ir.F32Type.get() if arr.dtype == np.float32 else ir.IntegerType.get_signless(32)
        mtype = ir.MemRefType.get([arr.size], elem)
        attr = ir.DenseElementsAttr.get(arr, type=elem, shape=[arr.size])
        with globals_ip, ir.Location.unknown():
            memref.GlobalOp(name, ir.TypeAttr.get(mtype), sym_visibility="private", initial_value=attr,
                            constant=True, alignment=ALIGN)
        return Buf("global", 0, arr.size, name)

    # A chain of binary concats along one axis (torch.cat of n tensors) is written by one kernel.
    absorbed, leaves_of = set(), {}

    def leaves(v, axis):
        p = v.owner
        p = getattr(p, "operation", None)
        if (p is not None and p.name == "lr.concat" and len(list(v.uses)) == 1
                and lr.attrs_of(p)["axis"] % len(_shape(v)) == axis):
            absorbed.add(p)
            return leaves(p.operands[0], axis) + leaves(p.operands[1], axis)
        return [v]

    for op in reversed(body_ops):
        op = op.operation
        if op.name == "lr.concat" and op not in absorbed:
            axis = lr.attrs_of(op)["axis"] % len(_shape(op.results[0]))
            leaves_of[op] = leaves(op.operands[0], axis) + leaves(op.operands[1], axis)

    # An activation whose only input is an instance norm used nowhere else is applied by the norm's
    # last pass (the norm is absorbed; the activation's layer becomes the fused norm).
    fused_norm = _norm_activations(body_ops, absorbed, leaves_of)

    # A 1x1 conv marked by lr-fuse-pointwise-chain runs inside its consumer's kernel (where the cost
    # model takes the sparse kernels for both): the consumer reads the producer's input instead.
    chain_of = _pointwise_chains(body_ops, vec, absorbed, leaves_of)
    # A conv marked by lr-fuse-conv-pool runs inside its max pool's layer: one conv kernel (dense or
    # sparse) that writes the pooled plane (the pool reads the conv's input instead). When the conv's result has
    # other users, the pool runs inside the conv's layer instead, whose kernel writes both planes
    # (`extra_out`: the pool's result, the layer's second output).
    pool_of, keep_of = _conv_pools(body_ops, vec, absorbed, leaves_of, chain_of)
    extra_out = {conv: pool.results[0] for conv, (pool, _) in keep_of.items()}

    def operands_of(op):
        return leaves_of.get(op, list(op.operands))

    # 1. classify values
    layer_ops = []
    for op in body_ops:
        op = op.operation
        if op in absorbed:
            continue
        name = op.operation.name
        if name == "arith.constant":
            val = op.attributes["value"]
            shape = _shape(op.results[0])
            if isinstance(val, ir.DenseElementsAttr) and val.is_splat:
                arr = np.full(shape, val.get_splat_value().value, np.float32)
            else:
                arr = np.array(val).astype(np.float32)
            buf[op.results[0]] = make_global(arr)
        elif name == "lr.reshape":
            alias_of[op.results[0]] = op.operands[0]
        elif name.startswith("lr."):
            if name[3:] not in EMITTERS:
                raise LoweringNotImplemented(f"'{name}' has no lowering to kernels", op.location)
            layer_ops.append(op)
        else:
            raise LoweringError(f"'{name}' is not an lr op; run lr-raise-torch first", op.location)

    layers = []
    for t, op in enumerate(layer_ops):
        try:
            attrs = lr.attrs_of(op)
        except lr.ShapeError as e:
            raise LoweringError(f"'{op.operation.name}': {e}", op.location) from None
        label = op.attributes["lr.name"].value if "lr.name" in op.attributes else ""
        if op in chain_of:
            attrs = {**attrs, "pointwise_chain": chain_of[op]}
        name = op.operation.name[3:]
        if op in pool_of:
            name, attrs = "conv2d", {**pool_of[op], "pool": 2}
        elif op in keep_of:
            attrs = {**attrs, "pool": 2, "pool_keep": True}
        if op in fused_norm:
            act, params = activation_of(name, attrs)
            name, attrs = "instance_norm", {**lr.attrs_of(fused_norm[op]), "act": act, "act_params": params}
        layers.append(LayerOp(name, attrs, [_shape(v) for v in operands_of(op)],
                              _shape(op.results[0]), op.location, label))
    # Output-channel parts of the layers that run in parallel (None: one kernel call). A split
    # layer's slices are arena views, so its result never goes straight to the caller's buffer.
    splits = [conv_channel_split(layer, threads) for layer in layers]
    # Pixel parts (panels or row blocks) of fused 1x1 pairs and of the low-intensity sparse convs that
    # stay whole above: every part gets the whole buffers (no slices) and writes its own pixels.
    panel_splits = [None if sp else chain_pixel_split(layer, threads) or conv_pixel_split(layer, threads, vec)
                    for layer, sp in zip(layers, splits)]
    # Channel parts of channel-wise layers: input and output sliced alike (arena buffers only).
    chan_splits = [channelwise_split(layer, threads) for layer in layers]

    # 2. outputs: the producer of a returned value writes straight into the caller's buffer
    split_results = {op.results[0] for op, sp, pp, cs in zip(layer_ops, splits, panel_splits, chan_splits)
                     if sp or pp or cs}
    returned = list(ret.operands)
    copy_out: list[tuple[int, object]] = []
    claimed = set()
    for j, v in enumerate(returned):
        r = root(v)
        if r in buf or r in claimed or r in split_results:  # an input, a constant, returned twice: copy
            copy_out.append((j, v))
        else:
            buf[r] = Buf("out", j, _numel(_shape(r)))
            claimed.add(r)

    # 3. liveness and arena plan
    last_use: dict = {}
    for t, op in enumerate(layer_ops):
        for v in operands_of(op):
            last_use[root(v)] = t
    for _, v in copy_out:
        last_use[root(v)] = len(layer_ops)
    # Concats whose inputs are contiguous slices of the result take no copy: each producer writes
    # straight into its slice (the result's buffer is allocated when the first slice is produced and
    # lives as long as any slice or the result is used).
    slice_of_concat = _inplace_concats(layer_ops, operands_of, buf, alias_of, split_results) if INPLACE_CONCAT else {}
    inplace = {r for r, _ in slice_of_concat.values()}
    for v, (r, _) in slice_of_concat.items():
        last_use[r] = max(last_use.get(r, -1), last_use.get(v, -1))
    arena = _Arena()
    live: list = []

    def place(v):
        n = _numel(_shape(v))
        buf[v] = Buf("arena", arena.alloc(n * 4), n)
        live.append(v)

    for t, op in enumerate(layer_ops):
        for v in list(live):
            if last_use.get(v, -1) < t:
                b = buf[v]
                arena.release(b.index, b.numel * 4)
                live.remove(v)
        r = op.results[0]
        if r in slice_of_concat:
            whole, off = slice_of_concat[r]
            if whole not in buf:
                n = _numel(_shape(whole))
                buf[whole] = Buf("arena", arena.alloc(n * 4), n)
                live.append(whole)
            buf[r] = Buf("arena", buf[whole].index + 4 * off, _numel(_shape(r)))
        elif r not in buf:
            place(r)
        pr = extra_out.get(op)
        if pr is not None and pr not in buf:
            place(pr)

    # a fused residual is sliced like the output: it must be an arena buffer too (a model input or
    # a returned value as residual keeps its layer whole)
    for t, op in enumerate(layer_ops):
        ins = operands_of(op)
        if splits[t] and len(ins) > 1 and buf[root(ins[1])].kind != "arena":
            splits[t] = None
        if chan_splits[t] and buf[root(ins[0])].kind != "arena":
            chan_splits[t] = None

    # 4. kernels, named after their op (a fused conv + pool after both)
    kernel_names = ["conv2d_max_pool2d" if "pool" in layer.attrs else op.operation.name[3:]
                    for op, layer in zip(layer_ops, layers)]
    sigs = []
    with ir.InsertionPoint(out_module.body):
        for t, op in enumerate(layer_ops):
            opname = kernel_names[t]
            if op.results[0] in inplace:
                sigs.append(None)  # its inputs were written in place
                continue
            with op.location:
                if chan_splits[t]:
                    parts = [EMITTERS[layers[t].name](Kernel(f"{fname}_l{t}_{opname}_p{i}", vec),
                                                      _channel_part(layers[t], c0, c1))
                             for i, (c0, c1) in enumerate(chan_splits[t])]
                    sigs.append(_PartedSig(parts, chan_splits[t], _emit_dispatch(f"{fname}_l{t}_{opname}", parts),
                                           inputs_sliced=True))
                    continue
                if panel_splits[t]:
                    parts = []
                    if "pointwise_chain" in layers[t].attrs:
                        emit_part = emit_pointwise_chain_part
                    else:
                        pack = sparse_conv_pack(layers[t], vec)  # once for all parts
                        emit_part = lambda *a, pack=pack: emit_conv2d_pixel_part(*a, pack)  # noqa: E731
                    for i, (q0, q1) in enumerate(panel_splits[t]):
                        parts.append(emit_part(Kernel(f"{fname}_l{t}_{opname}_p{i}", vec), layers[t], q0, q1,
                                               parts[0].args if parts else None))
                    sigs.append(_PartedSig(parts, None, _emit_dispatch(f"{fname}_l{t}_{opname}", parts)))
                    continue
                if not splits[t]:
                    sigs.append(EMITTERS[layers[t].name](Kernel(f"{fname}_l{t}_{opname}", vec), layers[t]))
                    continue
                parts, sparse = [], None
                for i, (k0, k1) in enumerate(splits[t]):
                    sig, sparse = emit_conv2d_part(Kernel(f"{fname}_l{t}_{opname}_p{i}", vec), layers[t], k0, k1,
                                                   sparse)
                    parts.append(sig)
                sigs.append(_PartedSig(parts, splits[t], _emit_dispatch(f"{fname}_l{t}_{opname}", parts)))

    # Kernel scratch (ops_dense.ARENA_SCRATCH): one region after the activations that every layer
    # reuses, sized for the hungriest layer; the parts of a split layer run at once, so each has its own.
    scratch_at: dict = {}  # id(KernelSig) -> byte offset in the arena
    need = 0
    for sig in sigs:
        parts = sig.parts if isinstance(sig, _PartedSig) else [sig] if sig is not None else []
        off = 0
        for part in parts:
            nbytes = sum(a.index for a in part.args if a.kind == "scratch")
            if nbytes:
                scratch_at[id(part)] = off
                off += -(-nbytes // ALIGN) * ALIGN
        need = max(need, off)
    if need:
        base = -(-arena.size // ALIGN) * ALIGN
        scratch_at = {k: base + v for k, v in scratch_at.items()}
        arena.size = base + need

    # 5. the entry functions: `fname` allocates the arena per call (the C API, AOT artifacts);
    # `lrc_arena_<fname>` takes it as a last argument so that a caller can keep one buffer across
    # calls (a prefix, not a suffix, so that no symbol starts with the name of the other).
    # An arena over glibc's mmap threshold (32 MiB at most) is otherwise mmap'ed and page-faulted in
    # on every call: ~10 % of a 256x256 super-resolution net.
    in_types = [ir.MemRefType.get(list(_shape(a)), ir.F32Type.get()) for a in block.arguments]
    out_types = [ir.MemRefType.get(list(_shape(v)), ir.F32Type.get()) for v in returned]
    if LAYER_MARKS is not None:
        LAYER_MARKS.append((fname, layers))
        if not any(ir.StringAttr(o.attributes["sym_name"]).value == MARK_FN for o in out_module.body.operations
                   if o.operation.name == "func.func"):
            with ir.InsertionPoint(out_module.body), ir.Location.unknown():
                mark = func.FuncOp(MARK_FN, ([ir.IndexType.get()], []), visibility="private")
                mark.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
    for name, caller_arena in ((fname, False), (arena_entry(fname), True)):
        if caller_arena and not arena.size:
            continue
        extra = [ir.MemRefType.get([arena.size], ir.IntegerType.get_signless(8))] if caller_arena else []
        with ir.InsertionPoint(out_module.body), f.location:
            entry = func.FuncOp(name, (in_types + out_types + extra, []))
            entry.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
            if arena.size:
                entry.attributes[ARENA_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), arena.size)
            eb = entry.add_entry_block()
        _emit_entry_body(eb, f, block, returned, layer_ops, sigs, buf, root, operands_of, copy_out, make_global,
                         fname, arena.size, eb.arguments[-1] if caller_arena else None, scratch_at, kernel_names,
                         extra_out)


ARENA_ATTR = "lrc.arena_bytes"


INPLACE_CONCAT = True


def _inplace_concats(layer_ops, operands_of, buf, alias_of, split_results) -> dict:
    """{input value: (concat result, element offset)} for the concats that need no copy: one image
    (or only leading size-1 dimensions) before the axis, so every input is one contiguous slice;
    the result an arena buffer; each input a distinct layer result of no other concat, with no
    buffer of its own yet (not a model input, constant or returned value) and not a reshape."""
    produced = {op.results[0] for op in layer_ops}
    out, results = {}, set()
    for op in layer_ops:
        if op.name != "lr.concat":
            continue
        r = op.results[0]
        shape = _shape(r)
        axis = lr.attrs_of(op)["axis"] % len(shape)
        ins = operands_of(op)
        if (_numel(shape[:axis]) != 1 or r in buf or r in split_results
                or len(set(ins)) != len(ins)
                or any(v not in produced or v in buf or v in alias_of or v in out or v in results for v in ins)):
            continue
        results.add(r)  # not also a slice of a later concat: its inputs already point into it
        off = 0
        for v in ins:
            out[v] = (r, off)
            off += _numel(_shape(v))
    return out


def _norm_activations(body_ops, absorbed: set, leaves_of: dict) -> dict:
    """{activation op: the lr.instance_norm it fuses with}; the norms go into `absorbed`."""
    fused = {}
    for op in body_ops:
        op = op.operation
        if op.name[3:] not in ACTIVATIONS or not op.name.startswith("lr."):
            continue
        p = getattr(op.operands[0].owner, "operation", None)
        if p is None or p.name != "lr.instance_norm" or p in absorbed or len(list(op.operands[0].uses)) != 1:
            continue
        absorbed.add(p)
        fused[op] = p
        leaves_of[op] = [p.operands[0]]
    return fused


def _pointwise_chains(body_ops, vec: int, absorbed: set, leaves_of: dict) -> dict:
    """{consumer conv: ChainPack} for the marked 1x1 pairs that get one fused kernel; their producers
    go into `absorbed` and the consumers read the producers' inputs (`leaves_of`)."""
    from lrc.transforms.pointwise_chain import CHAIN_ATTR, chain_consumer

    from .ops_dense import plan_pointwise_chain

    chains = {}
    for op in body_ops:
        op = op.operation
        if op.name != "lr.conv2d" or CHAIN_ATTR not in op.attributes or op in chains:
            continue
        user = chain_consumer(op)  # the mark is a hint: legality is checked again here
        if user is None or user in absorbed or user in chains:
            continue
        try:
            first, second = (LayerOp("conv2d", lr.attrs_of(o), [_shape(v) for v in o.operands], _shape(o.results[0]),
                                     o.location) for o in (op, user))
        except lr.ShapeError as e:
            raise LoweringError(f"'lr.conv2d': {e}", op.location) from None
        plan = plan_pointwise_chain(first, second, vec)
        if plan is None:
            continue
        absorbed.add(op)
        chains[user] = plan
        leaves_of[user] = [op.operands[0]] + list(user.operands)[1:]
    return chains


def _conv_pools(body_ops, vec: int, absorbed: set, leaves_of: dict, chain_of: dict) -> tuple[dict, dict]:
    """The marked conv + pool pairs whose conv kernel can fuse the pool (ops_dense.conv_pool_fusable):
    ({max pool: its conv's attrs} where the
    pool is the conv's only user: the convs go into `absorbed` and the pools read the convs' inputs
    (`leaves_of`); {conv: (max pool, attrs)} where the conv's result has other users: the pools go
    into `absorbed`, their results become the convs' second outputs)."""
    from lrc.transforms.conv_pool import POOL_ATTR, conv_pool_keeps, pool_consumer

    from .ops_dense import conv_pool_fusable

    pools, keeps = {}, {}
    for op in body_ops:
        op = op.operation
        if op.name != "lr.conv2d" or POOL_ATTR not in op.attributes or op in absorbed or op in chain_of:
            continue
        user = pool_consumer(op)  # the mark is a hint: legality is checked again here
        if user is None or user in absorbed:
            continue
        keep = conv_pool_keeps(op)
        try:
            conv = LayerOp("conv2d", lr.attrs_of(op), [_shape(v) for v in op.operands], _shape(op.results[0]),
                           op.location)
        except lr.ShapeError as e:
            raise LoweringError(f"'lr.conv2d': {e}", op.location) from None
        if not conv_pool_fusable(conv, vec, keep):
            continue
        if keep:
            absorbed.add(user)
            keeps[op] = (user, conv.attrs)
        else:
            absorbed.add(op)
            pools[user] = conv.attrs
            leaves_of[user] = [op.operands[0]]
    return pools, keeps


@dataclass
class _PartedSig:
    parts: list  # KernelSig per part
    ranges: list | None  # output-channel range [k0, k1) per part; None: every part takes whole buffers
    dispatch: str  # @dispatch(%part: index, <operands of part 0>, <of part 1>, ...)
    inputs_sliced: bool = False  # channel-wise layers: input 0 is sliced like the output


def _emit_dispatch(base: str, parts) -> str:
    """`@<base>_par(%i, args of every part)` calls part i. A function of its own: the body of an
    scf.parallel becomes a single-block memref.alloca_scope under convert-scf-to-openmp, which
    cannot hold the branches of an inline switch."""
    name = base + "_par"
    types = [ir.IndexType.get()] + [t for p in parts for t in p.types]
    fn = func.FuncOp(name, (types, []))
    fn.attributes["sym_visibility"] = ir.StringAttr.get("private")
    eb = fn.add_entry_block()
    with ir.InsertionPoint(eb):
        i = eb.arguments[0]
        pos = 1
        for j, p in enumerate(parts):
            n = len(p.types)
            args = list(eb.arguments[pos:pos + n])
            pos += n
            cond = arith.CmpIOp(arith.CmpIPredicate.eq, i, arith.ConstantOp(ir.IndexType.get(), j).result).result
            branch = scf.IfOp(cond)
            with ir.InsertionPoint(branch.then_block):
                func.CallOp([], ir.FlatSymbolRefAttr.get(f"{base}_p{j}"), args)
                scf.YieldOp([])
        func.ReturnOp([])
    return name


def arena_entry(entry: str) -> str:
    """Name of the entry point that takes the arena from the caller (last argument, i8 memref)."""
    return "lrc_arena_" + entry


def _emit_entry_body(eb, f, block, returned, layer_ops, sigs, buf, root, operands_of, copy_out, make_global,
                     fname, arena_size, arena_arg, scratch_at, kernel_names, extra_out):
    nin = len(block.arguments)
    with ir.InsertionPoint(eb), f.location:
        def flat(v: ir.Value, n: int) -> ir.Value:
            t = ir.MemRefType.get([n], ir.F32Type.get())
            return memref.ReinterpretCastOp(t, v, [], [], [], static_offsets=[0], static_sizes=[n],
                                            static_strides=[1]).result
        arg_flat = [flat(eb.arguments[i], _numel(_shape(a))) for i, a in enumerate(block.arguments)]
        out_flat = [flat(eb.arguments[nin + j], _numel(_shape(v))) for j, v in enumerate(returned)]
        arena_v = arena_arg
        if arena_size and arena_v is None:
            arena_v = memref.AllocOp(ir.MemRefType.get([arena_size], ir.IntegerType.get_signless(8)), [], [],
                                     alignment=ALIGN).result
        gview: dict = {}

        def slice_of(b: Buf, off: int, n: int) -> ir.Value:
            assert b.kind == "arena", b  # the lowering keeps split layers on arena buffers
            shift = arith.ConstantOp(ir.IndexType.get(), b.index + 4 * off).result
            return memref.ViewOp(ir.MemRefType.get([n], ir.F32Type.get()), arena_v, shift, []).result

        def value_of(b: Buf) -> ir.Value:
            if b.kind == "arg":
                return arg_flat[b.index]
            if b.kind == "out":
                return out_flat[b.index]
            if b.kind == "global":
                if b.name not in gview:
                    elem = ir.F32Type.get()
                    gview[b.name] = memref.GetGlobalOp(ir.MemRefType.get([b.numel], elem), b.name).result
                return gview[b.name]
            shift = arith.ConstantOp(ir.IndexType.get(), b.index).result
            return memref.ViewOp(ir.MemRefType.get([b.numel], ir.F32Type.get()), arena_v, shift, []).result

        def operands_for(op, sig, k0=None, k1=None, inputs_sliced=False):
            operands = []
            plane = _numel(_shape(op.results[0])[2:]) if k0 is not None else 0
            for a, ty in zip(sig.args, sig.types):
                if a.kind == "in":
                    v = operands_of(op)[a.index]
                    b = buf[root(v)]
                    if k0 is not None and inputs_sliced:
                        inplane = _numel(_shape(v)[2:])
                        operands.append(slice_of(b, k0 * inplane, (k1 - k0) * inplane))
                    else:
                        # a residual (input 1) of a channel part is the same slice as its output
                        operands.append(slice_of(b, k0 * plane, (k1 - k0) * plane) if k0 is not None and a.index
                                        else value_of(b))
                elif a.kind == "scratch":
                    shift = arith.ConstantOp(ir.IndexType.get(), scratch_at[id(sig)]).result
                    operands.append(memref.ViewOp(ty, arena_v, shift, []).result)
                elif a.kind == "out":
                    b = buf[op.results[0] if a.index == 0 else extra_out[op]]
                    operands.append(slice_of(b, k0 * plane, (k1 - k0) * plane) if k0 is not None else value_of(b))
                else:
                    if a.array is not None and not hasattr(a, "_global"):
                        a._global = make_global(a.array).name  # one global per parameter, shared by both entries
                    operands.append(memref.GetGlobalOp(ty, a._global).result)
            return operands

        def _mark(t):
            if LAYER_MARKS is not None:
                func.CallOp([], ir.FlatSymbolRefAttr.get(MARK_FN), [arith.ConstantOp(ir.IndexType.get(), t).result])

        for t, op in enumerate(layer_ops):
            sig = sigs[t]
            if sig is None:
                continue
            if isinstance(sig, _PartedSig):
                if sig.ranges is None:
                    operands = [v for p in sig.parts for v in operands_for(op, p)]
                else:
                    operands = [v for p, (k0, k1) in zip(sig.parts, sig.ranges)
                                for v in operands_for(op, p, k0, k1, sig.inputs_sliced)]
                with op.location:
                    idx = ir.IndexType.get()
                    lo, hi, one = (arith.ConstantOp(idx, v).result for v in (0, len(sig.parts), 1))
                    par = scf.ParallelOp([], [lo], [hi], [one], [])
                    body = par.region.blocks.append(idx)
                    with ir.InsertionPoint(body):
                        func.CallOp([], ir.FlatSymbolRefAttr.get(sig.dispatch), [body.arguments[0]] + operands)
                        scf.ReduceOp([], 0)
                    _mark(t)
                continue
            with op.location:
                func.CallOp([], ir.FlatSymbolRefAttr.get(f"{fname}_l{t}_{kernel_names[t]}"),
                            operands_for(op, sig))
                _mark(t)
        for j, v in copy_out:
            src = value_of(buf[root(v)])
            _emit_copy(src, out_flat[j], _numel(_shape(v)))
        if arena_size and arena_arg is None:
            memref.DeallocOp(arena_v)
        func.ReturnOp([])


def _emit_copy(src, dst, n):
    from torch_mlir.dialects import linalg
    del n
    linalg.copy(src, outs=[dst])
