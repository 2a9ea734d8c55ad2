import re

import pytest
from torch import nn

from lrprune import PatternLibrary, PruneConfig, Rule


def test_default_skips_first_and_last(net):
    rules = PruneConfig(default=Rule("kernel", 0.5)).resolve(net)
    assert list(rules) == ["block.conv", "up", "mid", "fc1"]
    rules = PruneConfig(default=("kernel", 0.5), skip_first=False, skip_last=False).resolve(net)
    assert list(rules) == ["stem", "block.conv", "up", "mid", "fc1", "head"]


def test_precedence_exact_regex_type_default(net):
    cfg = PruneConfig(
        layers={
            "head": {"kind": "filter", "rate": 0.25},  # exact name beats skip_last
            "re:block\\..*": ("column", 0.3),
            re.compile("u."): None,  # regex rule None = keep dense
            nn.Linear: "irregular",
        },
        default=Rule("kernel", 0.5),
    )
    with pytest.raises(ValueError, match="'irregular' needs a rate for layer 'fc1'"):
        cfg.resolve(net)
    cfg.layers[nn.Linear] = Rule("irregular", 0.7)
    rules = cfg.resolve(net)
    assert rules["head"] == Rule("filter", 0.25)
    assert rules["block.conv"] == Rule("column", 0.3)
    assert "up" not in rules
    assert rules["fc1"] == Rule("irregular", 0.7)
    assert rules["mid"] == Rule("kernel", 0.5)
    assert "stem" not in rules


def test_unknown_layer_name(net):
    with pytest.raises(ValueError, match="unknown layer 'blok.conv'"):
        PruneConfig(layers={"blok.conv": ("kernel", 0.5)}).resolve(net)
    with pytest.raises(ValueError, match="'block.bn' is a BatchNorm2d"):
        PruneConfig(layers={"block.bn": ("kernel", 0.5)}).resolve(net)
    with pytest.raises(ValueError, match="regex 'nothing.*' matches no prunable layer"):
        PruneConfig(layers={"re:nothing.*": ("kernel", 0.5)}).resolve(net)
    with pytest.raises(ValueError, match="not prunable"):
        PruneConfig(layers={nn.BatchNorm2d: ("kernel", 0.5)}).resolve(net)


@pytest.mark.parametrize("rate", [1.0, -0.2, 3])
def test_rate_out_of_range_names_layer_and_value(net, rate):
    with pytest.raises(ValueError, match=rf"rate must be in \[0, 1\) for layer 'mid', got {rate}"):
        PruneConfig(layers={"mid": ("kernel", rate)}).resolve(net)


def test_library_with_wrong_kernel_size(net):
    lib5 = PatternLibrary([(0, 6, 12, 18, 24)], (5, 5))
    with pytest.raises(ValueError, match="5x5 kernels but layer 'mid' has 3x3"):
        PruneConfig(layers={"mid": Rule("pattern", library=lib5)}).resolve(net)
    with pytest.raises(ValueError, match="5x5 kernels but layer 'mid' has 3x3"):
        PruneConfig(layers={"mid": Rule("pattern")}, library=lib5).resolve(net)
    with pytest.raises(ValueError, match="bad pattern library for layer 'mid'.*outside a 3x3"):
        PruneConfig(layers={"mid": Rule("pattern", library=[(0, 4, 9)])}).resolve(net)
    with pytest.raises(ValueError, match="layer 'fc1' has 1x1 kernels"):
        PruneConfig(layers={"fc1": Rule("pattern")}).resolve(net)


def test_no_prunable_layers():
    with pytest.raises(ValueError, match="Sequential has no prunable layers"):
        PruneConfig(default=("kernel", 0.5)).resolve(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)))
    two = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))
    with pytest.raises(ValueError, match="selects no layer to prune"):
        PruneConfig(default=("kernel", 0.5)).resolve(two)


def test_bad_hyperparameters(net):
    with pytest.raises(ValueError, match="rho must be > 0"):
        PruneConfig(rho=0)
    with pytest.raises(ValueError, match="admm_interval"):
        PruneConfig(admm_interval=0)
    with pytest.raises(ValueError, match="rho_factor"):
        PruneConfig(rho_factor=0.5)
    with pytest.raises(ValueError, match="unknown rule field"):
        PruneConfig(layers={"mid": {"kind": "kernel", "ratio": 0.5}}).resolve(net)
