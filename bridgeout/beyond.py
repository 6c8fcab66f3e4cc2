"""The chapter *Beyond the paper* (``notebooks/beyond.ipynb``): its tables and sentences.

Each function reads the result tables of one protocol as :func:`bridgeout.comparison.load`
returns them (each row with its ``arm``) and writes what the chapter glues, section by section:
the λ pilots, the regularizers compared, the FLOPs kept, the ranking criteria, zeroed against
removed and the measured speed, the repairs, and the table that opens the chapter
(:func:`glance`). Accuracies are in [0, 1] in the tables and written in %; a table without a run
gives the sentence that says so. The figures and the rows they draw are in
:mod:`bridgeout.beyondplots`, re-exported here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import ablation, comparison, plots, speed
from .beyondplots import (CRITERIA, CRITERION_LABELS, REPAIRS, criteria_at, criteria_drawn, criteria_figure,
                          mask_vs_remove, placeholder, plot_flops, plot_repairs, removed, repairs, speed_figure,
                          speedups)
from .comparison import ARM_LABELS as NAME
from .fmt import pct, plural, points
from .protocols import get_protocol

__all__ = ["glue_md", "summary_cell", "pilot_texts", "regs_texts", "flops_text", "criteria_text", "remove_text",
           "speed_texts", "repair_texts", "glance",
           # re-exported from bridgeout.beyondplots
           "CRITERIA", "CRITERION_LABELS", "REPAIRS", "placeholder", "removed", "plot_flops", "criteria_drawn",
           "criteria_at", "criteria_figure", "mask_vs_remove", "speedups", "speed_figure", "repairs", "plot_repairs"]

_SHORT = {"no repair": "none", "BatchNorm re-estimated": "BN", "fine-tuned 1 epoch": "FT"}
_PENALTIES = ("slimming", "group_lasso")


def glue_md(texts: dict[str, str]) -> None:
    """Glue Markdown for the book's ``{glue:md}`` directives (myst-nb), not displayed here.

    Args:
        texts: glue name -> Markdown text.

    Returns:
        None; each text is in the notebook's outputs under its name.
    """
    from IPython.display import Markdown
    from myst_nb import glue
    for name, text in texts.items():
        glue(name, Markdown(text), display=False)


def summary_cell(summ: pd.DataFrame, arm: str, fraction: float) -> str:
    """One table cell: an arm's mean accuracy at a fraction in %, ``± sd`` over more than one seed.

    Args:
        summ: :func:`bridgeout.comparison.summary` (``arm, fraction, mean, sd, n``).
        arm: the arm.
        fraction: the pruned fraction.

    Returns:
        ``"70.2 ± 1.0"``, ``"70.2"`` for one seed, ``"–"`` when ``summ`` has no such row.
    """
    r = summ[(summ["arm"] == arm) & np.isclose(summ["fraction"], fraction)]
    if r.empty:
        return "–"
    r = r.iloc[0]
    return pct(r["mean"]) + (f" ± {pct(r['sd'])}" if r["n"] > 1 else "")


def _seeds_of(runs: pd.DataFrame, arm: str) -> int:
    """The arm's number of runs (one per seed)."""
    return int((runs["arm"] == arm).sum())


# ------------------------------------------------------------------------------ λ pilots
def _pilot_table(p: pd.DataFrame, grids: list[str]) -> tuple[str, dict[str, float]]:
    """The pilots' Markdown table and, per penalty, the largest λ of the last pilot within 2
    points of weight decay."""
    lines = ["| pilot | arm | λ | test accuracy (%) | vs weight decay (points) |", "| --- | --- | --- | --- | --- |"]
    chosen = {}
    for g in grids:
        pg = p[p["grid"] == g]
        if pg.empty:
            continue
        wd = float(pg[pg["arm"] == "weight_decay"]["final_test_acc"].iloc[0])
        desc = f"{int(pg['epochs'].iloc[0])} epochs, {int(pg['n_train'].iloc[0]):,} images"
        lines.append(f"| {desc} | {NAME['weight_decay']} | – | {pct(wd)} | – |")
        for _, r in pg[pg["arm"] != "weight_decay"].sort_values(["arm", "lam"]).iterrows():
            d = 100 * (r["final_test_acc"] - wd)
            lines.append(f"| {desc} | {NAME.get(r['arm'], r['arm'])} | {r['lam']:g} | "
                         f"{pct(r['final_test_acc'])} | {d:+.1f} |")
            if g == grids[-1] and d >= -2.0:
                chosen[r["arm"]] = max(chosen.get(r["arm"], 0.0), float(r["lam"]))
    return "\n".join(lines), chosen


