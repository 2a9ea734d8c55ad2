"""Knowledge distillation in the pruning run (``python -m lrapps.prune APP --distill W``), on tiny
models and a few steps: the loss term, the teacher, the schedule it must not change, the recorded
recipe and the fair reference."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import FAST, TINY_COLOR, TINY_SR, CropRecorder, save_dense
from lrapps import models, prune, quality

torch.set_num_threads(1)


def _record(monkeypatch):
    """Per _loop call: the crops (sums) and the distillation term of every step."""
    calls = []
    orig = prune._loop

    def loop(task, model, opt, sched, sampler, steps, batch, desc, progress, pruner=None, admm=False,
             distiller=None):
        rec, kds = CropRecorder(sampler), []

        class KD:
            def __call__(self):
                v = distiller()
                kds.append(float(v.detach()))
                return v
        out = orig(task, model, opt, sched, rec, steps, batch, desc, progress, pruner, admm,
                   None if distiller is None else KD())
        calls.append({"steps": steps, "crops": rec.crops, "kd": kds})
        return out
    monkeypatch.setattr(prune, "_loop", loop)
    return calls


def test_distilled_run_same_crops_other_weights_and_fair_reference(tmp_path, monkeypatch):
    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    calls = _record(monkeypatch)
    plain = prune.main(["superres", "--from", str(dense), "--out", str(tmp_path / "plain.pt"), *FAST])
    plain_calls = list(calls)
    calls.clear()
    kd = prune.main(["superres", "--from", str(dense), "--distill", "0.5", "--out", str(tmp_path / "kd.pt"),
                     *FAST])
    kd_calls = list(calls)

    # Only the loss changes: same phases, same crops in the same order.
    assert [(c["steps"], c["crops"]) for c in kd_calls] == [(c["steps"], c["crops"]) for c in plain_calls]
    assert all(c["kd"] == [] for c in plain_calls)
    assert [len(c["kd"]) for c in kd_calls] == [3, 2]
    # The teacher is the starting model: the term starts at exactly 0 and grows once the student moves.
    assert kd_calls[0]["kd"][0] == 0.0 and max(kd_calls[1]["kd"]) > 0
    a, b = models.load(tmp_path / "plain.pt"), models.load(tmp_path / "kd.pt")
    assert any(not torch.equal(p, b.state_dict()[n]) for n, p in a.state_dict().items())
    assert models.load(tmp_path / "kd.pt").checkpoint_meta["recipe"]["distill"] == 0.5

    # Recorded: a plain run's recipe is as before the option existed; the distilled one names it.
    assert "distill" not in plain["recipe"] and "teacher" not in plain["recipe"]
    assert kd["recipe"]["distill"] == 0.5 and "teacher" not in kd["recipe"]
    assert kd["macs_pruned"] == plain["macs_pruned"]
    # Its fair reference is the plain --reference run (which takes no --distill).
    ref = prune.main(["superres", "--reference", "--from", str(dense), "--out", str(tmp_path / "ref.pt"),
                      *FAST])
    assert quality.reference_mismatch(ref, kd, str(dense)) == []
    assert quality.reference_mismatch(ref, plain, str(dense)) == []


def test_distiller_term_is_the_apps_output_loss(tmp_path):
    torch.manual_seed(0)
    student = models.build("superres", **TINY_SR)
    teacher = models.build("superres", **TINY_SR)
    task = quality._task("superres", 32)
    d = prune._Distiller(task, student, teacher, 0.25)
    x = torch.rand(2, 3, 16, 16)
    out = student(x)
    with torch.no_grad():
        want = 0.25 * F.l1_loss(out, teacher(x))
    got = d()
    assert torch.allclose(got, want) and got > 0
    got.backward()  # the gradient reaches the student, not the teacher
    assert student.head.weight.grad is not None and teacher.head.weight.grad is None
    student(x)
    student(x)
    with pytest.raises(RuntimeError, match="called the model 2 times"):
        d()
    d.remove()
    d.seen.clear()
    student(x)
    assert d.seen == []
    x4 = models.build("superres", scale=4, **TINY_SR)  # same input, twice the output size
    d4 = prune._Distiller(task, student, x4, 1.0)
    student(x)
    with pytest.raises(ValueError, match="teacher's output .* does not match"):
        d4()
    d4.remove()

    # color: L2 by default, L1 with --loss l1; style: L2.
    s, t = torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8)
    color = quality._task("color", 32)
    assert torch.allclose(prune.distill_loss(color, s, t), F.mse_loss(s, t))
    color.args.loss = "l1"
    assert torch.allclose(prune.distill_loss(color, s, t), F.l1_loss(s, t))


def test_teacher_checkpoint(tmp_path):
    dense = save_dense(tmp_path / "color_dense.pt", "color", TINY_COLOR)
    other = save_dense(tmp_path / "color_teacher.pt", "color", TINY_COLOR, seed=3)
    meta = prune.main(["color", "--from", str(dense), "--distill", "1", "--teacher", str(other),
                       "--out", str(tmp_path / "kd.pt"), *FAST])
    assert meta["recipe"]["teacher"] == str(other) and meta["recipe"]["distill"] == 1.0
    # recipe_from_args reads the same recipe back (lrapps.sweep's reuse test)
    args = prune.build_parser().parse_args(["color", "--distill", "1", "--teacher", str(other), *FAST])
    assert prune.recipe_meta(prune.recipe_from_args(args)) == meta["recipe"]
    # Inside the repository the teacher is recorded relative to it (as "from" is), wherever the
    # command ran from.
    root = Path(prune.__file__).resolve().parents[2]
    shipped = root / "apps" / "checkpoints" / "superres_dense_equal.pt"
    assert prune._shown_path(shipped) == "apps/checkpoints/superres_dense_equal.pt"
    assert prune._shown_path(tmp_path / "t.pt") == str(tmp_path / "t.pt")


@pytest.mark.parametrize("extra, message", [
    (["--reference", "--distill", "1"], "--reference trains the dense model alone"),
    (["--teacher", "x.pt"], "--teacher needs --distill"),
    (["--distill", "-1"], "--distill must be a finite weight >= 0"),
    (["--distill", "nan"], "--distill must be a finite weight >= 0"),
    (["--distill", "1", "--teacher", "missing.pt"], "missing.pt: no such checkpoint"),
])
def test_distill_bad_arguments(tmp_path, extra, message):
    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    with pytest.raises(SystemExit, match=message):
        prune.main(["superres", "--from", str(dense), "--out", str(tmp_path / "o.pt"), *extra, *FAST])


def test_teacher_of_another_app_is_refused(tmp_path):
    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    color = save_dense(tmp_path / "color_dense.pt", "color", TINY_COLOR)
    with pytest.raises(SystemExit, match="is not a superres checkpoint"):
        prune.main(["superres", "--from", str(dense), "--distill", "1", "--teacher", str(color),
                    "--out", str(tmp_path / "o.pt"), *FAST])


def test_admm_prune_leaves_the_starting_copy_alone(tmp_path):
    """The default teacher is a frozen copy: pruning the student does not touch it, and no hook stays."""
    torch.manual_seed(0)
    model = models.build("superres", **TINY_SR)
    start = copy.deepcopy(model.state_dict())
    task = quality._task("superres", 32)
    task.args.crop = 32
    rec = prune.Recipe(**{**prune.asdict(prune.RECIPES["superres"]), "admm_steps": 2, "retrain_steps": 1,
                          "batch": 2, "crop": 32, "update_every": 1, "distill": 1.0})
    teacher = copy.deepcopy(model)
    prune.admm_prune(task, model, rec, progress=False, teacher=teacher)
    assert all(torch.equal(p, start[n]) for n, p in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not model._forward_hooks
    with pytest.raises(ValueError, match="distill weight must be >= 0"):
        prune.admm_prune(task, model, prune.Recipe(**{**prune.asdict(rec), "distill": -1.0}), progress=False)


def test_distilled_superres_checkpoint_compiles():
    """The kept distilled checkpoint (docs/apps.md, knowledge-distillation experiment): same structure
    and cut as the shipped pruned one, and lrc-compiled output equal to PyTorch's."""
    import lrc
    import lrprune
    import numpy as np

    from lrapps import inference

    p = inference.checkpoint_dir() / "superres_pruned_distill.pt"
    if not p.is_file():
        pytest.skip(f"{p} not kept")
    m = models.load(p)
    meta = m.checkpoint_meta
    assert meta["recipe"]["distill"] > 0 and meta["prune"] == "pattern+kernel"
    shipped = models.load(inference.checkpoint_path("superres"))
    assert lrprune.structure_of(m).keys() == lrprune.structure_of(shipped).keys()
    rep = lrprune.report_of(m, models.example_input("superres"))
    assert rep.macs_dense / rep.macs_pruned == pytest.approx(meta["mac_reduction"]) and meta["mac_reduction"] > 6
    # the fair reference is the shipped plain equal-steps run
    ref = models.load(quality.reference_path("superres"))
    assert quality.reference_mismatch(ref.checkpoint_meta, meta, "apps/checkpoints/superres_dense.pt") == []
    x = models.example_input("superres", hw=(24, 16), seed=1)
    cm = lrc.compile(m, (x,))
    with torch.no_grad():
        want = m(x).numpy()
    got = cm(x.numpy())
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max()) + 1e-5
    assert "#lr.sparsity" in cm.lr_ir
