import pytest
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    """Every prunable type, nested names, a non-prunable module."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.block = Block(8)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.block(x)
        x = torch.relu(self.up(x))
        x = torch.relu(self.mid(x))
        x = self.pool(x).flatten(1)
        return self.head(torch.relu(self.fc1(x)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture
def net():
    return Net()


@pytest.fixture
def make_net():
    """The class itself, for tests that build fresh copies (resume tests);
    a fixture rather than an import so any pytest import mode works."""
    return Net


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 0.5).long()
    return x, y
