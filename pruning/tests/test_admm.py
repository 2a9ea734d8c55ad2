import io

import pytest
import torch
from torch import nn

import lrprune
from lrprune import ADMMPruner, PruneConfig, Rule


def cfg(**kw):
    base = dict(
        layers={"block.conv": Rule("pattern+kernel", 0.5), "up": Rule("column", 0.5), "mid": Rule("kernel", 0.5),
                "fc1": Rule("filter", 0.25)},
        rho=0.01,
        rho_factor=1.0,
    )
    base.update(kw)
    return PruneConfig(**base)


def train_steps(model, pruner, data, opt, n, after=None):
    x, y = data
    for _ in range(n):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if pruner is not None and not pruner.pruned:
            loss = pruner.loss(loss)
        loss.backward()
        opt.step()
        if after:
            after()


def test_penalty_matches_formula(net):
    p = ADMMPruner(net, cfg())
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "weight") and m.weight is not None:
                m.weight.add_(0.1)
    want = 0.0
    for n, m in p.modules.items():
        for z, u in zip(p.Z[n], p.U[n]):
            want += 0.01 / 2 * float((m.weight.detach() - z + u).pow(2).sum())
    assert float(p.penalty().detach()) == pytest.approx(want, rel=1e-5)
    loss = p.loss(torch.tensor(2.0))
    assert float(loss.detach()) == pytest.approx(2 + want, rel=1e-5)
    loss.backward()
    w = net.mid.weight
    assert torch.allclose(w.grad, 0.01 * (w - p.Z["mid"][0] + p.U["mid"][0]), atol=1e-6)


def test_update_is_scaled_dual_admm(net):
    p = ADMMPruner(net, cfg())
    assert [c[0] for c in p.constraints["block.conv"]] == ["pattern", "kernel"]
    for _ in range(3):
        with torch.no_grad():
            for m in p.modules.values():
                m.weight.add_(0.05 * torch.randn_like(m.weight))
        old_u = {n: [u.clone() for u in us] for n, us in p.U.items()}
        p.update()
        for n, m in p.modules.items():
            w = m.weight.detach()
            for i, c in enumerate(p.constraints[n]):
                z = p.Z[n][i]
                want_z = lrprune.project(w + old_u[n][i], c[0], c[1], c[2], module=m)
                assert torch.equal(z, want_z)
                assert torch.allclose(p.U[n][i], old_u[n][i] + w - z)
    # the kernel constraint of a split pattern+kernel layer is its own set
    z_pat, z_ker = p.Z["block.conv"]
    assert not torch.equal(z_pat, z_ker)


def test_combined_can_use_one_joint_constraint(net):
    p = ADMMPruner(net, cfg(split_combined=False))
    assert [c[0] for c in p.constraints["block.conv"]] == ["pattern+kernel"]
    assert len(p.Z["block.conv"]) == 1


def test_rho_schedule_grows_to_max_and_rescales_dual(net):
    p = ADMMPruner(net, cfg(rho=0.01, rho_factor=2.0, rho_max=0.05, rho_every=2))
    seen = []
    for _ in range(6):
        before = {n: [u.clone() for u in us] for n, us in p.U.items()}
        rho_before = p.rho["mid"]
        p.update()
        seen.append(p.rho["mid"])
        if p.rho["mid"] != rho_before:
            # unscaled dual rho*U is continuous across the change
            w = p.modules["mid"].weight.detach()
            unscaled_new = p.rho["mid"] * p.U["mid"][0]
            unscaled_old = rho_before * (before["mid"][0] + w - p.Z["mid"][0])
            assert torch.allclose(unscaled_new, unscaled_old, atol=1e-7)
    assert seen == pytest.approx([0.01, 0.02, 0.02, 0.04, 0.04, 0.05])
    p2 = ADMMPruner(net, cfg(layers={"mid": Rule("kernel", 0.5, rho=0.5)}))
    assert p2.rho == {"mid": 0.5}


def test_step_updates_every_interval(net):
    p = ADMMPruner(net, cfg(admm_interval=3))
    results = [p.step() for _ in range(7)]
    assert [r is not None for r in results] == [False, False, True, False, False, True, False]
    assert p.updates == 2 and p.steps == 7 and len(p.history) == 2
    assert set(results[2]) == set(p.modules)
    assert set(results[2]["block.conv"]) == {"pattern", "kernel"}


