"""The reproduction chapter's panels and inventories (``notebooks/reproduction.ipynb``).

The chapter puts our runs beside the paper's published curves. :func:`load` splits the
joined pruning rows into those at the published scale and settings, at a reduced scale, and
with other settings; the functions below make each section's table, sentence or figure from
those frames: the status of every panel, the six panels, our curves minus the published
ones, the reduced-scale figures, and the inventories of every run. The CPU-scale comparison
sections are :mod:`bridgeout.cpuscale`. The notebook holds only its parameters, figure
layout and ``glue`` calls. Accuracies are stored in [0, 1] and written in %.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import comparison, paper, plots, results

__all__ = ["DELTA_FRACTIONS", "SCALE_KEYS", "load", "choose_checkpoint", "arms", "arm_label",
           "seeds_per_regularizer", "values", "scale_text", "tables_text", "status_table", "deltas_table",
           "short_runs_table", "mnist_table", "inventory_table", "per_run_table", "did_not_train_text",
           "draw_six_panels", "scale_figure"]

#: Fractions pruned at which our curves are compared with the published ones.
DELTA_FRACTIONS = (0.0, 0.2, 0.4, 0.6)
#: What makes one reduced-scale figure: runs sharing all of these.
SCALE_KEYS = ["grid", "protocol", "width", "epochs", "n_train", "select"]


def load(root=None) -> dict[str, pd.DataFrame]:
    """The chapter's tables.

    Args:
        root: folder of the result tables; None for ``data/results/``.

    Returns:
        ``{"runs", "joined", "full", "reduced", "other"}``: one row per finished run; one
        row per (run, criterion, scope, mode, fraction); and the joined rows at the published
        noise settings and pruning procedure and the published training scale, at the
        published settings but a reduced scale, and with other settings.
    """
    settings = paper.published_settings()
    joined = results.load_joined(root)
    as_published = paper.method_mask(joined, settings)
    full_scale = paper.scale_mask(joined, settings)
    return {"runs": results.load("runs", root), "joined": joined, "full": joined[as_published & full_scale],
            "reduced": joined[as_published & ~full_scale], "other": joined[~as_published]}


def _panel(frame: pd.DataFrame, model: str, dataset: str) -> pd.DataFrame:
    """The rows of ``frame`` for one panel (model and dataset)."""
    return frame[(frame["model"] == model) & (frame["dataset"] == dataset)]


def choose_checkpoint(rows: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """One checkpoint rule per panel: the final epoch when available, else what was run.

    Args:
        rows: pruning rows of one panel, with a ``select`` column.

    Returns:
        the rows of the chosen checkpoint and its name (None for no rows).
    """
    if rows.empty:
        return rows, None
    sel = "final" if (rows["select"] == "final").any() else sorted(rows["select"].unique())[0]
    return rows[rows["select"] == sel], sel


def arms(rows: pd.DataFrame) -> pd.Series:
    """Each row's arm (:func:`bridgeout.comparison.arm_of`): targeted DropConnect and other
    Bridgeout forms apart from Batch Bridgeout q = 1.5.

    Args:
        rows: rows with ``regularizer``, ``q`` and ``signed``.

    Returns:
        the arms, aligned with ``rows``.
    """
    return pd.Series([comparison.arm_of(r, q, s) for r, q, s in zip(rows["regularizer"], rows["q"], rows["signed"])],
                     index=rows.index)


def arm_label(arm: str) -> str:
    """An arm's label, Bridgeout variants spelled out.

    Args:
        arm: an arm name, e.g. ``"bridgeout-q2-signed"``.

    Returns:
        its legend label, e.g. ``"Bridgeout q = 2, signed"``.
    """
    return comparison.ARM_LABELS.get(arm, arm.replace("bridgeout-q", "Bridgeout q = ").replace("-signed", ", signed"))


def seeds_per_regularizer(rows: pd.DataFrame) -> str:
    """Seeds per arm, e.g. ``"weight decay only: 3; Batch Bridgeout (q = 1.5): 2"``.

    Args:
        rows: one row per run (``regularizer, q, signed, seed``).

    Returns:
        the counts, ``"none"`` for no rows.
    """
    n = rows.assign(arm=arms(rows)).groupby("arm")["seed"].nunique()
    return "; ".join(f"{arm_label(a)}: {n[a]}" for a in n.index) or "none"


def values(rows: pd.DataFrame, col: str, fmt: str = "{}") -> str:
    """The distinct values of a column, sorted, comma-separated.

    Args:
        rows: any table.
        col: the column.
        fmt: format of one value.

    Returns:
        E.g. ``"26, 52"``; ``""`` when the column holds no value.
    """
    v = sorted(rows[col].dropna().unique())
    return ", ".join(fmt.format(x) for x in v)


def scale_text(rows: pd.DataFrame) -> str:
    """The training scale of some runs: protocol, width, epochs, training images, checkpoint.

    Args:
        rows: rows with ``protocol, width, epochs, n_train, select``.

    Returns:
        one line, e.g. ``"protocol cpu, width 0.25, 26 epochs, 50,000 training images, checkpoint: final"``.
    """
    return (f"protocol {values(rows, 'protocol')}, width {values(rows, 'width', '{:g}')}, "
            f"{values(rows, 'epochs')} epochs, {values(rows, 'n_train', '{:,}')} training images, "
            f"checkpoint: {values(rows, 'select')}")


def tables_text(t: dict[str, pd.DataFrame]) -> str:
    """What the tables hold, in one sentence (Markdown).

    Args:
        t: :func:`load`'s tables.

    Returns:
        the counts of runs and of pruning measurements at each scale.
    """
    return (f"The tables hold **{len(t['runs'])}** finished runs and **{len(t['joined'])}** pruning measurements: "
            f"**{len(t['full'])}** at the published scale and settings, **{len(t['reduced'])}** at a reduced scale, "
            f"and **{len(t['other'])}** with other settings (ablations, other criteria, physical removal), "
            f"which the *Beyond the paper* chapter uses.")


def _status_row(model: str, dataset: str, runs: pd.DataFrame, status: str) -> dict:
    return {"panel": plots.panel_title(model, dataset), "status": status, "scale": scale_text(runs),
            "seeds per regularizer": seeds_per_regularizer(runs),
            "training time (h)": f"{runs['wall_time_s'].sum() / 3600:.1f}"}


def status_table(full: pd.DataFrame, reduced: pd.DataFrame) -> pd.DataFrame:
    """One row per panel of the paper: run at the published scale, at a reduced scale only, or not yet.

    Args:
        full: joined rows at the published scale (:func:`load`).
        reduced: joined rows at a reduced scale.

    Returns:
        columns ``panel, status, scale, seeds per regularizer, training time (h)``.
    """
    status = []
    for model, dataset in paper.PANELS:
        rows, _ = choose_checkpoint(_panel(full, model, dataset))
        small = _panel(reduced, model, dataset)
        if len(rows):
            status.append(_status_row(model, dataset, rows.drop_duplicates("run_id"), "run at the published scale"))
        elif len(small):
            status.append(_status_row(model, dataset, small.drop_duplicates("run_id"),
                                      "not run at the published scale; reduced-scale runs only (below)"))
        else:
            status.append({"panel": plots.panel_title(model, dataset), "status": "not run yet",
                           "scale": "–", "seeds per regularizer": "–", "training time (h)": "–"})
    return pd.DataFrame(status)


def _pct_or_blank(x) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def deltas_table(full: pd.DataFrame, fractions=DELTA_FRACTIONS) -> pd.DataFrame:
    """Our mean minus the published accuracy per panel run at the published scale.

    Args:
        full: joined rows at the published scale (:func:`load`).
        fractions: fractions pruned compared.

    Returns:
        A row per (panel, regularizer, seeds), per fraction the columns ``ours, paper,
        delta, sd`` as text; empty when no panel has been run at the published scale.
    """
    parts = []
    for model, dataset in paper.PANELS:
        rows, _ = choose_checkpoint(_panel(full, model, dataset))
        if len(rows):
            s = plots.summarize(rows, by=("model", "dataset", "regularizer", "fraction"))
            parts.append(s.rename(columns={"mean": "accuracy"}))
    d = paper.deltas(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), fractions)
    if d.empty:
        return d
    t = d.assign(
        panel=[plots.panel_title(m, ds) for m, ds in zip(d["model"], d["dataset"])],
        regularizer=d["regularizer"].map(lambda r: plots.LABELS.get(r, r)),
        pruned=(100 * d["fraction"]).round().astype(int).astype(str) + " %",
        ours=d["ours"].map(_pct_or_blank), paper=d["paper"].map(_pct_or_blank),
        delta=d["delta"].map(lambda x: f"{100 * x:+.1f}"), sd=d["std"].map(_pct_or_blank), seeds=d["n"].astype(int))
    wide = t.pivot(index=["panel", "regularizer", "seeds"], columns="pruned",
                   values=["ours", "paper", "delta", "sd"]).swaplevel(axis=1)
    order = [f"{round(100 * f)} %" for f in fractions if f"{round(100 * f)} %" in set(t["pruned"])]
    return wide.reindex(columns=pd.MultiIndex.from_product([order, ["ours", "paper", "delta", "sd"]])).fillna("")


def short_runs_table(runs: pd.DataFrame, grids) -> pd.DataFrame:
    """The early short CPU runs, one line each, with the SGD steps they took (batch 128).

    Args:
        runs: the runs table.
        grids: the short grids' names.

    Returns:
        columns ``grid, model, width, epochs, n_train, steps, regularizer, seed, unpruned test acc. (%)``.
    """
    short = runs[runs["grid"].isin(grids)]
    steps = (short["epochs"] * np.ceil(short["n_train"] / 128)).astype(int)
    return (short.assign(regularizer=short["regularizer"].map(lambda r: plots.LABELS.get(r, r)),
                         width=short["width"].map("{:g}".format), steps=steps,
                         **{"unpruned test acc. (%)": (100 * short["final_test_acc"]).round(1)})
            [["grid", "model", "width", "epochs", "n_train", "steps", "regularizer", "seed", "unpruned test acc. (%)"]]
            .sort_values(["grid", "model", "regularizer"]))


def mnist_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The MNIST teaching runs counted per grid, protocol and regularizer.

    Args:
        runs: the runs table.

    Returns:
        columns ``grid, protocol, regularizer, seeds, did not train, mean unpruned test acc. (%)``.
    """
    mn = runs[runs["dataset"] == "mnist"]
    return (mn.assign(regularizer=mn["regularizer"].map(lambda r: plots.LABELS.get(r, r)),
                      did_not_train=comparison.did_not_train(mn["final_test_acc"], [mn["grid"], mn["regularizer"]]))
            .groupby(["grid", "protocol", "regularizer"], as_index=False)
            .agg(seeds=("seed", "nunique"), **{"did not train": ("did_not_train", "sum")},
                 **{"mean unpruned test acc. (%)": ("final_test_acc", lambda v: round(100 * v.mean(), 2))}))


