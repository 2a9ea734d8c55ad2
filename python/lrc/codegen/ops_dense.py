"""Glue from lr conv/linear ops to the register-blocked vector kernels in `codegen.kernels`."""
from __future__ import annotations

import os

import numpy as np
from torch_mlir import ir

from .emit import Arg, Kernel, KernelSig, LayerOp
from .kernels.conv import SCRATCH_ATTR

# Conv kernels take their scratch from the arena (lower.py places it) rather than malloc'ing it per
# call; False is the A/B switch (docs/kernels.md, Round 7).
ARENA_SCRATCH = True


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


def _conv_spec(k: Kernel, op: LayerOp):
    from .kernels.conv import ConvSpec

    n, c, h, w = op.in_shapes[0]
    a = op.attrs
    kk, _, kh, kw = a["weight"].shape
    act, params = _act(a)
    return ConvSpec(N=n, C=c, H=h, W=w, K=kk, KH=kh, KW=kw, stride=tuple(a["stride"]),
                    padding=tuple(a["padding"]), dilation=tuple(a["dilation"]), groups=a["groups"], act=act,
                    act_params=params, residual=len(op.in_shapes) == 2, vec=k.vec, pool=a.get("pool", 0),
                    pool_keep=a.get("pool_keep", False))


def conv_pool_fusable(conv: LayerOp, vec: int, keep: bool = False) -> bool:
    """Whether the kernel `conv` (a conv2d layer feeding a 2x2 / stride-2 max pool) gets can write
    the pooled plane (`keep`: and the conv's): the dense row tiles (kernels.conv.pool_supported) or
    the sparse pattern tiles (sparse_conv.pool_supported)."""
    import dataclasses

    from .kernels.conv import dense_lanes, pool_supported
    from .kernels.sparse_conv import pool_supported as sparse_pool_supported

    spec = dataclasses.replace(_conv_spec(Kernel("", vec), conv), pool=2, pool_keep=keep)
    sparse = _sparse_pack(spec, conv.attrs)
    if sparse is not None:
        return sparse_pool_supported(sparse)
    from .kernels import winograd

    if winograd.use_winograd(spec):
        return True  # its output transform pools any plane: a pool window is one 2x2 tile
    return pool_supported(dataclasses.replace(spec, vec=dense_lanes(spec)))


# A part smaller than this many MACs is not worth a fork/join (a few microseconds with libomp).
MIN_PART_MACS = 1 << 18
CHANNEL_GRAIN = 8  # part boundaries on multiples of this: keeps the kernels' output-channel blocks whole
# Every part reads (and the kernels copy into their scratch) the whole input: a part must do at least
# this many MACs per input element, or two threads mostly duplicate memory traffic. Measured on the
# pruned super-resolution net (1x1 layers at 2-10 MACs per input element): splitting them made the
# model 1.26x slower at 2 threads (docs/threads.md).
MIN_INTENSITY = 24.0


