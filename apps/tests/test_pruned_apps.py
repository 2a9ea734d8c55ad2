"""Pruning, compiled apps and the lrc-app CLI.

* a few ADMM + masked-retraining steps of each app's recipe on tiny models;
* the shipped dense and pruned checkpoints: structure, MAC cut, lrc output == PyTorch;
* lrc-app: missing / corrupt / truncated / unsupported inputs, output == input, existing output,
  one real run (with the compiled-model cache).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import lrprune
from lrapps import cli, inference, models, prune

torch.set_num_threads(1)

TINY = {
    "style": {"widths": [8, 4, 8, 4, 2], "n_res": 1},
    "color": {"width": 1, "global_width": 0.5},
    "superres": {"feats": 8, "blocks": 1, "expand": 2, "low_rank": 6},
}
APPS = ("style", "color", "superres")
# Small compile sizes keep each lrc.compile at a few seconds.
HW = {"style": (32, 32), "color": (32, 32), "superres": (24, 16)}


def _check_structure(app, model):
    """Every annotated layer's zeros follow its kind; return the annotated layer names."""
    ann = lrprune.structure_of(model)
    assert ann, "no layer carries lr_sparsity"
    for name, a in ann.items():
        w = dict(model.named_modules())[name].weight.detach()
        if a["kind"] == "column":
            cols = (w != 0).flatten(1).any(0)  # a column is zero in every filter or in none
            assert ((w.flatten(1) != 0) == cols).logical_or(w.flatten(1) == 0).all()
            assert not cols.all(), f"{name}: no column pruned"
        elif a["kind"] in ("pattern", "pattern+kernel"):
            lib = [set(p) for p in a["library"]]
            flat = (w != 0).flatten(2)
            for k in range(flat.shape[0]):
                for c in range(flat.shape[1]):
                    nz = set(torch.nonzero(flat[k, c]).flatten().tolist())
                    assert not nz or any(nz <= p for p in lib), f"{name}[{k},{c}] outside the library"
        elif a["kind"] == "kernel":
            assert (w.flatten(2).abs().sum(2) == 0).any(), f"{name}: no kernel pruned"
    return set(ann)


@pytest.mark.parametrize("app", APPS)
def test_admm_prune_smoke(app, tmp_path):
    from lrapps.train import TASKS, build_parser

    args = build_parser().parse_args([app, "--eval-size", "32", "--crop", "32", "--batch", "2",
                                      "--vgg-width", "0.125", "--style-size", "64"])
    task = TASKS[app](args)
    model = models.build(app, **TINY[app])
    r = prune.Recipe(**{**prune.asdict(prune.RECIPES[app]), "admm_steps": 3, "retrain_steps": 2,
                        "batch": 2, "crop": 32, "update_every": 1})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruner, log = prune.admm_prune(task, model, r, seed=0, progress=False)
    assert pruner.updates == 3 and np.isfinite(log["retrain_final_loss"])
    names = _check_structure(app, model)
    if app == "style":
        assert "encoder.0.1" in names and "decoder.4.1" in names  # 7x7 in/out convs pruned too
    else:
        dense = {"color": {"low.0.0", "colorize.5"}, "superres": {"head", "skip.0"}}[app]
        assert not names & dense
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    # masks survived retraining and the compact checkpoint round-trips exactly
    models.save(tmp_path / "p.pt", model, app, {"prune": r.scheme})
    back = models.load(tmp_path / "p.pt")
    for (n, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), n
    assert lrprune.structure_of(back) == {k: {**v, "library": v["library"] and [tuple(p) for p in v["library"]]}
                                          for k, v in lrprune.structure_of(model).items()}


def test_prune_cli_refuses_to_overwrite_dense(tmp_path):
    m = models.build("superres", **TINY["superres"])
    models.save(tmp_path / "superres_dense.pt", m, "superres")
    with pytest.raises(SystemExit, match="overwrite"):
        prune.main(["superres", "--from", str(tmp_path / "superres_dense.pt"),
                    "--out", str(tmp_path / "superres_dense.pt"), "--no-progress"])


def test_corrupt_sparse_checkpoint_is_rejected(tmp_path):
    m = models.build("superres", **TINY["superres"])
    w = m.body[0].body[3].weight
    with torch.no_grad():
        w[:, :, 0] = 0
    m.body[0].body[3].lr_sparsity = {"kind": "irregular", "rate": 0.3, "library": None, "kernel_shape": [3, 3]}
    models.save(tmp_path / "p.pt", m, "superres")
    ck = torch.load(tmp_path / "p.pt", weights_only=True)
    sw = ck["sparse_weights"]["body.0.body.3.weight"]
    sw["values"] = sw["values"][:-1]
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="corrupt sparse weight"):
        models.load(tmp_path / "bad.pt")


# ------------------------------------------------------- shipped checkpoints

@pytest.mark.parametrize("app", APPS)
def test_shipped_pruned_checkpoint(app):
    p = inference.checkpoint_path(app)
    assert p.is_file(), f"{p} missing: run python -m lrapps.prune {app}"
    assert p.stat().st_size < inference.checkpoint_path(app, dense=True).stat().st_size
    m = models.load(p)
    _check_structure(app, m)
    rep = lrprune.report_of(m, models.example_input(app))
    assert rep.macs_dense / rep.macs_pruned >= 4.0
    assert m.checkpoint_meta["prune"] == {"style": "column"}.get(app, "pattern+kernel")