def inventory_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every group of runs in the runs table, with seeds per regularizer, hours and devices.

    Args:
        runs: the runs table (not empty).

    Returns:
        one row per (grid, dataset, model, protocol, width, epochs, n_train, select).
    """
    keys = ["grid", "dataset", "model", "protocol", "width", "epochs", "n_train", "select"]
    inv = (runs.groupby(keys, dropna=False)
           .apply(lambda g: pd.Series({
               "runs": len(g), "seeds per regularizer": seeds_per_regularizer(g),
               "training time (h)": f"{g['wall_time_s'].sum() / 3600:.2f}",
               "devices": ", ".join(sorted(set(g["device_name"].fillna("").replace("", "unknown"))))}),
                  include_groups=False)
           .reset_index())
    inv["width"] = inv["width"].map("{:g}".format)
    return inv


def per_run_table(runs: pd.DataFrame, pruning: pd.DataFrame) -> pd.DataFrame:
    """Every run, one line: its settings, unpruned accuracy and accuracy (%) at 30, 50, 70 %
    pruned (L2, per layer, mask, one shot, as published), and whether it did not train.

    Args:
        runs: the runs table (not empty).
        pruning: the pruning table.

    Returns:
        one row per run, sorted by grid, model, arm and seed; settings a run does not use are NaN.
    """
    pr = pruning[(pruning["criterion"] == "l2") & (pruning["scope"] == "layer") & (pruning["mode"] == "mask")
                 & (pruning["pruner"] == "plain") & ~pruning["recalibrate_bn"] & (pruning["finetune_epochs"] == 0)]
    at = (pr[pr["fraction"].round(2).isin([0.3, 0.5, 0.7])]
          .assign(col=lambda d: (100 * d["fraction"]).round().astype(int).map("{}% pruned".format))
          .pivot_table(index="run_id", columns="col", values="test_acc"))
    per_run = runs.set_index("run_id").join(100 * at)
    per_run["arm"] = arms(per_run).map(arm_label)
    per_run["did not train"] = comparison.did_not_train(
        per_run["final_test_acc"], [per_run["grid"], per_run["arm"]],
        chance=0.1).map({True: "yes", False: ""})      # CIFAR-10 and MNIST: 10 classes
    per_run["unpruned"] = 100 * per_run["final_test_acc"]
    per_run["width"] = per_run["width"].map("{:g}".format)
    per_run["signed"] = per_run["signed"].map({True: "yes", False: ""})
    noise = per_run["regularizer"].isin(["bridgeout", "dropout", "dropconnect", "sparseout"])
    per_run.loc[~noise, ["p", "target_fraction"]] = np.nan       # no noise: p and the target do not apply
    per_run.loc[~per_run["regularizer"].isin(["bridgeout", "sparseout"]), "q"] = np.nan   # the exponent
    cols = ["grid", "model", "width", "epochs", "arm", "q", "p", "target_fraction", "signed", "lam", "precision",
            "seed", "unpruned", *at.columns, "did not train"]
    return (per_run.reset_index().sort_values(["grid", "model", "arm", "seed"])[cols]
            .rename(columns={"target_fraction": "target", "lam": "λ"}))


def did_not_train_text(table: pd.DataFrame) -> str:
    """How many runs did not train (Markdown).

    Args:
        table: :func:`per_run_table`.

    Returns:
        E.g. ``"**1** of 4 runs did not train (...)."``.
    """
    n_bad = int((table["did not train"] == "yes").sum())
    return (f"**{n_bad}** of {len(table)} runs did not train (`bridgeout.comparison.did_not_train`: "
            "within 5 points of chance, or more than 20 below the median of their grid and arm).")


# ------------------------------------------------------------------------------ figures
def _resnet_means(ax, acc: pd.DataFrame, runs: pd.DataFrame) -> tuple[str, set]:
    """The ResNet grid's mean curves of the three published arms on the ResNet / CIFAR-10 panel."""
    cpu = acc[acc["arm"].isin(["weight_decay", "dropout", "bridgeout"])]
    for arm in comparison.arms_in(cpu):
        mean = cpu[cpu["arm"] == arm].groupby("fraction")["test_acc"].mean()
        ax.plot(100 * mean.index, 100 * mean.to_numpy(), color=comparison.ARM_COLORS[arm], lw=2.0,
                marker=comparison.ARM_MARKERS[arm], ms=3.5)
    n_seeds = int(cpu.groupby("arm")["seed"].nunique().min())
    note = f"solid: ours, width 1, {int(runs['epochs'].max())} epochs, {n_seeds}+ seed{'s' * (n_seeds != 1)}"
    return note, set(cpu["arm"])


