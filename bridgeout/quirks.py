"""Quirks of the published code, as explicit options (all off by default).

Each reproduces one behaviour of the authors' repository (commit 583c9b3; the facts sheet in
the book's *Method* chapter) that this implementation does not follow by default:

``bn_scale_pruning``
    The published pruner treats every parameter named ``weight`` outside linear- and
    BN-named layers as prunable. In their VGG-16 the BatchNorm layers sit in an unnamed
    ``Sequential`` and in their ResNet the shortcut BatchNorm is ``shortcut.1``, so those
    BatchNorm *scales* are "pruned" too: the fraction ``f`` of the smallest ``|gamma|`` of
    each such layer is zeroed alongside the conv filters. :func:`published_bn_targets` names
    the layers, :func:`prune_bn_scales_` zeroes them (mask mode only).
``legacy_bn_init``
    The published ResNet's ``conv_init`` has no BatchNorm branch, so its BatchNorm weights
    kept the default of the PyTorch they ran (<= 1.1): ``U(0, 1)``, not 1
    (:func:`legacy_bn_init_`). VGG-16 and WRN set them to 1, as we do; the option is
    refused for them.
``momentum_reset``
    ``main.py`` re-creates the SGD optimizer at the start of every epoch, which resets the
    momentum buffers 230 times (:class:`bridgeout.protocols.Protocol`'s
    ``reset_optimizer_each_epoch``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .prune.published import prune_bn_scales_, published_bn_targets  # noqa: F401 - re-exported

__all__ = ["QUIRKS", "check_quirks", "published_bn_targets", "prune_bn_scales_", "legacy_bn_init_"]

QUIRKS = ("bn_scale_pruning", "legacy_bn_init", "momentum_reset")


def check_quirks(quirks, model: str | None = None) -> list[str]:
    """Validate a list of quirk names (distinct, from :data:`QUIRKS`); returns it sorted.
    ``legacy_bn_init`` is refused for models other than ``resnet`` (it would change
    nothing the published code did).

    Args:
        quirks: a sequence of quirk names (not a string).
        model: the model name, or ``None`` to skip the model check.

    Returns:
        the names, sorted.

    Raises:
        ValueError: ``quirks`` is a string or not a sequence, holds an unknown or repeated name,
            or has ``legacy_bn_init`` with a model other than ``resnet``.
    """
    if isinstance(quirks, str) or not isinstance(quirks, Sequence):
        raise ValueError(f"quirks must be a list of names from {list(QUIRKS)}, got {quirks!r}")
    bad = [q for q in quirks if q not in QUIRKS]
    if bad or len(set(quirks)) != len(quirks):
        raise ValueError(f"quirks must be distinct names from {list(QUIRKS)}, got {list(quirks)!r}")
    if "legacy_bn_init" in quirks and model is not None and model != "resnet":
        raise ValueError(f"quirk 'legacy_bn_init' applies to model 'resnet' only (the published "
                         f"{model} set its BatchNorm weights to 1, as here), got model {model!r}")
    return sorted(quirks)


@torch.no_grad()
def legacy_bn_init_(model: nn.Module) -> nn.Module:
    """BatchNorm weights ``U(0, 1)`` (PyTorch <= 1.1's default), biases left at 0, drawn
    from the global torch RNG in module order. In place; returns ``model``.

    Args:
        model: the network; every BatchNorm with a weight is re-initialised.

    Returns:
        ``model``.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            nn.init.uniform_(m.weight, 0.0, 1.0)
    return model
