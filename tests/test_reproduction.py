"""Tests for bridgeout.reproduction and bridgeout.cpuscale: the reproduction chapter's tables,
sentences and figures follow synthetic tables, and every one of them has an empty-table path."""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bridgeout import comparison, cpuscale, paper, plots, reproduction, results, summary  # noqa: E402

from test_results import history_df, pruning_df, run_row  # noqa: E402

PAPER_SCALE = dict(model="vgg16", dataset="cifar10", protocol="paper", epochs=230, n_train=50000, width=1.0)
CPU_SCALE = dict(model="vgg16", dataset="cifar10", protocol="cpu", epochs=26, n_train=50000, width=0.25)
FRACTIONS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tables(root, runs, accs):
    """Write ``runs`` (dicts of run_row) and their one-shot pruning rows: run i keeps
    ``accs[i](fraction)`` at each of :data:`FRACTIONS`."""
    pr = []
    for r, acc in zip(runs, accs):
        p = pruning_df(r["run_id"], fractions=FRACTIONS)
        p["test_acc"] = [acc(f) for f in p["fraction"]]
        pr.append(p)
    results.append("runs", pd.DataFrame(runs), root)
    results.append("pruning", pd.concat(pr), root)


def _chapter(root):
    """Two seeds of Bridgeout and one of weight decay at the published scale, a reduced-scale
    grid (one seed of Dropout that trained, one that did not), and two MNIST runs."""
    runs = [run_row("b0", grid="paper-cifar10", seed=0, final_test_acc=0.90, wall_time_s=3600.0, **PAPER_SCALE),
            run_row("b1", grid="paper-cifar10", seed=1, final_test_acc=0.92, wall_time_s=7200.0, **PAPER_SCALE),
            run_row("w0", grid="paper-cifar10", regularizer="weight_decay", seed=0, final_test_acc=0.93,
                    wall_time_s=1800.0, **PAPER_SCALE),
            run_row("d0", grid="cpu-other", regularizer="dropout", seed=0, final_test_acc=0.80, **CPU_SCALE),
            run_row("d1", grid="cpu-other", regularizer="dropout", seed=1, final_test_acc=0.12, **CPU_SCALE),
            run_row("m0", grid="mnist-teaching", regularizer="weight_decay", seed=0, final_test_acc=0.98),
            run_row("m1", grid="mnist-teaching", regularizer="weight_decay", seed=1, final_test_acc=0.11)]
    accs = [lambda f: 0.90 - 0.5 * f, lambda f: 0.92 - 0.5 * f, lambda f: 0.93 - f,
            lambda f: 0.80 - f, lambda f: 0.12, lambda f: 0.98 - f, lambda f: 0.11]
    _tables(root, runs, accs)
    return reproduction.load(root)


# --------------------------------------------------------------------------- small helpers
def test_load_splits_the_joined_rows_by_method_and_scale(tmp_path):
    t = _chapter(tmp_path)
    assert len(t["runs"]) == 7 and len(t["joined"]) == 7 * len(FRACTIONS)
    assert set(t["full"]["run_id"]) == {"b0", "b1", "w0"}
    assert set(t["reduced"]["run_id"]) == {"d0", "d1", "m0", "m1"} and t["other"].empty
    assert reproduction.tables_text(t) == (
        "The tables hold **7** finished runs and **49** pruning measurements: **21** at the published scale and "
        "settings, **28** at a reduced scale, and **0** with other settings (ablations, other criteria, physical "
        "removal), which the *Beyond the paper* chapter uses.")
    empty = reproduction.load(tmp_path / "none")
    assert all(f.empty for f in empty.values())
    assert reproduction.tables_text(empty).startswith("The tables hold **0** finished runs and **0** pruning")


def test_choose_checkpoint_prefers_the_final_epoch():
    rows = pd.DataFrame({"select": ["best", "final", "best"], "x": [1, 2, 3]})
    chosen, sel = reproduction.choose_checkpoint(rows)
    assert sel == "final" and list(chosen["x"]) == [2]
    chosen, sel = reproduction.choose_checkpoint(rows[rows["select"] == "best"])
    assert sel == "best" and list(chosen["x"]) == [1, 3]
    chosen, sel = reproduction.choose_checkpoint(rows.iloc[0:0])
    assert sel is None and chosen.empty


