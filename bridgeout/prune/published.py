"""The authors' pruner, as far as it differs from ours (the quirk ``bn_scale_pruning`` of
:mod:`bridgeout.quirks`): besides the conv filters it zeroes the smallest BatchNorm scales of
the layers whose parameters are named ``weight`` outside linear- and BN-named modules."""
from __future__ import annotations

import torch
from torch import nn

from .scores import select
from ..models import CifarResNet, VGG16

__all__ = ["published_bn_targets", "prune_bn_scales_"]


def published_bn_targets(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The BatchNorm layers whose scales the published pruner zeroes: every BatchNorm of a
    VGG-16's ``features``, the shortcut BatchNorms of the CIFAR ResNet, none elsewhere.

    Args:
        model: the network (recognised by its class: :class:`bridgeout.models.VGG16`,
            :class:`bridgeout.models.CifarResNet`).

    Returns:
        ``(name, module)`` of each such ``nn.BatchNorm2d``, in module order.
    """
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if isinstance(model, VGG16):
        return [(n, m) for n, m in bns if n.startswith("features.")]
    if isinstance(model, CifarResNet):
        return [(n, m) for n, m in bns if ".shortcut." in f".{n}."]
    return []


@torch.no_grad()
def prune_bn_scales_(model: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """Zero, in every layer of :func:`published_bn_targets`, the fraction ``fraction`` of
    the BatchNorm scales with the smallest ``|gamma|`` (the published criterion for a 1-D
    weight: its L2 norm; ties to the lower index; at least one kept). In place; returns
    ``{bn name: zeroed indices}``.

    Args:
        model: the network (modified in place).
        fraction: the fraction in [0, 1); each layer loses :func:`bridgeout.prune.scores.n_pruned`
            of its scales.

    Returns:
        ``{bn name: sorted int64 CPU tensor of the zeroed indices}``.

    Raises:
        ValueError: ``fraction`` outside [0, 1).
    """
    targets = published_bn_targets(model)
    idxs = select([m.weight.detach().abs() for _, m in targets], fraction, "layer")
    out = {}
    for (name, m), i in zip(targets, idxs):
        if len(i):
            m.weight[i.to(m.weight.device)] = 0
        out[name] = i
    return out
