r"""The penalty Bridgeout puts on a weight, in closed form.

The noise's variance :math:`p/(1-p)` (:func:`noise_variance`), the bridge penalty
:math:`|w|^q` and its derivative (:func:`bridge_penalty`, :func:`bridge_penalty_grad`), how
hard it pulls a small weight compared with weight decay (:func:`relative_pull`), how much it
perturbs a weight relative to its size (:func:`relative_noise`), the drop probability at which
another exponent perturbs the targeted weights as much (:func:`matched_p`), and the expected
penalty of a linear model with squared loss (:func:`expected_penalty`, derived in the
docstring of :mod:`bridgeout.theory`). :mod:`bridgeout.theory` re-exports these names
beside the Monte Carlo checks that sample them; import them from there.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import functional as BF
from ._validate import check_fraction, check_positive, check_probability

__all__ = [
    "noise_variance",
    "bridge_penalty",
    "bridge_penalty_grad",
    "relative_pull",
    "relative_noise",
    "matched_p",
    "expected_penalty",
]


def _check_linear(x: Tensor, y: Tensor | None, weight: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
    """Shapes of the linear model: x (n, d), weight (k, d) or (d,), y (n, k) or (n,)."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor (n, d), got {getattr(x, 'shape', type(x))}")
    w = weight.reshape(1, -1) if weight.dim() == 1 else weight
    if w.dim() != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(f"weight must be (k, d) or (d,) with d = x.shape[1] = {x.shape[1]}, "
                         f"got {tuple(weight.shape)}")
    if y is not None:
        y = y.reshape(-1, 1) if y.dim() == 1 else y
        if y.shape != (x.shape[0], w.shape[0]):
            raise ValueError(f"y must be (n, k) = {(x.shape[0], w.shape[0])} (or (n,) for k = 1), "
                             f"got {tuple(y.shape)}")
    return x, y, w


# --------------------------------------------------------------------------- the penalty
def noise_variance(p: float) -> float:
    r""":math:`\operatorname{Var}\epsilon = \mathbb E\epsilon^2 = p/(1-p)` for
    :math:`\epsilon = m/(1-p) - 1`, :math:`m\sim\mathrm{Bernoulli}(1-p)`.

    (:math:`\epsilon = p/(1-p)` with probability :math:`1-p` and :math:`-1` with
    probability :math:`p`: :math:`\mathbb E\epsilon^2 = p^2/(1-p) + p = p/(1-p)`.)

    Args:
        p: drop probability in [0, 1).

    Returns:
        :math:`p/(1-p)`.

    Raises:
        ValueError: ``p`` outside [0, 1).
    """
    p = check_probability("p", p)
    return p / (1.0 - p)


def bridge_penalty(w: Tensor, q: float) -> Tensor:
    r"""The bridge penalty element-wise, :math:`|w|^q` (``q = 2``: ridge, ``q = 1``: lasso).

    Args:
        w: weights.
        q: exponent > 0.

    Returns:
        :math:`|w|^q`, shaped like ``w``.

    Raises:
        ValueError: ``q <= 0``.
    """
    q = check_positive("q", q)
    return w.abs().pow(q)


def bridge_penalty_grad(w: Tensor, q: float) -> Tensor:
    r"""Derivative of :math:`|w|^q`: :math:`q|w|^{q-1}\operatorname{sign}(w)` for :math:`w \ne 0`.

    At :math:`w = 0` it returns 0 (the subgradient choice; the one-sided derivatives are
    :math:`\pm q` for ``q = 1`` and infinite for ``q < 1``).

    Args:
        w: weights.
        q: exponent > 0.

    Returns:
        the derivative, shaped like ``w``.

    Raises:
        ValueError: ``q <= 0``.
    """
    q = check_positive("q", q)
    a = w.abs()
    g = q * a.pow(q - 1.0) * torch.sign(w)
    return torch.where(w == 0, torch.zeros_like(g), g)


def relative_pull(w: Tensor, q: float) -> Tensor:
    r"""Pull of the bridge penalty toward 0 relative to the ridge pull at the same weight:

    .. math::

        \frac{|\,\mathrm d|w|^q/\mathrm dw\,|}{|\,\mathrm dw^2/\mathrm dw\,|}
        = \frac{q|w|^{q-1}}{2|w|} = \frac q2 |w|^{q-2} ,

    equal to 1 everywhere for ``q = 2`` and growing without bound as :math:`w\to 0` for
    ``q < 2``: small weights are pushed to zero much harder than by weight decay.
    ``w == 0`` gives ``inf`` for ``q < 2``.

    Args:
        w: weights.
        q: exponent > 0.

    Returns:
        :math:`\frac q2 |w|^{q-2}`, shaped like ``w``.

    Raises:
        ValueError: ``q <= 0``.
    """
    q = check_positive("q", q)
    return 0.5 * q * w.abs().pow(q - 2.0)