def conv_channel_split(op: LayerOp, threads: int) -> list[tuple[int, int]] | None:
    """Output-channel ranges [k0, k1) for `threads` parts of a conv, or None to keep it whole.

    Only single-image, ungrouped convs split: then a channel range of the NCHW output (and of a fused
    residual) is one contiguous slice, so each part is an ordinary conv kernel writing its own
    slice. Boundaries balance non-zero weights, not filter counts: a pruned layer's filters carry
    very different amounts of work (the sparse packer sorts filters by pattern inside each part).
    """
    if threads <= 1 or op.name != "conv2d" or "pointwise_chain" in op.attrs or op.attrs.get("pool_keep"):
        return None  # a fused 1x1 pair would recompute its intermediate in every part; (a conv that
        # also writes its pooled plane keeps one kernel: parts would need slices of both outputs)
    if winograd_row_split(op, threads):
        return None  # split by tile rows instead (conv_pixel_split)
    a = op.attrs
    n = op.in_shapes[0][0]
    kk = a["weight"].shape[0]
    if n != 1 or a["groups"] != 1 or kk < 2 * CHANNEL_GRAIN:
        return None
    oh, ow = op.out_shape[2], op.out_shape[3]
    if a.get("pool"):  # a fused pool: the conv computes the unpooled plane
        oh, ow = oh * a["pool"], ow * a["pool"]
    work = np.count_nonzero(np.asarray(a["weight"]).reshape(kk, -1), axis=1).astype(np.float64)
    if work.sum() * oh * ow < MIN_PART_MACS * 2:
        return None
    parts = min(threads, kk // CHANNEL_GRAIN)
    c, h, w = op.in_shapes[0][1:]
    if work.sum() / parts * (oh * ow) / (c * h * w) < MIN_INTENSITY:
        return None
    cum = np.concatenate([[0.0], np.cumsum(work + 1e-3)])  # +eps: all-zero filters still cost a store
    bounds = [0]
    for j in range(1, parts):
        target = cum[-1] * j / parts
        cands = np.arange(bounds[-1] + CHANNEL_GRAIN, kk - CHANNEL_GRAIN * (parts - j) + 1, CHANNEL_GRAIN)
        if not len(cands):
            break
        bounds.append(int(cands[np.argmin(np.abs(cum[cands] - target))]))
    bounds.append(kk)
    return list(zip(bounds[:-1], bounds[1:])) if len(bounds) > 2 else None


def emit_conv2d_part(k: Kernel, op: LayerOp, k0: int, k1: int, sparse: bool | None) -> tuple[KernelSig, bool]:
    """One output-channel slice [k0, k1) of a conv as its own kernel over that slice of the output
    (and of the residual). `sparse`: None decides as for the whole layer (returned, so that every
    part of a layer uses the kernel family chosen once for the layer)."""
    import dataclasses

    a = dict(op.attrs)
    a["weight"] = np.ascontiguousarray(np.asarray(a["weight"])[k0:k1])
    if a.get("bias") is not None:
        a["bias"] = np.ascontiguousarray(np.asarray(a["bias"])[k0:k1])
    whole = _conv_spec(k, op)
    if sparse is None:
        sparse = _sparse_pack(whole, op.attrs) is not None
    spec = dataclasses.replace(whole, K=k1 - k0)
    out_shape = (op.out_shape[0], k1 - k0) + tuple(op.out_shape[2:])
    part = dataclasses.replace(op, attrs=a, out_shape=out_shape)
    return _emit_conv2d(k, part, spec, sparse), sparse


def emit_conv2d(k: Kernel, op: LayerOp) -> KernelSig:
    if "pointwise_chain" in op.attrs:
        return _emit_pointwise_chain(k, op)
    spec = _conv_spec(k, op)
    return _emit_conv2d(k, op, spec, None)


# A dense 1x1 pair is fused (kernels/dense_chain.py) where its intermediate is at least this big:
# smaller ones stay in L2 between two kernels anyway. DENSE_CHAIN False: never (the A/B switch).
DENSE_CHAIN_MIN_BYTES = 4 << 20
DENSE_CHAIN = True


def plan_pointwise_chain(first: LayerOp, second: LayerOp, vec: int):
    """The fused kernel's packs for a marked 1x1 pair (lr-fuse-pointwise-chain), or None to emit the
    two convs separately: the sparse pair kernel where the sparse kernels would be used for both,
    the dense one (the dense GEMM tiles on both stages) where neither is sparse and the intermediate
    would not stay in cache (DENSE_CHAIN_MIN_BYTES); a mixed pair stays two kernels."""
    import dataclasses

    from .kernels.pointwise_chain import check_chain, pack_pointwise_chain
    from .kernels.sparse_conv import sparse_lanes

    k = Kernel("", vec)
    s1, s2 = _conv_spec(k, first), _conv_spec(k, second)
    sp1, sp2 = _sparse_pack(s1, first.attrs), _sparse_pack(s2, second.attrs)
    if sp1 is None and sp2 is None:
        return _plan_dense_chain(first, second, s1, s2)
    if sp1 is None or sp2 is None:
        return None
    s1 = dataclasses.replace(s1, vec=sparse_lanes(s1))
    s2 = dataclasses.replace(s2, vec=sparse_lanes(s2))
    try:
        check_chain(s1, s2)
    except ValueError:
        return None
    libs = []
    for a in (first.attrs, second.attrs):
        sp = a["sparsity"]
        libs.append(sp["library"] if sp["kind"] in ("pattern", "pattern+kernel") else None)
    return pack_pointwise_chain(s1, first.attrs["weight"], first.attrs["bias"], s2, second.attrs["weight"],
                                second.attrs["bias"], library1=libs[0], library2=libs[1])


def _plan_dense_chain(first: LayerOp, second: LayerOp, s1, s2):
    import dataclasses

    from .kernels.dense_chain import chain_lanes, pack_dense_chain
    from .kernels.pointwise_chain import check_chain

    if not DENSE_CHAIN or s1.N * s1.K * s1.H * s1.W * 4 < DENSE_CHAIN_MIN_BYTES:
        return None
    try:
        check_chain(s1, s2)
    except ValueError:
        return None
    v = chain_lanes(s1, s2)
    s1, s2 = dataclasses.replace(s1, vec=v), dataclasses.replace(s2, vec=v)
    return pack_dense_chain(s1, first.attrs["weight"], first.attrs["bias"], s2, second.attrs["weight"],
                            second.attrs["bias"])



def even_ranges(units: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous ranges [u0, u1) covering 0..units, sizes differing by at most one."""
    bounds = [round(units * j / parts) for j in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _share_params(sig: KernelSig, shared: list | None) -> KernelSig:
    """Point a part's parameter Args at an earlier part's (the same arrays): one copy of the weights."""
    if shared is not None:
        sig.args = [b if a.kind == "param" else a for a, b in zip(sig.args, shared)]
    return sig


def chain_pixel_split(op: LayerOp, threads: int) -> list[tuple[int, int]] | None:
    """Panel ranges [q0, q1) for `threads` parts of a fused 1x1 pair, or None to keep it whole.

    Splitting a fused pair over output channels would recompute the intermediate in every part;
    over pixel panels each part reads its own pixels once, keeps its own scratch panels and writes
    its own pixels of every output channel. Single image only (a panel range is then one range)."""
    from .kernels.pointwise_chain import chain_panels

    if threads <= 1 or op.name != "conv2d" or "pointwise_chain" not in op.attrs or op.in_shapes[0][0] != 1:
        return None
    chain = op.attrs["pointwise_chain"]
    npan = chain_panels(chain)
    macs = sum(int(p.weights.size) for p in (chain.first, chain.second)) * op.out_shape[2] * op.out_shape[3]
    parts = min(threads, npan)
    if parts < 2 or macs < MIN_PART_MACS * 2:
        return None
    return even_ranges(npan, parts)


def conv_pixel_split(op: LayerOp, threads: int, vec: int) -> list[tuple[int, int]] | None:
    """Pixel-unit ranges [u0, u1) (sparse_conv.pixel_units: panels or row blocks) for `threads`
    parts of a pattern-sparse conv that conv_channel_split keeps whole, or None.

    Channel parts each read (and copy) the whole input, which doubles the memory traffic of a
    low-intensity layer (1x1 convs on big planes); pixel parts read disjoint pixels, so they pay
    off exactly there. Only kernels that copy their input per panel / row block split this way."""
    if threads <= 1 or op.name != "conv2d" or "pointwise_chain" in op.attrs:
        return None
    rows = winograd_row_split(op, threads)
    if rows:
        return rows
    a = op.attrs
    if op.in_shapes[0][0] != 1 or a["groups"] != 1 or a.get("sparsity") is None:
        return None
    oh, ow = op.out_shape[2], op.out_shape[3]
    if np.count_nonzero(a["weight"]) * oh * ow < MIN_PART_MACS * 2:
        return None
    from .kernels.sparse_conv import pixel_units

    pack = sparse_conv_pack(op, vec)
    units = pixel_units(pack) if pack is not None else 0
    parts = min(threads, units)
    if parts < 2:
        return None
    return even_ranges(units, parts)


# False: Winograd convs split over output channels like the direct ones (the A/B switch).
WINOGRAD_ROW_PARTS = True
# Tiles a tile-row part must hold at least. Whole models, 2 threads, tile rows vs channel parts
# (docs/threads.md): VGG 0.74-0.87x, U-Net 0.68-0.80x the time, but ResNet basic 1.05-1.07x, whose
# 28x28 / 14x14 / 7x7 layers gave each part bands of 8-28 tiles (the kernel alone needs ~16+).
WINOGRAD_MIN_PART_TILES = 64


def winograd_row_split(op: LayerOp, threads: int) -> list[tuple[int, int]] | None:
    """Tile-row ranges [ty0, ty1) for `threads` parts of a conv that runs as a dense Winograd kernel,
    or None. Output-channel parts would each pad and transform the whole input (the input transform
    is 10-25 % of an F(4x4) kernel's time); tile-row parts transform only their own bands and write
    disjoint output rows (also of a kept pooled plane)."""
    if not WINOGRAD_ROW_PARTS or threads <= 1 or op.name != "conv2d" or "pointwise_chain" in op.attrs:
        return None
    from .kernels import winograd

    spec = _conv_spec(Kernel("", 8), op)
    if not winograd.use_winograd(spec) or sparse_conv_pack(op, 8) is not None:  # (memoised: asked twice)
        return None
    if int(np.prod(op.out_shape)) * max(1, spec.pool) ** 2 * spec.C * 9 < MIN_PART_MACS * 2:
        return None  # (a fused pool's output is the pooled plane)
    th, tw = winograd.tile_grid(spec)
    parts = min(threads, th)
    if parts < 2 or th // parts * tw < WINOGRAD_MIN_PART_TILES:
        return None  # short bands starve the kernel's GEMM: channel parts instead
    return even_ranges(th, parts)


def sparse_conv_pack(op: LayerOp, vec: int):
    """The compact sparse form lrc.compile gives this conv at lane width `vec`, or None (dense kernel);
    packed once per layer (packing a big layer, with its storage report, takes ~0.1 s)."""
    key = ("sparse_conv_pack", vec)
    if key not in op.memo:
        op.memo[key] = _sparse_pack(_conv_spec(Kernel("", vec), op), op.attrs)
    return op.memo[key]


def emit_conv2d_pixel_part(k: Kernel, op: LayerOp, u0: int, u1: int, shared: list | None, pack) -> KernelSig:
    """Pixel units [u0, u1) of a sparse conv, or tile rows of a dense Winograd one (pack None),
    (conv_pixel_split) over the whole input and output. `pack`: the layer's sparse_conv_pack, packed
    once for all parts; `shared`: an earlier part's Args, whose parameter arrays (the same weights)
    this part reuses."""
    return _share_params(_emit_conv2d(k, op, _conv_spec(k, op), pack is not None, (u0, u1), pack), shared)


def emit_pointwise_chain_part(k: Kernel, op: LayerOp, q0: int, q1: int, shared: list | None) -> KernelSig:
    """Panels [q0, q1) of a fused 1x1 pair as a kernel over the whole input and output. `shared`:
    the parameter Args of an earlier part (the same arrays), so that all parts use one copy of
    the weights."""
    return _share_params(_emit_pointwise_chain(k, op, (q0, q1)), shared)


def _emit_pointwise_chain(k: Kernel, op: LayerOp, panels: tuple[int, int] | None = None) -> KernelSig:
    from .kernels.dense_chain import DenseStage, emit_dense_chain_func
    from .kernels.pointwise_chain import emit_pointwise_chain_func

    chain = op.attrs["pointwise_chain"]
    emit = emit_dense_chain_func if isinstance(chain.first, DenseStage) else emit_pointwise_chain_func
    fn = emit(chain, k.name, panels, external_scratch=ARENA_SCRATCH)
    args = [Arg("in", 0)] + [Arg("param", array=np.ascontiguousarray(p).reshape(-1)) for p in chain.arrays()]
    if chain.second.spec.residual:
        args.append(Arg("in", 1))
    args.append(Arg("out"))
    return _with_scratch(KernelSig(args=args, types=list(fn.type.inputs)), fn)


def _with_scratch(sig: KernelSig, fn) -> KernelSig:
    """The kernel's scratch argument (the arena region lower.py places), when it takes one."""
    if SCRATCH_ATTR in fn.attributes:
        sig.args.append(Arg("scratch", ir.IntegerAttr(fn.attributes[SCRATCH_ATTR]).value))
    return sig


def _emit_conv2d(k: Kernel, op: LayerOp, spec, force_sparse: bool | None, units=None, pack=None) -> KernelSig:
    """`pack`: a sparse pack made earlier for this very conv (pixel parts share one)."""
    from .kernels.conv import emit_conv_func, pack_conv_weights

    a = op.attrs
    if pack is not None:
        sparse = pack
    elif force_sparse is False:
        sparse = None
    elif force_sparse:
        import dataclasses

        from .kernels.sparse_conv import pack_sparse_conv, sparse_lanes

        sp = a["sparsity"]
        lib = sp["library"] if sp["kind"] in ("pattern", "pattern+kernel") else None
        sparse = pack_sparse_conv(dataclasses.replace(spec, vec=sparse_lanes(spec)), a["weight"], a["bias"],
                                  library=lib)
    else:
        sparse = _sparse_pack(spec, a)
    # Scratch buffers (padded input copies, panels) come from the model's arena, one region every
    # conv reuses: malloc'ed per call they came back at other addresses, cold (docs/kernels.md, Round 7).
    if sparse is not None:
        from .kernels.sparse_conv import emit_sparse_conv_func

        packed = sparse.arrays()
        fn = emit_sparse_conv_func(sparse, k.name, units, external_scratch=ARENA_SCRATCH)
    else:
        import dataclasses

        from .kernels import winograd

        if winograd.use_winograd(spec):
            spec = dataclasses.replace(spec, vec=winograd.lanes(spec))
            lay = winograd.layout_for(spec)
            packed = winograd.pack_winograd_weights(spec, a["weight"], a["bias"], lay)
            fn = winograd.emit_winograd_func(spec, k.name, packed, external_scratch=ARENA_SCRATCH, layout=lay,
                                             rows=units)
        elif units is not None:
            raise NotImplementedError(f"{k.name}: pixel parts of a dense conv that is not a Winograd one: {spec}")
        else:
            from .kernels.conv import dense_lanes

            spec = dataclasses.replace(spec, vec=dense_lanes(spec))
            packed = pack_conv_weights(spec, a["weight"], a["bias"])
            fn = emit_conv_func(spec, k.name, packed, external_scratch=ARENA_SCRATCH)
    args = [Arg("in", 0)] + [Arg("param", array=np.ascontiguousarray(p).reshape(-1)) for p in packed]
    if spec.residual:
        args.append(Arg("in", 1))
    args.append(Arg("out"))
    if spec.pool_keep:
        args.append(Arg("out", 1))  # the pooled plane: the layer's second output (lower.extra_out)
    return _with_scratch(KernelSig(args=args, types=list(fn.type.inputs)), fn)


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
