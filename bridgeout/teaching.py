"""The teaching chapter's verdicts, computed (and tested) here rather than in the notebook.

An exercise's solution must follow from its own numbers: :func:`ranking_gain` decides whether a
pruning ranking beats random rankings by comparing the gain with its spread over the random
draws; :func:`q_sentence` reads one seed of the q exercise against the 3-seed ablation. The
chapter's other sentences and its busier figures are here too, tested on synthetic tables.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import comparison, results
from .fmt import mean_sd, pct, plural
from .stats import welch
from .teachplots import LABELS, REGULARIZERS, _draws, plot_norms, plot_random, plot_seeds  # noqa: F401 - re-exported

__all__ = ["ranking_gain", "ranking_sentence", "mechanism_sentence", "ablation_q", "q_sentence", "seed_verdict",
           "REGULARIZERS", "crossing", "crossing_sentence", "plot_norms", "norms_sentence", "l2_rows",
           "plot_seeds", "grid_sentence", "stuck_sentence", "plot_random", "random_gains", "random_grid_sentence",
           "remove_vs_zero", "longer_sentence"]



def ranking_gain(l2: pd.Series, random: pd.DataFrame) -> dict:
    """How much a ranking (``l2``: accuracy per fraction) keeps over random rankings
    (``random``: fractions x draws, same fractions): ``gain`` (mean over fractions and draws,
    in [0, 1]), ``se`` (standard error of that mean over the draws: the sd of the per-draw mean
    gains / sqrt(draws)), ``above``/``below`` (fractions where ``l2`` is above / below every
    draw), ``n`` (fractions) and ``verdict``: ``"informative"`` when the gain exceeds 2 SE and
    1 point, ``"worse than random"`` when it is below -2 SE and -1 point, else ``"no clearer
    than chance"``. With one draw there is no SE and nothing is called informative.

    Args:
        l2: the ranking's accuracy per fraction (index: fractions).
        random: the random rankings' accuracies, fractions (index, including ``l2``'s) x draws.

    Returns:
        A dict with ``gain``, ``se``, ``above``, ``below``, ``n`` and ``verdict`` as above.
    """
    random = random.loc[l2.index]
    per_draw = random.rsub(l2, axis=0).mean(axis=0)          # one mean gain per draw
    gain = float(per_draw.mean())
    se = float(per_draw.std(ddof=1) / math.sqrt(len(per_draw))) if len(per_draw) > 1 else math.nan
    above = int((l2 > random.max(axis=1)).sum())
    below = int((l2 < random.min(axis=1)).sum())
    if math.isfinite(se) and gain > max(2 * se, 0.01):
        verdict = "informative"
    elif math.isfinite(se) and gain < min(-2 * se, -0.01):
        verdict = "worse than random"
    else:
        verdict = "no clearer than chance"
    return {"gain": gain, "se": se, "above": above, "below": below, "n": len(l2), "verdict": verdict}


_MEANING = {"informative": "the norm points at filters that matter less than a random pick does",
            "worse than random": ("a random choice does *better*: the smallest filters are among the ones "
                                  "this network needs"),
            "no clearer than chance": ("the gain is within two standard errors of the random draws' spread, "
                                       "so this run cannot tell the ranking from chance")}


def ranking_sentence(label: str, g: dict, draws: int) -> str:
    """One network's :func:`ranking_gain` as a sentence, verdict last.

    Args:
        label: the network's name in the sentence.
        g: its :func:`ranking_gain`.
        draws: the number of random rankings.

    Returns:
        The sentence.
    """
    return (f"{label}: the $L_2$ ranking keeps {100 * g['gain']:+.1f} ± {100 * g['se']:.1f} points over the "
            f"random draws (mean ± standard error over {plural(draws, 'draw')}), above all of them at "
            f"{g['above']} and below all at {g['below']} of the {g['n']} fractions that prune at least one "
            f"filter per layer: {_MEANING[g['verdict']]}.")


def ablation_q(root=None, fraction: float = 0.7) -> pd.DataFrame:
    """The q ablation (grid ``mnist-noise-ablation``: LeNet-5 / MNIST, 3 epochs, Batch
    Bridgeout at p = 0.3, target 0.75, unsigned, q varied) at ``fraction`` zeroed one shot:
    one row per (q, seed) with ``test_acc``.

    Args:
        root: the results folder (default: the committed ``data/results``).
        fraction: the fraction of filters zeroed per layer.

    Returns:
        Columns ``q, seed, test_acc``, sorted; empty when the grid is not in the tables.
    """
    j = results.load_joined(root)
    if not len(j):
        return pd.DataFrame(columns=["q", "seed", "test_acc"])
    sel = j[(j["grid"] == "mnist-noise-ablation") & (j["mode"] == "mask") & (j["criterion"] == "l2")
            & (j["scope"] == "layer") & ~j["recalibrate_bn"].astype(bool) & (j["finetune_epochs"] == 0)
            & np.isclose(j["fraction"], fraction) & np.isclose(j["p"], 0.3)
            & np.isclose(j["target_fraction"], 0.75) & ~j["signed"].astype(bool)]
    return sel[["q", "seed", "test_acc"]].sort_values(["q", "seed"]).reset_index(drop=True)


def q_sentence(acc_q1: pd.Series, acc_q: pd.Series, q: float, root=None) -> str:
    """Exercise 1's answer: this run's q = 1 against q = ``q`` (accuracy per fraction), read as
    one seed, then the 3-seed ablation's verdict at 70 % zeroed.

    Args:
        acc_q1: this run's q = 1 accuracy per fraction (0 and 0.5 included).
        acc_q: this run's accuracy per fraction at the chapter's ``q``.
        q: the chapter's exponent.
        root: the results folder of the ablation (default: the committed tables).

    Returns:
        The answer, in Markdown.
    """
    run = (f"In this run (one seed): unpruned, q = 1 reaches {pct(acc_q1[0.0])} % against {pct(acc_q[0.0])} % "
           f"for q = {q:g}; with half the filters zeroed, {pct(acc_q1[0.5])} % against {pct(acc_q[0.5])} %. "
           "One seed decides nothing.")
    abl = ablation_q(root)
    if abl.empty:
        return run + " The 3-seed ablation is not in the tables yet."
    by = abl.groupby("q")["test_acc"]
    parts = "; ".join(f"q = {k:g} {mean_sd(v)} %" for k, v in by)
    best = by.mean().idxmax()
    n = int(by.size().min())
    spread = float((by.max() - by.min()).max())
    return (run + f" The book's ablation ({plural(n, 'seed')} per q, LeNet-5 / MNIST, 3 epochs, 70 % of the "
            f"filters zeroed) gives {parts} (mean ± sd): q = {best:g} keeps the most there, and seeds of one "
            f"q differ by up to {100 * spread:.1f} points, more than most differences between two single "
            "runs; see *Beyond the paper*.")


def mechanism_sentence(gains: dict[str, dict], bridgeout_label: str) -> str:
    """What the ranking gains say about the paper's explanation: Bridgeout's norms should be
    *more* informative than the other networks' (its small filters the unimportant ones). A
    difference counts only beyond the two gains' combined 2 SE.

    Args:
        gains: network label -> its :func:`ranking_gain`.
        bridgeout_label: the label of the Bridgeout network among them.

    Returns:
        The sentence, its verdict last.
    """
    bo = gains[bridgeout_label]
    others = {k: v for k, v in gains.items() if k != bridgeout_label}
    best_label, best = max(others.items(), key=lambda kv: kv[1]["gain"])
    diff = bo["gain"] - best["gain"]
    se = math.sqrt(bo["se"] ** 2 + best["se"] ** 2)
    head = ("For the paper's explanation to hold, Bridgeout's norms must be *more* informative than the "
            "others': its claim is that Bridgeout makes the small filters the unimportant ones. ")
    numbers = (f"Bridgeout's gain minus the best other ({best_label}) is {100 * diff:+.1f} ± {100 * se:.1f} points "
               "(± the combined standard error)")
    if math.isfinite(se) and diff > 2 * se:
        return head + numbers + ": in this run they are."
    if math.isfinite(se) and diff < -2 * se:
        return head + numbers + ": in this run they are *less* informative."
    return head + numbers + ": this run cannot tell them apart."


def seed_verdict(rows: pd.DataFrame, fraction: float = 0.5, labels: dict | None = None) -> str:
    """Does Bridgeout keep more than each baseline at ``fraction`` zeroed, over the seeds that
    trained? ``rows``: one row per (run, fraction) with ``regularizer, seed, fraction,
    test_acc``. Bridgeout minus each other regularizer with its Welch 95 % interval, and a
    verdict: shown only where the interval excludes zero.

    Args:
        rows: one row per (run, fraction) with ``regularizer, seed, fraction, test_acc``.
        fraction: the fraction zeroed to compare at.
        labels: regularizer -> its name in the sentence (default: the regularizer's own name).

    Returns:
        The sentence; empty when Bridgeout has fewer than two seeds.
    """
    labels = labels or {}
    at = rows[np.isclose(rows["fraction"], fraction)]
    bo = at[at["regularizer"] == "bridgeout"]["test_acc"]
    if len(bo) < 2:
        return ""
    parts, shown = [], []
    for reg in sorted(set(at["regularizer"]) - {"bridgeout"}):
        other = at[at["regularizer"] == reg]["test_acc"]
        d, lo, hi, _ = welch(other, bo)
        if not math.isfinite(lo):
            continue
        name = labels.get(reg, reg)
        parts.append(f"{100 * d:+.1f} points against {name} (95 % interval {100 * lo:+.1f} to {100 * hi:+.1f})")
        if lo > 0 or hi < 0:
            shown.append(name)
    if not parts:
        return ""
    verdict = (f"the difference is real against {' and '.join(shown)}" if shown else
               f"with {plural(len(bo), 'seed')} no difference is shown: every interval includes zero")
    return (f"With {round(100 * fraction)} % of the filters zeroed, Bridgeout minus each baseline: "
            + "; ".join(parts) + f": {verdict}.")


def crossing(wide: pd.DataFrame, a: str, b: str):
    """The smallest fraction from which curve ``a`` is at or above curve ``b`` at every larger one.

    Args:
        wide: accuracy, one row per fraction (ascending), one column per regularizer.
        a: the column that should end ahead.
        b: the column it is compared with.

    Returns:
        That fraction (a value of ``wide``'s index), or None when ``a`` ends below ``b``.
    """
    ahead = (wide[a] >= wide[b]).to_numpy()
    return next((wide.index[i] for i in range(len(ahead)) if ahead[i:].all()), None)


def crossing_sentence(wide: pd.DataFrame, n_test: int) -> tuple[str, float]:
    """Where Bridgeout's curve crosses the two others, the accuracies at half pruned, and the test error.

    Args:
        wide: accuracy per fraction (index, with 0.0 and 0.5) and regularizer (:data:`REGULARIZERS`).
        n_test: test images behind each accuracy.

    Returns:
        The sentence, and the binomial standard error (in [0, 1]) of the mean unpruned accuracy.
    """
    best0 = wide.loc[0.0].idxmax()
    parts = [f"Best before pruning: {LABELS[best0]} ({pct(wide.loc[0.0, best0])} %)."]
    for other in ("weight_decay", "dropout"):
        f, name = crossing(wide, "bridgeout", other), LABELS[other]
        gap0 = 100 * (wide.loc[0.0, "bridgeout"] - wide.loc[0.0, other])
        parts.append(f"Against {name}, Bridgeout is never ahead for good ({gap0:+.1f} points before pruning)."
                     if f is None else f"Against {name}, Bridgeout is ahead or level at every fraction."
                     if f == 0.0 else f"Against {name}, Bridgeout starts {gap0:+.1f} points away and is ahead "
                     f"from {100 * f:.0f} % of the filters pruned on: the curves cross.")
    parts.append("With half the filters of every layer zeroed: "
                 + ", ".join(f"{LABELS[r]} {pct(wide.loc[0.5, r])} %" for r in REGULARIZERS) + ".")
    acc0 = float(wide.loc[0.0].mean())
    se = (acc0 * (1 - acc0) / n_test) ** 0.5
    parts.append(f"For scale: the standard error of an accuracy near {pct(acc0)} % measured on {n_test:,} test "
                 f"images is {100 * se:.1f} points, from the test sample alone.")
    return " ".join(parts), se


def norms_sentence(rel: dict[str, np.ndarray]) -> str:
    """How weak each network's weakest conv2 filter is; the norms differ only 0.05 or more apart.

    Args:
        rel: :func:`plot_norms`'s result (regularizer -> relative norms, the weakest first).

    Returns:
        The sentence.
    """
    weakest = {r: float(rel[r][0]) for r in REGULARIZERS if r in rel}
    low = min(weakest, key=weakest.get)
    spread = max(weakest.values()) - weakest[low]
    return ("The weakest conv2 filter is "
            + ", ".join(f"{v:.2f} of the strongest for {LABELS[r]}" for r, v in weakest.items())
            + (f": {LABELS[low]}'s filters are the most spread out." if spread >= 0.05 else
               f": within {spread:.2f} of each other, so this run shows no difference in how spread out "
               "the filter norms are."))


def l2_rows(pruning: pd.DataFrame) -> pd.DataFrame:
    """A grid's one-shot L2 rows: zeroed per layer, BatchNorm kept, no fine-tuning.

    Args:
        pruning: the grid's joined pruning table (``comparison.load(grid)["pruning"]``, maybe empty).

    Returns:
        One row per (run, fraction): ``run_id, regularizer, seed, fraction, test_acc``.
    """
    sel = pruning[(pruning["mode"] == "mask") & (pruning["criterion"] == "l2") & (pruning["scope"] == "layer")
                  & ~pruning["recalibrate_bn"].astype(bool) & (pruning["finetune_epochs"] == 0)]
    return sel[["run_id", "regularizer", "seed", "fraction", "test_acc"]]


def grid_sentence(rows: pd.DataFrame, name: str, chance: float) -> str:
    """A grid's accuracies unpruned and half zeroed, then :func:`seed_verdict`.

    Args:
        rows: the grid's :func:`l2_rows`.
        name: the grid's name, in bold (its schedule, e.g. ``"peak lr 0.05"``).
        chance: the chance accuracy (runs that did not train, by ``comparison.did_not_train``, are left out).

    Returns:
        The sentence (mean ± sd over the seeds that trained), or that no run has finished.
    """
    if rows.empty:
        return f"**{name}:** no run has finished yet."
    base = rows[rows["fraction"] == 0].set_index("run_id")
    failed = base.index[comparison.did_not_train(base["test_acc"], base["regularizer"], chance=chance)]
    ok = rows[~rows["run_id"].isin(failed)]
    parts = []
    for reg in [r for r in REGULARIZERS if r in set(ok["regularizer"])]:
        sub = ok[ok["regularizer"] == reg]
        parts.append(f"{LABELS[reg]} {mean_sd(sub[sub['fraction'] == 0]['test_acc'])} % unpruned, "
                     f"{mean_sd(sub[np.isclose(sub['fraction'], 0.5)]['test_acc'])} % with half the filters zeroed "
                     f"(n = {sub['seed'].nunique()})")
    return (f"**{name}** (mean ± sd over the seeds that trained): " + "; ".join(parts) + ". "
            + seed_verdict(ok, 0.5, LABELS))


def stuck_sentence(tables: dict[str, pd.DataFrame], name: str, chance: float, test_labels) -> str:
    """A grid's runs that never left chance: how many per network, each one's loss and accuracy.

    Args:
        tables: the grid's tables (:func:`bridgeout.comparison.load`; ``runs`` and ``history`` used).
        name: the grid's name, in bold.
        chance: the dataset's chance accuracy.
        test_labels: the whole test set's labels, for the accuracy of always naming the commonest.

    Returns:
        The sentence: no run yet, all trained, or the stuck runs against ln 10 and that accuracy.
    """
    runs, hist = tables["runs"], tables["history"]
    if runs.empty:
        return f"**{name}:** no run has finished yet."
    bad = runs[comparison.did_not_train(runs["final_test_acc"], runs["regularizer"], chance=chance)]
    if bad.empty:
        return f"**{name}:** all {len(runs)} runs trained; none ended at chance."
    majority = float(np.bincount(test_labels).max() / len(test_labels))
    counts = ", ".join(f"{int((bad['regularizer'] == reg).sum())} of {int((runs['regularizer'] == reg).sum())} "
                       f"{LABELS[reg]} runs" for reg in REGULARIZERS if (runs["regularizer"] == reg).any())
    details = []
    for r in bad.itertuples():
        loss = hist[hist["run_id"] == r.run_id].sort_values("epoch")["train_loss"]
        details.append(
            f"{LABELS[r.regularizer]}, seed {r.seed}: training loss {loss.iloc[0]:.3f} after the first "
            f"epoch and {loss.iloc[-1]:.3f} after the last, against ln 10 = {np.log(10):.3f} for a "
            f"network that gives every image the same probabilities; test accuracy {pct(r.final_test_acc)} %, "
            f"against {pct(majority)} % for always answering the most common digit")
    return f"**{name}:** never left chance: {counts} ({'; '.join(details)})."


def random_gains(wide: pd.DataFrame, random_curves: pd.DataFrame, fractions) -> dict[str, dict]:
    """:func:`ranking_gain` of each network's L2 ranking over its random rankings.

    Args:
        wide: the L2 accuracy per fraction (index) and regularizer (columns).
        random_curves: the random rankings' rows, as for :func:`plot_random`.
        fractions: the fractions compared (those that prune a filter in every layer).

    Returns:
        Regularizer -> its :func:`ranking_gain`, in the order of :data:`REGULARIZERS`.
    """
    return {reg: ranking_gain(wide.loc[list(fractions), reg], _draws(random_curves, reg)) for reg in REGULARIZERS}


def random_grid_sentence(pruning: pd.DataFrame, l2: pd.DataFrame, fractions, chance: float) -> str:
    """The five-seed grid's mean gain of L2 over its one random ranking per seed, per network.

    Args:
        pruning: the grid's joined pruning table (its one-shot ``random`` rows are used).
        l2: the grid's :func:`l2_rows`.
        fractions: the fractions compared.
        chance: runs whose best L2 accuracy is within 5 points of it are left out.

    Returns:
        The sentence (mean ± sd over seeds), or that the grid has no random-ranking rows yet.
    """
    rnd = pruning[(pruning["criterion"] == "random") & (pruning["mode"] == "mask")
                  & ~pruning["recalibrate_bn"].astype(bool) & (pruning["finetune_epochs"] == 0)]
    if rnd.empty or l2.empty:
        return "The five-seed grid has no random-ranking rows yet."
    both = l2.merge(rnd[["run_id", "fraction", "test_acc"]], on=["run_id", "fraction"], suffixes=("_l2", "_random"))
    both = both[both["fraction"].isin(fractions)]
    both = both[both.groupby("run_id")["test_acc_l2"].transform("max") > chance + 0.05]
    g = both.assign(gain=both["test_acc_l2"] - both["test_acc_random"]).groupby(["regularizer", "seed"])["gain"].mean()
    parts = [f"{LABELS[r]} {100 * g[r].mean():+.1f} ± {100 * g[r].std():.1f} points (n = {len(g[r])})"
             if len(g[r]) > 1 else f"{LABELS[r]} {100 * g[r].mean():+.1f} points (n = 1)"
             for r in REGULARIZERS if r in g.index.get_level_values(0)]
    return ("On the five-seed grid (all of MNIST, 3 epochs, one random ranking per seed), the mean gain of the "
            "$L_2$ ranking over the random one, over the same fractions, is: " + "; ".join(parts)
            + " (mean ± sd over seeds).")


def remove_vs_zero(sweep: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Exercise 3's answer: the same network with its filters zeroed and removed.

    Args:
        sweep: ``prune.sweep(..., modes=("mask", "remove"))`` rows, fractions including 0.0 and 0.5.

    Returns:
        The table (accuracy, parameters, FLOPs per image: fractions x modes) and the sentence.
    """
    acc, params, flops = (sweep.pivot(index="fraction", columns="mode", values=v)
                          for v in ("test_acc", "params", "flops"))
    table = pd.concat({"test accuracy": acc.round(3), "parameters": params.astype("int64"),
                       "FLOPs per image": flops.astype("int64")}, axis=1)
    diff = acc["remove"] - acc["mask"]
    at = diff.abs().idxmax()
    return table, (
        f"Largest accuracy difference between removing and zeroing: {100 * diff.abs().max():.1f} points "
        f"(at {100 * at:.0f} % pruned, removal {'higher' if diff[at] > 0 else 'lower or equal'}). "
        f"At 50 % pruned the removed network has {params.loc[0.5, 'remove'] / params.loc[0.0, 'remove']:.0%} of "
        f"the parameters and {flops.loc[0.5, 'remove'] / flops.loc[0.0, 'remove']:.0%} of the FLOPs; the "
        "zeroed one keeps all of both.")


def longer_sentence(wide: pd.DataFrame, seeds5: pd.DataFrame, chance: float, n_train: int, epochs: int) -> str:
    """Exercise 4's answer: this run's unpruned Bridgeout-minus-weight-decay gap against the grid's.

    Args:
        wide: this run's accuracy per fraction (index) and regularizer (columns).
        seeds5: the five-seed grid's :func:`l2_rows`.
        chance: runs whose best accuracy is within 5 points of it are left out of the grid's means.
        n_train: this run's training images.
        epochs: this run's epochs.

    Returns:
        The sentence, with the pruned fractions where the grid's Bridgeout mean is level or ahead.
    """
    gap_small = 100 * (wide.loc[0.0, "bridgeout"] - wide.loc[0.0, "weight_decay"])
    if seeds5.empty:
        return "(The five-seed grid has no finished run yet.)"
    ok5 = seeds5[seeds5.groupby("run_id")["test_acc"].transform("max") > chance + 0.05]
    m = ok5.groupby(["regularizer", "fraction"])["test_acc"].mean().unstack(0)
    if not {"bridgeout", "weight_decay"} <= set(m.columns):
        return "(The five-seed grid has no Bridgeout and weight-decay pair yet.)"
    gap5 = 100 * (m.loc[0.0, "bridgeout"] - m.loc[0.0, "weight_decay"])
    ahead = [f for f in m.index if f > 0 and m.loc[f, "bridgeout"] >= m.loc[f, "weight_decay"]]
    return (f"Unpruned, Batch Bridgeout minus weight decay is {gap_small:+.1f} points in this chapter's run "
            f"({n_train:,} images, {plural(epochs, 'epoch')}, one seed) and {gap5:+.1f} points averaged over the "
            f"grid's seeds (60,000 images, 3 epochs). On the grid's means Bridgeout is level with or ahead of weight "
            f"decay at {len(ahead)} of the {len(m.index) - 1} pruned fractions"
            + (f" ({', '.join(f'{100 * f:.0f}' for f in ahead)} %)." if ahead else "."))
