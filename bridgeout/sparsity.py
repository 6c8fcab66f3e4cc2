"""Training-time sparsity penalties that compete with Batch Bridgeout: the loss terms.

Two regularizers make filters prunable by a penalty in the training loss instead of noise:

``"slimming"`` -- Network Slimming (Liu et al., ICCV 2017)
    :math:`\\lambda \\sum_\\ell \\sum_c |\\gamma_{\\ell c}|` over the scales of every BatchNorm
    that a conv feeds directly (found by tracing one forward,
    :func:`bridgeout.filters.conv_batchnorm_pairs`). Their CIFAR setting is
    :math:`\\lambda = 10^{-4}` (the default here). Filters are then pruned by
    :math:`|\\gamma|` (criterion ``"bn_scale"`` of :mod:`bridgeout.prune`) or by their norm.
``"group_lasso"`` -- structured sparsity learning (Wen et al., NeurIPS 2016)
    :math:`\\lambda \\sum_\\ell \\sum_f \\lVert W_{\\ell f} \\rVert_2` over the output filters of
    every conv (the group lasso with one group per filter).

Both are added to the cross-entropy of every training step (:func:`bridgeout.train.fit`
asks :func:`penalty_fn` for the model's term); weight decay 5e-4 stays on, as for every arm.
The subgradient of :math:`|\\gamma|` at 0 is 0 (``torch.abs``); that of
:math:`\\lVert W_f\\rVert_2` at :math:`W_f = 0` is taken as 0 (a zero filter stays zero unless
the data pull it away).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .introspect import conv_batchnorm_pairs
from .registry import PENALTIES
from ._validate import check_choice

__all__ = ["PENALTIES", "DEFAULT_LAMBDA", "slimming_penalty", "group_lasso_penalty", "penalty_fn",
           "attach"]

#: Default strength per penalty: Liu et al.'s CIFAR setting for slimming; for the group lasso
#: a value of the same size (Wen et al. tune it per network).
DEFAULT_LAMBDA = {"slimming": 1e-4, "group_lasso": 1e-4}


def slimming_penalty(bns: list[nn.Module]) -> torch.Tensor:
    """:math:`\\sum |\\gamma|` over the given BatchNorm layers (without the factor lambda).

    Args:
        bns: the BatchNorm layers.

    Returns:
        the sum of the absolute values of their weights (differentiable).
    """
    return sum(bn.weight.abs().sum() for bn in bns)


def _filter_norms(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-filter L2 norms, with subgradient 0 at an all-zero filter."""
    sq = weight.flatten(1).square().sum(dim=1)
    safe = torch.where(sq > 0, sq, torch.ones_like(sq))
    return torch.where(sq > 0, safe.sqrt(), torch.zeros_like(sq))


def group_lasso_penalty(convs: list[nn.Conv2d]) -> torch.Tensor:
    """:math:`\\sum_f \\lVert W_f \\rVert_2` over every output filter of the given convs.

    Args:
        convs: the convs.

    Returns:
        the sum of their filters' L2 norms (differentiable; subgradient 0 at an all-zero filter).
    """
    return sum(_filter_norms(c.weight).sum() for c in convs)


def attach(model: nn.Module, kind: str, lam: float | None = None) -> nn.Module:
    """Record on ``model`` which penalty it trains with (attributes ``sparsity`` and
    ``sparsity_lambda``, read by :func:`penalty_fn`); returns ``model``.

    Args:
        model: the network.
        kind: one of :data:`PENALTIES`.
        lam: the penalty's strength, a number > 0 (default: :data:`DEFAULT_LAMBDA` of ``kind``).

    Returns:
        ``model``.

    Raises:
        ValueError: an unknown ``kind``, or a ``lam`` that is not a number > 0 (or is a bool).
    """
    check_choice("penalty", kind, PENALTIES)
    lam = DEFAULT_LAMBDA[kind] if lam is None else lam
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0:
        raise ValueError(f"lam (the {kind} penalty's strength) must be a number > 0, got {lam!r}")
    model.sparsity, model.sparsity_lambda = kind, float(lam)
    return model


def penalty_fn(model: nn.Module) -> Callable[[], torch.Tensor] | None:
    """The model's loss term as a callable (``None`` when it trains without one). The layers
    are found once here: for slimming the BatchNorms fed by a conv, for the group lasso
    every conv.

    Args:
        model: the network, with the attributes set by :func:`attach` (or without them).

    Returns:
        a callable without arguments giving ``lambda`` times the penalty, or ``None``.

    Raises:
        ValueError: slimming on a model without a BatchNorm fed by a conv.
    """
    kind = getattr(model, "sparsity", None)
    if kind is None:
        return None
    lam = float(model.sparsity_lambda)
    if kind == "slimming":
        mods = dict(model.named_modules())
        bns = [mods[b] for b in dict.fromkeys(conv_batchnorm_pairs(model).values()) if b is not None]
        if not bns:
            raise ValueError("slimming needs BatchNorm layers after the convs; this model has none")
        return lambda: lam * slimming_penalty(bns)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return lambda: lam * group_lasso_penalty(convs)
