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
