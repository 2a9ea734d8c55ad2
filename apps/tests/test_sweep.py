"""lrapps.sweep: two tiny rates of the color recipe, a few steps, results merged and reused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from lrapps import models, quality, sweep

torch.set_num_threads(1)

TINY_COLOR = {"width": 1, "global_width": 0.5}
FAST = ["--eval-size", "32", "--no-shipped", "--admm-steps", "2", "--retrain-steps", "1",
        "--update-every", "1", "--crop", "32", "--batch", "2"]


@pytest.fixture
def dense(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "color_dense.pt"
    models.save(path, models.build("color", **TINY_COLOR), "color", {"steps": 0})
    return path


def _argv(tmp_path, dense, rates, rates_1x1):
    return ["color", "--rates", rates, "--rates-1x1", rates_1x1, "--from", str(dense),
            "--ckpt-dir", str(tmp_path / "ckpt"), "--out-dir", str(tmp_path / "res"), *FAST]


def test_sweep_two_rates_then_reuse(tmp_path, dense):
    assert sweep.main(_argv(tmp_path, dense, "0.2,0.6", "0.3,0.7")) == 0
    data = json.loads((tmp_path / "res" / "quality_sweep.json").read_text())
    runs = sorted(data["runs"], key=lambda e: e["rate"])
    assert [(e["rate"], e["rate_1x1"]) for e in runs] == [(0.2, 0.3), (0.6, 0.7)]
    assert runs[0]["mac_reduction"] > 1.0 and runs[1]["mac_reduction"] > runs[0]["mac_reduction"]
    for e in runs:
        assert e["kind"] == "sweep" and e["seed"] == 0 and e["recipe"]["admm_steps"] == 2
        assert [t["metric"] for t in e["terms"]] == [m for m, _, _ in quality.BUDGET["color"]]
        for t in e["terms"]:
            # the budget arithmetic, independently: colourfulness and PSNR are higher-is-better
            assert t["dense"] == e["mean"][f"dense_{t['metric']}"]
            assert t["pruned"] == e["mean"][f"pruned_{t['metric']}"]
            assert t["worse"] == pytest.approx((t["dense"] - t["pruned"]) / t["dense"])
            assert t["ok"] == (t["worse"] <= 0.02)
        assert e["within_budget"] == all(t["ok"] for t in e["terms"])
        name = f"color_rate{e['rate']:g}_r1x1{e['rate_1x1']:g}_seed0_"  # + recipe hash: not the default recipe
        assert e["checkpoint"].startswith(str(tmp_path / "ckpt" / name))
        assert models.load(e["checkpoint"]).checkpoint_meta["recipe"]["rate"] == e["rate"]

    md = (tmp_path / "res" / "quality_sweep.md").read_text()
    assert "## color" in md and "| 0.2 | 0.3 | 0 |" in md and "| 0.6 | 0.7 | 0 |" in md
    best = sweep.best_run(runs)
    if best is None:
        assert "none of the 2 rates tried meets the budget" in md
    else:
        assert f"best rate meeting the budget: {best['rate']:g}" in md

    # Same rate again: the checkpoint is reused (not remade) and the JSON holds no duplicate.
    ck = Path(runs[1]["checkpoint"])
    stamp = ck.stat().st_mtime_ns
    assert sweep.main(_argv(tmp_path, dense, "0.6", "0.7")) == 0
    assert ck.stat().st_mtime_ns == stamp
    again = json.loads((tmp_path / "res" / "quality_sweep.json").read_text())
    assert len(again["runs"]) == 2
    assert all(e["prune_cpu_seconds"] > 0 for e in again["runs"])  # kept from the run that pruned
    assert sorted(e["rate"] for e in again["runs"]) == [0.2, 0.6]


@pytest.mark.parametrize("extra, message", [
    (["--rates", "1.5"], "every rate must be in [0, 1)"),
    (["--rates", "0.2,x"], "expected comma-separated numbers"),
    (["--rates", "0.2,0.3", "--rates-1x1", "0.5"], "has 1 values for 2 --rates"),
    (["--rates", "0.2", "--rate", "0.3"], "--rate is set per run by the sweep"),
])
def test_sweep_bad_arguments(tmp_path, dense, extra, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        sweep.main(["color", "--from", str(dense), "--ckpt-dir", str(tmp_path / "c"),
                    "--out-dir", str(tmp_path / "r"), *extra])


def test_best_run_needs_every_seed_and_prefers_compression():
    def e(rate, seed, ok, red):
        return {"app": "style", "kind": "sweep", "rate": rate, "rate_1x1": None, "seed": seed,
                "recipe": {"rate": rate}, "within_budget": ok, "mac_reduction": red}
    runs = [e(0.5, 0, True, 2.0), e(0.6, 0, True, 2.5), e(0.6, 1, False, 2.5), e(0.7, 0, False, 3.3)]
    assert sweep.best_run(runs)["rate"] == 0.5  # 0.6 met with seed 0 only
    assert sweep.best_run(runs[:2])["rate"] == 0.6
    assert sweep.best_run([runs[3]]) is None


def test_style_seeds_change_the_crops_not_the_loss_network(tmp_path):
    # The dense model was trained against random(seed=0) features: a seed-1 run prunes against the
    # same loss network (its seed changes only the crops), and so does its reference; asking for
    # another network is refused rather than pruning against a different objective.
    torch.manual_seed(0)
    dense = tmp_path / "style_dense.pt"
    models.save(dense, models.build("style", widths=[8, 4, 8, 4, 2], n_res=1), "style",
                {"steps": 0, "vgg": "random(seed=0, width_mult=0.25)", "style_image": "immunohistochemistry"})
    fast = ["--admm-steps", "2", "--retrain-steps", "1", "--update-every", "1", "--crop", "32", "--batch", "1",
            "--eval-size", "32", "--no-progress"]
    assert sweep.main(["style", "--rates", "0.5", "--seeds", "1", "--references", "--from", str(dense),
                       "--ref-dir", str(tmp_path / "none"), "--ckpt-dir", str(tmp_path / "c"),
                       "--out-dir", str(tmp_path / "r"), *fast]) == 0
    run = json.loads((tmp_path / "r" / "quality_sweep.json").read_text())["runs"][0]
    assert run["seed"] == 1 and run["terms_equal"]
    for f in (run["checkpoint"], *(tmp_path / "c").glob("style_dense_equal_seed1_*.pt")):
        meta = models.load(f).checkpoint_meta
        assert meta["seed"] == 1 and meta["vgg"] == "random(seed=0, width_mult=0.25)"
    from lrapps import prune
    with pytest.raises(SystemExit, match="trained with vgg random\\(seed=0, width_mult=0.25\\), this run would "
                                         "prune with random\\(seed=0, width_mult=0.5\\)"):
        prune.main(["style", "--from", str(dense), "--vgg-width", "0.5", "--out", str(tmp_path / "x.pt"), *fast])
    assert not (tmp_path / "x.pt").exists()


def test_rows_of_another_scheme_name_it():
    def e(scheme):
        return {"app": "superres", "rate": 0.0, "recipe": {"scheme": scheme, "rate": 0.0}}
    assert sweep._rate(e("pattern+kernel")) == "0"  # the recipe's own scheme: as before
    assert sweep._rate(e("kernel")) == "0 (kernel)"
    kept = {"app": "color", "rate": 0.7, "recipe": {"scheme": "pattern+kernel", "keep_dense": "colorize,fusion",
                                                    "distill": 2.0}}
    assert sweep._rate(kept) == "0.7 (dense: colorize,fusion; distilled, W 2)"


def test_merge_drops_runs_of_a_dense_model_retrained_in_place():
    def e(rate, fp, src="apps/checkpoints/color_dense.pt", app="color"):
        return {"app": app, "kind": "sweep", "recipe": {"rate": rate}, "seed": 0, "from": src,
                "from_fingerprint": fp, "eval_size": 256, "prune_cpu_seconds": 7.0, "rate": rate}
    old = {"runs": [e(0.2, "old"), e(0.5, "old"), e(0.5, "old", src="elsewhere.pt"),
                    e(0.5, "old", app="style", src="apps/checkpoints/style_dense.pt"),
                    e(0.3, None)]}  # made before fingerprints were recorded: only the path can be compared
    new = [e(0.5, "new")]
    new[0]["prune_cpu_seconds"] = None
    runs = sweep.merge(old, new)["runs"]
    # rate 0.2 came from the weights that used to be at the path: gone; another path / app: kept
    assert [(r["app"], r["from"], r["rate"], r["from_fingerprint"]) for r in runs] == [
        ("color", "elsewhere.pt", 0.5, "old"),
        ("style", "apps/checkpoints/style_dense.pt", 0.5, "old"),
        ("color", "apps/checkpoints/color_dense.pt", 0.3, None),
        ("color", "apps/checkpoints/color_dense.pt", 0.5, "new")]
    # a rerun from other weights does not inherit the old run's CPU time
    assert runs[-1]["prune_cpu_seconds"] is None
    same = e(0.5, "new")
    same["prune_cpu_seconds"] = None
    assert sweep.merge({"runs": [e(0.5, "new")]}, [same])["runs"][0]["prune_cpu_seconds"] == 7.0


def _judged(rate, seed, worse_psnr, worse_col, ref_psnr=20.0, ref_col=30.0, red=2.0):
    def t(m, w, ref):
        return {"metric": m, "rule": "rel", "tol": 0.02, "dense": ref, "pruned": ref * (1 - w), "worse": w,
                "ok": w <= 0.02}
    terms = [t("psnr_rgb", worse_psnr, ref_psnr), t("colorfulness", worse_col, ref_col)]
    return {"app": "color", "kind": "sweep", "rate": rate, "rate_1x1": None, "seed": seed,
            "recipe": {"rate": rate}, "mac_reduction": red, "terms_equal": terms,
            "within_budget_equal": all(x["ok"] for x in terms)}


def test_seed_means_judge_the_mean_over_seeds():
    runs = [_judged(0.3, 0, 0.03, 0.0, ref_psnr=20.0), _judged(0.3, 1, -0.01, 0.01, ref_psnr=21.0),
            _judged(0.6, 0, 0.01, 0.05, red=4.0), _judged(0.6, 1, 0.01, 0.04, red=4.0),
            _judged(0.9, 0, 0.0, 0.0, red=9.0)]  # one seed only: not in the means
    dup = dict(runs[0], kind="shipped", terms_equal=[dict(x, worse=9.0) for x in runs[0]["terms_equal"]])
    groups = sweep.seed_means(runs + [dup])  # the shipped run of a (recipe, seed) already there: counted once
    assert [(g["run"]["rate"], g["seeds"], g["ok"]) for g in groups] == [(0.3, [0, 1], True), (0.6, [0, 1], False)]
    psnr = groups[0]["terms"][0]
    assert psnr["mean"] == pytest.approx(0.01) and psnr["sd"] == pytest.approx(0.02 * 2 ** 0.5)
    # per seed, 0.3 is out (seed 0 misses PSNR): only the single-seed 0.9 passes every seed it has
    assert sweep.best_run(runs, "within_budget_equal")["rate"] == 0.9
    seeds, mean, sd = sweep.reference_spread(runs)["psnr_rgb"]
    assert seeds == [0, 1] and mean == pytest.approx(20.5) and sd == pytest.approx(0.5 * 2 ** 0.5)
    text = "\n".join(sweep._seed_lines("color", runs))
    assert "| 0.3 | - | 0, 1 | 2.00x | +1.0 ± 2.8 % | +0.5 ± 0.7 % | yes |" in text
    assert "| 0.6 | - | 0, 1 | 4.00x | +1.0 ± 0.0 % | +4.5 ± 0.7 % ✗ | **no** |" in text
    assert "**color, mean over seeds: best rate meeting the budget: 0.3 (2.00x fewer conv MACs, seeds 0, 1)**" in text
    assert sweep.seed_means(runs[4:]) == [] and sweep._seed_lines("color", runs[4:]) == []


def test_stored_verdict_survives_a_missing_reference(tmp_path):
    e = _judged(0.3, 2, 0.01, 0.01)
    e["reference"] = "out/quality_sweep/color_dense_equal_seed2_gone.pt"
    data = sweep.add_reference({"runs": [e]}, [tmp_path])
    assert data["runs"][0]["terms_equal"] and data["runs"][0]["within_budget_equal"]


def test_render_keeps_judging_against_the_twin_found_elsewhere(tmp_path, dense):
    # a sweep with its own --ckpt-dir found (made) the twins there; a later --render with the
    # default directories still judges against them, not against a plain-named non-twin
    argv = ["color", "--rates", "0.5", "--seeds", "1", "--references", "--from", str(dense),
            "--ref-dir", str(tmp_path / "no_refs"), "--ckpt-dir", str(tmp_path / "elsewhere"),
            "--out-dir", str(tmp_path / "res"), *FAST]
    assert sweep.main(argv) == 0
    before = json.loads((tmp_path / "res" / "quality_sweep.json").read_text())["runs"][0]
    assert before["terms_equal"]
    from lrapps import prune
    prune.main(["color", "--reference", "--seed", "0", "--from", str(dense),  # seed 0's twin, not seed 1's
                "--out", str(tmp_path / "no_refs" / "color_dense_equal.pt"),
                *[a for a in FAST if a != "--no-shipped"]])
    assert sweep.main(["--render", "--out-dir", str(tmp_path / "res"), "--ref-dir", str(tmp_path / "no_refs"),
                       "--ckpt-dir", str(tmp_path / "other")]) == 0
    after = json.loads((tmp_path / "res" / "quality_sweep.json").read_text())["runs"][0]
    assert after["reference"] == before["reference"] and after["terms_equal"] == before["terms_equal"]


def test_references_option_trains_each_seeds_twin(tmp_path, dense):
    argv = ["color", "--rates", "0.5", "--seeds", "0,1", "--references", "--from", str(dense),
            "--ref-dir", str(tmp_path / "no_refs"), "--ckpt-dir", str(tmp_path / "ckpt"),
            "--out-dir", str(tmp_path / "res"), *FAST]
    assert sweep.main(argv) == 0
    # not the shipped dense model: the names carry its digest
    refs = [sorted((tmp_path / "ckpt").glob(f"color_dense_equal_seed{s}_*.pt")) for s in (0, 1)]
    assert [len(r) for r in refs] == [1, 1]
    for s, (ref,) in enumerate(refs):
        meta = models.load(ref).checkpoint_meta
        assert meta["reference"] == "dense_equal_steps" and meta["seed"] == s
    data = json.loads((tmp_path / "res" / "quality_sweep.json").read_text())
    assert len(data["runs"]) == 2 and all(e.get("terms_equal") for e in data["runs"])
    assert {e["reference"] for e in data["runs"]} == {str(r[0]) for r in refs}
    assert "Over seeds" in (tmp_path / "res" / "quality_sweep.md").read_text()
    # a second sweep finds them and trains none
    made = refs[0][0].stat().st_mtime_ns
    assert sweep.main(argv) == 0
    assert refs[0][0].stat().st_mtime_ns == made
    # another dense model swept into the same directory gets its own references
    other = tmp_path / "other_dense.pt"
    torch.manual_seed(1)
    models.save(other, models.build("color", **TINY_COLOR), "color", {"steps": 0})
    argv[argv.index("--from") + 1] = str(other)
    argv[argv.index("--seeds") + 1] = "0"
    assert sweep.main(argv) == 0
    assert len(list((tmp_path / "ckpt").glob("color_dense_equal_seed0_*.pt"))) == 2
    assert refs[0][0].stat().st_mtime_ns == made


def test_best_rates_line():
    runs = [_judged(0.3, 0, 0.01, 0.0), _judged(0.3, 1, 0.01, 0.01),
            _judged(0.6, 0, 0.0, 0.01, red=4.0), _judged(0.6, 1, 0.03, 0.0, red=4.0)]
    assert sweep.best_rates({"runs": runs}, "color") == (
        "2.00x fewer conv MACs on every seed judged; 4.00x on the mean of 2 seeds (2 rates judged, 2.00x-4.00x)")
    bad = [_judged(0.3, 0, 0.05, 0.0), _judged(0.3, 1, 0.05, 0.0)]
    assert sweep.best_rates({"runs": bad}, "color") == (
        "no rate on every seed judged; no rate on the mean over seeds (1 rates judged, 2.00x-2.00x)")
    assert sweep.best_rates({"runs": runs}, "style") is None
