"""Pass classes, the pass registry and a pipeline runner that mixes our passes with upstream ones.

Our passes are Python classes that rewrite a module in place. Upstream MLIR passes (canonicalize,
cse, ...) are run through a PassManager. MLIR's textual pipeline parser does not know Python passes,
so `run_pipeline` splits `builtin.module(a, b{opt=1}, func.func(c))` itself and dispatches each item.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch_mlir import ir
from torch_mlir.passmanager import PassManager


class PassError(ValueError):
    """A pass failed; with `reported`, a located diagnostic was already emitted for it."""

    def __init__(self, message: str, reported: bool = False):
        super().__init__(message)
        self.reported = reported


@dataclass(frozen=True)
class Option:
    type: type
    default: object
    help: str


class Pass:
    """Base of lr passes. Subclasses set `argument` (kebab-case), `summary`, `options`, `run()`."""

    argument: str = ""
    summary: str = ""
    options: dict[str, Option] = {}

    def __init__(self, **opts):
        unknown = set(opts) - set(self.options)
        if unknown:
            raise PassError(f"pass '{self.argument}' has no option(s) {sorted(unknown)}; "
                            f"options: {sorted(self.options) or 'none'}")
        for k, o in self.options.items():
            v = opts.get(k, o.default)
            try:
                v = _convert(v, o.type)
            except ValueError:
                raise PassError(f"option '{k}' of pass '{self.argument}' must be {o.type.__name__}, got {v!r}") from None
            setattr(self, k.replace("-", "_"), v)

    def run(self, module: ir.Module) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _convert(v, t):
    if isinstance(v, t):
        return v
    if t is bool:
        if str(v).lower() in ("1", "true"):
            return True
        if str(v).lower() in ("0", "false"):
            return False
        raise ValueError(v)
    return t(v)


PASSES: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    PASSES[cls.argument] = cls
    return cls


def split_top_level(text: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in text:
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur.strip())
    return items


def _parse_options(text: str) -> dict[str, str]:
    opts = {}
    for part in text.split():
        if "=" not in part:
            opts[part] = "true"
        else:
            k, v = part.split("=", 1)
            opts[k] = v
    return opts


@dataclass
class PipelineItem:
    name: str
    run: Callable[[ir.Module], None]


def parse_pipeline(text: str) -> list[PipelineItem]:
    """`builtin.module(p1, p2{k=v}, func.func(canonicalize))` or a bare comma list."""
    text = text.strip()
    if text.startswith("builtin.module(") and text.endswith(")"):
        text = text[len("builtin.module("):-1]
    items = []
    for item in split_top_level(text):
        name, _, rest = item.partition("{")
        name = name.strip()
        if name in PASSES:
            opts = _parse_options(rest.rstrip("}")) if rest else {}
            p = PASSES[name](**opts)
            items.append(PipelineItem(name, p.run))
        else:
            try:
                upstream = PassManager.parse(f"builtin.module({item})")
            except ValueError as e:
                raise PassError(f"unknown pass '{name}': {str(e).splitlines()[0]}") from None
            items.append(PipelineItem(name, lambda m, pm=upstream: pm.run(m.operation)))
    return items


def run_pipeline(module: ir.Module, pipeline: str | list[PipelineItem], after_each=None) -> ir.Module:
    """Run passes in order; `after_each(name, module)` sees the IR after every pass.

    A pass may replace the module (lowerings build a new one): they return it from run().
    """
    items = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    for it in items:
        with module.context:
            res = it.run(module)
        if isinstance(res, ir.Module):
            module = res
        if after_each:
            after_each(it.name, module)
    return module