def pilot_texts(all_runs: pd.DataFrame, runs: pd.DataFrame, grids: list[str]) -> tuple[str, str]:
    """The λ pilots of the two penalties: which λ the rule picks and what the full runs use.

    Args:
        all_runs: the ``runs`` table (every grid; :func:`bridgeout.results.load`).
        runs: the comparison's runs, with ``arm`` (their penalties' ``lam`` is what the full runs use).
        grids: the pilot grids, the longer pilot last (its rows decide λ).

    Returns:
        ``(text, table)``: the paragraph and the Markdown table (``""`` when no pilot ran).
    """
    p = comparison._with_arm(all_runs[all_runs["grid"].isin(grids)])
    if p.empty:
        return ("**No pilot has been run yet** (grids " + ", ".join(f"`{g}`" for g in grids) + ").", "")
    table, chosen = _pilot_table(p, grids)
    used = runs[runs["arm"].isin(_PENALTIES)].groupby("arm")["lam"].first()
    pick = "; ".join(f"{NAME[a]}: λ = {l:g}" for a, l in chosen.items())
    full = ("the full runs use " + "; ".join(f"{NAME[a]} λ = {l:g}" for a, l in used.items())
            if len(used) else "no full run of either penalty has finished yet")
    last = p[p["grid"] == grids[-1]]
    worst = {a: last[last["arm"] == a].sort_values("lam").iloc[-1] for a in _PENALTIES if (last["arm"] == a).any()}
    text = (f"Each penalty needs a strength λ at which it trains to an accuracy comparable with weight "
            f"decay. Two short pilots on the same network (table below; seed 0, the `cpu` schedule cut "
            f"short, a training subset) tried λ from 1e-4 (Liu et al.'s CIFAR setting for slimming) "
            f"upwards. The rule: the largest λ whose accuracy in the longer pilot is within 2 points of "
            f"weight decay or above it. It picks {pick}; {full}. At the largest λ tried, "
            + " and ".join(f"{NAME[a]} (λ = {r['lam']:g}) reached {pct(r['final_test_acc'])} %"
                           for a, r in worst.items()) + ".")
    return text, table