def test_arms_labels_and_seed_counts():
    settings = [("bridgeout", 1.5, False, 0), ("bridgeout", 1.5, False, 1), ("bridgeout", 2.0, True, 0),
                ("bridgeout", 2.0, False, 0), ("weight_decay", 1.5, True, 4)]
    rows = pd.DataFrame([run_row(f"r{i}", regularizer=reg, q=q, signed=s, seed=seed)
                         for i, (reg, q, s, seed) in enumerate(settings)])
    assert list(reproduction.arms(rows)) == ["bridgeout", "bridgeout", "targeted_dropconnect", "bridgeout-q2",
                                             "weight_decay"]
    assert reproduction.arm_label("bridgeout-q1.25-signed") == "Bridgeout q = 1.25, signed"
    assert reproduction.arm_label("dropout") == "targeted Dropout"
    assert reproduction.seeds_per_regularizer(rows) == (
        "Batch Bridgeout (q = 1.5): 2; Bridgeout q = 2: 1; targeted DropConnect (signed, q = 2): 1; "
        "weight decay only: 1")
    assert reproduction.seeds_per_regularizer(rows.iloc[0:0]) == "none"
    assert cpuscale.arm_text("bridgeout-q2") == "bridgeout-q2" and cpuscale.arm_text("dropout") == "targeted Dropout"


def test_values_and_scale_text():
    rows = pd.DataFrame([run_row("a", width=0.25, epochs=52, n_train=50000),
                         run_row("b", width=0.5, epochs=26, n_train=50000, select="best")])
    assert reproduction.values(rows, "epochs") == "26, 52"
    assert reproduction.values(rows.assign(epochs=np.nan), "epochs") == ""
    assert reproduction.scale_text(rows) == ("protocol smoke, width 0.25, 0.5, 26, 52 epochs, 50,000 training "
                                             "images, checkpoint: best, final")


# --------------------------------------------------------------------------- the panels
def test_status_table_says_what_each_panel_has(tmp_path):
    t = _chapter(tmp_path)
    s = reproduction.status_table(t["full"], t["reduced"]).set_index("panel")
    assert len(s) == len(paper.PANELS)
    vgg = s.loc["VGG-16 / CIFAR-10"]
    assert vgg["status"] == "run at the published scale"
    assert vgg["seeds per regularizer"] == "Batch Bridgeout (q = 1.5): 2; weight decay only: 1"
    assert vgg["training time (h)"] == "3.5"                       # (3600 + 7200 + 1800) s
    assert vgg["scale"].startswith("protocol paper, width 1, 230 epochs, 50,000 training images")
    assert (s.drop("VGG-16 / CIFAR-10")["status"] == "not run yet").all()
    # the same rows at a reduced scale only
    s = reproduction.status_table(t["full"].iloc[0:0], t["full"]).set_index("panel")
    assert s.loc["VGG-16 / CIFAR-10", "status"] == "not run at the published scale; reduced-scale runs only (below)"
    empty = reproduction.status_table(t["full"].iloc[0:0], t["full"].iloc[0:0])
    assert set(empty["status"]) == {"not run yet"} and set(empty["scale"]) == {"–"}


def test_deltas_table_is_ours_minus_the_published_curve(tmp_path):
    t = _chapter(tmp_path)
    wide = reproduction.deltas_table(t["full"])
    pub = paper.curve("vgg16", "cifar10").set_index(["regularizer", "fraction"])["accuracy"]
    bb = wide.loc[("VGG-16 / CIFAR-10", "Batch Bridgeout", 2)]
    # Bridgeout at 20 %: seeds 0.80 and 0.82 -> mean 0.81, sd 0.0141
    assert bb[("20 %", "ours")] == "81.0" and bb[("20 %", "sd")] == "1.4"
    assert bb[("20 %", "paper")] == f"{100 * pub[('bridgeout', 0.2)]:.1f}"
    assert bb[("20 %", "delta")] == f"{100 * (0.81 - pub[('bridgeout', 0.2)]):+.1f}"
    wd = wide.loc[("VGG-16 / CIFAR-10", "Weight decay only", 1)]
    assert wd[("0 %", "ours")] == "93.0" and wd[("0 %", "sd")] == ""              # one seed: no sd
    assert [c[0] for c in wide.columns[::4]] == ["0 %", "20 %", "40 %", "60 %"]
    assert reproduction.deltas_table(t["full"].iloc[0:0]).empty


