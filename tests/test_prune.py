"""Tests of bridgeout.prune: selection rules, mask/remove equivalence, residual coupling,
cost figures, the sweep table and that inputs are never modified."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import bridgeout.prune as P
from bridgeout.data import DeviceData
from bridgeout.models import build

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


def small(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name == "resnet":
        m = build("resnet", width=0.25)
    elif name == "wrn":          # widen 2: 1x1 conv shortcuts in every stage
        m = build("wrn", depth=10, widen_factor=2, width=0.25)
    elif name == "wrn1":         # widen 1: identity shortcut couples the stem to stage 1
        m = build("wrn", depth=10, widen_factor=1, width=0.5)
    elif name == "vgg16":
        m = build("vgg16", width=0.125)
    elif name == "lenet5":
        m = build("lenet5")
    elif name == "bridgeout_resnet":
        m = build("resnet", width=0.25, regularizer="bridgeout")
    else:
        raise KeyError(name)
    return m.eval()


def randomise_bn(model: nn.Module, seed: int = 1, shift: bool = False) -> nn.Module:
    """Non-trivial BN scales and variances; zero bias and running mean unless ``shift``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if shift:
                    m.bias.copy_(torch.randn(n, generator=g))
                    m.running_mean.copy_(torch.randn(n, generator=g))
    return model


def x_for(model, n=2, seed=0):
    shape = P.default_example_input(model).shape[1:]
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model, snap):
    state = model.state_dict()
    assert state.keys() == snap.keys()
    for k, v in state.items():
        assert torch.equal(v, snap[k]), k


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 64),
              rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 120))
    return DeviceData(arrays, "cifar10")


# --------------------------------------------------------------------------- mask mode
def brute_scores(weight, criterion):
    """Per-filter importance by explicit loops (independent of filter_scores)."""
    w = weight.detach().double()
    out = []
    for f in range(w.shape[0]):
        vals = w[f].flatten().tolist()
        if criterion == "l2":
            out.append(math.sqrt(sum(v * v for v in vals)))
        else:
            out.append(sum(abs(v) for v in vals))
    return out


@pytest.mark.parametrize("criterion", ["l2", "l1"])
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_mask_zeroes_floor_fc_smallest_filters(criterion, fraction):
    model = small("resnet")
    pruned = P.prune(model, fraction, criterion, "layer", "mask")
    zeroed = P.zeroed_filters(pruned)
    convs = dict(P.prunable_convs(model))
    assert set(zeroed) == set(convs)           # every conv, 1x1 shortcuts and the stem too
    for name, conv in convs.items():
        c = conv.out_channels
        k = math.floor(fraction * c + 1e-9)
        idx = set(zeroed[name].tolist())
        assert len(idx) == k, name
        scores = brute_scores(conv.weight, criterion)
        kept = [s for i, s in enumerate(scores) if i not in idx]
        gone = [s for i, s in enumerate(scores) if i in idx]
        if gone:
            assert max(gone) <= min(kept), name
        # the kept filters are untouched, biases and BN untouched
        pconv = dict(P.prunable_convs(pruned))[name]
        keep = sorted(set(range(c)) - idx)
        assert torch.equal(pconv.weight[keep], conv.weight[keep])
        assert torch.equal(pconv.bias, conv.bias)
    for (n1, b1), (n2, b2) in zip(model.named_buffers(), pruned.named_buffers()):
        assert n1 == n2 and torch.equal(b1, b2)