def relative_noise(w: Tensor, p: float, q: float) -> Tensor:
    r"""Standard deviation of Bridgeout's perturbation of a weight relative to the weight,
    element-wise: :math:`\operatorname{sd}(s(w)|w|^{q/2}\epsilon)/|w| = |w|^{q/2-1}\sqrt{p/(1-p)}`
    (the sign convention does not change the magnitude). For ``q = 2`` it is
    :math:`\sqrt{p/(1-p)}` for every weight (0.65 at ``p = 0.3``); for ``q < 2`` it grows as
    the weight shrinks. ``w == 0`` gives ``inf`` for ``q < 2``.

    Args:
        w: weights.
        p: drop probability in [0, 1).
        q: exponent > 0.

    Returns:
        the relative standard deviation, shaped like ``w``.

    Raises:
        ValueError: ``p`` outside [0, 1) or ``q <= 0``.
    """
    q = check_positive("q", q)
    return w.abs().pow(0.5 * q - 1.0) * math.sqrt(noise_variance(p))


def matched_p(weights, *, p: float = 0.3, q: float = 1.5, q_to: float = 2.0,
              target_fraction: float = 0.75) -> dict:
    r"""The drop probability at which Bridgeout with exponent ``q_to`` perturbs the targeted
    weights as much, relative to themselves, as exponent ``q`` does at ``p``.

    With :math:`r_q(w) = |w|^{q/2-1}\sqrt{p/(1-p)}` (:func:`relative_noise`), the medians over
    the targeted weights :math:`T` (:func:`bridgeout.functional.targeting_mask`) are matched:
    :math:`\sqrt{p'/(1-p')}\,\mathrm{med}_T|w|^{q'/2-1} = \mathrm{med}_T r_q(w)`, so
    :math:`p' = s^2/(1+s^2)` with :math:`s = \mathrm{med}_T r_q / \mathrm{med}_T|w|^{q'/2-1}`.
    Targeted weights that are exactly 0 are left out of the medians.

    Args:
        weights: the conv weights of a trained network (a ``state_dict``'s 4-D ``weight``
            tensors, or any iterable of tensors; tensors that are not 4-D are ignored).
        p: keyword-only; the drop probability of exponent ``q``, in [0, 1).
        q: keyword-only; the exponent whose noise is matched.
        q_to: keyword-only; the exponent :math:`q'` to match it with.
        target_fraction: keyword-only; the targeted fraction, in (0, 1].

    Returns:
        ``{"p": pooled over every targeted weight, "per_tensor": [p' of each tensor],
        "relative_noise": pooled median of r_q, "relative_noise_to": the pooled median of the
        q' noise at p (before matching)}``.

    Raises:
        ValueError: ``p`` or ``target_fraction`` out of range, or no 4-D tensor among
            ``weights``.
    """
    p = check_probability("p", p)
    tf = check_fraction("target_fraction", target_fraction)
    tensors = [w.detach().float() for w in (weights.values() if isinstance(weights, dict) else weights)]
    tensors = [w for w in tensors if w.dim() == 4]
    if not tensors:
        raise ValueError("matched_p needs at least one 4-D conv weight, got none")

    def match(ws):
        vals = torch.cat([w[BF.targeting_mask(w, tf)] for w in ws])
        vals = vals[vals != 0]
        r_from = relative_noise(vals, p, q).median()
        base = vals.abs().pow(0.5 * q_to - 1.0).median()
        s = float(r_from / base)
        return s * s / (1.0 + s * s), float(r_from), float(base) * math.sqrt(noise_variance(p))

    pooled, r_from, r_to = match(tensors)
    return {"p": pooled, "per_tensor": [match([w])[0] for w in tensors], "relative_noise": r_from,
            "relative_noise_to": r_to}


def expected_penalty(x: Tensor, weight: Tensor, p: float, q: float,
                     target_fraction: float = 1.0) -> float:
    r"""Closed form of the penalty Bridgeout adds, in expectation, to the summed squared loss
    of a linear model (module docstring):

    .. math::

        R(W) = \frac{p}{1-p}\sum_{o,j}\Big(\sum_i x_{ij}^2\Big)|W_{oj}|^q\,T_{oj},
        \qquad T = \texttt{targeting\_mask}(W, \text{target\_fraction}).

    Args:
        x: inputs (n, d).
        weight: (k, d) (``nn.Linear`` layout) or (d,).
        p: drop probability in [0, 1).
        q: exponent > 0.
        target_fraction: fraction in (0, 1] of each row's smallest-``|w|`` entries that get noise.

    Returns:
        :math:`R(W)`.

    Raises:
        ValueError: an argument out of range, or shapes that do not fit.
    """
    p = check_probability("p", p)
    q = check_positive("q", q)
    tf = check_fraction("target_fraction", target_fraction)
    x, _, w = _check_linear(x, None, weight)
    w = w.detach()
    t = BF.targeting_mask(w, tf).to(w.dtype)
    col = x.detach().square().sum(dim=0)  # sum_i x_ij^2, shape (d,)
    return float(noise_variance(p) * (col * w.abs().pow(q) * t).sum())
