"""The paper's architectures, built for any of the compared regularizers.

``build(name, num_classes, regularizer, ...)`` returns one of

* ``"vgg16"`` -- VGG-16 with BatchNorm for 32x32 inputs: thirteen
  conv3x3(pad 1)-BN-ReLU layers in the configuration
  ``[64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M]``
  (``M`` = 2x2 max-pool), so a 32x32 image is 1x1x512 after the fifth pool, and a
  single ``Linear(512, num_classes)`` head (no hidden fully connected layers).
* ``"resnet"`` -- the paper's CIFAR "ResNet-34": a conv3x3(3->16)-BN-ReLU stem, three
  stages of [3, 4, 6] BasicBlocks at 16/32/64 channels (strides 1, 2, 2),
  1x1-conv + BN shortcuts where the shape changes, global average pooling and
  ``Linear(64, num_classes)``.  A block computes
  ``relu(R2(bn2(conv2(R1(relu(bn1(conv1(x))))))) + shortcut(x))`` where ``R1, R2``
  are the activation regularizers ("after bn1-ReLU and after bn2").
* ``"wrn"`` / ``"wrn28_10"`` -- Wide ResNet (Zagoruyko & Komodakis, 2016) of depth
  ``6n + 4`` and widen factor ``k``: a conv3x3(3->16) stem, three stages of ``n``
  pre-activation blocks at ``16k/32k/64k`` channels, a final BN-ReLU, global average
  pooling and ``Linear(64k, num_classes)``.  A block computes
  ``conv2(relu(bn2(R(conv1(relu(bn1(x))))))) + shortcut(x)`` with a plain 1x1 conv
  shortcut (no BN) where the shape changes; ``R`` (the dropout slot of the WRN
  paper) sits between the two convs.  ``wrn28_10`` is depth 28, widen factor 10:
  36,489,290 parameters for 10 classes.
* ``"lenet5"`` -- a small MNIST network for CPU teaching examples (not in the paper):
  conv5x5(1->6, pad 2)-ReLU-maxpool2 -> conv5x5(6->16)-ReLU-maxpool2 ->
  FC 400->120-ReLU -> FC 120->84-ReLU -> ``Linear(84, num_classes)``.  ReLU and max
  pooling replace LeCun's tanh and average pooling, as in most modern renditions.

Regularizer placement (``regularizer=``), as in the published experiments:

=================  ==========================================================
``"bridgeout"``    :class:`bridgeout.nn.BridgeoutConv2d` on every 3x3 conv, the
                   first one included (lenet5: on both 5x5 convs); 1x1 shortcuts
                   and every linear layer stay plain.
``"dropconnect"``  :class:`bridgeout.nn.DropConnectConv2d` at the same places.
``"dropout"``      :class:`bridgeout.nn.TargetedDropout` ``(p, target_fraction)``
                   on activations: VGG after each conv-BN-ReLU; ResNet after
                   bn1-ReLU and after bn2 of every block (not after the stem);
                   WRN between the two convs of every block; lenet5 after each
                   conv-ReLU.
``"sparseout"``    :class:`bridgeout.nn.Sparseout` ``(p, q, signed)`` at the
                   dropout places.
``"weight_decay"`` plain layers only (weight decay itself is set by the optimizer
                   of every protocol).
``"slimming"``     plain layers; the training loss adds ``lam * sum |gamma|`` over the
                   BatchNorms after the convs (Network Slimming, :mod:`bridgeout.sparsity`).
``"group_lasso"``  plain layers; the training loss adds ``lam * sum_f ||W_f||_2`` over
                   every conv's output filters (SSL, :mod:`bridgeout.sparsity`).
=================  ==========================================================

Every architecture has the same module tree and parameter names for every
regularizer: an activation-regularizer slot holds :class:`torch.nn.Identity` when
unused, and the weight-noise convs subclass :class:`torch.nn.Conv2d` with identical
state_dict keys.  So a ``"bridgeout"`` model's ``state_dict`` loads (strictly) into the
``"weight_decay"`` model of the same architecture, and both compute the same
function in eval mode.

Initialisation (as the published code does it): every conv weight (3x3, 5x5 and 1x1
shortcuts) ``W ~ U(-a, a)`` with the Xavier bound for gain ``sqrt(2)``,

.. math::  a = \\sqrt{2}\\,\\sqrt{\\frac{6}{\\text{fan\\_in} + \\text{fan\\_out}}},
           \\quad \\text{fan\\_in} = C_\\text{in} k_h k_w,\\;
           \\text{fan\\_out} = C_\\text{out} k_h k_w,

conv biases 0, BatchNorm weight 1 and bias 0.  Linear layers keep PyTorch's default
initialisation (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weight and bias): the
published ``conv_init`` matches modules by the class name containing ``"Conv"`` and
so never touches the linear head.

Conv layers keep their bias (``bias=True``) even where a BatchNorm follows, as in the
published models.  This matters for pruning by masking: a zeroed filter still emits
its (constant) bias, which BatchNorm then maps with its running statistics.

Known deviation: the published WRN sets ``momentum=0.9`` on its final BatchNorm (in
PyTorch's convention that keeps almost only the last batch's statistics); we use the
default 0.1 everywhere.  As in the published WRN, the stride of a block sits on its
second conv and the shortcut takes the block's raw input ``x``.

``width`` multiplies every conv's channel count (rounded, at least 1) for reduced CPU
runs; the heads follow the reduced feature size.  Module registration order is the
forward order, so :func:`conv_layers` lists convs in the order they run (a block's
shortcut conv is listed after its second conv).

The classes are defined in :mod:`bridgeout.architectures` and re-exported here.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import sparsity
from .architectures import (  # noqa: F401 - re-exported
    RESNET_STAGES,
    VGG16,
    VGG16_CONFIG,
    BasicBlock,
    CifarResNet,
    ConvBNReLU,
    LeNet5,
    WideBasic,
    WideResNet,
    _plain,
    _Regularizer,
    _scale,
)
from .introspect import conv_layers, count_parameters
from .registry import ACTIVATION_REGULARIZERS, MODELS, REGULARIZERS, WEIGHT_REGULARIZERS
from .regularizers import Placement
from ._validate import check_choice, check_fraction, check_int, check_positive, check_probability

__all__ = [
    "MODELS",
    "REGULARIZERS",
    "WEIGHT_REGULARIZERS",
    "ACTIVATION_REGULARIZERS",
    "build",
    "count_parameters",
    "conv_layers",
    "init_weights",
    "VGG16",
    "CifarResNet",
    "BasicBlock",
    "WideResNet",
    "WideBasic",
    "LeNet5",
]


# --------------------------------------------------------------------------- helpers
@torch.no_grad()
def init_weights(model: nn.Module) -> nn.Module:
    """Apply the published initialisation in place and return ``model``.

    Conv weights: ``xavier_uniform_`` with gain ``sqrt(2)`` (bound
    ``sqrt(2) * sqrt(6 / (fan_in + fan_out))``), conv biases 0; BatchNorm weight 1,
    bias 0; linear layers are left at PyTorch's default (see the module docstring).

    Args:
        model: the network; draws from the global torch RNG.

    Returns:
        ``model``.
    """
    gain = math.sqrt(2.0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model



def build(name: str, num_classes: int = 10, regularizer: str = "weight_decay", *,
          width: float = 1.0, in_channels: int | None = None, p: float = 0.3,
          q: float = 1.5, target_fraction: float = 0.75, signed: bool = False,
          depth: int = 28, widen_factor: int = 10, lam: float | None = None) -> nn.Module:
    """Build an initialised model.

    Args:
        name: one of :data:`MODELS`. ``"wrn28_10"`` is ``"wrn"`` with depth 28 and
            widen factor 10 (``depth``/``widen_factor`` are then ignored).
        num_classes: output size, >= 2.
        regularizer: one of :data:`REGULARIZERS` (placement: see the module docstring).
        width: multiplier (> 0) of every conv's channel count, rounded, at least 1.
        in_channels: input channels; default 3 (lenet5: 1).
        p: drop probability in [0, 1) of the noise (all regularizers but weight_decay).
        q: bridge exponent > 0 (bridgeout, sparseout).
        target_fraction: fraction in (0, 1] of targeted kernels (bridgeout) or
            channels (targeted dropout).
        signed: include the ``sign(W)`` factor (bridgeout, sparseout); the published
            Bridgeout experiments use none.
        depth: WRN depth ``6n + 4`` (>= 10), for ``name="wrn"``.
        widen_factor: WRN widen factor (>= 1), for ``name="wrn"``.
        lam: strength of the ``slimming`` / ``group_lasso`` penalty (default
            :data:`bridgeout.sparsity.DEFAULT_LAMBDA`); must be None for the others.

    Returns:
        the model in training mode, on the CPU, initialised as published
        (:func:`init_weights`); draws from the global torch RNG, so seed first.
        Its string attributes ``arch`` (``name``) and ``regularizer`` record how it
        was built.

    Raises:
        ValueError: for an unknown name or regularizer (the message lists the valid
            ones) or an argument out of range.
    """
    check_choice("model name", name, MODELS)
    check_choice("regularizer", regularizer, REGULARIZERS)
    num_classes = check_int("num_classes", num_classes, 2)
    width = check_positive("width", width)
    if in_channels is None:
        in_channels = 1 if name == "lenet5" else 3
    in_channels = check_int("in_channels", in_channels, 1)
    p = check_probability("p", p)
    q = check_positive("q", q)
    target_fraction = check_fraction("target_fraction", target_fraction)
    if not isinstance(signed, (bool, int)) or signed not in (0, 1):
        raise ValueError(f"signed must be a bool (True / False), got {signed!r}")
    reg = Placement(regularizer, p, q, target_fraction, bool(signed))

    if name == "vgg16":
        model = VGG16(num_classes, reg, width=width, in_channels=in_channels)
    elif name == "resnet":
        model = CifarResNet(num_classes, reg, width=width, in_channels=in_channels)
    elif name == "lenet5":
        model = LeNet5(num_classes, reg, width=width, in_channels=in_channels)
    else:
        if name == "wrn28_10":
            depth, widen_factor = 28, 10
        depth = check_int("depth", depth, 10)
        if (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), "
                             f"got {depth!r}")
        widen_factor = check_int("widen_factor", widen_factor, 1)
        model = WideResNet(depth, widen_factor, num_classes, reg, width=width,
                           in_channels=in_channels)
    model.arch = name
    model.regularizer = regularizer
    if regularizer in sparsity.PENALTIES:
        sparsity.attach(model, regularizer, lam)
    elif lam is not None:
        raise ValueError(f"lam is the strength of the slimming / group_lasso penalties; regularizer "
                         f"{regularizer!r} takes none, got lam={lam!r}")
    return init_weights(model)
