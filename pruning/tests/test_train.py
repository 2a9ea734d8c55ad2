import torch
from torch import nn

import lrprune
from lrprune import ADMMPruner, PruneConfig, Rule
from lrprune.train import admm_train, evaluate, retrain


def loader(data, bs=8):
    x, y = data
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)]


def test_helpers_run_both_phases(net, data):
    cfg = PruneConfig(layers={"block.conv": Rule("pattern+kernel", 0.5), "mid": Rule("column", 0.5)}, rho=0.01)
    p = ADMMPruner(net, cfg)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    hist = admm_train(net, p, loader(data), opt, nn.functional.cross_entropy, 2, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2] and p.updates == 2
    assert all(h["penalty"] > 0 and "residual" in h for h in hist)
    hist = retrain(net, p, loader(data), opt, nn.functional.cross_entropy, 2, progress=True)
    assert p.pruned and len(hist) == 2
    st = lrprune.structure_of(net)
    assert set(st) == {"block.conv", "mid"}
    assert lrprune.sparsity_of(net)["mid"] == st["mid"]["rate"]
    assert 0.0 <= evaluate(net, loader(data)) <= 1.0
    # retrain detached its optimizer hook
    assert not opt._optimizer_step_post_hooks


def test_step_mode_uses_admm_interval(net, data):
    p = ADMMPruner(net, PruneConfig(layers={"mid": Rule("kernel", 0.5)}, admm_interval=2))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    admm_train(net, p, loader(data), opt, nn.functional.cross_entropy, 1, update="step", progress=False)
    assert p.steps == 4 and p.updates == 2
