"""The book's reproducibility summary, written from the result tables.

:func:`at_a_glance` returns the sentences of the summary box that opens the introduction
and the reproduction chapter (the shape of the ML Reproducibility Challenge reports: scope,
what ran at what scale and with how many seeds, the outcome, what was hard, what differs),
each computed from ``data/results/`` so that it can never drift from the tables. The pages
glue them (MyST-NB ``glue``) rather than typing any number.
"""
from __future__ import annotations


from . import comparison, paper, results
from .comparison import did_not_train
from .fmt import mean_sd as _mean_sd, pct as _pct, pct
from .protocols import PROTOCOLS

__all__ = ["CPU_GRID", "CPU_SEEDS", "at_a_glance"]

#: The CPU-scale comparison grid (``notebooks/grids/cpu-cifar10-vgg.yaml``) and its planned seeds.
CPU_GRID = "cpu-cifar10-vgg"
CPU_SEEDS = 3




def _paper_scale(root) -> str:
    j = results.load_joined(root)
    full = j[paper.method_mask(j) & paper.scale_mask(j)] if len(j) else j
    if full.empty:
        return ("**At the paper's scale: nothing.** No panel of the paper has been trained with the "
                "published protocol (230 epochs, full width): that needs a GPU, and none has been lent "
                "to this project yet.")
    n = full["run_id"].nunique()
    panels = sorted(set(zip(full["model"], full["dataset"])))
    return (f"**At the paper's scale:** {n} runs, on {len(panels)} of the paper's 6 panels "
            f"({', '.join(f'{m}/{d}' for m, d in panels)}).")


def _cpu_lines(root) -> tuple[str, str]:
    comp = comparison.load(CPU_GRID, root)
    runs = comp["runs"]
    planned = CPU_SEEDS * len(comparison.ARMS)
    if runs.empty:
        return (f"**At CPU scale (VGG-16 ×0.25, full CIFAR-10):** 0 of {planned} runs "
                f"finished yet.", "**Outcome:** no CPU-scale result yet.")
    n = runs.groupby("arm")["seed"].nunique()
    seeds = ", ".join(f"{comparison.ARM_LABELS[a]} {n.get(a, 0)}" for a in comparison.ARMS)
    epochs = ", ".join(str(e) for e in sorted(runs["epochs"].unique()))
    ran = (f"**At CPU scale (VGG-16 ×0.25, full CIFAR-10, {epochs} epochs, one CPU core per run):** "
           f"{len(runs)} of {planned} runs finished (seeds: {seeds}).")
    acc = comparison.accuracy(comp["pruning"])
    s = comparison.summary(acc)
    unpruned = "; ".join(f"{comparison.ARM_LABELS[a]} {_mean_sd(runs[runs['arm'] == a]['final_test_acc'])} %"
                         for a in comparison.ARMS if a in set(runs["arm"]))
    at30 = s[(s["fraction"] - 0.3).abs() < 1e-9]
    at30_txt = "; ".join(f"{comparison.ARM_LABELS[r.arm]} {_pct(r.mean)} %" for r in at30.itertuples())
    out = comparison.outcome(s)
    check = comparison.training_check(comp["history"], runs)
    if check["at_chance"].any():
        verdict = (f"{int(check['at_chance'].sum())} of {len(check)} runs ended near chance, so no "
                   f"comparison is drawn from them.")
    elif out.empty:
        verdict = "Not every arm has finished a run yet, so no comparison is drawn."
    else:
        k = int(out["ahead"].sum())
        verdict = (f"Batch Bridgeout (q = 1.5) is ahead of both weight decay and Dropout at {k} of "
                   f"{len(out)} pruning fractions between 20 and 50 %"
                   + (" (seed means; fewer than three seeds per arm so far)" if int(s["n"].min()) < CPU_SEEDS
                      else ""))
        at0 = s[(s["fraction"]).abs() < 1e-9].set_index("arm")["mean"]
        best0 = max(("weight_decay", "dropout"), key=lambda a: at0[a])
        verdict += (f", while starting {100 * (at0[best0] - at0['bridgeout']):.1f} points below "
                    f"{comparison.ARM_LABELS[best0]} unpruned.")
    outcome = (f"**Outcome so far (CPU scale):** unpruned test accuracy {unpruned}. With 30 % of the "
               f"filters of every layer zeroed: {at30_txt}. {verdict}")
    return ran, outcome


