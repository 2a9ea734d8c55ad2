"""Read `lrprune`'s per-layer structure annotations into `#lr.sparsity` attribute values.

lrprune records intent (kind, pattern library); the per-kernel pattern ids are re-derived from the
zeros actually present in the weights, so a checkpoint edited after pruning cannot lie to us.
"""
from __future__ import annotations

import numpy as np
import torch


def kernel_pattern_ids(weight: np.ndarray, library) -> np.ndarray:
    """Pattern id per (filter, channel) kernel: the library pattern that covers its non-zeros.

    -1 marks an all-zero kernel (connectivity-pruned). A kernel whose non-zeros fit no pattern raises
    ValueError, because compiling it with a pattern kernel would silently drop weights.
    """
    k, c = weight.shape[:2]
    flat = weight.reshape(k, c, -1) != 0
    masks = np.zeros((len(library), flat.shape[2]), dtype=bool)
    for i, pat in enumerate(library):
        masks[i, list(pat)] = True
    ids = np.full((k, c), -1, dtype=np.int32)
    nonempty = flat.any(axis=2)
    # covered[k, c, p]: every non-zero of kernel (k, c) lies inside pattern p
    covered = ~(flat[:, :, None, :] & ~masks[None, None, :, :]).any(axis=3)
    fits = covered.any(axis=2)
    bad = nonempty & ~fits
    if bad.any():
        kk, cc = np.argwhere(bad)[0]
        raise ValueError(f"kernel ({kk}, {cc}) has non-zeros at {np.flatnonzero(flat[kk, cc]).tolist()}, "
                         "which no pattern of the library covers")
    ids[nonempty] = covered.argmax(axis=2)[nonempty]
    return ids


def sparsity_annotations(model: torch.nn.Module) -> dict[str, dict]:
    out = {}
    for name, mod in model.named_modules():
        ann = getattr(mod, "lr_sparsity", None)
        if not ann or not isinstance(mod, torch.nn.Conv2d):
            continue
        kind = ann.get("kind", "none")
        library = [tuple(int(p) for p in pat) for pat in (ann.get("library") or [])]
        ids = None
        w = mod.weight.detach().cpu().numpy()
        if kind in ("pattern", "pattern+kernel") and library:
            try:
                ids = kernel_pattern_ids(w, library)
            except ValueError as e:
                raise ValueError(f"layer '{name}': {e}") from None
        elif kind == "kernel":
            ids = np.where(np.abs(w).reshape(w.shape[0], w.shape[1], -1).sum(axis=2) > 0, 0, -1).astype(np.int32)
        out[name] = {"kind": kind, "library": library, "ids": ids}
    return out
