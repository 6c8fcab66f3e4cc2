"""Modules over :mod:`bridgeout.functional`: drop-in layers and activation regularizers.

Each module is a thin shell around a pure function (the pattern of ``timm.layers.drop``):
arguments are validated once at construction, the forward applies the noise only while
``self.training`` and is the plain layer in eval mode. The weight layers subclass
``nn.Conv2d`` / ``nn.Linear`` and keep their parameters and state_dict keys, so a trained
state_dict loads into the plain layer, and :func:`plain` turns a model into its
noise-free twin (for pruning and export).

Every module has a ``generator`` attribute (default ``None``: the global RNG); set it to a
``torch.Generator`` on the module's device for reproducible noise.
"""
from __future__ import annotations

import copy

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
    "plain",
]


class _BridgeoutMixin:
    """Shared parameter handling of the Bridgeout weight layers."""

    def _set_noise(self, p, q, target_fraction, signed) -> None:
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
    every output filter are perturbed. Eval mode: exactly ``nn.Conv2d``.

    Args: those of ``nn.Conv2d``, then keyword-only ``p`` (drop probability, [0, 1)),
    ``q`` (> 0), ``target_fraction`` ((0, 1]) and ``signed``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, p: float = 0.3, q: float = 1.5,
                 target_fraction: float = 0.75, signed: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self._set_noise(p, q, target_fraction, signed)

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self._noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._noise_repr()}"


class BridgeoutLinear(_BridgeoutMixin, nn.Linear):
    r"""``nn.Linear`` with Batch Bridgeout noise on its weight (see :class:`BridgeoutConv2d`).

    The (out, in) weight is ranked entry by entry within each row by ``|w|``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 *, p: float = 0.3, q: float = 1.5, target_fraction: float = 0.75,
                 signed: bool = False) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._set_noise(p, q, target_fraction, signed)

    def forward(self, input: Tensor) -> Tensor:
        return nn.functional.linear(input, self._noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._noise_repr()}"


class PerSampleBridgeoutLinear(BridgeoutLinear):
    r"""``nn.Linear`` with per-sample Bridgeout: every example (row of the flattened input)
    gets its own weight perturbation (:func:`bridgeout.functional.bridgeout_linear_per_sample`).

    Same expected penalty as :class:`BridgeoutLinear`; used by the theory chapter to compare
    batch-shared and per-sample noise. Memory O(batch * out * in) in training mode.
    """

    def forward(self, input: Tensor) -> Tensor:
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
    r"""``nn.Linear`` with DropConnect on its weight (see :class:`DropConnectConv2d`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 *, p: float = 0.3) -> None:
        super().__init__(in_features, out_features, bias, device, dtype, p=p, q=2.0,
                         target_fraction=1.0, signed=True)

    _noisy_weight = DropConnectConv2d._noisy_weight
    _noise_repr = DropConnectConv2d._noise_repr


class Sparseout(nn.Module):
    r"""Sparseout on activations: ``x + s(x)|x|^(q/2) eps``, a fresh draw per element
    (:func:`bridgeout.functional.sparseout`). ``q=2, signed=True`` is inverted dropout.
    Identity in eval mode."""

    def __init__(self, p: float = 0.3, q: float = 1.5, signed: bool = True) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.q = check_positive("q", q)
        self.signed = bool(signed)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.p > 0.0:
            return BF._sparseout(x, self.p, self.q, self.signed, self.generator)
        return x

    def extra_repr(self) -> str:
        return f"p={self.p}, q={self.q}, signed={self.signed}"


class TargetedDropout(nn.Module):
    r"""Targeted activation dropout (:func:`bridgeout.functional.targeted_dropout`): per sample,
    the ``target_fraction`` lowest-norm channels are dropped element-wise with probability
    ``p``. Identity in eval mode."""

    def __init__(self, p: float = 0.3, target_fraction: float = 0.75) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.target_fraction = check_fraction("target_fraction", target_fraction)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.p > 0.0:
            return BF._targeted_dropout(x, self.p, self.target_fraction, self.generator)
        return x

    def extra_repr(self) -> str:
        return f"p={self.p}, target_fraction={self.target_fraction}"


_ACTIVATION_REGULARIZERS = (Sparseout, TargetedDropout, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                            nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _plain_layer(module: nn.Module) -> nn.Module | None:
    """Plain twin of a noisy weight layer / Identity for an activation regularizer / None."""
    if isinstance(module, BridgeoutConv2d):
        new = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                        module.padding, module.dilation, module.groups, module.bias is not None,
                        module.padding_mode, device="meta")
    elif isinstance(module, BridgeoutLinear):
        new = nn.Linear(module.in_features, module.out_features, module.bias is not None, device="meta")
    elif isinstance(module, _ACTIVATION_REGULARIZERS):
        new = nn.Identity()
        new.train(module.training)
        return new
    else:
        return None
    # Built on the meta device (no allocation, no RNG use); take over the (copied) parameters.
    new.weight = module.weight
    if module.bias is not None:
        new.bias = module.bias
    new.train(module.training)
    return new


def plain(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without any training-time noise.

    Every :class:`BridgeoutConv2d` / :class:`DropConnectConv2d` becomes an ``nn.Conv2d`` and
    every Bridgeout/DropConnect linear an ``nn.Linear`` with the same (copied) weights;
    activation regularizers (:class:`Sparseout`, :class:`TargetedDropout`, ``nn.Dropout*``,
    ``nn.AlphaDropout``) become ``nn.Identity``. In eval mode the copy computes the same
    function as ``model``; each module keeps its train/eval flag. ``model`` is not changed,
    the global RNG is not used, and ``generator`` attributes are not copied.
    """
    # Do not deep-copy torch.Generator objects held by the noisy layers (they are dropped).
    memo = {id(m.generator): None for m in model.modules()
            if isinstance(getattr(m, "generator", None), torch.Generator)}
    out = copy.deepcopy(model, memo)
    root = _plain_layer(out)
    if root is not None:
        return root
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            new = _plain_layer(child)
            if new is not None:
                setattr(module, child_name, new)
    return out