@pytest.mark.parametrize("variant", ["dense", "pruned"])
@pytest.mark.parametrize("app", APPS)
def test_compiled_app_matches_torch(app, variant):
    import lrc

    m = models.load(inference.checkpoint_path(app, dense=variant == "dense"))
    x = models.example_input(app, hw=HW[app], seed=1)
    cm = lrc.compile(m, (x,))
    with torch.no_grad():
        ref = m(x).numpy()
    out = cm(x.numpy())
    assert out.shape == ref.shape
    err = float(np.abs(out - ref).max())
    assert err <= 1e-4 * float(np.abs(ref).max()) + 1e-5, err
    if variant == "pruned":
        assert "#lr.sparsity" in cm.lr_ir  # lrprune's annotations reached the compiler


# ---------------------------------------------------------------- lrc-app

@pytest.fixture
def img_dir(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (14, 18, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    data = (tmp_path / "in.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "anim.gif")
    return tmp_path


def _run(capsys, *argv):
    rc = cli.main(list(map(str, argv)))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("name,msg", [
    ("missing.png", "does not exist"),
    ("trunc.png", "corrupt"),
    ("garbage.png", "corrupt"),
    ("notes.txt", "not an image in a supported format"),
    ("empty.jpg", "empty"),
    ("anim.gif", "GIF, which is not supported"),
    (".", "is a directory"),
])
def test_cli_bad_inputs(img_dir, capsys, name, msg):
    rc, err = _run(capsys, "superres", img_dir / name, img_dir / "out.png", "--no-cache")
    assert rc == 2 and msg in err and err.startswith("lrc-app: error:")
    assert not (img_dir / "out.png").exists()


def test_cli_never_overwrites_input(img_dir, capsys):
    before = (img_dir / "in.png").read_bytes()
    os.link(img_dir / "in.png", img_dir / "hard.png")
    os.symlink(img_dir / "in.png", img_dir / "sym.png")
    for out in ("in.png", "./in.png", "hard.png", "sym.png"):
        rc, err = _run(capsys, "color", img_dir / "in.png", img_dir / out, "--force")
        assert rc == 2 and "refusing to overwrite the input" in err, out
    assert (img_dir / "in.png").read_bytes() == before


def test_cli_output_checks(img_dir, capsys):
    (img_dir / "exists.png").write_bytes(b"keep")
    rc, err = _run(capsys, "style", img_dir / "in.png", img_dir / "exists.png")
    assert rc == 2 and "--force" in err and (img_dir / "exists.png").read_bytes() == b"keep"
    rc, err = _run(capsys, "style", img_dir / "in.png", img_dir / "out.gif")
    assert rc == 2 and "unsupported extension" in err
    rc, err = _run(capsys, "style", img_dir / "in.png", img_dir / "nodir" / "out.png")
    assert rc == 2 and "does not exist" in err
    with pytest.raises(SystemExit):
        cli.main(["sharpen", str(img_dir / "in.png"), str(img_dir / "o.png")])


@pytest.fixture
def fixed_lrc_digest(monkeypatch):
    # The cache key hashes the compiler's sources; pin it so that edits to lrc made while the
    # test runs (a shared checkout) cannot turn a cache hit into a miss.
    monkeypatch.setattr(inference, "_lrc_digest", lambda: "test")


def test_cli_superres_runs_and_caches(img_dir, capsys, fixed_lrc_digest):
    cache = img_dir / "cache"
    out = img_dir / "out.png"
    rc, err = _run(capsys, "superres", img_dir / "in.png", out, "--cache-dir", cache)
    assert rc == 0, err
    assert "compiled in" in err
    got = np.asarray(Image.open(out))
    assert got.shape == (28, 36, 3)
    # the compiled result equals the PyTorch model's, up to 8-bit rounding
    ref = img_dir / "ref.png"
    assert _run(capsys, "superres", img_dir / "in.png", ref, "--torch")[0] == 0
    assert np.abs(got.astype(int) - np.asarray(Image.open(ref)).astype(int)).max() <= 1
    assert len(list(cache.iterdir())) == 1
    assert (img_dir / "in.png").stat().st_mode & 0o777 == out.stat().st_mode & 0o777  # umask, not 0600
    rc, err = _run(capsys, "superres", img_dir / "in.png", out, "--cache-dir", cache, "--force")
    assert rc == 0 and "cache in" in err
    assert np.array_equal(np.asarray(Image.open(out)), got)
    assert not [p for p in img_dir.iterdir() if p.name.endswith(".tmp")]
    # a damaged cache entry is rebuilt, not trusted
    (entry,) = cache.iterdir()
    for f in entry.iterdir():
        f.write_bytes(b"damaged")
    rc, err = _run(capsys, "superres", img_dir / "in.png", img_dir / "b.png", "--cache-dir", cache)
    assert rc == 0 and "ignoring unreadable cache entry" in err and "compiled in" in err
    assert np.array_equal(np.asarray(Image.open(img_dir / "b.png")), got)
    assert len(list(cache.iterdir())) == 1


def test_cli_color_pads_to_multiple(img_dir, capsys):
    # 14x18 is not a multiple of 8: padded for the network, cropped back
    rc, err = _run(capsys, "color", img_dir / "in.png", img_dir / "c.jpg", "--torch")
    assert rc == 0, err
    assert np.asarray(Image.open(img_dir / "c.jpg")).shape == (14, 18, 3)
