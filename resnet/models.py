"""The CIFAR-10 ResNets of He et al. (2016), section 4.2: 6n+2 layers, or 9n+2 with bottlenecks.

The networks return logits; the loss (cross-entropy) applies the softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jobs.errors import UserError

BLOCKS = ("standard", "bottleneck")
WIDTHS = (16, 32, 64)  # filters of the three stacks, on 32x32, 16x16 and 8x8 maps


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    # No conv bias: the batch norm right after it has its own.
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity where the shape is kept, else a strided 1x1 projection (option B of the paper)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return _conv_bn(c_in, c_out, 1, stride)


class StandardBlock(nn.Module):
    """3x3 -> 3x3, added to the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, width, 3, stride)
        self.conv2 = _conv_bn(width, width, 3)
        self.shortcut = _shortcut(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class BottleneckBlock(nn.Module):
    """1x1 (width) -> 3x3 (width, strided) -> 1x1 (4 x width), added to the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = _conv_bn(c_in, width, 1)
        self.conv2 = _conv_bn(width, width, 3, stride)
        self.conv3 = _conv_bn(width, c_out, 1)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = self.conv3(F.relu(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem 3x3 conv (16) -> three stacks of `size` blocks (strides 1, 2, 2) -> average pool -> linear."""

    def __init__(self, block: type[StandardBlock] | type[BottleneckBlock], size: int, num_classes: int) -> None:
        super().__init__()
        self.stem = _conv_bn(3, WIDTHS[0], 3)
        stacks, c_in = [], WIDTHS[0]
        for i, width in enumerate(WIDTHS):
            blocks = []
            for j in range(size):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(c_in, width, stride))
                c_in = width * block.expansion
            stacks.append(nn.Sequential(*blocks))
        self.stacks = nn.Sequential(*stacks)
        self.fc = nn.Linear(c_in, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stacks(F.relu(self.stem(x)))
        # mean, not adaptive_avg_pool2d: its CUDA backward has no deterministic implementation
        return self.fc(x.mean(dim=(2, 3)))  # logits


def build_model(block: str, size: int, num_classes: int = 10) -> nn.Module:
    """He et al.'s CIFAR ResNet: `size` n gives 6n+2 layers ("standard") or 9n+2 ("bottleneck").

    ResNet-20/32/44/56/110 are standard with n = 3/5/7/9/18; ResNet-164 is bottleneck with n = 18.
    """
    kinds = {"standard": StandardBlock, "bottleneck": BottleneckBlock}
    if block not in kinds:
        raise UserError(f"unknown block type {block!r}; choose one of {', '.join(BLOCKS)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UserError(f"network size n must be a whole number >= 1, got {size!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"number of classes must be a whole number >= 1, got {num_classes!r}")
    return CifarResNet(kinds[block], size, num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the paper's "# params")."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
