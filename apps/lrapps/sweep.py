"""Rate sweep of the pruned apps against the quality budget:
``python -m lrapps.sweep APP --rates 0.4,0.55 [--rates-1x1 0.6,0.78]``.

For each rate it runs ``python -m lrapps.prune APP --rate R [--rate-1x1 R1]``
with everything else of the app's recipe unchanged (ADMM + masked retraining,
same steps, seed, one thread), writing the checkpoint under ``--ckpt-dir``
(default ``out/quality_sweep``, git-ignored: the shipped
``apps/checkpoints/<app>_pruned.pt`` is never touched). It then measures the
budget metrics on the held-out images exactly as ``lrapps.quality`` does
(``quality.evaluate`` + ``quality.budget_terms``), also for the shipped pruned
checkpoint, and merges the results into ``bench/results/quality_sweep.json``
and ``quality_sweep.md``: per app a table of rate, conv MAC reduction, each
budget metric pruned vs dense and whether the budget is met, and the
highest-compression rate that meets it (or that none tried does). Where
``<app>_dense_equal.pt`` (``python -m lrapps.prune APP --reference``; for
seed N ``<app>_dense_equal_seedN.pt`` if present) is the twin of a run
(same dense model, seed, steps, batch, crop, learning rates), each run is
also judged against it: the fair test of what pruning costs.
``python -m lrapps.sweep --render`` re-judges the stored runs and rewrites
both files without pruning anything (the reference is measured once).

A checkpoint already in ``--ckpt-dir`` made by the same recipe, seed and dense
checkpoint (path and weight fingerprint) is reused instead of pruned again (a
run takes 10-15 minutes on one thread), so an interrupted sweep resumes. Options that
``python -m lrapps.prune`` knows and this command does not (``--admm-steps``,
``--crop``, ...) are passed through to it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from . import models
from . import prune as P
from . import quality as Q

__all__ = ["run_sweep", "render_markdown", "best_run", "best_rates", "seed_means", "reference_spread", "add_reference", "write_results", "main"]

ROOT = Path(__file__).resolve().parents[2]


def _floats(text: Optional[str], what: str) -> Optional[List[float]]:
    if text is None:
        return None
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SystemExit(f"{what}: expected comma-separated numbers, got {text!r}") from None
    bad = [v for v in vals if not 0.0 <= v < 1.0]
    if bad or not vals:
        raise SystemExit(f"{what}: every rate must be in [0, 1), got {text!r}")
    return vals


def _shown(path: Path) -> str:
    """As lrapps.prune records ``from`` in the checkpoint meta."""
    p = path.resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def _ckpt_name(app: str, recipe: P.Recipe, seed: int, src: Path, default_src: bool) -> str:
    r1 = "none" if recipe.rate_1x1 is None else f"{recipe.rate_1x1:g}"
    name = f"{app}_rate{recipe.rate:g}_r1x1{r1}_seed{seed}"
    base, cur = asdict(P.RECIPES[app]), asdict(recipe)
    if not default_src or any(cur[k] != base[k] for k in cur if k not in ("rate", "rate_1x1")):
        # another recipe or dense model must not overwrite the default one's checkpoint
        tag = json.dumps([cur, _shown(src)], sort_keys=True).encode()
        name += "_" + hashlib.sha1(tag).hexdigest()[:8]
    return name + ".pt"


def _made_by(path: Path, recipe: P.Recipe, seed: int, src: Path, src_fingerprint: str) -> bool:
    """Whether the checkpoint at ``path`` came from this recipe, seed and dense model: the same
    path *and* the same weights (a dense model retrained in place keeps its path), so a checkpoint
    without the parent's fingerprint (made before prune recorded it) is remade."""
    if not path.is_file():
        return False
    try:
        meta = torch.load(path, weights_only=True, map_location="cpu").get("meta", {})
    except Exception:  # a truncated or foreign file is simply remade
        return False
    return (meta.get("recipe") == P.recipe_meta(recipe) and meta.get("seed") == seed
            and meta.get("from") == _shown(src) and meta.get("from_fingerprint") == src_fingerprint)


def _measure(app: str, dense, pruned, eval_size: int) -> Dict:
    rows, _ = Q.evaluate(app, dense, pruned, eval_size)
    mean = Q.mean_row(rows)
    terms = Q.budget_terms(app, mean)
    return {"terms": terms, "within_budget": all(t["ok"] for t in terms), "mean": mean, "rows": rows}


