"""Slot for the pruning step: ``python -m lrapps.train APP --prune SCHEME --from CKPT``.

Not implemented yet: it will hand the dense model, the app's training loss
and its crop sampler to ``lrprune`` (ADMM pruning then masked retraining).
Everything it needs is already exposed by :class:`lrapps.train.Task`:

* ``task.loss(model, batch) -> (loss, logs)`` - the same objective as dense
  training, so ADMM adds its penalty on top,
* ``task.sampler(seed)`` - endless augmented crops of the training split,
* ``task.evaluate(model)`` - held-out metrics for the report.

The caller saves the result with :func:`lrapps.models.save` and records
``scheme`` in the checkpoint meta.
"""

from __future__ import annotations

__all__ = ["SCHEMES", "prune"]

# Names lrprune uses for its sparsity kinds.
SCHEMES = ("filter", "channel", "column", "kernel", "pattern", "pattern+kernel", "irregular")


def prune(task, model, scheme: str, steps: int, args):
    """Return a pruned (masked, retrained) copy of ``model``."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown pruning scheme {scheme!r}; choose from {SCHEMES}")
    try:
        import lrprune  # noqa: F401
    except ImportError as e:
        raise SystemExit("--prune needs the lrprune package: pip install -e pruning") from e
    raise NotImplementedError(
        f"lrapps: the --prune {scheme} step is not wired to lrprune yet; "
        "dense training and --from fine-tuning work")