def _six(t, resnet_acc=None, resnet_runs=None):
    fig, axes = plt.subplots(3, 2, figsize=(6.8, 9.6), sharex=True)
    empty = pd.DataFrame(columns=["run_id", "arm", "seed", "fraction", "test_acc"])
    text = reproduction.draw_six_panels(fig, axes, t, paper.load_curves(),
                                        empty if resnet_acc is None else resnet_acc,
                                        pd.DataFrame() if resnet_runs is None else resnet_runs)
    return fig, axes, text


def test_six_panels_say_what_each_panel_holds(tmp_path):
    t = _chapter(tmp_path)
    fig, axes, text = _six(t)
    assert text == ("Solid lines with filled markers are our runs, on VGG-16 / CIFAR-10 only; the other panels "
                    "show the published curves alone.")
    titles = {ax.get_title() for ax in axes.ravel()}
    assert "VGG-16 / CIFAR-10\nsolid: ours at the published scale" in titles
    assert "ResNet / CIFAR-10\npublished only (needs a GPU)" in titles
    assert "WRN-28-10 / CIFAR-100\npublished only (no CIFAR-100 here)" in titles
    assert fig._suptitle.get_text().startswith("Test accuracy after one-shot pruning")
    assert plots.undrawn_legend_entries(fig) == []
    # the ResNet grid's means drawn on its panel when no published-scale ResNet run exists
    acc = pd.DataFrame([{"run_id": f"{a}{s}", "arm": a, "seed": s, "fraction": f, "test_acc": 0.9 - f}
                        for a in ("weight_decay", "bridgeout", "targeted_dropconnect") for s in (0, 1)
                        for f in (0.0, 0.3)]).iloc[:-1]
    fig, axes, text = _six({**t, "full": t["full"].iloc[0:0]}, acc, pd.DataFrame({"epochs": [26, 26]}))
    res = axes[paper.MODELS.index("resnet"), 0]
    assert res.get_title() == "ResNet / CIFAR-10\nsolid: ours, width 1, 26 epochs, 2+ seeds"
    assert len(res.lines) > 0 and text.startswith("Solid lines with filled markers are our runs, on ResNet / CIFAR-10")
    assert axes[0, 0].get_title() == "VGG-16 / CIFAR-10\npublished only; ours at ×0.25 width: above"


def test_six_panels_without_any_run(tmp_path):
    t = reproduction.load(tmp_path)
    fig, axes, text = _six(t)
    assert text == "No panel carries runs of ours yet."
    assert fig._suptitle.get_text() == "The published curves (no panel has been run at the published scale)"
    assert plots.undrawn_legend_entries(fig) == []


def test_scale_figure_draws_a_run_that_did_not_train_dotted(tmp_path):
    t = _chapter(tmp_path)
    rows = t["reduced"][t["reduced"]["grid"] == "cpu-other"]
    fig = reproduction.scale_figure(rows, t["runs"])
    ax = fig.axes[0]
    assert ax.get_title() == "VGG-16 / CIFAR-10"
    dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and np.allclose(dotted[0].get_ydata(), 12.0)     # d1, at chance
    note = [x.get_text() for x in ax.texts]
    assert note == ["dotted: did not train,\nleft out of the mean:\nDropout seed 1"]
    assert fig._suptitle.get_text().startswith("Reduced scale (cpu-other): protocol cpu, width 0.25, 26 epochs")
    # one figure for every reduced run: two panels (VGG-16 / CIFAR-10 and LeNet-5 / MNIST), no grid name
    fig = reproduction.scale_figure(t["reduced"].assign(grid=""), t["runs"])
    assert len(fig.axes) == 2 and fig._suptitle.get_text().startswith("Reduced scale (runs without a grid)")


