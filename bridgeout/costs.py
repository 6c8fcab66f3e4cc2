"""What a (pruned) network costs: parameters, FLOPs, per-filter costs and measured latency.

The cost side of :mod:`bridgeout.prune`: FLOPs are counted with PyTorch's own
:class:`torch.utils.flop_counter.FlopCounterMode` (forward, one input), latency is the median
wall time of eval-mode forward passes after warm-up. Re-exported by :mod:`bridgeout.prune`.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["count_parameters", "count_flops", "measure_latency"]

_LATENCY_RUNS = {"cuda": (5, 20), "cpu": (1, 5)}


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class _EvalMode:
    """Context: the model in eval mode, every module's flag restored afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, flag in self.flags:
            m.training = flag
        return False


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (shared tensors once; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on ``example_input`` counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts 2; convs,
    matmuls, ... -- element-wise ops, BN and pooling are not counted).  Eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    with _EvalMode(model), torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(example_input.to(_model_device(model)))
    return int(counter.get_total_flops())


def _conv_filter_costs(model: nn.Module, example_input: torch.Tensor):
    """Per conv: (FLOPs per output filter, weights per output filter) for one input."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    shapes = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: shapes.__setitem__(name, out.shape[-2:]))
        for name, m in convs]
    try:
        with _EvalMode(model), torch.inference_mode():
            model(example_input.to(_model_device(model)))
    finally:
        for h in hooks:
            h.remove()
    costs = {}
    for name, m in convs:
        per_filter = m.weight[0].numel()
        h, w = shapes.get(name, (0, 0))
        costs[name] = (2 * per_filter * int(h) * int(w), per_filter)
    return costs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model: nn.Module, input_shape: Sequence[int], batch_size: int,
                    device=None, *, warmup: int | None = None, repeats: int | None = None
                    ) -> float:
    """Median wall time in milliseconds of one eval-mode forward pass of a random batch
    ``(batch_size, *input_shape)`` on ``device`` (default: the model's), after ``warmup``
    untimed passes; CUDA is synchronised before and after each timed pass.  Float32 (the
    convs use TF32 where PyTorch's defaults allow it); the input is channels-last when the
    model's weights are.
    Defaults: 5 warm-up and 20 timed passes on CUDA, 1 and 5 elsewhere."""
    device = torch.device(device) if device is not None else _model_device(model)
    w_default, r_default = _LATENCY_RUNS.get(device.type, _LATENCY_RUNS["cpu"])
    warmup = w_default if warmup is None else int(warmup)
    repeats = r_default if repeats is None else int(repeats)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    from .train import channels_last_model

    x = torch.randn(batch_size, *input_shape, device=device)
    if x.dim() == 4 and channels_last_model(model):
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with _EvalMode(model), torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))
