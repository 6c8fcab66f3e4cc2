"""Tests of bridgeout.functional: the noise math, targeting, exact gradients, errors.

Statistical tolerances: a sample mean of n draws is compared with k standard errors
(k = 5 unless stated), the standard error coming from the known noise distribution:
eps takes p/(1-p) with probability 1-p and -1 with probability p, so Var[eps] = p/(1-p) and
the sample variance of n draws has relative standard error sqrt((kurt - 1)/n) with
kurt = E[eps^4] / Var[eps]^2. All draws are seeded, so every test is deterministic.
"""
from __future__ import annotations

import math

import pytest
import torch

import bridgeout.functional as BF

K_SIGMA = 5.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def eps_kurtosis(p: float) -> float:
    c = p / (1 - p)
    return ((1 - p) * c**4 + p) / c**2


# ----------------------------------------------------------------------------- targeting
def reference_mask(weight: torch.Tensor, target_fraction: float) -> torch.Tensor:
    """Brute force: per output row, sort kernels by (L2 norm, index) in Python."""
    w = weight if weight.dim() >= 2 else weight.reshape(1, -1)
    n_out, n_in = w.shape[0], w.shape[1]
    k = math.floor(n_in * target_fraction + 1e-9)
    out = torch.zeros(w.shape, dtype=torch.bool)
    for o in range(n_out):
        norms = []
        for i in range(n_in):
            vals = w[o, i].reshape(-1).tolist()
            norms.append(math.sqrt(sum(v * v for v in vals)))
        chosen = sorted(range(n_in), key=lambda i: (norms[i], i))[:k]
        for i in chosen:
            out[o, i] = True
    return out.reshape(weight.shape)