def _entry(app: str, kind: str, ckpt: Path, dense, eval_size: int, cpu_s: Optional[float]) -> Dict:
    pruned = models.load(ckpt)
    m = pruned.checkpoint_meta
    rec = m.get("recipe") or {}
    macs = P.conv_macs(pruned, app)
    return {"app": app, "kind": kind, "rate": rec.get("rate"), "rate_1x1": rec.get("rate_1x1"),
            "seed": m.get("seed"), "recipe": rec, "from": m.get("from"),
            "from_fingerprint": m.get("from_fingerprint"), "checkpoint": _shown(ckpt),
            **macs, "admm_seconds": m.get("admm_seconds"), "retrain_seconds": m.get("retrain_seconds"),
            "prune_cpu_seconds": cpu_s, "eval_size": eval_size, **_measure(app, dense, pruned, eval_size)}


def _key(e: Dict):
    return (e["app"], e["kind"], json.dumps(e["recipe"], sort_keys=True), e["seed"], e["from"],
            e["eval_size"])


def run_sweep(app: str, rates: List[float], rates_1x1: Optional[List[Optional[float]]], seeds: List[int],
              ckpt_dir: Path, eval_size: int = 256, shipped: bool = True, from_ckpt: Optional[str] = None,
              threads: int = 1, extra: Optional[List[str]] = None, log=print,
              references: bool = False, ref_dir: Optional[Path] = None) -> List[Dict]:
    """Prune (or reuse) one checkpoint per (rate, seed) and measure each; returns the entries.
    ``references``: first train each seed's dense, equal-steps reference into ``ckpt_dir`` where
    neither ``ref_dir`` nor ``ckpt_dir`` holds its twin."""
    extra = list(extra or [])
    if rates_1x1 is None:
        rates_1x1 = [None] * len(rates)
    if len(rates_1x1) != len(rates):
        raise SystemExit(f"--rates-1x1 has {len(rates_1x1)} values for {len(rates)} --rates")
    src = Path(from_ckpt) if from_ckpt else ROOT / "apps" / "checkpoints" / f"{app}_dense.pt"
    if not src.is_file():
        raise SystemExit(f"{src}: no dense checkpoint to prune (python -m lrapps.train {app})")
    dense = models.load(src)
    src_fp = models.fingerprint(dense)
    if "--data" in extra:
        # the runs are judged on the held-out split of the data the dense model was trained on
        i = extra.index("--data")
        given = extra[i + 1] if i + 1 < len(extra) else None
        trained = dense.checkpoint_meta.get("data", "builtin")
        if given is None or Path(given).resolve() != Path(trained).resolve():
            raise SystemExit(f"--data {given}: {_shown(src)} was trained on {trained}; prune the dense model "
                             "of that data (train one with --data, then --from it), so that dense and pruned "
                             "are judged on the same held-out images")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    if shipped:
        ship = ROOT / "apps" / "checkpoints" / f"{app}_pruned.pt"
        ship_meta = models.load(ship).checkpoint_meta if ship.is_file() else {}
        if ship_meta.get("from") == _shown(src) and ship_meta.get("from_fingerprint") in (None, src_fp):
            entries.append(_entry(app, "shipped", ship, dense, eval_size, None))
            log(f"{app} shipped rate {entries[-1]['rate']}: within budget {entries[-1]['within_budget']}")
    if references:
        for seed in seeds:
            _ensure_reference(app, seed, src, src_fp, ckpt_dir, [d for d in (ref_dir, ckpt_dir) if d],
                              threads, eval_size, extra, log)
    for seed in seeds:
        for rate, r1 in zip(rates, rates_1x1):
            argv = [app, "--rate", str(rate), "--seed", str(seed), "--threads", str(threads),
                    "--no-progress", "--eval-size", str(eval_size), "--from", str(src), *extra]
            if r1 is not None:
                argv[3:3] = ["--rate-1x1", str(r1)]
            recipe = P.recipe_from_args(P.build_parser().parse_args(argv))
            ckpt = ckpt_dir / _ckpt_name(app, recipe, seed, src, from_ckpt is None)
            argv += ["--out", str(ckpt)]
            cpu_s = None
            if _made_by(ckpt, recipe, seed, src, src_fp):
                log(f"{app} rate {rate} / {recipe.rate_1x1} seed {seed}: reusing {_shown(ckpt)}")
            else:
                log(f"{app} rate {rate} / {recipe.rate_1x1} seed {seed}: pruning -> {_shown(ckpt)}")
                c0 = time.process_time()
                P.main(argv)
                cpu_s = round(time.process_time() - c0, 1)
                torch.set_num_threads(threads)
            e = _entry(app, "sweep", ckpt, dense, eval_size, cpu_s)
            entries.append(e)
            log(f"{app} rate {rate}: {e['mac_reduction']:.2f}x fewer conv MACs; "
                + "; ".join(f"{t['metric']} {_worse(t)}" for t in e["terms"])
                + f" -> {'within budget' if e['within_budget'] else 'MISSED'}")
    return entries


