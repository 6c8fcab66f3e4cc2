"""Tests for bridgeout.beyond and bridgeout.beyondplots: the chapter *Beyond the paper*'s sentences,
tables and figures, on synthetic tables whose numbers are worked out by hand below, and on
empty tables (the chapter renders before any run has finished)."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from bridgeout import ablation, beyond, comparison, plots, speed  # noqa: E402

from test_results import pruning_df, run_row  # noqa: E402

PLANNED = {"g-arms": 12, "g-penalties": 6}
SCALE = "VGG-16 on CIFAR-10"
# Test accuracy of a run: BASE - SLOPE * fraction + 0.02 * seed (+ 0.05 with BatchNorm re-estimated).
# Two seeds: mean + 0.01, sd 0.02 / sqrt(2) = 1.4 points. Slimming has one seed (no sd).
BASE = {"weight_decay": 0.90, "dropout": 0.85, "bridgeout": 0.80, "slimming": 0.88}
SLOPE = {"weight_decay": 1.5, "dropout": 1.2, "bridgeout": 0.3, "slimming": 0.6}
SEEDS = {"weight_decay": (0, 1), "dropout": (0, 1), "bridgeout": (0, 1), "slimming": (0,)}
# One-shot means:  f=0: WD 91, DO 86, BO 81, SL 88;  f=0.3: 46, 50, 72, 70;  f=0.5: 16, 26, 66, 58
# BN re-estimated: f=0.3: 51, 55, 77, 75;  f=0.5: 21, 31, 71, 63


def _prow(run_id, arm, seed, fraction, test_acc, **kw) -> dict:
    """One joined pruning row (the schema of test_results.pruning_df, with the run's arm and seed)."""
    row = pruning_df(run_id, fractions=(fraction,)).iloc[0].to_dict()
    row.update(arm=arm, seed=seed, test_acc=test_acc, flops=1000, **kw)
    return row


def _acc(arm, seed, f, recal=False):
    return BASE[arm] - SLOPE[arm] * f + 0.02 * seed + 0.05 * recal


def tables(finetune=False):
    """``runs, pruning, latency`` as comparison.load returns them: 7 runs of 4 arms; L2 mask rows
    one shot and BN re-estimated; L1 (WD, BO) and |γ| (slimming) rows re-estimated; Bridgeout also
    removed (one shot) and timed; optionally one epoch of fine-tuning for every run."""
    runs, rows, lat = [], [], []
    for arm, seeds in SEEDS.items():
        for seed in seeds:
            rid = f"{arm}-{seed}"
            reg = "slimming" if arm == "slimming" else arm
            runs.append(run_row(rid, grid="g-arms", regularizer=reg, seed=seed, arm=arm,
                                lam=1e-3 if arm == "slimming" else math.nan))
            for f in (0.0, 0.3, 0.5):
                for recal in (False, True):
                    rows.append(_prow(rid, arm, seed, f, _acc(arm, seed, f, recal), recalibrate_bn=recal))
                if finetune:
                    bump = {"weight_decay": -0.05, "dropout": 0.03}.get(arm, 0.0)
                    spread = 0.2 if (arm, seed, f) == ("dropout", 1, 0.3) else 0.0
                    rows.append(_prow(rid, arm, seed, f, _acc(arm, seed, f) + bump + spread, finetune_epochs=1))
                if arm in ("weight_decay", "bridgeout"):
                    rows.append(_prow(rid, arm, seed, f, _acc(arm, seed, f, True) + (0.01 if arm == "bridgeout" else -0.03),
                                      criterion="l1", recalibrate_bn=True))
                if arm == "slimming":
                    rows.append(_prow(rid, arm, seed, f, _acc(arm, seed, f, True) - 0.10, criterion="bn_scale",
                                      recalibrate_bn=True))
            if arm == "bridgeout":
                # removed: 30 % keeps 49 % of the FLOPs, 50 % keeps 25 %; the gap to zeroed is
                # seed 0: -0.04 points at 30 %, +5 at 50 %; seed 1: 0 at 30 %, -5 at 50 %
                gap = {(0, 0.3): -0.0004, (0, 0.5): 0.05, (1, 0.3): 0.0, (1, 0.5): -0.05}
                for f, flops in ((0.0, 1000), (0.3, 490), (0.5, 250)):
                    rows.append(_prow(rid, arm, seed, f, _acc(arm, seed, f) + gap.get((seed, f), 0.0), mode="remove")
                                | {"flops": flops})
                # timed: ONNX Runtime 100 -> 40 ms (2.5x), PyTorch 100 -> 50 ms (2.0x), FLOPs 400 -> 100 (4x)
                for rt, ms in (("onnxruntime", 40.0), ("torch", 50.0)):
                    for f, m, flops in ((0.0, 100.0, 400), (0.5, ms, 100)):
                        lat.append({"run_id": rid, "criterion": "l2", "runtime": rt, "batch_size": 1, "threads": 1,
                                    "fraction": f, "latency_ms": m, "flops": flops, "device_name": "test cpu",
                                    "arm": arm})
    return pd.DataFrame(runs), pd.DataFrame(rows), pd.DataFrame(lat)


def summaries(pruning):
    return (comparison.summary(comparison.accuracy(pruning, recalibrate_bn=False)),
            comparison.summary(comparison.accuracy(pruning, recalibrate_bn=True)))


@pytest.fixture
def empty(tmp_path):
    """What comparison.load gives before any run: the real loader on an empty results folder."""
    return comparison.load(list(PLANNED), root=tmp_path)


@pytest.fixture(autouse=True)
def book_theme():
    """The book's theme (its font sizes are what the readability checks measure), undone after."""
    with matplotlib.rc_context():
        plots.set_theme()
        yield
    plt.close("all")


def _texts(artist) -> list[str]:
    """Every non-empty text drawn in a figure or an axis, each text object once."""
    found = {id(t): t for t in artist.findobj(Text)}
    return [t.get_text() for t in found.values() if t.get_text()]


def _fit_for_the_book(fig) -> bool:
    return not plots.small_text(fig) and not plots.undrawn_legend_entries(fig)


# ------------------------------------------------------------------------------ small pieces
def test_glue_md_glues_markdown_without_displaying(monkeypatch):
    import myst_nb
    from IPython.display import Markdown
    seen = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display=True: seen.append((name, obj, display)))
    beyond.glue_md({"a": "**x**", "b": ""})
    assert [(n, d) for n, _, d in seen] == [("a", False), ("b", False)]
    assert all(isinstance(o, Markdown) for _, o, _ in seen) and seen[0][1].data == "**x**"


