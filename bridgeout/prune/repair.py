"""Cheap repair after pruning: BatchNorm re-estimation and short fine-tuning.

The repair side of :mod:`bridgeout.prune` (:func:`bridgeout.prune.sweep` calls these when
``recalibrate_bn`` / ``finetune_epochs`` ask for it). Re-exported by :mod:`bridgeout.prune`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from .. import train
from ..introspect import conv_batchnorm_pairs

__all__ = ["recalibrate_batchnorm", "keep_channel_means_", "finetune", "FINETUNE_LR"]

_BN_RECAL_BATCHES = 50   # batches of 128 training images for recalibrate_bn=True
FINETUNE_LR = 0.01       # learning rate of the short fine-tuning (constant over its 1-2 epochs)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data, batches: int = _BN_RECAL_BATCHES,
                          batch_size: int = 128, seed: int = 0) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics in place and return ``model``.

    Running mean/var are reset and then set to the cumulative average (``momentum=None``)
    of the batch statistics of ``batches`` augmented training batches of ``batch_size``,
    forwarded in train mode (shuffling and augmentation seeded with ``seed``).  Other
    modules' train/eval flags and BN momenta are restored afterwards.

    Args:
        model: the network (on the data's device); returned unchanged without a BatchNorm.
        data: a :class:`bridgeout.data.DeviceData`.
        batches: the number of training batches forwarded (fewer when an epoch has fewer).
        batch_size: their size.
        seed: seeds the generator of the shuffling and augmentation (on the data's device).

    Returns:
        ``model``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    momenta = [m.momentum for m in bns]
    flags = [(m, m.training) for m in model.modules()]
    gen = torch.Generator(device=data.device).manual_seed(int(seed))
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for i, (x, _) in enumerate(data.train_batches(batch_size, gen, augment=True)):
            if i >= batches:
                break
            model(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        for m, flag in flags:
            m.training = flag
    return model


@torch.no_grad()
def keep_channel_means_(model: nn.Module, selection: dict[str, torch.Tensor]) -> dict[str, str]:
    """Mean replacement for zeroed filters, in place: each zeroed filter's channel keeps its
    mean BatchNorm output instead of a shifted constant.

    A zeroed filter outputs its bias :math:`b` (0 without one) at every position, so the
    BatchNorm after it outputs the constant :math:`\\gamma (b - \\mu)/\\sqrt{\\sigma^2 + \\epsilon}
    + \\beta`, where :math:`\\mu, \\sigma^2` are the running statistics of the *unpruned*
    channel: not the channel's mean output :math:`\\beta` (exactly its mean when :math:`\\mu`
    is the mean of the conv output). Setting that channel's running mean to :math:`b` makes the
    pruned channel output :math:`\\beta`, its mean before pruning, so the next layer sees the
    channel's average instead of an arbitrary offset; nothing else changes.

    Args:
        model: the pruned network (its BatchNorm running means are changed in place).
        selection: ``{conv name: indices of its zeroed filters}`` (as the mask pruner
            selects them).

    Returns:
        ``{conv name: BatchNorm name}`` of the channels changed; a conv that feeds no BatchNorm
        (or one without running statistics), or with no zeroed filter, is left as it is (its
        zeroed filters output their bias).
    """
    pairs = conv_batchnorm_pairs(model)
    mods = dict(model.named_modules())
    done = {}
    for name, idxs in selection.items():
        bn = pairs.get(name)
        if bn is None or not len(idxs) or mods[bn].running_mean is None:
            continue
        conv, norm = mods[name], mods[bn]
        idxs = idxs.to(norm.running_mean.device)
        bias = conv.bias[idxs].to(norm.running_mean) if conv.bias is not None else 0.0
        norm.running_mean[idxs] = bias
        done[name] = bn
    return done


def _finetune(model: nn.Module, data, epochs: int, selection, seed: int, device) -> nn.Module:
    """Short fine-tuning with :func:`bridgeout.train.fit` (``"fast"`` protocol shape, lr
    :data:`FINETUNE_LR`); in mask mode the zeroed filters are held at zero by
    :func:`torch.nn.utils.prune.custom_from_mask` during training.

    Public as ``finetune``.

    Args:
        model: the pruned network (trained in place).
        data: the dataset (:func:`bridgeout.train.fit`'s ``data``).
        epochs: the number of epochs; the test set is evaluated after the last one only.
        selection: ``{conv name: indices of its zeroed filters}`` to hold at zero, or empty /
            ``None`` (remove mode).
        seed: :func:`bridgeout.train.fit`'s seed.
        device: :func:`bridgeout.train.fit`'s device.

    Returns:
        the fine-tuned network (the masks removed, zeroed filters still zero), in eval mode.
    """
    from torch.nn.utils import prune as tprune


    mods = dict(model.named_modules())
    masked = []
    if selection:
        for name, idxs in selection.items():
            conv = mods[name]
            mask = torch.ones_like(conv.weight)
            mask[idxs.to(mask.device)] = 0
            tprune.custom_from_mask(conv, "weight", mask)
            masked.append(name)
    protocol = dataclasses.replace(train.get_protocol("fast", epochs=epochs), lr=FINETUNE_LR)
    result = train.fit(model, data, protocol, device=device, seed=seed, progress=False,
                       eval_every=epochs)
    out = result.model
    mods = dict(out.named_modules())
    for name in masked:
        tprune.remove(mods[name], "weight")
    return out.eval()


finetune = _finetune


def _check_recal(value) -> int:
    if isinstance(value, bool):
        return _BN_RECAL_BATCHES if value else 0
    if isinstance(value, (int, np.integer)) and value >= 0:
        return int(value)
    raise ValueError(f"recalibrate_bn must be a bool or a number of batches >= 0, got {value!r}")