# --------------------------------------------------------------------------- the inventories
def test_short_mnist_inventory_and_per_run_tables(tmp_path):
    t = _chapter(tmp_path)
    runs = t["runs"]
    short = reproduction.short_runs_table(runs.assign(grid=["cpu-cifar10"] * 7), ("cpu-cifar10",))
    d0 = short[(short["regularizer"] == "Dropout") & (short["seed"] == 0)].iloc[0]
    assert d0["steps"] == 26 * 391 and d0["width"] == "0.25" and d0["unpruned test acc. (%)"] == 80.0
    assert reproduction.short_runs_table(runs, summary.SHORT_GRIDS).empty
    mn = reproduction.mnist_table(runs).iloc[0]
    assert (mn["grid"], mn["seeds"], mn["did not train"]) == ("mnist-teaching", 2, 1)
    assert mn["mean unpruned test acc. (%)"] == pytest.approx(54.5)
    assert reproduction.mnist_table(runs.iloc[0:0]).empty
    inv = reproduction.inventory_table(runs).set_index("grid")
    assert inv.loc["paper-cifar10", "runs"] == 3 and inv.loc["paper-cifar10", "training time (h)"] == "3.50"
    assert inv.loc["paper-cifar10", "width"] == "1" and inv.loc["cpu-other", "devices"] == "cpu"
    per = reproduction.per_run_table(runs, results.load("pruning", tmp_path)).set_index("seed", append=True)
    b1 = per[per["grid"] == "paper-cifar10"].iloc[1]
    assert b1["arm"] == "Batch Bridgeout (q = 1.5)" and b1["unpruned"] == pytest.approx(92.0)
    assert b1["30% pruned"] == pytest.approx(77.0) and b1["70% pruned"] == pytest.approx(57.0)
    wd = per[per["arm"] == "weight decay only"].iloc[0]
    assert math.isnan(wd["q"]) and math.isnan(wd["p"]) and wd["signed"] == ""       # no noise settings
    assert list(per["did not train"]).count("yes") == 2                            # d1 and m1 at chance
    assert reproduction.did_not_train_text(per) == (
        "**2** of 7 runs did not train (`bridgeout.comparison.did_not_train`: within 5 points of chance, "
        "or more than 20 below the median of their grid and arm).")


# --------------------------------------------------------------------------- the CPU sections
def _grid(root, arms_acc, grid=summary.CPU_GRID, precision="fp32"):
    """A CPU comparison grid: per (arm, seed, unpruned accuracy, slope), a run whose
    accuracy at fraction f is ``acc - slope * f`` (BatchNorm re-estimated: 0.05 higher), a
    four-epoch history that levelled off, and a filter table."""
    arm_params = {"weight_decay": ("weight_decay", 1.5, False), "dropout": ("dropout", 1.5, False),
                  "bridgeout": ("bridgeout", 1.5, False), "targeted_dropconnect": ("bridgeout", 2.0, True)}
    runs, pr, hist, filt = [], [], [], []
    for arm, seed, acc, slope in arms_acc:
        reg, q, signed = arm_params[arm]
        rid = f"{arm}{seed}"
        runs.append(run_row(rid, grid=grid, regularizer=reg, q=q, signed=signed, seed=seed, final_test_acc=acc,
                            wall_time_s=1800.0, device_name="test cpu", precision=precision, **CPU_SCALE))
        for recal in (False, True):
            p = pruning_df(rid, fractions=FRACTIONS).assign(recalibrate_bn=recal)
            p["test_acc"] = [round(acc - slope * f + 0.05 * recal, 6) for f in p["fraction"]]
            pr.append(p)
        h = history_df(rid, epochs=4)
        h["lr"], h["train_acc"] = [0.1, 0.1, 0.1, 0.02], [0.70, 0.70, 0.71, 0.8 + 0.01 * seed]
        hist.append(h)
        filt.append(pd.DataFrame({"run_id": rid, "layer": "features.0.conv", "filter": range(4),
                                  "norm": [1.0, 0.5, 0.05 if arm == "bridgeout" else 0.2, 0.3],
                                  "gamma": [1.0, -0.5, 0.05, 0.3], "beta": 0.0, "bn_mean": 0.0, "bn_var": 1.0}))
    results.append("runs", pd.DataFrame(runs), root)
    for name, frames in (("pruning", pr), ("history", hist), ("filters", filt)):
        results.append(name, pd.concat(frames), root)
    return comparison.load(grid, root)


