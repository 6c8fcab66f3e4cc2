"""Filter importance and selection: the criteria, the per-layer and global policies, and
the number of filters a fraction prunes (the math: :mod:`bridgeout.prune`)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..registry import check_scope, CRITERIA, only_unit
from .._validate import check_choice


_EPS = 1e-12


# --------------------------------------------------------------------------- validation
def _check_fraction(value) -> float:
    """A pruning fraction in [0, 1)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fraction must be a real number in [0, 1), got {value!r}") from None
    if not (0.0 <= v < 1.0):  # also rejects NaN
        raise ValueError(f"fraction must be in [0, 1), got {value!r}")
    return v


def _check_seq(name: str, values, check) -> tuple:
    if isinstance(values, (str, int, float)):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence, got {values!r}") from None
    if not values:
        raise ValueError(f"{name} must not be empty")
    out = tuple(check(v) for v in values)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not contain duplicates, got {values!r}")
    return out


def n_pruned(channels: int, fraction: float) -> int:
    """:math:`k = \\lfloor f C \\rfloor` channels to prune from ``channels``, at most ``C - 1``
    (``1e-9`` is added before the floor to undo binary rounding, e.g. ``0.29 * 100``).

    Args:
        channels: :math:`C`, the unit's number of channels.
        fraction: :math:`f` (not validated here).

    Returns:
        :math:`k`, at least 0.
    """
    return max(0, min(channels - 1, math.floor(fraction * channels + 1e-9)))


# --------------------------------------------------------------------------- scores
def filter_scores(weight: torch.Tensor, criterion: str = "l2", *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance of every output filter of ``weight`` (shape ``(C_out, ...)``); the
    filters with the smallest values are pruned first.  See the module docstring for the
    formulas.  ``generator`` (CPU) is used by ``"random"`` only.  Returns float32, on the
    weight's device, shape ``(C_out,)``.

    Args:
        weight: a conv (or any) weight, ``(C_out, ...)``; not modified.
        criterion: one of :data:`bridgeout.registry.CRITERIA` except ``"bn_scale"``.
        generator: keyword-only; the CPU generator of ``"random"`` (None: the global RNG).

    Returns:
        the scores.

    Raises:
        ValueError: an unknown criterion, or ``"bn_scale"`` (it needs the model: use
            :func:`bridgeout.prune.prune` or :func:`bridgeout.prune.sweep`).
    """
    check_choice("criterion", criterion, CRITERIA)
    if criterion == "bn_scale":
        raise ValueError("criterion 'bn_scale' scores a filter by the BatchNorm it feeds, so it needs the "
                         "model: use prune() or sweep(), not filter_scores()")
    w = weight.detach().reshape(weight.shape[0], -1).float()
    if criterion == "l2":
        return torch.linalg.vector_norm(w, ord=2, dim=1)
    if criterion == "l1":
        return torch.linalg.vector_norm(w, ord=1, dim=1)
    if criterion == "random":
        return torch.rand(w.shape[0], generator=generator).to(w.device)
    unit = w / torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min(_EPS)
    overlap = unit @ unit.T
    overlap.diagonal().zero_()            # O = W W^T - I with unit rows: zero diagonal
    return 1.0 - overlap.abs().mean(dim=1)


def _normalise(scores: torch.Tensor, criterion: str) -> torch.Tensor:
    """Per-unit normalisation for ``scope="global"`` (norms divided by the unit's max)."""
    if criterion in ("l2", "l1"):
        return scores / scores.max().clamp_min(_EPS)
    return scores


def select(importances: Sequence[torch.Tensor], fraction: float, scope: str = "layer"
           ) -> list[torch.Tensor]:
    """Indices to prune in every unit, given each unit's importance vector.

    ``scope="layer"``: the :func:`n_pruned` smallest of each unit (stable sort).
    ``scope="global"``: the ``n_pruned(N, f)`` smallest over all units together (the values
    must already be comparable across units), never emptying a unit (so at most
    ``N - len(importances)`` in all, fewer than ``floor(f N)`` when ``f`` is close to 1).
    ``scope="only:<k>"``: the :func:`n_pruned` smallest of the k-th unit, none elsewhere.
    Returns sorted int64
    CPU tensors, one per unit.

    Args:
        importances: one 1-D importance tensor per unit.
        fraction: the fraction in [0, 1).
        scope: ``"layer"``, ``"global"`` or ``"only:<k>"``.

    Returns:
        one sorted int64 CPU index tensor per unit.

    Raises:
        ValueError: ``fraction`` outside [0, 1), an invalid scope, or ``"only:<k>"`` with ``k``
            beyond the number of units.
    """
    fraction = _check_fraction(fraction)
    check_scope(scope)
    imps = [s.detach().float().cpu() for s in importances]
    only = only_unit(scope)
    if only is not None:
        if only >= len(imps):
            raise ValueError(f"scope {scope!r}: the model has {len(imps)} prunable units "
                             f"('only:1' to 'only:{len(imps)}')")
        (chosen,) = select([imps[only]], fraction, "layer")
        return [chosen if i == only else torch.empty(0, dtype=torch.int64) for i in range(len(imps))]
    if scope == "layer":
        out = []
        for s in imps:
            k = n_pruned(s.numel(), fraction)
            order = torch.sort(s, stable=True).indices
            out.append(torch.sort(order[:k]).values)
        return out
    sizes = [s.numel() for s in imps]
    total = sum(sizes)
    k = math.floor(fraction * total + 1e-9)
    chosen: list[list[int]] = [[] for _ in imps]
    if k > 0:
        values = torch.cat(imps)
        unit_of = torch.repeat_interleave(torch.arange(len(imps)), torch.tensor(sizes))
        offset = torch.tensor([0, *np.cumsum(sizes)[:-1].tolist()])
        order = torch.sort(values, stable=True).indices.tolist()
        left = list(sizes)
        unit_list = unit_of.tolist()
        off = offset.tolist()
        taken = 0
        for i in order:
            u = unit_list[i]
            if left[u] > 1:
                chosen[u].append(i - off[u])
                left[u] -= 1
                taken += 1
                if taken == k:
                    break
    return [torch.tensor(sorted(c), dtype=torch.long) for c in chosen]