def test_mask_random_is_seeded_and_counts():
    model = small("vgg16")
    a = P.zeroed_filters(P.prune(model, 0.5, "random", seed=3))
    b = P.zeroed_filters(P.prune(model, 0.5, "random", seed=3))
    c = P.zeroed_filters(P.prune(model, 0.5, "random", seed=4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    convs = dict(P.prunable_convs(model))
    assert all(len(a[k]) == convs[k].out_channels // 2 for k in a)


def test_one_layer_alone_prunes_that_layer_as_the_per_layer_ranking_does_and_no_other():
    model = small("vgg16")
    names = [n for n, _ in P.prunable_convs(model)]
    every = P.zeroed_filters(P.prune(model, 0.5, "l2", "layer", "mask"))
    for k in (1, 4, len(names)):
        alone = P.zeroed_filters(P.prune(model, 0.5, "l2", f"only:{k}", "mask"))
        assert torch.equal(alone[names[k - 1]], every[names[k - 1]]) and len(alone[names[k - 1]]) > 0
        assert all(len(alone[n]) == 0 for n in names if n != names[k - 1])
    with pytest.raises(ValueError, match=f"has {len(names)} prunable units .'only:1' to 'only:{len(names)}'"):
        P.prune(model, 0.5, "l2", f"only:{len(names) + 1}", "mask")
    with pytest.raises(ValueError, match="works in mode 'mask' only"):
        P.prune(model, 0.5, "l2", "only:1", "remove")
    for bad in ("only:0", "only:x", "only:", "only:-1", 3):
        with pytest.raises(ValueError, match="'only:<k>'"):
            P.prune(model, 0.5, "l2", bad, "mask")
    assert "only:12" in P.SCOPE_NAMES and "only:0" not in P.SCOPE_NAMES and "net" not in P.SCOPE_NAMES


def test_global_mask_threshold_and_keeps_one():
    model = small("resnet")
    convs = P.prunable_convs(model)
    total = sum(m.out_channels for _, m in convs)
    for fraction in (0.3, 0.95):
        zeroed = P.zeroed_filters(P.prune(model, fraction, "l2", "global", "mask"))
        # floor(f N) filters, capped so that every conv keeps one: N - (number of convs)
        expect = min(math.floor(fraction * total + 1e-9), total - len(convs))
        assert sum(len(v) for v in zeroed.values()) == expect
        norm = {n: P.filter_scores(m.weight, "l2") / P.filter_scores(m.weight, "l2").max()
                for n, m in convs}
        gone = torch.cat([norm[n][zeroed[n]] for n, _ in convs])
        for n, m in convs:
            assert len(zeroed[n]) <= m.out_channels - 1
            kept = norm[n][sorted(set(range(m.out_channels)) - set(zeroed[n].tolist()))]
            if len(kept) > 1:   # a unit at its last filter may keep a smaller one
                assert kept.min() >= gone.max()


def test_fraction_zero_is_identical_function():
    model = small("bridgeout_resnet")
    x = x_for(model)
    ref = model(x)
    for mode in P.MODES:
        out = P.prune(model, 0.0, mode=mode)
        assert out is not model
        assert not any(isinstance(m, type(model.conv1)) and type(m) is not nn.Conv2d
                       for m in out.modules())
        assert torch.equal(out(x), ref)


def test_orthogonality_ranks_planted_duplicate_most_overlapping():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 16, 3)
    with torch.no_grad():
        conv.weight[7] = 2.5 * conv.weight[3]
    scores = P.filter_scores(conv.weight, "orthogonality")
    assert set(torch.argsort(scores)[:2].tolist()) == {3, 7}
    # overlap is the mean |cosine| to the other filters, diagonal excluded: brute force
    w = conv.weight.detach().reshape(16, -1).double()
    w = w / w.norm(dim=1, keepdim=True)
    expect = [1 - sum(abs(float(w[f] @ w[j])) for j in range(16) if j != f) / 16 for f in range(16)]
    assert torch.allclose(scores.double(), torch.tensor(expect, dtype=torch.float64), atol=1e-5)
    net = nn.Sequential(conv, nn.ReLU())
    zeroed = P.zeroed_filters(P.prune(net, 2 / 16, "orthogonality", example_input=None))
    assert zeroed["0"].tolist() == [3, 7]


# --------------------------------------------------------------------------- remove mode
@pytest.mark.parametrize("name", ["vgg16", "lenet5"])
def test_remove_chain_channel_counts(name):
    model = small(name)
    convs = dict(P.prunable_convs(model))
    for fraction in (0.2, 0.6):
        out = P.prune(model, fraction, "l2", "layer", "remove")
        for n, m in P.prunable_convs(out):
            c = convs[n].out_channels
            assert m.out_channels == c - math.floor(fraction * c + 1e-9), n
        assert out(x_for(model, 3)).shape == (3, 10)


@pytest.mark.parametrize("name", ["resnet", "wrn", "wrn1"])
def test_remove_residual_coupling_all_fractions(name):
    model = small(name)
    plan = P.RemovalPlan(P.oneshot._plain_copy(model))
    coupled = [g for g in plan.groups if len(g.convs) > 1]
    assert coupled, "residual additions must couple convs"
    x = x_for(model, 2)
    before = P.count_flops(model, x[:1]), P.count_parameters(model)
    for scope in P.SCOPES:
        flops, params = [before[0]], [before[1]]
        scores = plan.importances(model, "l2")
        for fraction in FRACTIONS:
            # the plan is what prune() applies; re-tracing per fraction is tested elsewhere
            out = plan.apply(model, plan.select(scores, fraction, "l2", scope))
            assert out(x).shape == (2, 10)
            flops.append(P.count_flops(out, x[:1]))
            params.append(P.count_parameters(out))
            if scope == "layer":
                mods = dict(out.named_modules())
                for g in plan.groups:
                    expect = g.channels - math.floor(fraction * g.channels + 1e-9)
                    for conv_name, _, _ in g.convs:   # coupled convs shrink together
                        assert mods[conv_name].out_channels == expect, conv_name
        assert all(a > b for a, b in zip(flops, flops[1:])), (scope, flops)
        assert all(a > b for a, b in zip(params, params[1:])), (scope, params)
    out = P.prune(model, 0.9, "orthogonality", "global", "remove")
    assert out(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet", "wrn1"])
def test_plan_replay_matches_torch_pruning_group_prune(name):
    import torch_pruning as tp

    model = small(name)
    plan = P.RemovalPlan(P.oneshot._plain_copy(model))
    sel = plan.select(plan.importances(model, "l1"), 0.4, "l1", "layer")
    ours = plan.apply(model, sel)
    theirs = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(theirs, example_inputs=x_for(model, 1))
    mods = dict(theirs.named_modules())
    for g, s in zip(plan.groups, sel):
        graph.get_pruning_group(mods[g.root], tp.prune_conv_out_channels, s.tolist()).prune()
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["vgg16", "lenet5"])
def test_remove_equals_mask_when_zeroing_is_exact(name):
    # conv biases are 0 after build(); BN with zero bias and zero running mean maps a
    # zeroed channel to exactly 0, so removing it changes nothing.
    model = randomise_bn(small(name))
    x = x_for(model, 4)
    for scope in P.SCOPES:
        for fraction in (0.3, 0.7):
            masked = P.prune(model, fraction, "l2", scope, "mask")(x)
            removed = P.prune(model, fraction, "l2", scope, "remove")(x)
            assert torch.allclose(masked, removed, rtol=1e-4, atol=1e-5)
            assert not torch.allclose(masked, model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet", "wrn"])
def test_remove_equals_mask_of_coupled_indices_residual(name):
    model = randomise_bn(small(name))
    x = x_for(model, 4)
    plan = P.RemovalPlan(P.oneshot._plain_copy(model))
    sel = plan.select(plan.importances(model, "l2"), 0.5, "l2")
    removed = plan.apply(model, sel)
    mask = {}
    for g, s in zip(plan.groups, sel):
        chosen = set(s.tolist())
        for conv_name, idxs, root_idxs in g.convs:
            mask[conv_name] = torch.tensor([int(i) for i, r in zip(idxs, root_idxs)
                                            if int(r) in chosen])
    masked = P.mask._apply_mask(copy.deepcopy(model), mask)
    assert torch.allclose(masked(x), removed(x), rtol=1e-4, atol=1e-5)
    # with a BatchNorm shift the zeroed channels still emit constants: the modes differ
    shifted = randomise_bn(copy.deepcopy(model), shift=True)
    assert not torch.allclose(P.mask._apply_mask(copy.deepcopy(shifted), mask)(x),
                              plan.apply(shifted, sel)(x), rtol=1e-3, atol=1e-3)


def test_remove_save_load_round_trip(tmp_path):
    model = small("resnet")
    out = P.prune(model, 0.5, "l2", "layer", "remove")
    x = x_for(model, 3)
    path = tmp_path / "pruned.pt"
    torch.save(out, path)
    loaded = torch.load(path, weights_only=False)
    assert torch.equal(loaded.eval()(x), out(x))
    # state_dict into another model pruned to the same shapes (layer scope fixes them)
    other = P.prune(small("resnet", seed=5), 0.5, "l2", "layer", "remove")
    assert not torch.allclose(other(x), out(x))
    other.load_state_dict(out.state_dict())
    assert torch.equal(other(x), out(x))


def tiny_convnext(seed: int = 0) -> nn.Module:
    """torchvision's ConvNeXt at two stages of widths 16 and 32 (non-trivial layer scales)."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    torch.manual_seed(seed)
    m = ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)], num_classes=10).eval()
    with torch.no_grad():
        for mod in m.modules():
            if hasattr(mod, "layer_scale"):
                mod.layer_scale.normal_()
    return m


def test_remove_convnext_prunes_linear_and_layer_scale_like_torch_pruning():
    import torch_pruning as tp

    model = tiny_convnext()
    x = x_for(model, 2)
    plan = P.RemovalPlan(P.oneshot._plain_copy(model))
    assert plan.outputs == ["classifier.2"] and plan.fixed == []
    assert [g.root for g in plan.groups] == ["features.2.1", "features.0.0"]
    kinds = {(name, kind) for g in plan.groups for name, _, _, _, _, kind in g.actions}
    assert ("features.1.0.layer_scale", "parameter") in kinds and ("features.1.0.block.5", "module") in kinds
    sel = plan.select(plan.importances(model, "l1"), 0.4, "l1")
    ours = plan.apply(model, sel)
    theirs = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(theirs, example_inputs=x[:1], verbose=False)
    mods = dict(theirs.named_modules())
    for g, s in zip(plan.groups, sel):
        graph.get_pruning_group(mods[g.root], tp.prune_conv_out_channels, s.tolist()).prune()
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ours.features[1][0].layer_scale.shape == (10, 1, 1)       # 16 - floor(0.4 * 16)
    assert ours.features[1][0].block[3].out_features == 64           # the hidden units are kept
    assert ours(x).shape == (2, 10)
    assert P.count_flops(ours, x[:1]) < P.count_flops(model, x[:1])


def test_remove_keeps_a_conv_head_and_names_what_it_cannot_prune():
    x = torch.randn(2, 3, 32, 32)
    head = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 10, 1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten()).eval()
    plan = P.RemovalPlan(head)
    assert plan.outputs == ["2"] and plan.fixed == ["2"]              # the classes are kept
    out = P.prune(head, 0.5, mode="remove")
    assert out(x).shape == (2, 10) and out[0].out_channels == 4
    with pytest.raises(ValueError, match=r"nothing prunable in remove mode.*\['0'\]"):
        P.prune(nn.Sequential(nn.Conv2d(3, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 0.5, mode="remove")

    class Scaled(nn.Module):               # a channel-sized buffer Torch-Pruning does not shrink
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.register_buffer("scale", torch.ones(8, 1, 1))
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc((self.conv(x) * self.scale).mean((2, 3)))

    with pytest.raises(ValueError, match="cannot prune the channels of conv 'conv'.*mode='mask'"):
        P.prune(Scaled(), 0.5, mode="remove")
    assert P.prune(Scaled(), 0.5, mode="mask")(x).shape == (2, 10)


# --------------------------------------------------------------------------- inputs, errors
def test_prune_never_modifies_input():
    # train mode: tracing must not update BN stats; Bridgeout convs must not draw noise
    model = small("bridgeout_resnet").train()
    snap = snapshot(model)
    x = x_for(model)
    for mode in P.MODES:
        for criterion in P.CRITERIA:
            for scope in P.SCOPES:
                out = P.prune(model, 0.5, criterion, scope, mode)
                assert all(type(m) is nn.Conv2d for _, m in P.prunable_convs(out))
                assert out.training and out.eval()(x).shape == (2, 10)
    assert_state_equal(model, snap)
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize("kwargs, match", [
    (dict(fraction=1.0), "fraction"), (dict(fraction=-0.1), "fraction"),
    (dict(fraction=float("nan")), "fraction"), (dict(fraction="x"), "fraction"),
    (dict(fraction=0.5, criterion="l3"), "'orthogonality'"),
    (dict(fraction=0.5, scope="net"), "'global'"), (dict(fraction=0.5, mode="drop"), "'remove'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        P.prune(small("lenet5"), **kwargs)


def test_nothing_prunable(data):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ValueError, match="nothing prunable"):
        P.prune(mlp, 0.5)
    with pytest.raises(ValueError, match="nothing prunable"):
        P.sweep(mlp, data, fractions=(0.5,), progress=False)


def test_sweep_bad_arguments(data):
    model = small("lenet5")
    with pytest.raises(ValueError, match="fraction"):
        P.sweep(small("resnet"), data, fractions=(0.0, 1.0), progress=False)
    with pytest.raises(ValueError, match="'l1'"):
        P.sweep(model, data, criteria=("l2", "bogus"), progress=False)
    with pytest.raises(ValueError, match="empty"):
        P.sweep(model, data, modes=(), progress=False)


# --------------------------------------------------------------------------- sweep
def manual_eval(model, data):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for x, y in data.test_batches(50):
            out = model(x)
            correct += int((out.argmax(1) == y).sum())
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
    return correct / data.test_size, loss / data.test_size


def test_sweep_table(data):
    model = randomise_bn(small("resnet"), shift=True).train()
    snap = snapshot(model)
    fractions = (0.0, 0.3, 0.8)
    df = P.sweep(model, data, fractions=fractions, criteria=("l2", "orthogonality"),
                 scopes=("layer", "global"), modes=("mask", "remove"), latency=False,
                 progress=False, batch_size=64)
    assert_state_equal(model, snap)
    assert model.training
    assert list(df.columns) == list(P.SWEEP_COLUMNS)
    assert len(df) == 2 * 2 * 2 * len(fractions)
    assert df["test_acc"].between(0, 1).all() and np.isfinite(df["test_loss"]).all()
    assert df[["latency_b1_ms", "latency_b128_ms"]].isna().all().all()
    # the unpruned rows agree everywhere and with a direct evaluation
    zero = df[df.fraction == 0]
    acc0, loss0 = manual_eval(P.oneshot._plain_copy(model), data)
    assert (zero.test_acc == acc0).all() and np.allclose(zero.test_loss, loss0, rtol=1e-5)
    # one pruned row against prune() + a direct evaluation
    row = df[(df.criterion == "l2") & (df.scope == "layer") & (df["mode"] == "remove")
             & (df.fraction == 0.3)].iloc[0]
    acc, loss = manual_eval(P.prune(model, 0.3, "l2", "layer", "remove"), data)
    assert row.test_acc == acc and math.isclose(row.test_loss, loss, rel_tol=1e-5)
    row = df[(df.criterion == "orthogonality") & (df.scope == "global") & (df["mode"] == "mask")
             & (df.fraction == 0.8)].iloc[0]
    acc, loss = manual_eval(P.prune(model, 0.8, "orthogonality", "global", "mask"), data)
    assert row.test_acc == acc and math.isclose(row.test_loss, loss, rel_tol=1e-5)
    # costs: mask keeps dense counts but effective counts fall; remove counts fall
    for (crit, scope, mode), g in df.groupby(["criterion", "scope", "mode"]):
        g = g.sort_values("fraction")
        assert (g.params_effective.diff().dropna() < 0).all()
        assert (g.flops_effective.diff().dropna() < 0).all()
        if mode == "mask":
            assert (g.params == g.params.iloc[0]).all() and (g.flops == g.flops.iloc[0]).all()
        else:
            assert (g.params == g.params_effective).all() and (g.flops.diff().dropna() < 0).all()
    # the effective counts of a mask row are those of the remove row when no group couples
    # convs... not here (residual); instead check the mask figure by hand
    pruned = P.prune(model, 0.3, "l2", "layer", "mask")
    zeroed = P.zeroed_filters(pruned)
    convs = dict(P.prunable_convs(pruned))
    row = df[(df.criterion == "l2") & (df.scope == "layer") & (df["mode"] == "mask")
             & (df.fraction == 0.3)].iloc[0]
    assert row.params_effective == row.params - sum(
        len(zeroed[n]) * convs[n].weight[0].numel() for n in convs)


def test_sweep_chain_mask_effective_equals_remove(data):
    # no coupling, no BN shift: mask's effective params/FLOPs differ from remove's only by
    # the next layers' input channels, so mask >= remove, and accuracies agree exactly
    model = randomise_bn(small("vgg16"))
    df = P.sweep(model, data, fractions=(0.0, 0.5), modes=("mask", "remove"), latency=True,
                 progress=False)
    mask, remove = df[df["mode"] == "mask"], df[df["mode"] == "remove"]
    assert np.array_equal(mask.test_acc.values, remove.test_acc.values)
    assert np.allclose(mask.test_loss.values, remove.test_loss.values, rtol=1e-5)
    assert (mask.flops_effective.values >= remove.flops.values).all()
    assert mask.flops_effective.values[1] > remove.flops.values[1]
    lat = df[["latency_b1_ms", "latency_b128_ms"]]
    assert lat[df.fraction == 0].gt(0).all().all() and lat[df["mode"] == "remove"].gt(0).all().all()
    assert lat[(df["mode"] == "mask") & (df.fraction > 0)].isna().all().all()


def test_recalibrate_batchnorm_cumulative_average(data):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.1)).eval()
    P.recalibrate_batchnorm(model, data, batches=2, batch_size=16, seed=7)
    gen = torch.Generator().manual_seed(7)
    means, vars_ = [], []
    with torch.no_grad():
        for i, (x, _) in enumerate(data.train_batches(16, gen, augment=True)):
            if i == 2:
                break
            h = model[0](x)
            means.append(h.mean(dim=(0, 2, 3)))
            vars_.append(h.var(dim=(0, 2, 3), unbiased=True))
    bn = model[1]
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack(vars_).mean(0), rtol=1e-4)
    assert bn.momentum == 0.1 and not model.training


def test_sweep_recalibrate_bn_leaves_input(data):
    model = small("wrn1")
    snap = snapshot(model)
    df = P.sweep(model, data, fractions=(0.0, 0.5), modes=("mask", "remove"),
                 recalibrate_bn=2, latency=False, progress=False)
    assert_state_equal(model, snap)
    assert df.recalibrate_bn.all() and (df.adjust_s[df.fraction > 0] > 0).all()


def test_finetune_keeps_masked_filters_zero(data):
    model = small("resnet")
    masked = P.prune(model, 0.5, "l2", "layer", "mask")
    selection = P.zeroed_filters(masked)
    before = {n: m.weight.detach().clone() for n, m in P.prunable_convs(masked)}
    tuned = P.repair.finetune(masked, data, 1, selection, seed=0, device=torch.device("cpu"))
    after = P.zeroed_filters(tuned)
    assert all(torch.equal(after[n], selection[n]) for n in selection)
    convs = dict(P.prunable_convs(tuned))
    assert all(type(m) is nn.Conv2d and isinstance(m.weight, nn.Parameter) for m in convs.values())
    assert any(not torch.equal(convs[n].weight, before[n]) for n in before)   # it trained


def test_non_finite_weights_are_refused_naming_the_layer():
    import torch
    from bridgeout.models import build
    torch.manual_seed(0)
    m = build("vgg16", width=0.125)
    with torch.no_grad():
        m.features[1].conv.weight[3, 0, 0, 0] = float("nan")
    for mode in ("mask", "remove"):
        with pytest.raises(ValueError, match=r"features.1.conv.*filters \[3\] are not finite"):
            P.prune(m, 0.5, mode=mode)


# --------------------------------------------------------------------------- mean replacement
@pytest.mark.parametrize("name", ["vgg16", "resnet"])
def test_keep_channel_means_makes_a_zeroed_channel_output_its_beta(name):
    """After zeroing filters, a plain mask leaves their BatchNorm channels at the constant
    gamma*(0 - mu)/sqrt(var + eps) + beta; mean replacement makes it beta, and touches
    nothing else."""
    from bridgeout.filters import conv_batchnorm_pairs
    from bridgeout.prune.repair import keep_channel_means_
    model = randomise_bn(small(name), shift=True)
    conv, bn = next((c, b) for c, b in conv_batchnorm_pairs(model).items() if b is not None)
    mods = dict(model.named_modules())
    idx = torch.tensor([0, 2])
    with torch.no_grad():
        mods[conv].weight[idx] = 0
    before = snapshot(model)
    outs = {}
    h = mods[bn].register_forward_hook(lambda m, a, o: outs.__setitem__("y", o.detach().clone()))
    model(x_for(model))
    plain = outs["y"][:, idx]
    beta, mu = mods[bn].bias.detach()[idx], mods[bn].running_mean.detach()[idx]
    assert not torch.allclose(plain, beta[None, :, None, None].expand_as(plain), atol=1e-3)   # shifted by -gamma mu / sd
    changed = keep_channel_means_(model, {conv: idx})
    assert changed == {conv: bn}
    model(x_for(model))
    h.remove()
    torch.testing.assert_close(outs["y"][:, idx], beta[None, :, None, None].expand_as(plain), atol=1e-6, rtol=0)
    after = model.state_dict()
    for k, v in before.items():          # only the running mean of the two channels moved
        if k == f"{bn}.running_mean":
            keep = torch.ones(len(v), dtype=torch.bool)
            keep[idx] = False
            assert torch.equal(after[k][keep], v[keep]) and torch.equal(after[k][idx], torch.zeros(2))
            assert not torch.equal(mu, torch.zeros(2))
        else:
            assert torch.equal(after[k], v), k


def test_sweep_with_mean_replacement_changes_masked_rows_only(data):
    model = randomise_bn(small("vgg16"), shift=True)
    kw = dict(fractions=(0.0, 0.5), modes=("mask", "remove"), latency=False, progress=False)
    a = P.sweep(model, data, **kw)
    b = P.sweep(model, data, pruner="mean", **kw)
    mask = (a["mode"] == "mask") & (a["fraction"] == 0.5)
    assert not np.isclose(a.loc[mask, "test_loss"], b.loc[mask, "test_loss"]).all()
    assert np.allclose(a.loc[~mask, "test_loss"], b.loc[~mask, "test_loss"])
    assert (b["pruner"] == np.where(b["mode"] == "mask", "mean", "plain")).all()


def test_sweep_and_remove_name_an_input_the_network_cannot_take():
    lenet = build("lenet5", 10)
    cifar = DeviceData((np.zeros((8, 32, 32, 3), np.uint8), np.zeros(8, np.int64),
                        np.zeros((8, 32, 32, 3), np.uint8), np.zeros(8, np.int64)), "cifar10")
    with pytest.raises(ValueError, match=r"LeNet5 cannot take cifar10 images of shape \(1, 3, 32, 32\)"):
        P.sweep(lenet, cifar, latency=False)
    with pytest.raises(ValueError, match=r"LeNet5 cannot take example_input of shape \(1, 3, 32, 32\)"):
        P.prune(lenet, 0.5, mode="remove", example_input=torch.zeros(1, 3, 32, 32))
