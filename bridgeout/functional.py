r"""Noise math of (Batch) Bridgeout and the baselines it is compared with, as pure functions.

Notation
--------
``p`` is the DROP probability. One Bernoulli mask ``m ~ Bernoulli(1 - p)`` gives the
zero-mean multiplicative noise

.. math::

    \epsilon = \frac{m}{1-p} - 1, \qquad
    \mathbb E[\epsilon] = 0, \qquad
    \operatorname{Var}[\epsilon] = \mathbb E[\epsilon^2] = \frac{p}{1-p}.

Bridgeout perturbs a weight tensor :math:`W` as

.. math::

    \tilde W = W + s(W)\,|W|^{q/2}\,\epsilon\,T,

with :math:`s(W) = \operatorname{sign}(W)` (``signed=True``, the Sparseout-paper form, for
which ``q = 2`` is exactly DropConnect) or :math:`s(W) = 1` (``signed=False``, the variant the
published experiments run), and :math:`T` the 0/1 targeting mask of :func:`targeting_mask`.
Hence :math:`\mathbb E[\tilde W] = W` and
:math:`\operatorname{Var}[\tilde W_{ij}] = \frac{p}{1-p}|W_{ij}|^q T_{ij}` (exactly 0 where
``T`` is 0). For a linear model :math:`y = Xw` with squared loss the noise adds, in
expectation, the data-weighted bridge (:math:`L_q`) penalty

.. math::

    \mathbb E\big[\|y - X\tilde w\|^2\big] - \|y - Xw\|^2
    = \frac{p}{1-p} \sum_j \Big(\sum_i x_{ij}^2\Big) |w_j|^q\,T_j ,

whether one noise sample is shared by the whole batch ("Batch" Bridgeout,
:func:`bridgeout`) or drawn per example (:func:`bridgeout_linear_per_sample`): only
:math:`\mathbb E[\epsilon^2]` enters.

Random numbers
--------------
Every function draws ``u = torch.rand(shape, generator=generator)`` once (float32 for
half/bfloat16 tensors, else the tensor's dtype, on the tensor's device) and keeps ``u < 1 - p``.
The same generator state therefore gives the same mask in :func:`bridgeout`,
:func:`dropconnect` and :func:`sparseout`. ``p == 0`` returns the input unchanged and draws
nothing (all functions alike), so with ``p == 0`` the generator is not advanced.

The in-place kernels (the draw, the powers and the ``torch.autograd.Function`` classes) are in
:mod:`bridgeout._noisekernels`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._noisekernels import (  # noqa: F401 - re-exported
    _abs_pow_,
    _abs_pow_m1_,
    _bridgeout_inplace,
    _BridgeoutFunction,
    _keep_scale,
    _noise,
    _power_derivative,
    _SignedPowerFunction,
)
from ._validate import check_finite, check_fraction, check_positive, check_probability
from .targeting import LOW_PRECISION as _LOW_PRECISION  # noqa: F401 - re-exported
from .targeting import _target_units, _unit_norms, num_targeted, targeting_mask  # noqa: F401 - re-exported (tests read _unit_norms)

__all__ = [
    "targeting_mask",
    "num_targeted",
    "bridgeout",
    "dropconnect",
    "sparseout",
    "targeted_dropout",
    "bridgeout_linear_per_sample",
]


def _scale_targeted(scale: Tensor, units: Tensor | None) -> Tensor:
    """Set the multiplicative noise to 1 outside the targeted units (in place)."""
    if units is not None:
        scale.masked_fill_(~units, 1.0)
    return scale


def _bridgeout(weight: Tensor, p: float, q: float, target_fraction: float = 1.0,
               signed: bool = False, generator=None) -> Tensor:
    """Unchecked :func:`bridgeout` (arguments assumed valid: used by ``bridgeout.nn``,
    which validates at construction; avoids a per-step ``isfinite`` host sync on GPU)."""
    if p == 0.0:
        return weight
    a = 0.5 * q
    if signed and a == 1.0:
        # s(W)|W| = W: W~ = W (1 + eps T) = W * (T ? m/(1-p) : 1), computed exactly as
        # dropconnect computes it, so both agree bit for bit (forward and gradient m/(1-p)).
        scale = _keep_scale(weight.shape, weight, p, generator)
        return weight * _scale_targeted(scale, _target_units(weight, target_fraction))
    return _BridgeoutFunction.apply(weight, p, a, target_fraction, signed, generator)


def bridgeout(weight: Tensor, p: float, q: float, target_fraction: float = 1.0,
              signed: bool = False, generator: torch.Generator | None = None) -> Tensor:
    r"""Batch Bridgeout: one random perturbation of a whole weight tensor.

    .. math::

        \tilde W = W + s(W)\,|W|^{q/2}\,\epsilon\,T,\qquad
        \epsilon = \frac{m}{1-p} - 1,\; m \sim \mathrm{Bernoulli}(1-p)

    with ONE draw ``u = torch.rand(weight.shape, generator=generator)``, ``m = u < 1 - p``,
    per call (a layer calls this once per forward pass, so the whole mini-batch shares the
    sample), :math:`s(W) = \operatorname{sign}(W)` if ``signed`` else 1 and ``T =
    targeting_mask(weight, target_fraction)``.

    Moments: :math:`\mathbb E[\tilde W] = W`;
    :math:`\operatorname{Var}[\tilde W] = \frac{p}{1-p}|W|^q` where ``T`` is True, exactly 0
    elsewhere. Expected penalty for a linear model with squared loss:
    :math:`\frac{p}{1-p}\sum_j(\sum_i x_{ij}^2)|w_j|^q T_j` (see the module docstring).

    Gradient: the exact derivative
    :math:`\partial\tilde W/\partial W = 1 + \frac{d}{dW}[s(W)|W|^{q/2}]\,\epsilon\,T`
    (``T`` is piecewise constant in ``W``: derivative 0 almost everywhere). It is finite at
    ``W == 0`` for every ``q > 0``: with ``a = q/2``,

    * unsigned: ``d|W|^a/dW`` at 0 is taken as 0 for every ``a`` -- the symmetric (central)
      derivative of the even function ``|W|^a``, equal to the true derivative for ``a > 1``
      and to torch's ``sign(0) = 0`` subgradient of ``abs`` for ``a == 1``; for ``a < 1``
      the one-sided derivatives are infinite;
    * signed: ``d[sign(W)|W|^a]/dW`` at 0 is 1 for ``q == 2`` (the function is ``W``), 0 for
      ``q > 2`` (exact) and 0 by convention for ``q < 2`` (the true derivative is +inf).

    ``signed=True, q=2`` is DropConnect exactly: on targeted entries ``W~ = W m/(1-p)`` with
    gradient ``m/(1-p)``, bit-for-bit equal to :func:`dropconnect` for the same generator
    state when ``target_fraction == 1``.

    Implementation: ``W~ = W (1 + R)`` with ``R = (s(W)|W|^(q/2) / W) eps T`` (0 where ``W == 0``),
    whose derivative is ``1 + (q/2) R``; the backward pass is one fused multiply-add and only
    ``R`` is kept for it (one weight-sized tensor). Only first derivatives are supported. With
    float32 weights and ``q < ~0.24``, ``|W|^(q/2-1)`` overflows for subnormal ``W``; such
    entries are treated like ``W == 0``.

    Args:
        weight: weight tensor (any shape; see :func:`targeting_mask` for the ranking).
        p: drop probability in [0, 1). ``p == 0`` returns ``weight`` itself and draws nothing.
        q: bridge exponent, > 0.
        target_fraction: fraction of kernels per output filter that get noise, in (0, 1].
        signed: multiply the noise by ``sign(W)`` (Sparseout form).
        generator: ``torch.Generator`` on ``weight.device``, or None for the global RNG.

    Returns:
        the perturbed weight :math:`\tilde W`, same shape and dtype as ``weight``
        (``weight`` itself when ``p == 0``).

    Raises:
        ValueError: naming the argument, for ``p`` outside [0, 1), ``q <= 0``,
            ``target_fraction`` outside (0, 1] or non-finite weights.
    """
    p = check_probability("p", p)
    q = check_positive("q", q)
    tf = check_fraction("target_fraction", target_fraction)
    check_finite("weight", weight)
    return _bridgeout(weight, p, q, tf, bool(signed), generator)


def _dropconnect(weight: Tensor, p: float, generator=None) -> Tensor:
    """Unchecked :func:`dropconnect`."""
    if p == 0.0:
        return weight
    return weight * _keep_scale(weight.shape, weight, p, generator)


def dropconnect(weight: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    r"""DropConnect: :math:`\tilde W = W\,m/(1-p)`, ``m = torch.rand(weight.shape, generator) < 1 - p``.

    Same draw as :func:`bridgeout`, so ``bridgeout(W, p, 2, 1.0, signed=True, generator=g1)``
    equals ``dropconnect(W, p, generator=g2)`` element for element when ``g1`` and ``g2``
    are in the same state. Gradient ``m/(1-p)``. ``p == 0`` returns ``weight``.

    Args:
        weight: weight tensor (any shape).
        p: drop probability in [0, 1).
        generator: ``torch.Generator`` on ``weight.device``, or None for the global RNG.

    Returns:
        the masked and rescaled weight, same shape as ``weight``.

    Raises:
        ValueError: ``p`` outside [0, 1), or non-finite weights.
    """
    p = check_probability("p", p)
    check_finite("weight", weight)
    return _dropconnect(weight, p, generator)


def _sparseout(x: Tensor, p: float, q: float, signed: bool = True, generator=None) -> Tensor:
    """Unchecked :func:`sparseout`."""
    return _bridgeout(x, p, q, 1.0, signed, generator)


def sparseout(x: Tensor, p: float, q: float, signed: bool = True,
              generator: torch.Generator | None = None) -> Tensor:
    r"""Sparseout: Bridgeout noise on activations, a fresh draw for every element.

    :math:`\tilde x = x + s(x)|x|^{q/2}\epsilon` with ``eps`` drawn like :func:`bridgeout`
    (``torch.rand(x.shape)``; for a batch every example gets its own noise because the
    draw covers the batch dimension). :math:`\mathbb E[\tilde x] = x`,
    :math:`\operatorname{Var}[\tilde x] = \frac{p}{1-p}|x|^q`. With ``signed=True, q=2`` this
    is exactly inverted dropout ``x m/(1-p)`` (forward and gradient). The gradient follows
    :func:`bridgeout`'s convention at ``x == 0`` (common after a ReLU): finite for all ``q``.

    ``x`` is not checked for finiteness (activations are checked nowhere else either).

    Args:
        x: activations (any shape).
        p: drop probability in [0, 1); ``p == 0`` returns ``x``.
        q: bridge exponent, > 0.
        signed: multiply the noise by ``sign(x)`` (the Sparseout paper's form, the default).
        generator: ``torch.Generator`` on ``x.device``, or None for the global RNG.

    Returns:
        :math:`\tilde x`, same shape as ``x``.

    Raises:
        ValueError: ``p`` outside [0, 1) or ``q <= 0``.
    """
    p = check_probability("p", p)
    q = check_positive("q", q)
    return _sparseout(x, p, q, bool(signed), generator)


def _targeted_dropout(x: Tensor, p: float, target_fraction: float = 0.75, generator=None) -> Tensor:
    """Unchecked :func:`targeted_dropout`."""
    if p == 0.0:
        return x
    scale = _keep_scale(x.shape, x, p, generator)
    return x * _scale_targeted(scale, _target_units(x.detach(), target_fraction))


def targeted_dropout(x: Tensor, p: float, target_fraction: float = 0.75,
                     generator: torch.Generator | None = None) -> Tensor:
    r"""Targeted (activation) dropout, the paper's dropout baseline.

    For an input (N, C, H, W) (or (N, C), or (N, C, *)): per sample ``n``, the
    ``floor(C * target_fraction)`` channels whose activation map ``x[n, c]`` has the smallest
    L2 norm (``|x[n, c]|`` for 2-D input; ties to the lower channel index) are eligible.
    Eligible activations are dropped element-wise with probability ``p`` and the kept ones
    scaled by ``1/(1-p)``; the other channels pass unchanged. ``target_fraction == 1`` is
    plain inverted dropout. One draw ``torch.rand(x.shape)`` (same convention as
    :func:`bridgeout`); ``p == 0`` returns ``x``. The ranking is the one of
    :func:`targeting_mask` applied to ``x`` (samples play the role of output filters).

    Args:
        x: activations (N, C, *).
        p: drop probability in [0, 1).
        target_fraction: fraction of channels per sample that are eligible, in (0, 1].
        generator: ``torch.Generator`` on ``x.device``, or None for the global RNG.

    Returns:
        the activations after dropout, same shape as ``x``.

    Raises:
        ValueError: ``p`` outside [0, 1) or ``target_fraction`` outside (0, 1].
    """
    p = check_probability("p", p)
    tf = check_fraction("target_fraction", target_fraction)
    return _targeted_dropout(x, p, tf, generator)


def _bridgeout_linear_per_sample(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, q: float,
                                 target_fraction: float = 1.0, signed: bool = False,
                                 generator=None) -> Tensor:
    """Unchecked :func:`bridgeout_linear_per_sample` for 2-D ``x``."""
    clean = torch.nn.functional.linear(x, weight, bias)
    if p == 0.0:
        return clean
    n = x.shape[0]
    noise = _noise((n,) + tuple(weight.shape), weight, p, _target_units(weight, target_fraction), generator)
    f = _SignedPowerFunction.apply(weight, 0.5 * q, signed)
    # y[n, o] += sum_i x[n, i] f[o, i] noise[n, o, i]
    return clean + torch.einsum("ni,noi->no", x, noise * f)


def bridgeout_linear_per_sample(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, q: float,
                                target_fraction: float = 1.0, signed: bool = False,
                                generator: torch.Generator | None = None) -> Tensor:
    r"""Linear layer with per-sample Bridgeout: a separate weight perturbation per example.

    ``y[n] = x[n] @ W~_n^T + b`` with ``W~_n = W + s(W)|W|^(q/2) eps_n T`` and the noise of all
    examples drawn at once, ``torch.rand((N, out, in), generator=generator)``. Same
    expectation and expected penalty as the batch version (:func:`bridgeout`); the
    examples' gradients get independent noise (lower gradient variance). Memory
    O(N * out * in): meant for the small models of the theory chapter.

    Args:
        x: input (N, in).
        weight: (out, in).
        bias: (out,) or None.
        p: as in :func:`bridgeout`; ``p == 0`` returns the plain linear layer's output.
        q: as in :func:`bridgeout`.
        target_fraction: as in :func:`bridgeout`.
        signed: as in :func:`bridgeout`.
        generator: as in :func:`bridgeout`.

    Returns:
        (N, out) tensor.

    Raises:
        ValueError: ``p``, ``q`` or ``target_fraction`` out of range, non-finite weights, or
            ``x`` and ``weight`` not 2-D with matching ``in``.
    """
    p = check_probability("p", p)
    q = check_positive("q", q)
    tf = check_fraction("target_fraction", target_fraction)
    check_finite("weight", weight)
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x must be (N, in) and weight (out, in) with matching in; got x {tuple(x.shape)}"
                         f" and weight {tuple(weight.shape)}")
    return _bridgeout_linear_per_sample(x, weight, bias, p, q, tf, bool(signed), generator)
