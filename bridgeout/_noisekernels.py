r"""The in-place kernels under :mod:`bridgeout.functional`: the draw, the powers, the autograd Functions.

:func:`_keep_scale` makes the single draw every noise function starts from (``m / (1 - p)``)
and :func:`_noise` turns it into ``eps * T``; :func:`_abs_pow_`, :func:`_abs_pow_m1_` and
:func:`_power_derivative` compute :math:`|W|^a`, :math:`|W|^{a-1}` and the derivative of
:math:`s(W)|W|^a` in place, with fixed values at ``W == 0``; :class:`_BridgeoutFunction`
(Batch Bridgeout, exact first derivative, one saved tensor) and :class:`_SignedPowerFunction`
(:math:`s(W)|W|^a`, for the per-sample form) are the two ``torch.autograd.Function``
classes. Nothing here checks its arguments: the public, checked functions and the math of
the noise are in :mod:`bridgeout.functional`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .targeting import LOW_PRECISION as _LOW_PRECISION
from .targeting import _target_units


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
