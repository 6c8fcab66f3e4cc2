"""Measured speed of removed networks against the FLOP ratio (``latency.csv``).

Removing a fraction :math:`f` of the filters of every layer of a chain network keeps about
:math:`(1-f)^2` of the FLOPs (input and output channels both shrink), so the FLOP-ideal
speed-up is :math:`F_0 / F_f`. :func:`speedups` puts each measured latency beside that ideal;
:func:`plot_speedups` draws them. The measurements come from ``notebooks/prune_again.ipynb``
(:func:`bridgeout.again.latency_rows`): one quiet CPU, a fixed thread count, median of repeats.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["speedups", "at_fraction", "plot_speedups", "RUNTIME_LABELS"]

RUNTIME_LABELS = {"torch": "PyTorch eager", "onnxruntime": "ONNX Runtime"}
_STYLE = {("torch", 128): ("#0072B2", "-", "o"), ("torch", 1): ("#0072B2", "--", "o"),
          ("onnxruntime", 128): ("#D55E00", "-", "s"), ("onnxruntime", 1): ("#D55E00", "--", "s")}


def speedups(latency: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, criterion, runtime, batch size, threads, fraction) with
    ``latency_ms``, ``speedup`` (latency of the unpruned network over this one's),
    ``flop_speedup`` (its FLOPs over this one's: the ideal) and ``share`` (speed-up / ideal).
    Rows whose run has no unpruned (fraction 0) measurement in the same setting are dropped."""
    keys = ["run_id", "criterion", "runtime", "batch_size", "threads"]
    cols = keys + ["fraction", "latency_ms", "flops"]
    extra = [c for c in ("arm", "regularizer", "device_name") if c in latency.columns]
    lat = latency[cols + extra].copy()
    base = lat[lat["fraction"] == 0][keys + ["latency_ms", "flops"]].rename(
        columns={"latency_ms": "base_ms", "flops": "base_flops"})
    out = lat.merge(base, on=keys, how="inner")
    out["speedup"] = out["base_ms"] / out["latency_ms"]
    out["flop_speedup"] = out["base_flops"] / out["flops"]
    out["share"] = out["speedup"] / out["flop_speedup"]
    return out.drop(columns=["base_ms", "base_flops"]).sort_values(keys + ["fraction"]).reset_index(drop=True)


def at_fraction(table: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Median over runs of the measured and the FLOP-ideal speed-up at ``fraction``, per
    runtime and batch size (columns ``runtime, batch_size, threads, speedup, flop_speedup,
    share, n``)."""
    t = table[(table["fraction"] - fraction).abs() < 1e-9]
    g = t.groupby(["runtime", "batch_size", "threads"])
    return g.agg(speedup=("speedup", "median"), flop_speedup=("flop_speedup", "median"),
                 share=("share", "median"), n=("run_id", "nunique")).reset_index()


def plot_speedups(ax, table: pd.DataFrame):
    """Measured speed-up against the fraction of filters removed per layer, one line per
    (runtime, batch size) (median over runs), and the FLOP-ideal speed-up (grey)."""
    for (rt, b), g in table.groupby(["runtime", "batch_size"]):
        color, ls, marker = _STYLE.get((rt, int(b)), ("0.3", "-", "o"))
        m = g.groupby("fraction")["speedup"].median()
        ax.plot(100 * m.index, m.to_numpy(), color=color, ls=ls, marker=marker, ms=4,
                mfc="white" if int(b) == 1 else color,
                label=f"{RUNTIME_LABELS.get(rt, rt)}, batch {int(b)}")
    ideal = table.groupby("fraction")["flop_speedup"].median()
    ax.plot(100 * ideal.index, ideal.to_numpy(), color="0.35", lw=2.4, alpha=0.5, label="FLOP ratio (ideal)")
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set(xlabel="filters removed in each layer (%)", ylabel="speed-up over unpruned (x)")
    ax.set_yscale("log", base=2)
    return ax
