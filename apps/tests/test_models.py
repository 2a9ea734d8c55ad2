"""Fast checks for lrapps: models, checkpoints, data, metrics, 3-step training.

Run: python -m pytest apps/tests -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lrapps import data as D
from lrapps import metrics as M
from lrapps import models, train
from lrapps.colorspace import lab_to_rgb, rgb_to_lab, rgb_to_y
from lrapps.features import LAYERS, VGGFeatures

torch.set_num_threads(1)

TINY = {
    "style": {"widths": [8, 4, 8, 4, 2], "n_res": 1},
    "color": {"width": 1, "global_width": 0.5},
    "superres": {"feats": 8, "blocks": 1, "expand": 2, "low_rank": 6},
}

# The op set lrc compiles (test/python/zoo.py covers each of these).
ALLOWED_OPS = {
    "aten.conv2d.default", "aten.relu_.default", "aten.relu.default", "aten.add.Tensor",
    "aten.instance_norm.default", "aten.pad.default", "aten.upsample_nearest2d.vec",
    "aten.pixel_shuffle.default", "aten.tanh.default", "aten.cat.default",
    "aten.adaptive_avg_pool2d.default", "aten.flatten.using_ints", "aten.linear.default",
    "aten.reshape.default", "aten.view.default",
}


# ---------------------------------------------------------------- models

@pytest.mark.parametrize("app,hw,out", [
    ("style", (64, 48), (1, 3, 64, 48)),
    ("color", (64, 48), (1, 2, 64, 48)),
    ("superres", (20, 12), (1, 3, 40, 24)),
])
def test_default_models_shapes(app, hw, out):
    m = models.build(app).eval()
    with torch.no_grad():
        y = m(models.example_input(app, hw=hw))
    assert tuple(y.shape) == out
    assert torch.isfinite(y).all()


def test_color_output_range_and_paper_layout():
    m = models.ColorNet(width=1, feature_stride=8).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 1, 64, 64))
    assert y.shape == (2, 2, 64, 64) and y.abs().max() <= 1


def test_superres_x4():
    m = models.WDSR(scale=4, **TINY["superres"]).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 9, 7)).shape == (1, 3, 36, 28)
    with pytest.raises(ValueError):
        models.WDSR(scale=5)


@pytest.mark.parametrize("app", sorted(models.APPS))
def test_export_uses_compiler_ops(app):
    m = models.build(app, **TINY[app]).eval()
    x = models.example_input(app, hw=(32, 32))
    ep = torch.export.export(m, (x,))
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    torch.testing.assert_close(ep.module()(x), m(x))


@pytest.mark.parametrize("app", sorted(models.APPS))
def test_checkpoint_roundtrip(app, tmp_path):
    m = models.build(app, **TINY[app]).eval()
    p = tmp_path / "m.pt"
    models.save(p, m, app, {"steps": 0})
    ck = torch.load(p, weights_only=True)
    assert ck["app"] == app and ck["config"] == m.config
    m2 = models.load(p)
    x = models.example_input(app, hw=(32, 32))
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m(x))


# ---------------------------------------------------------------- colour / metrics

def test_lab_matches_skimage():
    from skimage import color
    img = D.load_builtin("coffee")[::4, ::4]
    lab = rgb_to_lab(D.to_tensor(img)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(lab, color.rgb2lab(img), atol=1e-3)
    back = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1))
    torch.testing.assert_close(back, D.to_tensor(img), atol=1e-4, rtol=0)
    y = rgb_to_y(D.to_tensor(img))[0].numpy() * 255
    np.testing.assert_allclose(y, color.rgb2ycbcr(img)[..., 0], atol=1e-3)


def test_psnr_ssim_match_skimage():
    from skimage import color, metrics
    a = D.load_builtin("chelsea")[:128, :128]
    rng = np.random.default_rng(0)
    b = np.clip(a.astype(int) + rng.integers(-15, 16, a.shape), 0, 255).astype(np.uint8)
    ya, yb = color.rgb2ycbcr(a)[..., 0] / 255, color.rgb2ycbcr(b)[..., 0] / 255
    assert M.psnr(a, b) == pytest.approx(metrics.peak_signal_noise_ratio(ya, yb, data_range=1), abs=1e-6)
    ref = metrics.structural_similarity(ya, yb, data_range=1, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
    assert M.ssim(a, b) == pytest.approx(ref, abs=1e-6)
    assert M.ssim(a, a) == pytest.approx(1.0)
    assert M.psnr(a, b, crop_border=2) != M.psnr(a, b)


def test_colorfulness():
    gray = np.repeat(D.load_builtin("coffee")[..., :1], 3, axis=2)
    assert M.colorfulness(gray) == 0.0
    assert M.colorfulness(D.load_builtin("colorwheel")) > M.colorfulness(D.load_builtin("coffee")) > 10


def test_perceptual_losses():
    vgg = VGGFeatures.random(width_mult=0.125)
    x = torch.rand(2, 3, 32, 32)
    f = vgg(x)
    assert set(f) == set(LAYERS)
    grams = {k: M.gram(v[:1]) for k, v in f.items()}
    assert M.style_loss({k: v[:1] for k, v in f.items()}, grams).item() == pytest.approx(0, abs=1e-9)
    assert M.style_loss(f, grams).item() > 0
    assert M.content_loss(f["relu2_2"], f["relu2_2"]).item() == 0


def test_vgg_from_torchvision_layout(tmp_path):
    src = VGGFeatures(1.0)
    sd = {"module." + k: torch.randn_like(v) for k, v in src.state_dict().items()
          if k.startswith("features.")}
    sd["module.classifier.0.weight"] = torch.zeros(3, 3)
    sd["module.features.28.weight"] = torch.zeros(3)  # past relu4_3: ignored
    torch.save({"state_dict": sd}, tmp_path / "vgg.pth")
    net = VGGFeatures.from_file(tmp_path / "vgg.pth")
    torch.testing.assert_close(net.features[0].weight, sd["module.features.0.weight"])
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError):
        VGGFeatures.from_file(tmp_path / "bad.pth")


# ---------------------------------------------------------------- data

def test_builtin_split_is_fixed_and_disjoint():
    assert not set(D.TRAIN) & set(D.HELDOUT)
    held = D.get_images("heldout")
    assert [n for n, _ in held] == list(D.HELDOUT)
    for _, img in held:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_crop_sampler_deterministic_and_augmented():
    imgs = [("a", D.load_builtin("astronaut"))]
    a = D.CropSampler(imgs, 24, seed=3).sample(6)
    b = D.CropSampler(imgs, 24, seed=3).sample(6)
    assert a.shape == (6, 3, 24, 24) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, D.CropSampler(imgs, 24, seed=4).sample(6))


def test_small_images_are_upscaled_for_crops():
    s = D.CropSampler([("tiny", np.zeros((10, 20, 3), np.uint8))], 32, seed=0)
    assert s.sample(2).shape == (2, 3, 32, 32)


def test_bicubic_down_shape():
    assert D.bicubic_down(torch.rand(2, 3, 32, 24), 2).shape == (2, 3, 16, 12)


def _write_user_folder(root, n=12):
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        arr = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
        if i % 4 == 0:
            Image.fromarray(arr[..., 0], "L").save(root / f"gray{i}.png")
        elif i % 4 == 1:
            Image.fromarray(np.dstack([arr, arr[..., :1]]), "RGBA").save(root / "sub" / f"rgba{i}.PNG")
        elif i % 4 == 2:
            Image.fromarray(arr).save(root / f"photo{i}.jpg", quality=90)
        else:
            Image.fromarray(arr).save(root / f"photo{i}.jpeg")
    (root / "notes.txt").write_text("not an image")


def test_user_folder_split(tmp_path):
    _write_user_folder(tmp_path)
    train_f, held_f = D.split_folder(tmp_path)
    assert len(train_f) + len(held_f) == 12 and held_f and train_f
    assert not set(train_f) & set(held_f)
    assert D.split_folder(tmp_path) == (train_f, held_f)
    imgs = D.get_images("train", tmp_path)
    assert all(img.shape[2] == 3 and img.dtype == np.uint8 for _, img in imgs)
    assert any(n.startswith("sub/") for n, _ in imgs + D.get_images("heldout", tmp_path))


def test_user_folder_edge_cases(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.split_folder(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "only.png")
    assert D.split_folder(tmp_path) == ([tmp_path / "only.png"], [])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "two.png")
    train_f, held_f = D.split_folder(tmp_path)
    assert len(train_f) == 1 and len(held_f) == 1


# ---------------------------------------------------------------- training

def _smoke(app, tmp_path, *extra):
    out = tmp_path / f"{app}.pt"
    meta = train.main([app, "--steps", "3", "--batch", "2", "--crop", "32", "--eval-size", "32",
                       "--model-config", __import__("json").dumps(TINY[app]),
                       "--out", str(out), "--no-progress", *extra])
    m = models.load(out)
    assert meta["steps"] == 3 and np.isfinite(meta["final_loss"])
    assert all(np.isfinite(v) for v in meta["metrics"].values())
    return m, meta


def test_train_superres_smoke(tmp_path):
    m, meta = _smoke("superres", tmp_path, "--samples", str(tmp_path / "s"))
    assert {"psnr_y", "ssim_y", "bicubic_psnr_y"} <= set(meta["metrics"])
    assert len(list((tmp_path / "s").glob("*.png"))) == 2 * len(D.HELDOUT)


def test_train_superres_x4_smoke(tmp_path):
    m, _ = _smoke("superres", tmp_path, "--scale", "4")
    assert m.config["scale"] == 4


def test_train_color_smoke(tmp_path):
    _, meta = _smoke("color", tmp_path, "--loss", "l1")
    assert "colorfulness" in meta["metrics"]


def test_train_style_smoke(tmp_path):
    _, meta = _smoke("style", tmp_path, "--vgg-width", "0.125", "--style-size", "64")
    assert meta["style_image"] == "immunohistochemistry" and meta["vgg"].startswith("random")
    assert "style_loss" in meta["metrics"]


def test_train_on_user_folder_and_resume(tmp_path):
    _write_user_folder(tmp_path / "imgs")
    _, meta = _smoke("superres", tmp_path, "--data", str(tmp_path / "imgs"))
    assert meta["data"] == str(tmp_path / "imgs")
    assert all(not n.startswith(("coffee", "chelsea")) for n in meta["heldout"])
    out2 = tmp_path / "ft.pt"
    meta2 = train.main(["superres", "--steps", "2", "--batch", "2", "--crop", "32",
                        "--eval-size", "32", "--from", str(tmp_path / "superres.pt"),
                        "--data", str(tmp_path / "imgs"), "--out", str(out2), "--no-progress"])
    assert meta2["from"] == str(tmp_path / "superres.pt") and out2.exists()


def test_train_prune_route(tmp_path):
    """`lrapps.train --prune SCHEME --from CKPT` runs lrprune (ADMM + masked retraining)."""
    with pytest.raises(SystemExit):
        train.main(["superres", "--prune", "pattern+kernel", "--no-progress"])  # needs --from
    m = models.build("superres", **TINY["superres"])
    models.save(tmp_path / "d.pt", m, "superres")
    meta = train.main(["superres", "--prune", "pattern+kernel", "--from", str(tmp_path / "d.pt"),
                       "--steps", "2", "--batch", "2", "--crop", "32", "--eval-size", "32",
                       "--out", str(tmp_path / "p.pt"), "--no-progress"])
    p = models.load(tmp_path / "p.pt")
    assert meta["prune"] == "pattern+kernel"
    assert p.body[0].body[3].lr_sparsity["kind"] == "pattern+kernel"
    assert p.body[0].body[0].lr_sparsity["kind"] == "kernel"
    assert not hasattr(p.head, "lr_sparsity") and not hasattr(p.skip[0], "lr_sparsity")
