"""Tests of bridgeout.theory: closed forms checked exactly, Monte Carlo checked against them
within a number of standard errors (the standard error comes from the sample itself)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bridgeout import theory as T
from bridgeout.nn import BridgeoutLinear

P = 0.3
LAM = P / (1 - P)


def _linear_problem(seed=0, n=24, d=5, k=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(k, d, generator=g, dtype=torch.float64)
    w = w + 0.3 * torch.sign(w)  # keep |w| away from 0 (finite noise-gradient factor)
    y = x @ w.T + 0.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    return x, y, w


# --------------------------------------------------------------------------- closed forms
def test_noise_variance_value_and_validation():
    assert T.noise_variance(0.3) == pytest.approx(3 / 7, rel=1e-15)
    assert T.noise_variance(0.0) == 0.0
    with pytest.raises(ValueError, match="p"):
        T.noise_variance(1.0)


def test_expected_penalty_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    w = torch.tensor([0.5, -2.0])
    # column energies sum_i x_ij^2 = (10, 4)
    assert T.expected_penalty(x, w, P, 1.0) == pytest.approx(LAM * (10 * 0.5 + 4 * 2.0), rel=1e-6)
    assert T.expected_penalty(x, w, P, 2.0) == pytest.approx(LAM * (10 * 0.25 + 4 * 4.0), rel=1e-6)
    # targeting half of the row: only the smaller |w| (0.5) is penalised
    assert T.expected_penalty(x, w, P, 1.0, target_fraction=0.5) == pytest.approx(LAM * 5.0, rel=1e-6)
    # (k, d) layout sums over rows
    w2 = torch.stack([w, 2 * w])
    assert T.expected_penalty(x, w2, P, 1.0) == pytest.approx(3 * LAM * 13.0, rel=1e-6)


def test_expected_penalty_rejects_bad_input():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="weight"):
        T.expected_penalty(x, torch.randn(2, 4), P, 1.5)
    with pytest.raises(ValueError, match="q"):
        T.expected_penalty(x, torch.randn(3), P, 0.0)
    with pytest.raises(ValueError, match="target_fraction"):
        T.expected_penalty(x, torch.randn(3), P, 1.5, target_fraction=0.0)


def test_penalty_gradient_and_relative_pull():
    w = torch.tensor([-1.3, -0.2, 0.05, 0.7, 2.0], dtype=torch.float64, requires_grad=True)
    for q in (0.5, 1.0, 1.5, 2.0, 3.0):
        (auto,) = torch.autograd.grad(T.bridge_penalty(w, q).sum(), w)
        torch.testing.assert_close(T.bridge_penalty_grad(w.detach(), q), auto, rtol=1e-12, atol=0)
    assert float(T.bridge_penalty_grad(torch.zeros(1), 1.0)) == 0.0
    a = torch.tensor([1e-3, 1e-2, 1e-1, 1.0], dtype=torch.float64)
    torch.testing.assert_close(T.relative_pull(a, 2.0), torch.ones(4, dtype=torch.float64))
    for q in (0.5, 1.0, 1.5):
        pull = T.relative_pull(a, q)
        assert bool((pull[:-1] > pull[1:]).all()), "pull relative to ridge must grow as |w| -> 0 for q < 2"
        assert float(pull[-1]) == pytest.approx(q / 2)


# --------------------------------------------------------------------------- Monte Carlo penalty
@pytest.mark.parametrize("q", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("signed", [False, True])
def test_monte_carlo_penalty_matches_formula(q, per_sample, signed):
    x, y, w = _linear_problem(seed=1)
    g = torch.Generator().manual_seed(10)
    mc = T.monte_carlo_penalty(x, y, w, P, q, n_draws=8000, signed=signed, per_sample=per_sample,
                               generator=g, chunk=3000)
    formula = T.expected_penalty(x, w, P, q)
    assert mc.n == 8000
    # 12 parametrisations: |z| < 4.5 fails by chance with probability < 1e-4 in all.
    assert abs(mc.z(formula)) < 4.5, (mc, formula)
    # and the standard error is small enough for this to mean something (< 3% of the value)
    assert mc.stderr < 0.03 * formula


def test_monte_carlo_penalty_with_targeting():
    x, y, w = _linear_problem(seed=2, d=8)
    g = torch.Generator().manual_seed(11)
    mc = T.monte_carlo_penalty(x, y, w, P, 1.5, n_draws=8000, target_fraction=0.5, generator=g)
    targeted = T.expected_penalty(x, w, P, 1.5, target_fraction=0.5)
    full = T.expected_penalty(x, w, P, 1.5)
    assert abs(mc.z(targeted)) < 4.5
    assert abs(mc.z(full)) > 10  # the untargeted value is clearly rejected


def test_monte_carlo_penalty_zero_noise_and_bad_shapes():
    x, y, w = _linear_problem(seed=3)
    mc = T.monte_carlo_penalty(x, y, w, 0.0, 1.5, n_draws=10)
    assert abs(mc.mean) < 1e-10 and mc.stderr < 1e-10  # exact up to float64 round-off
    with pytest.raises(ValueError, match="y must be"):
        T.monte_carlo_penalty(x, y[:, :1], w, P, 1.5, n_draws=10)
    with pytest.raises(ValueError, match="n_draws"):
        T.monte_carlo_penalty(x, y, w, P, 1.5, n_draws=1)


# --------------------------------------------------------------------------- gradient moments
def _expected_gradient(x, y, w, p, q):
    r"""Gradient of the expected mean loss: clean gradient + (1/n) grad of the penalty,
    i.e. (2/n) X^T (X w - y) + (1/n) p/(1-p) sum_i x_ij^2 q |w|^(q-1) sign(w)."""
    n = x.shape[0]
    clean = 2.0 / n * (x @ w.T - y).T @ x
    col = x.square().sum(0)
    return clean + (p / (1 - p)) / n * col * T.bridge_penalty_grad(w, q)


@pytest.mark.parametrize("per_sample", [False, True])
def test_gradient_mean_is_gradient_of_expected_objective(per_sample):
    x, y, w = _linear_problem(seed=4, n=16, d=4, k=1)
    g = torch.Generator().manual_seed(12)
    gm = T.gradient_moments(x, y, w, P, 1.5, n_draws=3000, per_sample=per_sample, generator=g)
    target = _expected_gradient(x, y, w, P, 1.5)
    z = (gm.mean - target).abs() / gm.stderr
    assert gm.mean.shape == w.shape and gm.n == 3000
    assert float(z.max()) < 4.5, z  # 4 elements x 2 cases
    # the penalty term is not negligible against the tolerance (so the check has teeth)
    penalty_part = (target - 2.0 / x.shape[0] * (x @ w.T - y).T @ x).abs()
    assert float((penalty_part / gm.stderr).min()) > 5


def test_shared_noise_variance_does_not_average_away():
    """Repeating a batch 4 times: per-sample noise divides the gradient variance by 4
    (four independent copies averaged); batch-shared noise leaves it unchanged (the
    gradient of the repeated batch with one shared draw equals that of the original)."""
    x, y, w = _linear_problem(seed=5, n=16, d=4, k=1)
    x4, y4 = x.repeat(4, 1), y.repeat(4, 1)
    v = {}
    for i, (name, xx, yy, ps) in enumerate([("ps1", x, y, True), ("ps4", x4, y4, True),
                                            ("sh1", x, y, False), ("sh4", x4, y4, False)]):
        g = torch.Generator().manual_seed(100 + i)
        v[name] = T.gradient_moments(xx, yy, w, P, 1.5, n_draws=2000, per_sample=ps, generator=g).total_variance
    # relative s.e. of a variance estimate from 2000 draws of this two-point noise is ~5-7 %;
    # ratio bounds are ~4 combined s.e. wide.
    assert 4 * 0.75 < v["ps1"] / v["ps4"] < 4 * 1.33, v
    assert 0.75 < v["sh1"] / v["sh4"] < 1.33, v
    assert v["sh4"] > 3 * v["ps4"], v


# --------------------------------------------------------------------------- small model helpers
def test_make_sparse_regression():
    x, y, w = T.make_sparse_regression(n=4000, d=20, n_informative=5, noise_std=0.5, seed=3)
    assert x.shape == (4000, 20) and y.shape == (4000, 1) and w.shape == (20,)
    assert int((w != 0).sum()) == 5 and bool((w[:5].abs() >= 0.5).all() and (w[:5].abs() <= 1.5).all())
    resid_sd = float((y[:, 0] - x @ w).std())
    assert resid_sd == pytest.approx(0.5, rel=0.05)  # s.e. of a sd from 4000 draws ~1.1 %
    x2, y2, w2 = T.make_sparse_regression(n=4000, d=20, n_informative=5, noise_std=0.5, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(w, w2)
    with pytest.raises(ValueError, match="n_informative"):
        T.make_sparse_regression(d=3, n_informative=4)


def test_fit_regression_recovers_weights_and_is_reproducible():
    x, y, w = T.make_sparse_regression(n=256, d=6, n_informative=6, noise_std=0.0, seed=0)
    torch.manual_seed(0)
    lin = nn.Linear(6, 1)
    losses = T.fit_regression(lin, x, y, steps=300, lr=0.1, seed=0)
    assert losses[-1] < 1e-3 * losses[0]
    torch.testing.assert_close(lin.weight.detach()[0], w, atol=1e-2, rtol=0)
    assert not lin.training

    def run():
        torch.manual_seed(1)
        m = BridgeoutLinear(6, 1, p=P, q=1.5, target_fraction=1.0)
        T.fit_regression(m, x, y, steps=30, lr=0.05, seed=7)
        return m.weight.detach().clone()

    assert torch.equal(run(), run())


def test_fraction_small():
    w = torch.tensor([0.0, -0.005, 0.02, -0.5, 0.009])
    assert T.fraction_small(w, 0.01) == pytest.approx(3 / 5)
    assert T.fraction_small(w, 1.0) == 1.0
    assert math.isnan(T.fraction_small(torch.empty(0), 0.1))
    with pytest.raises(ValueError, match="threshold"):
        T.fraction_small(w, -1.0)


def test_bn_filter_scale_check():
    """BatchNorm removes a filter's scale; Bridgeout's q = 1.5 noise does not (its distortion
    falls as the filter grows, by many standard errors); DropConnect (signed q = 2) is
    scale-free (the same draws give the same distortion for every scale)."""
    bb = T.bn_filter_scale_check((0.1, 1.0, 10.0), q=1.5, n_draws=400)
    assert bb["clean_loss"].abs().max() < 1e-12
    d = bb["noisy_loss"].to_numpy()
    assert d[0] - d[1] > 5 * bb["noisy_se"][0] and d[1] - d[2] > 5 * bb["noisy_se"][1]
    dc = T.bn_filter_scale_check((0.1, 1.0, 10.0), q=2.0, signed=True, n_draws=400)
    assert dc["noisy_loss"].max() - dc["noisy_loss"].min() < 1e-9 * dc["noisy_loss"].max()
    assert (dc["relative_noise"] - (0.3 / 0.7) ** 0.5).abs().max() < 1e-12


def test_relative_noise_and_the_matched_p():
    w = torch.tensor([0.01, 0.1, 1.0, -0.1])
    r = T.relative_noise(w, 0.3, 1.5)
    assert torch.allclose(r, w.abs().pow(-0.25) * math.sqrt(0.3 / 0.7))
    assert torch.allclose(T.relative_noise(w, 0.3, 2.0), torch.full((4,), math.sqrt(0.3 / 0.7)))
    # a conv weight whose every entry has |w| = c: r_1.5 = c^-1/4 sqrt(p/(1-p)); the matched q = 2
    # p' solves sqrt(p'/(1-p')) = c^-1/4 sqrt(0.3/0.7)
    c = 0.0625
    conv = torch.full((4, 8, 3, 3), c) * torch.where(torch.rand(4, 8, 3, 3) < 0.5, -1.0, 1.0)
    m = T.matched_p({"a.weight": conv, "a.bias": torch.ones(4)}, p=0.3, q=1.5, target_fraction=0.75)
    s2 = c ** -0.5 * 0.3 / 0.7
    assert math.isclose(m["p"], s2 / (1 + s2), rel_tol=1e-6) and m["per_tensor"] == [pytest.approx(m["p"])]
    assert math.isclose(m["relative_noise"], c ** -0.25 * math.sqrt(0.3 / 0.7), rel_tol=1e-6)
    assert math.isclose(m["relative_noise_to"], math.sqrt(0.3 / 0.7), rel_tol=1e-6)
    # matching q to itself gives p back
    assert math.isclose(T.matched_p([conv], p=0.3, q=1.5, q_to=1.5)["p"], 0.3, rel_tol=1e-6)
    with pytest.raises(ValueError, match="at least one 4-D conv weight"):
        T.matched_p([torch.ones(3)])
