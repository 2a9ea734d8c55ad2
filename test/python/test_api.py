"""The user-facing Python API: calling conventions, errors, artifacts."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import lrc


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(1, 3, 8, 8)
    return m.eval(), x, lrc.compile(m, (x,))


def test_torch_in_torch_out(small):
    m, x, cm = small
    y = cm(x)
    assert isinstance(y, torch.Tensor)
    assert torch.allclose(y, m(x), atol=1e-5)


def test_numpy_in_numpy_out(small):
    m, x, cm = small
    y = cm(x.numpy())
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, m(x).detach().numpy(), atol=1e-5)


def test_wrong_shape_names_expected_and_given(small):
    _, _, cm = small
    with pytest.raises(ValueError, match=r"expected shape \[1, 3, 8, 8\], got \[1, 3, 9, 8\]"):
        cm(torch.randn(1, 3, 9, 8))


def test_wrong_dtype(small):
    _, x, cm = small
    with pytest.raises(ValueError, match="expected dtype float32, got torch.float64"):
        cm(x.double())
    with pytest.raises(ValueError, match="expected dtype float32, got int64"):
        cm(np.zeros((1, 3, 8, 8), dtype=np.int64))


def test_wrong_arity(small):
    _, x, cm = small
    with pytest.raises(ValueError, match="expected 1 input"):
        cm(x, x)


def test_non_contiguous_input_is_accepted(small):
    m, x, cm = small
    xt = torch.randn(1, 3, 8, 8).transpose(2, 3)
    assert torch.allclose(cm(xt), m(xt), atol=1e-5)


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown target 'tpu'"):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target="tpu")


def test_unbuilt_target_says_so(monkeypatch):
    # every listed target is built now; a listed name without its module must still say so
    import lrc.targets as targets
    monkeypatch.setattr(targets, "TARGETS", targets.TARGETS + ("webgpu",))
    with pytest.raises(NotImplementedError, match="target 'webgpu' is not built yet"):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), target="webgpu")


def test_unknown_option():
    with pytest.raises(ValueError, match="unknown compile option"):
        lrc.compile(nn.ReLU(), (torch.randn(1, 2),), fast=True)


def test_bad_example_inputs():
    with pytest.raises(ValueError, match="example input #0 has dtype torch.int64"):
        lrc.compile(nn.ReLU(), (torch.zeros(1, 2, dtype=torch.long),))
    with pytest.raises(ValueError, match="not a torch.nn.Module|must be a torch.nn.Module"):
        lrc.compile(lambda x: x, (torch.zeros(1),))


class Signer(nn.Module):
    def forward(self, x):
        return torch.sign(x)


def test_unsupported_op_names_op_and_source_line():
    with pytest.raises(lrc.UnsupportedOpError) as e:
        lrc.import_model(Signer(), (torch.randn(1, 4),))
    msg = str(e.value)
    assert "lrc has no lowering for aten.sign" in msg
    assert "test_api.py:" in msg


def test_import_model_returns_lr_module():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    mod = lrc.import_model(m, (torch.randn(1, 3, 8, 8),))
    text = str(mod)
    assert '"lr.conv2d"' in text and '"lr.batch_norm"' in text and '"lr.relu"' in text
    assert 'lr.name = "0"' in text  # layers keep the user's module names
    assert mod.operation.verify()


def test_compile_keeps_training_flag():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    lrc.compile(m, (torch.randn(1, 3, 8, 8),))
    assert m.training


class Heads(nn.Module):
    """Outputs in a dict holding a list and a nested tuple, as detection / multi-task heads return."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return {"boxes": y, "aux": [torch.relu(y), (x * 2, y.mean((2, 3)))]}


def test_output_structure_is_kept(tmp_path):
    """The compiled model returns the PyTorch model's tuple / list / dict nesting (torch.export's
    output spec), for torch and numpy inputs, and so does its saved artifact."""
    m = Heads().eval()
    x = torch.randn(1, 3, 8, 8)
    ref = m(x)
    cm = lrc.compile(m, (x,))
    for out in (cm(x), lrc.load(_saved(cm, tmp_path))(x.numpy())):
        assert isinstance(out, dict) and list(out) == ["boxes", "aux"]
        assert isinstance(out["aux"], list) and isinstance(out["aux"][1], tuple)
        for got, want in ((out["boxes"], ref["boxes"]), (out["aux"][0], ref["aux"][0]),
                          (out["aux"][1][0], ref["aux"][1][0]), (out["aux"][1][1], ref["aux"][1][1])):
            np.testing.assert_allclose(np.asarray(got), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    single = lrc.compile(nn.Conv2d(3, 4, 3).eval(), (x,))
    assert isinstance(single(x), torch.Tensor)  # one output: the tensor itself, as before


def _saved(cm, tmp_path):
    path = tmp_path / "heads"
    cm.save(path)
    return path
