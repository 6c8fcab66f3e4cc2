r"""Monte Carlo checks of the theory chapter's claims.

For a linear model ``y ~ X w`` with squared loss ``L(w) = sum_i (y_i - x_i . w)^2`` and Bridgeout
noise ``w~ = w + |w|^(q/2) eps T`` (E[eps] = 0, Var[eps] = p/(1-p), independent entries),

    E[L(w~)] - L(w) = (p/(1-p)) * sum_j (sum_i x_ij^2) |w_j|^q T_j,

the same whether one noise sample is shared by the batch or drawn per example. The Monte
Carlo mean of n draws of ``L(w~) - L(w)`` is compared with this value within K = 4 standard
errors, the standard error being the sample standard deviation / sqrt(n). Every check also
asserts that the expected value is many standard errors away from 0 and from the value with
a wrong exponent, so that the comparison has power.
"""
from __future__ import annotations

import math

import pytest
import torch

import bridgeout.functional as BF
import bridgeout.nn as BN

K = 4.0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def problem():
    g = gen(0)
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    w = torch.tensor([[0.3, -2.0, 1.5, -0.05, 0.8]], dtype=torch.float64)
    y = x @ torch.tensor([0.5, -1.0, 1.0, 0.0, 1.0], dtype=torch.float64) + 0.1 * torch.randn(20, generator=g,
                                                                                               dtype=torch.float64)
    return x, w, y


def penalty(x, w, p, q, t):
    return p / (1 - p) * float(((x**2).sum(0) * w[0].abs() ** q * t[0]).sum())


def check_mc(diffs: torch.Tensor, expected: float, wrong: float) -> None:
    n = diffs.numel()
    mean = float(diffs.mean())
    se = float(diffs.std()) / math.sqrt(n)
    assert abs(mean - expected) <= K * se, (mean, expected, se)
    assert expected > 10 * K * se  # the check could detect a missing penalty
    assert abs(wrong - expected) > 2 * K * se  # ... and a wrong exponent


@pytest.mark.parametrize("q,signed,tf,p", [(1.5, False, 1.0, 0.3), (1.0, True, 1.0, 0.5), (0.5, False, 0.6, 0.3),
                                           (2.0, True, 1.0, 0.2)])
def test_batch_expected_penalty(q, signed, tf, p):
    x, w, y = problem()
    clean = float(((y - x @ w[0]) ** 2).sum())
    n = 20000
    # n independent batch-shared draws at once: row r of the (n, d) weight is the r-th draw of
    # w~ (targeting ranks each row on its own, exactly as for the single row w); all 20
    # examples of the batch see the same row.
    wt = BF.bridgeout(w.expand(n, -1).contiguous(), p, q, tf, signed, generator=gen(1))
    diffs = ((y - wt @ x.T) ** 2).sum(1) - clean
    t = BF.targeting_mask(w, tf).double()
    check_mc(diffs, penalty(x, w, p, q, t), penalty(x, w, p, q + 1.0, t))


@pytest.mark.parametrize("q,signed,tf,p", [(1.5, False, 1.0, 0.3), (0.5, True, 0.6, 0.4)])
def test_per_sample_expected_penalty(q, signed, tf, p):
    x, w, y = problem()
    clean = float(((y - x @ w[0]) ** 2).sum())
    n = 6000
    xr = x.repeat(n, 1)  # n Monte Carlo repetitions of the batch, one noise draw per row
    pred = BF.bridgeout_linear_per_sample(xr, w, None, p, q, tf, signed, generator=gen(2))
    diffs = ((y.repeat(n) - pred[:, 0]) ** 2).view(n, -1).sum(1) - clean
    t = BF.targeting_mask(w, tf).double()
    check_mc(diffs, penalty(x, w, p, q, t), penalty(x, w, p, q + 1.0, t))


def test_batch_and_per_sample_agree_with_module():
    """The nn modules give the same expectation: BridgeoutLinear (batch) and PerSampleBridgeoutLinear."""
    x, w, y = problem()
    p, q = 0.3, 1.5
    clean = float(((y - x @ w[0]) ** 2).sum())
    expected = penalty(x, w, p, q, torch.ones_like(w))
    n = 4000
    for cls in (BN.BridgeoutLinear, BN.PerSampleBridgeoutLinear):
        layer = cls(5, 1, bias=False, dtype=torch.float64, p=p, q=q, target_fraction=1.0)
        with torch.no_grad():
            layer.weight.copy_(w)
        layer.generator = gen(3)
        with torch.no_grad():
            diffs = torch.stack([((y - layer(x)[:, 0]) ** 2).sum() - clean for _ in range(n)])
        check_mc(diffs, expected, penalty(x, w, p, q + 1.0, torch.ones_like(w)))


def test_sparseout_q2_has_dropout_statistics():
    p, n = 0.3, 200_000
    x = torch.rand(n, generator=gen(4), dtype=torch.float64) + 0.5  # no zeros
    s = BF.sparseout(x, p, 2.0, signed=True, generator=gen(5))
    d = torch.nn.functional.dropout(x, p, training=True)
    # values: 0 or x/(1-p), exactly as inverted dropout
    kept = s != 0
    torch.testing.assert_close(s[kept], x[kept] / (1 - p), rtol=1e-12, atol=0)
    se = math.sqrt(p * (1 - p) / n)
    frac_s = 1 - kept.double().mean().item()
    frac_d = (d == 0).double().mean().item()
    assert abs(frac_s - p) <= K * se and abs(frac_d - p) <= K * se
    # the ratio output/input has the dropout mean 1 and variance p/(1-p)
    ratio = s / x
    c = p / (1 - p)
    kurt = ((1 - p) * c**4 + p) / c**2  # of the two-point noise m/(1-p) - 1
    assert abs(ratio.mean().item() - 1) <= K * math.sqrt(c / n)
    assert abs(ratio.var().item() / c - 1) <= K * math.sqrt((kurt - 1) / n) + K**2 / n


@pytest.mark.parametrize("q,signed", [(1.5, True), (1.0, False)])
def test_sparseout_moments(q, signed):
    """E[x~] = x and Var[x~] = p/(1-p) |x|^q, the activation analogue of the weight noise."""
    p, n = 0.3, 4000
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0, 3.0], dtype=torch.float64)
    draws = BF.sparseout(x.expand(n, -1).contiguous(), p, q, signed=signed, generator=gen(6))
    var_t = p / (1 - p) * x.abs() ** q
    assert ((draws.mean(0) - x).abs() <= K * (var_t / n).sqrt() + 1e-12).all()
    c = p / (1 - p)
    kurt = ((1 - p) * c**4 + p) / c**2
    nz = x != 0
    rel = (draws.var(0)[nz] / var_t[nz] - 1).abs()
    assert (rel <= K * math.sqrt((kurt - 1) / n) + K**2 / n).all()
    assert torch.equal(draws[:, ~nz], torch.zeros(n, 1, dtype=torch.float64))