FOUR = [("weight_decay", 0, 0.88, 1.2), ("weight_decay", 1, 0.90, 1.2), ("dropout", 0, 0.86, 1.0),
        ("bridgeout", 0, 0.84, 0.3), ("bridgeout", 1, 0.86, 0.3), ("targeted_dropconnect", 0, 0.87, 1.0)]


def test_cpu_scale_and_status_sentences(tmp_path):
    proto = SimpleNamespace(epochs=26, batch_size=128, lr=0.1, gamma=0.2, milestones=(7, 14, 18, 23),
                            momentum=0.9, weight_decay=5e-4)
    assert cpuscale.cpu_scale_text(proto) == (
        "Scale: width 0.25, 26 epochs = 10,166 steps of batch 128 on all 50,000 training images, lr 0.1 × 0.2 "
        "after epochs 7, 14, 18, 23; SGD with Nesterov momentum 0.9 and weight decay 0.0005 in every arm; "
        "p = 0.3, target fraction 0.75; the final weights are pruned; one CPU thread per run.")
    comp = _grid(tmp_path, FOUR)
    assert cpuscale.cpu_status_text(comp["runs"], 3) == (
        "**Status: 6 of 12 runs finished** (seeds per arm: weight decay only 2, targeted Dropout 1, Batch "
        "Bridgeout (q = 1.5) 2, targeted DropConnect (signed, q = 2) 1; 3.0 h of training on test cpu). 6 runs "
        "are still to come: every mean below is over the seeds finished so far, and the number of seeds is "
        "given with it.")
    one_each = comp["runs"][comp["runs"]["seed"] == 0]
    assert cpuscale.cpu_status_text(one_each, 1).startswith("**Status: 4 of 4 runs finished**")
    assert cpuscale.cpu_status_text(one_each, 1).endswith("Every planned run is in.")
    assert cpuscale.cpu_status_text(comp["runs"].iloc[0:0], 3).startswith("**No run of this grid is in the tables")
    assert cpuscale.resnet_status_text(comp["runs"].assign(precision="bf16"), 3) == (
        "**Status: 6 of 12 runs finished** (seeds per arm: weight decay only 2, targeted Dropout 1, Batch "
        "Bridgeout (q = 1.5) 2, targeted DropConnect (signed, q = 2) 1; 3.0 h of training, precision bf16). "
        "Every mean below is over the seeds finished so far, with their number; an arm without a run is "
        "missing from the figures, not zero.")
    assert cpuscale.resnet_status_text(comp["runs"].iloc[0:0], 3) == (
        "**Status: none of the 12 runs has finished yet**: the figures below show the published panel alone "
        "and say so.")


