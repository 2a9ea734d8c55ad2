"""Whole models from the zoo, with and without fusion, against PyTorch."""
import pytest

import zoo


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_model(check, name):
    model, x = zoo.ZOO[name]("small")
    cm = check(model, x)
    assert cm.stats["total_s"] < 60


@pytest.mark.parametrize("name", ["resnet_basic", "mobilenetv2"])
def test_zoo_model_unfused(check, name):
    model, x = zoo.ZOO[name]("small")
    cm = check(model, x, fuse=False)
    assert '"lr.batch_norm"' in cm.lr_ir


def test_fusion_removes_bn_and_activations():
    import lrc

    model, x = zoo.ZOO["resnet_basic"]("small")
    text = lrc.compile(model, (x,)).lr_ir
    assert '"lr.batch_norm"' not in text
    assert '"lr.relu"' not in text
    assert '"lr.add"' not in text  # residual adds went into the convs
