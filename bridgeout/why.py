"""Why our curves sit below the paper's: each candidate cause with its evidence, a verdict.

:func:`table` lists every candidate cause of the gap (BatchNorm statistics, which filters the
ranking removes, width, length, the amount of noise, the authors' pruner, final against
best-on-test weights) with what the committed runs show about it and its status;
:func:`verdict` states what is settled so far, in one paragraph; :func:`gpu_need` counts what
only a full-scale GPU run can settle will cost. All computed from ``data/results/``, so the
reproduction chapter follows the tables as runs come in.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import comparison, experiment, onelayer, paper, results
from .gpuneed import GPU_MODELS, gpu_need, gpu_sentence  # noqa: F401 - re-exported
from .fmt import mean_sd as _mean_sd, pct as _pct, plural, points as _points
from .stats import welch
from .sameweights import VARIANTS, variant_effect
from .summary import CPU_GRID
from .whyenergy import ENERGY_GRIDS, LENGTH_GRID, NOISE_GRID, RESNET_GRID, energy_handles, energy_retention, plot_energy  # noqa: F401 - re-exported

__all__ = ["RESNET_GRID", "LENGTH_GRID", "NOISE_GRID", "GRID_SIZES", "table", "markdown", "verdict", "headline",
           "gpu_need", "gpu_sentence"]

GRID_SIZES = {RESNET_GRID: 12, LENGTH_GRID: 6, NOISE_GRID: 3}


def _grid_status(runs: pd.DataFrame, grid: str) -> str:
    n = int((runs["grid"] == grid).sum())
    planned = GRID_SIZES[grid]
    return ("not run yet" if n == 0 else f"all {planned} runs in" if n >= planned
            else f"running: {n} of {planned} runs in")


def _arm_means(frame: pd.DataFrame, col: str, arms) -> str:
    return "; ".join(f"{comparison.ARM_LABELS[a]} {_mean_sd(frame[frame['arm'] == a][col])}"
                     for a in arms if a in set(frame["arm"]))


def _noise_text(root) -> str:
    """How much each exponent perturbs the kept Batch Bridgeout networks' targeted weights at
    p = 0.3 (:func:`bridgeout.theory.matched_p`), and the p at which q = 2 matches."""
    from . import theory  # deferred: loads torch
    from . import weights  # deferred: loads torch
    runs = results.load("runs", root)
    kept = runs[(runs["regularizer"] == "bridgeout") & (runs["q"] == 1.5) & ~runs["signed"].astype(bool)
                & runs["weights"].fillna("").astype(bool) & (runs["model"] == "vgg16")]
    # files present only (a slimmed checkout, `tools/gpu_visit.py slim`, hides them)
    kept = kept[[experiment._repo_path(w).is_file() for w in kept["weights"]]]
    if kept.empty:
        return "no kept Batch Bridgeout weights to compare the amount of noise on"
    convs = [t for r in kept.itertuples()
             for k, t in weights.load(experiment._repo_path(r.weights), r.weights_sha256).items()
             if k.endswith("weight") and t.dim() == 4]
    m = theory.matched_p(convs)
    return (f"but at p = 0.3 the noise's sd is {m['relative_noise']:.2f} times a targeted weight with q = 1.5 "
            f"and {m['relative_noise_to']:.2f} times with q = 2 (medians over the {len(kept)} kept VGG-16 Batch "
            f"Bridgeout networks), so the two arms differ in the amount of noise too; q = 2 matches at "
            f"p = {m['p']:.2f}, the grid `{NOISE_GRID}`")


def _length_text(root, fraction: float, cpu_one: pd.DataFrame) -> str:
    """Each arm at 52 epochs against the same arm at 26 (the CPU comparison): unpruned accuracy,
    one-shot accuracy at ``fraction`` and the share of unpruned accuracy kept (mean ± sd)."""
    long = comparison.load(LENGTH_GRID, root)
    if not len(long["pruning"]):
        return f"the same comparison at 52 epochs (grid `{LENGTH_GRID}`)"
    acc = comparison.accuracy(long["pruning"])
    f = f"{round(100 * fraction)} %"

    def at(a, frac):
        return a[np.isclose(a["fraction"], frac)]["test_acc"]
    parts = []
    for arm in comparison.arms_in(acc):
        a52, a26 = acc[acc["arm"] == arm], cpu_one[cpu_one["arm"] == arm]
        n = a52["run_id"].nunique()
        parts.append(f"{comparison.ARM_LABELS.get(arm, arm)} ({plural(n, 'run')} at 52 epochs): unpruned "
                     f"{_mean_sd(at(a52, 0.0))} against {_mean_sd(at(a26, 0.0))} at 26; one shot at {f} "
                     f"{_mean_sd(at(a52, fraction))} against {_mean_sd(at(a26, fraction))}, so "
                     f"{_mean_sd(at(comparison.relative(a52), fraction))} % of its unpruned accuracy kept against "
                     f"{_mean_sd(at(comparison.relative(a26), fraction))} % "
                     f"({_points(at(a52, 0.0).mean() - at(a26, 0.0).mean())} points unpruned, "
                     f"{_points(at(comparison.relative(a52), fraction).mean() - at(comparison.relative(a26), fraction).mean())}"
                     " points of share kept)")
    n = acc.groupby("arm")["run_id"].nunique().min()
    return "; ".join(parts) + (". With one run per arm at 52 epochs, a direction, not a finding" if n < 2 else
                               f". {plural(n, 'run')} per arm at 52 epochs")


def _matched_text(root, fraction: float, cpu_one: pd.DataFrame) -> str:
    """The matched-noise runs against Batch Bridgeout at p = 0.3: one-shot accuracy at
    ``fraction`` and the share of the unpruned accuracy kept (mean ± sd over seeds)."""
    m = comparison.load(NOISE_GRID, root)
    if not len(m["pruning"]):
        return ""
    acc = comparison.accuracy(m["pruning"])
    bo = cpu_one[cpu_one["arm"] == "bridgeout"]
    f = f"{round(100 * fraction)} %"

    def at(a):
        return a[np.isclose(a["fraction"], fraction)]["test_acc"]
    kept_m, kept_b = at(comparison.relative(acc)), at(comparison.relative(bo))
    d, lo, hi, _ = welch(kept_m, kept_b)
    if not math.isfinite(lo):
        reading = ""
    elif lo <= 0 <= hi:
        reading = (f": with the amount of noise matched, the exponent makes no difference these seeds can resolve "
                   f"(q = 1.5 minus q = 2: {_points(d)} [{_points(lo)}, {_points(hi)}] points of retention): the gap "
                   "between the two arms at p = 0.3 can be the amount of noise alone, though an effect of q as large as "
                   f"the interval (up to {_pct(max(-lo, hi))} points either way) is not ruled out")
    else:
        reading = (f": with the amount of noise matched, q = 1.5 keeps {'more' if d > 0 else 'less'} "
                   f"({_points(d)} [{_points(lo)}, {_points(hi)}] points of retention)")
    return (f". At the matched p (`{NOISE_GRID}`, {acc['run_id'].nunique()} runs), q = 2 keeps {_mean_sd(at(acc))} at "
            f"{f} one shot, {_mean_sd(kept_m)} % of its unpruned accuracy, against {_mean_sd(kept_b)} % for Batch "
            "Bridgeout at p = 0.3" + reading)


def table(root=None, fraction: float = 0.3) -> pd.DataFrame:
    """Each candidate cause of the gap between our curves and the paper's, with what the tables
    show about it at ``fraction`` pruned: columns ``cause``, ``evidence`` (Markdown, numbers in %
    as mean ± sd over seeds) and ``status`` (``measured`` on the CPU comparison, or a grid's
    progress). Computed from the tables, so it follows them as runs come in.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).
        fraction: the fraction pruned.

    Returns:
        one row per candidate cause.
    """
    runs = results.load("runs", root)
    cpu = comparison.load(CPU_GRID, root)
    one, recal = comparison.accuracy(cpu["pruning"]), comparison.accuracy(cpu["pruning"], recalibrate_bn=True)
    rows = []
    f = f"{round(100 * fraction)} %"
    rec = comparison.bn_recovery(one, recal, fraction) if len(one) else pd.DataFrame()
    if len(rec):
        means = rec.groupby("arm")["recovered"].mean()
        verdict = ("More than half of every arm's one-shot loss is stale statistics, not lost filters."
                   if (means > 0.5).all() else
                   f"{int((means > 0.5).sum())} of {len(means)} arms win back more than half.")
    rows.append({"cause": "BatchNorm statistics gathered before pruning", "status": "measured" if len(rec) else "not run yet",
                 "evidence": (f"re-estimating them after pruning {f} wins back this share (%) of the one-shot loss: "
                              + _arm_means(rec, "recovered", comparison.ARMS) + ". " + verdict) if len(rec) else "–"})
    energy = energy_retention(root, fraction)      # the same networks as the energy figure
    if len(energy):
        r, n = comparison.correlation(energy["share"], energy["kept"])
        evidence = (f"the filters pruned at {f} carry this share (%) of their layers' post-BatchNorm energy: "
                    + _arm_means(energy, "share", comparison.ARMS)
                    + f"; across the {n} networks whose BatchNorm statistics are recorded, the share and the "
                      f"accuracy kept one shot (of unpruned) correlate at r = {r:.2f} (with so few networks, "
                      "a pointer, not a law); whether filters are near zero, the paper's mechanism, is in the "
                      "filter-norm figure above.")
    else:
        evidence = "no network has its BatchNorm running statistics recorded yet"
    rows.append({"cause": "which filters the norm ranking removes (the paper's mechanism)", "evidence": evidence,
                 "status": f"measured on {len(energy)} networks" if len(energy) else "not run yet"})
    res = comparison.load(RESNET_GRID, root)
    if len(res["pruning"]):
        s = comparison.summary(comparison.accuracy(res["pruning"]), [fraction])
        evidence = (f"the paper's ResNet at its own width, one shot at {f} (%): "
                    + "; ".join(f"{comparison.ARM_LABELS[x.arm]} {_pct(x.mean)}" for x in s.itertuples())
                    + " (see the ResNet section; published values beside it there)")
    else:
        evidence = "the paper's ResNet at its own width answers it (grid `cpu-cifar10-resnet`)"
    rows.append({"cause": "width (VGG-16 at a quarter of its channels)", "evidence": evidence,
                 "status": _grid_status(runs, RESNET_GRID)})
    rows.append({"cause": "training length (26 epochs instead of 230)",
                 "evidence": _length_text(root, fraction, one),
                 "status": _grid_status(runs, LENGTH_GRID)})
    dc = one[one["arm"].isin(["bridgeout", "targeted_dropconnect"])]
    s = comparison.summary(dc, [fraction]) if len(dc) else pd.DataFrame()
    rows.append({"cause": "the amount of noise against the exponent q (the scripts' q = None path)",
                 "evidence": ((f"at p = 0.3, one shot at {f} (%): "
                               + "; ".join(f"{comparison.ARM_LABELS[x.arm]} {_pct(x.mean)}"
                                           + (f" ± {_pct(x.sd)}" if x.n > 1 else "") for x in s.itertuples())
                               + "; " + _noise_text(root) + _matched_text(root, fraction, one))
                              if len(s) else "–"),
                 "status": _grid_status(runs, NOISE_GRID)})
    pub = results.load_joined(root, pruner="published")
    rows.append({"cause": "the authors' pruner (it also zeroes BatchNorm scales)",
                 "evidence": ("rows of the published pruner on the same weights: "
                              f"{pub['run_id'].nunique()} networks" if len(pub) else
                              "pass `notebooks/passes/published-pruner.yaml` on the kept weights"),
                 "status": "measured" if len(pub) else "not run yet"})
    gap = (cpu["runs"]["best_test_acc"] - cpu["runs"]["final_test_acc"]) if len(cpu["runs"]) else pd.Series(dtype=float)
    rows.append({"cause": "final weights pruned here, the best-on-test epoch in the paper",
                 "evidence": (f"the best epoch's test accuracy exceeds the final one by {_mean_sd(gap)} points "
                              f"(CPU comparison, {len(gap)} runs): selecting on the test set lifts the unpruned "
                              "point by that much at most, not the pruned curve's shape") if len(gap) else "–",
                 "status": "measured" if len(gap) else "not run yet"})
    return pd.DataFrame(rows)


def markdown(causes: pd.DataFrame) -> str:
    """:func:`table` as a Markdown table.

    Args:
        causes: the table of :func:`table`.

    Returns:
        the Markdown table.
    """
    lines = ["| candidate cause | what the runs show | status |", "| --- | --- | --- |"]
    lines += [f"| {r.cause} | {r.evidence} | {r.status} |" for r in causes.itertuples()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- verdict
def _relative_at(acc: pd.DataFrame, arm: str, fraction: float) -> float:
    rel = comparison.relative(acc[acc["arm"] == arm])
    v = rel[np.isclose(rel["fraction"], fraction)]["test_acc"]
    return float(v.mean()) if len(v) else math.nan


def _bn_recovered(root, fraction: float) -> pd.Series:
    """Per arm of the CPU comparison: the mean share of the one-shot loss at ``fraction`` that
    re-estimating BatchNorm wins back (empty before the runs)."""
    cpu = comparison.load(CPU_GRID, root)
    if not len(cpu["pruning"]):
        return pd.Series(dtype=float)
    one = comparison.accuracy(cpu["pruning"])
    rec = comparison.bn_recovery(one, comparison.accuracy(cpu["pruning"], recalibrate_bn=True), fraction)
    return rec.groupby("arm")["recovered"].mean() if len(rec) else pd.Series(dtype=float)


def _width(root, fraction: float) -> dict | None:
    """The paper's ResNet at its width against the published panel, relative to unpruned: per
    arm ours, published and seeds; Bridgeout's gap to the panel and the quarter-width VGG-16's
    retention. None before Batch Bridgeout's ResNet run is in."""
    res = comparison.load(RESNET_GRID, root)
    if not len(res["pruning"]):
        return None
    acc = comparison.accuracy(res["pruning"])
    if "bridgeout" not in set(acc["arm"]):
        return None
    pub = comparison.paper_relative(paper.curve("resnet", "cifar10"))
    pub_at = pub[np.isclose(pub["fraction"], fraction)].set_index("regularizer")["accuracy"]
    cpu = comparison.load(CPU_GRID, root)
    arms = [a for a in ("bridgeout", "weight_decay", "dropout") if a in set(acc["arm"])]
    seeds = acc.groupby("arm")["seed"].nunique()
    rows = {a: (_relative_at(acc, a, fraction), float(pub_at.get(a, math.nan)), int(seeds[a])) for a in arms}
    vgg = _relative_at(comparison.accuracy(cpu["pruning"]), "bridgeout", fraction) if len(cpu["pruning"]) else math.nan
    gap = rows["bridgeout"][1] - rows["bridgeout"][0]
    return {"arms": rows, "gap": gap, "closes": gap < 0.1, "vgg": vgg}