def test_cpu_arm_table_and_trained_text(tmp_path):
    comp = _grid(tmp_path, FOUR)
    check = comparison.training_check(comp["history"], comp["runs"])
    t = cpuscale.cpu_arm_table(comp["runs"], check).set_index("arm")
    assert list(t.index) == [comparison.ARM_LABELS[a] for a in comparison.ARMS]
    wd = t.loc["weight decay only"]
    # unpruned 0.88, 0.90: 89.0 ± 1.4; final train 0.80, 0.81: 80.5 ± 0.7; 2 x 1800 s
    assert (wd["seeds"], wd["unpruned test acc. (%)"], wd["final train acc. (%)"]) == (2, "89.0 ± 1.4", "80.5 ± 0.7")
    assert wd["levelled off before the last decay"] == "2 of 2" and wd["runs at chance"] == 0 and wd["hours"] == "1.0"
    assert cpuscale.cpu_arm_table(comp["runs"].iloc[0:0], check.iloc[0:0]).empty
    text = cpuscale.trained_text(check)
    assert text.startswith("Final training accuracy, mean ± sd over seeds (test accuracy in brackets): weight decay "
                           "only 80.5 ± 0.7 % (test 89.0 ± 1.4 %); targeted Dropout 80.0 % (test 86.0 %); ")
    assert text.endswith("Every finished run trained: none is near chance and every run's training accuracy "
                         "changed by at most 2 points over the last two epochs before the last decay.")
    stuck = check.assign(at_chance=check["run_id"] == "dropout0")
    assert cpuscale.trained_text(stuck).endswith(
        "**1 run(s) did not meet the bar** (near chance, or training accuracy still moving by more than 2 points "
        "before the last decay): targeted Dropout seed 0.")
    assert cpuscale.trained_text(stuck, explain=False).endswith(
        "**1 run(s) did not meet that bar**: targeted Dropout seed 0.")
    assert cpuscale.trained_text(comparison.training_check(comp["history"].iloc[0:0], comp["runs"])) == \
        "No run has finished yet."


def test_outcome_text_weighs_bridgeout_against_both_baselines(tmp_path):
    comp = _grid(tmp_path, FOUR)
    acc, check = comparison.accuracy(comp["pruning"]), comparison.training_check(comp["history"], comp["runs"])
    text = cpuscale.outcome_text(acc, "one shot, as published", check)
    # at 30 %: WD 0.88 - 0.36, 0.90 - 0.36 -> 53.0 ± 1.4; Dropout 0.86 - 0.3 -> 56.0; BB 0.84 - 0.09, 0.86 - 0.09
    assert text.startswith("Test accuracy (%) one shot, as published, mean ± sd over seeds (at least 1 per arm): "
                           "at 30 % pruned: weight decay only 53.0 ± 1.4, targeted Dropout 56.0, Batch Bridgeout "
                           "(q = 1.5) 76.0 ± 1.4, targeted DropConnect (signed, q = 2) 57.0; at 50 % pruned: ")
    # 20-50 %: BB minus the better baseline (Dropout): 0.85 - 0.06 - (0.86 - 0.2) = +13.0 ... +34.0 at 50 %
    assert ("Batch Bridgeout (q = 1.5) keeps more accuracy than both baselines at 4 of 4 fractions (20 %, 30 %, "
            "40 %, 50 %); its mean minus the better baseline's ranges from +13.0 to +34.0 points (some arm has a "
            "single seed so far") in text
    assert text.endswith("Unpruned, it starts at 85.0 % against 89.0 % for weight decay only, -4.0 points.")
    chance = check.assign(at_chance=check["run_id"] == "dropout0")
    assert ("1 of 6 runs ended near chance, so no comparison between the arms is drawn from these numbers."
            in cpuscale.outcome_text(acc, "x", chance))
    no_dropout = acc[acc["arm"] != "dropout"]
    assert ("Not every arm has a run yet, so Bridgeout cannot be compared with both baselines."
            in cpuscale.outcome_text(no_dropout, "x", check))
    assert cpuscale.outcome_text(acc.iloc[0:0], "with BatchNorm re-estimated", check) == \
        "No pruning measurement with BatchNorm re-estimated yet."


def test_outcome_text_with_two_seeds_everywhere_weighs_the_seed_sd(tmp_path):
    arms_acc = [(a, s, acc + 0.01 * s, sl) for a, acc, sl in (("weight_decay", 0.88, 1.2), ("dropout", 0.86, 1.0),
                                                               ("bridgeout", 0.84, 0.3)) for s in (0, 1)]
    comp = _grid(tmp_path, arms_acc)
    text = cpuscale.outcome_text(comparison.accuracy(comp["pruning"]), "one shot",
                                 comparison.training_check(comp["history"], comp["runs"]))
    assert "(at least 2 per arm)" in text
    # 20 %: BB 0.845 - 0.06 against Dropout 0.865 - 0.2: +12.0; 50 %: 0.695 - 0.365: +33.0; every lead
    # exceeds the seed sd (0.7 points)
    assert ("its mean minus the better baseline's ranges from +12.0 to +33.0 points, more than one seed sd at 4 "
            "of them. The claims table at the top of this chapter is stricter") in text