def test_admm_drives_weights_towards_structure(net, data):
    p = ADMMPruner(net, cfg(rho=0.05, rho_factor=1.5, rho_max=1.0))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    seen = []
    for _ in range(18):
        train_steps(net, p, data, opt, 5)
        p.update()
        seen.append(p.max_residual())
    # ||W - Z|| first grows (U accumulates) and then falls as rho grows
    assert seen[-1] < 0.25 * max(seen)


def test_hard_prune_export_contract(net):
    p = ADMMPruner(net, cfg(layers={"block.conv": Rule("pattern+kernel", 0.5), "up": Rule("column", 0.5),
                                    "mid": Rule("pattern"), "fc1": Rule("irregular", 0.6)}))
    out = p.hard_prune()
    st = lrprune.structure_of(net)
    assert out == st
    assert list(st) == ["block.conv", "up", "mid", "fc1"]
    for name, d in st.items():
        assert set(d) == {"kind", "rate", "library", "kernel_shape"}
        assert d["kind"] in lrprune.KINDS
        assert type(d["rate"]) is float
        assert type(d["kernel_shape"]) is list and all(type(k) is int for k in d["kernel_shape"])
        assert d["rate"] == pytest.approx(lrprune.sparsity_of(net)[name])
        if d["kind"] in ("pattern", "pattern+kernel"):
            assert type(d["library"]) is list and len(d["library"]) == 8
            assert all(type(t) is tuple and all(type(i) is int for i in t) for t in d["library"])
        else:
            assert d["library"] is None
    assert st["block.conv"]["kind"] == "pattern+kernel"
    assert st["block.conv"]["rate"] == pytest.approx(1 - 0.5 * 4 / 9)
    assert st["mid"]["rate"] == pytest.approx(5 / 9)
    assert st["up"]["kernel_shape"] == [3, 3] and st["fc1"]["kernel_shape"] == [1, 1]
    assert st["fc1"]["rate"] == pytest.approx(0.6, abs=1 / 512)
    # one model-wide library for all 3x3 pattern layers, as PatDNN
    assert st["block.conv"]["library"] == st["mid"]["library"]
    # every pattern kernel's zeros are one library pattern (what the compiler re-derives)
    lib = [set(t) for t in st["mid"]["library"]]
    w = net.mid.weight.detach().reshape(-1, 9)
    assert all(set(torch.nonzero(k).flatten().tolist()) in lib for k in w)
    assert not hasattr(net.stem, "lr_sparsity")
    assert float(p.penalty()) == 0.0 and p.step() is None


def test_per_layer_library(net):
    lib = lrprune.PatternLibrary([(1, 3, 4, 5), (3, 4, 5, 7)])
    w0 = net.block.conv.weight.detach().clone()
    p = ADMMPruner(net, cfg(layers={"mid": Rule("pattern", library=lib), "block.conv": Rule("pattern", library="layer")}))
    p.hard_prune()
    st = lrprune.structure_of(net)
    assert st["mid"]["library"] == [(1, 3, 4, 5), (3, 4, 5, 7)]
    assert st["block.conv"]["library"] == lrprune.PatternLibrary.from_weights([w0]).to_list()


OPTIMIZERS = {
    "sgd-momentum-wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.9),
}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("how", ["attach", "explicit"])
def test_pruned_weights_and_grads_stay_exactly_zero(net, data, opt_name, how):
    p = ADMMPruner(net, cfg())
    opt = OPTIMIZERS[opt_name](net.parameters())
    train_steps(net, p, data, opt, 3)  # optimizer state now remembers dense gradients
    p.hard_prune()
    if how == "attach":
        p.attach(opt)
        after = None
    else:
        after = p.apply_masks
    masks = {n: p.masks.masks[n].clone() for n in p.modules}
    for _ in range(4):
        train_steps(net, p, data, opt, 1, after)
        for n, m in p.modules.items():
            assert torch.all(m.weight[~masks[n]] == 0), n
            assert torch.all(m.weight.grad[~masks[n]] == 0), n
    # the kept weights did train
    assert any(torch.any(m.weight[masks[n]] != 0) for n, m in p.modules.items())


