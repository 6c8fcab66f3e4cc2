"""The noise layers: ``nn.Conv2d`` / ``nn.Linear`` with weight noise, and two activation regularizers.

Weight noise: :class:`BridgeoutConv2d`, :class:`BridgeoutLinear` and
:class:`PerSampleBridgeoutLinear` (Bridgeout), :class:`DropConnectConv2d` and
:class:`DropConnectLinear` (DropConnect). On activations: :class:`Sparseout` and
:class:`TargetedDropout`. Each is a thin shell around a pure function of
:mod:`bridgeout.functional`: arguments are checked once at construction, and the noise is
applied only in training mode.

:mod:`bridgeout.nn` re-exports every layer here, beside :func:`~bridgeout.nn.convert` and
:func:`~bridgeout.nn.plain`, which put these layers into a network and take them out again;
import them from there.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as BF
from ._validate import check_fraction, check_positive, check_probability

__all__ = [
    "BridgeoutConv2d",
    "BridgeoutLinear",
    "PerSampleBridgeoutLinear",
    "DropConnectConv2d",
    "DropConnectLinear",
    "Sparseout",
    "TargetedDropout",
]


def _check_sizes(layer: str, **sizes) -> None:
    """Channel / feature counts of a noise layer: integers >= 1 (checked before torch allocates)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{layer}: {name} must be an integer >= 1, got {value!r}")


class _BridgeoutMixin:
    """Shared parameter handling of the Bridgeout weight layers."""

    def _set_noise(self, p, q, target_fraction, signed) -> None:
        if not isinstance(signed, (bool, int)) or signed not in (0, 1):
            raise ValueError(f"{type(self).__name__}: signed must be a bool (True / False), got {signed!r}")
        self.p = check_probability("p", p)
        self.q = check_positive("q", q)
        self.target_fraction = check_fraction("target_fraction", target_fraction)
        self.signed = bool(signed)
        self.generator: torch.Generator | None = None

    def _noisy_weight(self) -> Tensor:
        if self.training and self.p > 0.0:
            return BF._bridgeout(self.weight, self.p, self.q, self.target_fraction, self.signed,
                                 self.generator)
        return self.weight

    def _noise_repr(self) -> str:
        return f"p={self.p}, q={self.q}, target_fraction={self.target_fraction}, signed={self.signed}"


