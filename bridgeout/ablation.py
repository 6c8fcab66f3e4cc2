"""The noise ablations: Batch Bridgeout with one setting of its noise varied at a time.

Every other setting stays at its published value (:data:`PUBLISHED`: q = 1.5, p = 0.3, 75 %
of the kernels targeted, unsigned). A *panel* is one setting varied within one grid; its rows
are the one-shot pruning sweeps (mask mode, L2 ranking per layer, the paper's pruner, no
BatchNorm re-estimation, no fine-tuning) of every run in it. Seeds that did not train
(:func:`bridgeout.comparison.did_not_train`, the book's one rule) are drawn apart and left out
of every mean.

* :func:`panels` finds them in the joined tables;
* :func:`at_fraction` gives mean ± sd over the seeds that trained at one pruned fraction, and
  each value's Welch 95 % interval against the published value;
* :func:`markdown` says it in one paragraph, :func:`summary` in one table cell;
* :func:`plot` draws one panel per setting, a colour per value, legends outside the axes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from . import plots
from .comparison import did_not_train as rule
from .fmt import plural
from .stats import welch

__all__ = ["PUBLISHED", "Panel", "panels", "did_not_train", "at_fraction", "markdown", "summary", "plot"]

#: Batch Bridgeout's published noise (facts sheet): the value every ablation varies one of.
PUBLISHED = {"q": 1.5, "p": 0.3, "target_fraction": 0.75, "signed": False}

#: The published value's colour in every panel, and distinct colours for the other values in
#: order (Okabe-Ito, colour-blind safe).
PUBLISHED_COLOUR = "#D55E00"
VALUE_COLOURS = ("#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


class Panel(NamedTuple):
    """One setting varied within one grid (:func:`panels`).

    Attributes:
        param: the setting varied (a key of :data:`PUBLISHED`).
        grid: the grid.
        rows: the panel's joined pruning rows.
    """
    param: str
    grid: str
    rows: pd.DataFrame


def _value(v) -> str:
    return str(bool(v)) if isinstance(v, (bool, np.bool_)) else f"{float(v):g}"


def panels(joined: pd.DataFrame) -> list[Panel]:
    """One :class:`Panel` per (setting, grid) in which that setting takes more than one value
    while the others stay at :data:`PUBLISHED`, in the order of :data:`PUBLISHED`.

    Only Batch Bridgeout's one-shot rows are used: mask mode, L2, no fine-tuning, no BatchNorm
    re-estimation, the plain pruner and per-layer scope (where the table has those columns).

    Args:
        joined: joined pruning rows (:func:`bridgeout.results.load_joined`), or None.

    Returns:
        the panels (empty for no rows); grids in sorted order within a setting.

    Raises:
        ValueError: ``joined`` lacks a needed column.
    """
    if joined is None or not len(joined):
        return []
    need = {"regularizer", "mode", "criterion", "finetune_epochs", "recalibrate_bn", "grid", "run_id",
            "fraction", "test_acc", *PUBLISHED}
    missing = sorted(need - set(joined.columns))
    if missing:
        raise ValueError(f"joined tables lack columns {missing}; ablation.panels needs {sorted(need)}")
    keep = ((joined["regularizer"] == "bridgeout") & (joined["mode"] == "mask") & (joined["criterion"] == "l2")
            & (joined["finetune_epochs"] == 0) & ~joined["recalibrate_bn"].astype(bool))
    for col, plain in (("pruner", "plain"), ("scope", "layer")):
        if col in joined.columns:
            keep &= joined[col].fillna(plain) == plain
    bo = joined[keep]
    out = []
    for param in PUBLISHED:
        same = np.logical_and.reduce([np.isclose(bo[k].astype(float), float(PUBLISHED[k]))
                                      for k in PUBLISHED if k != param])
        for grid, rows in bo[same].groupby("grid", sort=True):
            if rows[param].nunique() > 1:
                out.append(Panel(param, grid, rows))
    return out


def did_not_train(panel: Panel) -> pd.Series:
    """The panel's unpruned accuracy per run, for the runs that did not train (the book's rule,
    against the panel's median).

    Args:
        panel: the :class:`Panel`.

    Returns:
        the unpruned accuracy by run id, for those runs only.
    """
    rows = panel.rows
    unpruned = rows[np.isclose(rows["fraction"], 0.0)].groupby("run_id")["test_acc"].first()
    return unpruned[rule(unpruned)]


def at_fraction(panel: Panel, fraction: float = 0.7) -> pd.DataFrame:
    """Accuracy with ``fraction`` of every layer's filters zeroed, per value of the panel's
    setting, over the seeds that trained: columns ``value, published, n, n_runs, mean, sd,
    seeds`` (the per-seed accuracies, by seed), and ``diff, low, high``: mean minus the
    published value's mean with its Welch 95 % interval (NaN for the published value itself
    and where a side has fewer than two seeds).

    Args:
        panel: the :class:`Panel`.
        fraction: the fraction zeroed.

    Returns:
        one row per value, sorted.
    """
    bad = set(did_not_train(panel).index)
    rows = panel.rows
    at = rows[np.isclose(rows["fraction"], fraction)]
    ok = at[~at["run_id"].isin(bad)]
    pub_acc = ok[np.isclose(ok[panel.param].astype(float), float(PUBLISHED[panel.param]))]["test_acc"]
    out = []
    for v in sorted(rows[panel.param].unique()):
        sel = ok[ok[panel.param] == v].sort_values("seed")
        acc = sel["test_acc"]
        published = bool(np.isclose(float(v), float(PUBLISHED[panel.param])))
        diff, lo, hi, _ = (np.nan,) * 4 if published else welch(pub_acc, acc)
        out.append({"value": v, "published": published, "n": len(acc),
                    "n_runs": int(rows[rows[panel.param] == v]["run_id"].nunique()),
                    "mean": acc.mean() if len(acc) else np.nan,
                    "sd": acc.std(ddof=1) if len(acc) > 1 else np.nan,
                    "seeds": dict(zip(sel["seed"].astype(int), acc)), "diff": diff, "low": lo, "high": hi})
    return pd.DataFrame(out)


def _mean_sd(r) -> str:
    return f"{100 * r.mean:.1f}" + (f" ± {100 * r.sd:.1f}" if np.isfinite(r.sd) else "")


def markdown(found: list[Panel], fraction: float = 0.7) -> str:
    """The ablations in one paragraph: per setting, accuracy at ``fraction`` zeroed as mean ± sd
    (seeds), each value against the published one with its Welch 95 % interval, the runs that
    did not train, and what so few seeds can show.

    Args:
        found: the panels (:func:`panels`).
        fraction: the fraction zeroed.

    Returns:
        the paragraph (Markdown); a "not run yet" paragraph without panels.
    """
    if not found:
        return ("**No ablation has been run yet.** The tables hold Batch Bridgeout only at the published "
                "noise (and targeted DropConnect, which changes q and the sign together), so no setting has "
                "been varied alone.")
    f = f"{round(100 * fraction)} %"
    parts, clear, widths, failed = [], [], [], []
    for pan in found:
        t = at_fraction(pan, fraction)
        vals = []
        for r in t.itertuples():
            s, extra = f"{_value(r.value)} → {_mean_sd(r)} %", []
            if r.n < r.n_runs:
                extra.append(f"{r.n} of {r.n_runs} seeds")
            if np.isfinite(r.low):
                extra.append(f"{100 * r.diff:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}]")
                widths.append(r.high - r.low)
                if r.low > 0 or r.high < 0:
                    clear.append(f"`{pan.param}` = {_value(r.value)}")
            vals.append(s + (f" ({'; '.join(extra)})" if extra else ""))
        parts.append(f"`{pan.param}`: " + ", ".join(vals))
        failed += [f"`{pan.param}` = {_value(pan.rows.loc[pan.rows['run_id'] == rid, pan.param].iloc[0])}, "
                   f"run `{rid}` at {100 * a:.1f} %" for rid, a in did_not_train(pan).items()]
    grids = ", ".join(sorted({f"`{p.grid}`" for p in found}))
    n = min(int(p.rows.groupby(p.param)["run_id"].nunique().min()) for p in found)
    text = (("All four settings varied" if len(found) >= len(PUBLISHED) else f"{plural(len(found), 'setting')} varied so far")
            + ", "
            f"in {grids}, {plural(n, 'seed')} per value at least. Test accuracy with {f} of the filters zeroed in "
            "every layer (one shot), mean ± sd over the seeds that trained, and in brackets the difference from "
            "the published value with its Welch 95 % interval (points): " + "; ".join(parts) + ". ")
    if clear:
        text += ("Only " + ", ".join(clear) + " differ" + ("s" if len(clear) == 1 else "")
                 + " from the published value by more than the interval. ")
    else:
        text += "No value differs from the published one by more than the interval. "
    if widths:
        text += (f"With {plural(n, 'seed')} the intervals span {100 * min(widths):.0f}-{100 * max(widths):.0f} "
                 "points: the order of the means is a direction to test with more seeds, not a finding, and "
                 "a difference smaller than that is not evidence either way. ")
    if failed:
        text += ("Runs that did not train (`bridgeout.comparison.did_not_train`: unpruned accuracy within 5 "
                 "points of chance or more than 20 below the panel's median; thin grey dashed, left out of the "
                 "mean): " + "; ".join(failed) + ".")
    return text.strip()


def summary(found: list[Panel], fraction: float = 0.7) -> str:
    """One table cell: accuracy (%) at ``fraction`` zeroed per setting and value, mean ± sd.

    Args:
        found: the panels (:func:`panels`).
        fraction: the fraction zeroed.

    Returns:
        the cell's text, with the number of runs that did not train left out; ``"not run"``
        without panels.
    """
    if not found:
        return "not run"
    out, left = [], 0
    for pan in found:
        t = at_fraction(pan, fraction)
        out.append(f"{pan.param} " + " / ".join(_value(v) for v in t["value"]) + ": "
                   + " / ".join(_mean_sd(r) for r in t.itertuples()))
        left += len(did_not_train(pan))
    tail = f" ({plural(left, 'run')} that did not train left out)" if left else ""
    return f"accuracy (%) at {round(100 * fraction)} % zeroed, mean ± sd: " + "; ".join(out) + tail


def plot(found: list[Panel]):
    """One panel per setting (two per row at the book's column width): a thin line per seed, the
    mean over the seeds that trained thick, one colour per value (the published value
    :data:`PUBLISHED_COLOUR` in every panel), the legend below the axes; seeds that did not
    train thin, grey and dashed.

    Args:
        found: the panels (:func:`panels`), at least one.

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ncol = min(2, len(found))
    nrow = -(-len(found) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(plots.COLUMN_IN, 3.6 * nrow), squeeze=False,
                             layout="constrained")
    for ax, pan in zip(axes.ravel(), found):
        bad = set(did_not_train(pan).index)
        handles = []
        values = sorted(pan.rows[pan.param].unique())
        others = iter(VALUE_COLOURS)
        colours = [PUBLISHED_COLOUR if np.isclose(float(v), float(PUBLISHED[pan.param])) else next(others, "0.3")
                   for v in values]
        for v, c in zip(values, colours):
            sel = pan.rows[pan.rows[pan.param] == v]
            for rid, g in sel.groupby("run_id"):
                g = g.sort_values("fraction")
                ax.plot(100 * g["fraction"], 100 * g["test_acc"], color="0.5" if rid in bad else c,
                        lw=0.8, ls="--" if rid in bad else "-", alpha=0.6)
            ok = sel[~sel["run_id"].isin(bad)]
            s = plots.summarize(ok, by=("fraction",))
            ax.plot(100 * s["fraction"], 100 * s["mean"], color=c, lw=2.2, marker="o", ms=4)
            n_ok, n = ok["run_id"].nunique(), sel["run_id"].nunique()
            tag = " (published)" if np.isclose(float(v), float(PUBLISHED[pan.param])) else ""
            shown = ("signed" if v else "unsigned") if pan.param == "signed" else f"{pan.param} = {_value(v)}"
            handles.append(Line2D([], [], color=c, lw=2.2, marker="o", ms=4,
                                  label=f"{shown}{tag}, " + (f"{n_ok} of {n} seeds trained" if n_ok < n
                                                             else f"{n} seeds")))
        if bad:
            handles.append(Line2D([], [], color="0.5", lw=0.8, ls="--", label="did not train"))
        ax.set(xlabel="pruned per layer (%)", ylabel="test accuracy (%)", ylim=(0, 100))
        ax.set_title(f"{pan.param} varied" + (f" ({pan.grid})" if len({p.grid for p in found}) > 1 else ""),
                     fontsize=10)
        ax.tick_params(labelsize=9)
        ax.legend(handles=handles, fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=1,
                  frameon=False)
    for ax in axes.ravel()[len(found):]:
        ax.set_visible(False)
    return fig
