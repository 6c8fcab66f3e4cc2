"""Tests for the training-time sparsity baselines (bridgeout.sparsity): penalty values,
gradients, that training minimises them, and pruning by their criterion."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bridgeout import grid, prune, sparsity, train
from bridgeout.models import build

from test_train import _blobs


def _vgg(reg, lam=None):
    torch.manual_seed(0)
    return build("vgg16", regularizer=reg, width=1 / 16, lam=lam)


def test_build_records_the_penalty_and_refuses_misplaced_lambda():
    m = _vgg("slimming")
    assert (m.sparsity, m.sparsity_lambda) == ("slimming", 1e-4)
    assert _vgg("group_lasso", lam=3e-4).sparsity_lambda == 3e-4
    assert not any(type(x).__name__.startswith(("Bridgeout", "Targeted")) for x in m.modules())
    with pytest.raises(ValueError, match="regularizer 'bridgeout' takes none"):
        build("vgg16", regularizer="bridgeout", width=1 / 16, lam=1e-4)
    with pytest.raises(ValueError, match="must be a number > 0"):
        build("vgg16", regularizer="slimming", width=1 / 16, lam=-1.0)
    with pytest.raises(ValueError, match="lam must be None or a number > 0"):
        grid.validate_params({"regularizer": "slimming", "lam": "big"})
    assert sparsity.penalty_fn(_vgg("weight_decay")) is None


def test_slimming_penalty_value_and_gradient():
    m = _vgg("slimming", lam=0.5)
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    with torch.no_grad():
        for i, bn in enumerate(bns):
            bn.weight.copy_(torch.linspace(-1, 1, bn.num_features) * (i + 1))
    pen = sparsity.penalty_fn(m)
    value = pen()
    expected = 0.5 * sum(float(bn.weight.detach().abs().sum()) for bn in bns)   # all 13 BNs follow a conv
    assert math.isclose(float(value), expected, rel_tol=1e-6)
    value.backward()
    for bn in bns:
        torch.testing.assert_close(bn.weight.grad, 0.5 * torch.sign(bn.weight.detach()))
    assert all(c.weight.grad is None for c in m.modules() if isinstance(c, nn.Conv2d))


def test_group_lasso_penalty_value_and_gradient():
    m = _vgg("group_lasso", lam=0.25)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    with torch.no_grad():
        convs[0].weight[0].zero_()                     # an all-zero filter: subgradient 0
    value = sparsity.penalty_fn(m)()
    expected = 0.25 * sum(float(c.weight.flatten(1).norm(dim=1).sum()) for c in convs)
    assert math.isclose(float(value), expected, rel_tol=1e-6)
    value.backward()
    w = convs[1].weight.detach()
    torch.testing.assert_close(convs[1].weight.grad,
                               0.25 * w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    assert torch.equal(convs[0].weight.grad[0], torch.zeros_like(convs[0].weight[0]))
    assert torch.isfinite(convs[0].weight.grad).all()


@pytest.mark.parametrize("reg", ["slimming", "group_lasso"])
def test_training_minimises_the_penalty(reg):
    """With a large lambda the penalty falls during training relative to weight decay alone,
    while the reported loss stays the cross-entropy."""
    arrays = _blobs("cifar10", n_train=128, n_test=20)
    proto = train.Protocol(epochs=2, batch_size=32, milestones=(), lr=0.05)
    measure = {"slimming": lambda m: sum(float(b.weight.abs().sum()) for b in m.modules()
                                         if isinstance(b, nn.BatchNorm2d)),
               "group_lasso": lambda m: sum(float(c.weight.flatten(1).norm(dim=1).sum()) for c in m.modules()
                                            if isinstance(c, nn.Conv2d))}[reg]
    after = {}
    for r in ("weight_decay", reg):
        torch.manual_seed(0)
        m = build("vgg16", regularizer=r, width=1 / 16, lam=0.2 if r == reg else None)
        res = train.fit(m, arrays, proto, dataset="cifar10", device="cpu", progress=False)
        after[r] = measure(res.model)
        assert res.history["train_loss"].iloc[0] < 5          # the cross-entropy, not CE + penalty
    assert after[reg] < 0.9 * after["weight_decay"]


def test_pruning_by_bn_scale_removes_the_smallest_gammas():
    m = _vgg("slimming")
    bn = m.features[0].bn
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.1, 0.3, 2.0]))
    pruned = prune.prune(m, 0.5, criterion="bn_scale", mode="mask")
    zeroed = prune.zeroed_filters(pruned)["features.0.conv"].tolist()
    assert zeroed == [1, 2]                                   # |gamma| 0.1 and 0.3
    removed = prune.prune(m, 0.5, criterion="bn_scale", mode="remove")
    assert removed.features[0].conv.out_channels == 2
    torch.testing.assert_close(removed.features[0].bn.weight.abs(), torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match="needs the model"):
        prune.filter_scores(m.features[0].conv.weight, "bn_scale")
    with pytest.raises(ValueError, match="feeds no affine BatchNorm"):
        prune.prune(build("lenet5"), 0.5, criterion="bn_scale")
