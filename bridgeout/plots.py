"""One visual language for every figure of the book.

* :data:`PALETTE` gives each regularizer one colour everywhere (the Okabe-Ito
  colour-blind-safe set), :data:`MARKERS` one marker shape, so that curves stay apart in
  grey-scale print too; :data:`LABELS` the names shown in legends.
* :func:`pruning_curve` draws accuracy against the percentage of filters pruned in each
  layer: our runs as solid lines with markers (mean over seeds, shaded band = the range
  over seeds), the paper's published curve dashed in the same colour with its error bars.
* :func:`not_run` marks an axis whose experiment has not been run yet.
* :func:`set_theme` sets a seaborn theme readable at page width (``svg=True``: SVG output).
* :func:`glue_figure` hands a finished figure to the book (myst-nb ``glue``) after checking
  it: text at least :data:`MIN_FONT_PT` points as displayed in the :data:`COLUMN_IN`-inch
  column (:func:`small_text`) and no legend entry for something not drawn
  (:func:`undrawn_legend_entries`).

Accuracies are fractions in [0, 1] in every table; the axes show percent.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .figcheck import COLUMN_IN, MIN_FONT_PT, _neutral, glue_figure, small_text, undrawn_legend_entries  # noqa: F401 - re-exported
from .registry import REGULARIZER_TABLE
from ._validate import check_choice

__all__ = [
    "PALETTE", "MARKERS", "LABELS", "MODEL_LABELS", "DATASET_LABELS", "SPREADS",
    "set_theme", "summarize", "pruning_curve", "not_run", "panel_title", "legend_handles",
    "COLUMN_IN", "MIN_FONT_PT", "small_text", "undrawn_legend_entries", "glue_figure",
    "seed_curves", "seed_handles",
]

#: One colour, marker and legend name per regularizer (:data:`bridgeout.registry.REGULARIZER_TABLE`).
PALETTE = {r.name: r.colour for r in REGULARIZER_TABLE}
MARKERS = {r.name: r.marker for r in REGULARIZER_TABLE}
LABELS = {r.name: r.label for r in REGULARIZER_TABLE}

MODEL_LABELS = {"vgg16": "VGG-16", "resnet": "ResNet", "wrn28_10": "WRN-28-10", "wrn": "WRN",
                "lenet5": "LeNet-5"}
DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "mnist": "MNIST"}

#: How the spread over seeds is summarised: the range (min..max) or +-1 standard deviation.
SPREADS = ("range", "std")


def set_theme(font_scale: float = 1.0, *, svg: bool = False) -> None:
    """A seaborn ``whitegrid`` theme with fonts readable when a figure spans the page.

    ``svg=True`` (the book's notebooks) also makes IPython show figures as SVG, sharp at any
    zoom and screen density, and drawn at their natural size (a figure at most
    :data:`COLUMN_IN` inches wide is never scaled down, so its points are the reader's
    points). Outside IPython it does nothing more. The experiment notebook keeps PNG (the
    grid runner stores PNG outputs only).

    Args:
        font_scale: seaborn's font scale.
        svg: keyword-only; see above.
    """
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=font_scale,
                  rc={"figure.dpi": 100, "savefig.dpi": 150, "axes.titleweight": "bold",
                      "legend.frameon": True, "legend.framealpha": 0.9,
                      "axes.spines.top": False, "axes.spines.right": False})
    if svg:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks extra
            return
        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats
            set_matplotlib_formats("svg")


def panel_title(model: str, dataset: str) -> str:
    """``"VGG-16 / CIFAR-10"`` for ``("vgg16", "cifar10")``.

    Args:
        model: the model name (shown as is when unknown).
        dataset: the dataset name (shown as is when unknown).

    Returns:
        the title.
    """
    return f"{MODEL_LABELS.get(model, model)} / {DATASET_LABELS.get(dataset, dataset)}"


def summarize(rows: pd.DataFrame, *, by: Sequence[str] = ("regularizer", "fraction"),
              value: str = "test_acc") -> pd.DataFrame:
    """Mean and spread of ``value`` over the rows of each group (one row per seed).

    Returns one row per group with ``mean, std, min, max, n`` (``std`` is the sample
    standard deviation, NaN for a single seed). Empty input gives an empty frame with
    these columns.

    Args:
        rows: the rows (or None).
        by: keyword-only; the grouping columns.
        value: keyword-only; the column summarised.

    Returns:
        the group columns followed by ``mean, std, min, max, n``, sorted by group.

    Raises:
        ValueError: ``rows`` lacks a grouping column or ``value``.
    """
    by = list(by)
    cols = by + ["mean", "std", "min", "max", "n"]
    if rows is None or len(rows) == 0:
        return pd.DataFrame(columns=cols)
    missing = sorted((set(by) | {value}) - set(rows.columns))
    if missing:
        raise ValueError(f"rows is missing columns {missing}; needs {sorted(set(by) | {value})}")
    g = rows.groupby(by, sort=True, dropna=False)[value]
    out = g.agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"}).reset_index()
    return out[cols]


def _order(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [r for r in PALETTE if r in names]
    return known + sorted(n for n in names if n not in PALETTE)


def _pruning_axes(ax, ylim, title) -> None:
    """The axes of an accuracy-vs-filters-pruned plot (labels, x range and ticks, y range, title)."""
    ax.set_xlabel("filters pruned in each layer (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(-3, 93)
    ax.set_xticks(range(0, 100, 20))
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)


def pruning_curve(ax, ours: pd.DataFrame | None, paper: pd.DataFrame | None = None, *,
                  regularizers: Sequence[str] | None = None, value: str = "test_acc",
                  spread: str = "range", paper_label: str = "paper", legend: bool = True,
                  per_run: bool = True,
                  title: str | None = None, ylim: tuple[float, float] | None = (0, 100)):
    """Accuracy (%) against filters pruned per layer (%), ours solid, the paper's dashed.

    Args:
        ax: the matplotlib Axes.
        ours: One row per (run, fraction) with columns ``regularizer``, ``fraction`` (in [0, 1))
            and ``value`` (accuracy in [0, 1]); rows of several seeds are averaged and their
            spread drawn as a band. ``None`` or empty draws nothing of ours.
        paper: Rows of :func:`bridgeout.paper.load_curves` for this panel; drawn dashed in the
            regularizer's colour, with the published error bars. ``None`` or empty draws none.
        regularizers: keyword-only; restrict (and order) the regularizers drawn.
        value: keyword-only; the column of ``ours`` holding the accuracy.
        spread: keyword-only; ``"range"`` (min..max over seeds, default) or ``"std"``
            (mean +- 1 sd).
        paper_label: keyword-only; legend suffix of the paper's curves.
        legend: keyword-only; draw a per-axes legend (for grids of panels use one
            :func:`legend_handles` legend).
        per_run: keyword-only; also draw each run (``run_id``) as a thin line behind the mean,
            when there are several, so that a run unlike the others stays visible.
        title: keyword-only; the panel title.
        ylim: keyword-only; (low, high) in percent, or None for matplotlib's automatic limits.

    Returns:
        dict with the numbers of curves drawn: ``{"ours": k, "paper": m}``.

    Raises:
        ValueError: an unknown ``spread``.
    """
    check_choice("spread", spread, SPREADS)
    if ours is None or len(ours) == 0:
        ours = pd.DataFrame(columns=["regularizer", "fraction", value])
    if paper is None or len(paper) == 0:
        paper = pd.DataFrame(columns=["regularizer", "fraction", "accuracy"])
    names = _order(list(ours["regularizer"]) + list(paper["regularizer"]))
    if regularizers is not None:
        names = [r for r in regularizers if r in names]
    drawn = {"ours": 0, "paper": 0}
    stats = summarize(ours, value=value) if len(ours) else None
    for reg in names:
        color = PALETTE.get(reg, "0.3")
        label = LABELS.get(reg, reg)
        marker = MARKERS.get(reg, "o")
        pr = paper[paper["regularizer"] == reg].sort_values("fraction")
        if len(pr):
            x = 100 * pr["fraction"].to_numpy(float)
            y = 100 * pr["accuracy"].to_numpy(float)
            if {"errbar_low", "errbar_high"} <= set(pr.columns):
                lo = 100 * pr["errbar_low"].to_numpy(float)
                hi = 100 * pr["errbar_high"].to_numpy(float)
                yerr = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
            else:
                yerr = None
            ax.errorbar(x, y, yerr=yerr, color=color, ls="--", lw=1.4, marker=marker,
                             mfc="white", ms=4, capsize=2.5, elinewidth=0.9, alpha=0.9,
                             label=f"{label} ({paper_label})")
            drawn["paper"] += 1
        if stats is not None:
            st = stats[stats["regularizer"] == reg].sort_values("fraction")
            if len(st):
                x = 100 * st["fraction"].to_numpy(float)
                y = 100 * st["mean"].to_numpy(float)
                if spread == "range":
                    lo, hi = 100 * st["min"].to_numpy(float), 100 * st["max"].to_numpy(float)
                else:
                    sd = np.nan_to_num(100 * st["std"].to_numpy(float))
                    lo, hi = y - sd, y + sd
                n = int(st["n"].max())
                if per_run and n > 1 and "run_id" in ours.columns:
                    for _, run in ours[ours["regularizer"] == reg].groupby("run_id"):
                        run = run.sort_values("fraction")
                        ax.plot(100 * run["fraction"].to_numpy(float), 100 * run[value].to_numpy(float),
                                color=color, lw=0.7, alpha=0.5)
                ax.plot(x, y, color=color, ls="-", lw=2.0, marker=marker, ms=5,
                        label=f"{label} (ours, n={n})")
                if n > 1:
                    ax.fill_between(x, lo, hi, color=color, alpha=0.22, lw=0)
                drawn["ours"] += 1
    _pruning_axes(ax, ylim, title)
    if legend and (drawn["ours"] or drawn["paper"]):
        ax.legend(fontsize="x-small", loc="lower left")
    return drawn


def seed_curves(ax, rows: pd.DataFrame, *, chance: float, margin: float = 0.05, value: str = "test_acc",
                title: str | None = None, ylim: tuple[float, float] | None = (0, 100)) -> dict:
    """Accuracy (%) against filters pruned per layer (%), every seed visible.

    ``rows``: one row per (run, fraction) with ``run_id, regularizer, seed, fraction`` and
    ``value``. Per regularizer, a thin line per seed and, thick with markers, the mean over
    the seeds that trained. A seed whose unpruned accuracy is within ``margin`` of
    ``chance`` (it never left chance) is drawn dotted, kept out of the mean and named at the
    end of its line.

    Args:
        ax: the matplotlib Axes.
        rows: see above (None draws nothing).
        chance: keyword-only; the chance accuracy.
        margin: keyword-only; see above.
        value: keyword-only; the column holding the accuracy.
        title: keyword-only; the panel title.
        ylim: keyword-only; (low, high) in percent, or None for matplotlib's automatic limits.

    Returns:
        ``{"means": [regularizers with a mean drawn], "stuck": [(regularizer, seed,
        unpruned accuracy), ...], "n": {regularizer: seeds that trained}}``; pass it to
        :func:`seed_handles` for a legend of exactly what was drawn.
    """
    out = {"means": [], "stuck": [], "n": {}}
    rows = rows if rows is not None else pd.DataFrame(columns=["run_id", "regularizer", "seed", "fraction", value])
    for reg in _order(rows["regularizer"]):
        color = PALETTE.get(reg, "0.3")
        sub = rows[rows["regularizer"] == reg]
        good = []
        for rid, run in sub.groupby("run_id", sort=True):
            run = run.sort_values("fraction")
            x, y = 100 * run["fraction"].to_numpy(float), 100 * run[value].to_numpy(float)
            seed = int(run["seed"].iloc[0])
            if run[value].iloc[0] <= chance + margin:
                ax.plot(x, y, color=color, ls=":", lw=1.8)
                k = min(2, len(x) - 1)   # named near the left end, below the trained curves
                ax.annotate(f"{LABELS.get(reg, reg)}, seed {seed}: at chance", (x[k], y[k]),
                            xytext=(0, 4), textcoords="offset points", ha="left", va="bottom",
                            fontsize=9, color=color)
                out["stuck"].append((reg, seed, float(run[value].iloc[0])))
            else:
                ax.plot(x, y, color=color, lw=0.8, alpha=0.55)
                good.append(run)
        if good:
            st = summarize(pd.concat(good), by=("fraction",), value=value)
            ax.plot(100 * st["fraction"].to_numpy(float), 100 * st["mean"].to_numpy(float), color=color,
                    lw=2.2, marker=MARKERS.get(reg, "o"), ms=5)
            out["means"].append(reg)
            out["n"][reg] = len(good)
    _pruning_axes(ax, ylim, title)
    return out


def seed_handles(*drawn: dict) -> list:
    """Legend proxies for what one or more :func:`seed_curves` calls drew: a colour per
    regularizer whose mean is drawn, the thin per-seed line when any seed trained, and the
    dotted at-chance line only when a seed was stuck.

    Args:
        *drawn: the dicts :func:`seed_curves` returned.

    Returns:
        a list of :class:`matplotlib.lines.Line2D`.
    """
    from matplotlib.lines import Line2D

    regs = _order([r for d in drawn for r in d["means"]])
    handles = [Line2D([], [], color=PALETTE.get(r, "0.3"), marker=MARKERS.get(r, "o"), lw=2.2, ms=5,
                      label=f"{LABELS.get(r, r)} (mean)") for r in regs]
    if regs:
        handles.append(Line2D([], [], color="0.4", lw=0.8, label="one seed"))
    if any(d["stuck"] for d in drawn):
        handles.append(Line2D([], [], color="0.4", ls=":", lw=1.8, label="a seed stuck at chance (not in the mean)"))
    return handles


def not_run(ax, text: str = "not run yet", *, loc: str = "best"):
    """Write ``text`` in a framed box on ``ax`` (a panel whose experiment is missing).

    Whatever is already drawn (the paper's curves) stays; nothing else is added. With
    ``loc="best"`` (default) matplotlib places the box where it hides the fewest data
    points (as for a legend); any other legend location string (``"upper right"``,
    ``"center"``, ...) fixes it. The box is added as an extra artist, so a later
    ``ax.legend()`` does not remove it. Returns the box (a ``Legend``).

    Args:
        ax: the matplotlib Axes.
        text: the message.
        loc: keyword-only; a legend location string.

    Returns:
        the box.

    Raises:
        ValueError: an unknown ``loc``.
    """
    from matplotlib.legend import Legend
    from matplotlib.patches import Rectangle

    check_choice("loc", loc, tuple(Legend.codes))
    box = ax.legend([Rectangle((0, 0), 0, 0, visible=False)], [text], loc=loc, handlelength=0,
                    handletextpad=0, borderpad=0.6, fontsize="small", frameon=True, fancybox=True,
                    framealpha=0.95, facecolor="#f3f3f3", edgecolor="0.45")
    for t in box.get_texts():
        t.set_fontweight("bold")
        t.set_color("0.2")
        t.set_multialignment("center")
    box.set_zorder(10)
    ax.add_artist(box)
    return box


def legend_handles(regularizers: Iterable[str], *, ours: bool = True, paper: bool = True,
                   paper_label: str = "published (Khan & Stavness 2020)"):
    """Proxy artists for one figure-wide legend: a colour per regularizer, then the line
    styles (solid = ours, dashed = the paper). Use as ``fig.legend(handles=...)``.

    Args:
        regularizers: the regularizers drawn (put in :data:`PALETTE` order, others after).
        ours: keyword-only; add the entry for our curves.
        paper: keyword-only; add the entry for the paper's curves.
        paper_label: keyword-only; the label of the paper's entry.

    Returns:
        a list of :class:`matplotlib.lines.Line2D`.
    """
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PALETTE.get(r, "0.3"), marker=MARKERS.get(r, "o"), lw=2.5,
                      label=LABELS.get(r, r)) for r in _order(regularizers)]
    if ours:
        handles.append(Line2D([], [], color="0.25", ls="-", lw=2, marker="o", ms=5,
                              label="ours: mean over seeds (thin: each seed; band: range)"))
    if paper:
        handles.append(Line2D([], [], color="0.25", ls="--", lw=1.4, marker="o", mfc="white", ms=4,
                              label=paper_label))
    return handles
