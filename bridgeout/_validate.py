"""Argument checks shared by the package. Each raises ``ValueError`` naming the
argument, the value it got and what is allowed."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def _as_float(name: str, value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if math.isnan(out):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return out


def check_probability(name: str, value) -> float:
    """A drop probability: a number in [0, 1)."""
    v = _as_float(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def check_positive(name: str, value) -> float:
    """A strictly positive finite number (e.g. the bridge exponent q)."""
    v = _as_float(name, value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_fraction(name: str, value, *, low_open: bool = True) -> float:
    """A fraction in (0, 1] (``low_open=True``) or [0, 1) (``low_open=False``)."""
    v = _as_float(name, value)
    if low_open:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    elif not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """One of a fixed set of names."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(repr, choices))}")
    return value


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A tensor without NaN or infinite entries."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite; it contains NaN or infinite entries")
    return tensor
