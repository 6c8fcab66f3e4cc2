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
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._validate import check_finite, check_fraction, check_positive, check_probability
from .targeting import LOW_PRECISION as _LOW_PRECISION
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



# --------------------------------------------------------------------------- noise
# The noise path is written with in-place ops on freshly drawn buffers: on CPU every new
# weight-sized allocation costs page faults, which dominated the overhead of a naive version.
def _keep_scale(shape, like: Tensor, p: float, generator) -> Tensor:
    """The single uniform draw of every function here, as ``m / (1 - p)`` in ``like.dtype``.

    ``u = torch.rand(shape)`` (float32 for half/bfloat16), ``m = u < 1 - p``; returns 0 where
    dropped and ``1/(1-p)`` where kept (a fresh tensor the caller may modify), stored
    channels_last when ``like`` is a channels_last 4-D tensor of that shape (same values).
    """
    dtype = torch.float32 if like.dtype in _LOW_PRECISION else like.dtype
    u = torch.rand(shape, generator=generator, device=like.device, dtype=dtype)
    if like.dim() == 4 and tuple(shape) == tuple(like.shape) and not like.is_contiguous() \
            and like.is_contiguous(memory_format=torch.channels_last):
        # the same draws, laid out like ``like`` (NHWC), so that the noisy tensor keeps the
        # layout of the weights / activations and the conv needs no reorder
        u = u.contiguous(memory_format=torch.channels_last)
    u.lt_(1.0 - p)
    if u.dtype != like.dtype:
        u = u.to(like.dtype)
    return u.mul_(1.0 / (1.0 - p))


def _noise(shape, like: Tensor, p: float, units: Tensor | None, generator) -> Tensor:
    """``eps * T`` with ``eps = m/(1-p) - 1`` (``p/(1-p)`` where kept, ``-1`` where dropped)."""
    eps = _keep_scale(shape, like, p, generator).sub_(1.0)
    if units is not None:
        eps.mul_(units)
    return eps


def _abs_pow_(x: Tensor, a: float) -> Tensor:
    """``x ** a`` in place for ``x >= 0``; square roots instead of ``pow`` for multiples of 1/4
    up to 2 (several times faster on CPU, correctly rounded steps)."""
    if a == 1.0:
        return x
    if a == 0.5:
        return x.sqrt_()
    if a == 0.25:
        return x.sqrt_().sqrt_()
    if a == 0.75:
        s = x.sqrt_()
        return s.mul_(s.sqrt())
    if a == 1.5:
        return x.mul_(x.sqrt())
    if a == 1.25:
        return x.mul_(x.sqrt().sqrt_())
    if a == 2.0:
        return x.mul_(x)
    return x.pow_(a)


def _power_derivative(w: Tensor, pw: Tensor, a: float, signed: bool) -> Tensor:
    r"""``d/dw [s(w)|w|^a]`` given ``pw = |w|^a``, with the value at ``w == 0`` fixed.

    For ``w != 0`` both forms equal ``a s(w)|w|^a / w``: unsigned ``a |w|^(a-1) sign(w)``, signed
    ``a |w|^(a-1)``. At ``w == 0``: unsigned -> 0 for every ``a`` (the symmetric derivative of the
    even function ``|w|^a``; for ``a >= 1`` the true derivative or torch's ``sign(0) = 0``
    subgradient of ``abs``; for ``a < 1`` the one-sided derivatives are infinite). Signed -> 1 if
    ``a == 1`` (``s(w)|w| = w``), else 0 (true value for ``a > 1``; for ``a < 1`` the true
    derivative is +inf and 0 is the convention that keeps it finite).
    """
    if a == 1.0:
        return torch.ones_like(w) if signed else torch.sign(w)  # sign(0) == 0
    d = pw / (w.abs() if signed else w)  # 0/0 = nan at w == 0 -> 0
    return d.nan_to_num_(nan=0.0, posinf=math.inf, neginf=-math.inf).mul_(a)


def _abs_pow_m1_(x: Tensor, a: float) -> Tensor:
    """``x ** (a - 1)`` in place for ``x >= 0`` and ``a != 1`` (``inf`` at 0 when ``a < 1``)."""
    if a == 0.75:
        return x.sqrt_().rsqrt_()
    if a == 0.5:
        return x.rsqrt_()
    if a == 1.5:
        return x.sqrt_()
    if a == 1.25:
        return x.sqrt_().sqrt_()
    if a == 2.0:
        return x
    return x.pow_(a - 1.0)


def _bridgeout_inplace(w: Tensor, u: Tensor, r: Tensor, a: float, signed: bool) -> None:
    """:class:`_BridgeoutFunction`'s forward on preallocated buffers.

    ``u`` holds the noise ``eps * T`` and receives ``W~``; ``r`` receives ``R = r(W) eps T``.
    Only in-place ops and ``out=``: on CPU each fresh weight-sized allocation costs page
    faults. (Processing the weight in cache-sized blocks was tried and was not faster.)
    """
    if a == 1.0:  # unsigned: r = sign(W), 0 at 0
        torch.sign(w, out=r)
    else:
        _abs_pow_m1_(torch.abs(w, out=r), a)
        if a < 1.0:
            r.nan_to_num_(nan=0.0, posinf=0.0)
        if not signed:
            r.copysign_(w)
    r.mul_(u)
    torch.addcmul(w, w, r, out=u)


class _BridgeoutFunction(torch.autograd.Function):
    r"""Draw the noise and return ``W~ = W + s(W)|W|^a eps T`` with the exact derivative.

    Written as ``W~ = W (1 + R)`` with ``R = r(W) eps T`` and ``r(W) = s(W)|W|^a / W`` (that is
    ``|W|^(a-1)`` signed, ``sign(W)|W|^(a-1)`` unsigned), so that the derivative is simply
    ``dW~/dW = 1 + d[s(W)|W|^a]/dW eps T = 1 + a R``: the backward pass is one fused
    ``addcmul`` and only ``R`` is saved. ``r(0)`` is set to 0 (``|W|^(a-1)`` is infinite there
    for ``a < 1``), which gives ``W~ = 0`` and derivative 1 at ``W == 0``: the convention of
    :func:`bridgeout`. (For ``q < ~0.24`` in float32, ``|W|^(a-1)`` can also overflow for
    subnormal ``W != 0``; such entries are treated like 0.) Not used for ``signed`` with
    ``a == 1`` (the DropConnect path). First derivatives only (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx, weight: Tensor, p: float, a: float, target_fraction: float, signed: bool,
                generator) -> Tensor:
        noise = _noise(weight.shape, weight, p, _target_units(weight, target_fraction), generator)
        r = torch.empty_like(weight)
        _bridgeout_inplace(weight, noise, r, a, signed)
        ctx.a = a
        ctx.save_for_backward(r)
        return noise  # now holds W~

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (r,) = ctx.saved_tensors
        grad_w = torch.addcmul(grad, grad, r, value=ctx.a) if ctx.needs_input_grad[0] else None
        return grad_w, None, None, None, None, None


class _SignedPowerFunction(torch.autograd.Function):
    r"""``s(W)|W|^a`` with the derivative of :func:`_power_derivative` (finite at 0)."""

    @staticmethod
    def forward(ctx, weight: Tensor, a: float, signed: bool) -> Tensor:
        pw = _abs_pow_(weight.abs(), a)
        ctx.a, ctx.signed = a, signed
        ctx.save_for_backward(weight, pw)
        return torch.copysign(pw, weight) if signed else pw.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, pw = ctx.saved_tensors
        return grad * _power_derivative(weight, pw, ctx.a, ctx.signed), None, None


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
