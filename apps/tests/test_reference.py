"""The dense, equal-steps reference (``python -m lrapps.prune APP --reference``) and the two-way
budget verdict in lrapps.quality and lrapps.sweep, on tiny models and a few steps."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FAST, TINY_COLOR, TINY_SR, CropRecorder, save_dense
from lrapps import inference, models, prune, quality, sweep

torch.set_num_threads(1)


def _record_loops(monkeypatch):
    """Wrap lrapps.prune._loop: per phase, (steps, batch, Adam lr, scheduled?, sum of every crop)."""
    calls = []
    orig = prune._loop

    def loop(task, model, opt, sched, sampler, steps, batch, desc, progress, pruner=None, admm=False, **kw):
        rec = CropRecorder(sampler)
        out = orig(task, model, opt, sched, rec, steps, batch, desc, progress, pruner, admm, **kw)
        calls.append({"steps": steps, "batch": batch, "lr": opt.param_groups[0]["initial_lr"]
                      if "initial_lr" in opt.param_groups[0] else opt.param_groups[0]["lr"],
                      "sched": sched is not None, "crops": rec.crops, "sampler": id(sampler)})
        return out
    monkeypatch.setattr(prune, "_loop", loop)
    return calls


def test_reference_follows_the_pruning_schedule_without_pruning(tmp_path, monkeypatch):
    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    calls = _record_loops(monkeypatch)
    prune.main(["superres", "--from", str(dense), "--lr", "3e-4", "--retrain-lr", "1e-4", *FAST])
    pruned_calls = list(calls)
    calls.clear()
    meta = prune.main(["superres", "--reference", "--from", str(dense), "--lr", "3e-4", "--retrain-lr", "1e-4",
                       *FAST])
    ref_calls = list(calls)

    # Same phases: ADMM-phase lr constant, then a fresh optimiser at the retraining lr with cosine decay,
    # one sampler across both, and exactly the same crops in the same order.
    strip = [{k: c[k] for k in ("steps", "batch", "lr", "sched", "crops")} for c in pruned_calls]
    assert [{k: c[k] for k in ("steps", "batch", "lr", "sched", "crops")} for c in ref_calls] == strip
    assert [(c["steps"], c["lr"], c["sched"]) for c in ref_calls] == [(3, 3e-4, False), (2, 1e-4, True)]
    assert ref_calls[0]["sampler"] == ref_calls[1]["sampler"]

    out = tmp_path / "superres_dense_equal.pt"  # default name: next to the dense one, never _dense/_pruned
    assert out.is_file() and (tmp_path / "superres_pruned.pt").is_file()
    ck = torch.load(out, weights_only=True)
    assert "sparsity" not in ck and "sparse_weights" not in ck
    assert meta["reference"] == "dense_equal_steps" and meta["prune"] is None
    assert meta["extra_steps"] == 5 and meta["dense_steps"] == 7 and meta["steps"] == 12
    assert meta["recipe"]["admm_steps"] == 3 and meta["recipe"]["retrain_steps"] == 2
    ref, start = models.load(out), models.load(dense)
    assert not hasattr(ref.head, "lr_sparsity")
    changed = [n for n, p in ref.state_dict().items() if not torch.equal(p, start.state_dict()[n])]
    assert changed, "the reference did not train"
    # nothing pruned: no weight tensor of a pruned layer became sparse
    pr = models.load(tmp_path / "superres_pruned.pt")
    for name, m in pr.named_modules():
        if hasattr(m, "lr_sparsity"):
            w = dict(ref.named_modules())[name].weight
            assert (w == 0).float().mean() < 0.05, name
    assert quality.reference_mismatch(meta, pr.checkpoint_meta, str(dense)) == []


def test_reference_refuses_to_overwrite_its_source(tmp_path):
    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    with pytest.raises(SystemExit, match="would overwrite the dense checkpoint"):
        prune.main(["superres", "--reference", "--from", str(dense), "--out", str(dense), *FAST])


def test_reference_mismatch_names_what_differs():
    rec = {"admm_steps": 3, "retrain_steps": 2, "batch": 2, "crop": 32, "lr": 1e-3, "retrain_lr": 1e-3}
    ref = {"reference": "dense_equal_steps", "recipe": rec, "seed": 0, "from": "d.pt"}
    pr = {"recipe": {**rec, "rate": 0.5}, "seed": 0, "from": "d.pt"}
    assert quality.reference_mismatch(ref, pr, "d.pt") == []
    why = quality.reference_mismatch(ref, {**pr, "seed": 1, "recipe": {**rec, "retrain_steps": 9}}, "d.pt")
    assert why == ["retrain_steps 2 vs the pruned run's 9", "seed 0 vs the pruned run's 1"]
    assert quality.reference_mismatch({**ref, "reference": None}, pr, "d.pt")[0].startswith("not made by")
    assert "not other.pt" in quality.reference_mismatch(ref, pr, "other.pt")[-1]


@pytest.mark.parametrize("app, mean, dense_ok, equal_ok", [
    # longer training lifts PSNR but desaturates: vs shipped dense colourfulness misses (-17 %),
    # vs the equal-steps model pruning costs 0.9 % PSNR and 0.8 % colourfulness: met
    ("color", {"dense_psnr_rgb": 20.0, "equal_psnr_rgb": 22.0, "pruned_psnr_rgb": 21.8,
               "dense_colorfulness": 30.0, "equal_colorfulness": 25.0, "pruned_colorfulness": 24.8},
     False, True),
    # losses: lower is better; +3 % over the equal-steps model is a miss even if dense is worse
    ("style", {"dense_style_loss": 0.02, "equal_style_loss": 0.010, "pruned_style_loss": 0.0103,
               "dense_content_loss": 0.7, "equal_content_loss": 0.6, "pruned_content_loss": 0.6},
     True, False),
    ("superres", {"dense_psnr_y": 32.0, "equal_psnr_y": 32.5, "pruned_psnr_y": 32.25}, True, False),
])
def test_two_way_verdict(app, mean, dense_ok, equal_ok):
    ok_d, text_d = quality.budget_check(app, mean)  # default: the shipped dense model, as before
    ok_e, text_e = quality.budget_check(app, mean, "equal")
    assert (ok_d, ok_e) == (dense_ok, equal_ok)
    assert "vs shipped dense" in text_d and "vs dense, equal steps" in text_e
    for ref, ok in (("dense", dense_ok), ("equal", equal_ok)):
        terms = quality.budget_terms(app, mean, ref)
        assert all(t["reference"] == ref and t["dense"] == mean[f"{ref}_{t['metric']}"] for t in terms)
        assert all(t["ok"] == (t["worse"] <= t["tol"]) for t in terms) and all(t["ok"] for t in terms) == ok
    with pytest.raises(KeyError, match="no equal_"):
        quality.budget_terms(app, {k: v for k, v in mean.items() if not k.startswith("equal_")}, "equal")


def test_quality_report_has_both_verdicts(tmp_path, monkeypatch):
    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    prune.main(["superres", "--from", str(dense), *FAST])
    prune.main(["superres", "--reference", "--from", str(dense), *FAST])
    monkeypatch.setattr(inference, "checkpoint_dir", lambda: tmp_path)
    out = tmp_path / "res"
    assert quality.main(["--apps", "superres", "--eval-size", "32", "--out-dir", str(out)]) == 0
    md = (out / "quality.md").read_text()
    assert "pruned vs dense, equal steps (fair test)" in md and "equal-steps PSNR" in md
    assert "is not the equal-steps twin" not in md

    # The verdicts in the table are budget_check on the measured means, both ways.
    rows, _ = quality.evaluate("superres", models.load(dense), models.load(tmp_path / "superres_pruned.pt"),
                               32, reference=models.load(tmp_path / "superres_dense_equal.pt"))
    mean = quality.mean_row(rows)
    summary = next(line for line in md.splitlines() if line.startswith("| superres |"))
    for ref in ("dense", "equal"):
        ok, text = quality.budget_check("superres", mean, ref)
        assert f"| {text} | {'yes' if ok else '**NO**'} |" in summary
    assert mean["equal_psnr_y"] != mean["dense_psnr_y"]

    # Several crops per image: the first is the centre crop, the mean moves, the file name says so.
    assert quality.main(["--apps", "superres", "--eval-size", "32", "--out-dir", str(out), "--crops", "5"]) == 0
    md5 = (out / "quality_crops5.md").read_text()
    assert "5 crops of 32 px per image" in md5 and not list(out.glob("*crops5.png"))
    task = quality._task("superres", 32)
    crops = quality.eval_crops(task, 32, 5)
    centre = dict(task.eval_tensors())
    for name, xs in crops:
        assert len(xs) == 5 and torch.equal(xs[0], centre[name])
        assert len({round(float(x.sum()), 3) for x in xs}) == 5  # five different places
    with pytest.raises(ValueError, match="crops must be one of"):
        quality.eval_crops(task, 32, 4)


def test_sweep_adds_the_fair_verdict_and_renders_without_pruning(tmp_path, monkeypatch):
    dense = save_dense(tmp_path / "color_dense.pt", "color", TINY_COLOR)
    refs = tmp_path / "refs"
    refs.mkdir()
    prune.main(["color", "--reference", "--from", str(dense), "--out", str(refs / "color_dense_equal.pt"), *FAST])
    res = tmp_path / "res"
    fast = [a for a in FAST if a != "--no-progress"]
    base = ["color", "--from", str(dense), "--ckpt-dir", str(tmp_path / "ckpt"), "--out-dir", str(res),
            "--no-shipped", *fast]
    # First without a reference: only the shipped-dense verdict, the fair one n/a.
    assert sweep.main([*base, "--rates", "0.3", "--rates-1x1", "0.5", "--ref-dir", str(tmp_path / "none")]) == 0
    data = json.loads((res / "quality_sweep.json").read_text())
    assert "terms_equal" not in data["runs"][0]
    assert "n/a (no reference checkpoint)" in (res / "quality_sweep.md").read_text()
    # A second seed: a different crop sequence, so not the reference's twin.
    assert sweep.main([*base, "--rates", "0.3", "--rates-1x1", "0.5", "--seeds", "1",
                       "--ref-dir", str(tmp_path / "none")]) == 0

    # Render only: nothing is pruned, the stored runs gain the verdict against the reference.
    def no_pruning(*a, **k):
        raise AssertionError("--render must not prune")
    monkeypatch.setattr(sweep.P, "main", no_pruning)
    before = json.loads((res / "quality_sweep.json").read_text())
    assert sweep.main(["--render", "--out-dir", str(res), "--ref-dir", str(refs)]) == 0
    data = json.loads((res / "quality_sweep.json").read_text())
    assert len(data["runs"]) == len(before["runs"]) == 2
    by_seed = {e["seed"]: e for e in data["runs"]}
    assert by_seed[1]["reference_mismatch"] == ["seed 0 vs the pruned run's 1"]
    assert "terms_equal" not in by_seed[1]
    e = by_seed[0]
    ref_rows, _ = quality.evaluate_models("color", {"equal": models.load(refs / "color_dense_equal.pt")}, 32)
    ref_mean = quality.mean_row(ref_rows)
    for t in e["terms_equal"]:
        assert t["dense"] == pytest.approx(ref_mean[f"equal_{t['metric']}"])
        assert t["pruned"] == before["runs"][0]["mean"][f"pruned_{t['metric']}"]
        assert t["worse"] == pytest.approx((t["dense"] - t["pruned"]) / t["dense"])
    assert e["within_budget_equal"] == all(t["ok"] for t in e["terms_equal"])
    assert e["terms"] == before["runs"][0]["terms"]  # the shipped-dense verdict is kept as it was
    md = (res / "quality_sweep.md").read_text()
    assert "within budget vs dense, equal steps (fair)" in md
    assert "n/a (seed 0 vs the pruned run's 1)" in md
    assert "Against the dense, equal-steps reference (the fair test)" in md
    with pytest.raises(SystemExit, match="--render takes no app"):
        sweep.main(["color", "--render", "--out-dir", str(res)])

    # With a reference of its own seed (`--reference --seed 1`), the seed-1 run is judged too, against
    # that one, and the seed-0 run still against the plain reference.
    monkeypatch.undo()
    prune.main(["color", "--reference", "--seed", "1", "--from", str(dense),
                "--out", str(refs / "color_dense_equal_seed1.pt"), *FAST])
    monkeypatch.setattr(sweep.P, "main", no_pruning)
    assert sweep.main(["--render", "--out-dir", str(res), "--ref-dir", str(refs)]) == 0
    by_seed = {e["seed"]: e for e in json.loads((res / "quality_sweep.json").read_text())["runs"]}
    assert by_seed[1]["reference"] == str(refs / "color_dense_equal_seed1.pt")
    assert by_seed[0]["reference"] == str(refs / "color_dense_equal.pt")
    assert "reference_mismatch" not in by_seed[1] and by_seed[1]["terms_equal"]
    rows1, _ = quality.evaluate_models("color", {"equal": models.load(refs / "color_dense_equal_seed1.pt")}, 32)
    for t in by_seed[1]["terms_equal"]:
        assert t["dense"] == pytest.approx(quality.mean_row(rows1)[f"equal_{t['metric']}"])
    md = (res / "quality_sweep.md").read_text()
    assert "n/a (seed 0 vs the pruned run's 1)" not in md
    # one recipe, two seeds: the fair verdict counts it only if both met the budget, and says so
    both = by_seed[0]["within_budget_equal"] and by_seed[1]["within_budget_equal"]
    assert ("best rate meeting the budget: 0.3 / rate_1x1 0.5, seeds 0, 1" in md) == both
    assert ("none of the 1 rates judged meets the budget" in md) == (not both)


@pytest.mark.parametrize("scheme", ["column", "filter", "channel", "irregular"])
def test_rate_1x1_is_refused_where_it_would_be_ignored(tmp_path, scheme):
    with pytest.raises(SystemExit, match="--rate-1x1 applies to the pattern, pattern\\+kernel, kernel schemes only"):
        prune.main(["superres", "--scheme", scheme, "--rate", "0.3", "--rate-1x1", "0.5",
                    "--out", str(tmp_path / "x.pt"), "--no-progress"])
    assert not (tmp_path / "x.pt").exists()


def test_kernel_scheme_honours_rate_1x1(tmp_path):
    """Connectivity pruning of the 1x1 convs alone (--scheme kernel --rate 0 --rate-1x1 R) can be asked
    for: the 1x1 convs get R, the 3x3 convs --rate; without --rate-1x1 every conv gets --rate."""
    import lrprune

    model = models.build("superres", **TINY_SR)
    one = {n for n, m in lrprune.prunable_layers(model) if tuple(m.weight.shape[2:]) == (1, 1)}
    cfg = prune.prune_config("superres", model, "kernel", 0.2, 0.5).layers
    assert one and {n: cfg[n] for n in one} == {n: ("kernel", 0.5) for n in one}
    assert {v for n, v in cfg.items() if n not in one and v is not None} == {("kernel", 0.2)}
    plain = prune.prune_config("superres", model, "kernel", 0.2, None).layers
    assert {plain[n] for n in one} == {("kernel", 0.2)}

    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    meta = prune.main(["superres", "--from", str(dense), "--scheme", "kernel", "--rate", "0", "--rate-1x1",
                       "0.5", "--out", str(tmp_path / "k.pt"), *FAST])
    assert meta["recipe"]["scheme"] == "kernel" and meta["recipe"]["rate_1x1"] == 0.5
    pruned = models.load(tmp_path / "k.pt")
    mods = dict(pruned.named_modules())
    for name in one:  # half of each 1x1 conv's kernels (connections) are gone
        w = mods[name].weight.detach()
        assert float((w == 0).float().mean()) == pytest.approx(0.5, abs=1 / w[:, :, 0, 0].numel())
    for name, a in lrprune.structure_of(pruned).items():
        if name not in one:  # rate 0: the 3x3 convs keep every kernel
            assert (mods[name].weight.detach().flatten(2).abs().sum(2) != 0).all(), name


def test_a_dense_model_retrained_in_place_is_not_mistaken_for_the_old_one(tmp_path, monkeypatch):
    """Pruned runs record their dense parent's weight fingerprint: a sweep remakes (not reuses) a
    checkpoint whose parent was retrained at the same path, the twin check rejects a reference made
    from the old weights, and the quality report warns about a pruned model made from them."""
    dense = save_dense(tmp_path / "superres_dense.pt", "superres", TINY_SR)
    ref = tmp_path / "superres_dense_equal.pt"
    meta = prune.main(["superres", "--from", str(dense), *FAST])
    prune.main(["superres", "--reference", "--from", str(dense), "--out", str(ref), *FAST])
    fp = models.fingerprint(models.load(dense))
    assert meta["from_fingerprint"] == fp == models.load(ref).checkpoint_meta["from_fingerprint"]
    recipe = prune.recipe_from_args(prune.build_parser().parse_args(["superres", "--from", str(dense), *FAST]))
    pruned = tmp_path / "superres_pruned.pt"
    assert sweep._made_by(pruned, recipe, 0, dense, fp)

    save_dense(dense, "superres", TINY_SR, seed=1)  # retrained in place: same path, other weights
    fp1 = models.fingerprint(models.load(dense))
    assert fp1 != fp and not sweep._made_by(pruned, recipe, 0, dense, fp1)
    meta1 = prune.main(["superres", "--from", str(dense), "--out", str(tmp_path / "new_pruned.pt"), *FAST])
    why = quality.reference_mismatch(models.load(ref).checkpoint_meta, meta1, meta1["from"])
    assert len(why) == 1 and "made from other weights" in why[0], why

    # the report's own check, through quality.main on this folder
    monkeypatch.setattr(inference, "checkpoint_path",
                        lambda app, dense: tmp_path / f"superres_{'dense' if dense else 'pruned'}.pt")
    monkeypatch.setattr(quality, "reference_path", lambda app: ref)
    assert quality.main(["--apps", "superres", "--eval-size", "32", "--out-dir", str(tmp_path / "res")]) == 0
    text = (tmp_path / "res" / "quality.md").read_text()
    assert "the pruned model was made from other weights than `superres_dense.pt` holds now" in text


def test_keep_dense_layers(tmp_path):
    """--keep-dense leaves the named layers (or every layer under a prefix) dense, is recorded in the
    recipe (so a sweep keeps such runs apart), and a name that matches no layer is an error."""
    import lrprune

    model = models.build("color", **TINY_COLOR)
    cfg = prune.prune_config("color", model, "pattern+kernel", 0.5, 0.5, keep_dense="colorize,fusion.0").layers
    names = [n for n, _ in lrprune.prunable_layers(model)]
    kept = [n for n in names if n.startswith("colorize.") or n == "fusion.0"]
    assert kept and all(cfg[n] is None for n in kept)
    assert cfg["mid.0.0"] == ("pattern+kernel", 0.5) and cfg["low.0.0"] is None  # the app's own stays dense
    with pytest.raises(ValueError, match="no prunable layer is named colourize or lies under it"):
        prune.prune_config("color", model, "pattern+kernel", 0.5, 0.5, keep_dense="colourize")
    with pytest.raises(ValueError, match="no prunable layer is named colorize.9"):
        prune.prune_config("color", model, "pattern+kernel", 0.5, 0.5, keep_dense="colorize.9")

    dense = save_dense(tmp_path / "color_dense.pt", "color", TINY_COLOR)
    meta = prune.main(["color", "--from", str(dense), "--keep-dense", "colorize", "--out", str(tmp_path / "p.pt"),
                       *FAST])
    assert meta["recipe"]["keep_dense"] == "colorize"
    pruned = models.load(tmp_path / "p.pt")
    mods = dict(pruned.named_modules())
    assert all(not hasattr(mods[n], "lr_sparsity") for n in kept if n.startswith("colorize."))
    assert hasattr(mods["mid.0.0"], "lr_sparsity")
    plain = prune.main(["color", "--from", str(dense), "--out", str(tmp_path / "q.pt"), *FAST])
    assert "keep_dense" not in plain["recipe"]  # recorded only when used: older runs compare equal
