"""Real-data checks on CPU (slow: about a minute each on one core).

They use the staged archives ``mnist.npz`` / ``cifar10.npz`` from ``$BRIDGEOUT_DATA`` or,
when that is unset or lacks them, ``../shared/data`` beside the repository; a test is skipped
(with the reason) only when neither place has the archive.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bridgeout import data, train
from bridgeout.models import build

REPO = Path(__file__).resolve().parent.parent


def _root_with(name: str) -> Path:
    candidates = []
    if os.environ.get("BRIDGEOUT_DATA"):
        candidates.append(Path(os.environ["BRIDGEOUT_DATA"]).expanduser())
    candidates.append(REPO.parent / "shared" / "data")
    for root in candidates:
        if (root / f"{name}.npz").is_file():
            return root
    pytest.skip(f"{name}.npz not found in {' or '.join(map(str, candidates))}; "
                f"set BRIDGEOUT_DATA to a folder holding it to run this check")


@pytest.mark.slow
def test_lenet5_mnist_one_epoch_reaches_97_percent():
    """LeNet-5, full MNIST, one epoch, batch 128, SGD Nesterov 0.9, wd 5e-4 (the paper's
    optimizer). Teaching setting: lr 0.05 instead of 0.1, because a one-epoch run never
    reaches the paper's first decay and the lr-0.1 run ends noisier (96.9% with seed 0,
    98.0-98.2% at lr 0.05 for seeds 0 and 1). The threshold 97% is ~7 standard errors
    (sd = sqrt(0.98 * 0.02 / 10000) = 0.0014) below the measured accuracy."""
    arrays = data.load("mnist", root=_root_with("mnist"))
    assert arrays[0].shape == (60000, 28, 28, 1) and arrays[2].shape == (10000, 28, 28, 1)
    torch.manual_seed(0)
    model = build("lenet5")
    proto = replace(train.get_protocol("paper", epochs=1), lr=0.05)
    assert proto.batch_size == 128 and proto.milestones == ()
    res = train.fit(model, arrays, proto, dataset="mnist", device="cpu", seed=0, progress=False)
    assert res.epochs_done == 1
    assert res.final_test_acc >= 0.97, res.history.to_string()


@pytest.mark.slow
def test_reduced_vgg16_cifar10_subset_learns():
    """VGG-16 at 1/8 width on a stratified 5,000 / 1,000 CIFAR-10 subset, 4 epochs (lr 0.1,
    x0.2 after epoch 3), with the published augmentation. Chance is 10% (sd of a 1,000-image
    estimate 0.0095); learning must put it far above: > 35%."""
    arrays = data.subset(data.load("cifar10", root=_root_with("cifar10")), 5000, 1000, seed=0)
    torch.manual_seed(0)
    model = build("vgg16", width=0.125)
    proto = train.Protocol(epochs=4, milestones=(3,))
    res = train.fit(model, arrays, proto, dataset="cifar10", device="cpu", seed=0, progress=False)
    assert res.final_test_acc > 0.35, res.history.to_string()
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
