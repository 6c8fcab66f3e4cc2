"""Tests for bridgeout.comparison: arms, per-run checks, the outcome, the figures."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bridgeout import comparison  # noqa: E402


@pytest.mark.parametrize("reg, q, signed, arm", [
    ("bridgeout", 1.5, False, "bridgeout"), ("bridgeout", 2.0, True, "targeted_dropconnect"),
    ("bridgeout", 2.0, False, "bridgeout-q2"), ("bridgeout", 1.0, True, "bridgeout-q1-signed"),
    ("dropout", 1.5, False, "dropout"), ("weight_decay", 2.0, True, "weight_decay"),
])
def test_arm_of(reg, q, signed, arm):
    assert comparison.arm_of(reg, q, signed) == arm


def _acc():
    rows = []
    for arm, base in (("weight_decay", 0.9), ("dropout", 0.85), ("bridgeout", 0.8)):
        for seed in (0, 1):
            for f in (0.0, 0.2, 0.3, 0.5):
                drop = {"weight_decay": 1.5, "dropout": 1.2, "bridgeout": 0.3}[arm] * f
                rows.append({"run_id": f"{arm}{seed}", "arm": arm, "seed": seed, "fraction": f,
                             "test_acc": base - drop + 0.01 * seed})
    return pd.DataFrame(rows)


def test_summary_and_outcome():
    s = comparison.summary(_acc())
    assert list(s["arm"].unique()) == ["weight_decay", "dropout", "bridgeout"]   # display order
    row = s[(s["arm"] == "bridgeout") & np.isclose(s["fraction"], 0.5)].iloc[0]
    assert math.isclose(row["mean"], 0.8 - 0.15 + 0.005) and row["n"] == 2
    assert math.isclose(row["sd"], np.std([0.65, 0.66], ddof=1))
    out = comparison.outcome(s).set_index("fraction")
    # at 20 %: WD 0.60+, DO 0.61+, BB 0.74+: ahead; at 0 % (not asked) WD is ahead
    assert list(out.index) == [0.2, 0.3, 0.5]
    assert out["ahead"].all() and out["clearly_ahead"].all()
    assert math.isclose(out.loc[0.2, "difference"], (0.8 - 0.06) - (0.85 - 0.24))
    assert out.loc[0.2, "best_baseline"] == "dropout"
    # Bridgeout behind everywhere -> not ahead
    worse = s.assign(mean=np.where(s["arm"] == "bridgeout", 0.0, s["mean"]))
    assert not comparison.outcome(worse)["ahead"].any()
    # an arm missing -> no comparison rows
    assert comparison.outcome(s[s["arm"] != "dropout"]).empty


def _history(train_acc, lrs):
    return pd.DataFrame({"run_id": "r", "epoch": range(1, len(lrs) + 1), "lr": lrs, "train_acc": train_acc,
                         "test_acc": train_acc, "arm": "bridgeout", "seed": 0})


def test_training_check_levelled_and_chance():
    lrs = [0.1] * 4 + [0.02] * 2 + [0.004] * 2
    runs = pd.DataFrame({"run_id": ["r"], "arm": ["bridgeout"], "seed": [0], "final_test_acc": [0.8]})
    flat = comparison.training_check(_history([.3, .5, .6, .7, .78, .79, .80, .81], lrs), runs).iloc[0]
    # the last decay is before epoch 7: the epochs before it are 1-6, the change over the last
    # two of them is acc[6] - acc[4] (epochs 6 and 4)
    assert flat["plateau_change"] == pytest.approx(0.79 - 0.70)
    assert not flat["levelled"]            # still rising by 9 points before the last decay
    lev = comparison.training_check(_history([.3, .5, .6, .78, .785, .79, .80, .81], lrs), runs).iloc[0]
    assert lev["plateau_change"] == pytest.approx(0.79 - 0.78) and lev["levelled"]
    assert comparison.training_check(_history([.1] * 8, lrs), runs.assign(final_test_acc=0.12)).iloc[0]["at_chance"]
    assert not lev["at_chance"]


def test_figures_draw_a_line_per_seed_and_the_mean():
    acc = _acc()
    fig, ax = plt.subplots()
    comparison.plot_pruning(ax, acc)
    assert len(ax.lines) == 3 * (2 + 1)          # two seeds + the mean, per arm
    plt.close(fig)
    filt = pd.DataFrame({"run_id": "a", "layer": "c", "filter": range(4), "norm": [1, 0.5, 0.01, 0.2],
                         "gamma": [1, -0.5, 0.0, 0.2], "beta": 0.0, "arm": "bridgeout"})
    fig, axes = plt.subplots(1, 2)
    comparison.plot_filter_norms(axes, filt)
    x, y = axes[0].lines[0].get_data()
    assert np.allclose(x, [0.01, 0.2, 0.5, 1.0]) and np.allclose(y, [25, 50, 75, 100])
    plt.close(fig)


def _curve():
    # a published-like curve: bridgeout 0.90 -> 0.72 at 30 %, weight decay 0.93 -> 0.31 (no DropConnect)
    return pd.DataFrame([{"regularizer": r, "fraction": f, "accuracy": a}
                         for r, pts in (("bridgeout", ((0.0, 0.90), (0.2, 0.81), (0.3, 0.72))),
                                        ("weight_decay", ((0.0, 0.93), (0.2, 0.62), (0.3, 0.31))))
                         for f, a in pts])


def test_relative_divides_each_run_and_curve_by_its_own_unpruned_accuracy():
    rel = comparison.relative(_acc())
    r = rel[(rel["run_id"] == "bridgeout1") & np.isclose(rel["fraction"], 0.5)].iloc[0]
    assert math.isclose(r["test_acc"], (0.8 - 0.15 + 0.01) / (0.8 + 0.01))
    assert (rel[np.isclose(rel["fraction"], 0)]["test_acc"] == 1.0).all()
    no_base = _acc()[lambda d: ~((d["run_id"] == "dropout0") & (d["fraction"] == 0))]
    assert "dropout0" not in set(comparison.relative(no_base)["run_id"])       # no unpruned row: dropped
    pr = comparison.paper_relative(_curve()).set_index(["regularizer", "fraction"])["accuracy"]
    assert math.isclose(pr[("bridgeout", 0.3)], 0.72 / 0.90) and pr[("weight_decay", 0.0)] == 1.0


def test_versus_paper_table_and_its_markdown():
    t = comparison.versus_paper(_acc(), _curve(), fractions=(0.0, 0.2, 0.3))
    row = t[(t["arm"] == "bridgeout") & np.isclose(t["fraction"], 0.3)].iloc[0]
    assert math.isclose(row["mean"], 0.8 - 0.09 + 0.005) and math.isclose(row["paper"], 0.72)
    assert math.isclose(row["diff"], row["mean"] - 0.72) and row["n"] == 2
    assert t[t["arm"] == "dropout"]["paper"].isna().all()            # the curve has no Dropout here
    md = comparison.versus_paper_markdown(t)
    lines = md.splitlines()
    assert lines[0] == "| arm (seeds) | unpruned | 20 % | 30 % |"
    assert lines[2].startswith("| weight decay only (2) | 90.5 ± 0.7 / 93.0 | ")
    assert "| targeted Dropout (2) | 85.5 ± 0.7 | " in md             # no published value: ours only
    assert comparison.versus_paper_markdown(t.iloc[0:0]) == ""


def test_outcome_sentence_says_by_how_much_and_against_the_spread():
    s = comparison.summary(_acc())
    text = comparison.outcome_sentence(s, fractions=(0.2, 0.3))
    assert text.startswith("One shot, Batch Bridgeout keeps more than both baselines at every one of these fractions")
    assert "20 %: +13.0 points against targeted Dropout" in text and "2 seeds per arm" in text
    assert text.endswith("the lead exceeds the larger seed sd at 2 of 2. The claims table tests each lead with a "
                         "Welch interval.")
    assert "within 5 points of chance" not in text
    dead = s.assign(mean=np.where(np.isclose(s["fraction"], 0.3), 0.12, s["mean"]))   # every arm near chance at 30 %
    assert ("and at 30 % every arm is within 5 points of chance, so a lead there means nothing"
            in comparison.outcome_sentence(dead, fractions=(0.2, 0.3)))
    worse = s.assign(mean=np.where(s["arm"] == "bridgeout", 0.0, s["mean"]))
    assert "keeps less than the better baseline at every one" in comparison.outcome_sentence(worse, fractions=(0.2,))
    assert comparison.outcome_sentence(s[s["arm"] != "dropout"]) == ""
    assert comparison.outcome_sentence(s, what="with BatchNorm re-estimated").startswith("With BatchNorm ")


def test_relative_pruning_panel_draws_shares(tmp_path):
    fig, ax = plt.subplots()
    comparison.plot_pruning(ax, _acc(), _curve(), relative=True)
    assert ax.get_ylabel() == "% of its unpruned accuracy"
    ys = [line.get_ydata() for line in ax.lines]
    assert max(max(y) for y in ys) == pytest.approx(100.0)           # every curve starts at 100 %
    plt.close(fig)


def _filters():
    # one run, two layers of 4 filters; layer b has no running statistics (an older row)
    rows = []
    for layer, norms, gammas in (("a", [0.4, 0.1, 0.3, 0.2], [1.0, 0.5, 2.0, 0.25]),
                                 ("b", [0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 1.0])):
        for i, (n, g) in enumerate(zip(norms, gammas)):
            rows.append({"run_id": "r", "arm": "bridgeout", "seed": 0, "layer": layer, "filter": i, "norm": n,
                         "gamma": g, "beta": 0.5 if layer == "a" else 0.0,
                         "bn_mean": 0.0 if layer == "a" else math.nan, "bn_var": 1.0 if layer == "a" else math.nan})
    return pd.DataFrame(rows)


def test_channel_energy_and_the_share_the_pruned_filters_carry():
    f = _filters()
    e = comparison.channel_energy(f, eps=0.0)
    assert e.iloc[:4].tolist() == pytest.approx([1.25, 0.5, 4.25, 0.3125])     # gamma^2 + beta^2
    assert e.iloc[4:].isna().all()
    # the BatchNorm's eps shrinks the variance part: gamma^2 var / (var + eps)
    assert comparison.channel_energy(f, eps=1.0).iloc[0] == pytest.approx(0.5 + 0.25)
    # 50 %: the two smallest norms of layer a are filters 1 and 3 (energies 0.5 and 0.3125);
    # layer b has no running statistics and is left out
    out = comparison.energy_removed(f, 0.5, eps=0.0).iloc[0]
    assert out["share"] == pytest.approx((0.5 + 0.3125) / 6.3125)
    assert out["layer_mean"] == pytest.approx(out["share"]) and out["arm"] == "bridgeout"
    # ties in norm go to the lower filter index, as bridgeout.prune.select does
    tied = f.assign(norm=0.1)
    assert comparison.energy_removed(tied, 0.25, eps=0.0).iloc[0]["share"] == pytest.approx(1.25 / 6.3125)
    from bridgeout import prune
    import torch
    assert prune.select([torch.full((4,), 0.1)], 0.25)[0].tolist() == [0]
    # no statistics at all: NaN, not 0
    assert math.isnan(comparison.energy_removed(f[f["layer"] == "b"], 0.5).iloc[0]["share"])


def test_bn_recovery_and_correlation():
    acc = _acc()
    recal = acc.assign(test_acc=acc["test_acc"] + np.where(acc["fraction"] > 0, 0.1, 0.0))
    r = comparison.bn_recovery(acc, recal, 0.5).set_index("run_id")
    # weight decay seed 0: unpruned 0.9, one shot 0.9 - 0.75 = 0.15, re-estimated 0.25: 0.1 / 0.75
    assert r.loc["weight_decay0", "recovered"] == pytest.approx(0.1 / 0.75)
    assert r.loc["weight_decay0", ["unpruned", "one_shot", "recal"]].tolist() == pytest.approx([0.9, 0.15, 0.25])
    assert len(r) == 6 and set(r["arm"]) == {"weight_decay", "dropout", "bridgeout"}
    assert comparison.bn_recovery(acc, recal, 0.0)["recovered"].isna().all()     # nothing lost at 0 %
    assert comparison.correlation([1, 2, 3, 4], [2, 4, 6, 8.5])[0] == pytest.approx(np.corrcoef(
        [1, 2, 3, 4], [2, 4, 6, 8.5])[0, 1])
    assert comparison.correlation([1, 2, float("nan"), 4, 5], [5, 4, 0, 2, 1]) == (pytest.approx(-1.0), 4)   # the NaN pair dropped
    r2, n = comparison.correlation([1, 2], [2, 1])
    assert math.isnan(r2) and n == 2


def test_did_not_train_is_at_chance_or_far_below_its_group():
    acc = pd.Series([0.99, 0.98, 0.212, 0.11, 0.97, 0.60], index=list("abcdef"))
    groups = pd.Series(["x", "x", "x", "y", "y", "y"], index=acc.index)
    out = comparison.did_not_train(acc, groups)
    # c: 21.2 % against its group's median 98 %; d: at chance; f: 60 % against median 60 %: trained
    assert out.to_dict() == {"a": False, "b": False, "c": True, "d": True, "e": False, "f": False}
    one = comparison.did_not_train(acc)          # one group: median 78.5 %
    assert not one["f"] and one["c"] and one["d"]
    assert comparison.did_not_train(pd.Series([0.1, 0.16]), chance=0.1).tolist() == [True, False]
