"""Which layer gets which sparsity, and the ADMM hyper-parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from torch import nn

from .layers import PRUNABLE_TYPES, kernel_shape, prunable_layers
from .patterns import PatternLibrary
from .projections import PATTERN_KINDS, check_kind, check_rate


@dataclass(frozen=True)
class Rule:
    """Sparsity for one layer.

    ``kind``: one of :data:`lrprune.KINDS`.  ``rate``: fraction of groups
    removed, in [0, 1) (none for ``pattern``).  ``library`` (pattern kinds):
    ``None`` = the model-wide library of :class:`PruneConfig`, ``"layer"`` =
    derived from this layer's own weights, or an explicit
    :class:`PatternLibrary` / list of flat-position tuples.  ``rho``:
    overrides the initial ADMM penalty for this layer.
    """

    kind: str
    rate: Optional[float] = None
    library: Any = None
    rho: Optional[float] = None


RuleLike = Union[Rule, Mapping[str, Any], Tuple, str, None]
KeyLike = Union[str, "re.Pattern[str]", type]


def as_rule(value: RuleLike, layer: Optional[str] = None) -> Optional[Rule]:
    """Accept ``Rule``, a dict of its fields, ``(kind, rate)``, a bare kind, or None (= skip)."""
    if value is None or isinstance(value, Rule):
        return value
    if isinstance(value, str):
        return Rule(value)
    if isinstance(value, tuple):
        return Rule(*value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"kind", "rate", "library", "rho"}
        if unknown:
            where = f" for layer '{layer}'" if layer else ""
            raise ValueError(f"unknown rule field(s) {sorted(unknown)}{where}")
        if "kind" not in value:
            raise ValueError(f"rule{' for layer ' + repr(layer) if layer else ''} has no 'kind'")
        return Rule(**value)
    raise ValueError(f"cannot read a pruning rule from {value!r}")


@dataclass
class PruneConfig:
    """Per-layer sparsity and ADMM settings.

    ``layers`` maps keys to rules.  A key is an exact qualified module name
    (``"features.3"``), a regular expression written ``"re:<regex>"`` or as a
    compiled pattern (full match on the name), or a module type
    (``nn.Linear``).  Precedence: exact name, then the first matching
    regex, then the first matching type, then ``default``.  A rule of
    ``None`` leaves the layer dense.

    ``skip_first`` / ``skip_last``: the first and last prunable layer (in
    registration order) are usually the most sensitive and the cheapest,
    so they stay dense unless named exactly in ``layers``.

    ADMM: ``rho`` is the initial penalty; after every ``rho_every``-th
    update it is multiplied by ``rho_factor`` up to ``rho_max``.
    ``admm_interval``: :meth:`ADMMPruner.step` calls ``update`` every this
    many steps.  ``split_combined``: give ``pattern+kernel`` layers two
    constraint sets (pattern and kernel, each its own Z and U) instead of
    one joint projection.

    Pattern library for rules with ``library=None``: ``library`` (a
    :class:`PatternLibrary`), or else one library per kernel shape derived
    from all such layers' weights when the pruner is built, with
    ``library_size`` patterns of ``pattern_entries`` positions.
    """

    layers: Dict[KeyLike, RuleLike] = field(default_factory=dict)
    default: RuleLike = None
    skip_first: bool = True
    skip_last: bool = True
    rho: float = 1e-3
    rho_factor: float = 1.3
    rho_max: float = 1.0
    rho_every: int = 1
    admm_interval: int = 1
    split_combined: bool = True
    library: Optional[PatternLibrary] = None
    library_size: int = 8
    pattern_entries: int = 4

    def __post_init__(self):
        for name in ("rho", "rho_max"):
            v = getattr(self, name)
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if not self.rho_factor >= 1:
            raise ValueError(f"rho_factor must be >= 1, got {self.rho_factor!r}")
        for name in ("rho_every", "admm_interval", "library_size", "pattern_entries"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")

    # ------------------------------------------------------------------
    def resolve(self, model: nn.Module) -> Dict[str, Rule]:
        """Validated rule per pruned layer, in registration order.

        Raises ValueError for: a model with no prunable layer, an exact name
        that is not a prunable layer of ``model``, a regex or type matching
        none, a bad kind or rate, a pattern library of the wrong kernel
        size, or a configuration that selects no layer at all.
        """
        layers = prunable_layers(model)
        if not layers:
            raise ValueError(
                f"{type(model).__name__} has no prunable layers (Conv2d, ConvTranspose2d or Linear)"
            )
        names = [n for n, _ in layers]
        modules = dict(layers)
        all_modules = dict(model.named_modules())

        exact: Dict[str, Optional[Rule]] = {}
        regexes: List[Tuple[str, "re.Pattern[str]", Optional[Rule]]] = []
        types: List[Tuple[type, Optional[Rule]]] = []
        for key, value in self.layers.items():
            if isinstance(key, type):
                if not issubclass(key, PRUNABLE_TYPES):
                    raise ValueError(
                        f"layer type {key.__name__} is not prunable (Conv2d, ConvTranspose2d or Linear)"
                    )
                if not any(isinstance(m, key) for m in modules.values()):
                    raise ValueError(f"no prunable layer of type {key.__name__} in the model")
                types.append((key, as_rule(value)))
            elif isinstance(key, re.Pattern) or (isinstance(key, str) and key.startswith("re:")):
                rx = key if isinstance(key, re.Pattern) else re.compile(key[3:])
                if not any(rx.fullmatch(n) for n in names):
                    raise ValueError(
                        f"layer regex {rx.pattern!r} matches no prunable layer; prunable layers: "
                        + ", ".join(names)
                    )
                regexes.append((rx.pattern, rx, as_rule(value)))
            elif isinstance(key, str):
                if key not in modules:
                    if key in all_modules:
                        raise ValueError(
                            f"layer '{key}' is a {type(all_modules[key]).__name__}, not a prunable "
                            "Conv2d, ConvTranspose2d or Linear"
                        )
                    raise ValueError(f"unknown layer '{key}'; prunable layers: " + ", ".join(names))
                exact[key] = as_rule(value, key)
            else:
                raise ValueError(f"cannot use {key!r} as a layer key (name, 're:' regex, or type)")

        default = as_rule(self.default)
        skipped = set()
        if self.skip_first:
            skipped.add(names[0])
        if self.skip_last:
            skipped.add(names[-1])

        out: Dict[str, Rule] = {}
        for name in names:
            if name in exact:
                rule = exact[name]
            elif name in skipped:
                continue
            else:
                rx_hit = [r for _, rx, r in regexes if rx.fullmatch(name)]
                ty_hit = [r for t, r in types if isinstance(modules[name], t)]
                rule = rx_hit[0] if rx_hit else ty_hit[0] if ty_hit else default
            if rule is None:
                continue
            out[name] = self._validate(name, modules[name], rule)
        if not out:
            why = " (the first and last prunable layer are skipped unless named)" if skipped else ""
            raise ValueError(
                "configuration selects no layer to prune" + why + "; prunable layers: " + ", ".join(names)
            )
        return out

    def _validate(self, name: str, module: nn.Module, rule: Rule) -> Rule:
        check_kind(rule.kind, name)
        rate = check_rate(rule.kind, rule.rate, name)
        if rule.rho is not None and not rule.rho > 0:
            raise ValueError(f"rho must be > 0 for layer '{name}', got {rule.rho!r}")
        lib = rule.library
        if rule.kind in PATTERN_KINDS:
            kshape = kernel_shape(module)
            if lib is None and self.library is not None:
                lib = self.library
            if lib is not None and not (isinstance(lib, str) and lib == "layer"):
                if not isinstance(lib, PatternLibrary):
                    try:
                        lib = PatternLibrary(lib, kshape)
                    except ValueError as e:
                        raise ValueError(f"bad pattern library for layer '{name}': {e}") from None
                lib.check(kshape, name)
            elif kshape == (1, 1):
                raise ValueError(
                    f"layer '{name}' has 1x1 kernels: pattern pruning needs spatial kernels "
                    "(give it another kind or leave it out)"
                )
        elif lib is not None:
            raise ValueError(f"layer '{name}': a library only applies to pattern kinds, not {rule.kind!r}")
        return replace(rule, rate=rate, library=lib)
