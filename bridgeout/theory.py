r"""Small, exact experiments behind the theory chapter (``notebooks/theory.ipynb``).

Every function here is pure (seeded by an explicit ``torch.Generator`` or ``seed``) and
cheap enough to run on a laptop CPU in seconds. The noise itself always comes from
:mod:`bridgeout.functional`, so the checks exercise the code the experiments train with.

Notation (as in :mod:`bridgeout.functional`): ``p`` is the drop probability,
:math:`\epsilon = m/(1-p) - 1` with :math:`m \sim \mathrm{Bernoulli}(1-p)`, so
:math:`\mathbb E[\epsilon] = 0` and :math:`\mathbb E[\epsilon^2] = p/(1-p)`, and Bridgeout
perturbs a weight as :math:`\tilde W = W + s(W)|W|^{q/2}\epsilon T`.

Linear model, squared loss. For inputs :math:`X \in \mathbb R^{n\times d}`, targets
:math:`Y \in \mathbb R^{n\times k}` and a weight :math:`W \in \mathbb R^{k\times d}` (the
layout of ``nn.Linear``), the summed squared loss
:math:`L(W) = \sum_{i,o} (Y_{io} - x_i^\top W_o)^2` satisfies

.. math::

    \mathbb E\,L(\tilde W) - L(W) = \frac{p}{1-p}\sum_{o,j}\Big(\sum_i x_{ij}^2\Big)
    |W_{oj}|^q\,T_{oj},

because the residual is :math:`r_{io} - x_i^\top\delta_o` with
:math:`\delta_{oj} = s|W_{oj}|^{q/2}\epsilon_{oj}T_{oj}`: the cross term has mean 0
(:math:`\mathbb E\epsilon = 0`) and :math:`\mathbb E(x_i^\top\delta_o)^2 =
\sum_j x_{ij}^2 |W_{oj}|^q T_{oj}\,\mathbb E\epsilon^2` (independent :math:`\epsilon_{oj}`,
:math:`s^2 = 1`). This holds whether one :math:`\epsilon` is shared by all rows ``i``
(Batch Bridgeout) or drawn per row (per-sample Bridgeout).

The closed forms are in :mod:`bridgeout.bridgepenalty` (re-exported here); this module samples
them: :func:`monte_carlo_penalty` and :func:`gradient_moments`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from . import functional as BF
from ._validate import check_fraction, check_int, check_positive, check_probability
from .bridgepenalty import (  # noqa: F401 - re-exported
    _check_linear,
    bridge_penalty,
    bridge_penalty_grad,
    expected_penalty,
    matched_p,
    noise_variance,
    relative_noise,
    relative_pull,
)
from .toymodel import bn_filter_scale_check, fit_regression, fraction_small, make_sparse_regression  # noqa: F401 - re-exported

__all__ = [
    "bn_filter_scale_check",
    "noise_variance",
    "bridge_penalty",
    "bridge_penalty_grad",
    "relative_pull",
    "relative_noise",
    "matched_p",
    "expected_penalty",
    "MonteCarloEstimate",
    "monte_carlo_penalty",
    "GradientMoments",
    "gradient_moments",
    "make_sparse_regression",
    "fit_regression",
    "fraction_small",
]


@dataclass(frozen=True)
class MonteCarloEstimate:
    """Sample mean of ``n`` i.i.d. draws and its standard error ``std / sqrt(n)``.

    Attributes:
        mean: the sample mean.
        stderr: its standard error.
        n: the number of draws.
    """

    mean: float
    stderr: float
    n: int

    def z(self, value: float) -> float:
        """``(mean - value) / stderr``: how many standard errors the estimate is off ``value``.

        Args:
            value: the value to compare with.

        Returns:
            the z-score; with a zero standard error 0 when ``mean == value``, else ``inf``.
        """
        return (self.mean - value) / self.stderr if self.stderr > 0 else (0.0 if self.mean == value else math.inf)


def monte_carlo_penalty(x: Tensor, y: Tensor, weight: Tensor, p: float, q: float, *,
                        n_draws: int = 20_000, target_fraction: float = 1.0, signed: bool = False,
                        per_sample: bool = False, generator: torch.Generator | None = None,
                        chunk: int = 2048) -> MonteCarloEstimate:
    r"""Monte Carlo estimate of :math:`\mathbb E\,L(\tilde W) - L(W)` for the summed squared loss
    :math:`L(W) = \sum_{i,o}(Y_{io} - x_i^\top W_o)^2`, with the noise drawn by
    :mod:`bridgeout.functional`:

    * ``per_sample=False``: one :func:`~bridgeout.functional.bridgeout` draw of ``W`` per
      Monte Carlo sample, shared by all ``n`` rows (Batch Bridgeout);
    * ``per_sample=True``: :func:`~bridgeout.functional.bridgeout_linear_per_sample`, one
      draw per row.

    Draws are vectorised ``chunk`` at a time (copies of ``W`` stacked as extra rows, which
    leaves the per-row targeting unchanged). The estimate should match
    :func:`expected_penalty` within a few standard errors.

    Args:
        x: inputs (n, d).
        y: targets (n, k), or (n,) for k = 1.
        weight: (k, d) or (d,).
        p: drop probability in [0, 1).
        q: exponent > 0.
        n_draws: keyword-only; Monte Carlo samples, >= 2.
        target_fraction: keyword-only; fraction in (0, 1] of targeted entries per row.
        signed: keyword-only; the ``sign(W)`` factor.
        per_sample: keyword-only; see above.
        generator: keyword-only; the noise's generator (None: the global RNG).
        chunk: keyword-only; draws per vectorised batch, >= 1.

    Returns:
        :class:`MonteCarloEstimate` of the penalty (mean, standard error, ``n_draws``).

    Raises:
        ValueError: an argument out of range, or shapes that do not fit.
    """
    p = check_probability("p", p)
    q = check_positive("q", q)
    tf = check_fraction("target_fraction", target_fraction)
    n_draws = check_int("n_draws", n_draws, 2)
    chunk = check_int("chunk", chunk, 1)
    x, y, w = _check_linear(x, y, weight)
    x, y, w = x.detach(), y.detach(), w.detach()
    n, d = x.shape
    k = w.shape[0]
    clean = float((y - x @ w.T).square().sum())
    samples = []
    done = 0
    with torch.no_grad():
        while done < n_draws:
            c = min(chunk, n_draws - done)
            if per_sample:
                x_rep = x.repeat(c, 1)  # (c*n, d): row r belongs to draw r // n
                out = BF.bridgeout_linear_per_sample(x_rep, w, None, p, q, tf, signed, generator)
                res = y.repeat(c, 1) - out
                loss = res.square().reshape(c, n * k).sum(dim=1)
            else:
                w_rep = w.repeat(c, 1)  # (c*k, d): draw j uses rows j*k .. j*k+k-1
                w_noisy = BF.bridgeout(w_rep, p, q, tf, signed, generator).reshape(c, k, d)
                res = y.unsqueeze(0) - torch.einsum("nd,ckd->cnk", x, w_noisy)
                loss = res.square().reshape(c, n * k).sum(dim=1)
            samples.append(loss.double() - clean)
            done += c
    s = torch.cat(samples)
    return MonteCarloEstimate(float(s.mean()), float(s.std(unbiased=True) / math.sqrt(n_draws)), n_draws)


# --------------------------------------------------------------------------- gradient noise
@dataclass(frozen=True)
class GradientMoments:
    """Per-element mean and (unbiased) variance of a stochastic gradient over ``n`` draws.

    Attributes:
        mean: the per-element mean.
        var: the per-element unbiased variance.
        n: the number of draws.
    """

    mean: Tensor
    var: Tensor
    n: int

    @property
    def stderr(self) -> Tensor:
        """Standard error of :attr:`mean`, ``sqrt(var / n)``."""
        return (self.var / self.n).sqrt()

    @property
    def total_variance(self) -> float:
        r""":math:`\operatorname{tr}\operatorname{Cov} = \sum_j \operatorname{Var}[g_j]`."""
        return float(self.var.sum())


def gradient_moments(x: Tensor, y: Tensor, weight: Tensor, p: float, q: float, *,
                     n_draws: int = 2000, per_sample: bool = False, target_fraction: float = 1.0,
                     signed: bool = False, generator: torch.Generator | None = None,
                     chunk: int = 512) -> GradientMoments:
    r"""Mean and variance, over noise draws, of the mini-batch gradient
    :math:`g = \nabla_W \frac1n\sum_i \|y_i - \tilde W_i x_i\|^2` of a linear model (no bias).

    ``per_sample=False``: :math:`\tilde W_i = \tilde W` for all ``i`` (one
    :func:`~bridgeout.functional.bridgeout` draw per step, Batch Bridgeout).
    ``per_sample=True``: independent :math:`\tilde W_i` per example
    (:func:`~bridgeout.functional.bridgeout_linear_per_sample`).

    Both have the same expected gradient: each example's term depends on the noise only
    through its own :math:`\tilde W_i`, whose distribution is the same in both schemes,
    and expectation is linear. The variance differs: per-sample noise averages over the
    ``n`` examples, shared noise does not.

    The batch-shared draws are vectorised ``chunk`` at a time; the per-sample ones call
    :func:`~bridgeout.functional.bridgeout_linear_per_sample` once per draw.

    Args:
        x: inputs (n, d).
        y: targets (n, k), or (n,) for k = 1.
        weight: (k, d) or (d,).
        p: drop probability in [0, 1).
        q: exponent > 0.
        n_draws: keyword-only; noise draws, >= 2.
        per_sample: keyword-only; see above.
        target_fraction: keyword-only; fraction in (0, 1] of targeted entries per row.
        signed: keyword-only; the ``sign(W)`` factor.
        generator: keyword-only; the noise's generator (None: the global RNG).
        chunk: keyword-only; draws per vectorised batch (batch-shared noise only), >= 1.

    Returns:
        :class:`GradientMoments` with tensors shaped like ``weight``.

    Raises:
        ValueError: an argument out of range, or shapes that do not fit.
    """
    p = check_probability("p", p)
    q = check_positive("q", q)
    tf = check_fraction("target_fraction", target_fraction)
    n_draws = check_int("n_draws", n_draws, 2)
    chunk = check_int("chunk", chunk, 1)
    x, y, w0 = _check_linear(x, y, weight)
    x, y, w0 = x.detach(), y.detach(), w0.detach()
    k, d = w0.shape
    grads = torch.empty((n_draws, k, d), dtype=torch.float64)
    if per_sample:
        w = w0.clone().requires_grad_(True)
        for t in range(n_draws):
            pred = BF.bridgeout_linear_per_sample(x, w, None, p, q, tf, signed, generator)
            loss = (y - pred).square().sum(dim=1).mean()
            (g,) = torch.autograd.grad(loss, w)
            grads[t] = g.double()
    else:
        # ``chunk`` draws at once: c stacked copies of W form one leaf; one bridgeout call
        # perturbs each copy with its own rows of noise (per-row targeting is unchanged by
        # stacking), so the gradient w.r.t. copy c is the gradient of draw c.
        done = 0
        while done < n_draws:
            c = min(chunk, n_draws - done)
            w_rep = w0.repeat(c, 1).requires_grad_(True)  # (c*k, d)
            w_noisy = BF.bridgeout(w_rep, p, q, tf, signed, generator).reshape(c, k, d)
            pred = torch.einsum("nd,ckd->cnk", x, w_noisy)
            loss = (y.unsqueeze(0) - pred).square().sum(dim=2).mean(dim=1).sum()
            (g,) = torch.autograd.grad(loss, w_rep)
            grads[done:done + c] = g.reshape(c, k, d).double()
            done += c
    shape = weight.shape
    return GradientMoments(grads.mean(0).reshape(shape), grads.var(0, unbiased=True).reshape(shape), n_draws)
