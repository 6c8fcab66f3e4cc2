"""The layers each regularizer puts into a network: a noisy conv (``"weights"`` in
:data:`bridgeout.registry.REGULARIZER_TABLE`) or a noise layer after the activation
(``"activations"``); a ``"penalty"`` regularizer keeps plain layers and adds a loss term
(:mod:`bridgeout.sparsity`). The models of :mod:`bridgeout.models` ask a :class:`Placement`
for their convs and activation slots, so a regularizer is one entry here, none there.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .nn import BridgeoutConv2d, DropConnectConv2d, Sparseout, TargetedDropout
from .registry import ACTIVATION_REGULARIZERS, REGULARIZERS, WEIGHT_REGULARIZERS

__all__ = ["Placement", "CONV_LAYERS", "ACTIVATION_LAYERS"]

#: ``regularizer -> (placement, in_channels, out_channels, kernel_size, stride, padding) -> conv``
CONV_LAYERS = {
    "bridgeout": lambda s, i, o, k, stride, padding: BridgeoutConv2d(
        i, o, k, stride=stride, padding=padding, bias=True, p=s.p, q=s.q, target_fraction=s.target_fraction,
        signed=s.signed),
    "dropconnect": lambda s, i, o, k, stride, padding: DropConnectConv2d(
        i, o, k, stride=stride, padding=padding, bias=True, p=s.p),
}
#: ``regularizer -> placement -> the layer after each activation``
ACTIVATION_LAYERS = {
    "dropout": lambda s: TargetedDropout(p=s.p, target_fraction=s.target_fraction),
    "sparseout": lambda s: Sparseout(p=s.p, q=s.q, signed=s.signed),
}
if set(CONV_LAYERS) != set(WEIGHT_REGULARIZERS) or set(ACTIVATION_LAYERS) != set(ACTIVATION_REGULARIZERS):
    raise ImportError(f"the layer tables ({sorted(CONV_LAYERS)}, {sorted(ACTIVATION_LAYERS)}) do not match the "
                      f"registry's weight / activation regularizers ({WEIGHT_REGULARIZERS}, {ACTIVATION_REGULARIZERS})")


@dataclass(frozen=True)
class Placement:
    """One model's regularizer and its settings; :meth:`conv` and :meth:`activation` give the
    layers it puts in (plain ones where it acts elsewhere).

    Attributes:
        name: the regularizer, one of :data:`bridgeout.registry.REGULARIZERS`.
        p: the drop probability.
        q: the bridge exponent.
        target_fraction: the targeted fraction.
        signed: the ``sign`` factor of the noise.

    Raises:
        ValueError: an unknown regularizer name.
    """

    name: str = "weight_decay"
    p: float = 0.3
    q: float = 1.5
    target_fraction: float = 0.75
    signed: bool = False

    def __post_init__(self):
        if self.name not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.name!r}; valid choices: {', '.join(map(repr, REGULARIZERS))}")

    def conv(self, in_channels, out_channels, kernel_size, stride=1, padding=0) -> nn.Module:
        """A conv that carries the weight noise, or a plain ``nn.Conv2d``.

        Args:
            in_channels: input channels.
            out_channels: output channels (filters).
            kernel_size: the kernel size.
            stride: the stride.
            padding: the padding.

        Returns:
            the layer of :data:`CONV_LAYERS` for this regularizer, built with its settings, else a
            plain ``nn.Conv2d``; either with a bias.
        """
        make = CONV_LAYERS.get(self.name)
        if make is None:
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True)
        return make(self, in_channels, out_channels, kernel_size, stride, padding)

    def activation(self) -> nn.Module:
        """The layer after an activation: the activation noise, or ``nn.Identity``.

        Returns:
            the layer of :data:`ACTIVATION_LAYERS` for this regularizer, built with its settings,
            else ``nn.Identity``.
        """
        make = ACTIVATION_LAYERS.get(self.name)
        return make(self) if make is not None else nn.Identity()
