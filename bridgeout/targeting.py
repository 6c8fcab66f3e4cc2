r"""Targeting (Gomez et al. 2019, the ``T`` of :mod:`bridgeout.functional`): which kernels of
each output filter get noise. Per output filter, the ``target_fraction`` of its kernels (input
channels of a conv; entries of a Linear row) with the smallest L2 norm are targeted,
``floor(target_fraction * n)`` of the ``n``; ties go to the lower index. Pure functions.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._validate import check_finite, check_fraction

__all__ = ["num_targeted", "targeting_mask", "LOW_PRECISION"]

#: Floating types whose norms and noise are computed in float32.
LOW_PRECISION = (torch.float16, torch.bfloat16)
_LOW_PRECISION = LOW_PRECISION


def num_targeted(n: int, target_fraction: float) -> int:
    """``floor(n * target_fraction)``, the number of targeted kernels per output filter.

    The product is rounded to 9 decimals before flooring, so binary round-off cannot drop
    a kernel (``0.29 * 100 == 28.999999999999996`` in floating point, but gives 29 here).

    Args:
        n: the number of kernels per output filter.
        target_fraction: the fraction targeted (not validated here).

    Returns:
        the number of targeted kernels.
    """
    return int(math.floor(round(n * float(target_fraction), 9)))


def _unit_norms(weight: Tensor) -> Tensor:
    """Ranking score of each (row, column) unit: L2 norm over dims 2.. (``|w|`` for 2-D).

    Computed in float32 for half/bfloat16 weights so that rounding creates no extra ties,
    and on a contiguous copy of a channels_last weight: the norm of a strided kernel was
    10x slower on CPU (most of Bridgeout's overhead there) and rounded differently, so the
    ranking now depends on the values only, not on the memory layout.
    """
    w = weight.detach()
    if w.dtype in _LOW_PRECISION:
        w = w.float()
    if w.dim() == 2:
        return w.abs()
    return torch.linalg.vector_norm(w.contiguous().flatten(2), ord=2, dim=2)


def _rows_view(weight: Tensor) -> Tensor:
    """View weights of any rank as (out, in, *kernel): 0-D/1-D tensors are one row."""
    if weight.dim() >= 2:
        return weight
    return weight.reshape(1, -1)


def _kth_smallest(x: Tensor, k: int) -> Tensor:
    """Per-row k-th smallest value, shape (rows, 1). ``topk`` of the smaller side then a
    min/max: faster on CPU than ``kthvalue`` (same result)."""
    n = x.shape[1]
    if k <= n - k + 1:
        return torch.topk(x, k, dim=1, largest=False, sorted=False).values.amax(dim=1, keepdim=True)
    return torch.topk(x, n - k + 1, dim=1, largest=True, sorted=False).values.amin(dim=1, keepdim=True)


def _smallest_k(scores: Tensor, k: int) -> Tensor:
    """Bool mask of the ``k`` smallest entries of every row, ties to the lower column index.

    Equal to taking the first ``k`` indices of a stable ascending argsort, computed with one
    selection (a partial ``topk``, no full sort) instead of a sort. For float32 scores (>= 0) the
    ties are broken inside the key: the bit pattern of a non-negative float orders like its
    value, so ``key = bits * n + column`` is unique per row and orders by (score, column);
    the ``k`` smallest keys are those ``<=`` the row's k-th smallest key. Other dtypes: every
    entry strictly below the k-th smallest value ``v`` is selected plus, of the entries equal
    to ``v``, the first ``k - #(< v)`` in column order (a cumulative count).
    """
    n = scores.shape[1]
    if scores.dtype == torch.float32:
        cols = torch.arange(n, device=scores.device, dtype=torch.int64)
        key = scores.view(torch.int32).to(torch.int64).mul_(n).add_(cols)
        return key <= _kth_smallest(key, k)
    v = _kth_smallest(scores, k)
    below = scores < v
    tied = scores == v
    room = k - below.sum(dim=1, keepdim=True)
    return below | (tied & (tied.cumsum(dim=1) <= room))


def _target_units(weight: Tensor, target_fraction: float) -> Tensor | None:
    """Targeting mask at unit level, shaped to broadcast against ``weight``.

    Returns ``None`` when everything is targeted (``target_fraction == 1``), a bool tensor
    of shape (out, in, 1, ..., 1) otherwise (``weight.shape`` for 0-D/1-D weights). Cost:
    one norm reduction and one batched selection on the small (out, in) score matrix; no
    Python loop, no host synchronisation.
    """
    if target_fraction >= 1.0:
        return None
    w = _rows_view(weight)
    n_out, n_in = w.shape[0], w.shape[1]
    k = num_targeted(n_in, target_fraction)
    if k == 0:
        units = torch.zeros((n_out, n_in), dtype=torch.bool, device=weight.device)
    else:
        units = _smallest_k(_unit_norms(w), k)
    units = units.view((n_out, n_in) + (1,) * (w.dim() - 2))
    if weight.dim() < 2:
        units = units.reshape(weight.shape)
    return units


def targeting_mask(weight: Tensor, target_fraction: float) -> Tensor:
    r"""Which weights receive Bridgeout noise (``T`` in the module docstring).

    For a weight of shape (out, in, *kernel) (e.g. a conv weight (out, in, kh, kw)) every
    kernel ``weight[o, i]`` is scored by its L2 norm; within each output filter ``o`` the
    ``k = floor(in * target_fraction)`` kernels with the smallest norm are targeted (their
    whole kernel is True), ties broken in favour of the lower input-channel index (a
    stable sort). For a 2-D weight (out, in) each entry is its own kernel and is scored by
    ``|w|``. A 1-D (or 0-D) tensor is treated as a single row.

    ``target_fraction == 1`` targets everything; if ``k == 0`` (``in * target_fraction <
    1``) nothing is targeted and Bridgeout leaves the weight unchanged.

    Args:
        weight: tensor to rank (not modified; no gradient flows through the mask).
        target_fraction: fraction in (0, 1].

    Returns:
        Bool tensor with the shape of ``weight``.

    Raises:
        ValueError: ``target_fraction`` outside (0, 1], or non-finite ``weight``.
    """
    tf = check_fraction("target_fraction", target_fraction)
    if not isinstance(weight, Tensor):
        raise ValueError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    check_finite("weight", weight)
    units = _target_units(weight, tf)
    if units is None:
        return torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
    return units.expand(_rows_view(weight).shape).reshape(weight.shape).contiguous()
