"""The teaching chapter's verdicts, computed (and tested) here rather than in the notebook.

An exercise's solution must follow from its own numbers: :func:`ranking_gain` decides whether a
pruning ranking beats random rankings by comparing the gain with its spread over the random
draws; :func:`q_sentence` reads one seed of the q exercise against the 3-seed ablation.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import results
from .fmt import mean_sd, pct, plural
from .stats import welch

__all__ = ["ranking_gain", "ranking_sentence", "mechanism_sentence", "ablation_q", "q_sentence"]


def ranking_gain(l2: pd.Series, random: pd.DataFrame) -> dict:
    """How much a ranking (``l2``: accuracy per fraction) keeps over random rankings
    (``random``: fractions x draws, same fractions): ``gain`` (mean over fractions and draws,
    in [0, 1]), ``se`` (standard error of that mean over the draws: the sd of the per-draw mean
    gains / sqrt(draws)), ``above``/``below`` (fractions where ``l2`` is above / below every
    draw), ``n`` (fractions) and ``verdict``: ``"informative"`` when the gain exceeds 2 SE and
    1 point, ``"worse than random"`` when it is below -2 SE and -1 point, else ``"no clearer
    than chance"``. With one draw there is no SE and nothing is called informative."""
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
    """One network's :func:`ranking_gain` as a sentence, verdict last."""
    return (f"{label}: the $L_2$ ranking keeps {100 * g['gain']:+.1f} ± {100 * g['se']:.1f} points over the "
            f"random draws (mean ± standard error over {plural(draws, 'draw')}), above all of them at "
            f"{g['above']} and below all at {g['below']} of the {g['n']} fractions that prune at least one "
            f"filter per layer: {_MEANING[g['verdict']]}.")


def ablation_q(root=None, fraction: float = 0.7) -> pd.DataFrame:
    """The q ablation (grid ``mnist-noise-ablation``: LeNet-5 / MNIST, 3 epochs, Batch
    Bridgeout at p = 0.3, target 0.75, unsigned, q varied) at ``fraction`` zeroed one shot:
    one row per (q, seed) with ``test_acc``."""
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
    one seed, then the 3-seed ablation's verdict at 70 % zeroed."""
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
    difference counts only beyond the two gains' combined 2 SE."""
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
    verdict: shown only where the interval excludes zero."""
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