def test_filters_text_counts_small_filters_and_scales(tmp_path):
    comp = _grid(tmp_path, FOUR)
    text = cpuscale.filters_text(comp["filters"])
    # per run: norms / layer max; Bridgeout has one of 4 below 0.1 (0.05), the others none; |γ| 0.05 in every arm
    assert text.startswith("Share of filters whose norm is below a tenth of their layer's largest (in brackets: "
                           "share of channels whose |γ| is below a tenth of the layer's largest): weight decay only "
                           "0 % (25 %); targeted Dropout 0 % (25 %); Batch Bridgeout (q = 1.5) 25 % (25 %); ")
    assert "**Conclusion: the paper's mechanism is seen.**" in text
    assert cpuscale.filters_text(comp["filters"].iloc[0:0]) == "No filter table yet."


def test_resnet_texts_beside_the_published_panel(tmp_path):
    comp = _grid(tmp_path, FOUR, grid="cpu-cifar10-resnet")
    acc = comparison.accuracy(comp["pruning"])
    acc_r = comparison.accuracy(comp["pruning"], recalibrate_bn=True)
    curve = paper.curve("resnet", "cifar10")
    texts = cpuscale.resnet_texts(acc, acc_r, curve)
    assert list(texts) == ["resnet_outcome", "resnet_versus", "resnet_outcome_recal"]
    pub = curve.set_index(["regularizer", "fraction"])["accuracy"]
    assert texts["resnet_outcome"].startswith("One shot, as published, Batch Bridgeout keeps more than both "
                                              "baselines at every one of these fractions (20 %: +13.0 points "
                                              "against targeted Dropout")
    assert texts["resnet_outcome"].endswith(
        f"The published panel at 230 epochs: Batch Bridgeout {100 * pub[('bridgeout', 0.2)]:.1f}, "
        f"{100 * pub[('bridgeout', 0.3)]:.1f}, {100 * pub[('bridgeout', 0.4)]:.1f} % at 20 / 30 / 40 %; weight "
        f"decay {100 * pub[('weight_decay', 0.2)]:.1f}, {100 * pub[('weight_decay', 0.3)]:.1f}, "
        f"{100 * pub[('weight_decay', 0.4)]:.1f} %.")
    assert texts["resnet_versus"].startswith("Test accuracy (%), ours mean ± sd over seeds / published, one shot:\n\n"
                                             "| arm (seeds) | unpruned |")
    assert texts["resnet_outcome_recal"].startswith("With BatchNorm re-estimated, Batch Bridgeout keeps more")
    assert cpuscale.resnet_texts(acc, acc_r.iloc[0:0], curve)["resnet_outcome_recal"] == \
        "No BatchNorm-re-estimated sweep yet."
    lone = cpuscale.resnet_texts(acc[acc["arm"] == "bridgeout"], acc_r, curve)["resnet_outcome"]
    assert lone.startswith("Not every arm has a run yet, so Bridgeout cannot be compared with both baselines. "
                           "The published panel at 230 epochs")
    assert cpuscale.resnet_texts(acc.iloc[0:0], acc_r, curve) == {
        "resnet_outcome": "No pruning measurement of this grid yet.", "resnet_versus": "", "resnet_outcome_recal": ""}


