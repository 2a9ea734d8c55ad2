"""Ready-made training loops for the two phases.

They only glue together the primitives of :class:`ADMMPruner`
(``loss``/``penalty``, ``step``/``update``, ``hard_prune``, ``attach``);
a custom loop can call those directly instead (docs/pruning.md).
Batches are ``(inputs, targets)`` pairs.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch import nn

from .admm import ADMMPruner


def _bar(iterable, enabled: bool, desc: str, total: Optional[int] = None):
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # progress bars are optional
            return iterable
        return tqdm(iterable, desc=desc, total=total, leave=False)
    return iterable


def train_epochs(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    epochs: int,
    *,
    penalty: Optional[Callable[[], torch.Tensor]] = None,
    after_step: Optional[Callable[[], None]] = None,
    after_epoch: Optional[Callable[[dict], None]] = None,
    scheduler=None,
    device=None,
    progress: bool = True,
    desc: str = "train",
) -> List[Dict[str, float]]:
    """Plain training loop (dense pre-training, or any phase): ``penalty``
    is added to the loss, ``after_step`` runs after each optimizer step,
    ``after_epoch`` receives (and may extend) each epoch's stats."""
    history = []
    for epoch in range(epochs):
        model.train()
        task_sum = pen_sum = 0.0
        batches = 0
        try:
            total = len(loader)  # type: ignore[arg-type]
        except TypeError:
            total = None
        bar = _bar(loader, progress, f"{desc} {epoch + 1}/{epochs}", total)
        for x, y in bar:
            if device is not None:
                x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            task = loss_fn(model(x), y)
            pen = penalty() if penalty is not None else None
            (task if pen is None else task + pen).backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            task_sum += float(task.detach())
            pen_sum += 0.0 if pen is None else float(pen.detach())
            batches += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{task_sum / batches:.4f}")
        if scheduler is not None:
            scheduler.step()
        stats = {"epoch": epoch + 1, "loss": task_sum / max(batches, 1), "penalty": pen_sum / max(batches, 1)}
        if after_epoch is not None:
            after_epoch(stats)
        history.append(stats)
    return history


def admm_train(
    model: nn.Module,
    pruner: ADMMPruner,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    epochs: int,
    *,
    update: str = "epoch",
    scheduler=None,
    device=None,
    progress: bool = True,
) -> List[Dict[str, float]]:
    """ADMM phase: train on ``loss_fn + pruner.penalty()``.

    ``update="epoch"`` runs :meth:`ADMMPruner.update` after every epoch
    (the usual choice); ``update="step"`` calls :meth:`ADMMPruner.step`
    after every optimizer step, i.e. updates every ``admm_interval`` steps.
    Each epoch's stats include the largest relative primal residual.
    """
    if update not in ("epoch", "step"):
        raise ValueError(f"update must be 'epoch' or 'step', got {update!r}")

    def after_epoch(stats):
        if update == "epoch":
            pruner.update()
        stats["residual"] = pruner.max_residual(relative=True)

    return train_epochs(
        model,
        loader,
        optimizer,
        loss_fn,
        epochs,
        penalty=pruner.penalty,
        after_step=pruner.step if update == "step" else None,
        after_epoch=after_epoch,
        scheduler=scheduler,
        device=device,
        progress=progress,
        desc="admm",
    )


def retrain(
    model: nn.Module,
    pruner: ADMMPruner,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    epochs: int,
    *,
    scheduler=None,
    device=None,
    progress: bool = True,
) -> List[Dict[str, float]]:
    """Masked retraining: hard-prunes first if that has not happened, and
    keeps pruned weights exactly zero for the whole run (gradient hooks plus
    re-masking after every ``optimizer.step()``)."""
    if not pruner.pruned:
        pruner.hard_prune()
    handle = pruner.attach(optimizer)
    try:
        return train_epochs(
            model, loader, optimizer, loss_fn, epochs, scheduler=scheduler, device=device,
            progress=progress, desc="retrain",
        )
    finally:
        handle.remove()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device=None) -> float:
    """Top-1 accuracy of a classifier over ``loader``."""
    was = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in loader:
            if device is not None:
                x, y = x.to(device), y.to(device)
            correct += int((model(x).argmax(dim=-1) == y).sum())
            total += int(y.numel())
    finally:
        model.train(was)
    return correct / max(total, 1)
