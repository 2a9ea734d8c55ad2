"""Sparsity passes on lr.conv2d.

`lr-detect-sparsity`: a conv without a `#lr.sparsity` attribute gets one describing the structure
found in its weights (zero filters, channels, columns, kernels, pattern kernels), so a model pruned
by another tool (torch.nn.utils.prune, a checkpoint with baked-in zeros) reaches the sparse kernels
too. Whether a sparse kernel is then used is decided at lowering by a cost model.

`lr-pack-sparse-weights`: computes each annotated conv's compact (FKW-like) form and records its
size next to dense and CSR as the discardable `lr.storage` attribute; `storage_report()` gives the
same as rows for a table. The lowering packs the same way (codegen.kernels.sparse_conv).
"""
from __future__ import annotations

import numpy as np
from torch_mlir import ir

from lrc.dialects import lr

from .base import Option, Pass, register
from .fusion import lr_ops


def detect_structure(weight: np.ndarray, min_zeros: float = 0.1, max_patterns: int = 16) -> dict | None:
    """#lr.sparsity value ({kind, library, ids}) for the zeros in `weight` [K, Cg, KH, KW], or None.

    Kinds are tried from the most regular: zero filters or zero input channels only; PatDNN patterns
    (every non-empty kernel of a KxK layer keeps the same number of taps, at most half of them, in at
    most `max_patterns` distinct sets; "pattern+kernel" when kernels are removed too); the same
    (channel, tap) columns removed in every filter; whole kernels removed; otherwise irregular.
    Fewer than `min_zeros` zeros: None.
    """
    w = np.asarray(weight)
    K, Cg = w.shape[:2]
    T = w.shape[2] * w.shape[3]
    nz = w.reshape(K, Cg, T) != 0
    if nz.size == 0 or 1.0 - nz.mean() < min_zeros:
        return None
    kern = nz.any(axis=2)  # kept kernels
    filt, chan = kern.any(axis=1), kern.any(axis=0)
    col = nz.any(axis=0)  # [Cg, T]
    full_kernels = (nz == kern[:, :, None]).all()  # every kept kernel is dense
    if full_kernels and (kern == (filt[:, None] & chan[None, :])).all():
        if not filt.all() and chan.all():
            return {"kind": "filter", "library": [], "ids": None}
        if filt.all() and not chan.all():
            return {"kind": "channel", "library": [], "ids": None}
    if T > 1:
        counts = nz.sum(axis=2)[kern]
        if counts.size and counts.min() == counts.max() and counts.max() * 2 <= T:
            from lrc.codegen.kernels.sparse_conv import kernel_tap_sets

            pats, ids = kernel_tap_sets(w)
            if pats is not None and len(pats) <= max_patterns:
                kind = "pattern" if kern.all() else "pattern+kernel"
                return {"kind": kind, "library": pats, "ids": ids}
    if filt.all() and (nz == col[None, :, :]).all() and not col.all():
        return {"kind": "column", "library": [], "ids": None}
    if full_kernels:
        return {"kind": "kernel", "library": [], "ids": np.where(kern, 0, -1).astype(np.int32)}
    return {"kind": "irregular", "library": [], "ids": None}


@register
class DetectSparsity(Pass):
    argument = "lr-detect-sparsity"
    summary = "attach #lr.sparsity to convs whose weights hold structured (or irregular) zeros"
    options = {"min-zeros": Option(float, 0.1, "smallest fraction of zero weights worth describing")}

    def run(self, module):
        for op in lr_ops(module, "lr.conv2d"):
            if "sparsity" in op.attributes:
                continue  # lrprune's annotation (or an earlier run) is kept as is
            st = detect_structure(lr.attrs_of(op)["weight"], self.min_zeros)
            if st is not None:
                op.attributes["sparsity"] = lr.sparsity_attr(st["kind"], st["library"], st["ids"])


def _conv_spec(op):
    from lrc.codegen.kernels.conv import ConvSpec

    a = lr.attrs_of(op)
    n, c, h, w = op.operands[0].type.shape
    k, _, kh, kw = a["weight"].shape
    return ConvSpec(N=n, C=c, H=h, W=w, K=k, KH=kh, KW=kw, stride=tuple(a["stride"]), padding=tuple(a["padding"]),
                    dilation=tuple(a["dilation"]), groups=a["groups"]), a


def storage_report(module: ir.Module) -> list[dict]:
    """Per sparse conv: name, kind, non-zeros and bytes (dense, CSR, FKW form, runtime tables)."""
    from lrc.codegen.kernels.sparse_conv import pack_sparse_conv

    rows = []
    for i, op in enumerate(lr_ops(module, "lr.conv2d")):
        a = lr.attrs_of(op)
        sp = a.get("sparsity")
        if sp is None or sp["kind"] == "none":
            continue
        spec, a = _conv_spec(op)
        lib = sp["library"] if sp["kind"] in ("pattern", "pattern+kernel") else None
        st = pack_sparse_conv(spec, a["weight"], None, library=lib).stats
        name = op.attributes["lr.name"].value if "lr.name" in op.attributes else f"conv{i}"
        rows.append({"layer": name, "kind": sp["kind"], **st})
    return rows


@register
class PackSparseWeights(Pass):
    argument = "lr-pack-sparse-weights"
    summary = "compute the compact (FKW) form of sparse convs and record its bytes vs dense and CSR"

    def run(self, module):
        from lrc.codegen.kernels.sparse_conv import pack_sparse_conv

        i64 = ir.IntegerType.get_signless(64)
        for op in lr_ops(module, "lr.conv2d"):
            sp = lr.attrs_of(op).get("sparsity")
            if sp is None or sp["kind"] == "none":
                continue
            spec, a = _conv_spec(op)
            lib = sp["library"] if sp["kind"] in ("pattern", "pattern+kernel") else None
            try:
                st = pack_sparse_conv(spec, a["weight"], None, library=lib).stats
            except ValueError as e:
                op.location.emit_error(f"'lr.conv2d' sparsity: {e}")
                from .base import PassError

                raise PassError(str(e), reported=True) from None
            op.attributes["lr.storage"] = ir.DictAttr.get({
                k: ir.IntegerAttr.get(i64, int(st[k]))
                for k in ("nnz", "kernels", "patterns", "dense_bytes", "csr_bytes", "fkw_bytes", "runtime_bytes")})
