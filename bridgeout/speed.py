"""Measured speed of removed networks against the FLOP ratio (``latency.csv``).

Removing a fraction :math:`f` of the filters of every layer of a chain network keeps about
:math:`(1-f)^2` of the FLOPs (input and output channels both shrink), so the FLOP-ideal
speed-up is :math:`F_0 / F_f`. :func:`speedups` puts each measured latency beside that ideal;
:func:`plot_speedups` draws them. The measurements come from ``notebooks/prune_again.ipynb``
(:func:`bridgeout.again.latency_rows`): one quiet CPU, a fixed thread count, median of repeats.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["speedups", "at_fraction", "every_fraction", "every_fraction_markdown", "slower_sentence", "plot_speedups",
           "RUNTIME_LABELS"]

RUNTIME_LABELS = {"torch": "PyTorch eager", "onnxruntime": "ONNX Runtime"}
_STYLE = {("torch", 128): ("#0072B2", "-", "o"), ("torch", 1): ("#0072B2", "--", "o"),
          ("onnxruntime", 128): ("#D55E00", "-", "s"), ("onnxruntime", 1): ("#D55E00", "--", "s")}


def speedups(latency: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, criterion, runtime, batch size, threads, fraction) with
    ``latency_ms``, ``speedup`` (latency of the unpruned network over this one's),
    ``flop_speedup`` (its FLOPs over this one's: the ideal) and ``share`` (speed-up / ideal).
    Rows whose run has no unpruned (fraction 0) measurement in the same setting are dropped.

    Args:
        latency: ``latency`` rows (``arm``, ``regularizer`` and ``device_name`` columns are
            carried over when present).

    Returns:
        the rows, sorted by run, criterion, runtime, batch size, threads and fraction.
    """
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
    share, n``).

    Args:
        table: the table of :func:`speedups`.
        fraction: the fraction removed.

    Returns:
        one row per runtime, batch size and thread count; ``n`` the number of runs.
    """
    t = table[(table["fraction"] - fraction).abs() < 1e-9]
    g = t.groupby(["runtime", "batch_size", "threads"])
    return g.agg(speedup=("speedup", "median"), flop_speedup=("flop_speedup", "median"),
                 share=("share", "median"), n=("run_id", "nunique")).reset_index()


def plot_speedups(ax, table: pd.DataFrame):
    """Measured speed-up against the fraction of filters removed per layer, one line per
    (runtime, batch size) (median over runs), and the FLOP-ideal speed-up (grey).

    The y axis is logarithmic (base 2), with a dotted line at 1.

    Args:
        ax: the matplotlib axis.
        table: the table of :func:`speedups`.

    Returns:
        ``ax``.
    """
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


def every_fraction(table: pd.DataFrame) -> pd.DataFrame:
    """Median speed-up over runs at every timed fraction above 0: one row per fraction, a
    column per ``"<runtime> b<batch>"`` and ``flop`` (the FLOP ratio).

    Args:
        table: the table of :func:`speedups`.

    Returns:
        the wide table, indexed by fraction, ``flop`` first.
    """
    t = table[table["fraction"] > 0]
    med = t.groupby(["fraction", "runtime", "batch_size"])["speedup"].median().reset_index()
    wide = med.pivot_table(index="fraction", columns=["runtime", "batch_size"], values="speedup")
    wide.columns = [f"{rt} b{int(b)}" for rt, b in wide.columns]
    wide.insert(0, "flop", t.groupby("fraction")["flop_speedup"].median())
    return wide


def every_fraction_markdown(table: pd.DataFrame) -> str:
    """:func:`every_fraction` as a Markdown table; a speed-up below 1 (slower than the
    unpruned network) in bold.

    Args:
        table: the table of :func:`speedups`.

    Returns:
        the Markdown table.
    """
    w = every_fraction(table)
    cols = [c for c in w.columns if c != "flop"]

    def label(c):
        rt, b = c.rsplit(" b", 1)
        return f"{RUNTIME_LABELS.get(rt, rt)}, batch {b}"

    lines = ["| removed | FLOP ratio | " + " | ".join(label(c) for c in cols) + " |",
             "| --- | --- |" + " --- |" * len(cols)]
    for f, r in w.iterrows():
        cells = [f"**{r[c]:.2f}×**" if r[c] < 1 else f"{r[c]:.2f}×" for c in cols]
        lines.append(f"| {round(100 * f)} % | {r['flop']:.2f}× | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def slower_sentence(table: pd.DataFrame) -> str:
    """Where a removed network ran slower than the unpruned one, and where the speed-up fell
    as more was removed (Markdown, from :func:`every_fraction`).

    A fall counts when the median speed-up drops by more than 0.05 from one timed fraction to
    the next; when anything is reported, a last sentence notes the channel counts per-layer
    pruning leaves a 16-filter layer.

    Args:
        table: the table of :func:`speedups`.

    Returns:
        the text.
    """
    w = every_fraction(table)
    parts, drops = [], []
    for c in [c for c in w.columns if c != "flop"]:
        rt, b = c.rsplit(" b", 1)
        slow = w.index[w[c] < 1]
        if len(slow):
            parts.append(f"{RUNTIME_LABELS.get(rt, rt)} at batch {b} at "
                         f"{', '.join(f'{round(100 * f)}' for f in slow)} % removed "
                         f"({w.loc[slow, c].min():.2f}-{w.loc[slow, c].max():.2f}×)")
        fell = [(a, b2) for a, b2 in zip(w.index[:-1], w.index[1:]) if w.loc[b2, c] < w.loc[a, c] - 0.05]
        drops += [f"{RUNTIME_LABELS.get(rt, rt)} at batch {b} from {round(100 * a)} to {round(100 * b2)} % "
                  f"({w.loc[a, c]:.2f}× → {w.loc[b2, c]:.2f}×)" for a, b2 in fell]
    text = ("The removed network ran **slower than the unpruned one** with " + "; ".join(parts) + "."
            if parts else "No removed network ran slower than the unpruned one.")
    if drops:
        text += " The speed-up fell as more was removed with " + "; ".join(drops) + "."
    if parts or drops:
        from .prune import n_pruned  # deferred: loads torch
        kept = ", ".join(f"{16 - n_pruned(16, f)} at {round(100 * f)} %" for f in w.index if f <= 0.5)
        text += (f" Per-layer pruning sets every layer's channel count (a layer of 16 filters keeps {kept}), "
                 "and only some of these counts are multiples of 8, the width CPU kernels are written for; whether "
                 "that, layout conversions or the runtime's graph optimisations make the difference has not been "
                 "measured yet.")
    return text