def test_summary_cell():
    s1, _ = summaries(tables()[1])
    assert beyond.summary_cell(s1, "weight_decay", 0.3) == "46.0 ± 1.4"
    assert beyond.summary_cell(s1, "slimming", 0.5) == "58.0"          # one seed: no sd
    assert beyond.summary_cell(s1, "group_lasso", 0.3) == "–"
    assert beyond.summary_cell(s1, "weight_decay", 0.4) == "–"


def test_placeholder_is_one_empty_axis_saying_what_is_missing():
    fig = beyond.placeholder("nothing yet", height=2.0)
    assert tuple(fig.get_size_inches()) == pytest.approx((6.8, 2.0))
    assert len(fig.axes) == 1 and not fig.axes[0].axison
    assert "nothing yet" in _texts(fig) and _fit_for_the_book(fig)
    plt.close(fig)


# ------------------------------------------------------------------------------ λ pilots
def _pilot_runs():
    rows = [run_row("other", grid="g-arms", regularizer="weight_decay", final_test_acc=0.9)]
    for grid, epochs, n, accs in (("p-short", 5, 10_000, {("weight_decay", None): 0.30, ("group_lasso", 1e-4): 0.32,
                                                          ("group_lasso", 1e-3): 0.31, ("slimming", 1e-4): 0.28}),
                                  ("p-long", 8, 20_000, {("weight_decay", None): 0.50, ("group_lasso", 1e-4): 0.49,
                                                         ("group_lasso", 1e-3): 0.47, ("group_lasso", 1e-2): 0.20,
                                                         ("slimming", 1e-4): 0.49, ("slimming", 1e-3): 0.484,
                                                         ("slimming", 1e-2): 0.10})):
        for (reg, lam), acc in accs.items():
            rows.append(run_row(f"{grid}-{reg}-{lam}", grid=grid, regularizer=reg, lam=math.nan if lam is None else lam,
                                epochs=epochs, n_train=n, final_test_acc=acc))
    return pd.DataFrame(rows)


