"""The reproduction chapter's CPU-scale sections: the paper's comparison on VGG-16 ×0.25 and
on the paper's ResNet at its own width (``notebooks/reproduction.ipynb``).

Each section's sentences and figures come from :func:`bridgeout.comparison.load`'s frames of
one grid: how far the grid has come, whether every run trained, how each arm keeps its
accuracy as filters are pruned (one shot and with BatchNorm re-estimated), how small its
filters and BatchNorm scales are, and, for the ResNet, our curves against the published
panel. The figure functions draw into axes the notebook lays out; a panel without runs says
so. The rest of the chapter is :mod:`bridgeout.reproduction`. Accuracies are in [0, 1].
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import claims, comparison, plots, why
from .fmt import mean_sd

__all__ = ["NO_RUN", "arm_text", "cpu_scale_text", "cpu_status_text", "cpu_arm_table", "trained_text",
           "outcome_text", "filters_text", "resnet_status_text", "resnet_texts", "empty_panel", "draw_training",
           "draw_cpu_pruning", "draw_filters", "draw_resnet_pruning", "draw_energy"]

#: What an empty panel of a grid's figure says.
NO_RUN = "no run of this grid\nhas finished yet"


def arm_text(arm: str) -> str:
    """An arm's label in sentences: :data:`bridgeout.comparison.ARM_LABELS`, else its name.

    Args:
        arm: an arm name.

    Returns:
        the label.
    """
    return comparison.ARM_LABELS.get(arm, arm)


def cpu_scale_text(proto) -> str:
    """The CPU comparison's scale in one sentence (Markdown).

    Args:
        proto: its training protocol (``bridgeout.protocols.PROTOCOLS["cpu"]``).

    Returns:
        width, epochs, steps, schedule, optimizer, noise and pruning settings.
    """
    steps = proto.epochs * -(-50_000 // proto.batch_size)
    return (f"Scale: width 0.25, {proto.epochs} epochs = {steps:,} steps of batch {proto.batch_size} on all "
            f"50,000 training images, lr {proto.lr:g} × {proto.gamma:g} after epochs "
            f"{', '.join(map(str, proto.milestones))}; SGD with Nesterov momentum {proto.momentum:g} and weight "
            f"decay {proto.weight_decay:g} in every arm; p = 0.3, target fraction 0.75; the final weights "
            f"are pruned; one CPU thread per run.")


def cpu_status_text(runs: pd.DataFrame, seeds: int) -> str:
    """How far the CPU comparison's grid has come (Markdown).

    Args:
        runs: the grid's runs (``comparison.load(grid)["runs"]``).
        seeds: planned seeds per arm.

    Returns:
        runs finished of those planned, seeds per arm, hours and devices.
    """
    if runs.empty:
        return "**No run of this grid is in the tables yet**: the figures below stay empty and say so."
    n_by_arm = runs.groupby("arm")["seed"].nunique()
    done = ", ".join(f"{arm_text(a)} {n_by_arm.get(a, 0)}" for a in comparison.ARMS)
    missing = sum(seeds - n_by_arm.get(a, 0) for a in comparison.ARMS)
    hours = runs["wall_time_s"].sum() / 3600
    return (f"**Status: {len(runs)} of {seeds * len(comparison.ARMS)} runs finished** (seeds per arm: "
            f"{done}; {hours:.1f} h of training on "
            f"{', '.join(sorted(set(runs['device_name'])))}). "
            + (f"{missing} runs are still to come: every mean below is over the seeds finished so far, "
               f"and the number of seeds is given with it." if missing else "Every planned run is in."))


def cpu_arm_table(runs: pd.DataFrame, check: pd.DataFrame) -> pd.DataFrame:
    """Per arm of the paper's comparison: seeds, unpruned and training accuracy, whether it trained.

    Args:
        runs: the grid's runs, with ``arm``.
        check: :func:`bridgeout.comparison.training_check` of those runs.

    Returns:
        one row per arm of :data:`bridgeout.comparison.ARMS` that has a run.
    """
    rows, by_run = [], check.set_index("run_id") if len(check) else check
    for a in [x for x in comparison.ARMS if x in set(runs["arm"])]:
        g = runs[runs["arm"] == a]
        c = by_run.loc[g["run_id"]]
        rows.append({"arm": arm_text(a), "seeds": len(g), "unpruned test acc. (%)": mean_sd(g["final_test_acc"]),
                     "final train acc. (%)": mean_sd(c["final_train_acc"]),
                     "levelled off before the last decay": f"{int(c['levelled'].sum())} of {len(g)}",
                     "runs at chance": int(c["at_chance"].sum()), "hours": f"{g['wall_time_s'].sum() / 3600:.1f}"})
    return pd.DataFrame(rows)


def trained_text(check: pd.DataFrame, *, explain: bool = True) -> str:
    """Did every run train? Final training and test accuracy per arm and the runs that fell short (Markdown).

    Args:
        check: :func:`bridgeout.comparison.training_check` of a grid's runs.
        explain: say what the bar is where a run fails it (else "did not meet that bar").

    Returns:
        the sentence; ``"No run has finished yet."`` for no run.
    """
    if check.empty:
        return "No run has finished yet."
    bad = check[~check["levelled"] | check["at_chance"]]
    parts = [f"{arm_text(a)} {mean_sd(check[check['arm'] == a]['final_train_acc'])} % "
             f"(test {mean_sd(check[check['arm'] == a]['final_test_acc'])} %)"
             for a in comparison.ARMS if a in set(check["arm"])]
    head = ("did not meet the bar** (near chance, or training accuracy still moving by more than 2 points "
            "before the last decay)" if explain else "did not meet that bar**")
    verdict = ("Every finished run trained: none is near chance and every run's training accuracy "
               "changed by at most 2 points over the last two epochs before the last decay."
               if bad.empty else
               f"**{len(bad)} run(s) {head}: " + ", ".join(f"{arm_text(r.arm)} seed {r.seed}" for r in bad.itertuples())
               + ".")
    return (f"Final training accuracy, mean ± sd over seeds (test accuracy in brackets): {'; '.join(parts)}. "
            + verdict)


def _lead_verdict(out: pd.DataFrame, n: int) -> str:
    ahead = out[out["ahead"]]
    fr = ", ".join(f"{100 * f:.0f} %" for f in ahead["fraction"])
    return (f"Between 20 and 50 % pruned, Batch Bridgeout (q = 1.5) keeps more accuracy than both "
            f"baselines at {len(ahead)} of {len(out)} fractions" + (f" ({fr})" if len(ahead) else "")
            + f"; its mean minus the better baseline's ranges from "
            f"{100 * out['difference'].min():+.1f} to {100 * out['difference'].max():+.1f} points"
            + (f", more than one seed sd at {int(out['clearly_ahead'].sum())} of them." if n > 1 else
               " (some arm has a single seed so far, so the difference is not yet weighed against "
               "the spread between seeds).")
            + " The claims table at the top of this chapter is stricter: it counts a lead only when its "
            "Welch 95 % interval excludes zero and some arm is more than 5 points above chance.")


def outcome_text(acc: pd.DataFrame, what: str, check: pd.DataFrame) -> str:
    """The CPU comparison's pruning outcome (Markdown): accuracy per arm at 30, 50 and 70 %
    pruned, whether Batch Bridgeout leads both baselines, and where it starts unpruned.

    Args:
        acc: :func:`bridgeout.comparison.accuracy` rows of one pruning variant.
        what: the variant in words, e.g. ``"one shot, as published"``.
        check: :func:`bridgeout.comparison.training_check` of the grid's runs; a run at
            chance withholds the comparison.

    Returns:
        the paragraph; a one-line note when ``acc`` is empty.
    """
    if acc.empty:
        return f"No pruning measurement {what} yet."
    s = comparison.summary(acc)
    parts = []
    for f in (0.3, 0.5, 0.7):
        at = s[np.isclose(s["fraction"], f)]
        cells = ", ".join(f"{arm_text(r.arm)} {100 * r.mean:.1f}"
                          + (f" ± {100 * r.sd:.1f}" if r.n > 1 else "") for r in at.itertuples())
        parts.append(f"at {100 * f:.0f} % pruned: {cells}")
    n = int(s["n"].min())
    out = comparison.outcome(s)
    chance = check[check["at_chance"]] if len(check) else check
    if len(chance):
        verdict = (f"{len(chance)} of {len(check)} runs ended near chance, so no comparison between "
                   f"the arms is drawn from these numbers.")
    elif out.empty:
        verdict = "Not every arm has a run yet, so Bridgeout cannot be compared with both baselines."
    else:
        verdict = _lead_verdict(out, n)
    at0 = s[np.isclose(s["fraction"], 0.0)].set_index("arm")["mean"]
    if "bridgeout" in at0.index and {"weight_decay", "dropout"} <= set(at0.index):
        best0 = max(("weight_decay", "dropout"), key=lambda a: at0[a])
        verdict += (f" Unpruned, it starts at {100 * at0['bridgeout']:.1f} % against "
                    f"{100 * at0[best0]:.1f} % for {arm_text(best0)}, "
                    f"{100 * (at0['bridgeout'] - at0[best0]):+.1f} points.")
    return (f"Test accuracy (%) {what}, mean ± sd over seeds (at least {n} per arm): "
            + "; ".join(parts) + ". " + verdict)


def filters_text(filters: pd.DataFrame) -> str:
    """How many filters and BatchNorm scales are small per arm, and the mechanism's conclusion (Markdown).

    Args:
        filters: the grid's filter table with ``arm`` (``comparison.load(grid)["filters"]``).

    Returns:
        per arm, the share of filters whose norm (and of channels whose |γ|) is below a tenth
        of its layer's largest, then :func:`bridgeout.claims.mechanism_conclusion`.
    """
    if filters.empty:
        return "No filter table yet."
    f = filters.assign(rel=filters["norm"] / filters.groupby(["run_id", "layer"])["norm"].transform("max"))
    share = f.groupby("arm")["rel"].apply(lambda v: (v < 0.1).mean())
    g = filters.assign(rel=filters["gamma"].abs()
                       / filters.groupby(["run_id", "layer"])["gamma"].transform(lambda v: v.abs().max()))
    gshare = g.groupby("arm")["rel"].apply(lambda v: (v < 0.1).mean())
    parts = [f"{arm_text(a)} {100 * share[a]:.0f} % ({100 * gshare[a]:.0f} %)"
             for a in comparison.ARMS if a in share.index]
    return ("Share of filters whose norm is below a tenth of their layer's largest (in brackets: share of "
            "channels whose |γ| is below a tenth of the layer's largest): " + "; ".join(parts) + ".\n\n"
            + claims.mechanism_conclusion(filters))


def resnet_status_text(runs: pd.DataFrame, seeds: int) -> str:
    """How far the ResNet grid has come (Markdown).

    Args:
        runs: the grid's runs, with ``arm``.
        seeds: planned seeds per arm.

    Returns:
        runs finished of those planned, seeds per arm, hours and precision.
    """
    planned = seeds * len(comparison.ARMS)
    if runs.empty:
        return (f"**Status: none of the {planned} runs has finished yet**: the figures "
                "below show the published panel alone and say so.")
    n_by_arm = runs.groupby("arm")["seed"].nunique()
    return (f"**Status: {len(runs)} of {planned} runs finished** (seeds per arm: "
            + ", ".join(f"{arm_text(a)} {n_by_arm.get(a, 0)}" for a in comparison.ARMS)
            + f"; {runs['wall_time_s'].sum() / 3600:.1f} h of training, precision "
            + ", ".join(sorted(set(runs["precision"]))) + "). Every mean below is over the seeds finished so "
            "far, with their number; an arm without a run is missing from the figures, not zero.")


def resnet_texts(acc: pd.DataFrame, acc_recal: pd.DataFrame, curve: pd.DataFrame) -> dict[str, str]:
    """The ResNet pruning section's sentences (Markdown).

    Args:
        acc: one-shot :func:`bridgeout.comparison.accuracy` rows of the grid.
        acc_recal: the same with BatchNorm re-estimated.
        curve: the published ResNet / CIFAR-10 curves (:func:`bridgeout.paper.curve`).

    Returns:
        ``{"resnet_outcome", "resnet_versus", "resnet_outcome_recal"}``, keyed by glue name.
    """
    if not len(acc):
        return {"resnet_outcome": "No pruning measurement of this grid yet.", "resnet_versus": "",
                "resnet_outcome_recal": ""}

    def published(reg):
        return ", ".join(f"{100 * a:.1f}" for a in curve[curve["regularizer"] == reg]
                         .set_index("fraction").loc[[0.2, 0.3, 0.4], "accuracy"])

    lead = comparison.outcome_sentence(comparison.summary(acc), what="one shot, as published")
    return {"resnet_outcome": (lead or "Not every arm has a run yet, so Bridgeout cannot be compared with both "
                               "baselines.") + " The published panel at 230 epochs: Batch Bridgeout "
            + published("bridgeout") + " % at 20 / 30 / 40 %; weight decay " + published("weight_decay") + " %.",
            "resnet_versus": "Test accuracy (%), ours mean ± sd over seeds / published, one shot:\n\n"
            + comparison.versus_paper_markdown(comparison.versus_paper(acc, curve)),
            "resnet_outcome_recal": comparison.outcome_sentence(comparison.summary(acc_recal),
                                                                what="with BatchNorm re-estimated")
            if len(acc_recal) else "No BatchNorm-re-estimated sweep yet."}



# ------------------------------------------------------------------------------ figures
def empty_panel(ax, why_empty: str) -> None:
    """Mark a panel that has nothing to draw: a centred note, no ticks.

    Args:
        ax: the matplotlib Axes.
        why_empty: the note, e.g. :data:`NO_RUN`.
    """
    plots.not_run(ax, why_empty, loc="center")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_training(fig, axes, history: pd.DataFrame) -> None:
    """Training (left) and test accuracy (right) per epoch of a grid's runs, with the arms' legend.

    Args:
        fig: the Figure (the legend goes below its panels).
        axes: two Axes.
        history: the grid's history rows, with ``arm`` (``comparison.load(grid)["history"]``).
    """
    if history.empty:
        for ax in axes:
            empty_panel(ax, NO_RUN)
        return
    comparison.plot_training(axes, history)
    for ax in axes:
        ax.set_ylim(0, 100)
    fig.legend(handles=comparison.arm_handles(history["arm"]), loc="outside lower center", ncol=2,
               fontsize="small")


def _published_handle(label: str, color: str = "0.3"):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, ls="--", marker="o", mfc="white", ms=3.5, lw=1.2, label=label)


def draw_cpu_pruning(fig, axes, acc: pd.DataFrame, acc_recal: pd.DataFrame, curve: pd.DataFrame | None) -> None:
    """Accuracy against filters pruned, one shot (left, beside the published curves) and with
    BatchNorm re-estimated (right).

    Args:
        fig: the Figure (the legend goes below its panels).
        axes: two Axes sharing y.
        acc: one-shot :func:`bridgeout.comparison.accuracy` rows.
        acc_recal: the same with BatchNorm re-estimated.
        curve: the published curves drawn dashed on the left panel (shape only), or None.
    """
    for ax, a, title in ((axes[0], acc, "one shot (as published)"), (axes[1], acc_recal, "BatchNorm re-estimated")):
        if len(a):
            comparison.plot_pruning(ax, a, curve if ax is axes[0] else None, title=title)
        else:
            ax.set_title(title)
            empty_panel(ax, NO_RUN)
    axes[1].set_ylabel("")
    if len(acc):
        handles = comparison.arm_handles(set(acc["arm"]) | {"weight_decay", "dropout", "bridgeout"})
        handles.append(_published_handle("published, full scale (shape only)"))
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize="small")


def draw_filters(fig, axes, filters: pd.DataFrame) -> None:
    """Distributions of the filters' norms and of their BatchNorm |γ| per arm
    (:func:`bridgeout.comparison.plot_filter_norms`).

    Args:
        fig: the Figure (the legend goes below its panels).
        axes: two Axes sharing y.
        filters: the grid's filter rows with ``arm``.
    """
    if filters.empty:
        for ax in axes:
            empty_panel(ax, NO_RUN)
        return
    comparison.plot_filter_norms(axes, filters)
    axes[1].set_ylabel("")
    fig.legend(handles=comparison.arm_handles(filters["arm"], seeds=False), loc="outside lower center",
               ncol=2, fontsize="small")


def draw_resnet_pruning(fig, axes, acc: pd.DataFrame, acc_recal: pd.DataFrame, curve: pd.DataFrame) -> None:
    """The ResNet grid's pruning curves: one shot (top, beside the published curves) and with
    BatchNorm re-estimated (bottom), as accuracy (left) and as a share of each network's own
    unpruned accuracy (right).

    Args:
        fig: the Figure (the legend goes below its panels).
        axes: a 2 × 2 array of Axes.
        acc: one-shot :func:`bridgeout.comparison.accuracy` rows.
        acc_recal: the same with BatchNorm re-estimated.
        curve: the published ResNet / CIFAR-10 curves.
    """
    panels = ((axes[0, 0], acc, curve, False, "one shot (as published)"),
              (axes[0, 1], acc, curve, True, "one shot, relative"),
              (axes[1, 0], acc_recal, None, False, "BatchNorm re-estimated"),
              (axes[1, 1], acc_recal, None, True, "BatchNorm re-estimated, relative"))
    for ax, a, c, rel, title in panels:
        if len(a):
            comparison.plot_pruning(ax, a, c, title=title, relative=rel)
        else:
            comparison.plot_pruning(ax, acc.iloc[0:0] if len(acc) else pd.DataFrame(
                columns=["run_id", "arm", "seed", "fraction", "test_acc"]), c, title=title, relative=rel)
            # beside the published curves the note goes where they are not (upper right), else centred
            plots.not_run(ax, NO_RUN + ("" if c is None else "\n(published curves only)"),
                          loc="center" if c is None else "upper right")
    for ax in axes[0]:
        ax.set_xlabel("")
    handles = comparison.arm_handles(set(acc["arm"]) if len(acc) else set(), seeds=len(acc) > 0)
    handles += [_published_handle(f"published: {arm_text(a)}", comparison.ARM_COLORS[a])
                for a in ("weight_decay", "dropout", "bridgeout")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize="small")


def draw_energy(fig, ax, energy: pd.DataFrame) -> str:
    """Accuracy kept against the energy the pruned filters carry, one point per network
    (:func:`bridgeout.why.plot_energy`), and its sentence.

    Args:
        fig: the Figure (the legend goes below the panel).
        ax: the Axes.
        energy: :func:`bridgeout.why.energy_retention`.

    Returns:
        the sentence (Markdown): the correlation and what it does and does not show.
    """
    if energy.empty:
        empty_panel(ax, "no network has its BatchNorm\nrunning statistics recorded yet")
        return "No network has its BatchNorm running statistics recorded yet."
    r, n = why.plot_energy(ax, energy)
    fig.legend(handles=why.energy_handles(energy), loc="outside lower center", ncol=2, fontsize=9)
    grids = ", ".join(f"`{g}`" for g in sorted(energy["grid"].unique()))
    return (f"Across the {n} networks whose BatchNorm statistics are recorded ({grids}), the share of energy the "
            f"pruned filters carry and the accuracy kept correlate at r = {r:.2f}. With so few networks, and arms "
            "that differ in more than this share, that is a pointer to what the norm ranking removes, not a law; "
            "the point of the figure is that retention follows what the pruned channels carry after BatchNorm, "
            "not how small their weights were.")