class BridgeoutConv2d(_BridgeoutMixin, nn.Conv2d):
    r"""``nn.Conv2d`` whose weight gets Batch Bridgeout noise once per forward in training mode.

    ``W~ = W + s(W)|W|^(q/2) eps T`` (:func:`bridgeout.functional.bridgeout`): one draw per
    forward shared by the whole batch; the lowest-norm ``target_fraction`` of the kernels of
    every output filter are perturbed. Eval mode: exactly ``nn.Conv2d``. Unlike the functional
    form, the layer does not check its weights for NaN or infinity on every forward (that
    costs a device synchronisation per layer and step): a diverged weight shows up in the
    loss, which :func:`bridgeout.train.fit` refuses by epoch.

    Args:
        in_channels: as in ``nn.Conv2d`` (an integer >= 1).
        out_channels: as in ``nn.Conv2d`` (an integer >= 1).
        kernel_size: as in ``nn.Conv2d``.
        stride: as in ``nn.Conv2d``.
        padding: as in ``nn.Conv2d``.
        dilation: as in ``nn.Conv2d``.
        groups: as in ``nn.Conv2d``.
        bias: as in ``nn.Conv2d``.
        padding_mode: as in ``nn.Conv2d``.
        device: as in ``nn.Conv2d``.
        dtype: as in ``nn.Conv2d``.
        p: keyword-only; drop probability, [0, 1).
        q: keyword-only; bridge exponent, > 0.
        target_fraction: keyword-only; fraction of kernels per output filter perturbed, (0, 1].
        signed: keyword-only; multiply the noise by ``sign(W)`` (a bool).

    Raises:
        ValueError: a channel count that is not an integer >= 1, or ``p``, ``q``,
            ``target_fraction`` or ``signed`` out of range.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, p: float = 0.3, q: float = 1.5,
                 target_fraction: float = 0.75, signed: bool = False) -> None:
        _check_sizes(type(self).__name__, in_channels=in_channels, out_channels=out_channels)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self._set_noise(p, q, target_fraction, signed)

    def forward(self, input: Tensor) -> Tensor:
        """The convolution with the noisy weight (training mode, ``p > 0``) or the plain one.

        Args:
            input: the input batch.

        Returns:
            the convolution's output.
        """
        return self._conv_forward(input, self._noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        """``nn.Conv2d``'s description followed by ``p``, ``q``, ``target_fraction`` and ``signed``.

        Returns:
            the text.
        """
        return f"{super().extra_repr()}, {self._noise_repr()}"


class BridgeoutLinear(_BridgeoutMixin, nn.Linear):
    r"""``nn.Linear`` with Batch Bridgeout noise on its weight (see :class:`BridgeoutConv2d`).

    The (out, in) weight is ranked entry by entry within each row by ``|w|``.

    Args:
        in_features: as in ``nn.Linear`` (an integer >= 1).
        out_features: as in ``nn.Linear`` (an integer >= 1).
        bias: as in ``nn.Linear``.
        device: as in ``nn.Linear``.
        dtype: as in ``nn.Linear``.
        p: keyword-only; drop probability, [0, 1).
        q: keyword-only; bridge exponent, > 0.
        target_fraction: keyword-only; fraction of the entries of each row perturbed, (0, 1].
        signed: keyword-only; multiply the noise by ``sign(W)`` (a bool).

    Raises:
        ValueError: a feature count that is not an integer >= 1, or ``p``, ``q``,
            ``target_fraction`` or ``signed`` out of range.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 *, p: float = 0.3, q: float = 1.5, target_fraction: float = 0.75,
                 signed: bool = False) -> None:
        _check_sizes(type(self).__name__, in_features=in_features, out_features=out_features)
        super().__init__(in_features, out_features, bias, device, dtype)
        self._set_noise(p, q, target_fraction, signed)

    def forward(self, input: Tensor) -> Tensor:
        """The linear map with the noisy weight (training mode, ``p > 0``) or the plain one.

        Args:
            input: the input (..., in_features).

        Returns:
            the output (..., out_features).
        """
        return nn.functional.linear(input, self._noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        """``nn.Linear``'s description followed by the noise settings.

        Returns:
            the text.
        """
        return f"{super().extra_repr()}, {self._noise_repr()}"


class PerSampleBridgeoutLinear(BridgeoutLinear):
    r"""``nn.Linear`` with per-sample Bridgeout: every example (row of the flattened input)
    gets its own weight perturbation (:func:`bridgeout.functional.bridgeout_linear_per_sample`).

    Same expected penalty as :class:`BridgeoutLinear`; used by the theory chapter to compare
    batch-shared and per-sample noise. Memory O(batch * out * in) in training mode.

    Args:
        in_features: as in :class:`BridgeoutLinear`.
        out_features: as in :class:`BridgeoutLinear`.
        bias: as in :class:`BridgeoutLinear`.
        device: as in :class:`BridgeoutLinear`.
        dtype: as in :class:`BridgeoutLinear`.
        p: as in :class:`BridgeoutLinear`.
        q: as in :class:`BridgeoutLinear`.
        target_fraction: as in :class:`BridgeoutLinear`.
        signed: as in :class:`BridgeoutLinear`.
    """

    def forward(self, input: Tensor) -> Tensor:
        """The linear map with one weight perturbation per row of the flattened input (training
        mode, ``p > 0``), else the plain one.

        Args:
            input: the input (..., in_features); every leading index is one example.

        Returns:
            the output (..., out_features).
        """
        if not (self.training and self.p > 0.0):
            return nn.functional.linear(input, self.weight, self.bias)
        lead = input.shape[:-1]
        y = BF._bridgeout_linear_per_sample(input.reshape(-1, input.shape[-1]), self.weight, self.bias,
                                            self.p, self.q, self.target_fraction, self.signed,
                                            self.generator)
        return y.reshape(*lead, y.shape[-1])


class DropConnectConv2d(BridgeoutConv2d):
    r"""``nn.Conv2d`` with DropConnect on its weight: ``W~ = W m/(1-p)``, one mask per forward.

    Equal to ``BridgeoutConv2d(..., p=p, q=2, target_fraction=1.0, signed=True)`` (same draw).

    Args:
        in_channels: as in ``nn.Conv2d`` (an integer >= 1).
        out_channels: as in ``nn.Conv2d`` (an integer >= 1).
        kernel_size: as in ``nn.Conv2d``.
        stride: as in ``nn.Conv2d``.
        padding: as in ``nn.Conv2d``.
        dilation: as in ``nn.Conv2d``.
        groups: as in ``nn.Conv2d``.
        bias: as in ``nn.Conv2d``.
        padding_mode: as in ``nn.Conv2d``.
        device: as in ``nn.Conv2d``.
        dtype: as in ``nn.Conv2d``.
        p: keyword-only; drop probability, [0, 1).

    Raises:
        ValueError: a channel count that is not an integer >= 1, or ``p`` outside [0, 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, p: float = 0.3) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype, p=p, q=2.0, target_fraction=1.0, signed=True)

    def _noisy_weight(self) -> Tensor:
        if self.training and self.p > 0.0:
            return BF._dropconnect(self.weight, self.p, self.generator)
        return self.weight

    def _noise_repr(self) -> str:
        return f"p={self.p}"


class DropConnectLinear(BridgeoutLinear):
    r"""``nn.Linear`` with DropConnect on its weight (see :class:`DropConnectConv2d`).

    Args:
        in_features: as in ``nn.Linear`` (an integer >= 1).
        out_features: as in ``nn.Linear`` (an integer >= 1).
        bias: as in ``nn.Linear``.
        device: as in ``nn.Linear``.
        dtype: as in ``nn.Linear``.
        p: keyword-only; drop probability, [0, 1).

    Raises:
        ValueError: a feature count that is not an integer >= 1, or ``p`` outside [0, 1).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 *, p: float = 0.3) -> None:
        super().__init__(in_features, out_features, bias, device, dtype, p=p, q=2.0,
                         target_fraction=1.0, signed=True)

    _noisy_weight = DropConnectConv2d._noisy_weight
    _noise_repr = DropConnectConv2d._noise_repr


