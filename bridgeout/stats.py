"""Small statistics the book's comparisons share: Welch's difference of two means with its
95 % interval (:func:`welch`) and the 97.5 % quantile of Student's t it needs (:func:`t975`,
tabulated, so that no statistics package is needed)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["welch", "t975"]

# Two-sided 95 % quantiles of Student's t by degrees of freedom (1..30), then 1.96.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def t975(df: float) -> float:
    """The 97.5 % quantile of Student's t with ``df`` (> 0, may be fractional: linear in
    1/df between tabulated integers; 1.96 beyond 30).

    Args:
        df: the degrees of freedom, > 0; values <= 1 give the quantile for one degree of freedom.

    Returns:
        the quantile.

    Raises:
        ValueError: ``df`` is not > 0.
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df!r}")
    if df >= 30:
        return 2.042 + (1.960 - 2.042) * (1 - 30 / df)
    if df <= 1:
        return _T975[0]
    lo, hi = int(math.floor(df)), int(math.ceil(df))
    if lo == hi:
        return _T975[lo - 1]
    w = (1 / lo - 1 / df) / (1 / lo - 1 / hi)
    return _T975[lo - 1] + w * (_T975[hi - 1] - _T975[lo - 1])


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """``mean(b) - mean(a)`` with its Welch 95 % interval: ``(diff, low, high, df)``;
    the interval is NaN with fewer than two values on either side.

    Args:
        a: the first sample.
        b: the second sample.

    Returns:
        ``(diff, low, high, df)``; ``diff`` is NaN when either sample is empty. With two or more
        values on each side but no spread at all, ``low == high == diff`` and ``df`` is infinite.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff, math.inf
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = t975(df) * se
    return diff, diff - h, diff + h, float(df)