def _ensure_reference(app: str, seed: int, src: Path, src_fp: str, ckpt_dir: Path, ref_dirs: List[Path],
                      threads: int, eval_size: int, extra: List[str], log) -> Path:
    """The equal-steps twin of this seed's runs: found in ``ref_dirs``, or trained into ``ckpt_dir``."""
    argv = [app, "--reference", "--seed", str(seed), "--threads", str(threads), "--no-progress",
            "--eval-size", str(eval_size), "--from", str(src), *extra]
    recipe = P.recipe_from_args(P.build_parser().parse_args(argv))
    twin = {"recipe": P.recipe_meta(recipe), "seed": seed, "from": _shown(src), "from_fingerprint": src_fp}
    tag = _ref_tag(app, _shown(src), src_fp)
    found = _find_reference(app, seed, ref_dirs, tag)
    if found is not None:
        meta = torch.load(found, weights_only=True, map_location="cpu").get("meta", {})
        if not Q.reference_mismatch(meta, twin, _shown(src)):
            log(f"{app} seed {seed}: equal-steps reference {_shown(found)}")
            return found
    out = ckpt_dir / f"{app}_dense_equal_seed{seed}{tag}.pt"
    log(f"{app} seed {seed}: training the equal-steps reference -> {_shown(out)}")
    P.main(argv + ["--out", str(out)])
    torch.set_num_threads(threads)
    return out


def _ref_tag(app: str, src_shown: str, src_fp: Optional[str]) -> str:
    """References made from another dense model than the shipped one carry its digest in the name,
    so that sweeps of two dense models into one --ckpt-dir never replace each other's."""
    if src_shown == f"apps/checkpoints/{app}_dense.pt":
        return ""
    return "_" + hashlib.sha1(f"{src_shown}|{src_fp}".encode()).hexdigest()[:8]


def _find_reference(app: str, seed, ref_dirs: List[Path], tag: str = "") -> Optional[Path]:
    """A seed's own crop sequence needs its own reference (``<app>_dense_equal_seedN.pt``, first
    directory that has it; with the dense model's ``tag`` first); the plain name is the recipe's
    seed."""
    names = ([f"{app}_dense_equal_seed{seed}{tag}.pt"] if tag else []) + [
        f"{app}_dense_equal_seed{seed}.pt", f"{app}_dense_equal.pt"]
    for name in names:
        for d in ref_dirs:
            if (d / name).is_file():
                return d / name
    return None


def add_reference(data: Dict, ref_dirs, log=print) -> Dict:
    """Judge every stored run also against the dense, equal-steps reference
    (``<app>_dense_equal.pt``, made by ``python -m lrapps.prune APP
    --reference``; for a run of seed N, ``<app>_dense_equal_seedN.pt`` if
    present, made with ``--seed N``), looked for in each of ``ref_dirs`` in
    turn, where that reference is the run's twin: same dense model, seed,
    steps, batch, crop and learning rates (the rate may differ: that is what is
    being judged). Each reference is measured once per eval size; the metrics
    are deterministic, so merging them into the stored ones gives what a joint
    evaluation would. A run already judged is judged again against the
    reference it names while that file is there, and keeps its stored verdict
    (like its own metrics, measured when the file was there) when it is not.
    In place; returns ``data``."""
    ref_dirs = [ref_dirs] if isinstance(ref_dirs, Path) else list(ref_dirs)
    cache: Dict = {}
    for e in data.get("runs", []):
        was = e.get("reference")
        was_file = next((f for f in ((ROOT / was), Path(was)) if f.is_file()), None) if was else None
        if e.get("terms_equal") and was and was_file is None:
            continue  # judged against a file not here now (e.g. a seed's reference under out/)
        if e.get("terms_equal") and was_file is not None:
            ref_file = was_file  # its twin, wherever the sweep that judged it found it
        else:
            ref_file = _find_reference(e["app"], e["seed"], ref_dirs,
                                       _ref_tag(e["app"], e["from"], e.get("from_fingerprint")))
        if ref_file is None:
            continue
        for k in ("terms_equal", "within_budget_equal", "reference", "reference_mismatch"):
            e.pop(k, None)
        if ref_file not in cache:
            cache[ref_file] = models.load(ref_file)
        ref = cache[ref_file]
        why = Q.reference_mismatch(ref.checkpoint_meta,
                                   {"recipe": e["recipe"], "seed": e["seed"], "from": e["from"],
                                    "from_fingerprint": e.get("from_fingerprint")}, e["from"])
        e["reference"] = _shown(ref_file)
        if why:
            e["reference_mismatch"] = why
            continue
        key = (ref_file, e["eval_size"])
        if key not in cache:
            log(f"{e['app']}: measuring the equal-steps reference {_shown(ref_file)} (eval size {e['eval_size']})")
            cache[key] = Q.evaluate_models(e["app"], {"equal": ref}, e["eval_size"])[0]
        ref_rows = cache[key]
        if [r["image"] for r in ref_rows] != [r["image"] for r in e["rows"]]:
            e["reference_mismatch"] = ["held-out images differ"]
            continue
        for r, rr in zip(e["rows"], ref_rows):
            r.update({k: v for k, v in rr.items() if k.startswith("equal_")})
        e["mean"].update({k: v for k, v in Q.mean_row(ref_rows).items() if k.startswith("equal_")})
        e["terms_equal"] = Q.budget_terms(e["app"], e["mean"], "equal")
        e["within_budget_equal"] = all(t["ok"] for t in e["terms_equal"])
    return data


