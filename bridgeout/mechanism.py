"""The measures behind the comparison's mechanism: the post-BatchNorm energy of each channel
(:func:`channel_energy`) and the share of it the pruned filters carry (:func:`energy_removed`),
how much of the one-shot loss re-estimating BatchNorm wins back (:func:`bn_recovery`), and
Pearson's r of two measures (:func:`correlation`). :mod:`bridgeout.comparison` re-exports
these names.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["channel_energy", "energy_removed", "bn_recovery", "correlation"]


def channel_energy(filters: pd.DataFrame, eps: float = 1e-5) -> pd.Series:
    """Second moment of each channel's BatchNorm output in eval mode when its input has the
    recorded running mean and variance: ``gamma**2 * var / (var + eps) + beta**2``
    (:class:`torch.nn.BatchNorm2d`'s default ``eps``). NaN where the row has no BatchNorm or
    no running statistics (rows written before ``bn_var`` was recorded).

    Args:
        filters: ``filters`` rows (``gamma``, ``beta``, ``bn_var``).
        eps: the BatchNorm's epsilon.

    Returns:
        the energy per row.
    """
    var = filters["bn_var"].astype(float)
    return filters["gamma"].astype(float) ** 2 * var / (var + eps) + filters["beta"].astype(float) ** 2


def energy_removed(filters: pd.DataFrame, fraction: float, eps: float = 1e-5) -> pd.DataFrame:
    """Per run: the share of the post-BatchNorm channel energy (:func:`channel_energy`) that
    the channels of the pruned filters carry, when the ``fraction`` of smallest-L2-norm filters
    of every layer is pruned (:func:`bridgeout.prune.n_pruned` per layer, ties to the lower
    index, as :func:`bridgeout.prune.select`). Columns ``run_id, share`` (pooled over the
    layers: removed energy / total energy) and ``layer_mean`` (the mean of the per-layer
    shares), plus ``arm`` and ``seed`` when the rows have them. Layers without running
    statistics are left out; a run with none gets NaN.

    Args:
        filters: ``filters`` rows.
        fraction: the fraction of filters pruned per layer.
        eps: the BatchNorm's epsilon (:func:`channel_energy`).

    Returns:
        one row per run.
    """
    from .prune import n_pruned  # deferred: loads torch
    f = filters.assign(energy=channel_energy(filters, eps))
    rows = []
    for rid, run in f.groupby("run_id", sort=False):
        removed = total = 0.0
        shares = []
        for _, layer in run.groupby("layer", sort=False):
            if layer["energy"].isna().any():
                continue
            order = layer.sort_values(["norm", "filter"], kind="stable")
            k = n_pruned(len(order), fraction)
            gone, all_ = float(order["energy"].iloc[:k].sum()), float(order["energy"].sum())
            removed, total = removed + gone, total + all_
            shares.append(gone / all_ if all_ > 0 else math.nan)
        row = {"run_id": rid, "share": removed / total if total > 0 else math.nan,
               "layer_mean": float(np.nanmean(shares)) if shares else math.nan}
        for col in ("arm", "seed"):
            if col in run:
                row[col] = run[col].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def bn_recovery(acc: pd.DataFrame, acc_recal: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Per run: how much of the one-shot loss at ``fraction`` re-estimating the BatchNorm
    statistics wins back, ``(recal - one_shot) / (unpruned - one_shot)`` (``recovered``; NaN when
    one shot lost nothing), beside ``unpruned``, ``one_shot`` and ``recal`` (accuracies of
    :func:`accuracy` without and with ``recalibrate_bn``, same run and fraction).

    Args:
        acc: rows of :func:`accuracy` without re-estimation.
        acc_recal: rows of :func:`accuracy` with re-estimation.
        fraction: the fraction pruned.

    Returns:
        one row per run present in both at ``fraction`` and unpruned: ``run_id, arm, seed,
        unpruned, one_shot, recal, recovered``.
    """
    def at(a, f):
        return a[np.isclose(a["fraction"], f)].set_index("run_id")
    one, rec, base = at(acc, fraction), at(acc_recal, fraction), at(acc, 0.0)
    ids = [r for r in one.index if r in rec.index and r in base.index]
    out = pd.DataFrame({"run_id": ids, "arm": [one.loc[r, "arm"] for r in ids],
                        "seed": [one.loc[r, "seed"] for r in ids],
                        "unpruned": [float(base.loc[r, "test_acc"]) for r in ids],
                        "one_shot": [float(one.loc[r, "test_acc"]) for r in ids],
                        "recal": [float(rec.loc[r, "test_acc"]) for r in ids]})
    lost = out["unpruned"] - out["one_shot"]
    out["recovered"] = np.where(lost > 0, (out["recal"] - out["one_shot"]) / lost.where(lost > 0), np.nan)
    return out


def correlation(x, y) -> tuple[float, int]:
    """Pearson's r of the finite pairs of ``x`` and ``y`` and their number (NaN below 3).

    Args:
        x: the first values.
        y: the second values, aligned with ``x``.

    Returns:
        ``(r, n)``; ``r`` is NaN with fewer than 3 pairs or no spread on either side.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return math.nan, n
    return float(np.corrcoef(x[ok], y[ok])[0, 1]), n