def _missing_note(model: str, dataset: str, reduced: pd.DataFrame) -> str:
    """What a panel without runs at the published scale says under its title."""
    if (model, dataset) == ("vgg16", "cifar10"):
        return "published only; ours at ×0.25 width: above"
    if len(_panel(reduced, model, dataset)):
        return "published only; ours at reduced scale: below"
    return "published only (no CIFAR-100 here)" if dataset == "cifar100" else "published only (needs a GPU)"


def draw_six_panels(fig, axes, t: dict[str, pd.DataFrame], published: pd.DataFrame,
                    resnet_acc: pd.DataFrame, resnet_runs: pd.DataFrame) -> str:
    """The paper's six panels: the published curves dashed, ours at the published scale solid,
    and on the ResNet / CIFAR-10 panel the ResNet grid's means (paper's width, ``cpu`` protocol).

    Args:
        fig: the Figure (legend and title go on it).
        axes: a 3 × 2 array of Axes (models down, datasets across).
        t: :func:`load`'s tables (``full`` and ``reduced`` are used).
        published: :func:`bridgeout.paper.load_curves`.
        resnet_acc: the ResNet grid's one-shot :func:`bridgeout.comparison.accuracy` rows.
        resnet_runs: the ResNet grid's runs.

    Returns:
        the sentence under the figure (Markdown): which panels carry runs of ours.
    """
    drawn_regs, n_ours, notes = set(published["regularizer"]), 0, {}
    for model, dataset in paper.PANELS:
        ax = axes[paper.MODELS.index(model), paper.DATASETS.index(dataset)]
        title = plots.panel_title(model, dataset)
        rows, _ = choose_checkpoint(_panel(t["full"], model, dataset))
        drawn = plots.pruning_curve(ax, rows, paper.curve(model, dataset), legend=False, title=title)
        drawn_regs |= set(rows["regularizer"])
        n_ours += drawn["ours"]
        if (model, dataset) == ("resnet", "cifar10") and drawn["ours"] == 0 and len(resnet_acc):
            note, drawn_arms = _resnet_means(ax, resnet_acc, resnet_runs)
            n_ours += 1
            drawn_regs |= drawn_arms
        else:
            note = ("solid: ours at the published scale" if drawn["ours"]
                    else _missing_note(model, dataset, t["reduced"]))
        ax.set_title(f"{title}\n{note}", fontsize="medium")
        notes[(model, dataset)] = note
    for ax in axes[:-1].ravel():
        ax.set_xlabel("")
    fig.legend(handles=plots.legend_handles(drawn_regs, ours=n_ours > 0), loc="lower center", ncol=2,
               fontsize="medium", bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Test accuracy after one-shot pruning: ours (solid) vs. published (dashed)"
                 if n_ours else "The published curves (no panel has been run at the published scale)", y=0.995)
    ours_panels = [plots.panel_title(*k) for k, v in notes.items() if v.startswith("solid")]
    return (("Solid lines with filled markers are our runs, on " + " and ".join(ours_panels) + " only; the other "
             "panels show the published curves alone.") if ours_panels else "No panel carries runs of ours yet.")