#: The teaching grid the summary reports (peak lr 0.05, five seeds), and the earlier one
#: (peak lr 0.1, three seeds) whose runs that did not train it counts.
TEACH_GRID, TEACH_GRID_LR01 = "mnist-teaching-5seed", "mnist-teaching"


def _teaching_line(runs) -> str:
    def stuck(frame):      # the book's one rule (bridgeout.comparison.did_not_train), per regularizer
        return int(did_not_train(frame["final_test_acc"], frame["regularizer"]).sum())

    teach, old = runs[runs["grid"] == TEACH_GRID], runs[runs["grid"] == TEACH_GRID_LR01]
    if not len(teach):
        return "**Teaching scale (LeNet-5, MNIST):** no run yet."
    seeds = teach.groupby("regularizer")["seed"].nunique()
    per = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    line = (f"**Teaching scale (LeNet-5, MNIST, 3 epochs, peak learning rate 0.05):** {len(teach)} runs, "
            f"{per} seeds per regularizer, {stuck(teach)} of them did not train")
    if len(old):
        line += (f" (at the fast schedule's peak learning rate of 0.1, {stuck(old)} of {len(old)} runs "
                 f"did not)")
    return line + "."


SPARSITY_GRID = "cpu-cifar10-sparsity"
ABLATION_GRID = "mnist-noise-ablation"


def _seeds(frame) -> str:
    n = frame["seed"].nunique()
    return f"{n} seed{'s' * (n != 1)}"


def _beyond_line(root) -> str:
    """The training-time sparsity baselines beside Batch Bridgeout (same CPU protocol, BatchNorm
    re-estimated, 30 % zeroed), Bridgeout against the best other arm after one epoch of
    fine-tuning, and the q ablation at 70 %: what *Beyond the paper* shows."""
    parts = []
    comp = comparison.load([CPU_GRID, SPARSITY_GRID], root)
    acc = comparison.accuracy(comp["pruning"], recalibrate_bn=True)
    arms = [a for a in ("bridgeout", "slimming", "group_lasso") if a in set(acc["arm"])]
    if {"slimming", "group_lasso"} & set(arms):
        at = acc[(acc["fraction"] - 0.3).abs() < 1e-9]
        parts.append("with 30 % of the filters of every layer zeroed and BatchNorm re-estimated, "
                     + "; ".join(f"{comparison.ARM_LABELS[a]} {_mean_sd(at[at['arm'] == a]['test_acc'])} % "
                                 f"({_seeds(at[at['arm'] == a])})" for a in arms))
    ft = comparison.accuracy(comp["pruning"], recalibrate_bn=False, finetune_epochs=1)
    ft = ft[(ft["fraction"] - 0.3).abs() < 1e-9]
    if "bridgeout" in set(ft["arm"]) and ft["arm"].nunique() > 1:
        means = ft.groupby("arm")["test_acc"].mean()
        best = means.drop("bridgeout").idxmax()
        parts.append("after one epoch of fine-tuning instead, "
                     + "; ".join(f"{comparison.ARM_LABELS[a]} {_mean_sd(ft[ft['arm'] == a]['test_acc'])} %"
                                 for a in ("bridgeout", best))
                     + f" (the best of {ft['arm'].nunique() - 1} other arms)")
    j = results.load_joined(root)
    abl = j[(j["grid"] == ABLATION_GRID) & (j["mode"] == "mask") & (j["criterion"] == "l2")
            & ~j["recalibrate_bn"].astype(bool) & ((j["fraction"] - 0.7).abs() < 1e-9)] if len(j) else j
    if len(abl):
        base = (abl["p"] == 0.3) & (abl["target_fraction"] == 0.75) & ~abl["signed"].astype(bool)
        by_q = abl[base].groupby("q")["test_acc"].mean()
        parts.append("in the noise ablation (LeNet-5 / MNIST, 3 epochs), with 70 % zeroed: "
                     + ", ".join(f"q = {q:g} {_pct(a)} %" for q, a in by_q.items()))
    if not parts:
        return "**Beyond the paper:** no run yet."
    return "**Beyond the paper:** " + "; ".join(parts) + "."