def _worse(t: Dict) -> str:
    # t["dense"] is the reference's value, whichever reference t["reference"] names.
    if t["rule"] == "db":
        return f"{t['pruned']:.3f} vs {t['dense']:.3f} dB ({-t['worse']:+.3f} dB)"
    # Signed change of the metric itself (pruned vs dense), the way a reader compares numbers.
    change = (t["pruned"] - t["dense"]) / t["dense"]
    return f"{t['pruned']:.4g} vs {t['dense']:.4g} ({100 * change:+.1f} %)"


def _rate(e: Dict) -> str:
    """The rate, with the scheme where it is not the app's recipe's, kept-dense layers and
    distillation where used: runs that differ in those at the same rates are different runs and
    must read differently."""
    rec = e.get("recipe") or {}
    scheme = rec.get("scheme")
    app_recipe = P.RECIPES.get(e["app"])
    other = scheme is not None and app_recipe is not None and scheme != app_recipe.scheme
    notes = ([scheme] if other else []) + ([f"dense: {rec['keep_dense']}"] if rec.get("keep_dense") else []) \
        + ([f"distilled, W {rec['distill']:g}"] if rec.get("distill") else [])
    return f"{e['rate']:g}" + (f" ({'; '.join(notes)})" if notes else "")


def best_run(entries: List[Dict], key: str = "within_budget") -> Optional[Dict]:
    """The highest-MAC-reduction entry within budget, or None. A recipe run with
    several seeds counts only if every seed met the budget. ``key``:
    "within_budget" (vs the shipped dense model) or "within_budget_equal" (vs the
    dense, equal-steps reference; runs without that verdict do not count)."""
    ok = [e for e in entries
          if all(o.get(key) for o in entries if o["app"] == e["app"] and o["recipe"] == e["recipe"])]
    return max(ok, key=lambda e: e["mac_reduction"]) if ok else None


def seed_means(runs: List[Dict]) -> List[Dict]:
    """Per recipe judged against its own twin on two or more seeds: over the seeds, the mean and
    standard deviation of how much worse pruned is than its twin, per budget metric, and whether
    the mean is within the budget. One seed's verdict is a coin flip where the metric moves between
    seeds by about the budget; the mean over seeds is the estimate of what pruning costs."""
    groups: Dict[str, Dict] = {}
    for e in runs:
        if e.get("terms_equal"):
            # the shipped checkpoint and a sweep run of its recipe and seed are the same run
            groups.setdefault(json.dumps(e["recipe"], sort_keys=True), {}).setdefault(e["seed"], e)
    out = []
    for by_seed in groups.values():
        if len(by_seed) < 2:
            continue
        es = [by_seed[k] for k in sorted(by_seed)]
        terms = []
        for i, t0 in enumerate(es[0]["terms_equal"]):
            w = np.array([e["terms_equal"][i]["worse"] for e in es])
            terms.append({"metric": t0["metric"], "rule": t0["rule"], "tol": t0["tol"], "mean": float(w.mean()),
                          "sd": float(w.std(ddof=1)), "ok": bool(w.mean() <= t0["tol"])})
        out.append({"run": es[0], "seeds": sorted(by_seed), "terms": terms, "ok": all(t["ok"] for t in terms)})
    return sorted(out, key=lambda g: g["run"]["mac_reduction"])


