"""Random small conv nets and shapes (hypothesis), compiled and compared with PyTorch."""
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import compile_and_check

ACTS = [nn.Identity, nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardswish, lambda: nn.LeakyReLU(0.2), nn.SiLU, nn.GELU,
        nn.Hardsigmoid, lambda: nn.ELU(0.5)]


@st.composite
def convnets(draw):
    c = draw(st.integers(1, 6))
    h = draw(st.integers(3, 14))
    w = draw(st.integers(3, 14))
    n = draw(st.integers(1, 2))
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.sampled_from([1, 3, 5]))
        stride = draw(st.sampled_from([1, 1, 2]))
        pad = draw(st.integers(0, k // 2))
        groups = draw(st.sampled_from([1, 1, c]))
        cout = draw(st.integers(1, 8))
        if groups > 1:
            cout = c * draw(st.integers(1, 2))
        if (h + 2 * pad - k) < 0 or (w + 2 * pad - k) < 0:
            break
        layers.append(nn.Conv2d(c, cout, k, stride=stride, padding=pad, groups=groups, bias=draw(st.booleans())))
        if draw(st.booleans()):
            layers.append(nn.BatchNorm2d(cout))
        layers.append(draw(st.sampled_from(ACTS))())
        h = (h + 2 * pad - k) // stride + 1
        w = (w + 2 * pad - k) // stride + 1
        c = cout
        if h >= 2 and w >= 2 and draw(st.integers(0, 3)) == 0:  # a 2x2 pool (lr-fuse-conv-pool)
            ceil = draw(st.booleans())
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil))
            h, w = (-(-h // 2), -(-w // 2)) if ceil else (h // 2, w // 2)
    if not layers:
        layers.append(nn.ReLU())
    seed = draw(st.integers(0, 2**16))
    return nn.Sequential(*layers), (n, layers[0].in_channels if isinstance(layers[0], nn.Conv2d) else c), seed


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convnets(), st.integers(3, 14), st.integers(3, 14))
def test_random_convnet(net, h, w):
    model, (n, c), seed = net
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(n, c, h, w)
    try:
        with torch.no_grad():
            model.eval()(x)
    except RuntimeError:
        return  # the drawn kernel does not fit this input size: nothing to compile
    compile_and_check(model, x)
