"""How the book writes a number: accuracies in %, means with their seed spread.

One definition for every sentence and table the package writes (:mod:`bridgeout.summary`,
:mod:`bridgeout.why`, :mod:`bridgeout.claims`): accuracies are stored in [0, 1] and written
in % with one decimal; a mean over seeds carries its sample sd when there is more than one
seed; a missing value is an en dash.
"""
from __future__ import annotations

import math

import pandas as pd

__all__ = ["pct", "mean_sd", "points", "plural"]


def pct(x: float) -> str:
    """``0.8931`` -> ``"89.3"``; NaN -> ``"–"``.

    Args:
        x: an accuracy in [0, 1].

    Returns:
        ``100 * x`` with one decimal, or ``"–"`` when ``x`` is not finite.
    """
    return f"{100 * x:.1f}" if math.isfinite(x) else "–"


def mean_sd(values) -> str:
    """Mean ± sample sd of ``values`` (in [0, 1]) in %; the mean alone for one value; ``"–"``
    for none.

    Args:
        values: the values (NaN entries are dropped).

    Returns:
        the text, each number written by :func:`pct`.
    """
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return "–"
    return pct(v.mean()) + (f" ± {pct(v.std())}" if len(v) > 1 else "")


def points(x: float) -> str:
    """A difference of accuracies in signed points: ``-0.121`` -> ``"-12.1"``.

    Args:
        x: a difference of accuracies in [0, 1] units.

    Returns:
        ``100 * x`` with sign and one decimal, or ``"–"`` when ``x`` is not finite.
    """
    return f"{100 * x:+.1f}" if math.isfinite(x) else "–"


def plural(n: int, word: str) -> str:
    """``plural(1, "seed")`` -> ``"1 seed"``, ``plural(3, "seed")`` -> ``"3 seeds"``.

    Args:
        n: the count (converted with ``int``).
        word: the singular noun.

    Returns:
        ``n`` and ``word``, with an ``s`` appended unless ``n == 1``.
    """
    n = int(n)
    return f"{n} {word}{'' if n == 1 else 's'}"