def reference_spread(runs: List[Dict]) -> Optional[Dict]:
    """The noise floor: how the equal-steps references of different seeds (same dense model, same
    schedule, another crop order; nothing pruned) differ, per budget metric: {metric: (seeds,
    mean, sd)}. None with fewer than two seeds' references."""
    per_seed: Dict = {}
    for e in runs:
        if e.get("terms_equal"):
            per_seed.setdefault(e["seed"], {t["metric"]: t["dense"] for t in e["terms_equal"]})
    if len(per_seed) < 2:
        return None
    seeds = sorted(per_seed)
    return {m: (seeds, float(np.mean([per_seed[k][m] for k in seeds])),
                float(np.std([per_seed[k][m] for k in seeds], ddof=1))) for m in per_seed[seeds[0]]}


def _seed_lines(app: str, runs: List[Dict]) -> List[str]:
    groups = seed_means(runs)
    if not groups:
        return []
    L = ["Over seeds (fair test: each seed's run against its own twin; mean ± standard deviation over "
         "the seeds of how much worse pruned is, positive = worse; budget applied to the mean):", "",
         "| rate | rate_1x1 | seeds | conv MACs (reduction) | "
         + " | ".join(f"{t['metric']} worse" for t in groups[0]["terms"]) + " | mean within budget |",
         "|---" * (5 + len(groups[0]["terms"])) + "|"]
    for g in groups:
        e = g["run"]
        r1 = "-" if e["rate_1x1"] is None else f"{e['rate_1x1']:g}"
        cells = [(f"{t['mean']:+.3f} ± {t['sd']:.3f} dB" if t["rule"] == "db" else
                  f"{100 * t['mean']:+.1f} ± {100 * t['sd']:.1f} %") + ("" if t["ok"] else " ✗")
                 for t in g["terms"]]
        L.append(f"| {_rate(e)} | {r1} | {', '.join(map(str, g['seeds']))} | {e['mac_reduction']:.2f}x | "
                 + " | ".join(cells) + f" | {'yes' if g['ok'] else '**no**'} |")
    spread = reference_spread(runs)
    if spread:
        parts = []
        for m, (seeds, mean, sd) in spread.items():
            rule = next(t["rule"] for t in groups[0]["terms"] if t["metric"] == m)
            parts.append(f"{m} {mean:.4g} ± {sd:.3f} dB" if rule == "db" else
                         f"{m} {mean:.4g} ± {sd:.3g} ({100 * sd / abs(mean):.1f} %)")
        L += ["", f"Noise floor: the equal-steps references of seeds {', '.join(map(str, seeds))} (nothing "
              "pruned, another crop order) measure " + "; ".join(parts) + " (mean ± standard deviation)."]
    return L + ["", _seed_verdict(app, groups), ""]


def _seed_best(groups: List[Dict]) -> Optional[Dict]:
    """The highest-MAC-reduction ``seed_means`` group whose mean meets the budget, or None."""
    ok = [g for g in groups if g["ok"]]
    return max(ok, key=lambda g: g["run"]["mac_reduction"]) if ok else None


def _seed_verdict(app: str, groups: List[Dict]) -> str:
    best = _seed_best(groups)
    if best is None:
        return (f"**{app}, mean over seeds: none of the {len(groups)} rates judged on several seeds meets "
                f"the budget**, down to {groups[0]['run']['mac_reduction']:.2f}x fewer conv MACs.")
    run = best["run"]
    return (f"**{app}, mean over seeds: best rate meeting the budget: {_rate(run)}"
            + ("" if run["rate_1x1"] is None else f" / rate_1x1 {run['rate_1x1']:g}")
            + f" ({run['mac_reduction']:.2f}x fewer conv MACs, seeds {', '.join(map(str, best['seeds']))})** "
            f"(of {len(groups)} rates judged on several seeds).")