def verdict(root=None, fraction: float = 0.3) -> str:
    """What the runs settle about the gap so far (Markdown, one paragraph per finding): the
    BatchNorm statistics, width (the paper's ResNet at its own width against the published
    panel, relative to unpruned accuracy), the paper's mechanism, and each same-weights
    pruner variant measured; then what is still open.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).
        fraction: the fraction pruned.

    Returns:
        the paragraphs, separated by blank lines.
    """
    f = f"{round(100 * fraction)} %"
    parts = []
    m = _bn_recovered(root, fraction)
    if len(m):
        parts.append(f"**BatchNorm statistics: the larger part of the collapse.** Re-estimating them after "
                     f"pruning {f} wins back {_pct(m.min())}-{_pct(m.max())} % of each arm's one-shot loss "
                     f"(arm means, VGG-16 ×0.25): most of what the one-shot curve measures is statistics "
                     f"gathered before pruning (and, for the noise-trained arms, under the noise), not "
                     f"the filters' content. The paper's procedure keeps them stale, so its curves and ours "
                     f"measure the same thing; how stale they are is what the training changes.")
    w = _width(root, fraction)
    if w is not None:
        ours = "; ".join(f"{comparison.ARM_LABELS[a]} {_pct(o)} % (published {_pct(p)} %, {n} seed{'s' * bool(n != 1)})"
                         for a, (o, p, n) in w["arms"].items())
        seeds = min(n for _, _, n in w["arms"].values())
        head = ("closes most of the gap" if w["closes"] else "no sign that it is the main cause" if seeds < 3
                else "not the main cause")
        parts.append(f"**Width: {head} ({plural(seeds, 'seed')} per arm so far).** At its published "
                     f"width, the paper's ResNet keeps this share of its unpruned accuracy with {f} of its filters "
                     f"zeroed one shot: {ours}; the quarter-width VGG-16's Batch Bridgeout keeps "
                     f"{_pct(w['vgg'])} %. " + ("" if w["closes"] else
                     f"Full width leaves Bridgeout {_pct(w['gap'])} points of retention below the published panel, "
                     f"so the schedule (26 epochs, not 230) is the next suspect."))
    diagnosed = []
    for key, (label, _) in VARIANTS.items():
        eff = variant_effect(root, key, fraction)
        if len(eff):
            diagnosed += [label] if key != "published" else []
            parts.append(f"**The pruner: {label}.** On the same weights (the kept bf16 parity networks), at {f} one "
                         "shot, it changes accuracy by "
                         + "; ".join(f"{comparison.ARM_LABELS.get(r.arm, r.arm)} {_points(r.diff)} points "
                                     f"({_pct(r.plain)} → {_pct(r.variant)}, {r.n} network{'s' * bool(r.n != 1)})"
                                     for r in eff.itertuples()) + "."
                         + (" It lowers Batch Bridgeout's curve, so it cannot be why the published curves lie above "
                            "ours." if key == "published" and "bridgeout" in set(eff["arm"])
                            and float(eff.set_index("arm").loc["bridgeout", "diff"]) < 0 else ""))
    if diagnosed:
        parts.append(f"The authors' code uses neither {' nor '.join(diagnosed)} (facts sheet, pruning protocol): "
                     "these variants say what the one-shot loss is made of, not why the published curves lie higher."
                     if len(diagnosed) > 1 else
                     f"The authors' code does not use {diagnosed[0]} (facts sheet, pruning protocol): it says what the "
                     "one-shot loss is made of, not why the published curves lie higher.")
    one = onelayer.table(root)
    if len(one):
        parts.append(onelayer.markdown(one, fraction))
    runs = results.load("runs", root)
    open_ = [f"training length (`{LENGTH_GRID}`: {_grid_status(runs, LENGTH_GRID)})",
             f"the amount of noise against q (`{NOISE_GRID}`: {_grid_status(runs, NOISE_GRID)})"]
    open_ += [f"{label} (not run yet)" for key, (label, _) in VARIANTS.items() if not len(variant_effect(root, key, fraction))]
    if not len(one):
        open_.append("one layer at a time (not run yet)")
    parts.append("**Still open:** " + "; ".join(open_) + ".")
    return "\n\n".join(parts)


