"""What a full-scale replication costs on a GPU, counted: forward FLOPs of each of the paper's
networks, training FLOPs per run under the published protocol, and GPU-hours at an assumed
utilisation (the *Reproduction* chapter's "what only a GPU run can settle").
"""
from __future__ import annotations

import pandas as pd

from .protocols import PROTOCOLS

__all__ = ["GPU_MODELS", "gpu_need", "gpu_sentence"]

#: The paper's panels: models, datasets, and arms x seeds a full-scale replication runs.
GPU_MODELS = {"vgg16": {}, "resnet": {}, "wrn28_10": {"depth": 28, "widen_factor": 10}}


def gpu_need(utilisation: float = 0.1, peak_tflops: float = 990.0, seeds: int = 3, arms: int = 3,
             datasets: int = 2) -> pd.DataFrame:
    """What the published protocol costs per model, counted: forward GFLOP per 32×32 image
    (:func:`bridgeout.prune.costs.count_flops`), training PFLOP per run (3 × forward × 230 epochs ×
    50,000 images), runs (``arms`` × ``seeds`` × ``datasets``) and GPU-hours at
    ``utilisation`` of ``peak_tflops`` (the H200's dense bf16 rate by its datasheet). The
    utilisation is an assumption until a GPU run measures the real rate; small CIFAR networks
    usually reach well under the peak.

    Args:
        utilisation: the fraction of the peak rate assumed, in (0, 1].
        peak_tflops: the peak rate in TFLOP/s.
        seeds: seeds per arm.
        arms: arms per panel.
        datasets: datasets per model.

    Returns:
        one row per model of :data:`GPU_MODELS`: ``model``, ``forward_gflop``,
        ``train_pflop_per_run``, ``runs`` and ``gpu_hours``.

    Raises:
        ValueError: ``utilisation`` is outside (0, 1].
    """
    import torch  # deferred: the report modules load without torch

    from .models import build  # deferred: loads torch
    from .prune.costs import count_flops  # deferred: loads torch
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation!r}")
    epochs = PROTOCOLS["paper"].epochs
    rows = []
    for model, kw in GPU_MODELS.items():
        net = build("wrn" if model == "wrn28_10" else model, **kw)
        fwd = count_flops(net, torch.zeros(1, 3, 32, 32))
        per_run = 3 * fwd * epochs * 50_000
        n = arms * seeds * datasets
        rows.append({"model": model, "forward_gflop": fwd / 1e9, "train_pflop_per_run": per_run / 1e15,
                     "runs": n, "gpu_hours": n * per_run / (utilisation * peak_tflops * 1e12) / 3600})
    return pd.DataFrame(rows)


def gpu_sentence(need: pd.DataFrame, utilisation: float = 0.1) -> str:
    """:func:`gpu_need` in one sentence.

    Args:
        need: the table of :func:`gpu_need`.
        utilisation: the utilisation it assumed, as written in the sentence.

    Returns:
        the sentence.
    """
    labels = {"vgg16": "VGG-16", "resnet": "ResNet", "wrn28_10": "WRN-28-10"}
    per = "; ".join(f"{labels[r.model]} {r.train_pflop_per_run:,.0f} PFLOP per run, {r.gpu_hours:.1f} h for {r.runs} runs"
                    for r in need.itertuples())
    ratio = PROTOCOLS["paper"].epochs / PROTOCOLS["cpu"].epochs
    return (f"The published protocol ({PROTOCOLS['paper'].epochs} epochs, {ratio:.1f}× the `cpu` protocol's) for all "
            f"six panels (3 arms × 3 seeds × 2 datasets) is "
            f"{need['train_pflop_per_run'].mul(need['runs']).sum():,.0f} PFLOP of training, counted: {per}; "
            f"{need['gpu_hours'].sum():.0f} H200-hours in all at {round(100 * utilisation)} % of its datasheet "
            f"bf16 rate (an assumption until a GPU run measures the rate). The CIFAR-10 panels without "
            f"WRN-28-10 need {need[need['model'] != 'wrn28_10']['gpu_hours'].sum() / 2:.1f} h of it.")
