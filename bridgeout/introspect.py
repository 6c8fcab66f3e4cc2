"""What a network is made of: its device, layout, parameter count, convolutions and the
BatchNorm each convolution feeds, and a context that puts it in eval mode and back.

The bottom floor under everything that handles a network (``nn``, ``models``, ``train``,
``filters``, ``sparsity`` and the pruning modules): it imports only torch, so every floor above
may use it and none needs another for these questions.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["model_device", "eval_mode", "count_parameters", "conv_layers", "require_convs",
           "default_example_input", "channels_last_model", "conv_batchnorm_pairs", "check_input_fits"]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (else its first buffer; else the CPU).

    Args:
        model: the network.

    Returns:
        the device.
    """
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Context: ``model`` in eval mode, every module's own ``training`` flag restored afterwards
    (``model.train(was)`` would overwrite a submodule left in eval mode on purpose).

    Args:
        model: the network.

    Yields:
        ``model``, in eval mode.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (each shared tensor counted once; buffers such as
    BatchNorm running statistics are not parameters).

    Args:
        model: the network.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        the count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """``(qualified name, module)`` of every ``nn.Conv2d`` (subclasses such as the noise convs
    included), in registration order: forward order for this project's models (a block's 1x1
    shortcut comes after its second conv).

    Args:
        model: the network.

    Returns:
        the list (empty when there is no conv).
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def require_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """:func:`conv_layers`, or a ``ValueError`` naming the model when it has none.

    Args:
        model: the network.

    Returns:
        the non-empty list of :func:`conv_layers`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` has no ``nn.Conv2d``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"model has nothing prunable: no nn.Conv2d layer in "
                         f"{type(model).__name__} (prunable layers: nn.Conv2d and subclasses; "
                         "Linear layers are never pruned on their own)")
    return convs


def default_example_input(model: nn.Module) -> torch.Tensor:
    """A ``(1, C, H, W)`` zero tensor for tracing: ``C`` = the first conv's input channels,
    ``H = W = 28`` when ``C == 1`` (MNIST/LeNet-5) else 32 (CIFAR), on the model's device.

    Args:
        model: the network.

    Returns:
        the tensor.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` has no ``nn.Conv2d`` (:func:`require_convs`).
    """
    c = require_convs(model)[0][1].in_channels
    size = 28 if c == 1 else 32
    return torch.zeros(1, c, size, size, device=model_device(model))


def channels_last_model(model: nn.Module) -> bool:
    """Whether ``model``'s first 4-D weight is stored channels_last (NHWC), in which case its
    inputs are converted to channels_last too (one layout end to end, no conversions
    inside the network).

    Args:
        model: the network.

    Returns:
        ``True`` when its first 4-D parameter is channels_last and not also contiguous;
        ``False`` otherwise, or without a 4-D parameter.
    """
    for t in model.parameters():
        if t.dim() == 4:
            return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    return False


@torch.no_grad()
def conv_batchnorm_pairs(model: nn.Module, example_input: torch.Tensor | None = None) -> dict[str, str | None]:
    """``{conv name: name of the BatchNorm2d whose input is that conv's output, or None}``
    for every ``nn.Conv2d`` of ``model``, found by one eval-mode forward of
    ``example_input`` (default: :func:`default_example_input`) with hooks.

    Args:
        model: the network; its train/eval flags are restored afterwards.
        example_input: the input traced (moved to the model's device).

    Returns:
        the mapping, convs in registration order; a conv keeps the first BatchNorm (any
        ``_BatchNorm`` subclass) that takes its output directly.
    """
    x = default_example_input(model) if example_input is None else example_input
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}
    pairs: dict[str, str | None] = {n: None for n, _ in conv_layers(model)}

    def conv_hook(mod, args, out):
        produced[id(out)] = names[mod]

    def bn_hook(mod, args):
        conv = produced.get(id(args[0]))
        if conv is not None and pairs.get(conv) is None:
            pairs[conv] = names[mod]

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            handles.append(m.register_forward_pre_hook(bn_hook))
    try:
        with eval_mode(model):
            model(x.to(model_device(model)))
    finally:
        for h in handles:
            h.remove()
    return pairs


@torch.no_grad()
def check_input_fits(model: nn.Module, example: torch.Tensor, what: str) -> None:
    """One eval-mode forward of ``example`` (one image is enough); a network that cannot take it
    (3 channels into a 1-channel LeNet-5, 28x28 MNIST into a VGG-16 built for 32x32) is a
    ``ValueError`` naming the network, ``what`` and the shape, instead of a raw torch error
    from deep inside the first epoch or sweep.

    Args:
        model: the network.
        example: an input batch (moved to the model's device).
        what: what the input is, for the message.

    Raises:
        ValueError: the forward raised a ``RuntimeError``.
    """
    try:
        with eval_mode(model):
            model(example.to(model_device(model)))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{type(model).__name__} cannot take {what} of shape {tuple(example.shape)} "
                         f"({first[:200]}); was it built for another dataset?") from None
