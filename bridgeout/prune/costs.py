"""What a (pruned) network costs: parameters, FLOPs, per-filter costs and measured latency.

The cost side of :mod:`bridgeout.prune`: FLOPs are counted with PyTorch's own
:class:`torch.utils.flop_counter.FlopCounterMode` (forward, one input), latency is the median
wall time of eval-mode forward passes after warm-up, in PyTorch (:func:`measure_latency`) or in
ONNX Runtime (:func:`measure_onnx_latency`: the network exported with :func:`torch.onnx.export`,
the runtime a deployment on a phone or an edge box would use). Re-exported by
:mod:`bridgeout.prune`.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..introspect import channels_last_model, count_parameters, eval_mode, model_device
from ..nn import plain

__all__ = ["count_parameters", "count_flops", "measure_latency", "export_onnx", "onnx_session",
           "measure_onnx_latency"]

_LATENCY_RUNS = {"cuda": (5, 20), "cpu": (1, 5)}


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on ``example_input`` counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts 2; convs,
    matmuls, ... -- element-wise ops, BN and pooling are not counted).  Eval mode.

    Args:
        model: the network (its train/eval flags are restored afterwards).
        example_input: the input (moved to the model's device); its batch size counts.

    Returns:
        the FLOP count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with eval_mode(model), torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(example_input.to(model_device(model)))
    return int(counter.get_total_flops())


def _conv_filter_costs(model: nn.Module, example_input: torch.Tensor):
    """Per conv: (FLOPs per output filter, weights per output filter) for one input."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    shapes = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: shapes.__setitem__(name, out.shape[-2:]))
        for name, m in convs]
    try:
        with eval_mode(model), torch.inference_mode():
            model(example_input.to(model_device(model)))
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
    Defaults: 5 warm-up and 20 timed passes on CUDA, 1 and 5 elsewhere.

    Args:
        model: the network (its train/eval flags are restored afterwards).
        input_shape: the shape of one input, e.g. ``(3, 32, 32)``.
        batch_size: the batch size.
        device: where the batch is made (default: the model's device).
        warmup: keyword-only; untimed passes.
        repeats: keyword-only; timed passes, >= 1.

    Returns:
        the median time in ms.

    Raises:
        ValueError: ``repeats`` < 1.
    """
    device = torch.device(device) if device is not None else model_device(model)
    w_default, r_default = _LATENCY_RUNS.get(device.type, _LATENCY_RUNS["cpu"])
    warmup = w_default if warmup is None else int(warmup)
    repeats = r_default if repeats is None else int(repeats)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")

    x = torch.randn(batch_size, *input_shape, device=device)
    if x.dim() == 4 and channels_last_model(model):
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _check_runs(warmup, repeats, threads):
    for name, v, low in (("warmup", warmup, 0), ("repeats", repeats, 1), ("threads", threads, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def export_onnx(model: nn.Module, input_shape: Sequence[int], batch_size: int) -> bytes:
    """The eval-mode, noise-free copy of ``model`` (:func:`bridgeout.nn.plain`, on the CPU,
    float32) exported to ONNX for inputs of shape ``(batch_size, *input_shape)``; the
    serialised model. TorchScript-based exporter (``dynamo=False``, a second per network);
    where a PyTorch no longer has it, the ``torch.export`` one.

    Args:
        model: the network (not modified).
        input_shape: the shape of one input.
        batch_size: the (fixed) batch size of the exported graph.

    Returns:
        the serialised ONNX model, input ``"x"``, output ``"logits"``.
    """
    import io
    import warnings


    net = plain(model).to("cpu").float().eval()
    x = torch.randn(int(batch_size), *input_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")          # the legacy exporter's deprecation notice
        try:
            torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["x"], output_names=["logits"])
        except (TypeError, NotImplementedError, RuntimeError):
            buf = io.BytesIO()
            torch.onnx.export(net, (x,), buf, dynamo=True, input_names=["x"], output_names=["logits"])
    return buf.getvalue()


def onnx_session(onnx_model: bytes, threads: int = 1):
    """An ONNX Runtime CPU session for a serialised model: ``threads`` intra-op threads, one
    inter-op thread, all graph optimisations on.

    Args:
        onnx_model: the serialised model (:func:`export_onnx`).
        threads: intra-op threads, an integer >= 1.

    Returns:
        the ``onnxruntime.InferenceSession``.

    Raises:
        ImportError: ONNX Runtime is not installed.
        ValueError: ``threads`` is not an integer >= 1.
    """
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - the `deploy` extra is part of `all`
        raise ImportError("ONNX Runtime is not installed: pip install -e '.[deploy]' "
                          "(onnx, onnxruntime, onnxscript)") from None
    _check_runs(0, 1, threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_model, so, providers=["CPUExecutionProvider"])


def measure_onnx_latency(model: nn.Module, input_shape: Sequence[int], batch_size: int, *,
                         threads: int = 1, warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time in milliseconds of one forward pass of ``model`` in ONNX Runtime
    (:func:`export_onnx`, :func:`onnx_session` with ``threads`` intra-op threads) on a random
    float32 batch ``(batch_size, *input_shape)``, after ``warmup`` untimed passes.

    Args:
        model: the network (exported as its noise-free copy; not modified).
        input_shape: the shape of one input.
        batch_size: the batch size.
        threads: keyword-only; intra-op threads, >= 1.
        warmup: keyword-only; untimed passes, >= 0.
        repeats: keyword-only; timed passes, >= 1.

    Returns:
        the median time in ms.

    Raises:
        ValueError: ``threads``, ``warmup`` or ``repeats`` out of range.
        ImportError: ONNX Runtime is not installed.
    """
    _check_runs(warmup, repeats, threads)
    sess = onnx_session(export_onnx(model, input_shape, batch_size), threads)
    x = np.random.default_rng(0).standard_normal((int(batch_size), *input_shape)).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))
