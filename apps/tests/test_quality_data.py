"""lrapps.quality and lrapps.sweep judge a model on what it was trained for: the held-out split of
the same data (the built-in images or the user's --data folder), the same style image and loss
network, the same super-resolution scale; models trained for different evaluations are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAST, TINY_COLOR, TINY_SR, save_dense
from lrapps import data as D
from lrapps import models, prune, quality, sweep, train

torch.set_num_threads(1)


@pytest.fixture
def folder(tmp_path):
    """Five random 48x48 PNGs; which one is held out follows lrapps.data's crc32 rule."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    return root


def _held(root):
    return [p.name for p in D.split_folder(root)[1]]


def _color_run(tmp_path, folder):
    dense = tmp_path / "color_dense.pt"
    train.main(["color", "--data", str(folder), "--steps", "2", "--batch", "2", "--crop", "32",
                "--eval-size", "32", "--model-config", '{"width": 1}', "--no-progress", "--out", str(dense)])
    pruned = tmp_path / "color_pruned.pt"
    prune.main(["color", "--data", str(folder), "--from", str(dense), "--out", str(pruned), *FAST])
    return dense, pruned


def test_quality_of_own_checkpoints_uses_their_folder(tmp_path, folder, monkeypatch):
    held = _held(folder)
    assert held
    dense, pruned = _color_run(tmp_path, folder)
    monkeypatch.chdir(tmp_path)  # the default out dir is ./out/quality, never the committed report
    assert quality.main(["--apps", "color", "--dense", str(dense), "--pruned", str(pruned), "--eval-size", "32",
                         "--no-reference"]) == 0
    text = (tmp_path / "out" / "quality" / "quality.md").read_text()
    for name in held:
        assert f"| {name.rsplit('.', 1)[0]} |" in text
    assert "| coffee |" not in text and f"`{folder}`" in text and f"`{dense}`" in text
    assert "Rate sweep" not in text

    # the numbers are the folder's: the same as evaluating on the folder's held-out crop directly
    rows, _ = quality.evaluate("color", models.load(dense), models.load(pruned), 32)
    img = D.load_image(folder / held[0])
    x = D.to_tensor(D.center_crop(img, 32, 8)).unsqueeze(0)
    task = quality.task_for("color", {"dense": models.load(dense)}, 32)
    r, _ = quality._metrics("color", task, x, {"dense": models.load(dense)})
    assert rows[0]["image"] == held[0] and rows[0]["dense_psnr_rgb"] == pytest.approx(r["dense_psnr_rgb"])


def test_models_of_different_data_are_not_compared(tmp_path, folder):
    dense, pruned = _color_run(tmp_path, folder)
    builtin = save_dense(tmp_path / "other.pt", "color", TINY_COLOR)
    with pytest.raises(ValueError, match=r"different evaluations.*dense: built-in defaults.*pruned: --data"):
        quality.evaluate("color", models.load(builtin), models.load(pruned), 32)


def test_missing_folder_and_empty_held_out_split(tmp_path):
    with pytest.raises(ValueError, match="trained on --data /nowhere/at/all, which is not a folder here"):
        quality.eval_options("color", {"data": "/nowhere/at/all"})
    lost = models.load(save_dense(tmp_path / "lost.pt", "color", TINY_COLOR))
    lost.checkpoint_meta = {"data": "/nowhere/at/all"}
    with pytest.raises(ValueError, match=r"^color, the pruned model: the model was trained on --data /nowhere"):
        quality.evaluate_models("color", {"pruned": lost}, 32)
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(one / "a.png")
    m = models.load(save_dense(tmp_path / "d.pt", "color", TINY_COLOR))
    m.checkpoint_meta = {"data": str(one)}
    with pytest.raises(ValueError, match="no held-out images in --data .*at least 2 images"):
        quality.evaluate_models("color", {"dense": m}, 32)


def test_style_and_scale_options_follow_the_checkpoint():
    meta = {"style_image": "x.png", "style_spec": "/styles/x.png", "style_size": 128,
            "vgg": "random(seed=3, width_mult=0.5)"}
    assert quality.eval_options("style", meta) == ["--style-image", "/styles/x.png", "--style-size", "128",
                                                   "--vgg-seed", "3", "--vgg-width", "0.5"]
    # checkpoints from before style_spec was recorded name a built-in image
    assert quality.eval_options("style", {"style_image": "chelsea", "vgg": "file(/w/vgg16.pth)"}) == [
        "--style-image", "chelsea", "--vgg-weights", "/w/vgg16.pth"]
    with pytest.raises(ValueError, match="unknown loss network record 'imagenet'"):
        quality.eval_options("style", {"vgg": "imagenet"})
    assert quality.eval_options("superres", {}, {"scale": 4}) == ["--scale", "4"]
    assert quality.eval_options("color", {"data": "builtin"}) == []


def test_superres_x4_is_judged_at_x4(tmp_path):
    m = models.load(save_dense(tmp_path / "sr4.pt", "superres", {**TINY_SR, "scale": 4}))
    task = quality.task_for("superres", {"dense": m}, 32)
    assert task.scale == 4
    rows, _ = quality.evaluate_models("superres", {"dense": m}, 32)
    assert len(rows) == 3 and np.isfinite(rows[0]["dense_psnr_y"])


def test_cli_refuses_ambiguous_or_foreign_checkpoints(tmp_path):
    sr = save_dense(tmp_path / "sr.pt", "superres", TINY_SR)
    with pytest.raises(SystemExit, match="give --apps with that app alone"):
        quality.main(["--dense", str(sr)])
    with pytest.raises(SystemExit, match="is a 'superres' checkpoint, not 'color'"):
        quality.main(["--apps", "color", "--dense", str(sr)])
    with pytest.raises(SystemExit, match="no such checkpoint"):
        quality.main(["--apps", "color", "--pruned", str(tmp_path / "nope.pt")])
    with pytest.raises(SystemExit, match="unknown app"):
        quality.main(["--apps", "colour"])


def test_sweep_prunes_on_the_dense_models_data_only(tmp_path, folder):
    dense = save_dense(tmp_path / "color_dense.pt", "color", TINY_COLOR)  # built-in data
    with pytest.raises(SystemExit, match=r"--data .*photos: .*was trained on builtin"):
        sweep.main(["color", "--rates", "0.5", "--from", str(dense), "--data", str(folder),
                    "--ckpt-dir", str(tmp_path / "c"), "--out-dir", str(tmp_path / "r"), "--no-shipped"])
    assert not (tmp_path / "c").exists()
    own, _ = _color_run(tmp_path, folder)
    assert sweep.main(["color", "--rates", "0.5", "--from", str(own), "--data", str(folder),
                       "--ckpt-dir", str(tmp_path / "c"), "--out-dir", str(tmp_path / "r"), "--no-shipped",
                       "--eval-size", "32", *FAST[:-3]]) == 0
    md = (tmp_path / "r" / "quality_sweep.md").read_text()
    assert "| 0.5 |" in md and "coffee" not in md
    held = _held(folder)[0]
    assert f"psnr_rgb {held}" in md or f"psnr_rgb {held.rsplit('.', 1)[0]}" in md
