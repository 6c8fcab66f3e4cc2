"""Where and how training computes: the device, native bf16, autocast and the model's placement.

:func:`resolve_device` picks and checks the device, :func:`native_bf16` says whether it computes
bf16 natively, :func:`autocast` sets the forward precision of a training step, and
:func:`prepare_model` places the model for training (channels-last weights, cuDNN autotuning,
:func:`torch.compile`; ``_prepare_input`` gives the inputs the same memory format). The
training loop that uses them is :mod:`bridgeout.train`, which re-exports these names and
resolves ``precision="auto"`` with :func:`native_bf16`.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch
import torch.nn as nn

from .registry import PRECISIONS
from ._validate import check_choice

__all__ = ["resolve_device", "native_bf16", "autocast", "prepare_model"]


# ---------------------------------------------------------------------------- device
def resolve_device(device="auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``,
    checked to be usable here.

    Args:
        device: ``"auto"`` (or ``None``), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
            ``torch.device``.

    Returns:
        the device.

    Raises:
        ValueError: not a device name, CUDA requested where it is not available, or a CUDA
            index beyond the devices here.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, "
                         f"got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def native_bf16(device="cpu") -> bool:
    """Whether ``device`` computes bf16 natively: CUDA with bf16 support, or a CPU that
    reports ``avx512_bf16`` or AMX (``amx_bf16``) in ``/proc/cpuinfo``.

    Args:
        device: the device (any non-CUDA device is asked about the CPU).

    Returns:
        ``True`` or ``False`` (``False`` too when ``/proc/cpuinfo`` cannot be read).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32"):
    """The forward precision of a training step: nothing for ``"fp32"``; for ``"bf16"``,
    ``torch.autocast(device.type, torch.bfloat16)``: convolutions and linear layers compute
    in bf16 from fp32 master weights; BatchNorm keeps fp32 parameters, running statistics
    and arithmetic (PyTorch's mixed-type batch norm: bf16 activations in and out, statistics
    accumulated in fp32; pinned by a test), and element-wise ops (Bridgeout's noise on the
    weights) stay fp32.

    Args:
        device: the device the step runs on.
        precision: one of :data:`PRECISIONS`.

    Yields:
        nothing; the block runs in the chosen precision.

    Raises:
        ValueError: an unknown precision.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield


def _prepare_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def prepare_model(model: nn.Module, device: torch.device, *, compile: bool = False,
                  channels_last: bool = True) -> nn.Module:
    """Move ``model`` (in place) to ``device`` for training and return the callable to train.

    ``channels_last`` (default, CPU and CUDA) stores the 4-D weights NHWC; :func:`train_step`
    and :func:`evaluate` then feed NHWC inputs (measured on a 2-core CPU: 1.5x the
    images/s of NCHW for VGG-16, see the README). On CUDA cuDNN autotuning is switched on
    (a global setting); ``compile=True`` returns ``torch.compile(model)`` (the parameters
    stay shared).

    Args:
        model: the network (moved in place).
        device: the training device.
        compile: keyword-only; wrap the model with :func:`torch.compile`.
        channels_last: keyword-only; NHWC weights (else contiguous NCHW).

    Returns:
        ``model``, or its compiled wrapper.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if channels_last:
        model.to(device=device, memory_format=torch.channels_last)
    else:
        model.to(device=device, memory_format=torch.contiguous_format)
    return torch.compile(model) if compile else model