def test_pilot_texts_pick_the_largest_lambda_within_two_points_in_the_longer_pilot():
    runs = tables()[0]
    text, table = beyond.pilot_texts(_pilot_runs(), runs, ["p-short", "p-long"])
    assert table.split("\n") == [
        "| pilot | arm | λ | test accuracy (%) | vs weight decay (points) |", "| --- | --- | --- | --- | --- |",
        "| 5 epochs, 10,000 images | weight decay only | – | 30.0 | – |",
        "| 5 epochs, 10,000 images | group lasso (SSL) | 0.0001 | 32.0 | +2.0 |",
        "| 5 epochs, 10,000 images | group lasso (SSL) | 0.001 | 31.0 | +1.0 |",
        "| 5 epochs, 10,000 images | Network Slimming (L1 on γ) | 0.0001 | 28.0 | -2.0 |",
        "| 8 epochs, 20,000 images | weight decay only | – | 50.0 | – |",
        "| 8 epochs, 20,000 images | group lasso (SSL) | 0.0001 | 49.0 | -1.0 |",
        "| 8 epochs, 20,000 images | group lasso (SSL) | 0.001 | 47.0 | -3.0 |",
        "| 8 epochs, 20,000 images | group lasso (SSL) | 0.01 | 20.0 | -30.0 |",
        "| 8 epochs, 20,000 images | Network Slimming (L1 on γ) | 0.0001 | 49.0 | -1.0 |",
        "| 8 epochs, 20,000 images | Network Slimming (L1 on γ) | 0.001 | 48.4 | -1.6 |",
        "| 8 epochs, 20,000 images | Network Slimming (L1 on γ) | 0.01 | 10.0 | -40.0 |"]
    # only the longer pilot decides: group lasso at 1e-3 is +1.0 in the short one but 3 points below in the long one
    assert ("It picks group lasso (SSL): λ = 0.0001; Network Slimming (L1 on γ): λ = 0.001; the full runs use "
            "Network Slimming (L1 on γ) λ = 0.001. At the largest λ tried, Network Slimming (L1 on γ) (λ = 0.01) "
            "reached 10.0 % and group lasso (SSL) (λ = 0.01) reached 20.0 %.") in text
    assert text.startswith("Each penalty needs a strength λ")
    no_penalty = runs[~runs["arm"].isin(["slimming", "group_lasso"])]
    assert "; no full run of either penalty has finished yet." in beyond.pilot_texts(_pilot_runs(), no_penalty,
                                                                                     ["p-short", "p-long"])[0]


def test_pilot_texts_without_a_pilot(empty):
    assert beyond.pilot_texts(_pilot_runs(), empty["runs"], ["p-x", "p-y"]) == (
        "**No pilot has been run yet** (grids `p-x`, `p-y`).", "")