SHAPES = [(5, 7, 3, 3), (4, 6), (3, 10, 1, 1), (6, 5, 2), (2, 9, 3, 3), (1, 4, 3, 3), (3, 1, 3, 3), (8,)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tf", [0.25, 0.34, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("kind", ["normal", "integer", "integer64"])
def test_targeting_matches_brute_force(shape, tf, kind):
    g = gen(hash((shape, tf, kind)) % 1000)
    if kind == "normal":
        w = torch.randn(shape, generator=g)
    else:  # integer-valued kernels: many exact ties between kernel norms
        w = torch.randint(-1, 2, shape, generator=g).float()
        if kind == "integer64":
            w = w.double()
    got = BF.targeting_mask(w, tf)
    assert got.dtype == torch.bool and got.shape == w.shape
    assert torch.equal(got, reference_mask(w, tf))


def test_targeting_ties_prefer_lower_index():
    w = torch.ones(2, 4, 3, 3)  # every kernel has the same norm
    m = BF.targeting_mask(w, 0.5)
    assert m[:, :2].all() and not m[:, 2:].any()
    w2 = torch.tensor([[3.0, 1.0, 1.0, 2.0, 1.0]])
    assert BF.targeting_mask(w2, 0.4).tolist() == [[False, True, True, False, False]]


def test_targeting_whole_kernels_and_counts():
    w = torch.randn(16, 64, 3, 3, generator=gen(1))
    m = BF.targeting_mask(w, 0.75)
    # each kernel is all-in or all-out, and each filter has exactly floor(64 * 0.75) targeted
    per_kernel = m.flatten(2)
    assert torch.equal(per_kernel.all(2), per_kernel.any(2))
    assert (per_kernel.all(2).sum(1) == 48).all()
    # the spared kernels have norms >= every targeted one in the same filter
    norms = w.flatten(2).norm(dim=2)
    t = per_kernel.all(2)
    assert (norms.masked_fill(~t, -1).amax(1) <= norms.masked_fill(t, math.inf).amin(1)).all()


def test_targeting_fraction_one_and_zero_count():
    w = torch.randn(4, 3, 3, 3, generator=gen(2))
    assert BF.targeting_mask(w, 1.0).all()
    assert not BF.targeting_mask(w, 0.3).any()  # floor(3 * 0.3) == 0


def test_num_targeted():
    assert BF.num_targeted(64, 0.75) == 48
    assert BF.num_targeted(100, 0.29) == 29  # 100 * 0.29 == 28.999999999999996 in binary
    assert BF.num_targeted(3, 0.25) == 0
    assert BF.num_targeted(7, 1.0) == 7


def test_targeting_does_not_modify_or_track_grad():
    w = torch.randn(4, 5, 3, 3, requires_grad=True)
    before = w.detach().clone()
    m = BF.targeting_mask(w, 0.5)
    assert not m.requires_grad and torch.equal(w.detach(), before)


# ----------------------------------------------------------------------------- draw convention
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("q", [0.3, 0.5, 1.0, 1.5, 2.5, 3.0, 4.0])  # every special-cased power + pow
@pytest.mark.parametrize("shape", [(6, 8, 3, 3), (5, 7), (9,), (4, 6, 5)])
def test_bridgeout_formula_and_draw(signed, q, shape):
    w = torch.randn(shape, generator=gen(3))
    p, tf = 0.3, 0.75
    out = BF.bridgeout(w, p, q, tf, signed=signed, generator=gen(7))
    u = torch.rand(w.shape, generator=gen(7))
    eps = (u < 1 - p).float() / (1 - p) - 1
    s = torch.sign(w) if signed else torch.ones_like(w)
    expected = w + s * w.abs() ** (q / 2) * eps * BF.targeting_mask(w, tf)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_p_zero_is_identity_and_draws_nothing():
    w = torch.randn(3, 4)
    g = gen(5)
    state = g.get_state()
    assert BF.bridgeout(w, 0.0, 1.5, 0.5, generator=g) is w
    assert BF.dropconnect(w, 0.0, generator=g) is w
    assert torch.equal(g.get_state(), state)


def test_rng_consumption_independent_of_targeting():
    """Targeting nothing (k == 0) still draws, so the generator stream does not depend on tf."""
    w = torch.randn(4, 3, 3, 3)
    g1, g2 = gen(9), gen(9)
    out = BF.bridgeout(w, 0.5, 1.5, 0.3, generator=g1)  # floor(3 * 0.3) == 0
    assert torch.equal(out, w)
    BF.bridgeout(w, 0.5, 1.5, 1.0, generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())


# ----------------------------------------------------------------------------- moments
@pytest.mark.parametrize("q,signed,p", [(1.5, False, 0.3), (0.5, True, 0.5), (2.0, False, 0.2), (1.0, True, 0.3)])
def test_mean_and_variance(q, signed, p):
    n = 3000
    w = torch.randn(6, 8, 2, 2, generator=gen(11), dtype=torch.float64)
    w[0, 0, 0, 0] = 0.0
    tf = 0.5
    t = BF.targeting_mask(w, tf)
    g = gen(12)
    draws = torch.stack([BF.bridgeout(w, p, q, tf, signed, generator=g) for _ in range(n)])
    # untargeted entries: never perturbed (variance exactly 0)
    assert torch.equal(draws[:, ~t], w[~t].expand(n, -1))
    var_theory = p / (1 - p) * w.abs() ** q
    mean = draws.mean(0)
    se = var_theory.sqrt() / math.sqrt(n)
    assert ((mean - w).abs() <= K_SIGMA * se + 1e-12)[t].all()
    var = draws.var(0)
    # relative error of the sample variance: its standard error plus the centering term
    # (sample mean)^2 / var, at most K^2 / n with K standard errors (needed for p = 0.5,
    # where eps^2 == 1 always and the first term vanishes)
    rel_se = math.sqrt((eps_kurtosis(p) - 1) / n) + K_SIGMA / n
    tt = t & (w != 0)
    assert ((var[tt] / var_theory[tt] - 1).abs() <= K_SIGMA * rel_se).all()
    assert var[w == 0].max() == 0
    # the test has power: a wrong exponent q would fail it
    wrong = p / (1 - p) * w.abs() ** (q + 0.5)
    big = tt & ((w.abs() - 1).abs() > 0.5)
    assert ((var[big] / wrong[big] - 1).abs() > K_SIGMA * rel_se).any()


# ----------------------------------------------------------------------------- DropConnect
def test_signed_q2_equals_dropconnect_exactly():
    w1 = torch.randn(8, 5, 3, 3, generator=gen(13), requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    a = BF.bridgeout(w1, 0.4, 2.0, 1.0, signed=True, generator=gen(21))
    b = BF.dropconnect(w2, 0.4, generator=gen(21))
    assert torch.equal(a, b)
    gout = torch.randn(a.shape, generator=gen(22))
    a.backward(gout)
    b.backward(gout)
    assert torch.equal(w1.grad, w2.grad)
    keep = (torch.rand(w1.shape, generator=gen(21)) < 0.6).float()
    torch.testing.assert_close(w2.grad, gout * keep / 0.6)
    torch.testing.assert_close(b, w2.detach() * keep / 0.6)


def test_signed_q2_targeted_is_dropconnect_on_targeted_only():
    w = torch.randn(8, 6, 3, 3, generator=gen(14))
    t = BF.targeting_mask(w, 0.5)
    a = BF.bridgeout(w, 0.4, 2.0, 0.5, signed=True, generator=gen(3))
    b = BF.dropconnect(w, 0.4, generator=gen(3))
    assert torch.equal(a[t], b[t]) and torch.equal(a[~t], w[~t])


# ----------------------------------------------------------------------------- gradients
def _gradcheck(w, q, signed, tf):
    def f(x):
        return BF.bridgeout(x, 0.4, q, tf, signed, generator=gen(31))  # same noise every call
    return torch.autograd.gradcheck(f, (w,), eps=1e-7, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("q", [0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("tf", [1.0, 0.5])
def test_gradcheck_near_zero(q, signed, tf):
    w = torch.randn(4, 6, 2, 2, generator=gen(32), dtype=torch.float64)
    w[:, :, 0, 0] = 1e-3 * torch.sign(w[:, :, 0, 0])  # +-1e-3 entries
    w[0, 0] = torch.tensor([[1e-3, -1e-3], [2e-3, -5e-4]], dtype=torch.float64)
    assert _gradcheck(w.requires_grad_(), q, signed, tf)


@pytest.mark.parametrize("q", [0.5, 1.0, 1.5, 2.0])
def test_gradcheck_at_zero_unsigned(q):
    # unsigned: |W|^(q/2) is even, its central derivative at 0 is 0, the convention used
    w = torch.randn(3, 4, 2, 2, generator=gen(33), dtype=torch.float64)
    w[:, :, 0, 0] = 0.0
    assert _gradcheck(w.requires_grad_(), q, False, 1.0)


def test_gradcheck_at_zero_signed_q2():
    w = torch.randn(3, 4, 2, 2, generator=gen(34), dtype=torch.float64)
    w[:, :, 1, 1] = 0.0
    assert _gradcheck(w.requires_grad_(), 2.0, True, 1.0)


@pytest.mark.parametrize("q", [0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("signed", [False, True])
def test_gradient_at_exact_zero_is_finite_convention(q, signed):
    """At W == 0: W~ = 0 and dW~/dW = 1 + s'(0) eps with s'(0) = 1 for signed q = 2 and 0 otherwise
    (signed q < 2: the true derivative is infinite; 0 is the documented convention)."""
    p = 0.5
    w = torch.zeros(200, dtype=torch.float64, requires_grad=True)
    out = BF.bridgeout(w, p, q, 1.0, signed, generator=gen(35))
    out.sum().backward()
    assert torch.equal(out.detach(), torch.zeros(200, dtype=torch.float64))
    assert torch.isfinite(w.grad).all()
    if signed and q == 2.0:
        keep = (torch.rand(200, generator=gen(35), dtype=torch.float64) < 1 - p).double()
        assert torch.equal(w.grad, keep / (1 - p))
    else:
        assert torch.equal(w.grad, torch.ones(200, dtype=torch.float64))


@pytest.mark.parametrize("signed", [False, True])
def test_gradient_matches_formula(signed):
    q, p = 1.5, 0.3
    w = torch.randn(5, 7, generator=gen(36), dtype=torch.float64, requires_grad=True)
    out = BF.bridgeout(w, p, q, 0.75, signed, generator=gen(37))
    gout = torch.randn(w.shape, generator=gen(38), dtype=torch.float64)
    out.backward(gout)
    u = torch.rand(w.shape, generator=gen(37), dtype=torch.float64)
    eps = (u < 1 - p).double() / (1 - p) - 1
    wd = w.detach()
    a = q / 2
    deriv = a * wd.abs() ** (a - 1) * (1.0 if signed else torch.sign(wd))
    expected = gout * (1 + deriv * eps * BF.targeting_mask(wd, 0.75))
    torch.testing.assert_close(w.grad, expected)


# ----------------------------------------------------------------------------- sparseout
def test_sparseout_q2_signed_is_inverted_dropout():
    x = torch.randn(16, 32, generator=gen(40), requires_grad=True)
    out = BF.sparseout(x, 0.3, 2.0, signed=True, generator=gen(41))
    keep = (torch.rand(x.shape, generator=gen(41)) < 0.7).float()
    assert torch.equal(out, x.detach() * (keep * (1 / 0.7)))
    out.sum().backward()
    assert torch.equal(x.grad, keep * (1 / 0.7))


def test_sparseout_fresh_draw_per_element_and_zero_activations():
    x = torch.ones(64, 10)
    out = BF.sparseout(x, 0.5, 1.5, generator=gen(42))
    assert not torch.equal(out[0], out[1])  # rows (examples) get independent noise
    z = torch.zeros(8, requires_grad=True)
    BF.sparseout(z, 0.5, 1.0, generator=gen(43)).sum().backward()
    assert torch.equal(z.grad, torch.ones(8))  # finite at x == 0 (e.g. after ReLU)


# ----------------------------------------------------------------------------- targeted dropout
@pytest.mark.parametrize("shape", [(6, 8, 4, 4), (6, 8)])
def test_targeted_dropout(shape):
    p, tf = 0.5, 0.75
    x = torch.randn(shape, generator=gen(44))
    out = BF.targeted_dropout(x, p, tf, generator=gen(45))
    eligible = reference_mask(x, tf)  # per sample: the smallest-norm channels
    assert torch.equal(out[~eligible], x[~eligible])
    keep = torch.rand(shape, generator=gen(45)) < 1 - p
    expected = torch.where(keep, x / (1 - p), torch.zeros(()))
    torch.testing.assert_close(out[eligible], expected[eligible])


def test_targeted_dropout_drop_rate():
    p, n = 0.3, 200
    x = torch.randn(n, 16, 4, 4, generator=gen(46))
    out = BF.targeted_dropout(x, p, 0.5, generator=gen(47))
    eligible = BF.targeting_mask(x, 0.5)
    dropped = (out[eligible] == 0).double().mean().item()
    m = eligible.sum().item()
    assert abs(dropped - p) <= K_SIGMA * math.sqrt(p * (1 - p) / m)
    assert eligible.flatten(2).all(2).sum(1).eq(8).all()


# ----------------------------------------------------------------------------- per sample
def test_per_sample_matches_manual_draw():
    p, q, tf = 0.3, 1.5, 0.5
    x = torch.randn(5, 6, generator=gen(50))
    w = torch.randn(4, 6, generator=gen(51))
    b = torch.randn(4, generator=gen(52))
    y = BF.bridgeout_linear_per_sample(x, w, b, p, q, tf, generator=gen(53))
    assert y.shape == (5, 4)
    u = torch.rand((5, 4, 6), generator=gen(53))
    eps = (u < 1 - p).float() / (1 - p) - 1
    wt = w + w.abs() ** (q / 2) * eps * BF.targeting_mask(w, tf)
    expected = torch.einsum("ni,noi->no", x, wt) + b
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_per_sample_independent_rows_and_p0():
    x = torch.ones(8, 6)
    w = torch.randn(3, 6, generator=gen(54))
    y = BF.bridgeout_linear_per_sample(x, w, None, 0.5, 1.5, generator=gen(55))
    assert not torch.equal(y[0], y[1])
    y0 = BF.bridgeout_linear_per_sample(x, w, None, 0.0, 1.5)
    torch.testing.assert_close(y0, torch.nn.functional.linear(x, w))


@pytest.mark.parametrize("signed", [False, True])
def test_per_sample_gradcheck(signed):
    x = torch.randn(4, 5, generator=gen(56), dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, generator=gen(57), dtype=torch.float64)
    w[0, 0] = 1e-3
    w.requires_grad_()
    b = torch.randn(3, generator=gen(58), dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return BF.bridgeout_linear_per_sample(x, w, b, 0.4, 1.5, 1.0, signed, generator=gen(59))
    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-7, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    w = torch.randn(4, 6, 3, 3, generator=gen(60)).to(dtype)
    out = BF.bridgeout(w, 0.3, 1.5, 0.5, generator=gen(61))
    t = BF.targeting_mask(w, 0.5)
    assert out.dtype == dtype
    assert torch.equal(out[~t], w[~t]) and not torch.equal(out[t], w[t])


# ----------------------------------------------------------------------------- errors
W = torch.randn(3, 4)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), "a"])
def test_bad_p(p):
    for call in (lambda: BF.bridgeout(W, p, 1.5), lambda: BF.dropconnect(W, p),
                 lambda: BF.sparseout(W, p, 1.5), lambda: BF.targeted_dropout(W, p),
                 lambda: BF.bridgeout_linear_per_sample(W, W, None, p, 1.5)):
        with pytest.raises(ValueError, match=r"^p must be in \[0, 1\)|^p must be a real"):
            call()


@pytest.mark.parametrize("q", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_q(q):
    for call in (lambda: BF.bridgeout(W, 0.3, q), lambda: BF.sparseout(W, 0.3, q),
                 lambda: BF.bridgeout_linear_per_sample(W, W, None, 0.3, q)):
        with pytest.raises(ValueError, match=r"^q must be"):
            call()


@pytest.mark.parametrize("tf", [0.0, -0.5, 1.01, float("nan")])
def test_bad_target_fraction(tf):
    for call in (lambda: BF.bridgeout(W, 0.3, 1.5, tf), lambda: BF.targeting_mask(W, tf),
                 lambda: BF.targeted_dropout(W, 0.3, tf)):
        with pytest.raises(ValueError, match=r"^target_fraction must be"):
            call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weight(bad):
    w = torch.randn(3, 4)
    w[1, 2] = bad
    with pytest.raises(ValueError, match=r"^weight must be finite"):
        BF.bridgeout(w, 0.3, 1.5)
    with pytest.raises(ValueError, match=r"^weight must be finite"):
        BF.dropconnect(w, 0.3)
    with pytest.raises(ValueError, match=r"^weight must be finite"):
        BF.targeting_mask(w, 0.5)
    with pytest.raises(ValueError, match=r"^weight must be finite"):
        BF.bridgeout_linear_per_sample(torch.randn(2, 4), w, None, 0.3, 1.5)


def test_bad_shapes_per_sample():
    with pytest.raises(ValueError, match="x must be"):
        BF.bridgeout_linear_per_sample(torch.randn(3, 5), torch.randn(2, 4), None, 0.3, 1.5)


@pytest.mark.parametrize("q, signed", [(1.5, False), (2.0, True), (1.0, True)])
def test_bridgeout_keeps_channels_last_layout_and_values(q, signed):
    """A channels_last weight gets the same noise values (drawn in the logical shape) and a
    channels_last noisy weight, so the conv that follows needs no reorder; forward and
    gradient equal the NCHW computation bit for bit."""
    torch.manual_seed(0)
    w = (0.1 * torch.randn(8, 6, 3, 3)).requires_grad_(True)
    w_cl = w.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    outs = []
    for weight in (w, w_cl):
        torch.manual_seed(7)
        out = BF.bridgeout(weight, 0.3, q, 0.75, signed)
        out.backward(torch.arange(out.numel(), dtype=out.dtype).view(out.shape))
        outs.append(out)
    assert outs[1].is_contiguous(memory_format=torch.channels_last) and not outs[1].is_contiguous()
    assert torch.equal(outs[0], outs[1]) and torch.equal(w.grad, w_cl.grad)
    assert not torch.equal(outs[0], w)  # noise was applied


def test_kernel_norms_do_not_depend_on_the_memory_layout():
    """The targeting ranks kernels by norms computed from the values alone: a channels_last
    copy of a layer-sized weight gets bit-identical norms and the same targeting mask (the
    strided reduction rounded differently, and was 10x slower on CPU)."""
    torch.manual_seed(3)
    w = torch.randn(128, 128, 3, 3)
    w_cl = w.contiguous(memory_format=torch.channels_last)
    assert torch.equal(BF._unit_norms(w_cl), BF._unit_norms(w))
    assert torch.equal(BF.targeting_mask(w_cl, 0.75), BF.targeting_mask(w, 0.75))