def render_markdown(data: Dict) -> str:
    L = ["# Pruning rate sweep against the quality budget", "",
         "Written by `python -m lrapps.sweep APP --rates ...` (apps/lrapps/sweep.py); do not edit by hand. "
         "Each row is `python -m lrapps.prune APP --rate R [--rate-1x1 R1]` with the app's recipe otherwise "
         "unchanged (same ADMM and masked-retraining steps, seed, 1 thread), measured on the held-out "
         "images exactly as `bench/results/quality.md` (`lrapps.quality`) is. Metric columns: pruned vs "
         "dense, signed change of the metric (losses: lower is better; PSNR and colourfulness: higher is "
         "better). Budget (issue 5): super resolution Y-PSNR within 0.2 dB of dense; every other metric "
         "within 2 % of dense in the direction that matters. MACs: convs and linears at the benchmark "
         "input size. Times: wall seconds of ADMM + retraining on the shared 2-core box.", "",
         "Two verdicts per run. *vs shipped dense*: against `apps/checkpoints/<app>_dense.pt`, the "
         "dense run every pruned model starts from; the pruned model has had the recipe's ADMM + "
         "retraining steps on top, so this mixes pruning with extra training. *vs dense, equal steps "
         "(fair)*: against `apps/checkpoints/<app>_dense_equal.pt` (`python -m lrapps.prune APP "
         "--reference`), the same dense model trained for the same extra steps with the same schedule, "
         "seed and crops, nothing pruned: the two differ only by pruning. That verdict is given only for "
         "runs whose seed, steps, batch, crop and learning rates match the reference's (n/a otherwise); a run "
         "of seed N is judged against `<app>_dense_equal_seedN.pt` (`--reference --seed N`) where present.", ""]
    by_app: Dict[str, List[Dict]] = {}
    for e in data["runs"]:
        by_app.setdefault(e["app"], []).append(e)
    for app in sorted(by_app):
        runs = sorted(by_app[app], key=lambda e: (e["mac_reduction"], e["seed"] or 0))
        metrics = [t["metric"] for t in runs[0]["terms"]]
        L += [f"## {app}", "",
              "| rate | rate_1x1 | seed | conv MACs (reduction) | "
              + " | ".join(f"{m} pruned vs shipped dense" for m in metrics)
              + " | within budget vs shipped dense | "
              + " | ".join(f"{m} pruned vs dense, equal steps" for m in metrics)
              + " | within budget vs dense, equal steps (fair) | ADMM + retrain s | checkpoint |",
              "|---" * (8 + 2 * len(metrics)) + "|"]
        for e in runs:
            r1 = "-" if e["rate_1x1"] is None else f"{e['rate_1x1']:g}"
            tag = " (shipped)" if e["kind"] == "shipped" else ""
            if e["macs_pruned"] >= e["macs_dense"]:
                tag += " (nothing pruned: control for the extra training)"
            secs = (f"{e['admm_seconds']:.0f} + {e['retrain_seconds']:.0f}"
                    if e.get("admm_seconds") is not None and e.get("retrain_seconds") is not None else "?")
            cells = [f"{_worse(t)}{'' if t['ok'] else ' ✗'}" for t in e["terms"]]
            if e.get("terms_equal"):
                fair = [f"{_worse(t)}{'' if t['ok'] else ' ✗'}" for t in e["terms_equal"]]
                fair_ok = "yes" if e["within_budget_equal"] else "**no**"
            else:
                why = "; ".join(e.get("reference_mismatch") or ["no reference checkpoint"])
                fair, fair_ok = ["n/a"] * len(metrics), f"n/a ({why})"
            L.append(f"| {_rate(e)}{tag} | {r1} | {e['seed']} | {e['macs_dense'] / 1e6:.0f} M → "
                     f"{e['macs_pruned'] / 1e6:.0f} M ({e['mac_reduction']:.2f}x) | " + " | ".join(cells)
                     + f" | {'yes' if e['within_budget'] else '**no**'} | " + " | ".join(fair)
                     + f" | {fair_ok} | {secs} | `{e['checkpoint']}` |")
        L += ["", _verdict(app, runs), ""]
        L += _seed_lines(app, runs)
        L += _per_image(runs, metrics)
    return "\n".join(L)


def _per_image(runs: List[Dict], metrics: List[str]) -> List[str]:
    """The means above are over three images: show how each image moved."""
    runs = [e for e in runs if e.get("rows")]
    if not runs:
        return []
    images = [Path(r["image"]).stem for r in runs[0]["rows"]]
    head = [f"{m} {im}" for m in metrics for im in images]
    fair = any("equal_" + metrics[0] in r for e in runs for r in e["rows"])
    L = [f"Per held-out image, pruned (shipped dense{' / dense, equal steps' if fair else ''}):", "",
         "| rate (/ rate_1x1) | seed | " + " | ".join(head) + " |", "|---" * (2 + len(head)) + "|"]

    def ref(r, m):
        return f"{r['dense_' + m]:.4g}" + (f" / {r['equal_' + m]:.4g}" if "equal_" + m in r else "")
    for e in runs:
        cells = [f"{r['pruned_' + m]:.4g} ({ref(r, m)})" for m in metrics for r in e["rows"]]
        r1 = "" if e["rate_1x1"] is None else f" / {e['rate_1x1']:g}"
        L.append(f"| {_rate(e)}{r1}{' (shipped)' if e['kind'] == 'shipped' else ''} | {e['seed']} | "
                 + " | ".join(cells) + " |")
    return L + [""]