# ------------------------------------------------------------------------------ regularizers compared
def test_regs_texts_table_and_paragraph():
    runs, pruning, _ = tables()
    s1, s2 = summaries(pruning)
    text, table = beyond.regs_texts(s1, s2, runs, PLANNED)
    assert table.split("\n") == [
        "| arm | seeds | unpruned | 30 % | 50 % | 30 %, BN re-estimated | 50 %, BN re-estimated |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        "| weight decay only | 2 | 91.0 ± 1.4 | 46.0 ± 1.4 | 16.0 ± 1.4 | 51.0 ± 1.4 | 21.0 ± 1.4 |",
        "| targeted Dropout | 2 | 86.0 ± 1.4 | 50.0 ± 1.4 | 26.0 ± 1.4 | 55.0 ± 1.4 | 31.0 ± 1.4 |",
        "| Batch Bridgeout (q = 1.5) | 2 | 81.0 ± 1.4 | 72.0 ± 1.4 | 66.0 ± 1.4 | 77.0 ± 1.4 | 71.0 ± 1.4 |",
        "| Network Slimming (L1 on γ) | 1 | 88.0 | 70.0 | 58.0 | 75.0 | 63.0 |"]
    assert text == (
        "**7 of 18 runs finished** (seeds per arm: weight decay only 2; targeted Dropout 2; Batch Bridgeout "
        "(q = 1.5) 2; Network Slimming (L1 on γ) 1). Test accuracy in %, mean ± sd over seeds, filters zeroed by L2 "
        "norm in every layer (mask mode, as in the paper), one shot and with the BatchNorm statistics re-estimated "
        "on 50 training batches. Best arm one shot at 30%: Batch Bridgeout (q = 1.5) (72.0 ± 1.4 %); one shot at "
        "50%: Batch Bridgeout (q = 1.5) (66.0 ± 1.4 %); with BatchNorm re-estimated at 30%: Batch Bridgeout "
        "(q = 1.5) (77.0 ± 1.4 %); with BatchNorm re-estimated at 50%: Batch Bridgeout (q = 1.5) (71.0 ± 1.4 %). "
        "With BatchNorm re-estimated, Batch Bridgeout's mean is +2.0 points against Network Slimming (L1 on γ) at "
        "30%, +8.0 points against Network Slimming (L1 on γ) at 50%.")


def test_regs_texts_at_chance_and_without_the_penalties():
    runs, pruning, _ = tables()
    runs = runs[runs["arm"].isin(["weight_decay", "bridgeout"])]
    pruning = pruning[pruning["arm"].isin(["weight_decay", "bridgeout"])].copy()
    pruning.loc[np.isclose(pruning["fraction"], 0.5) & ~pruning["recalibrate_bn"], "test_acc"] = 0.12
    s1, s2 = summaries(pruning)
    text, _ = beyond.regs_texts(s1, s2, runs, PLANNED)
    assert "**4 of 18 runs finished**" in text
    assert "; one shot at 50%: none, every arm is within 5 points of chance (10 %); " in text
    assert text.endswith(". **The sparsity penalties have no finished run yet**, so the comparison that matters "
                         "most here is still missing; the grid `cpu-cifar10-sparsity` adds it.")


def test_regs_texts_without_a_run(empty):
    s1, s2 = summaries(empty["pruning"])
    assert beyond.regs_texts(s1, s2, empty["runs"], PLANNED) == (
        "**No run has finished yet** (0 of 18 runs planned, grids `g-arms`, `g-penalties`).", "")


# ------------------------------------------------------------------------------ FLOPs kept
def test_removed_and_flops_text():
    rm = beyond.removed(tables()[1])
    assert set(rm["arm"]) == {"bridgeout"} and len(rm) == 6
    assert sorted(rm["flops_kept"].unique()) == pytest.approx([0.25, 0.49, 1.0])
    assert beyond.flops_text(rm) == ("Removing 30 % of every layer's filters keeps 49 % of the forward FLOPs, "
                                     "removing 50 % keeps 25 % (input and output channels both shrink).")


def test_flops_without_a_removed_network(empty):
    rm = beyond.removed(empty["pruning"])
    assert rm.empty and beyond.flops_text(rm) == "**No run has been pruned with `mode=\"remove\"` yet.**"