# --------------------------------------------------------------------------- the CPU sections' figures
def _legend_labels(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_cpu_figures_draw_what_the_grid_holds(tmp_path):
    comp = _grid(tmp_path, FOUR)
    acc, acc_r = comparison.accuracy(comp["pruning"]), comparison.accuracy(comp["pruning"], recalibrate_bn=True)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4), layout="constrained")
    cpuscale.draw_training(fig, axes, comp["history"])
    assert axes[0].get_ylim() == (0, 100) and len(fig.legends) == 1 and plots.undrawn_legend_entries(fig) == []
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), sharey=True, layout="constrained")
    cpuscale.draw_cpu_pruning(fig, axes, acc, acc_r, paper.curve("vgg16", "cifar10"))
    assert _legend_labels(fig)[-1] == "published, full scale (shape only)" and axes[1].get_ylabel() == ""
    assert [ax.get_title() for ax in axes] == ["one shot (as published)", "BatchNorm re-estimated"]
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4), sharey=True, layout="constrained")
    cpuscale.draw_filters(fig, axes, comp["filters"])
    assert len(axes[0].lines) == 4 and plots.undrawn_legend_entries(fig) == []
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 6.6), sharex=True, layout="constrained")
    cpuscale.draw_resnet_pruning(fig, axes, acc, acc_r, paper.curve("resnet", "cifar10"))
    assert _legend_labels(fig)[-3:] == ["published: weight decay only", "published: targeted Dropout",
                                        "published: Batch Bridgeout (q = 1.5)"]
    assert axes[0, 0].get_xlabel() == "" and axes[1, 1].get_title() == "BatchNorm re-estimated, relative"


def _notes(ax):
    return [t.get_text() for a in ax.artists for t in getattr(a, "get_texts", lambda: [])()]


def test_cpu_figures_without_runs_say_so(tmp_path):
    comp = _grid(tmp_path, FOUR)
    none = {k: v.iloc[0:0] for k, v in comp.items()}
    acc = comparison.accuracy(none["pruning"])
    fig, axes = plt.subplots(1, 2)
    cpuscale.draw_training(fig, axes, none["history"])
    assert _notes(axes[0]) == [cpuscale.NO_RUN] and list(axes[0].get_xticks()) == [] and not fig.legends
    fig, axes = plt.subplots(1, 2)
    cpuscale.draw_cpu_pruning(fig, axes, acc, acc, paper.curve("vgg16", "cifar10"))
    assert _notes(axes[0]) == [cpuscale.NO_RUN] and axes[0].get_title() == "one shot (as published)"
    assert not fig.legends
    fig, axes = plt.subplots(1, 2)
    cpuscale.draw_filters(fig, axes, none["filters"])
    assert _notes(axes[1]) == [cpuscale.NO_RUN]
    fig, axes = plt.subplots(2, 2)
    cpuscale.draw_resnet_pruning(fig, axes, acc, acc, paper.curve("resnet", "cifar10"))
    assert _notes(axes[0, 0]) == [cpuscale.NO_RUN + "\n(published curves only)"]
    assert _notes(axes[1, 0]) == [cpuscale.NO_RUN]
    assert _legend_labels(fig) == ["published: weight decay only", "published: targeted Dropout",
                                   "published: Batch Bridgeout (q = 1.5)"]
    assert plots.undrawn_legend_entries(fig) == []


def test_draw_energy_writes_the_correlation():
    energy = pd.DataFrame({"run_id": ["a", "b", "c"], "arm": ["weight_decay", "bridgeout", "bridgeout"],
                           "grid": ["g2", "g1", "g1"], "model": "vgg16", "share": [0.1, 0.2, 0.3],
                           "kept": [0.9, 0.6, 0.3]})
    fig, ax = plt.subplots(layout="constrained")
    text = cpuscale.draw_energy(fig, ax, energy)
    assert text.startswith("Across the 3 networks whose BatchNorm statistics are recorded (`g1`, `g2`), the share "
                           "of energy the pruned filters carry and the accuracy kept correlate at r = -1.00. ")
    assert len(ax.lines) == 2 and len(fig.legends) == 1
    fig, ax = plt.subplots()
    assert cpuscale.draw_energy(fig, ax, energy.iloc[0:0]) == \
        "No network has its BatchNorm running statistics recorded yet."
    assert _notes(ax) == ["no network has its BatchNorm\nrunning statistics recorded yet"]
