"""Tests of bridgeout.nn: drop-in layers, activation regularizers and plain()."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import bridgeout.functional as BF
import bridgeout.nn as BN


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_conv(**kw) -> BN.BridgeoutConv2d:
    torch.manual_seed(0)
    return BN.BridgeoutConv2d(3, 8, 3, padding=1, **kw)


# ----------------------------------------------------------------------------- BridgeoutConv2d
def test_conv_batch_shares_one_sample():
    conv = make_conv(p=0.5, q=1.5, target_fraction=0.75)
    x1 = torch.randn(1, 3, 6, 6, generator=gen(1))
    x = x1.expand(4, -1, -1, -1).contiguous()
    y = conv.train()(x)
    y2 = conv(x)
    # identical inputs in one batch -> identical outputs (up to BLAS rounding, 1e-5), while a
    # second forward (a new sample) differs by far more
    for i in range(1, 4):
        torch.testing.assert_close(y[i], y[0], rtol=1e-5, atol=1e-5)
    assert (y2 - y).abs().max() > 1e-2


def test_conv_eval_is_plain_conv():
    conv = make_conv(p=0.5, q=1.5)
    x = torch.randn(2, 3, 6, 6, generator=gen(2))
    ref = nn.Conv2d(3, 8, 3, padding=1)
    ref.load_state_dict(conv.state_dict())
    conv.eval()
    y1, y2 = conv(x), conv(x)
    assert torch.equal(y1, y2)
    assert torch.equal(y1, ref(x))
    assert not torch.allclose(conv.train()(x), y1)  # the noise is really there in training


def test_conv_state_dict_round_trip():
    conv = make_conv(p=0.3, q=1.5, bias=True)
    ref = nn.Conv2d(3, 8, 3, padding=1)
    assert list(conv.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(conv.state_dict(), strict=True)
    assert torch.equal(ref.weight, conv.weight)
    back = make_conv(p=0.3)
    back.load_state_dict(ref.state_dict(), strict=True)
    nobias = BN.BridgeoutConv2d(3, 8, 3, bias=False)
    assert list(nobias.state_dict()) == list(nn.Conv2d(3, 8, 3, bias=False).state_dict())


def test_conv_is_subclass_and_repr():
    conv = make_conv(p=0.2, q=1.0, target_fraction=0.5, signed=True)
    assert isinstance(conv, nn.Conv2d)
    r = repr(conv)
    for part in ("p=0.2", "q=1.0", "target_fraction=0.5", "signed=True", "kernel_size=(3, 3)"):
        assert part in r
    assert conv.generator is None


def test_conv_generator_reproducible_and_matches_functional():
    conv = make_conv(p=0.4, q=1.5, target_fraction=0.75)
    x = torch.randn(2, 3, 6, 6, generator=gen(3))
    conv.generator = gen(7)
    y1 = conv(x)
    conv.generator = gen(7)
    assert torch.equal(conv(x), y1)
    w = BF.bridgeout(conv.weight, 0.4, 1.5, 0.75, generator=gen(7))
    torch.testing.assert_close(y1, nn.functional.conv2d(x, w, conv.bias, padding=1))


def test_conv_gradient_flows_and_p0():
    conv = make_conv(p=0.3)
    conv(torch.randn(2, 3, 6, 6)).sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0
    zero = make_conv(p=0.0)
    ref = nn.Conv2d(3, 8, 3, padding=1)
    ref.load_state_dict(zero.state_dict())
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(zero.train()(x), ref(x))


@pytest.mark.parametrize("kw,name", [({"p": 1.0}, "p"), ({"p": -0.1}, "p"), ({"q": 0.0}, "q"),
                                     ({"target_fraction": 0.0}, "target_fraction"),
                                     ({"target_fraction": 1.5}, "target_fraction")])
def test_constructor_validation(kw, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        BN.BridgeoutConv2d(3, 4, 3, **kw)
    with pytest.raises(ValueError, match=f"^{name} must"):
        BN.BridgeoutLinear(3, 4, **kw)


def test_constructor_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        BN.BridgeoutLinear(3, 4, True, None, None, 0.3)  # p is keyword-only


# ----------------------------------------------------------------------------- linear layers
def test_linear_shared_noise_eval_plain():
    torch.manual_seed(0)
    lin = BN.BridgeoutLinear(6, 5, p=0.5, q=1.5, target_fraction=0.5)
    x = torch.randn(1, 6).expand(4, 6)
    y = lin(x)
    for i in range(1, 4):  # one shared sample (up to BLAS rounding)
        torch.testing.assert_close(y[i], y[0], rtol=1e-5, atol=1e-5)
    assert (lin(x) - y).abs().max() > 1e-2
    ref = nn.Linear(6, 5)
    ref.load_state_dict(lin.state_dict(), strict=True)
    assert torch.equal(lin.eval()(x), ref(x))
    assert "target_fraction=0.5" in repr(lin) and isinstance(lin, nn.Linear)


def test_per_sample_linear():
    torch.manual_seed(0)
    lin = BN.PerSampleBridgeoutLinear(6, 5, p=0.5, q=1.5, target_fraction=1.0)
    x = torch.randn(1, 6).expand(4, 6)
    y = lin(x)
    assert y.shape == (4, 5) and (y[0] - y[1]).abs().max() > 1e-2  # one draw per example
    lin.generator = gen(3)
    y3 = lin(torch.randn(2, 3, 6, generator=gen(4)))  # leading dims flattened, one draw per row
    assert y3.shape == (2, 3, 5)
    ref = nn.Linear(6, 5)
    ref.load_state_dict(lin.state_dict(), strict=True)
    assert torch.equal(lin.eval()(x), ref(x))


# ----------------------------------------------------------------------------- DropConnect
def test_dropconnect_conv_equals_signed_q2_bridgeout():
    torch.manual_seed(0)
    dc = BN.DropConnectConv2d(3, 4, 3, p=0.4)
    bo = BN.BridgeoutConv2d(3, 4, 3, p=0.4, q=2.0, target_fraction=1.0, signed=True)
    bo.load_state_dict(dc.state_dict())
    x = torch.randn(2, 3, 5, 5, generator=gen(5))
    dc.generator, bo.generator = gen(9), gen(9)
    assert torch.equal(dc(x), bo(x))
    keep = (torch.rand(dc.weight.shape, generator=gen(9)) < 0.6).float()
    dc.generator = gen(9)
    torch.testing.assert_close(dc(x), nn.functional.conv2d(x, dc.weight * keep / 0.6, dc.bias))
    assert repr(dc).endswith("p=0.4)") and isinstance(dc, nn.Conv2d)
    assert torch.equal(dc.eval()(x), nn.functional.conv2d(x, dc.weight, dc.bias))


def test_dropconnect_linear():
    torch.manual_seed(0)
    dc = BN.DropConnectLinear(4, 3, p=0.5)
    dc.generator = gen(1)
    keep = (torch.rand(dc.weight.shape, generator=gen(1)) < 0.5).float()
    x = torch.randn(2, 4)
    torch.testing.assert_close(dc(x), nn.functional.linear(x, dc.weight * keep * 2, dc.bias))


# ----------------------------------------------------------------------------- activations
def test_sparseout_module():
    m = BN.Sparseout(p=0.3, q=2.0, signed=True)
    x = torch.randn(50, 40, generator=gen(6))
    m.generator = gen(8)
    y = m(x)
    keep = (torch.rand(x.shape, generator=gen(8)) < 0.7).float()
    assert torch.equal(y, x * (keep * (1 / 0.7)))
    assert m.eval()(x) is x
    assert "q=2.0" in repr(m)
    with pytest.raises(ValueError, match="^q must"):
        BN.Sparseout(q=-1)


def test_targeted_dropout_module():
    m = BN.TargetedDropout(p=0.5, target_fraction=0.5)
    x = torch.randn(4, 8, 3, 3, generator=gen(7))
    y = m.train()(x)
    t = BF.targeting_mask(x, 0.5)
    assert torch.equal(y[~t], x[~t])
    assert set(torch.unique(y[t] / x[t]).tolist()) <= {0.0, 2.0}
    assert m.eval()(x) is x
    with pytest.raises(ValueError, match="^target_fraction must"):
        BN.TargetedDropout(target_fraction=0.0)


# ----------------------------------------------------------------------------- plain()
def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        BN.BridgeoutConv2d(3, 4, 3, padding=1, bias=False, p=0.3),
        nn.BatchNorm2d(4), nn.ReLU(),
        BN.TargetedDropout(0.3),
        nn.Sequential(BN.DropConnectConv2d(4, 4, 3, padding=1, p=0.3), BN.Sparseout(0.3), nn.Dropout2d(0.2)),
        nn.Flatten(),
        BN.BridgeoutLinear(4 * 5 * 5, 6, p=0.3, signed=True),
        nn.Dropout(0.5),
        BN.PerSampleBridgeoutLinear(6, 3, p=0.3),
    )


NOISY = (BN.BridgeoutConv2d, BN.BridgeoutLinear, BN.Sparseout, BN.TargetedDropout, nn.Dropout, nn.Dropout2d)


def test_plain_replaces_layers_and_keeps_function():
    model = make_model()
    model[0].generator = gen(1)  # generators must not break the copy
    x = torch.randn(2, 3, 5, 5, generator=gen(2))
    model.train()
    rng = torch.get_rng_state()
    clean = BN.plain(model)
    assert torch.equal(torch.get_rng_state(), rng)  # no global RNG use
    assert not any(isinstance(m, NOISY) for m in clean.modules())
    assert type(clean[0]) is nn.Conv2d and clean[0].bias is None
    assert type(clean[4][0]) is nn.Conv2d and type(clean[6]) is nn.Linear and type(clean[8]) is nn.Linear
    assert isinstance(clean[3], nn.Identity) and isinstance(clean[4][1], nn.Identity)
    assert isinstance(clean[4][2], nn.Identity) and isinstance(clean[7], nn.Identity)
    assert clean.training and all(m.training for m in clean.modules())  # same mode as the input
    # the input model is untouched and still noisy
    assert type(model[0]) is BN.BridgeoutConv2d and model[0].generator is not None
    model.eval()
    clean.eval()
    assert torch.equal(clean(x), model(x))
    # copies, not shared parameters
    with torch.no_grad():
        clean[0].weight.add_(1.0)
    assert not torch.equal(clean[0].weight, model[0].weight)
    assert list(clean.state_dict()) == list(model.state_dict())


def test_plain_eval_mode_and_root_layer():
    model = make_model().eval()
    assert not BN.plain(model).training
    conv = make_conv(p=0.3)
    c = BN.plain(conv)
    assert type(c) is nn.Conv2d and c.training and torch.equal(c.weight, conv.weight)
    assert c.weight is not conv.weight
    assert isinstance(BN.plain(BN.Sparseout()), nn.Identity)


def test_plain_matches_train_mean():
    """The plain model is the noise-free mean of a Bridgeout linear layer (E[W~] = W)."""
    torch.manual_seed(0)
    lin = BN.BridgeoutLinear(8, 2, p=0.3, q=1.5, target_fraction=1.0)
    lin.generator = gen(3)
    x = torch.randn(1, 8, generator=gen(4))
    n = 4000
    with torch.no_grad():
        ys = torch.cat([lin(x) for _ in range(n)])
        ref = BN.plain(lin)(x)
    # per draw, y - ref = sum_i x_i |w_i|^q/2 eps_i: variance p/(1-p) sum_i x_i^2 |w_i|^q
    sd = math.sqrt(0.3 / 0.7 * float((x**2 * lin.weight.detach().abs() ** 1.5).sum(1).max()))
    assert ((ys.mean(0) - ref[0]).abs() <= 5 * sd / math.sqrt(n)).all()


# --------------------------------------------------------------------------- bad input (issue 28)
@pytest.mark.parametrize("make, message", [
    (lambda: BN.BridgeoutConv2d(0, 8, 3), r"BridgeoutConv2d: in_channels must be an integer >= 1, got 0"),
    (lambda: BN.BridgeoutConv2d(3, 0, 3), r"out_channels must be an integer >= 1, got 0"),
    (lambda: BN.BridgeoutLinear(4, 0), r"BridgeoutLinear: out_features must be an integer >= 1, got 0"),
    (lambda: BN.BridgeoutConv2d(3, 8, 3, signed=2), r"signed must be a bool \(True / False\), got 2"),
])
def test_noise_layers_refuse_empty_shapes_and_bad_flags(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_functional_bridgeout_names_a_weight_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=r"weight must be a torch.Tensor, got list"):
        BF.bridgeout([[1.0, 2.0]], p=0.3, q=1.5)


def test_convert_refuses_what_it_cannot_convert_and_leaves_a_converted_model_as_it_is():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv1d(3, 3, 3))
    with pytest.raises(ValueError, match=r"only on nn.Conv2d and nn.Linear layers; include names Conv1d"):
        BN.convert(net, include=torch.nn.Conv1d)
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got NoneType"):
        BN.convert(None)
    with warnings.catch_warnings():   # torch.jit.script is deprecated; users still have scripted models
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))
    with pytest.raises(ValueError, match=r"needs an eager nn.Module, got a TorchScript"):
        BN.convert(scripted)
    once = BN.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), p=0.2)
    twice = BN.convert(once, p=0.5)
    assert twice is not once and twice[0].p == 0.2                    # a copy, the layer unchanged
    assert torch.equal(twice[0].weight, once[0].weight)