def test_plot_flops_draws_seeds_on_a_reversed_log_axis():
    fig, axes = plt.subplots(1, 2)
    beyond.plot_flops(axes, beyond.removed(tables()[1]))
    assert len(axes[0].lines) == 3 and len(axes[1].lines) == 0     # two seeds + the mean, one shot only
    assert axes[0].get_xscale() == "log" and axes[0].get_xlim()[0] > axes[0].get_xlim()[1]
    assert axes[0].get_ylabel() == "test accuracy (%)" and axes[1].get_title() == "BatchNorm re-estimated"
    plt.close(fig)


# ------------------------------------------------------------------------------ ranking criteria
def test_criteria_drawn_and_at():
    pruning = tables()[1]
    assert beyond.criteria_drawn(pruning) == ["l2", "l1", "bn_scale"]
    assert beyond.criteria_drawn(pruning[~pruning["recalibrate_bn"]]) == []    # one-shot rows only: none
    at = beyond.criteria_at(pruning)
    assert list(at) == ["l2", "l1", "bn_scale"]
    assert at["l1"]["weight_decay"] == pytest.approx(0.48) and at["l2"]["bridgeout"] == pytest.approx(0.77)
    assert list(at["bn_scale"].index) == ["slimming"]


def test_criteria_text():
    runs, pruning, _ = tables()
    arms = comparison.arms_in(runs)
    assert beyond.criteria_text(pruning, arms) == (
        "At 30 % pruned with BatchNorm re-estimated, each criterion's mean minus the L2 ranking's, in points: "
        "**L1 norm**: weight decay only -3.0; Batch Bridgeout (q = 1.5) +1.0. "
        "**|γ| (slimming)**: Network Slimming (L1 on γ) -10.0.")
    only_recorded = pruning[pruning["criterion"] != "l1"]
    assert beyond.criteria_text(only_recorded, arms).startswith("**The criteria pass has not been run yet**")


def test_criteria_figure_one_panel_per_criterion():
    pruning = tables()[1]
    fig = beyond.criteria_figure(pruning)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["L2 norm", "L1 norm", "|γ| (slimming)"]
    assert tuple(fig.get_size_inches()) == pytest.approx((6.8, 3.5)) and _fit_for_the_book(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()][:4] == [comparison.ARM_LABELS[a] for a in SEEDS]
    plt.close(fig)
    random = pruning[pruning["criterion"] == "l1"].assign(criterion="random")
    fig = beyond.criteria_figure(pd.concat([pruning, random]))     # 4 criteria: two rows of three, two hidden
    assert len(fig.axes) == 6 and sum(ax.get_visible() for ax in fig.axes) == 4
    plt.close(fig)


def test_criteria_without_a_run(empty):
    assert beyond.criteria_text(empty["pruning"], []).startswith("**The criteria pass has not been run yet**")
    fig = beyond.criteria_figure(empty["pruning"])
    assert len(fig.axes) == 1 and "no run pruned yet" in _texts(fig) and _fit_for_the_book(fig)
    plt.close(fig)


# ------------------------------------------------------------------------------ zeroed or removed, speed
def test_mask_vs_remove_and_remove_text():
    both = beyond.mask_vs_remove(tables()[1])
    assert len(both) == 6 and set(both["arm"]) == {"bridgeout"}
    assert {"test_acc_mask", "test_acc_remove"} <= set(both.columns)
    assert beyond.remove_text(both) == (
        "One shot, removing instead of zeroing changes the test accuracy by Batch Bridgeout (q = 1.5) -5.0 to +5.0 "
        "points (range over seeds and fractions 10-90 %; the figure below, left).")
    tiny = both.assign(test_acc_remove=both["test_acc_mask"] - 0.0004)     # -0.04 points: written +0.0, not -0.0
    assert "Batch Bridgeout (q = 1.5) +0.0 to +0.0 points" in beyond.remove_text(tiny)