# ------------------------------------------------------------------------------ regularizers compared
def _arm_table(columns: list[str], runs: pd.DataFrame, cells) -> str:
    """A Markdown table with ``columns``: a row per arm of ``runs``, its label, seeds and ``cells(arm)``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for a in comparison.arms_in(runs):
        lines.append(f"| {NAME.get(a, a)} | {_seeds_of(runs, a)} | " + " | ".join(cells(a)) + " |")
    return "\n".join(lines)


def _best_at(summ: pd.DataFrame, f: float):
    """The summary row of the arm with the highest mean at ``f``; None without one."""
    at = summ[np.isclose(summ["fraction"], f)].sort_values("mean", ascending=False)
    return at.iloc[0] if len(at) else None


def _regs_paragraph(s_one: pd.DataFrame, s_rec: pd.DataFrame, runs: pd.DataFrame, planned: dict[str, int]) -> str:
    """How many runs finished, the best arm at 30 and 50 % and Bridgeout against the penalties."""
    arms = comparison.arms_in(runs)
    status = "; ".join(f"{NAME.get(a, a)} {_seeds_of(runs, a)}" for a in arms)
    text = (f"**{len(runs)} of {sum(planned.values())} runs finished** (seeds per arm: {status}). Test accuracy "
            f"in %, mean ± sd over seeds, filters zeroed by L2 norm in every layer (mask mode, as in the paper), "
            f"one shot and with the BatchNorm statistics re-estimated on 50 training batches.")
    parts = []
    for summ, how in ((s_one, "one shot"), (s_rec, "with BatchNorm re-estimated")):
        for f in (0.3, 0.5):
            b = _best_at(summ, f)
            if b is not None and b["mean"] <= 0.15:
                parts.append(f"{how} at {f:.0%}: none, every arm is within 5 points of chance (10 %)")
            elif b is not None:
                parts.append(f"{how} at {f:.0%}: {NAME.get(b['arm'], b['arm'])} ({summary_cell(summ, b['arm'], f)} %)")
    sparse = [a for a in _PENALTIES if a in arms]
    if sparse and "bridgeout" in arms:
        def mean(a, f):
            return s_rec[(s_rec["arm"] == a) & np.isclose(s_rec["fraction"], f)]["mean"].iloc[0]
        cmp = ("With BatchNorm re-estimated, Batch Bridgeout's mean is " + ", ".join(
            f"{points(mean('bridgeout', f) - mean(a, f))} points against {NAME[a]} at {f:.0%}"
            for a in sparse for f in (0.3, 0.5)) + ".")
    else:
        cmp = ("**The sparsity penalties have no finished run yet**, so the comparison that matters most "
               "here is still missing; the grid `cpu-cifar10-sparsity` adds it.")
    return text + " Best arm " + "; ".join(parts) + ". " + cmp


def regs_texts(s_one: pd.DataFrame, s_rec: pd.DataFrame, runs: pd.DataFrame,
               planned: dict[str, int]) -> tuple[str, str]:
    """The regularizers compared: runs finished, the best arm at 30 and 50 %, Bridgeout against the penalties.

    Args:
        s_one: :func:`bridgeout.comparison.summary` of the one-shot accuracies.
        s_rec: the same with the BatchNorm statistics re-estimated.
        runs: the comparison's runs, with ``arm`` (one per seed).
        planned: grid -> number of runs planned.

    Returns:
        ``(text, table)``: the paragraph and a Markdown table, a row per arm, accuracy unpruned and
        at 30 and 50 % pruned, mean ± sd in % (:func:`summary_cell`); ``table`` is ``""`` without a run.
    """
    if runs.empty:
        return (f"**No run has finished yet** (0 of {sum(planned.values())} runs planned, grids "
                + ", ".join(f"`{g}`" for g in planned) + ").", "")
    table = _arm_table(["arm", "seeds", "unpruned", "30 %", "50 %", "30 %, BN re-estimated", "50 %, BN re-estimated"],
                       runs, lambda a: [summary_cell(s, a, f) for s, f in ((s_one, 0.0), (s_one, 0.3), (s_one, 0.5),
                                                                           (s_rec, 0.3), (s_rec, 0.5))])
    return _regs_paragraph(s_one, s_rec, runs, planned), table


# ------------------------------------------------------------------------------ FLOPs kept, ranking criteria
def flops_text(rm: pd.DataFrame) -> str:
    """The share of the forward FLOPs kept at 30 and 50 % of the filters removed.

    Args:
        rm: :func:`removed`.

    Returns:
        one sentence (medians over the runs), or that nothing was removed yet.
    """
    if rm.empty:
        return "**No run has been pruned with `mode=\"remove\"` yet.**"
    k = rm[np.isclose(rm["fraction"], 0.5)]["flops_kept"].median()
    k3 = rm[np.isclose(rm["fraction"], 0.3)]["flops_kept"].median()
    return (f"Removing 30 % of every layer's filters keeps {100 * k3:.0f} % of the forward FLOPs, "
            f"removing 50 % keeps {100 * k:.0f} % (input and output channels both shrink).")


def criteria_text(pruning: pd.DataFrame, arms: list[str]) -> str:
    """Each criterion's mean minus the L2 ranking's at 30 %, per arm, in points.

    Args:
        pruning: the joined pruning rows, with ``arm``.
        arms: the arms in the order written.

    Returns:
        the sentence, or that the criteria pass has not been run (only L2 and |γ| recorded).
    """
    crits = criteria_drawn(pruning)
    if all(c in ("l2", "bn_scale") for c in crits):
        return ("**The criteria pass has not been run yet**: the tables hold only the rankings each run "
                "recorded itself (L2, and |γ| for the sparsity grid), drawn here.")
    at30 = criteria_at(pruning)

    def versus(c):
        d = (at30[c] - at30["l2"]).dropna()
        return "; ".join(f"{NAME.get(a, a)} {points(d[a])}" for a in arms if a in d.index)
    return ("At 30 % pruned with BatchNorm re-estimated, each criterion's mean minus the L2 ranking's, in points: "
            + " ".join(f"**{CRITERION_LABELS[c]}**: {versus(c)}." for c in crits if c != "l2"))


# ------------------------------------------------------------------------------ zeroed or removed, speed
def remove_text(both: pd.DataFrame) -> str:
    """How much removing instead of zeroing changes the accuracy, per arm.

    Args:
        both: :func:`mask_vs_remove`.

    Returns:
        the range over seeds and fractions above 0 in points, or that no run was pruned both ways.
    """
    if both.empty:
        return "**No run has been pruned in both modes yet.**"
    gap = (both["test_acc_remove"] - both["test_acc_mask"])[both["fraction"] > 0]
    g = gap.groupby(both["arm"]).agg(["min", "max"])

    def signed(x):     # rounded first, and + 0.0: a -0.04 point gap is written +0.0
        return f"{round(100 * x, 1) + 0.0:+.1f}"
    return ("One shot, removing instead of zeroing changes the test accuracy by "
            + "; ".join(f"{NAME.get(a, a)} {signed(g.loc[a, 'min'])} to {signed(g.loc[a, 'max'])}"
                        for a in comparison.arms_in(both) if a in g.index)
            + " points (range over seeds and fractions 10-90 %; the figure below, left).")


def speed_texts(sp: pd.DataFrame) -> tuple[str, str]:
    """The measured speed-up at 50 % removed against the FLOP ratio, and every fraction timed.

    Args:
        sp: :func:`speedups`.

    Returns:
        ``(text, table)``: the paragraph and the Markdown table, or the not-timed-yet sentences.
    """
    if sp.empty:
        return ("**The removed networks have not been timed on a quiet machine yet** (the latency pass has not "
                "been run), so no speed-up is shown.", "No fraction has been timed yet.")
    device = f"{sp['device_name'].iloc[0] if 'device_name' in sp else ''}"
    at = speed.at_fraction(sp, 0.5)
    parts = [f"{speed.RUNTIME_LABELS[r.runtime]} at batch {r.batch_size} {r.speedup:.2f}×" for r in at.itertuples()]
    text = (f"At 50 % of the filters removed the FLOP ratio promises {at['flop_speedup'].median():.2f}×; measured "
            f"({int(at['n'].max())} networks, median): " + ", ".join(parts) + f". Timed on {device}, "
            f"{int(sp['threads'].iloc[0])} thread (the figure below, right). " + speed.slower_sentence(sp)
            + " Every fraction timed, median over the timed networks (below 1, slower than unpruned, in bold):")
    return text, speed.every_fraction_markdown(sp)


# ------------------------------------------------------------------------------ repair
def _versus(summs: dict[str, pd.DataFrame], arms: list[str]) -> tuple[dict, dict]:
    """Per repair, Bridgeout against the paper's baselines and against the best of every other arm."""
    others = [a for a in arms if a != "bridgeout"]
    paper = {n: comparison.outcome(s, fractions=(0.3, 0.5)) for n, s in summs.items()}
    every = {n: comparison.outcome(s, baselines=[a for a in others if (s["arm"] == a).any()], fractions=(0.3, 0.5))
             for n, s in summs.items()}
    return paper, every


