"""The network classes :func:`bridgeout.models.build` makes: VGG-16, the CIFAR ResNet, Wide ResNet, LeNet-5.

Each class takes the regularizer's :class:`~bridgeout.regularizers.Placement` (``reg``), which
gives every slot its conv and its activation regularizer, and a ``width`` that multiplies
every conv's channel count. The architectures, where each regularizer sits and how the
weights are initialised are described in :mod:`bridgeout.models`, which re-exports every
class here; build a model with :func:`bridgeout.models.build`.
"""
from __future__ import annotations

import torch
from torch import nn

from .regularizers import Placement

__all__ = [
    "VGG16",
    "CifarResNet",
    "BasicBlock",
    "WideResNet",
    "WideBasic",
    "LeNet5",
    "ConvBNReLU",
    "VGG16_CONFIG",
    "RESNET_STAGES",
]


VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M")
RESNET_STAGES = ((16, 3, 1), (32, 4, 2), (64, 6, 2))  # (channels, blocks, stride)


#: The regularizer of one model (kept under its old name for the model classes' signatures).
_Regularizer = Placement


def _plain():
    return Placement()


def _scale(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1."""
    return max(1, int(round(channels * width)))


# --------------------------------------------------------------------------- VGG-16
class ConvBNReLU(nn.Module):
    """``reg(relu(bn(conv(x))))`` with a 3x3, padding-1 conv (one VGG layer).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        reg: the regularizer placement that gives the conv and the activation slot.
    """

    def __init__(self, in_channels, out_channels, reg: _Regularizer):
        super().__init__()
        self.conv = reg.conv(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.reg = reg.activation()

    def forward(self, x):
        """``reg(relu(bn(conv(x))))``.

        Args:
            x: the input (N, C_in, H, W).

        Returns:
            the output (N, C_out, H, W).
        """
        return self.reg(self.relu(self.bn(self.conv(x))))


class VGG16(nn.Module):
    """VGG-16 with BatchNorm for 32x32 inputs and a single linear head.

    ``features`` is an ``nn.Sequential`` of 13 :class:`ConvBNReLU` and 5
    ``MaxPool2d(2)`` in the order of :data:`VGG16_CONFIG`; ``linear`` maps the
    ``512 * width`` features of the 1x1 map to the classes.

    Args:
        num_classes: output size.
        reg: the regularizer placement (default: plain layers).
        width: keyword-only; multiplier of every conv's channel count (rounded, at least 1).
        in_channels: keyword-only; input channels.
    """

    def __init__(self, num_classes=10, reg: _Regularizer | None = None, *, width=1.0,
                 in_channels=3):
        super().__init__()
        reg = reg or _plain()
        layers = []
        c_in = in_channels
        for v in VGG16_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                c_out = _scale(v, width)
                layers.append(ConvBNReLU(c_in, c_out, reg))
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x):
        """The class scores.

        Args:
            x: images (N, in_channels, 32, 32).

        Returns:
            logits (N, num_classes).
        """
        out = self.features(x)
        return self.linear(torch.flatten(out, 1))


# --------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    """Post-activation BasicBlock with activation-regularizer slots ``drop1``/``drop2``.

    ``out = relu(drop2(bn2(conv2(drop1(relu(bn1(conv1(x))))))) + shortcut(x))``;
    ``shortcut`` is ``Sequential(Conv2d 1x1 (stride), BatchNorm2d)`` when the stride
    or the channel count changes, else ``Identity``.

    Args:
        in_channels: input channels.
        channels: output channels of both convs.
        stride: the stride of ``conv1`` (and of the shortcut conv).
        reg: the regularizer placement.
    """

    def __init__(self, in_channels, channels, stride, reg: _Regularizer):
        super().__init__()
        self.conv1 = reg.conv(in_channels, channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.drop1 = reg.activation()
        self.conv2 = reg.conv(channels, channels, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.drop2 = reg.activation()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=True),
                nn.BatchNorm2d(channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        """The block's output (formula above).

        Args:
            x: the input (N, in_channels, H, W).

        Returns:
            the output (N, channels, H / stride, W / stride).
        """
        out = self.drop1(torch.relu(self.bn1(self.conv1(x))))
        out = self.drop2(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The paper's CIFAR ResNet: stem, stages of [3, 4, 6] BasicBlocks at 16/32/64.

    Args:
        num_classes: output size.
        reg: the regularizer placement (default: plain layers).
        width: keyword-only; multiplier of every conv's channel count (rounded, at least 1).
        in_channels: keyword-only; input channels.
        stages: keyword-only; ``(channels, blocks, stride)`` per stage (default
            :data:`RESNET_STAGES`); the stages are ``layer1``, ``layer2``, ...
    """

    def __init__(self, num_classes=10, reg: _Regularizer | None = None, *, width=1.0,
                 in_channels=3, stages=RESNET_STAGES):
        super().__init__()
        reg = reg or _plain()
        c0 = _scale(stages[0][0], width)
        self.conv1 = reg.conv(in_channels, c0, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c0)
        c_in = c0
        for i, (channels, blocks, stride) in enumerate(stages, start=1):
            c_out = _scale(channels, width)
            layer = []
            for b in range(blocks):
                layer.append(BasicBlock(c_in, c_out, stride if b == 0 else 1, reg))
                c_in = c_out
            self.add_module(f"layer{i}", nn.Sequential(*layer))
        self.num_stages = len(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x):
        """The class scores.

        Args:
            x: images (N, in_channels, H, W).

        Returns:
            logits (N, num_classes).
        """
        out = torch.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            out = getattr(self, f"layer{i}")(out)
        return self.linear(torch.flatten(self.pool(out), 1))


# --------------------------------------------------------------------------- WRN
class WideBasic(nn.Module):
    """Pre-activation wide block with the regularizer slot ``drop`` between the convs.

    ``out = conv2(relu(bn2(drop(conv1(relu(bn1(x))))))) + shortcut(x)``; ``conv2``
    carries the stride (as in the published code); ``shortcut`` is a plain 1x1 conv
    (with stride) when the shape changes, else ``Identity``.

    Args:
        in_channels: input channels.
        channels: output channels of both convs.
        stride: the stride of ``conv2`` (and of the shortcut conv).
        reg: the regularizer placement.
    """

    def __init__(self, in_channels, channels, stride, reg: _Regularizer):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = reg.conv(in_channels, channels, 3, stride=1, padding=1)
        self.drop = reg.activation()
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = reg.conv(channels, channels, 3, stride=stride, padding=1)
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=True)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        """The block's output (formula above).

        Args:
            x: the input (N, in_channels, H, W).

        Returns:
            the output (N, channels, H / stride, W / stride).
        """
        out = self.drop(self.conv1(torch.relu(self.bn1(x))))
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``: ``n = (depth - 4) / 6`` blocks per stage.

    Args:
        depth: the depth, ``6n + 4`` (not checked here; :func:`build` checks it).
        widen_factor: the widen factor ``k``.
        num_classes: output size.
        reg: the regularizer placement (default: plain layers).
        width: keyword-only; multiplier of every conv's channel count (rounded, at least 1).
        in_channels: keyword-only; input channels.
    """

    def __init__(self, depth=28, widen_factor=10, num_classes=10,
                 reg: _Regularizer | None = None, *, width=1.0, in_channels=3):
        super().__init__()
        reg = reg or _plain()
        n = (depth - 4) // 6
        c0 = _scale(16, width)
        self.conv1 = reg.conv(in_channels, c0, 3, padding=1)
        c_in = c0
        for i, (base, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            c_out = _scale(base * widen_factor, width)
            layer = []
            for b in range(n):
                layer.append(WideBasic(c_in, c_out, stride if b == 0 else 1, reg))
                c_in = c_out
            self.add_module(f"layer{i}", nn.Sequential(*layer))
        self.bn = nn.BatchNorm2d(c_in)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c_in, num_classes)
        self.depth = depth
        self.widen_factor = widen_factor

    def forward(self, x):
        """The class scores.

        Args:
            x: images (N, in_channels, H, W).

        Returns:
            logits (N, num_classes).
        """
        out = self.conv1(x)
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.relu(self.bn(out))
        return self.linear(torch.flatten(self.pool(out), 1))


# --------------------------------------------------------------------------- LeNet-5
class LeNet5(nn.Module):
    """LeNet-5 for 28x28 MNIST with ReLU and max pooling.

    ``conv1`` 5x5 pad 2 (28->28) -> ReLU -> ``reg1`` -> pool (14) -> ``conv2`` 5x5
    (14->10) -> ReLU -> ``reg2`` -> pool (5) -> ``fc1`` (16*5*5 -> 120) -> ReLU ->
    ``fc2`` (120 -> 84) -> ReLU -> ``linear`` (84 -> classes).

    Args:
        num_classes: output size.
        reg: the regularizer placement (default: plain layers).
        width: keyword-only; multiplier of both convs' channel counts (rounded, at least 1);
            the fully connected layers keep 120 and 84 units.
        in_channels: keyword-only; input channels.
    """

    def __init__(self, num_classes=10, reg: _Regularizer | None = None, *, width=1.0,
                 in_channels=1):
        super().__init__()
        reg = reg or _plain()
        c1, c2 = _scale(6, width), _scale(16, width)
        self.conv1 = reg.conv(in_channels, c1, 5, padding=2)
        self.reg1 = reg.activation()
        self.conv2 = reg.conv(c1, c2, 5)
        self.reg2 = reg.activation()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.linear = nn.Linear(84, num_classes)

    def forward(self, x):
        """The class scores.

        Args:
            x: images (N, in_channels, 28, 28).

        Returns:
            logits (N, num_classes).
        """
        out = self.pool(self.reg1(torch.relu(self.conv1(x))))
        out = self.pool(self.reg2(torch.relu(self.conv2(out))))
        out = torch.relu(self.fc1(torch.flatten(out, 1)))
        out = torch.relu(self.fc2(out))
        return self.linear(out)