def test_speedups_and_speed_texts():
    sp = beyond.speedups(tables()[2])
    pd.testing.assert_frame_equal(sp, speed.speedups(tables()[2]))
    text, table = beyond.speed_texts(sp)
    assert text == (
        "At 50 % of the filters removed the FLOP ratio promises 4.00×; measured (2 networks, median): ONNX Runtime "
        "at batch 1 2.50×, PyTorch eager at batch 1 2.00×. Timed on test cpu, 1 thread (the figure below, right). "
        "No removed network ran slower than the unpruned one. Every fraction timed, median over the timed networks "
        "(below 1, slower than unpruned, in bold):")
    assert table.split("\n") == ["| removed | FLOP ratio | ONNX Runtime, batch 1 | PyTorch eager, batch 1 |",
                                 "| --- | --- | --- | --- |", "| 50 % | 4.00× | 2.50× | 2.00× |"]


def test_speed_without_timing(empty):
    sp = beyond.speedups(empty["latency"])
    assert sp.empty
    assert beyond.speed_texts(sp) == (
        "**The removed networks have not been timed on a quiet machine yet** (the latency pass has not been run), "
        "so no speed-up is shown.", "No fraction has been timed yet.")
    assert beyond.remove_text(beyond.mask_vs_remove(empty["pruning"])) == "**No run has been pruned in both modes yet.**"


def test_speed_figure_legend_and_empty_panels(empty):
    _, pruning, lat = tables()
    fig = beyond.speed_figure(beyond.mask_vs_remove(pruning), beyond.speedups(lat))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == ["Batch Bridgeout (q = 1.5)", "zeroed (mask)", "removed"]
    assert "FLOP ratio (ideal)" in labels and "ONNX Runtime, batch 1" in labels
    assert len(fig.axes[0].lines) == 2 and fig.axes[1].get_title() == "measured speed, 1 thread"
    assert tuple(fig.get_size_inches()) == pytest.approx((6.8, 4.3)) and _fit_for_the_book(fig)
    plt.close(fig)
    fig = beyond.speed_figure(beyond.mask_vs_remove(empty["pruning"]), beyond.speedups(empty["latency"]))
    texts = _texts(fig)
    assert "no run pruned\nin both modes yet" in texts and "not timed yet:\nthe latency pass\nhas not been run" in texts
    assert not fig.legends and fig.axes[1].get_title() == "measured speed" and _fit_for_the_book(fig)
    plt.close(fig)


# ------------------------------------------------------------------------------ repair
def test_repairs_and_plot_repairs():
    pruning = tables()[1]
    have = beyond.repairs(pruning)
    assert list(have) == ["no repair", "BatchNorm re-estimated"]       # no fine-tuning rows
    assert list(beyond.repairs(tables(finetune=True)[1])) == [name for name, _ in beyond.REPAIRS]
    fig, axes = plt.subplots(1, 3, sharey=True)
    beyond.plot_repairs(axes, have)
    assert len(axes[0].lines) == 3 + 3 + 3 + 2                         # seeds + the mean per arm
    assert [ax.get_title() for ax in axes] == ["no repair", "BatchNorm re-estimated", "fine-tuned 1 epoch"]
    assert "fine-tuning pass\nnot run yet" in _texts(fig) and axes[1].get_ylabel() == ""
    plt.close(fig)


