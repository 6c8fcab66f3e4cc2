"""Argument checks shared by the package. Each raises ``ValueError`` naming the
argument, the value it got and what is allowed. Plain Python (torch only for type hints), so
the result tables validate without loading torch."""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    """A drop probability: a number in [0, 1).

    Args:
        name: the argument's name, for the error message.
        value: the value to check; anything ``float()`` accepts.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: ``value`` is not a real number (or is NaN) or lies outside [0, 1).
    """
    v = _as_float(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def check_positive(name: str, value) -> float:
    """A strictly positive finite number (e.g. the bridge exponent q).

    Args:
        name: the argument's name, for the error message.
        value: the value to check; anything ``float()`` accepts.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: ``value`` is not a real number (or is NaN), not > 0, or infinite.
    """
    v = _as_float(name, value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_fraction(name: str, value, *, low_open: bool = True) -> float:
    """A fraction in (0, 1] (``low_open=True``) or [0, 1) (``low_open=False``).

    Args:
        name: the argument's name, for the error message.
        value: the value to check; anything ``float()`` accepts.
        low_open: ``True`` for (0, 1], ``False`` for [0, 1).

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: ``value`` is not a real number (or is NaN) or lies outside the interval.
    """
    v = _as_float(name, value)
    if low_open:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    elif not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def check_int(name: str, value, minimum: int, *, none_ok: bool = False) -> int | None:
    """An integer (not a bool) >= ``minimum``; ``None`` passes through when ``none_ok``.

    Args:
        name: the argument's name, for the error message.
        value: the value to check.
        minimum: the smallest value allowed.
        none_ok: whether ``None`` is allowed.

    Returns:
        ``value`` as an ``int``, or ``None`` when ``value`` is ``None`` and ``none_ok``.

    Raises:
        ValueError: ``value`` is a bool, not an integer, or below ``minimum`` (or ``None``
            without ``none_ok``).
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " (or None)" if none_ok else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """One of a fixed set of names.

    Args:
        name: the argument's name, for the error message.
        value: the value to check.
        choices: the valid values.

    Returns:
        ``value`` unchanged.

    Raises:
        ValueError: ``value`` is not among ``choices`` (the message lists the valid ones).
    """
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(repr, choices))}")
    return value


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A tensor without NaN or infinite entries.

    Args:
        name: the argument's name, for the error message.
        tensor: the tensor to check.

    Returns:
        ``tensor`` unchanged.

    Raises:
        TypeError: ``tensor`` is not a tensor (has no callable ``isfinite`` or no ``dim``).
        ValueError: ``tensor`` contains NaN or infinite entries.
    """
    if not callable(getattr(tensor, "isfinite", None)) or not hasattr(tensor, "dim"):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__} ({tensor!r:.60})")
    if not bool(tensor.isfinite().all()):
        raise ValueError(f"{name} must be finite; it contains NaN or infinite entries")
    return tensor