def at_a_glance(root=None) -> dict[str, str]:
    """The summary's sentences (Markdown), keyed ``scope``, ``paper_scale``, ``cpu``,
    ``outcome``, ``beyond``, ``teaching``, ``hard``, ``differs``.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        the sentences.

    Raises:
        ValueError: a malformed result table.
    """
    runs = results.load("runs", root)
    cpu_line, outcome = _cpu_lines(root)
    teaching = _teaching_line(runs)
    cpu, paper_p = PROTOCOLS["cpu"], PROTOCOLS["paper"]
    cpu_steps = cpu.epochs * -(-50_000 // cpu.batch_size)
    short = runs[runs["grid"].isin(("cpu-cifar10", "cpu-cifar10-e12"))]
    short_steps = (short["epochs"] * -(-short["n_train"] // 128)).astype(int)
    hard_runs = (f"CPU runs of {short_steps.min():,}-{short_steps.max():,} SGD steps left it near chance, "
                 if len(short) else "short runs leave it near chance, ")
    return {
        "scope": ("**Claim tested:** networks trained with Batch Bridgeout keep more test accuracy than "
                  "the same networks trained with Dropout or weight decay alone when a growing fraction "
                  "of the smallest-norm filters of every layer is zeroed after training, without "
                  "fine-tuning (Khan & Stavness 2020)."),
        "paper_scale": _paper_scale(root),
        "cpu": cpu_line,
        "outcome": outcome,
        "beyond": _beyond_line(root),
        "teaching": teaching,
        "hard": ("**What was hard:** Batch Bridgeout with q = 1.5 trains slowly (its noise exceeds the "
                 f"weight itself at initialisation): {hard_runs}so the CPU comparison trains on the full "
                 f"training set for {cpu_steps:,} steps."),
        "differs": (f"**What differs from the paper:** a quarter of VGG-16's width and {cpu.epochs} instead "
                    f"of {paper_p.epochs} epochs at CPU scale; the final weights are pruned, not the "
                    f"best-on-test checkpoint; "
                    "two readings of the published noise (q = 1.5, and the scripts' default path, "
                    "targeted DropConnect) are both run. Every deviation is listed in the *Method* chapter."),
    }


#: The two early CPU grids, too short to train Batch Bridgeout (a few epochs on a subset).
SHORT_GRIDS = ("cpu-cifar10", "cpu-cifar10-e12")


def short_runs_line(root=None) -> str:
    """What the early short CPU runs reached, per regularizer and model (Markdown): the range
    of their final test accuracy, against chance (10 %).

    The runs are those of :data:`SHORT_GRIDS`; a last sentence is added when every Bridgeout
    and Dropout run ended below every weight-decay run of the same network.

    Args:
        root: the folder of the result tables (default :func:`bridgeout.results.default_root`).

    Returns:
        the sentence(s); a note when there is no such run.
    """
    runs = results.load("runs", root)
    short = runs[runs["grid"].isin(SHORT_GRIDS)]
    if short.empty:
        return "No such run is in the tables."
    labels = {"weight_decay": "weight decay", "dropout": "Dropout", "bridgeout": "Bridgeout"}
    models = {"vgg16": "VGG-16 ×0.25", "resnet": "ResNet ×0.5"}
    parts = []
    for reg in ("bridgeout", "dropout", "weight_decay"):
        per = []
        for model, g in short[short["regularizer"] == reg].groupby("model", sort=False):
            lo, hi = g["final_test_acc"].min(), g["final_test_acc"].max()
            per.append(f"{pct(lo)}" + (f"-{pct(hi)}" if hi > lo else "") + f" % ({models.get(model, model)})")
        if per:
            parts.append(f"{labels[reg]} {', '.join(per)}")
    below = all(g[g["regularizer"] != "weight_decay"]["final_test_acc"].max()
                < g[g["regularizer"] == "weight_decay"]["final_test_acc"].min()
                for _, g in short.groupby("model") if (g["regularizer"] == "weight_decay").any())
    return ("Their final test accuracy (chance is 10 %): " + "; ".join(parts) + "."
            + (" Every Bridgeout and Dropout run ended below every weight-decay run of the same network."
               if below else ""))
