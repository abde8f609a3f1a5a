"""Small PyTorch models for the from_torch / to_torch tests (each built with a seed)."""

from __future__ import annotations

import torch
from torch import nn


def randomize_batchnorm(module: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial running statistics and affine parameters in every BatchNorm (so the
    conversion of each of them is tested, not just the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=generator) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
    return module.eval()


class JetMLP(nn.Module):
    """The hls4ml jet-tagging shape: 16 -> 64 -> 32 -> 32 -> 5 (BatchNorm1d after the first layer)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 64)
        self.bn1 = nn.BatchNorm1d(64)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 32)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(32, 32)
        self.act3 = nn.ReLU()
        self.out = nn.Linear(32, 5)

    def forward(self, x):
        x = self.act1(self.bn1(self.fc1(x)))
        x = self.act2(self.fc2(x))
        return self.out(self.act3(self.fc3(x)))


class BnPoolCNN(nn.Module):
    """Conv-BN-ReLU-MaxPool, Conv-BN-ReLU6-AvgPool, Dropout, then the flatten of an
    8x2x2 map and a Linear (its input features must be reordered to channels-last)."""

    def __init__(self, classes: int = 10, relu6: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU6() if relu6 else nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.drop = nn.Dropout(0.25)
        self.classifier = nn.Linear(8 * 2 * 2, classes)

    def forward(self, x):
        return self.classifier(self.drop(torch.flatten(self.features(x), 1)))


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNetTiny(nn.Module):
    """A stem, an identity block and a projection block (stride 2), global average pooling."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = ResidualBlock(8, 8, 1)
        self.block2 = ResidualBlock(8, 12, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(self.pool(x).view(x.size(0), -1))


class ConcatNet(nn.Module):
    """Two branches concatenated on channels, a conv reading the concatenation, then a
    concatenation of two flattened maps (feature orders combined) before the Linear."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.branch_a = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(1, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(10, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.side = nn.Sequential(nn.MaxPool2d(4))
        self.fc = nn.Linear(8 * 4 * 4 + 4 * 2 * 2, classes)

    def forward(self, x):
        a = self.branch_a(x)
        cat = torch.cat([a, self.branch_b(x)], dim=1)
        m = self.mix(cat)
        return self.fc(torch.cat([m.flatten(1), self.side(a).flatten(1)], dim=1))


class SeparableNet(nn.Module):
    """Depthwise-separable blocks (depthwise 3x3 with multiplier 1 and 2, pointwise 1x1),
    BN and ReLU6 as in MobileNet; global pooling as x.mean((2, 3))."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6())
        self.dw1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.pw1 = nn.Sequential(nn.Conv2d(8, 12, 1, bias=False), nn.BatchNorm2d(12), nn.ReLU6())
        self.dw2 = nn.Sequential(nn.Conv2d(12, 24, 3, stride=2, padding=1, groups=12), nn.ReLU())
        self.pw2 = nn.Sequential(nn.Conv2d(24, 16, 1), nn.ReLU())
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pw2(self.dw2(self.pw1(self.dw1(self.stem(x)))))
        return self.head(x.mean(dim=(2, 3)))


class Conv1dNet(nn.Module):
    """1-D: Conv1d-BN-ReLU-MaxPool1d, a depthwise Conv1d, AdaptiveAvgPool1d(1) and squeeze.
    (The pooled length is 8: a mean over a power-of-two count is exact in fixed point.)"""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 5, padding=2)
        self.bn = nn.BatchNorm1d(8)
        self.pool = nn.MaxPool1d(2)
        self.dw = nn.Conv1d(8, 8, 3, padding=1, groups=8)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        x = torch.relu(self.dw(x))
        return self.fc(self.gap(x).squeeze(-1))


# name -> (constructor, input shape in the torch layout, without the batch axis)
MODELS = {
    'jet_mlp': (JetMLP, (16,)),
    'bn_pool_cnn': (BnPoolCNN, (1, 8, 8)),
    'cnn_relu': (lambda: BnPoolCNN(relu6=False), (1, 8, 8)),
    'residual': (ResNetTiny, (1, 8, 8)),
    'concat': (ConcatNet, (1, 8, 8)),
    'separable': (SeparableNet, (1, 8, 8)),
    'conv1d': (Conv1dNet, (2, 16)),
}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    constructor, _ = MODELS[name]
    return randomize_batchnorm(constructor(), seed + 1)


def inputs(name: str, n: int = 16, seed: int = 0) -> torch.Tensor:
    _, shape = MODELS[name]
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