def test_repair_texts_without_fine_tuning():
    runs, pruning, _ = tables()
    summs = {name: comparison.summary(acc) for name, acc in beyond.repairs(pruning).items()}
    text, table = beyond.repair_texts(summs, runs)
    # one shot at 30 %: BO 72 - DO 50 = +22.0, BO 72 - SL 70 = +2.0; at 50 %: 66 - 26, 66 - 58; BN: 77 - 55, 77 - 75, ...
    assert text == (
        "Batch Bridgeout's mean minus the better of the paper's baselines (weight decay, targeted Dropout), and "
        "minus the best of every other regularizer, in points: *no repair*: at 30 % +22.0 against the paper's "
        "baselines and +2.0 against the best other arm (Network Slimming (L1 on γ)), at 50 % +40.0 against the "
        "paper's baselines and +8.0 against the best other arm (Network Slimming (L1 on γ)); *BatchNorm "
        "re-estimated*: at 30 % +22.0 against the paper's baselines and +2.0 against the best other arm (Network "
        "Slimming (L1 on γ)), at 50 % +40.0 against the paper's baselines and +8.0 against the best other arm "
        "(Network Slimming (L1 on γ)). A difference smaller than the seeds' standard deviation (table below) is no "
        "difference. **The fine-tuning pass has not been run yet.**")
    assert table.split("\n") == [
        "| arm | n | 30 % none | 30 % BN | 50 % none | 50 % BN |", "| --- | --- | --- | --- | --- | --- |",
        "| weight decay only | 2 | 46.0 ± 1.4 | 51.0 ± 1.4 | 16.0 ± 1.4 | 21.0 ± 1.4 |",
        "| targeted Dropout | 2 | 50.0 ± 1.4 | 55.0 ± 1.4 | 26.0 ± 1.4 | 31.0 ± 1.4 |",
        "| Batch Bridgeout (q = 1.5) | 2 | 72.0 ± 1.4 | 77.0 ± 1.4 | 66.0 ± 1.4 | 71.0 ± 1.4 |",
        "| Network Slimming (L1 on γ) | 1 | 70.0 | 75.0 | 58.0 | 63.0 |"]


def test_repair_texts_with_fine_tuning():
    runs, pruning, _ = tables(finetune=True)
    summs = {name: comparison.summary(acc) for name, acc in beyond.repairs(pruning).items()}
    text, table = beyond.repair_texts(summs, runs)
    # unpruned: fine-tuning moves WD by -5 and DO by +3 points; DO's seeds at 30 % are 52 and 74: sd 15.6;
    # 0.01 against the cpu schedule's last learning rate 0.1 * 0.2**4 = 0.00016: 62x
    assert text.endswith(
        "is no difference. One epoch at a constant learning rate of 0.01 (62× the last learning rate of the "
        "training schedule) is itself a perturbation: it changes the accuracy of the *unpruned* networks by -5.0 to "
        "+3.0 points, and after it the seeds of one arm spread by up to 15.6 points (sd; targeted Dropout at 30 %). "
        "A fine-tuning whose learning rate decays, not run here, would be the fairer repair.")
    assert "; *fine-tuned 1 epoch*: at 30 % +9.0 against the paper's baselines and +2.0 against" in text
    assert table.split("\n")[0] == "| arm | n | 30 % none | 30 % BN | 30 % FT | 50 % none | 50 % BN | 50 % FT |"
    assert "| targeted Dropout | 2 | 50.0 ± 1.4 | 55.0 ± 1.4 | 63.0 ± 15.6 |" in table


def test_repair_without_a_run(empty):
    assert beyond.repairs(empty["pruning"]) == {}
    assert beyond.repair_texts({}, empty["runs"]) == ("**No run has been pruned yet**, so no repair is compared.", "")
    fig, axes = plt.subplots(1, 3, figsize=(6.8, 3.1), sharey=True, layout="constrained")
    beyond.plot_repairs(axes, {})
    assert [_texts(ax).count("not run yet") for ax in axes] == [1, 1, 0]
    assert "fine-tuning pass\nnot run yet" in _texts(axes[2])
    assert _fit_for_the_book(fig)
    plt.close(fig)


# ------------------------------------------------------------------------------ at a glance
def _panels():
    rows = []
    for q in (1.0, 1.5):
        for seed in (0, 1):
            rid = f"abl-q{q}-s{seed}"
            run = run_row(rid, grid="abl", model="lenet5", dataset="mnist", epochs=3, q=q, seed=seed)
            for f, acc in ((0.0, 0.9), (0.7, 0.5 + 0.1 * q + 0.01 * seed)):
                rows.append({**run, **pruning_df(rid, fractions=(f,)).iloc[0].to_dict(), "test_acc": acc})
    return ablation.panels(pd.DataFrame(rows))