def _scale_panel(ax, sub: pd.DataFrame, final_acc: pd.Series, model: str, dataset: str) -> None:
    """One reduced-scale panel: the mean curves of the runs that trained, the others dotted and named."""
    from .data import NUM_CLASSES  # deferred: loads torch

    final = sub.drop_duplicates("run_id").set_index("run_id")
    failed = final.index[comparison.did_not_train(final_acc[final.index], final["regularizer"],
                                                  chance=1 / NUM_CLASSES[dataset])]
    bad = sub[sub["run_id"].isin(failed)]
    plots.pruning_curve(ax, sub[~sub["run_id"].isin(set(bad["run_id"]))], None, legend=False,
                        title=plots.panel_title(model, dataset))
    notes = []
    for _, run in bad.groupby("run_id"):
        run = run.sort_values("fraction")
        reg = run["regularizer"].iloc[0]
        ax.plot(100 * run["fraction"], 100 * run["test_acc"], ls=":", lw=1.6, color=plots.PALETTE.get(reg, "0.3"))
        notes.append(f"{plots.LABELS.get(reg, reg)} seed {run['seed'].iloc[0]}")
    if notes:
        ax.text(0.98, 0.02, "dotted: did not train,\nleft out of the mean:\n" + "\n".join(notes),
                transform=ax.transAxes, ha="right", va="bottom", fontsize="small",
                bbox=dict(boxstyle="round", fc="white", ec="0.6", alpha=0.9))