def _verdict(app: str, runs: List[Dict]) -> str:
    best = best_run(runs)
    n = len({json.dumps(e["recipe"], sort_keys=True) for e in runs})
    tried = f"{n} rates tried" + (f" ({len(runs)} runs)" if len(runs) > n else "")
    if best is None:
        lo = min(runs, key=lambda e: e["mac_reduction"])
        text = (f"**{app}: none of the {tried} meets the budget**, down to rate "
                f"{_rate(lo)} ({lo['mac_reduction']:.2f}x fewer conv MACs).")
    else:
        r1 = "" if best["rate_1x1"] is None else f" / rate_1x1 {best['rate_1x1']:g}"
        seeds = sorted({e["seed"] for e in runs if e["recipe"] == best["recipe"]})
        r1 += f", seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f", seed {seeds[0]} only"
        text = (f"**{app}: best rate meeting the budget: {_rate(best)}{r1} ({best['mac_reduction']:.2f}x "
                f"fewer conv MACs{', shipped' if best['kind'] == 'shipped' else ''})** (highest compression "
                f"among the {tried}).")
    controls = [e for e in runs if e["macs_pruned"] >= e["macs_dense"] and not e["within_budget"]]
    if controls:
        text += (" The control that prunes nothing but gets the same extra training misses the budget too: "
                 "a miss of that size is within the noise of retraining, not by itself evidence of pruning "
                 "damage.")
    judged = [e for e in runs if e.get("terms_equal")]
    if judged:
        fair = best_run(judged, "within_budget_equal")
        n_fair = len({json.dumps(e["recipe"], sort_keys=True) for e in judged})
        if fair is None:
            lo = min(judged, key=lambda e: e["mac_reduction"])
            text += (f" **Against the dense, equal-steps reference (the fair test): none of the {n_fair} "
                     f"rates judged meets the budget**, down to rate {_rate(lo)} "
                     f"({lo['mac_reduction']:.2f}x).")
        else:
            r1 = "" if fair["rate_1x1"] is None else f" / rate_1x1 {fair['rate_1x1']:g}"
            seeds = sorted({e["seed"] for e in judged if e["recipe"] == fair["recipe"]})
            r1 += f", seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f", seed {seeds[0]} only"
            text += (f" **Against the dense, equal-steps reference (the fair test): best rate meeting the "
                     f"budget: {_rate(fair)}{r1} ({fair['mac_reduction']:.2f}x fewer conv MACs"
                     f"{', shipped' if fair['kind'] == 'shipped' else ''})** (of {n_fair} rates judged).")
    return text


def best_rates(data: Dict, app: str) -> Optional[str]:
    """One line for ``app``: the highest MAC cuts that meet the budget against their twins, on
    every seed judged and on the mean over seeds (None without judged runs)."""
    runs = [e for e in data.get("runs", []) if e["app"] == app]
    judged = [e for e in runs if e.get("terms_equal")]
    if not judged:
        return None
    per_seed = best_run(judged, "within_budget_equal")
    parts = [f"{per_seed['mac_reduction']:.2f}x fewer conv MACs on every seed judged" if per_seed
             else "no rate on every seed judged"]
    groups = seed_means(runs)
    if groups:
        best = _seed_best(groups)
        parts.append(f"{best['run']['mac_reduction']:.2f}x on the mean of {len(best['seeds'])} seeds" if best
                     else "no rate on the mean over seeds")
    cuts = sorted({round(e["mac_reduction"], 2) for e in judged})
    n = len({json.dumps(e["recipe"], sort_keys=True) for e in judged})
    return "; ".join(parts) + f" ({n} rates judged, {cuts[0]:.2f}x-{cuts[-1]:.2f}x)"


def summary_lines(data: Dict) -> List[str]:
    """One line per app, for quality.md."""
    by_app: Dict[str, List[Dict]] = {}
    for e in data.get("runs", []):
        by_app.setdefault(e["app"], []).append(e)
    out = []
    for app, runs in sorted(by_app.items()):
        groups = seed_means(runs)
        out.append(f"* {_verdict(app, runs)}" + (f" {_seed_verdict(app, groups)}" if groups else ""))
    return out


