"""`CompiledModel`: a compiled network you call like the PyTorch module it came from."""
from __future__ import annotations

import numpy as np


class CompiledModel:
    """Holds an executable entry point `fn(*inputs, *outputs)` over C-contiguous float32 arrays.

    Calling with torch tensors returns torch tensors, with numpy arrays returns numpy arrays. A
    wrong shape or dtype raises ValueError naming the expected and the given.
    """

    def __init__(self, runner, input_shapes, output_shapes, target: str, lr_ir: str = "", artifact=None,
                 stats: dict | None = None, keepalive=None, out_spec: str | None = None):
        self._runner = runner
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.output_shapes = [tuple(s) for s in output_shapes]
        self.target = target
        self.lr_ir = lr_ir
        self._artifact = artifact  # how to build a shared object for save(); None when not supported
        self.stats = stats or {}
        self._keepalive = keepalive  # e.g. the loaded shared object, which must outlive the runner
        # The PyTorch model's output structure (importer.fx_import._structure_json): outputs come back
        # as the same tuple / list / dict nesting; None (older artifacts): one value, or a flat tuple.
        self.out_spec = out_spec
        self._spec = None
        if out_spec:
            import json

            spec = json.loads(out_spec)
            self._spec = spec if _leaves(spec) == len(self.output_shapes) else None

    def _as_array(self, i, x):
        is_torch = False
        try:
            import torch

            if isinstance(x, torch.Tensor):
                is_torch = True
                if x.dtype != torch.float32:
                    raise ValueError(f"input #{i}: expected dtype float32, got {x.dtype}")
                x = x.detach().cpu().numpy()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        if not isinstance(x, np.ndarray):
            raise ValueError(f"input #{i}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"input #{i}: expected dtype float32, got {x.dtype}")
        if tuple(x.shape) != self.input_shapes[i]:
            raise ValueError(f"input #{i}: expected shape {list(self.input_shapes[i])}, got {list(x.shape)}")
        return np.ascontiguousarray(x), is_torch

    def __call__(self, *inputs):
        if len(inputs) != len(self.input_shapes):
            raise ValueError(f"expected {len(self.input_shapes)} input(s) of shape(s) "
                             f"{[list(s) for s in self.input_shapes]}, got {len(inputs)}")
        arrays, torch_in = [], False
        for i, x in enumerate(inputs):
            a, t = self._as_array(i, x)
            arrays.append(a)
            torch_in = torch_in or t
        outs = [np.empty(s, np.float32) for s in self.output_shapes]
        self._runner(*arrays, *outs)
        if torch_in:
            import torch

            outs = [torch.from_numpy(o) for o in outs]
        if self._spec is not None:
            return _unflatten(self._spec, iter(outs))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def save(self, path, overwrite: bool = False) -> None:
        """Write the ahead-of-time artifact (a directory with a shared object and metadata)."""
        if self._artifact is None:
            raise NotImplementedError(f"save() is not available for target '{self.target}'")
        from .targets.aot import save_artifact

        save_artifact(self, path, overwrite=overwrite)


def _leaves(spec) -> int:
    return 1 if spec["t"] == "leaf" else sum(_leaves(c) for c in spec["c"])


def _unflatten(spec, it):
    if spec["t"] == "leaf":
        return next(it)
    kids = [_unflatten(c, it) for c in spec["c"]]
    if spec["t"] == "dict":
        return dict(zip(spec["k"], kids))
    return tuple(kids) if spec["t"] == "tuple" else kids