def test_glance_on_synthetic_tables():
    runs, pruning, lat = tables()
    panels = _panels()
    text = beyond.glance(runs, pruning, lat, panels, PLANNED, SCALE)
    head, table = text.split("\n\n")
    assert head == ("**At a glance.** The CIFAR-10 comparison: VGG-16 on CIFAR-10. Test accuracy is the mean over "
                    "seeds; every number below is drawn, with its seeds, in the sections that follow.")
    assert table.split("\n") == [
        "| question | scale | status | what came out |", "| --- | --- | --- | --- |",
        "| Regularizers compared | CIFAR-10 comparison, 4 arms, 1-2 seeds per arm | 11 runs to go | BatchNorm "
        "re-estimated, at 30 %: Batch Bridgeout 77.0 ± 1.4 %, best other arm Network Slimming (L1 on γ) 75.0 % "
        "(mean ± sd); at 50 %: Batch Bridgeout 71.0 ± 1.4 %, best other arm Network Slimming (L1 on γ) 63.0 % "
        "(mean ± sd) |",
        "| Ranking criteria | the same 7 networks | 4 of 7 runs | at 30 %, against L2 (points, over arms): L1 norm "
        "-3 to +1; \\|\u2060γ\u2060\\| (slimming) -10 to -10 |",
        "| Zeroed vs removed, real speed | the same networks; 2 timed on a quiet CPU | done | 50 % removed: FLOP "
        "ratio 4.00×, measured 2.00× to 2.50× (PyTorch, ONNX Runtime; batch 1, 128) |",
        "| Repair | the same 7 networks | fine-tuning not run | Batch Bridgeout minus the best other arm at 30 / 50 % "
        "(points): BatchNorm re-estimated +2.0 / +8.0 |",
        f"| Noise ablations | LeNet-5 / MNIST, 3 epochs, 4 runs (`abl`), 2 seeds per setting | partial | "
        f"{ablation.summary(panels)} |"]


def test_glance_when_every_pass_ran():
    runs, pruning, lat = tables(finetune=True)
    pruning = pd.concat([pruning, pruning[pruning["criterion"] == "l2"].assign(criterion="random")])
    rows = beyond.glance(runs, pruning, lat, [], {"g": 7}, SCALE).split("\n")
    assert rows[4].startswith("| Regularizers compared | CIFAR-10 comparison, 4 arms, 1-2 seeds per arm | done |")
    assert rows[5].startswith("| Ranking criteria | the same 7 networks | done | at 30 %, against L2 (points, over "
                              "arms): L1 norm -3 to +1; random +0 to +0;")
    assert rows[7] == ("| Repair | the same 7 networks | done | Batch Bridgeout minus the best other arm at 30 / 50 % "
                       "(points): BatchNorm re-estimated +2.0 / +8.0; fine-tuned 1 epoch +2.0 / +8.0 |")


def test_glance_without_a_run(empty):
    text = beyond.glance(empty["runs"], empty["pruning"], empty["latency"], [], PLANNED, SCALE)
    assert text.split("\n\n")[1].split("\n")[2:] == [
        "| Regularizers compared | CIFAR-10 comparison, 0 arms, 0 seeds per arm | 18 runs to go | no run yet |",
        "| Ranking criteria | the same 0 networks | pass not run | only the L2 ranking each run recorded so far |",
        "| Zeroed vs removed, real speed | the same networks; 0 timed on a quiet CPU | speed not measured yet "
        "| not timed yet |",
        "| Repair | the same 0 networks | fine-tuning not run | – |",
        "| Noise ablations | –, 0 seeds per setting | not run | not run |"]