def _finetune_sentence(summs: dict[str, pd.DataFrame]) -> str:
    """What one epoch of fine-tuning does to the unpruned networks and to the seeds' spread."""
    from .prune.repair import FINETUNE_LR  # deferred: loads torch
    ft, none = summs["fine-tuned 1 epoch"], summs["no repair"]
    at0 = ft[ft["fraction"] == 0].set_index("arm")["mean"] - none[none["fraction"] == 0].set_index("arm")["mean"]
    cpu = get_protocol("cpu")
    last_lr = cpu.lr_at(cpu.epochs - 1)
    worst = ft.loc[ft["sd"].idxmax()]
    return (f" One epoch at a constant learning rate of {FINETUNE_LR:g} ({FINETUNE_LR / last_lr:.0f}× the last "
            f"learning rate of the training schedule) is itself a perturbation: it changes the accuracy of the "
            f"*unpruned* networks by {points(at0.min())} to {points(at0.max())} points, and after it the seeds of one "
            f"arm spread by up to {pct(worst['sd'])} points (sd; {NAME.get(worst['arm'], worst['arm'])} at "
            f"{100 * worst['fraction']:.0f} %). A fine-tuning whose learning rate decays, not run here, would be "
            f"the fairer repair.")


def _repair_paragraph(summs: dict[str, pd.DataFrame], arms: list[str]) -> str:
    """Bridgeout's mean minus the paper's baselines and the best other arm, per repair."""
    paper, every = _versus(summs, arms)
    parts = []
    for name in summs:
        if len(paper[name]) and len(every[name]):
            parts.append(f"*{name}*: " + ", ".join(
                f"at {100 * p.fraction:.0f} % {points(p.difference)} against the paper's baselines and "
                f"{points(e.difference)} against the best other arm ({NAME.get(e.best_baseline, e.best_baseline)})"
                for p, e in zip(paper[name].itertuples(), every[name].itertuples())))
    text = ("Batch Bridgeout's mean minus the better of the paper's baselines (weight decay, targeted Dropout), "
            "and minus the best of every other regularizer, in points: " + "; ".join(parts) + ". "
            "A difference smaller than the seeds' standard deviation (table below) is no difference.")
    if not any(n.startswith("fine") for n in summs):
        return text + " **The fine-tuning pass has not been run yet.**"
    return text + _finetune_sentence(summs)


