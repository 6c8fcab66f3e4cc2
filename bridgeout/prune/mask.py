"""Mask mode: the selected filters' weights set to zero, the network's shape unchanged."""
from __future__ import annotations


import torch
from torch import nn

from .scores import _normalise, filter_scores, select
from ..introspect import conv_batchnorm_pairs, conv_layers as prunable_convs, require_convs


# --------------------------------------------------------------------------- helpers
def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# --------------------------------------------------------------------------- mask mode
def _mask_selection(model: nn.Module, fraction: float, criterion: str, scope: str, seed: int
                    ) -> dict[str, torch.Tensor]:
    convs = require_convs(model)
    scores = _conv_scores(convs, criterion, seed, model)
    return _mask_selection_from_scores(convs, scores, fraction, criterion, scope)


def _bn_scales(model: nn.Module, names) -> dict[str, torch.Tensor]:
    """``{conv name: |gamma| of the BatchNorm channel each of its filters feeds}``."""
    pairs = conv_batchnorm_pairs(model)
    mods = dict(model.named_modules())
    out = {}
    for name in names:
        bn = pairs.get(name)
        if bn is None or mods[bn].weight is None:
            raise ValueError(f"criterion 'bn_scale': conv {name!r} feeds no affine BatchNorm, so its filters "
                             f"have no scale to rank by; use another criterion for this model")
        out[name] = mods[bn].weight.detach().abs().float().cpu()
    return out


def _conv_scores(convs, criterion: str, seed: int, model: nn.Module | None = None) -> list[torch.Tensor]:
    if criterion == "bn_scale":
        scales = _bn_scales(model, [n for n, _ in convs])
        scores = [scales[n] for n, _ in convs]
        _check_scores_finite([n for n, _ in convs], scores, criterion)
        return scores
    gen = _generator(seed)
    scores = [filter_scores(m.weight, criterion, generator=gen).cpu() for _, m in convs]
    _check_scores_finite([n for n, _ in convs], scores, criterion)
    return scores


def _check_scores_finite(names, scores, criterion: str) -> None:
    """Refuse non-finite pruning scores (a NaN weight would otherwise make its filter
    silently never pruned)."""
    for name, s in zip(names, scores):
        bad = torch.nonzero(~torch.isfinite(s)).flatten()
        if len(bad):
            raise ValueError(f"layer {name!r}: the {criterion} scores of filters {bad.tolist()[:10]} are not "
                             f"finite (NaN or inf weights); a network with such weights cannot be ranked")


def _mask_selection_from_scores(convs, scores, fraction, criterion, scope):
    if scope == "global":
        scores = [_normalise(s, criterion) for s in scores]
    idxs = select(scores, fraction, scope)
    return {name: i for (name, _), i in zip(convs, idxs)}


@torch.no_grad()
def _apply_mask(model: nn.Module, selection: dict[str, torch.Tensor]) -> nn.Module:
    mods = dict(model.named_modules())
    for name, idxs in selection.items():
        if len(idxs):
            w = mods[name].weight
            w[idxs.to(w.device)] = 0
    return model


def zeroed_filters(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{conv name: indices of all-zero output filters}`` for every conv of ``model``.

    Args:
        model: the network.

    Returns:
        sorted int64 CPU index tensors by conv name (empty where no filter is all zero).
    """
    out = {}
    for name, m in prunable_convs(model):
        w = m.weight.detach().reshape(m.weight.shape[0], -1)
        out[name] = torch.nonzero(~w.ne(0).any(dim=1)).flatten().cpu()
    return out


