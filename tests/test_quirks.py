"""Tests for bridgeout.quirks: the published code's quirks as options, off by default."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bridgeout import data, grid, prune, quirks, train
from bridgeout.models import build

from test_train import _blobs


def test_check_quirks():
    assert quirks.check_quirks([]) == []
    assert quirks.check_quirks(["momentum_reset", "bn_scale_pruning"], "vgg16") == ["bn_scale_pruning",
                                                                                     "momentum_reset"]
    with pytest.raises(ValueError, match="distinct names"):
        quirks.check_quirks(["momentum"])
    with pytest.raises(ValueError, match="distinct names"):
        quirks.check_quirks(["momentum_reset", "momentum_reset"])
    with pytest.raises(ValueError, match="applies to model 'resnet' only"):
        quirks.check_quirks(["legacy_bn_init"], "vgg16")
    with pytest.raises(ValueError, match="quirks must be distinct names|quirks must be a list"):
        grid.validate_params({"quirks": "momentum_reset"})


def test_momentum_reset_clears_the_optimizer_each_epoch(monkeypatch):
    seen = []
    original = train.train_step

    def spy(net, opt, *args, **kw):
        seen.append(len(opt.state))
        return original(net, opt, *args, **kw)

    monkeypatch.setattr(train, "train_step", spy)
    arrays = _blobs("mnist", n_train=64, n_test=20)
    proto = train.Protocol(epochs=3, batch_size=32, milestones=())   # 2 steps per epoch
    for reset in (False, True):
        seen.clear()
        torch.manual_seed(0)
        train.fit(build("lenet5"), arrays, proto if not reset else
                  train.Protocol(epochs=3, batch_size=32, milestones=(), reset_optimizer_each_epoch=True),
                  dataset="mnist", device="cpu", progress=False)
        first_steps = seen[0::2]
        if reset:
            assert first_steps == [0, 0, 0]          # every epoch starts with no momentum
        else:
            assert first_steps[0] == 0 and all(n > 0 for n in first_steps[1:])


def test_legacy_bn_init_is_uniform_and_seeded():
    params = grid.validate_params({"model": "resnet", "dataset": "cifar10", "width": 0.25,
                                   "quirks": ["legacy_bn_init"]})
    m1, m2 = grid.build_model(params, 10), grid.build_model(params, 10)
    w = torch.cat([m.weight for m in m1.modules() if isinstance(m, nn.BatchNorm2d)])
    assert ((w >= 0) & (w <= 1)).all() and w.std() > 0.2        # U(0, 1): sd 0.29, not all ones
    assert torch.equal(w, torch.cat([m.weight for m in m2.modules() if isinstance(m, nn.BatchNorm2d)]))
    plain = grid.build_model({**params, "quirks": []}, 10)
    assert all(torch.equal(m.weight, torch.ones_like(m.weight))
               for m in plain.modules() if isinstance(m, nn.BatchNorm2d))


def test_published_bn_targets():
    vgg = build("vgg16", width=0.125)
    assert len(quirks.published_bn_targets(vgg)) == 13
    res = build("resnet", width=0.5)
    names = [n for n, _ in quirks.published_bn_targets(res)]
    assert names == ["layer2.0.shortcut.1", "layer3.0.shortcut.1"]
    assert quirks.published_bn_targets(build("lenet5")) == []


def test_prune_bn_scales_zeroes_the_smallest_gammas():
    vgg = build("vgg16", width=0.125)
    bn = vgg.features[0].bn
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.1, 0.3, 2.0, 0.2, -0.05, 1.0, 0.4]))
    zeroed = quirks.prune_bn_scales_(vgg, 0.4)          # floor(0.4 * 8) = 3 per layer
    assert zeroed["features.0.bn"].tolist() == [1, 4, 5]
    assert bn.weight.tolist() == pytest.approx([0.5, 0, 0.3, 2.0, 0, 0, 1.0, 0.4])


def test_sweep_with_the_published_pruner_changes_mask_rows_only():
    arrays = _blobs("cifar10", n_train=64, n_test=50)
    dd = data.DeviceData(arrays, "cifar10")
    torch.manual_seed(0)
    model = build("vgg16", width=0.125).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.1, 1.0)
                m.bias.uniform_(-0.2, 0.2)
    kw = dict(fractions=(0.0, 0.5), modes=("mask", "remove"), latency=False, progress=False)
    a = prune.sweep(model, dd, **kw)
    b = prune.sweep(model, dd, pruner="published", **kw)
    mask = (a["mode"] == "mask") & (a["fraction"] == 0.5)
    assert not np.isclose(a.loc[mask, "test_loss"], b.loc[mask, "test_loss"]).all()
    assert np.allclose(a.loc[~mask, "test_loss"], b.loc[~mask, "test_loss"])
    # the rows say whose pruner: the published one masks only, so its remove rows are plain
    assert set(a["pruner"]) == {"plain"}
    assert (b["pruner"] == np.where(b["mode"] == "mask", "published", "plain")).all()
    with pytest.raises(ValueError, match="pruner.*'yes'.*plain"):
        prune.sweep(model, dd, pruner="yes", **kw)