def headline(root=None, fraction: float = 0.3) -> str:
    """One sentence for the introduction, under the verdict: why our curves sit below the
    paper's, as far as the runs settle it, and what is still being measured.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).
        fraction: the fraction pruned.

    Returns:
        the sentence (Markdown).
    """
    f = f"{round(100 * fraction)} %"
    said = []
    m = _bn_recovered(root, fraction)
    if len(m):
        said.append(f"most of every arm's one-shot loss at {f} is stale BatchNorm statistics ({100 * m.min():.0f}–"
                    f"{100 * m.max():.0f} % of it comes back when they are re-estimated; the paper keeps them stale too)")
    w = _width(root, fraction)
    if w is not None:
        o, p, n = w["arms"]["bridgeout"]
        said.append(f"the paper's own ResNet at full width keeps {_pct(o)} % of its accuracy there against "
                    f"{_pct(p)} % published ({n} seed{'s' * bool(n != 1)}), so width "
                    + ("closes most of the gap" if w["closes"] else "shows no sign of being the main cause" if n < 3
                       else "is not the main cause"))
    eff = variant_effect(root, "published", fraction)
    bo = eff[eff["arm"] == "bridgeout"] if len(eff) else eff
    if len(bo) and float(bo["diff"].iloc[0]) < 0:
        said.append(f"the authors' pruner (it also zeroes BatchNorm scales) lowers Bridgeout by "
                    f"{_pct(-float(bo['diff'].iloc[0]))} points instead of raising it")
    runs = results.load("runs", root)
    n = int((runs["grid"] == LENGTH_GRID).sum()) if len(runs) else 0
    nxt = ("the training length is not measured yet (none of its 52-epoch runs has finished)" if n == 0 else
           f"the training length is being measured ({n} of {GRID_SIZES[LENGTH_GRID]} 52-epoch runs in)"
           if n < GRID_SIZES[LENGTH_GRID] else "the 52-epoch runs are in (see the why-section)")
    if not said:
        return f"**Why below the paper:** not measured yet; {nxt}."
    return "**Why below the paper:** " + "; ".join(said) + f"; {nxt}."