class Sparseout(nn.Module):
    r"""Sparseout on activations: ``x + s(x)|x|^(q/2) eps``, a fresh draw per element
    (:func:`bridgeout.functional.sparseout`). ``q=2, signed=True`` is inverted dropout.
    Identity in eval mode.

    Args:
        p: drop probability, [0, 1).
        q: bridge exponent, > 0.
        signed: multiply the noise by ``sign(x)``.

    Raises:
        ValueError: ``p`` or ``q`` out of range.
    """

    def __init__(self, p: float = 0.3, q: float = 1.5, signed: bool = True) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.q = check_positive("q", q)
        self.signed = bool(signed)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Sparseout noise in training mode (``p > 0``), else ``x`` unchanged.

        Args:
            x: the activations.

        Returns:
            the activations, same shape.
        """
        if self.training and self.p > 0.0:
            return BF._sparseout(x, self.p, self.q, self.signed, self.generator)
        return x

    def extra_repr(self) -> str:
        """``p``, ``q`` and ``signed``.

        Returns:
            the text.
        """
        return f"p={self.p}, q={self.q}, signed={self.signed}"


class TargetedDropout(nn.Module):
    r"""Targeted activation dropout (:func:`bridgeout.functional.targeted_dropout`): per sample,
    the ``target_fraction`` lowest-norm channels are dropped element-wise with probability
    ``p``. Identity in eval mode.

    Args:
        p: drop probability, [0, 1).
        target_fraction: fraction of channels per sample eligible for dropping, (0, 1].

    Raises:
        ValueError: ``p`` or ``target_fraction`` out of range.
    """

    def __init__(self, p: float = 0.3, target_fraction: float = 0.75) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.target_fraction = check_fraction("target_fraction", target_fraction)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Targeted dropout in training mode (``p > 0``), else ``x`` unchanged.

        Args:
            x: the activations (N, C, *).

        Returns:
            the activations, same shape.
        """
        if self.training and self.p > 0.0:
            return BF._targeted_dropout(x, self.p, self.target_fraction, self.generator)
        return x

    def extra_repr(self) -> str:
        """``p`` and ``target_fraction``.

        Returns:
            the text.
        """
        return f"p={self.p}, target_fraction={self.target_fraction}"
