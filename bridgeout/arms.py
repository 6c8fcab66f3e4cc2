"""The arms of a regularizer comparison: which arm a run belongs to, and the order, legend
label, colour and marker each arm is drawn with.

An *arm* is a regularizer with its noise form (the table in :mod:`bridgeout.comparison`):
:func:`arm_of` names a run's arm and :func:`arms_in` puts the arms of a table in display
order (:data:`ARMS` first, then the other known arms of :data:`ARM_LABELS`);
:data:`ARM_COLORS` and :data:`ARM_MARKERS` give each arm one colour and one marker on every
figure. :mod:`bridgeout.comparison` re-exports these names.
"""
from __future__ import annotations

import math

import pandas as pd

__all__ = ["ARMS", "ARM_LABELS", "ARM_COLORS", "ARM_MARKERS", "arm_of", "arms_in"]

#: Arms in display order, with their legend labels.
ARM_LABELS = {
    "weight_decay": "weight decay only",
    "dropout": "targeted Dropout",
    "bridgeout": "Batch Bridgeout (q = 1.5)",
    "targeted_dropconnect": "targeted DropConnect (signed, q = 2)",
    "slimming": "Network Slimming (L1 on γ)",
    "group_lasso": "group lasso (SSL)",
}
#: The paper's comparison (the two sparsity penalties are extra arms, drawn after these).
ARMS = ("weight_decay", "dropout", "bridgeout", "targeted_dropconnect")
#: Okabe-Ito colours, those of :data:`bridgeout.plots.PALETTE` for the shared regularizers.
ARM_COLORS = {"weight_decay": "#009E73", "dropout": "#E69F00", "bridgeout": "#0072B2",
              "targeted_dropconnect": "#CC79A7", "slimming": "#56B4E9", "group_lasso": "#000000"}
ARM_MARKERS = {"weight_decay": "^", "dropout": "s", "bridgeout": "o", "targeted_dropconnect": "D",
               "slimming": "P", "group_lasso": "X"}


def arm_of(regularizer: str, q: float, signed: bool) -> str:
    """The arm of a run: ``bridgeout`` with ``signed`` and ``q == 2`` is
    ``targeted_dropconnect``; other Bridgeout forms are ``bridgeout-q<q>[-signed]`` unless
    unsigned q = 1.5; other regularizers are their own arm.

    Args:
        regularizer: the run's regularizer.
        q: its bridge exponent.
        signed: its sign convention.

    Returns:
        the arm's name.
    """
    if regularizer != "bridgeout":
        return regularizer
    if bool(signed) and math.isclose(float(q), 2.0):
        return "targeted_dropconnect"
    if not signed and math.isclose(float(q), 1.5):
        return "bridgeout"
    return f"bridgeout-q{float(q):g}{'-signed' if signed else ''}"


def _with_arm(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["arm"] = [arm_of(r, q, s) for r, q, s in zip(out["regularizer"], out["q"], out["signed"])]
    return out


def arms_in(frame: pd.DataFrame) -> list[str]:
    """The arms present in ``frame``, in display order: :data:`ARMS`, then the other known
    arms of :data:`ARM_LABELS`, then any other (sorted).

    Args:
        frame: a table with an ``arm`` column.

    Returns:
        the arm names.
    """
    have = set(frame["arm"]) if len(frame) else set()
    known = [a for a in ARM_LABELS if a in have]
    return known + sorted(have - set(known))