def merge(old: Dict, new: List[Dict]) -> Dict:
    """Replace entries of the same app, kind, recipe, seed, dense model and eval size; keep the rest,
    except runs pruned from other weights at a path the new runs come from: the dense model was
    retrained in place, so those rows would judge a model nobody can rebuild against one that is gone."""
    keys = {_key(e) for e in new}
    current = {(e["app"], e["from"]): e.get("from_fingerprint") for e in new}
    before = {_key(e): e for e in old.get("runs", []) if _key(e) in keys
              and e.get("from_fingerprint") == current[(e["app"], e["from"])]}
    for e in new:  # a reused checkpoint keeps the CPU time of the run that made it
        if e.get("prune_cpu_seconds") is None and _key(e) in before:
            e["prune_cpu_seconds"] = before[_key(e)].get("prune_cpu_seconds")

    def kept(e: Dict) -> bool:
        fp = current.get((e["app"], e["from"]))
        # runs from before prune recorded fingerprints have none: only their paths can be compared
        return _key(e) not in keys and (fp is None or e.get("from_fingerprint") in (None, fp))

    runs = [e for e in old.get("runs", []) if kept(e)] + new
    return {"budget": Q.BUDGET, "runs": runs}


def write_results(out_dir: Path, entries: List[Dict], ref_dir=None) -> Dict:
    """Merge ``entries`` into ``out_dir``/quality_sweep.{json,md}; with ``ref_dir`` (a directory or a
    list searched in order), (re)judge every stored run against its equal-steps reference there
    (``add_reference``)."""
    path = out_dir / "quality_sweep.json"
    old = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}: not valid JSON ({e}); move it away to start a new sweep") from None
    data = merge(old, entries)
    if ref_dir is not None:
        add_reference(data, ref_dir)
    Q._atomic_write(path, json.dumps(data, indent=1) + "\n")
    Q._atomic_write(out_dir / "quality_sweep.md", render_markdown(data))
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrapps.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # else --rate would abbreviate --rates
    p.add_argument("app", nargs="?", choices=sorted(P.RECIPES))
    p.add_argument("--rates", help="comma-separated main rates (column rate for style, "
                                   "3x3 kernel rate otherwise); required unless --render")
    p.add_argument("--render", action="store_true",
                   help="prune and measure nothing: re-judge the runs stored in quality_sweep.json against "
                        "the equal-steps references (measured once each) and rewrite the .json and .md")
    p.add_argument("--ref-dir", default=str(ROOT / "apps" / "checkpoints"),
                   help="where <app>_dense_equal[_seedN].pt references are looked for first (python -m "
                        "lrapps.prune APP --reference), then in --ckpt-dir")
    p.add_argument("--rates-1x1", help="comma-separated 1x1 kernel rates, one per --rates value "
                                       "(default: the recipe's)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--ckpt-dir", default=str(ROOT / "out" / "quality_sweep"))
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"),
                   help="where quality_sweep.{json,md} are merged into")
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--from", dest="from_ckpt", metavar="CKPT",
                   help="dense checkpoint (default apps/checkpoints/<app>_dense.pt)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-shipped", action="store_true", help="do not measure the shipped pruned checkpoint")
    p.add_argument("--references", action="store_true",
                   help="first train each seed's dense, equal-steps reference (python -m lrapps.prune APP "
                        "--reference --seed N) into --ckpt-dir where --ref-dir and --ckpt-dir hold none, so "
                        "every run gets the fair verdict (one more run per seed)")
    a, extra = p.parse_known_args(argv)
    torch.set_num_threads(a.threads)
    if a.render:
        if a.app or a.rates or extra:
            raise SystemExit("--render takes no app, --rates or pruning options: it re-renders every stored run")
        path = Path(a.out_dir) / "quality_sweep.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no stored sweep to render")
        write_results(Path(a.out_dir), [], [Path(a.ref_dir), Path(a.ckpt_dir)])
        print(f"rewrote {path} and quality_sweep.md")
        return 0
    if a.app is None or a.rates is None:
        raise SystemExit("give an APP and --rates (or --render)")
    for opt in ("--rate", "--rate-1x1", "--out", "--seed"):
        if opt in extra:
            raise SystemExit(f"{opt} is set per run by the sweep; use --rates / --rates-1x1 / --seeds")
    rates = _floats(a.rates, "--rates")
    r1 = _floats(a.rates_1x1, "--rates-1x1")
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds: expected comma-separated integers, got {a.seeds!r}") from None
    entries = run_sweep(a.app, rates, r1, seeds, Path(a.ckpt_dir), a.eval_size, not a.no_shipped,
                        a.from_ckpt, a.threads, extra, references=a.references, ref_dir=Path(a.ref_dir))
    write_results(Path(a.out_dir), entries, [Path(a.ref_dir), Path(a.ckpt_dir)])
    print(f"wrote {Path(a.out_dir) / 'quality_sweep.json'} and quality_sweep.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
