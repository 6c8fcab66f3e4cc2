"""bridgeout.filters.filter_table: one row per conv output filter with its norm and the
parameters and running statistics of the BatchNorm it feeds (shortcut BatchNorms included)."""
from __future__ import annotations

import math

import torch

from bridgeout import filters
from bridgeout.models import build


def _trained_like(model):
    """Give every BatchNorm distinct, non-default parameters and running statistics."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g))
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.1)
    return model.eval()


def test_rows_carry_each_batchnorm_of_the_resnet_with_its_running_statistics():
    model = _trained_like(build("resnet", 10, "weight_decay", width=0.25))
    t = filters.filter_table(model)
    assert tuple(t.columns) == filters.FILTER_COLUMNS
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(t) == sum(m.out_channels for _, m in convs)
    mods = dict(model.named_modules())
    # a block's conv2 feeds bn2; a stage's first-block shortcut conv feeds the shortcut BatchNorm
    for conv, bn in (("layer1.0.conv2", "layer1.0.bn2"), ("layer2.0.shortcut.0", "layer2.0.shortcut.1")):
        rows = t[t["layer"] == conv].sort_values("filter")
        b = mods[bn]
        assert rows["gamma"].tolist() == b.weight.tolist() and rows["beta"].tolist() == b.bias.tolist()
        assert rows["bn_mean"].tolist() == b.running_mean.tolist()
        assert rows["bn_var"].tolist() == b.running_var.tolist()
        w = mods[conv].weight.detach()
        assert torch.allclose(torch.tensor(rows["norm"].tolist()), w.flatten(1).norm(dim=1), rtol=1e-6)
    # the four columns give the channel's eval-mode output: gamma (x - mean) / sqrt(var + eps) + beta
    b = mods["layer1.0.bn2"]
    x = torch.randn(2, b.num_features, 3, 3)
    r = t[t["layer"] == "layer1.0.conv2"].sort_values("filter")
    by_hand = (torch.tensor(r["gamma"].tolist()).view(1, -1, 1, 1)
               * (x - torch.tensor(r["bn_mean"].tolist()).view(1, -1, 1, 1))
               / torch.sqrt(torch.tensor(r["bn_var"].tolist()).view(1, -1, 1, 1) + b.eps)
               + torch.tensor(r["beta"].tolist()).view(1, -1, 1, 1))
    assert torch.allclose(by_hand, b(x), atol=1e-5)


def test_a_conv_without_batchnorm_has_empty_statistics():
    t = filters.filter_table(build("lenet5", 10, "weight_decay").eval())
    assert len(t) == 6 + 16
    assert t[["gamma", "beta", "bn_mean", "bn_var"]].isna().all().all()
    assert (t["norm"] > 0).all() and not math.isnan(t["norm"].sum())
