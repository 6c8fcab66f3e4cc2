"""Tests for bridgeout.teaching: the exercise verdicts follow their own numbers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bridgeout import results, teaching

from test_results import pruning_df, run_row

FR = [0.2, 0.4, 0.6]


def _random(values):
    """values[draw] = accuracies at FR."""
    return pd.DataFrame({d: v for d, v in enumerate(values)}, index=FR)


def test_ranking_gain_weighs_the_gain_against_the_draws_spread():
    l2 = pd.Series([0.9, 0.8, 0.7], index=FR)
    tight = teaching.ranking_gain(l2, _random([[0.7, 0.6, 0.5], [0.72, 0.6, 0.48], [0.68, 0.6, 0.52]]))
    assert tight["gain"] == pytest.approx(0.2) and tight["verdict"] == "informative"
    assert tight["above"] == 3 and tight["below"] == 0 and tight["n"] == 3
    # the same mean gain of about +11 points, but the draws scatter over 60 points: not clear
    wide = teaching.ranking_gain(l2, _random([[0.3, 0.2, 0.1], [0.95, 0.9, 0.85], [0.99, 0.95, 0.77]]))
    # per-draw mean gains +60.0, -10.0, -10.3 points: mean +13.2, standard error 23.4
    assert wide["gain"] == pytest.approx(0.1322, abs=1e-4) and wide["se"] == pytest.approx(0.2339, abs=1e-3)
    assert wide["gain"] > 0.1 and wide["se"] > wide["gain"] / 2 and wide["verdict"] == "no clearer than chance"
    worse = teaching.ranking_gain(l2 - 0.4, _random([[0.7, 0.6, 0.5], [0.72, 0.6, 0.48], [0.68, 0.6, 0.52]]))
    assert worse["verdict"] == "worse than random" and worse["below"] == 3
    one = teaching.ranking_gain(l2, _random([[0.1, 0.1, 0.1]]))
    assert math.isnan(one["se"]) and one["verdict"] == "no clearer than chance"
    s = teaching.ranking_sentence("Weight decay only", tight, 3)
    assert s.startswith("Weight decay only: the $L_2$ ranking keeps +20.0 ± 0.0 points over the random draws")
    assert "(mean ± standard error over 3 draws)" in s and s.endswith("matter less than a random pick does.")


def test_mechanism_sentence_needs_a_difference_beyond_the_combined_error():
    g = {"BO": {"gain": 0.20, "se": 0.01}, "WD": {"gain": 0.10, "se": 0.01}, "DO": {"gain": 0.05, "se": 0.01}}
    assert teaching.mechanism_sentence(g, "BO").endswith("minus the best other (WD) is +10.0 ± 1.4 points "
                                                         "(± the combined standard error): in this run they are.")
    g["WD"]["gain"] = 0.19
    assert teaching.mechanism_sentence(g, "BO").endswith("this run cannot tell them apart.")
    g["WD"]["gain"] = 0.40
    assert "*less* informative" in teaching.mechanism_sentence(g, "BO")


def test_q_sentence_reads_one_seed_against_the_ablation(tmp_path):
    one = pd.Series({0.0: 0.97, 0.5: 0.60})
    ref = pd.Series({0.0: 0.98, 0.5: 0.70})
    assert teaching.q_sentence(one, ref, 1.5, tmp_path).endswith("The 3-seed ablation is not in the tables yet.")
    runs, pr = [], []
    for i, (q, acc) in enumerate([(1.0, 0.92), (1.0, 0.86), (1.5, 0.80), (1.5, 0.70), (2.0, 0.40), (2.0, 0.60)]):
        rid = f"a{i}"
        runs.append(run_row(rid, grid="mnist-noise-ablation", q=q, seed=i % 2))
        p = pruning_df(rid, fractions=(0.0, 0.7))
        p["test_acc"] = [0.98, acc]
        pr.append(p)
    results.append("runs", pd.DataFrame(runs), tmp_path)
    results.append("pruning", pd.concat(pr), tmp_path)
    abl = teaching.ablation_q(tmp_path)
    assert len(abl) == 6 and set(abl["q"]) == {1.0, 1.5, 2.0}
    s = teaching.q_sentence(one, ref, 1.5, tmp_path)
    assert "unpruned, q = 1 reaches 97.0 % against 98.0 % for q = 1.5" in s and "One seed decides nothing." in s
    assert "(2 seeds per q," in s and "q = 1 89.0 ± 4.2 %; q = 1.5 75.0 ± 7.1 %; q = 2 50.0 ± 14.1 %" in s
    assert "q = 1 keeps the most there" in s and "differ by up to 20.0 points" in s


def test_seed_verdict_weighs_the_difference_against_its_interval():
    rows = pd.DataFrame([{"regularizer": reg, "seed": s, "fraction": 0.5, "test_acc": acc}
                         for reg, accs in (("bridgeout", (0.94, 0.95, 0.96)), ("dropout", (0.50, 0.95, 0.80)),
                                           ("weight_decay", (0.70, 0.71, 0.72)))
                         for s, acc in enumerate(accs)])
    text = teaching.seed_verdict(rows, labels={"dropout": "Dropout", "weight_decay": "weight decay"})
    # weight decay: +24.0, sd 0.01 both sides, df 4: half-width 2.776 * sqrt(2e-4 / 3) = 2.3
    assert "+24.0 points against weight decay (95 % interval +21.7 to +26.3)" in text
    assert text.endswith("the difference is real against weight decay.")      # Dropout's interval spans zero
    same = rows.assign(test_acc=np.where(rows["regularizer"] == "weight_decay", rows["test_acc"] + 0.24,
                                         rows["test_acc"]))
    assert teaching.seed_verdict(same).endswith("with 3 seeds no difference is shown: every interval includes zero.")
    assert teaching.seed_verdict(rows[rows["regularizer"] != "bridgeout"]) == ""


# --- the chapter's other sentences and figures, on synthetic tables -----------------------------

CHANCE = 0.1
WIDE = pd.DataFrame({"bridgeout": [0.90, 0.80, 0.50], "dropout": [0.95, 0.70, 0.30],
                     "weight_decay": [0.85, 0.60, 0.20]}, index=[0.0, 0.5, 0.9])


def _empty_grid(tmp_path):
    """A grid with no finished run: the real (empty) tables of a result folder with none."""
    return teaching.comparison.load("mnist-teaching-5seed", tmp_path)


def _axes(n):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, n, squeeze=False)
    return fig, axes[0]


def test_crossing_finds_where_a_curve_stays_ahead_for_good():
    wide = pd.DataFrame({"a": [0.5, 0.6, 0.4, 0.7, 0.7], "b": [0.6, 0.5, 0.5, 0.6, 0.7]},
                        index=[0.0, 0.1, 0.2, 0.3, 0.4])
    assert teaching.crossing(wide, "a", "b") == 0.3        # ahead at 0.1, behind again at 0.2, level at 0.4
    assert teaching.crossing(wide, "b", "a") == 0.4        # level at the end counts as ahead
    assert teaching.crossing(wide.assign(a=wide["a"] - 0.2), "a", "b") is None
    assert teaching.crossing(wide.assign(a=1.0), "a", "b") == 0.0


def test_crossing_sentence_names_the_crossing_and_the_test_error():
    text, se = teaching.crossing_sentence(WIDE, 1000)
    # mean unpruned accuracy 0.90: sqrt(0.9 * 0.1 / 1000) = 0.0095
    assert se == pytest.approx(0.009487, abs=1e-6)
    assert text == ("Best before pruning: Dropout (95.0 %). "
                    "Against Weight decay only, Bridgeout is ahead or level at every fraction. "
                    "Against Dropout, Bridgeout starts -5.0 points away and is ahead from 50 % of the filters "
                    "pruned on: the curves cross. "
                    "With half the filters of every layer zeroed: Batch Bridgeout 80.0 %, Dropout 70.0 %, "
                    "Weight decay only 60.0 %. "
                    "For scale: the standard error of an accuracy near 90.0 % measured on 1,000 test images is "
                    "0.9 points, from the test sample alone.")
    behind = WIDE.assign(bridgeout=[0.80, 0.55, 0.10])     # below weight decay at 0.9: never ahead for good
    text, _ = teaching.crossing_sentence(behind, 1000)
    assert "Against Weight decay only, Bridgeout is never ahead for good (-5.0 points before pruning)." in text
    assert "Against Dropout, Bridgeout is never ahead for good (-15.0 points before pruning)." in text


def test_plot_norms_sorts_relative_norms_and_norms_sentence_reads_the_weakest():
    import torch
    fig, (ax,) = _axes(1)
    # filter norms 5, 1, 10 -> 0.5, 0.1, 1.0 of the largest
    w = np.zeros((3, 2, 1, 1), dtype=np.float32)
    w[0, :, 0, 0], w[1, :, 0, 0], w[2, :, 0, 0] = [3, 4], [0, 1], [6, 8]
    rel = teaching.plot_norms(ax, {"bridgeout": w, "dropout": torch.tensor(w / 2 + 1.0, requires_grad=True),
                                   "weight_decay": w})
    np.testing.assert_allclose(rel["bridgeout"], [0.1, 0.5, 1.0], rtol=1e-6)
    # dropout: rows (2.5, 3), (1, 1.5), (4, 5): norms 3.905, 1.803, 6.403 -> 0.2815 first
    assert rel["dropout"][0] == pytest.approx(1.8028 / 6.4031, abs=1e-4) and np.all(np.diff(rel["dropout"]) >= 0)
    assert len(ax.lines) == 3 and ax.get_xlabel() == "conv2 filter (sorted by norm)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Batch Bridgeout", "Dropout", "Weight decay only"]
    assert teaching.norms_sentence(rel) == (
        "The weakest conv2 filter is 0.10 of the strongest for Batch Bridgeout, 0.28 of the strongest for Dropout, "
        "0.10 of the strongest for Weight decay only: Batch Bridgeout's filters are the most spread out.")
    close = {"bridgeout": np.array([0.85, 1.0]), "dropout": np.array([0.84, 1.0]), "weight_decay": np.array([0.84, 1.0])}
    assert teaching.norms_sentence(close) == (
        "The weakest conv2 filter is 0.85 of the strongest for Batch Bridgeout, 0.84 of the strongest for Dropout, "
        "0.84 of the strongest for Weight decay only: within 0.01 of each other, so this run shows no difference "
        "in how spread out the filter norms are.")


def _grid_tables(tmp_path):
    """Two runs of the five-seed grid: each with its one-shot L2 rows and rows l2_rows must leave out."""
    runs, pr = [], []
    for rid, reg, seed in (("b0", "bridgeout", 0), ("d1", "dropout", 1)):
        runs.append(run_row(rid, grid="mnist-teaching-5seed", regularizer=reg, seed=seed))
        keep = pruning_df(rid, fractions=(0.0, 0.5))
        other = pd.concat([keep.assign(recalibrate_bn=True), keep.assign(criterion="random"),
                           keep.assign(finetune_epochs=1), pruning_df(rid, fractions=(0.5,), modes=("remove",))])
        pr += [keep, other]
    results.append("runs", pd.DataFrame(runs), tmp_path)
    results.append("pruning", pd.concat(pr), tmp_path)
    return teaching.comparison.load("mnist-teaching-5seed", tmp_path)


def test_l2_rows_keeps_only_the_one_shot_l2_rows(tmp_path):
    empty = teaching.l2_rows(_empty_grid(tmp_path / "none")["pruning"])
    assert empty.empty and list(empty.columns) == ["run_id", "regularizer", "seed", "fraction", "test_acc"]
    rows = teaching.l2_rows(_grid_tables(tmp_path)["pruning"])
    assert list(rows.columns) == ["run_id", "regularizer", "seed", "fraction", "test_acc"]
    assert sorted(zip(rows["run_id"], rows["regularizer"], rows["seed"], rows["fraction"], rows["test_acc"])) == [
        ("b0", "bridgeout", 0, 0.0, 0.5), ("b0", "bridgeout", 0, 0.5, 0.25),
        ("d1", "dropout", 1, 0.0, 0.5), ("d1", "dropout", 1, 0.5, 0.25)]


def _seed_rows(accs):
    """accs[regularizer] = [(accuracy unpruned, accuracy at half), one per seed]."""
    return pd.DataFrame([{"run_id": f"{reg}-{s}", "regularizer": reg, "seed": s, "fraction": f, "test_acc": a}
                         for reg, per_seed in accs.items() for s, pair in enumerate(per_seed)
                         for f, a in zip((0.0, 0.5), pair)])


SEED_ROWS = _seed_rows({"bridgeout": [(0.98, 0.90), (0.96, 0.80)],
                        "dropout": [(0.97, 0.70), (0.99, 0.60), (0.10, 0.10)]})   # dropout seed 2: at chance


def test_grid_sentence_leaves_out_the_runs_that_did_not_train():
    text = teaching.grid_sentence(SEED_ROWS, "peak lr 0.05", CHANCE)
    # Welch: +20.0 points, se sqrt(0.005 / 2 * 2) = 0.0707, df 2 (t = 4.303): half-width 30.4 points
    assert text == ("**peak lr 0.05** (mean ± sd over the seeds that trained): "
                    "Batch Bridgeout 97.0 ± 1.4 % unpruned, 85.0 ± 7.1 % with half the filters zeroed (n = 2); "
                    "Dropout 98.0 ± 1.4 % unpruned, 65.0 ± 7.1 % with half the filters zeroed (n = 2). "
                    "With 50 % of the filters zeroed, Bridgeout minus each baseline: +20.0 points against Dropout "
                    "(95 % interval -10.4 to +50.4): with 2 seeds no difference is shown: every interval includes "
                    "zero.")
    assert teaching.grid_sentence(SEED_ROWS.iloc[:0], "peak lr 0.1", CHANCE) == "**peak lr 0.1:** no run has finished yet."


def test_plot_seeds_draws_a_panel_per_grid_and_says_which_has_no_run(tmp_path):
    fig, axes = _axes(2)
    empty = teaching.l2_rows(_empty_grid(tmp_path)["pruning"])
    drawn = teaching.plot_seeds(axes, {"peak lr 0.1": SEED_ROWS, "peak lr 0.05": empty}, CHANCE)
    # the title counts seed numbers (0, 1, 2), not runs
    assert [ax.get_title() for ax in axes] == ["peak lr 0.1, 3 seeds", "peak lr 0.05, 0 seeds"]
    assert drawn[0]["means"] == ["bridgeout", "dropout"] and drawn[0]["stuck"] == [("dropout", 2, 0.10)]
    assert drawn[1] == {"means": [], "stuck": [], "n": {}}
    assert "no run of this grid\nhas finished yet" in [t.get_text() for a in axes[1].artists
                                                        for t in getattr(a, "get_texts", lambda: [])()]


def test_stuck_sentence_counts_the_runs_at_chance_and_shows_their_losses(tmp_path):
    labels = np.array([0, 0, 0, 1, 2])                   # always answering 0: 60 % right
    assert teaching.stuck_sentence(_empty_grid(tmp_path), "peak lr 0.1", CHANCE, labels) == (
        "**peak lr 0.1:** no run has finished yet.")
    runs = pd.DataFrame({"run_id": ["b0", "b1", "b2", "d0", "d1"], "seed": [0, 1, 2, 0, 1],
                         "regularizer": ["bridgeout"] * 3 + ["dropout"] * 2,
                         "final_test_acc": [0.98, 0.97, 0.11, 0.96, 0.95]})
    hist = pd.DataFrame({"run_id": ["b2", "b2", "b0"], "epoch": [2, 1, 1], "train_loss": [2.301, 2.281, 0.1]})
    assert teaching.stuck_sentence({"runs": runs.drop(2), "history": hist}, "peak lr 0.05", CHANCE, labels) == (
        "**peak lr 0.05:** all 4 runs trained; none ended at chance.")
    assert teaching.stuck_sentence({"runs": runs, "history": hist}, "peak lr 0.1", CHANCE, labels) == (
        "**peak lr 0.1:** never left chance: 1 of 3 Batch Bridgeout runs, 0 of 2 Dropout runs (Batch Bridgeout, "
        "seed 2: training loss 2.281 after the first epoch and 2.301 after the last, against ln 10 = 2.303 for a "
        "network that gives every image the same probabilities; test accuracy 11.0 %, against 60.0 % for always "
        "answering the most common digit).")


def _random_curves():
    """Two random draws per network at fractions 0, 0.2, 0.4: draw d loses 0.2 * (d + 1) at 0.2 and 0.4."""
    rows = []
    for reg, base in (("bridgeout", 0.9), ("dropout", 0.8), ("weight_decay", 0.7)):
        for d in range(2):
            for f in (0.0, 0.2, 0.4):
                rows.append({"regularizer": reg, "draw": d, "fraction": f,
                             "test_acc": base if f == 0 else base - 0.2 * (d + 1)})
    return pd.DataFrame(rows)


WIDE_L2 = pd.DataFrame({"bridgeout": [0.9, 0.9, 0.9], "dropout": [0.8, 0.8, 0.8], "weight_decay": [0.7, 0.45, 0.25]},
                       index=[0.0, 0.2, 0.4])


def test_random_gains_compares_each_ranking_with_its_own_draws():
    gains = teaching.random_gains(WIDE_L2, _random_curves(), [0.2, 0.4])
    assert list(gains) == ["bridgeout", "dropout", "weight_decay"]
    # per-draw mean gains +20 and +40 points: gain 0.3, se = sd(0.2, 0.4) / sqrt(2) = 0.1
    assert gains["bridgeout"]["gain"] == pytest.approx(0.3) and gains["bridgeout"]["se"] == pytest.approx(0.1)
    assert gains["bridgeout"]["n"] == 2 and gains["bridgeout"]["above"] == 2
    # weight decay: L2 0.45, 0.25 against draw 0 (0.5 at both) and draw 1 (0.3 at both): per-draw mean gains
    # -15 and +5 points: gain -5, se 10; between the draws at 0.2, below both at 0.4
    wd = gains["weight_decay"]
    assert wd["gain"] == pytest.approx(-0.05) and wd["se"] == pytest.approx(0.1)
    assert (wd["above"], wd["below"], wd["verdict"]) == (0, 1, "no clearer than chance")


def test_plot_random_draws_a_band_a_mean_and_the_l2_curve_per_network():
    fig, axes = _axes(3)
    handles = teaching.plot_random(axes, _random_curves(), WIDE_L2, 2)
    assert [h.get_label() for h in handles] == ["smallest L2 norm first", "random: mean of 2 draws",
                                                "random: range of the draws"]
    assert [ax.get_title() for ax in axes] == ["Batch Bridgeout", "Dropout", "Weight decay"]
    for ax in axes:
        assert len(ax.lines) == 2 and len(ax.collections) == 1
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), [90, 60, 60])     # mean of 70 and 50
    np.testing.assert_allclose(axes[2].lines[1].get_ydata(), [70, 45, 25])


def _grid_pruning():
    """L2 and random rows of three runs; weight decay's run never trained; one random row is
    after BatchNorm re-estimation and must be left out."""
    rows = []
    runs = {"b0": ("bridgeout", 0, (0.9, 0.8), (0.7, 0.6)), "b1": ("bridgeout", 1, (0.95, 0.85), (0.65, 0.55)),
            "d0": ("dropout", 0, (0.9, 0.7), (0.8, 0.6)), "w0": ("weight_decay", 0, (0.1, 0.1), (0.1, 0.1))}
    for rid, (reg, seed, l2, rnd) in runs.items():
        for criterion, accs in (("l2", (0.99,) + l2), ("random", (0.99,) + rnd)):
            for f, a in zip((0.0, 0.2, 0.4), accs):
                rows.append({"run_id": rid, "regularizer": reg, "seed": seed, "criterion": criterion, "mode": "mask",
                             "scope": "layer", "recalibrate_bn": False, "finetune_epochs": 0, "fraction": f,
                             "test_acc": a if rid != "w0" else 0.1})
    rows.append({**rows[5], "recalibrate_bn": True, "test_acc": 0.9})      # b0's random row at 0.4, recalibrated
    return pd.DataFrame(rows)


def test_random_grid_sentence_averages_each_networks_gain_over_its_seeds(tmp_path):
    pr = _grid_pruning()
    l2 = teaching.l2_rows(pr)
    # bridgeout: seed 0 gains 20, 20; seed 1 gains 30, 30: 25.0 ± 7.1; dropout one seed: +10
    assert teaching.random_grid_sentence(pr, l2, [0.2, 0.4], CHANCE) == (
        "On the five-seed grid (all of MNIST, 3 epochs, one random ranking per seed), the mean gain of the $L_2$ "
        "ranking over the random one, over the same fractions, is: Batch Bridgeout +25.0 ± 7.1 points (n = 2); "
        "Dropout +10.0 points (n = 1) (mean ± sd over seeds).")
    none = "The five-seed grid has no random-ranking rows yet."
    assert teaching.random_grid_sentence(pr[pr["criterion"] == "l2"], l2, [0.2, 0.4], CHANCE) == none
    empty = _empty_grid(tmp_path)["pruning"]
    assert teaching.random_grid_sentence(empty, teaching.l2_rows(empty), [0.2, 0.4], CHANCE) == none


def _mask_remove(remove_acc):
    return pd.DataFrame([{"fraction": f, "mode": m, "test_acc": a, "params": p, "flops": fl}
                         for m, accs, params, flops in (("mask", (0.9, 0.8, 0.6), (1000,) * 3, (2000,) * 3),
                                                        ("remove", remove_acc, (1000, 400, 250), (2000, 500, 300)))
                         for f, a, p, fl in zip((0.0, 0.5, 0.7), accs, params, flops)])


def test_remove_vs_zero_tables_both_and_names_the_largest_difference():
    table, text = teaching.remove_vs_zero(_mask_remove((0.9, 0.78, 0.65)))
    assert text == ("Largest accuracy difference between removing and zeroing: 5.0 points (at 70 % pruned, removal "
                    "higher). At 50 % pruned the removed network has 40% of the parameters and 25% of the FLOPs; "
                    "the zeroed one keeps all of both.")
    assert list(table.columns) == [("test accuracy", "mask"), ("test accuracy", "remove"), ("parameters", "mask"),
                                   ("parameters", "remove"), ("FLOPs per image", "mask"), ("FLOPs per image", "remove")]
    assert table.loc[0.7, ("parameters", "remove")] == 250 and table["parameters"].dtypes.eq("int64").all()
    _, text = teaching.remove_vs_zero(_mask_remove((0.9, 0.75, 0.58)))
    assert text.startswith("Largest accuracy difference between removing and zeroing: 5.0 points (at 50 % pruned, "
                           "removal lower or equal).")


def test_longer_sentence_sets_this_run_against_the_grids_means(tmp_path):
    wide = pd.DataFrame({"bridgeout": [0.90], "weight_decay": [0.85]}, index=[0.0])
    seeds5 = _seed_rows({"bridgeout": [(0.98, 0.9), (0.98, 0.8)], "weight_decay": [(0.99, 0.8), (0.99, 0.8), (0.1, 0.1)]})
    seeds5 = pd.concat([seeds5, pd.DataFrame([
        {"run_id": rid, "regularizer": reg, "seed": s, "fraction": 0.9, "test_acc": a}
        for rid, reg, s, a in (("bridgeout-0", "bridgeout", 0, 0.5), ("bridgeout-1", "bridgeout", 1, 0.3),
                               ("weight_decay-0", "weight_decay", 0, 0.45), ("weight_decay-1", "weight_decay", 1, 0.45),
                               ("weight_decay-2", "weight_decay", 2, 0.1))])])
    # grid means (weight decay's seed 2 at chance left out): unpruned 98.0 vs 99.0; at 50 % 85 vs 80; at 90 % 40 vs 45
    assert teaching.longer_sentence(wide, seeds5, CHANCE, 2000, 1) == (
        "Unpruned, Batch Bridgeout minus weight decay is +5.0 points in this chapter's run (2,000 images, 1 epoch, "
        "one seed) and -1.0 points averaged over the grid's seeds (60,000 images, 3 epochs). On the grid's means "
        "Bridgeout is level with or ahead of weight decay at 1 of the 2 pruned fractions (50 %).")
    behind = seeds5.assign(test_acc=np.where(seeds5["regularizer"] == "bridgeout", seeds5["test_acc"] - 0.3,
                                             seeds5["test_acc"]))
    assert teaching.longer_sentence(wide, behind, CHANCE, 60000, 3).endswith(
        "(60,000 images, 3 epochs). On the grid's means Bridgeout is level with or ahead of weight decay at 0 of the "
        "2 pruned fractions.")
    assert teaching.longer_sentence(wide, seeds5[seeds5["regularizer"] == "bridgeout"], CHANCE, 2000, 1) == (
        "(The five-seed grid has no Bridgeout and weight-decay pair yet.)")
    empty = teaching.l2_rows(_empty_grid(tmp_path)["pruning"])
    assert teaching.longer_sentence(wide, empty, CHANCE, 2000, 1) == "(The five-seed grid has no finished run yet.)"