# ------------------------------------------------------------------------------- prediction
#: The written prediction of the full-scale outcome (the paper's ResNet, CIFAR-10, 230 epochs,
#: 3 seeds, one shot at 30 %), fixed before any such run: share of unpruned accuracy kept.
PREDICTION = {"bridgeout_at_least": 0.70, "weight_decay_at_most": 0.30, "refuted_below": 0.50}


def prediction(root=None, fraction: float = 0.3) -> str:
    """The prediction (:data:`PREDICTION`) with the evidence it rests on, from the tables.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).
        fraction: the fraction pruned the prediction is about.

    Returns:
        the paragraph (Markdown).
    """
    pub = comparison.paper_relative(paper.curve("resnet", "cifar10"))
    pub_at = pub[np.isclose(pub["fraction"], fraction)].set_index("regularizer")["accuracy"]
    res = comparison.load(RESNET_GRID, root)
    acc = comparison.accuracy(res["pruning"]) if len(res["pruning"]) else pd.DataFrame(columns=["arm"])
    have = set(acc["arm"])
    f = f"{round(100 * fraction)} %"
    evidence = []
    if "weight_decay" in have:
        evidence.append(f"our weight-decay ResNet already keeps {_pct(_relative_at(acc, 'weight_decay', fraction))} % "
                        f"of its unpruned accuracy at {f}, the published one {_pct(pub_at['weight_decay'])} %: the "
                        f"baseline collapses as published even at 26 epochs")
    if "bridgeout" in have:
        runs = res["runs"]
        b, w = (runs[runs["arm"] == a]["final_test_acc"] for a in ("bridgeout", "weight_decay"))
        evidence.append(f"our Bridgeout ResNet keeps {_pct(_relative_at(acc, 'bridgeout', fraction))} % (published "
                        f"{_pct(pub_at['bridgeout'])} %) while it is still {_pct(w.mean() - b.mean())} points below "
                        f"weight decay unpruned (published: "
                        f"{_pct(paper.unpruned()[('resnet', 'cifar10', 'weight_decay')] - paper.unpruned()[('resnet', 'cifar10', 'bridgeout')])}): "
                        "Bridgeout is the arm the short schedule leaves unfinished")
    p = PREDICTION
    return ("**Prediction (written before any full-scale run).** Trained with the published protocol (230 epochs) "
            f"at full width, the paper's ResNet on CIFAR-10 keeps at least {round(100 * p['bridgeout_at_least'])} % of its "
            f"unpruned accuracy with Batch Bridgeout at {f} of its filters zeroed one shot, and at most "
            f"{round(100 * p['weight_decay_at_most'])} % with weight decay (mean over 3 seeds): the published ordering "
            f"holds, and the gap between our curves and the paper's is the schedule. It is refuted if Bridgeout keeps less "
            f"than {round(100 * p['refuted_below'])} %: then length is not the cause, and the authors' pruner and "
            f"their best-on-test selection are what is left to examine. Between {round(100 * p['refuted_below'])} % and "
            f"{round(100 * p['bridgeout_at_least'])} % it is inconclusive: length then explains part of the gap, not all. "
            + ("It rests on this: " + "; ".join(evidence) + "." if evidence else "No ResNet run is in yet to rest it on."))
