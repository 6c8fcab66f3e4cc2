"""The same weights, other pruners: each variant of the pruner (:data:`VARIANTS`: the
authors' pruner, mean replacement, one global ranking) against the paper's pruner on the same
runs (:func:`variant_effect`). :mod:`bridgeout.why` re-exports these names.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import comparison, results

__all__ = ["VARIANTS", "variant_effect"]

#: The same-weights variants of the pruner, as (label, rows selector) against the paper's
#: pruner (plain zeroing, per-layer ranking) on the same runs.
VARIANTS = {"published": ("the authors' pruner (BatchNorm scales zeroed too)", {"pruner": "published"}),
            "mean": ("mean replacement (each zeroed channel kept at its mean output)", {"pruner": "mean"}),
            "global": ("one global ranking instead of one per layer", {"scope": "global"})}


def variant_effect(root=None, variant: str = "published", fraction: float = 0.3,
                   recalibrate_bn: bool = False) -> pd.DataFrame:
    """Per arm: accuracy of ``variant`` (a key of :data:`VARIANTS`) minus the paper's pruner
    at ``fraction`` (L2, mask mode, no fine-tuning), on the same runs: ``arm, n, plain,
    variant, diff`` (means over runs, in [0, 1]). Empty when no run has the variant's rows.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).
        variant: a key of :data:`VARIANTS`.
        fraction: the fraction pruned.
        recalibrate_bn: compare the rows with (or without) BatchNorm re-estimation.

    Returns:
        one row per arm.

    Raises:
        KeyError: ``variant`` is not a key of :data:`VARIANTS`.
    """
    sel = VARIANTS[variant][1]
    j = results.load_joined(root, pruner=None)
    if not len(j):
        return pd.DataFrame(columns=["arm", "n", "plain", "variant", "diff"])
    j = comparison._with_arm(j)
    j = j[(j["criterion"] == "l2") & (j["mode"] == "mask") & (j["finetune_epochs"] == 0)
          & (j["recalibrate_bn"].astype(bool) == recalibrate_bn) & np.isclose(j["fraction"], fraction)]
    base = j[(j["pruner"] == "plain") & (j["scope"] == "layer")].set_index("run_id")["test_acc"]
    var = j.copy()
    for col, val in sel.items():
        var = var[var[col] == val]
    if "scope" not in sel:
        var = var[var["scope"] == "layer"]
    var = var[var["run_id"].isin(base.index)]
    if var.empty:
        return pd.DataFrame(columns=["arm", "n", "plain", "variant", "diff"])
    var = var.assign(plain=var["run_id"].map(base))
    out = var.groupby("arm").agg(n=("run_id", "nunique"), plain=("plain", "mean"), variant=("test_acc", "mean"))
    out["diff"] = out["variant"] - out["plain"]
    return out.reset_index()