def repair_texts(summs: dict[str, pd.DataFrame], runs: pd.DataFrame) -> tuple[str, str]:
    """Each repair: Bridgeout against the paper's baselines and the best other arm, at 30 and 50 %.

    Args:
        summs: repair name -> :func:`bridgeout.comparison.summary` of :func:`repairs`.
        runs: the comparison's runs, with ``arm`` (one per seed).

    Returns:
        ``(text, table)``: the paragraph (with what fine-tuning itself does, when it ran) and a
        Markdown table, a row per arm, mean ± sd in % after each repair; ``table`` is ``""`` when no
        run has been pruned.
    """
    if not summs:
        return "**No run has been pruned yet**, so no repair is compared.", ""
    table = _arm_table(["arm", "n"] + [f"{100 * f:.0f} % {_SHORT[n]}" for f in (0.3, 0.5) for n in summs], runs,
                       lambda a: [summary_cell(summs[n], a, f) for f in (0.3, 0.5) for n in summs])
    return _repair_paragraph(summs, comparison.arms_in(runs)), table


# ------------------------------------------------------------------------------ at a glance
def _status(done: int, total: int, none: str, some: str) -> str:
    """A pass's status over the comparison's runs: done, ``none`` (not run) or ``some`` (partial)."""
    return "done" if done >= total and total else none if done == 0 else some


def _regs_answer(s_rec: pd.DataFrame, n_runs: int) -> str:
    """Bridgeout and the best other arm at 30 and 50 %, BatchNorm re-estimated."""
    if not n_runs:
        return "no run yet"
    out = []
    for f in (0.3, 0.5):
        at = s_rec[np.isclose(s_rec["fraction"], f)].set_index("arm")
        if "bridgeout" not in at.index or len(at) < 2:
            continue
        best = at.drop("bridgeout")["mean"].idxmax()
        out.append(f"at {100 * f:.0f} %: Batch Bridgeout {summary_cell(s_rec, 'bridgeout', f)} %, best other arm "
                   f"{NAME.get(best, best)} {summary_cell(s_rec, best, f)} % (mean ± sd)")
    return "BatchNorm re-estimated, " + "; ".join(out) if out else "–"


def _criteria_answer(pruning: pd.DataFrame, crit_n: int) -> str:
    """Each criterion against L2 at 30 %: the range over arms, in points."""
    if crit_n == 0:
        return "only the L2 ranking each run recorded so far"
    at30, out = criteria_at(pruning), []
    for c in [c for c in at30 if c != "l2"]:
        d = (at30[c] - at30["l2"]).dropna()     # | escaped for the table, γ kept off the escape by word joiners
        label = CRITERION_LABELS[c].replace("|", "\\|").replace("γ", "\u2060γ\u2060")
        out.append(f"{label} {100 * d.min():+.0f} to {100 * d.max():+.0f}")
    return "at 30 %, against L2 (points, over arms): " + "; ".join(out)


def _speed_answer(sp: pd.DataFrame) -> str:
    """The FLOP ratio and the range of measured speed-ups at 50 % removed."""
    if sp.empty:
        return "not timed yet"
    at = speed.at_fraction(sp, 0.5)
    return (f"50 % removed: FLOP ratio {at['flop_speedup'].median():.2f}×, measured "
            f"{at['speedup'].min():.2f}× to {at['speedup'].max():.2f}× (PyTorch, ONNX Runtime; batch 1, 128)")


