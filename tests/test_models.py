"""Tests of bridgeout.models: shapes, hand-derived parameter counts, regularizer
placement, state_dict compatibility across regularizers, initialisation, errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bridgeout import models as M

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)


def _nn():
    """bridgeout.nn: a broken import fails these tests, it does not skip them."""
    from bridgeout import nn as bnn
    return bnn


def _input(name, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = MNIST if name == "lenet5" else CIFAR
    return torch.randn(n, *shape, generator=g)


# Small variants (fast on one CPU thread) of every architecture.
SMALL = {
    "vgg16": dict(width=0.125),
    "resnet": dict(width=0.5),
    "wrn": dict(depth=10, widen_factor=2, width=0.5),
    "lenet5": dict(),
}


# ---------------------------------------------------------------- hand counts
def conv(c_in, c_out, k):
    """Weights of a k x k conv plus its bias (every conv has bias=True)."""
    return c_in * c_out * k * k + c_out


def bn(c):
    """BatchNorm2d affine weight + bias (running statistics are buffers)."""
    return 2 * c


def linear(n_in, n_out):
    return n_in * n_out + n_out


def vgg16_count(classes):
    total = 0
    total += conv(3, 64, 3) + bn(64) + conv(64, 64, 3) + bn(64)                      # block 1
    total += conv(64, 128, 3) + bn(128) + conv(128, 128, 3) + bn(128)                # block 2
    total += conv(128, 256, 3) + bn(256) + 2 * (conv(256, 256, 3) + bn(256))         # block 3
    total += conv(256, 512, 3) + bn(512) + 2 * (conv(512, 512, 3) + bn(512))         # block 4
    total += 3 * (conv(512, 512, 3) + bn(512))                                       # block 5
    total += linear(512, classes)                                                    # head
    return total


def resnet_count(classes):
    def block(c_in, c_out):
        n = conv(c_in, c_out, 3) + bn(c_out) + conv(c_out, c_out, 3) + bn(c_out)
        if c_in != c_out:                                   # 1x1 conv + BN shortcut
            n += conv(c_in, c_out, 1) + bn(c_out)
        return n

    total = conv(3, 16, 3) + bn(16)                                  # stem
    total += 3 * block(16, 16)                                       # stage 1
    total += block(16, 32) + 3 * block(32, 32)                       # stage 2
    total += block(32, 64) + 5 * block(64, 64)                       # stage 3
    total += linear(64, classes)
    return total


def wrn_count(depth, k, classes):
    n = (depth - 4) // 6

    def block(c_in, c_out):
        m = bn(c_in) + conv(c_in, c_out, 3) + bn(c_out) + conv(c_out, c_out, 3)
        if c_in != c_out:                                   # plain 1x1 conv shortcut
            m += conv(c_in, c_out, 1)
        return m

    total = conv(3, 16, 3)
    total += block(16, 16 * k) + (n - 1) * block(16 * k, 16 * k)
    total += block(16 * k, 32 * k) + (n - 1) * block(32 * k, 32 * k)
    total += block(32 * k, 64 * k) + (n - 1) * block(64 * k, 64 * k)
    total += bn(64 * k) + linear(64 * k, classes)
    return total


def lenet5_count(classes):
    return (conv(1, 6, 5) + conv(6, 16, 5) + linear(16 * 5 * 5, 120) + linear(120, 84)
            + linear(84, classes))


@pytest.mark.parametrize("classes", [10, 100])
def test_parameter_counts_match_hand_derivation(classes):
    torch.manual_seed(0)
    assert M.count_parameters(M.build("vgg16", classes)) == vgg16_count(classes)
    assert M.count_parameters(M.build("resnet", classes)) == resnet_count(classes)
    assert M.count_parameters(M.build("lenet5", classes)) == lenet5_count(classes)
    assert M.count_parameters(M.build("wrn", classes, depth=16, widen_factor=2)) == \
        wrn_count(16, 2, classes)


def test_hand_counts_literal_values():
    # The hand formulas themselves, evaluated once on paper.
    assert vgg16_count(10) == 14_728_266
    assert resnet_count(10) == 514_218
    assert lenet5_count(10) == 61_706


def test_wrn28_10_parameter_count():
    torch.manual_seed(0)
    model = M.build("wrn28_10")
    n = M.count_parameters(model)
    # 36,489,290 with conv biases (the published layers have bias=True);
    # the usual bias-free figure is 36,479,194.
    assert n == wrn_count(28, 10, 10) == 36_489_290
    assert abs(n - 36.5e6) / 36.5e6 < 0.005
    assert model.linear.out_features == 10
    assert M.count_parameters(M.build("wrn28_10", 100)) == wrn_count(28, 10, 100)


def test_count_parameters_trainable_only():
    model = M.build("lenet5")
    model.fc1.weight.requires_grad_(False)
    assert M.count_parameters(model, trainable_only=True) == lenet5_count(10) - 400 * 120
    assert M.count_parameters(model) == lenet5_count(10)


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("classes", [10, 100])
def test_output_shapes(name, classes):
    torch.manual_seed(0)
    model = M.build(name, classes, **SMALL[name]).eval()
    with torch.no_grad():
        out = model(_input(name, n=3))
    assert out.shape == (3, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["vgg16", "resnet"])
def test_full_width_forward(name):
    torch.manual_seed(0)
    model = M.build(name, 100)
    out = model(_input(name))          # training mode, batch of 2
    assert out.shape == (2, 100)


def test_vgg16_reaches_1x1_and_head_size():
    model = M.build("vgg16", width=0.25)
    assert model.linear.in_features == 128
    x = model.features(_input("vgg16"))
    assert x.shape == (2, 128, 1, 1)


def test_width_scales_conv_channels():
    model = M.build("vgg16", width=0.001)
    outs = [m.out_channels for _, m in M.conv_layers(model)]
    assert outs == [1] * 13                      # round(512 * 0.001) = 0 -> at least 1
    model = M.build("resnet", width=0.5)
    outs = sorted({m.out_channels for _, m in M.conv_layers(model)})
    assert outs == [8, 16, 32]
    assert model.linear.in_features == 32
    model = M.build("lenet5", width=2.0)
    assert (model.conv1.out_channels, model.conv2.out_channels) == (12, 32)
    assert model.fc1.in_features == 32 * 25


def test_in_channels():
    model = M.build("resnet", in_channels=1, width=0.25).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert M.build("lenet5").conv1.in_channels == 1
    assert M.build("vgg16", width=0.1).features[0].conv.in_channels == 3


def test_wrn_structure():
    model = M.build("wrn", depth=16, widen_factor=4, width=0.25)
    blocks = [m for m in model.modules() if isinstance(m, M.WideBasic)]
    assert len(blocks) == 3 * 2                  # n = (16 - 4) / 6 = 2 per stage
    assert [b.conv2.stride for b in blocks] == [(1, 1), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1)]
    shortcuts = [type(b.shortcut) for b in blocks]
    assert shortcuts == [nn.Conv2d, nn.Identity] * 3   # 16 -> 64, 64 -> 128, 128 -> 256 (x width)


def test_conv_layers_in_forward_order():
    for name in ("resnet", "wrn", "vgg16", "lenet5"):
        model = M.build(name, **SMALL[name])
        calls = []
        named = M.conv_layers(model)
        handles = [m.register_forward_hook(lambda mod, i, o, n=n: calls.append(n))
                   for n, m in named]
        model(_input(name))
        for h in handles:
            h.remove()
        assert calls == [n for n, _ in named]
        assert all(isinstance(m, nn.Conv2d) for _, m in named)


def test_block_functions_written_out():
    torch.manual_seed(0)
    res = M.build("resnet", width=0.5).eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for blk, c_in in ((res.layer1[1], 8), (res.layer2[0], 8)):      # identity / 1x1 shortcut
            x = torch.randn(2, c_in, 16, 16, generator=g)
            h = torch.relu(blk.bn1(blk.conv1(x)))
            if isinstance(blk.shortcut, nn.Identity):
                short = x
            else:
                short = blk.shortcut[1](blk.shortcut[0](x))
            expected = torch.relu(blk.bn2(blk.conv2(h)) + short)
            torch.testing.assert_close(blk(x), expected, rtol=0, atol=1e-6)
        wrn = M.build("wrn", depth=10, widen_factor=2, width=0.5).eval()
        blk = wrn.layer2[0]                                              # 16 -> 32, stride 2
        x = torch.randn(2, 16, 16, 16, generator=g)
        h = blk.conv1(torch.relu(blk.bn1(x)))
        expected = blk.conv2(torch.relu(blk.bn2(h))) + blk.shortcut(x)
        out = blk(x)
        assert out.shape == (2, 32, 8, 8)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
        assert (out < 0).any()                      # pre-activation block: no ReLU at the end
        le = M.build("lenet5").eval()
        x = _input("lenet5")
        h = nn.functional.max_pool2d(torch.relu(le.conv1(x)), 2)
        h = nn.functional.max_pool2d(torch.relu(le.conv2(h)), 2)
        h = torch.relu(le.fc2(torch.relu(le.fc1(h.flatten(1)))))
        torch.testing.assert_close(le(x), le.linear(h), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- regularizer placement
def _three_by_three(model):
    return [m for _, m in M.conv_layers(model) if m.kernel_size == (3, 3)]


@pytest.mark.parametrize("regularizer,cls_name", [("bridgeout", "BridgeoutConv2d"),
                                                  ("dropconnect", "DropConnectConv2d")])
def test_weight_noise_on_every_3x3_conv_only(regularizer, cls_name):
    bnn = _nn()
    cls = getattr(bnn, cls_name)
    # by hand: VGG 13 3x3 convs; ResNet 1 + 2 * (3 + 4 + 6) = 27 3x3 and 2 shortcuts;
    # WRN-16-2 (n = 2): 1 + 2 * 6 = 13 3x3 and 3 shortcuts; lenet5 2 convs (5x5).
    expected = {"vgg16": (13, 0), "resnet": (27, 2), "wrn16": (13, 3), "lenet5": (2, 0)}
    for key, (n_noisy, n_shortcut) in expected.items():
        torch.manual_seed(0)
        if key == "wrn16":
            model = M.build("wrn", regularizer=regularizer, depth=16, widen_factor=2)
        else:
            model = M.build(key, regularizer=regularizer, **SMALL[key])
        convs = M.conv_layers(model)
        noisy = [n for n, m in convs if isinstance(m, cls)]
        plain = [n for n, m in convs if not isinstance(m, cls)]
        assert len(noisy) == n_noisy, key
        assert len(plain) == n_shortcut, key
        assert all("shortcut" in n for n in plain), key
        assert all(type(m) is nn.Conv2d for n, m in convs if n in plain)
        if regularizer == "bridgeout":
            assert not any(isinstance(m, bnn.DropConnectConv2d) for _, m in convs)
        if key != "lenet5":
            assert len(_three_by_three(model)) == n_noisy
            assert isinstance(model.conv1 if key != "vgg16" else model.features[0].conv, cls)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert linears and all(type(m) is nn.Linear for m in linears)
        assert not any(isinstance(m, (bnn.TargetedDropout, bnn.Sparseout))
                       for m in model.modules())


@pytest.mark.parametrize("regularizer,cls_name", [("dropout", "TargetedDropout"),
                                                  ("sparseout", "Sparseout")])
def test_activation_regularizer_counts(regularizer, cls_name):
    bnn = _nn()
    cls = getattr(bnn, cls_name)
    # by hand: VGG one per conv (13); ResNet two per block (2 * 13 = 26);
    # WRN-16-2 one per block (3 * 2 = 6); lenet5 one per conv (2).
    expected = {"vgg16": 13, "resnet": 26, "wrn16": 6, "lenet5": 2}
    for key, count in expected.items():
        torch.manual_seed(0)
        if key == "wrn16":
            model = M.build("wrn", regularizer=regularizer, depth=16, widen_factor=2)
        else:
            model = M.build(key, regularizer=regularizer, **SMALL[key])
        assert sum(isinstance(m, cls) for m in model.modules()) == count, key
        assert all(type(m) is nn.Conv2d for _, m in M.conv_layers(model)), key


def _capture(model, names):
    """Forward hooks recording (cloned) input and output of the named modules."""
    store, handles = {}, []
    mods = dict(model.named_modules())
    for n in names:
        def hook(mod, inp, out, n=n):
            store[n] = (inp[0].detach().clone(), out.detach().clone())
        handles.append(mods[n].register_forward_hook(hook))
    return store, handles


def test_targeted_dropout_positions():
    bnn = _nn()
    torch.manual_seed(0)
    # VGG: after conv-BN-ReLU
    vgg = M.build("vgg16", regularizer="dropout", width=0.125).eval()
    layer = vgg.features[3]
    assert isinstance(layer, M.ConvBNReLU) and isinstance(layer.reg, bnn.TargetedDropout)
    store, _ = _capture(vgg, ["features.3.bn", "features.3.reg"])
    vgg(_input("vgg16"))
    assert torch.equal(store["features.3.reg"][0], torch.relu(store["features.3.bn"][1]))

    # ResNet: drop1 after bn1-ReLU, drop2 after bn2 (before the residual sum)
    res = M.build("resnet", regularizer="dropout", width=0.5).eval()
    blk = "layer2.0"
    store, _ = _capture(res, [f"{blk}.bn1", f"{blk}.drop1", f"{blk}.bn2", f"{blk}.drop2",
                              f"{blk}.conv2"])
    res(_input("resnet"))
    assert torch.equal(store[f"{blk}.drop1"][0], torch.relu(store[f"{blk}.bn1"][1]))
    assert torch.equal(store[f"{blk}.conv2"][0], store[f"{blk}.drop1"][1])
    assert torch.equal(store[f"{blk}.drop2"][0], store[f"{blk}.bn2"][1])
    assert (store[f"{blk}.drop2"][0] < 0).any()        # no ReLU before drop2
    assert not any(isinstance(m, bnn.TargetedDropout) for m in
                   (res.conv1, res.bn1))                # nothing on the stem

    # WRN: between the two convs
    wrn = M.build("wrn", regularizer="dropout", depth=10, widen_factor=2, width=0.5).eval()
    blk = "layer2.0"
    store, _ = _capture(wrn, [f"{blk}.conv1", f"{blk}.drop", f"{blk}.bn2"])
    wrn(_input("wrn"))
    assert isinstance(wrn.layer2[0].drop, bnn.TargetedDropout)
    assert torch.equal(store[f"{blk}.drop"][0], store[f"{blk}.conv1"][1])
    assert torch.equal(store[f"{blk}.bn2"][0], store[f"{blk}.drop"][1])

    # lenet5: after each conv-ReLU, before pooling
    le = M.build("lenet5", regularizer="dropout").eval()
    store, _ = _capture(le, ["conv2", "reg2"])
    le(_input("lenet5"))
    assert torch.equal(store["reg2"][0], torch.relu(store["conv2"][1]))
    assert store["reg2"][0].shape[-1] == 10


def test_activation_regularizer_is_live_in_training():
    _nn()
    torch.manual_seed(0)
    plain = M.build("vgg16", width=0.125)
    drop = M.build("vgg16", regularizer="dropout", width=0.125, p=0.5)
    drop.load_state_dict(plain.state_dict())
    x = _input("vgg16", n=4)
    assert torch.equal(plain.eval()(x), drop.eval()(x))
    assert not torch.equal(plain.train()(x), drop.train()(x))


# ---------------------------------------------------------------- state_dict
@pytest.mark.parametrize("name", sorted(SMALL))
def test_bridgeout_state_dict_loads_into_weight_decay(name):
    _nn()
    torch.manual_seed(1)
    src = M.build(name, regularizer="bridgeout", **SMALL[name])
    # train one step so BN statistics and weights are not at their init values
    opt = torch.optim.SGD(src.parameters(), lr=0.1)
    x = _input(name, n=4, seed=3)
    src(x).square().mean().backward()
    opt.step()
    torch.manual_seed(2)
    dst = M.build(name, regularizer="weight_decay", **SMALL[name])
    result = dst.load_state_dict(src.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    src.eval()
    dst.eval()
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_state_dict_keys_identical_across_regularizers(name):
    _nn()
    keys = {}
    for reg in M.REGULARIZERS:
        sd = M.build(name, regularizer=reg, **SMALL[name]).state_dict()
        keys[reg] = [(k, tuple(v.shape)) for k, v in sd.items()]
    for reg in M.REGULARIZERS:
        assert keys[reg] == keys["weight_decay"], reg


@pytest.mark.parametrize("regularizer", ["bridgeout", "dropout", "sparseout", "dropconnect"])
def test_nn_plain_of_built_model(regularizer):
    bnn = _nn()
    torch.manual_seed(0)
    model = M.build("resnet", regularizer=regularizer, width=0.5).eval()
    flat = bnn.plain(model)
    convs = M.conv_layers(flat)
    assert [n for n, _ in convs] == [n for n, _ in M.conv_layers(model)]
    assert all(type(m) is nn.Conv2d for _, m in convs)
    assert not any(isinstance(m, (bnn.TargetedDropout, bnn.Sparseout)) for m in flat.modules())
    x = _input("resnet")
    with torch.no_grad():
        assert torch.equal(flat(x), model(x))


# ---------------------------------------------------------------- initialisation
def test_conv_init_xavier_gain_sqrt2():
    torch.manual_seed(0)
    model = M.build("vgg16")
    w = model.features[-2].conv.weight.detach().double()        # (512, 512, 3, 3)
    fan_in = fan_out = 512 * 9
    bound = math.sqrt(2.0) * math.sqrt(6.0 / (fan_in + fan_out))
    n = w.numel()
    assert w.abs().max() <= bound
    # P(max|w| < (1 - 1e-3) bound) = (1 - 1e-3)^n, about exp(-2359): never
    assert w.abs().max() > (1 - 1e-3) * bound
    # U(-a, a): mean 0 (sd a / sqrt(3n)), E[w^2] = a^2 / 3 with relative sd sqrt(4/5) / sqrt(n)
    assert abs(w.mean().item()) < 6 * bound / math.sqrt(3 * n)
    rel = (w.square().mean().item() - bound ** 2 / 3) / (bound ** 2 / 3)
    assert abs(rel) < 6 * math.sqrt(0.8) / math.sqrt(n)


def test_init_bounds_biases_batchnorm_every_model():
    torch.manual_seed(0)
    for name in SMALL:
        model = M.build(name, **SMALL[name])
        for cname, m in M.conv_layers(model):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            bound = math.sqrt(2.0) * math.sqrt(6.0 / (fan_in + fan_out))
            assert m.weight.abs().max() <= bound, cname
            assert m.bias is not None and torch.count_nonzero(m.bias) == 0, cname
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert torch.equal(m.weight, torch.ones_like(m.weight))
                assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_linear_head_keeps_pytorch_default_init():
    # The published conv_init only touches modules whose class name contains "Conv".
    torch.manual_seed(0)
    head = M.build("vgg16").linear                       # 512 -> 10, n = 5120
    bound = 1 / math.sqrt(512)
    assert head.weight.abs().max() <= bound
    assert head.weight.abs().max() > 0.9 * bound         # P(fail) = 0.9^5120
    assert torch.count_nonzero(head.bias) == 10


def test_build_is_seeded():
    torch.manual_seed(5)
    a = M.build("resnet", width=0.5).state_dict()
    torch.manual_seed(5)
    b = M.build("resnet", width=0.5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- errors
def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as e:
        M.build("vgg19")
    msg = str(e.value)
    assert "'vgg19'" in msg
    assert all(f"'{n}'" in msg for n in M.MODELS)


def test_unknown_regularizer_lists_valid_names():
    with pytest.raises(ValueError) as e:
        M.build("resnet", regularizer="l2")
    msg = str(e.value)
    assert "'l2'" in msg
    assert all(f"'{n}'" in msg for n in M.REGULARIZERS)


@pytest.mark.parametrize("kwargs,word", [
    (dict(num_classes=1), "num_classes"),
    (dict(num_classes=2.5), "num_classes"),
    (dict(width=0), "width"),
    (dict(width=-0.5), "width"),
    (dict(in_channels=0), "in_channels"),
    (dict(p=1.0), "p"),
    (dict(q=0), "q"),
    (dict(target_fraction=0.0), "target_fraction"),
])
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        M.build("lenet5", **kwargs)


@pytest.mark.parametrize("depth", [9, 12, 4, 27])
def test_bad_wrn_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        M.build("wrn", depth=depth, widen_factor=1)
    with pytest.raises(ValueError, match="widen_factor"):
        M.build("wrn", depth=10, widen_factor=0)


def test_wrn28_10_ignores_depth_arguments():
    model = M.build("wrn28_10", depth=10, widen_factor=1, width=0.05)
    assert sum(isinstance(m, M.WideBasic) for m in model.modules()) == 12
    assert model.depth == 28 and model.widen_factor == 10


@pytest.mark.parametrize("signed", [2, -1, "yes", 0.5])
def test_build_refuses_a_signed_that_is_not_a_bool(signed):
    with pytest.raises(ValueError, match=r"signed must be a bool \(True / False\), got"):
        M.build("lenet5", 10, regularizer="bridgeout", signed=signed)


@pytest.mark.parametrize("entry", __import__("bridgeout.registry", fromlist=["x"]).REGULARIZER_TABLE,
                         ids=lambda e: e.name)
def test_each_registry_entry_puts_in_the_layers_its_kind_says(entry):
    """One registry entry per regularizer: weight noise means noisy convs, activation noise a
    noise layer after each activation, a penalty plain layers and a loss term."""
    from bridgeout import nn as bnn, regularizers, sparsity
    net = M.build("vgg16", 10, regularizer=entry.name, width=1 / 16)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    noisy = [m for m in convs if type(m) is not torch.nn.Conv2d]
    after = [m for m in net.modules() if isinstance(m, (bnn.TargetedDropout, bnn.Sparseout))]
    assert bool(noisy) == (entry.kind == "weights") and bool(after) == (entry.kind == "activations")
    assert (sparsity.penalty_fn(net) is not None) == (entry.kind == "penalty")
    assert (entry.name in regularizers.CONV_LAYERS) == (entry.kind == "weights")
    assert entry.label and entry.colour.startswith("#") and entry.marker


def test_a_placement_refuses_an_unknown_regularizer():
    from bridgeout.regularizers import Placement
    with pytest.raises(ValueError, match=r"unknown regularizer 'bridge'; valid choices: 'bridgeout'"):
        Placement("bridge")
