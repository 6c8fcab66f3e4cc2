r"""The theory chapter's small experiments: a sparse linear regression to fit with and without
Bridgeout (:func:`make_sparse_regression`, :func:`fit_regression`, :func:`fraction_small`), and
what BatchNorm after a conv does to Bridgeout's pressure on a filter's norm
(:func:`bn_filter_scale_check`). The penalty and gradient math they check is
:mod:`bridgeout.theory` (which re-exports these names).
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor, nn

from . import functional as BF
from ._validate import check_int, check_positive

__all__ = ["make_sparse_regression", "fit_regression", "fraction_small", "bn_filter_scale_check"]


def make_sparse_regression(n: int = 512, d: int = 40, n_informative: int = 8, noise_std: float = 0.5,
                           seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    r"""Synthetic regression :math:`y = Xw^\star + \sigma\xi` with a sparse :math:`w^\star`.

    :math:`X_{ij}, \xi_i \sim \mathcal N(0, 1)` i.i.d.; the first ``n_informative`` entries of
    :math:`w^\star` are drawn uniformly from :math:`\pm[0.5, 1.5]`, the others are 0.

    Args:
        n: examples, >= 2.
        d: features, >= 1.
        n_informative: non-zero entries of :math:`w^\star`, in [0, d].
        noise_std: :math:`\sigma`, a finite number >= 0.
        seed: seeds the one CPU generator every draw comes from.

    Returns:
        ``(x (n, d), y (n, 1), w_true (d,))`` float32 tensors.

    Raises:
        ValueError: an argument out of range.
    """
    n = check_int("n", n, 2)
    d = check_int("d", d, 1)
    n_informative = check_int("n_informative", n_informative, 0)
    if n_informative > d:
        raise ValueError(f"n_informative must be <= d = {d}, got {n_informative}")
    if not (noise_std >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n, d, generator=g)
    w = torch.zeros(d)
    mag = 0.5 + torch.rand(n_informative, generator=g)
    sign = torch.where(torch.rand(n_informative, generator=g) < 0.5, -1.0, 1.0)
    w[:n_informative] = mag * sign
    y = x @ w + noise_std * torch.randn(n, generator=g)
    return x, y.unsqueeze(1), w


def fit_regression(model: nn.Module, x: Tensor, y: Tensor, *, steps: int = 400, lr: float = 0.05,
                   batch_size: int = 32, decay: bool = True, seed: int = 0) -> list[float]:
    r"""Train ``model`` in place by plain SGD on the mean squared error
    :math:`\frac1B\sum_{i\in B}\|y_i - f(x_i)\|^2` over shuffled mini-batches, in training mode
    (so Bridgeout layers draw fresh noise every step), then switch it to eval mode.

    With ``decay`` the step size falls linearly from ``lr`` to ``lr / steps`` (so the last
    iterate settles instead of jittering at the noise level of a constant step).

    The shuffling and any noise layer without its own ``generator`` use generators seeded
    from ``seed`` (noise layers get theirs set, so the run is reproducible).

    Args:
        model: the model (trained in place; left in eval mode).
        x: inputs (n, d).
        y: targets (n, k).
        steps: keyword-only; SGD steps, >= 1.
        lr: keyword-only; the (initial) step size, > 0.
        batch_size: keyword-only; examples per step, >= 1 (a new permutation is drawn when
            fewer than a batch are left).
        decay: keyword-only; the linear step-size decay.
        seed: keyword-only; see above.

    Returns:
        the training loss of every step.

    Raises:
        ValueError: ``steps``, ``batch_size`` or ``lr`` out of range.
    """
    steps = check_int("steps", steps, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_positive("lr", lr)
    g = torch.Generator().manual_seed(int(seed))
    for i, m in enumerate(model.modules()):
        if hasattr(m, "generator") and m.generator is None:
            m.generator = torch.Generator().manual_seed(int(seed) * 1000 + i + 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - t / steps) if decay else None)
    n = x.shape[0]
    losses: list[float] = []
    model.train()
    perm = torch.randperm(n, generator=g)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        loss = (y[idx] - model(x[idx])).square().sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def fraction_small(w: Tensor, threshold: float) -> float:
    r"""Fraction of entries with :math:`|w| < \text{threshold}` (a sparsity measure for
    weights that are small but not exactly zero).

    Args:
        w: weights.
        threshold: the threshold, > 0.

    Returns:
        the fraction, NaN for an empty tensor.

    Raises:
        ValueError: ``threshold`` is not a finite number > 0.
    """
    threshold = check_positive("threshold", threshold)
    w = w.detach()
    return float((w.abs() < threshold).double().mean()) if w.numel() else float("nan")


@torch.no_grad()
def bn_filter_scale_check(scales=(0.1, 0.3, 1.0, 3.0, 10.0), *, q: float = 1.5, p: float = 0.3,
                          signed: bool = False, n_draws: int = 2000, seed: int = 0) -> pd.DataFrame:
    """What BatchNorm after a conv does to Bridgeout's pressure on a filter's norm.

    A conv (3 -> 4 channels, 3x3) followed by ``BatchNorm2d`` in training mode (batch
    statistics), fixed random inputs (8 x 3 x 8 x 8); the loss is the mean squared error of
    the BatchNorm output to the noise-free output (so the clean loss is 0 and the noisy loss
    is the distortion the noise causes). Filter 0's weights are multiplied by each
    ``c`` in ``scales``; every weight of the conv gets Bridgeout noise (target fraction 1).
    Returns one row per ``c``: ``clean_loss`` (no noise: the same for every ``c`` up to
    rounding, since BatchNorm removes the filter's scale), ``noisy_loss`` (mean over
    ``n_draws`` noise draws from :func:`bridgeout.functional.bridgeout`) and its standard
    error ``noisy_se``, and ``relative_noise``, the noise's standard deviation relative to
    filter 0's weights, ``sqrt(p/(1-p)) * mean |w|^(q/2-1)``.

    Args:
        scales: the factors ``c``.
        q: keyword-only; the bridge exponent.
        p: keyword-only; the drop probability.
        signed: keyword-only; the ``sign(W)`` factor.
        n_draws: keyword-only; noise draws per ``c`` (the same draws for every ``c``).
        seed: keyword-only; seeds the inputs and weights (and, plus 1, the noise).

    Returns:
        the table, columns ``c``, ``clean_loss``, ``noisy_loss``, ``noisy_se``,
        ``relative_noise``.
    """

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64)
    w0 = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64) * 0.2

    def out(w):
        y = torch.nn.functional.conv2d(x, w, padding=1)
        return torch.nn.functional.batch_norm(y, None, None, training=True, eps=1e-12)

    target = out(w0)

    def loss(w):
        return float(((out(w) - target) ** 2).mean())

    rows = []
    for c in scales:
        w = w0.clone()
        w[0] *= c
        gc = torch.Generator().manual_seed(seed + 1)     # the same draws for every c
        draws = torch.tensor([loss(BF.bridgeout(w, p, q, 1.0, signed, generator=gc)) for _ in range(n_draws)])
        rel = (p / (1 - p)) ** 0.5 * float(w[0].abs().pow(q / 2 - 1).mean())
        rows.append({"c": float(c), "clean_loss": loss(w), "noisy_loss": float(draws.mean()),
                     "noisy_se": float(draws.std() / n_draws ** 0.5), "relative_noise": rel})
    return pd.DataFrame(rows)