def _repair_answer(every: dict[str, pd.DataFrame]) -> str:
    """Bridgeout minus the best other arm at 30 / 50 % after each repair."""
    out = [f"{name} " + " / ".join(points(r.difference) for r in e.itertuples())
           for name, e in every.items() if name != "no repair" and len(e)]
    return ("Batch Bridgeout minus the best other arm at 30 / 50 % (points): " + "; ".join(out)) if out else "–"


def _ablation_scale(panels: list) -> tuple[str, int]:
    """The ablation grids (network, epochs, runs) and the fewest seeds of any setting."""
    rows = (pd.concat([p.rows for p in panels]) if panels
            else pd.DataFrame(columns=["grid", "seed", *ablation.PUBLISHED]))
    scale = ("; ".join(f"{plots.panel_title(r['model'], r['dataset'])}, {int(r['epochs'])} epochs, "
                       f"{rows[rows['grid'] == g]['run_id'].nunique()} runs (`{g}`)"
                       for g, r in rows.groupby("grid").first().iterrows()) or "–")
    seeds = int(rows.groupby(list(ablation.PUBLISHED) + ["grid"])["seed"].nunique().min() if len(rows) else 0)
    return scale, seeds


def glance(runs: pd.DataFrame, pruning: pd.DataFrame, latency: pd.DataFrame, panels: list,
           planned: dict[str, int], scale: str) -> str:
    """The table that opens the chapter: per question, its scale, its status and what came out.

    Args:
        runs: the comparison's runs, with ``arm``.
        pruning: their joined pruning rows.
        latency: their joined latency rows.
        panels: :func:`bridgeout.ablation.panels`.
        planned: grid -> number of runs planned.
        scale: what the comparison trains (network, data, schedule), a sentence without its full stop.

    Returns:
        the paragraph and the Markdown table.
    """
    n_runs, arms, todo = len(runs), comparison.arms_in(runs), sum(planned.values())

    def runs_with(mask):
        return pruning[mask]["run_id"].nunique()
    crit_n = runs_with(pruning["criterion"].isin(["l1", "random", "orthogonality"]))
    ft_n = runs_with(pruning["finetune_epochs"] > 0)
    lat_n = latency["run_id"].nunique() if len(latency) else 0
    s_rec = comparison.summary(comparison.accuracy(pruning, recalibrate_bn=True))
    _, every = _versus({n: comparison.summary(a) for n, a in repairs(pruning).items()}, arms)
    seeds = sorted({_seeds_of(runs, a) for a in arms}) or [0]
    seed_txt = plural(seeds[0], "seed") if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} seeds"
    abl_scale, abl_seeds = _ablation_scale(panels)
    rows = ["| question | scale | status | what came out |", "| --- | --- | --- | --- |",
            f"| Regularizers compared | CIFAR-10 comparison, {len(arms)} arms, {seed_txt} per arm "
            f"| {'done' if n_runs >= todo else f'{todo - n_runs} runs to go'} | {_regs_answer(s_rec, n_runs)} |",
            f"| Ranking criteria | the same {n_runs} networks "
            f"| {_status(crit_n, n_runs, 'pass not run', f'{crit_n} of {n_runs} runs')} "
            f"| {_criteria_answer(pruning, crit_n)} |",
            f"| Zeroed vs removed, real speed | the same networks; {lat_n} timed on a quiet CPU "
            f"| {'done' if lat_n else 'speed not measured yet'} | {_speed_answer(speedups(latency))} |",
            f"| Repair | the same {n_runs} networks "
            f"| {_status(ft_n, n_runs, 'fine-tuning not run', f'fine-tuned {ft_n} of {n_runs}')} "
            f"| {_repair_answer(every)} |",
            f"| Noise ablations | {abl_scale}, {plural(abl_seeds, 'seed')} per setting "
            f"| {'not run' if not panels else 'partial' if len(panels) < 4 else 'done'} | {ablation.summary(panels)} |"]
    return ("**At a glance.** The CIFAR-10 comparison: " + scale + ". Test accuracy is the mean over "
            "seeds; every number below is drawn, with its seeds, in the sections that follow.\n\n" + "\n".join(rows))