def scale_figure(rows: pd.DataFrame, runs: pd.DataFrame):
    """A figure of the runs of one reduced scale (one group of :data:`SCALE_KEYS`): a panel
    per model and dataset; runs that did not train (:func:`bridgeout.comparison.did_not_train`)
    drawn dotted and kept out of the mean.

    Args:
        rows: joined pruning rows of one scale.
        runs: the runs table (their final test accuracy).

    Returns:
        the matplotlib Figure, up to three panels a row, titled with the scale.
    """
    import textwrap

    import matplotlib.pyplot as plt

    panels = sorted(set(zip(rows["model"], rows["dataset"])))
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4.4 * ncol, 8.0), 3.9 * nrow + 1.2), squeeze=False)
    final_acc = runs.set_index("run_id")["final_test_acc"]
    for ax, (model, dataset) in zip(axes.ravel(), panels):
        _scale_panel(ax, _panel(rows, model, dataset), final_acc, model, dataset)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    grid_name = rows["grid"].iloc[0] or "runs without a grid"
    fig.suptitle(textwrap.fill(f"Reduced scale ({grid_name}): {scale_text(rows)}", 90), fontsize="medium")
    handles = plots.legend_handles(rows["regularizer"], paper=False)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3 if ncol == 1 else 6),
               fontsize="small", bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.13 if nrow == 1 else 0.07, 1, 0.96))
    return fig
