"""Human-readable summary of a pruned model: sparsity, MACs, compression."""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from .export import ATTR
from .layers import prunable_layers


def write_atomic(path: str, data: bytes) -> None:
    """Write via a temporary file in the same directory and ``os.replace``,
    so readers see the old file or the new one, never a torn one."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lrprune-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates 0600; give the file the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ShapeRecorder:
    """Forward hooks remembering, per layer, how many times each weight is
    used per sample -- the factor that turns weight counts into MACs."""

    def __init__(self, modules: Dict[str, nn.Module]):
        self.uses: Dict[str, int] = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name):
        def hook(module, inputs, output):
            self.uses[name] = weight_uses(module, inputs[0], output)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def weight_uses(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        # Each input pixel is scattered through the whole kernel.
        return int(x.shape[-2] * x.shape[-1])
    if isinstance(module, nn.Conv2d):
        return int(y.shape[-2] * y.shape[-1])
    # Linear: one use per row; dim 0 is the batch when there is one.
    rows = 1
    for d in x.shape[1:-1]:
        rows *= int(d)
    return rows


@dataclass
class Report:
    rows: List[dict] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r["params"] for r in self.rows)

    @property
    def total_nonzero(self) -> int:
        return sum(r["nonzero"] for r in self.rows)

    @property
    def compression(self) -> float:
        """Prunable-layer weights before / after (non-zero)."""
        return self.total_params / max(self.total_nonzero, 1)

    @property
    def macs_dense(self) -> Optional[int]:
        vals = [r["macs_dense"] for r in self.rows]
        return None if any(v is None for v in vals) else sum(vals)

    @property
    def macs_pruned(self) -> Optional[int]:
        vals = [r["macs_pruned"] for r in self.rows]
        return None if any(v is None for v in vals) else sum(vals)

    def to_markdown(self) -> str:
        def n(v):
            return "n/a" if v is None else f"{v:,}"

        lines = [
            "| layer | type | kind | params | non-zero | sparsity | MACs dense | MACs pruned |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['name']} | {r['type']} | {r['kind']} | {n(r['params'])} | {n(r['nonzero'])} "
                f"| {r['sparsity']:.1%} | {n(r['macs_dense'])} | {n(r['macs_pruned'])} |"
            )
        tp, tn = self.total_params, self.total_nonzero
        lines.append(
            f"| **total** | | | {n(tp)} | {n(tn)} | {1 - tn / max(tp, 1):.1%} "
            f"| {n(self.macs_dense)} | {n(self.macs_pruned)} |"
        )
        lines.append("")
        lines.append(f"Compression rate (prunable layers): {self.compression:.2f}x")
        md, mp = self.macs_dense, self.macs_pruned
        if md is not None and mp:
            lines.append(f"MAC reduction (prunable layers, per sample): {md / mp:.2f}x")
        else:
            lines.append("MACs: n/a (give report() an example input, or run one forward pass first)")
        return "\n".join(lines) + "\n"

    __str__ = to_markdown

    def save_chart(self, path: Union[str, os.PathLike]) -> str:
        """Write a PNG bar chart (per-layer sparsity, MACs before/after).

        Written to a temporary file in the same directory and then renamed,
        so a reader never sees a half-written image.
        """
        try:
            # Figure + Agg canvas, not pyplot: no global backend switch and
            # nothing left open in the caller's pyplot state.
            from matplotlib.figure import Figure
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("save_chart needs matplotlib: pip install 'lrprune[chart]'") from e

        path = os.fspath(path)
        names = [r["name"] for r in self.rows]
        x = range(len(names))
        has_macs = self.macs_dense is not None
        fig = Figure(figsize=(max(6, 0.6 * len(names) + 2), 7 if has_macs else 4))
        axes = fig.subplots(2 if has_macs else 1, 1, squeeze=False)[:, 0]
        axes[0].bar(x, [100 * r["sparsity"] for r in self.rows], color="tab:red")
        axes[0].set_ylabel("zero weights (%)")
        axes[0].set_ylim(0, 100)
        axes[0].set_title(f"Sparsity per layer (compression {self.compression:.2f}x)")
        if has_macs:
            w = 0.4
            axes[1].bar([i - w / 2 for i in x], [r["macs_dense"] for r in self.rows], w, label="dense")
            axes[1].bar([i + w / 2 for i in x], [r["macs_pruned"] for r in self.rows], w, label="pruned")
            axes[1].set_ylabel("MACs per sample")
            axes[1].legend()
        for ax in axes:
            ax.set_xticks(list(x))
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        write_atomic(path, buf.getvalue())
        return path


def _example(model: nn.Module, example_input):
    if isinstance(example_input, torch.Size) or (
        isinstance(example_input, (tuple, list)) and example_input and all(isinstance(d, int) for d in example_input)
    ):
        p = next(model.parameters())
        return (torch.zeros(tuple(example_input), device=p.device, dtype=p.dtype),)
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    return tuple(example_input)


def measure_uses(model: nn.Module, example_input) -> Dict[str, int]:
    """Run one forward pass (eval mode, no grad) and record weight uses per layer."""
    rec = ShapeRecorder(dict(prunable_layers(model)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*_example(model, example_input))
    finally:
        model.train(was_training)
        rec.remove()
    return rec.uses


def build_report(
    model: nn.Module,
    example_input=None,
    uses: Optional[Dict[str, int]] = None,
    kinds: Optional[Dict[str, str]] = None,
) -> Report:
    """Report over all prunable layers.  ``example_input``: a tensor, a
    tuple of inputs, or an input shape; otherwise ``uses`` recorded by a
    :class:`ShapeRecorder` are used, and MACs are n/a without either."""
    if example_input is not None:
        uses = measure_uses(model, example_input)
    uses = uses or {}
    rows = []
    for name, m in prunable_layers(model):
        w = m.weight.detach()
        nnz = int((w != 0).sum())
        st = getattr(m, ATTR, None)
        kind = st["kind"] if isinstance(st, dict) else (kinds or {}).get(name, "dense")
        u = uses.get(name)
        rows.append(
            {
                "name": name,
                "type": type(m).__name__,
                "kind": kind,
                "params": w.numel(),
                "nonzero": nnz,
                "sparsity": 1 - nnz / w.numel(),
                "macs_dense": None if u is None else u * w.numel(),
                "macs_pruned": None if u is None else u * nnz,
            }
        )
    return Report(rows)
