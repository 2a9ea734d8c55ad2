"""ADMM structured pruning (Zhang et al., ECCV 2018; PatDNN / PCONV).

Training minimises ``task_loss + sum_i rho_i/2 ||W_i - Z_i + U_i||^2``
while, every ``admm_interval`` steps, ``Z_i = Proj_S(W_i + U_i)`` and
``U_i += W_i - Z_i`` (scaled-dual ADMM).  The weights are thereby pulled
gradually towards the structured set S instead of being cut there at
once; :meth:`ADMMPruner.hard_prune` then projects and fixes masks for
retraining.

Z and U live in each module's own weight layout so that the penalty is a
plain elementwise expression; only projections go through the canonical
layout.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .config import PruneConfig, Rule
from .export import ATTR, make_structure
from .layers import from_canonical, kernel_shape, prunable_layers, to_canonical
from .masks import MaskSet
from .patterns import PatternLibrary
from .projections import PATTERN_KINDS, projection_mask
from .report import Report, ShapeRecorder, build_report

STATE_FORMAT = "lrprune.admm/1"

# One constraint set: (kind, rate, library).
Constraint = Tuple[str, Optional[float], Optional[PatternLibrary]]


class ADMMPruner:
    """ADMM pruning of ``model`` as described by ``config``.

    Use either the helpers in :mod:`lrprune.train` or your own loop::

        loss = pruner.loss(task_loss)   # task_loss + penalty()
        loss.backward(); optimizer.step()
        pruner.step()                   # update() every admm_interval steps
        ...
        pruner.hard_prune()             # project, create masks
        pruner.attach(optimizer)        # keep pruned weights at zero
    """

    def __init__(self, model: nn.Module, config: PruneConfig):
        if not isinstance(config, PruneConfig):
            raise ValueError(f"ADMMPruner needs a PruneConfig, got {type(config).__name__}")
        self.model = model
        self.config = config
        self.rules: Dict[str, Rule] = self.config.resolve(model)
        named = dict(model.named_modules())
        self.modules: Dict[str, nn.Module] = OrderedDict((n, named[n]) for n in self.rules)
        self.libraries: Dict[str, Optional[PatternLibrary]] = self._libraries()
        self.constraints: Dict[str, List[Constraint]] = {n: self._constraints(n) for n in self.rules}
        self.rho: Dict[str, float] = {
            n: float(r.rho if r.rho is not None else self.config.rho) for n, r in self.rules.items()
        }
        self.steps = 0
        self.updates = 0
        self.history: List[Dict[str, Dict[str, float]]] = []
        self.pruned = False
        self.masks = MaskSet()
        self.Z: Dict[str, List[torch.Tensor]] = {}
        self.U: Dict[str, List[torch.Tensor]] = {}
        with torch.no_grad():
            for n, m in self.modules.items():
                w = m.weight.detach()
                self.Z[n] = [self._project(n, w, c) for c in self.constraints[n]]
                self.U[n] = [torch.zeros_like(w) for _ in self.constraints[n]]
        # Weight uses per sample, for MACs in report(); refreshed by every forward.
        self._shapes = ShapeRecorder(dict(prunable_layers(model)))

    # -- setup ------------------------------------------------------------
    def _libraries(self) -> Dict[str, Optional[PatternLibrary]]:
        cfg = self.config
        libs: Dict[str, Optional[PatternLibrary]] = {}
        shared: Dict[Tuple[int, int], List[torch.Tensor]] = {}
        for n, r in self.rules.items():
            m = self.modules[n]
            if r.kind not in PATTERN_KINDS:
                libs[n] = None
            elif isinstance(r.library, PatternLibrary):
                libs[n] = r.library
            else:
                w = to_canonical(m, m.weight.detach())
                if r.library == "layer":
                    libs[n] = self._derive([w], n)
                else:
                    shared.setdefault(kernel_shape(m), []).append((n, w))
        # PatDNN picks one library for the whole model from its own weights,
        # so the compiler has few code paths to generate.
        for ks, items in shared.items():
            lib = self._derive([w for _, w in items], ", ".join(n for n, _ in items))
            for n, _ in items:
                libs[n] = lib
        return libs

    def _derive(self, weights, layers: str) -> PatternLibrary:
        try:
            return PatternLibrary.from_weights(
                weights, n=self.config.library_size, entries=self.config.pattern_entries
            )
        except ValueError as e:
            raise ValueError(f"cannot derive a pattern library for layer(s) {layers}: {e}") from None

    def _constraints(self, name: str) -> List[Constraint]:
        r, lib = self.rules[name], self.libraries[name]
        if r.kind == "pattern+kernel" and self.config.split_combined:
            return [("pattern", None, lib), ("kernel", r.rate, None)]
        return [(r.kind, r.rate, lib)]

    def _project(self, name: str, w: torch.Tensor, c: Constraint) -> torch.Tensor:
        return w * self._mask(name, w, c).to(w.dtype)

    def _mask(self, name: str, w: torch.Tensor, c: Constraint) -> torch.Tensor:
        m = self.modules[name]
        kind, rate, lib = c
        canon = projection_mask(to_canonical(m, w), kind, rate, lib, layer=name)
        return from_canonical(m, canon)

    def _sync(self, name: str) -> torch.Tensor:
        """The live weight, with Z and U moved to its device/dtype if the
        model was moved after the pruner was built."""
        w = self.modules[name].weight
        if self.Z[name] and (self.Z[name][0].device != w.device or self.Z[name][0].dtype != w.dtype):
            self.Z[name] = [z.to(w.device, w.dtype) for z in self.Z[name]]
            self.U[name] = [u.to(w.device, w.dtype) for u in self.U[name]]
        return w

    # -- ADMM ---------------------------------------------------------------
    def penalty(self) -> torch.Tensor:
        """``sum_i rho_i/2 ||W_i - Z_i + U_i||_F^2`` over layers and
        constraint sets; differentiable w.r.t. the weights.  Zero after
        :meth:`hard_prune`."""
        total = None
        if not self.pruned:
            for n in self.modules:
                w = self._sync(n)
                for z, u in zip(self.Z[n], self.U[n]):
                    term = 0.5 * self.rho[n] * (w - z + u).pow(2).sum()
                    total = term if total is None else total + term
        if total is None:
            p = next(iter(self.modules.values())).weight
            total = torch.zeros((), device=p.device, dtype=p.dtype)
        return total

    def loss(self, task_loss: torch.Tensor) -> torch.Tensor:
        return task_loss + self.penalty()

    @torch.no_grad()
    def update(self) -> Dict[str, Dict[str, float]]:
        """One ADMM Z/U update, then one rho schedule step.  Returns (and
        appends to :attr:`history`) the primal residuals ``||W - Z||``."""
        if self.pruned:
            raise RuntimeError("update() after hard_prune(): the ADMM phase is over")
        cfg = self.config
        self.updates += 1
        grow = self.updates % cfg.rho_every == 0
        for n in self.modules:
            w = self._sync(n).detach()
            for i, c in enumerate(self.constraints[n]):
                z = self._project(n, w + self.U[n][i], c)
                self.Z[n][i] = z
                self.U[n][i] = self.U[n][i] + w - z
            if grow:
                new = min(self.rho[n] * cfg.rho_factor, cfg.rho_max)
                # U is the dual scaled by 1/rho; rescale it so the unscaled
                # dual (what ADMM actually tracks) survives the change.
                for u in self.U[n]:
                    u.mul_(self.rho[n] / new)
                self.rho[n] = new
        res = self.residuals()
        self.history.append(res)
        return res

    def step(self) -> Optional[Dict[str, Dict[str, float]]]:
        """Count one training step; run :meth:`update` every
        ``config.admm_interval`` steps.  No-op after :meth:`hard_prune`."""
        if self.pruned:
            return None
        self.steps += 1
        if self.steps % self.config.admm_interval == 0:
            return self.update()
        return None

    @torch.no_grad()
    def residuals(self, relative: bool = False) -> Dict[str, Dict[str, float]]:
        """``{layer: {constraint kind: ||W - Z||_F}}`` for the current W and Z
        (divided by ``||W||_F`` if ``relative``)."""
        out: Dict[str, Dict[str, float]] = {}
        for n in self.modules:
            w = self._sync(n).detach()
            scale = float(w.norm()) if relative else 1.0
            out[n] = {
                c[0]: float((w - z).norm()) / (scale or 1.0) for c, z in zip(self.constraints[n], self.Z[n])
            }
        return out

    def max_residual(self, relative: bool = True) -> float:
        vals = [v for d in self.residuals(relative).values() for v in d.values()]
        return max(vals) if vals else 0.0

    # -- pruning --------------------------------------------------------------
    @torch.no_grad()
    def hard_prune(self) -> Dict[str, dict]:
        """Project every weight onto its (joint) structure, fix the masks,
        hook gradients, and export ``module.lr_sparsity``.  Returns
        :func:`lrprune.structure_of`-style dict for the pruned layers."""
        if self.pruned:
            raise RuntimeError("hard_prune() was already called")
        for n, m in self.modules.items():
            r = self.rules[n]
            mask = self._mask(n, m.weight.detach(), (r.kind, r.rate, self.libraries[n]))
            self.masks.add(n, m, mask)
        self._finish_pruning()
        return {n: dict(getattr(m, ATTR)) for n, m in self.modules.items()}

    def _finish_pruning(self) -> None:
        self.masks.apply()
        self.masks.hook_gradients()
        for n, m in self.modules.items():
            rate = 1.0 - self.masks.density(n)
            setattr(m, ATTR, make_structure(m, self.rules[n].kind, rate, self.libraries[n]))
        self.pruned = True
        self.Z = {n: [] for n in self.modules}
        self.U = {n: [] for n in self.modules}

    def apply_masks(self) -> None:
        """Zero pruned weights again; call after ``optimizer.step()`` unless
        :meth:`attach` installed that for you."""
        self._need_pruned("apply_masks")
        self.masks.apply()

    def attach(self, optimizer: torch.optim.Optimizer):
        """Re-apply masks after every ``optimizer.step()`` (step post hook)."""
        self._need_pruned("attach")
        return self.masks.attach(optimizer)

    def remove(self) -> None:
        """Drop every hook this pruner installed (weights and
        ``lr_sparsity`` stay)."""
        self.masks.remove()
        self._shapes.remove()

    def _need_pruned(self, what: str) -> None:
        if not self.pruned:
            raise RuntimeError(f"{what}() needs masks: call hard_prune() first")

    # -- reporting ------------------------------------------------------------
    def report(self, example_input=None) -> Report:
        """Per-layer sparsity, MACs before/after and compression.  MACs
        come from ``example_input`` (tensor, tuple of inputs, or shape) or
        from the last forward pass seen by the pruner."""
        kinds = {n: r.kind for n, r in self.rules.items()}
        return build_report(self.model, example_input, uses=dict(self._shapes.uses), kinds=kinds)

    def save_chart(self, path, example_input=None) -> str:
        return self.report(example_input).save_chart(path)

    # -- persistence ----------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume (the model's weights are saved
        separately with ``model.state_dict()``)."""
        return {
            "format": STATE_FORMAT,
            "layers": list(self.modules),
            "steps": self.steps,
            "updates": self.updates,
            "rho": dict(self.rho),
            "Z": {n: [z.detach().clone() for z in zs] for n, zs in self.Z.items()},
            "U": {n: [u.detach().clone() for u in us] for n, us in self.U.items()},
            "libraries": {
                n: (None if lib is None else {"patterns": lib.to_list(), "kernel_shape": list(lib.kernel_shape)})
                for n, lib in self.libraries.items()
            },
            "history": [dict(h) for h in self.history],
            "pruned": self.pruned,
            "masks": {n: m.clone() for n, m in self.masks.masks.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not an lrprune ADMM state (format {state.get('format')!r})")
        if list(state["layers"]) != list(self.modules):
            raise ValueError(
                f"state is for layers {state['layers']} but this pruner prunes {list(self.modules)}"
            )
        if self.pruned:
            raise RuntimeError("load_state_dict() on a pruner that already hard-pruned")
        self.steps = int(state["steps"])
        self.updates = int(state["updates"])
        self.rho = {n: float(v) for n, v in state["rho"].items()}
        self.history = [dict(h) for h in state["history"]]
        for n, spec in state["libraries"].items():
            self.libraries[n] = None if spec is None else PatternLibrary(spec["patterns"], spec["kernel_shape"])
        self.constraints = {n: self._constraints(n) for n in self.modules}
        if state["pruned"]:
            for n, m in self.modules.items():
                self.masks.add(n, m, state["masks"][n].to(m.weight.device))
            self._finish_pruning()
        else:
            for n, m in self.modules.items():
                w = m.weight
                self.Z[n] = [z.to(w.device, w.dtype) for z in state["Z"][n]]
                self.U[n] = [u.to(w.device, w.dtype) for u in state["U"][n]]
                if len(self.Z[n]) != len(self.constraints[n]):
                    raise ValueError(f"state for layer '{n}' has {len(self.Z[n])} constraint sets, "
                                     f"expected {len(self.constraints[n])}")