def test_masks_need_hard_prune(net):
    p = ADMMPruner(net, cfg())
    with pytest.raises(RuntimeError, match="hard_prune"):
        p.apply_masks()
    p.hard_prune()
    with pytest.raises(RuntimeError, match="already"):
        p.hard_prune()
    with pytest.raises(RuntimeError, match="ADMM phase is over"):
        p.update()


def test_remove_drops_hooks(net, data):
    p = ADMMPruner(net, cfg())
    p.hard_prune()
    p.remove()
    x, y = data
    nn.functional.cross_entropy(net(x), y).backward()
    assert torch.any(net.mid.weight.grad[~p.masks.masks["mid"]] != 0)
    assert "lr_sparsity" in vars(net.mid)


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_state_dict_resume_matches_uninterrupted_run(data, make_net):
    Net = make_net
    def run(split_at=None):
        torch.manual_seed(0)
        net = Net()
        p = ADMMPruner(net, cfg(rho_factor=1.5, admm_interval=2))
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for i in range(6):
            if i == split_at:
                saved = _roundtrip({"model": net.state_dict(), "opt": opt.state_dict(), "pruner": p.state_dict()})
                net = Net()
                net.load_state_dict(saved["model"])
                p = ADMMPruner(net, cfg(rho_factor=1.5, admm_interval=2))
                p.load_state_dict(saved["pruner"])
                opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
                opt.load_state_dict(saved["opt"])
            train_steps(net, p, data, opt, 1, p.step)
        return net, p

    a_net, a = run()
    b_net, b = run(split_at=3)
    assert a.steps == b.steps == 6 and a.updates == b.updates == 3
    assert a.rho == b.rho and a.libraries == b.libraries
    for n in a.modules:
        for za, zb in zip(a.Z[n], b.Z[n]):
            assert torch.allclose(za, zb, atol=1e-6)
        for ua, ub in zip(a.U[n], b.U[n]):
            assert torch.allclose(ua, ub, atol=1e-6)
    assert len(b.history) == 3


def test_state_dict_after_hard_prune(net, data, make_net):
    Net = make_net
    p = ADMMPruner(net, cfg())
    p.hard_prune()
    saved = _roundtrip({"model": net.state_dict(), "pruner": p.state_dict()})
    net2 = Net()
    net2.load_state_dict(saved["model"])
    p2 = ADMMPruner(net2, cfg())
    p2.load_state_dict(saved["pruner"])
    assert p2.pruned
    assert lrprune.structure_of(net2) == lrprune.structure_of(net)
    opt = torch.optim.Adam(net2.parameters(), 1e-2)
    p2.attach(opt)
    train_steps(net2, p2, data, opt, 2)
    assert lrprune.sparsity_of(net2) == lrprune.sparsity_of(net)


def test_load_state_dict_rejects_other_layers(net):
    p = ADMMPruner(net, cfg())
    q = ADMMPruner(net, cfg(layers={"mid": Rule("kernel", 0.5)}))
    with pytest.raises(ValueError, match="state is for layers"):
        q.load_state_dict(p.state_dict())
    with pytest.raises(ValueError, match="not an lrprune ADMM state"):
        q.load_state_dict({"format": "x"})


def test_no_prunable_layers_and_bad_config():
    with pytest.raises(ValueError, match="no prunable layers"):
        ADMMPruner(nn.Sequential(nn.ReLU()), PruneConfig(default=("kernel", 0.5)))
    with pytest.raises(ValueError, match="needs a PruneConfig"):
        ADMMPruner(nn.Conv2d(1, 1, 3), {"default": ("kernel", 0.5)})


def test_conv_transpose_and_linear_only_models():
    m = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False), nn.Flatten(), nn.Linear(6 * 25, 5))
    p = ADMMPruner(m, PruneConfig(default=("filter", 0.5), skip_first=False, skip_last=False))
    p.hard_prune()
    y = m[0](torch.randn(1, 4, 3, 3))
    assert int((y.abs().sum(dim=(0, 2, 3)) == 0).sum()) == 3  # output channels of the layer
    assert int((m[2].weight.abs().sum(1) == 0).sum()) == 3  # round(0.5 * 5)
    assert lrprune.structure_of(m)["2"]["kernel_shape"] == [1, 1]


def test_model_moved_after_pruner_built(net):
    p = ADMMPruner(net, cfg())
    net.double()
    assert p.penalty().dtype == torch.float64
    p.update()
    assert p.Z["mid"][0].dtype == torch.float64
