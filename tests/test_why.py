"""Tests for bridgeout.why: the causes of the gap, the verdict, the GPU need and the prediction follow the tables."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bridgeout import results, why

from test_results import run_row
from test_summary import _write

def test_why_lists_every_cause_with_its_evidence_or_status(tmp_path):
    empty = why.table(tmp_path)
    assert len(empty) == 7 and set(empty["status"]) == {"not run yet"}
    assert "| candidate cause | what the runs show | status |" in why.markdown(empty)
    _write(tmp_path, [("weight_decay", 1.5, False, 0.86), ("dropout", 1.5, False, 0.8),
                      ("bridgeout", 1.5, False, 0.74), ("bridgeout", 2.0, True, 0.83)])
    # BatchNorm re-estimated rows: each arm wins back 40 % of its loss
    pr = results.load("pruning", tmp_path)
    one = pr[~pr["recalibrate_bn"]].copy()
    base = one[one["fraction"] == 0].set_index("run_id")["test_acc"]
    one["test_acc"] = one["test_acc"] + 0.4 * (one["run_id"].map(base) - one["test_acc"])
    one["recalibrate_bn"] = True
    results.append("pruning", one, tmp_path, keyed=True)   # rows of a later pass over finished runs
    runs = results.load("runs", tmp_path)
    results.append("runs", pd.DataFrame([run_row("res0", grid=why.RESNET_GRID, model="resnet", dataset="cifar10",
                                                  regularizer="weight_decay", protocol="cpu", epochs=26,
                                                  n_train=50000, final_test_acc=0.9, seed=0)]), tmp_path)
    t = why.table(tmp_path).set_index("cause")
    bn = t.loc["BatchNorm statistics gathered before pruning"]
    assert bn["status"] == "measured" and "weight decay only 40.0;" in bn["evidence"]
    assert "half of every arm" not in bn["evidence"] and "0 of 4 arms win back more than half" in bn["evidence"]
    assert t.loc["width (VGG-16 at a quarter of its channels)", "status"] == "running: 1 of 12 runs in"
    assert t.loc["training length (26 epochs instead of 230)", "status"] == "not run yet"
    noise = t.loc["the amount of noise against the exponent q (the scripts' q = None path)", "evidence"]
    assert "Batch Bridgeout (q = 1.5) 65.0; targeted DropConnect (signed, q = 2) 47.0" in noise
    assert "no kept Batch Bridgeout weights" in noise              # no weights file in these tables
    assert "no network has its BatchNorm running statistics" in t.loc[
        "which filters the norm ranking removes (the paper's mechanism)", "evidence"]
    assert len(runs) == 4


def _with_variant(root, pruner="plain", scope="layer", shift=-0.05):
    """Rows of a later pass: the plain one-shot rows again with another pruner or scope,
    ``shift`` lower at every fraction but 0."""
    pr = results.load("pruning", root)
    one = pr[~pr["recalibrate_bn"].astype(bool) & (pr["pruner"] == "plain") & (pr["scope"] == "layer")].copy()
    one.loc[one["fraction"] > 0, "test_acc"] += shift
    one["pruner"], one["scope"] = pruner, scope
    results.append("pruning", one, root, keyed=True)


def test_variant_effect_is_the_difference_on_the_same_runs(tmp_path):
    _write(tmp_path, [("weight_decay", 1.5, False, 0.86), ("bridgeout", 1.5, False, 0.74)])
    assert why.variant_effect(tmp_path, "published").empty
    _with_variant(tmp_path, pruner="published", shift=-0.05)
    _with_variant(tmp_path, scope="global", shift=+0.02)
    eff = why.variant_effect(tmp_path, "published").set_index("arm")
    assert eff.loc["bridgeout", "diff"] == pytest.approx(-0.05) and eff.loc["weight_decay", "n"] == 1
    assert eff.loc["bridgeout", "plain"] == pytest.approx(0.74 - 0.3 * 0.3)
    g = why.variant_effect(tmp_path, "global").set_index("arm")
    assert g.loc["weight_decay", "diff"] == pytest.approx(0.02)
    assert why.variant_effect(tmp_path, "mean").empty
    text = why.verdict(tmp_path)
    assert "**The pruner: the authors' pruner (BatchNorm scales zeroed too).**" in text
    assert "Batch Bridgeout (q = 1.5) -5.0 points (65.0 → 60.0, 1 network)" in text
    assert "It lowers Batch Bridgeout's curve, so it cannot be why the published curves lie above ours." in text
    assert "mean replacement (each zeroed channel kept at its mean output) (not run yet)" in text
    assert "one global ranking" not in text.split("**Still open:**")[1]
    # a variant the authors' code does not use is read as a diagnosis, not as the cause of the gap
    assert ("**The pruner: one global ranking instead of one per layer.** On the same weights (the kept bf16 parity "
            "networks), at 30 % one shot, it changes accuracy by") in text
    assert text.count("The authors' code does not use one global ranking") == 1          # global only, not published
    assert "one layer at a time (not run yet)" in text.split("**Still open:**")[1]


def test_verdict_puts_the_resnet_beside_the_published_panel(tmp_path):
    from test_results import pruning_df
    _write(tmp_path, [("weight_decay", 1.5, False, 0.86), ("bridgeout", 1.5, False, 0.74)])
    runs, pr = [], []
    for reg, acc, kept in (("weight_decay", 0.9, 0.15), ("bridgeout", 0.8, 0.45)):
        rid = f"res-{reg}"
        runs.append(run_row(rid, grid=why.RESNET_GRID, model="resnet", dataset="cifar10", regularizer=reg,
                            protocol="cpu", epochs=26, n_train=50000, final_test_acc=acc, seed=0))
        p = pruning_df(rid, fractions=(0.0, 0.3))
        p["test_acc"] = [acc, acc * kept]
        pr.append(p)
    results.append("runs", pd.DataFrame(runs), tmp_path)
    results.append("pruning", pd.concat(pr), tmp_path)
    text = why.verdict(tmp_path)
    assert "**Width: no sign that it is the main cause (1 seed per arm so far).**" in text
    assert "Batch Bridgeout (q = 1.5) 45.0 % (published 82.8 %, 1 seed)" in text
    assert "weight decay only 15.0 % (published 14.5 %, 1 seed)" in text
    assert "Full width leaves Bridgeout 37.8 points of retention below the published panel" in text
    assert "`cpu-cifar10-vgg-e52`: not run yet" in text
    pred = why.prediction(tmp_path)
    assert "at least 70 %" in pred and "less than 50 %" in pred
    assert "keeps 15.0 % of its unpruned accuracy at 30 %, the published one 14.5 %" in pred
    assert "still 10.0 points below weight decay unpruned (published: 2.3)" in pred
    assert "No ResNet run" in why.prediction(tmp_path / "empty")


def test_gpu_need_counts_the_published_protocol():
    need = why.gpu_need(utilisation=0.1).set_index("model")
    assert list(need.index) == ["vgg16", "resnet", "wrn28_10"] and set(need["runs"]) == {18}
    # VGG-16 on a 32x32 image: 313 M multiply-adds (2 FLOPs each) in the convs and the head
    assert need.loc["vgg16", "forward_gflop"] == pytest.approx(0.626, abs=0.002)
    assert need.loc["wrn28_10", "forward_gflop"] == pytest.approx(11.9, abs=0.05)
    per_run = 3 * need.loc["vgg16", "forward_gflop"] * 1e9 * 230 * 50_000
    assert need.loc["vgg16", "train_pflop_per_run"] == pytest.approx(per_run / 1e15)
    assert need.loc["vgg16", "gpu_hours"] == pytest.approx(18 * per_run / (99e12 * 3600))
    assert why.gpu_need(utilisation=0.2)["gpu_hours"].sum() == pytest.approx(need["gpu_hours"].sum() / 2)
    with pytest.raises(ValueError, match="utilisation must be in \\(0, 1\\], got 0"):
        why.gpu_need(utilisation=0)
    s = why.gpu_sentence(why.gpu_need())
    assert "230 epochs, 8.8× the `cpu` protocol's" in s and "22 H200-hours in all at 10 %" in s


def test_energy_retention_pairs_each_networks_energy_share_with_its_retention(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    _write(tmp_path, [("weight_decay", 1.5, False, 0.86), ("bridgeout", 1.5, False, 0.74)])
    assert why.energy_retention(tmp_path).empty                  # no filter rows yet
    rows = []
    for rid, gammas in (("r0", [1.0, 1.0, 1.0, 1.0]), ("r1", [0.1, 1.0, 1.0, 1.0])):
        for i, g in enumerate(gammas):   # filter 0 has the smallest norm: pruned at 30 % (floor(0.3 * 4) = 1)
            rows.append({"run_id": rid, "layer": "features.0.conv", "filter": i, "norm": 0.5 + i, "gamma": g,
                         "beta": 0.0, "bn_mean": 0.0, "bn_var": 1.0})
    results.append("filters", pd.DataFrame(rows), tmp_path)
    t = why.energy_retention(tmp_path).set_index("run_id")
    eps = 1e-5
    e = 1 / (1 + eps)
    assert t.loc["r0", "share"] == pytest.approx(0.25)
    assert t.loc["r1", "share"] == pytest.approx(0.01 * e / (0.01 * e + 3 * e))
    assert t.loc["r0", "kept"] == pytest.approx((0.86 - 0.3 * 1.2) / 0.86)     # _write's slopes
    assert t.loc["r1", "kept"] == pytest.approx((0.74 - 0.3 * 0.3) / 0.74)
    assert set(t["model"]) == {"vgg16"} and t.loc["r1", "arm"] == "bridgeout"
    fig, ax = plt.subplots()
    r, n = why.plot_energy(ax, why.energy_retention(tmp_path))
    assert n == 2 and math.isnan(r) and len(ax.get_lines()) == 2     # r needs three networks
    plt.close(fig)


def test_headline_says_what_is_settled_and_what_is_still_measured(tmp_path):
    assert why.headline(tmp_path) == ("**Why below the paper:** not measured yet; the training length is not measured "
                                      "yet (none of its 52-epoch runs has finished).")
    _write(tmp_path, [("weight_decay", 1.5, False, 0.86), ("bridgeout", 1.5, False, 0.74)])
    _with_variant(tmp_path, pruner="published", shift=-0.05)
    pr = results.load("pruning", tmp_path)
    one = pr[~pr["recalibrate_bn"] & (pr["pruner"] == "plain")].copy()
    base = one[one["fraction"] == 0].set_index("run_id")["test_acc"]
    one["test_acc"] = one["test_acc"] + 0.4 * (one["run_id"].map(base) - one["test_acc"])
    one["recalibrate_bn"] = True
    results.append("pruning", one, tmp_path, keyed=True)
    results.append("runs", pd.DataFrame([run_row("e52", grid=why.LENGTH_GRID, model="vgg16", dataset="cifar10",
                                                  regularizer="bridgeout", protocol="cpu", epochs=52,
                                                  n_train=50000, final_test_acc=0.8, seed=0)]), tmp_path)
    text = why.headline(tmp_path)
    assert text.startswith("**Why below the paper:** most of every arm's one-shot loss at 30 % is stale BatchNorm "
                           "statistics (40–40 % of it comes back")
    assert "the authors' pruner (it also zeroes BatchNorm scales) lowers Bridgeout by 5.0 points instead of raising it" in text
    assert text.endswith("the training length is being measured (1 of 6 52-epoch runs in).")
    assert "ResNet" not in text                                    # no ResNet run in these tables


def test_matched_noise_reads_retention_against_bridgeout_with_its_interval(tmp_path):
    from test_results import pruning_df
    from bridgeout.summary import CPU_GRID
    runs, pr = [], []
    # Batch Bridgeout at p = 0.3 keeps 0.30 / 0.31 / 0.29 of 0.75; q = 2 at the matched p 0.28 / 0.34 / 0.30 of 0.60
    for s, (kb, km) in enumerate([(0.30, 0.28), (0.31, 0.34), (0.29, 0.30)]):
        for rid, grid, q, signed, p, acc, kept in ((f"b{s}", CPU_GRID, 1.5, False, 0.3, 0.75, kb),
                                                   (f"m{s}", why.NOISE_GRID, 2.0, True, 0.79, 0.60, km)):
            runs.append(run_row(rid, grid=grid, model="vgg16", dataset="cifar10", regularizer="bridgeout", q=q,
                                signed=signed, p=p, protocol="cpu", epochs=26, n_train=50000, final_test_acc=acc,
                                seed=s))
            rows = pruning_df(rid, fractions=(0.0, 0.3))
            rows["test_acc"] = [acc, acc * kept]
            pr.append(rows)
    results.append("runs", pd.DataFrame(runs), tmp_path)
    results.append("pruning", pd.concat(pr), tmp_path)
    noise = why.table(tmp_path).set_index("cause").loc[
        "the amount of noise against the exponent q (the scripts' q = None path)", "evidence"]
    assert ("At the matched p (`cpu-cifar10-dropconnect-matched`, 3 runs), q = 2 keeps 18.4 ± 1.8 at 30 % one shot, "
            "30.7 ± 3.1 % of its unpruned accuracy, against 30.0 ± 1.0 % for Batch Bridgeout at p = 0.3: with the "
            "amount of noise matched, the exponent makes no difference these seeds can resolve") in noise
    assert "is not ruled out" in noise
    from bridgeout import claims
    q = claims.table(tmp_path).set_index("verdict", append=True).reset_index("verdict")
    q = q[q["claim"].str.startswith("The bridge exponent")].iloc[0]
    assert q["verdict"] == "not observed" and "the advantage seen at p = 0.3 is not seen" in q["ours"]


def test_energy_legend_lists_only_what_is_drawn():
    import matplotlib
    matplotlib.use("Agg")
    t = pd.DataFrame({"run_id": ["a", "b", "c"], "arm": ["bridgeout", "weight_decay", "bridgeout"],
                      "grid": "g", "model": ["vgg16", "vgg16", "vgg16"], "share": [0.1, 0.2, 0.15],
                      "kept": [0.5, 0.2, 0.4]})
    h = why.energy_handles(t)
    assert [x.get_label() for x in h] == ["weight decay only", "Batch Bridgeout (q = 1.5)", "VGG-16 ×0.25"]
    assert all(x.get_marker() == "o" for x in h)          # no ResNet square without a ResNet point
    t.loc[2, "model"] = "resnet"
    assert [x.get_marker() for x in why.energy_handles(t)][-2:] == ["o", "s"]


def test_length_row_sets_52_epochs_beside_26(tmp_path):
    from test_results import pruning_df
    _write(tmp_path, [("weight_decay", 1.5, False, 0.86), ("bridgeout", 1.5, False, 0.74)])
    t = why.table(tmp_path).set_index("cause")
    assert t.loc["training length (26 epochs instead of 230)", "evidence"].startswith("the same comparison at 52")
    results.append("runs", pd.DataFrame([run_row("e52", grid=why.LENGTH_GRID, model="vgg16", dataset="cifar10",
                                                  regularizer="bridgeout", protocol="cpu", epochs=52,
                                                  n_train=50000, final_test_acc=0.8, seed=0)]), tmp_path)
    p = pruning_df("e52", fractions=(0.0, 0.3))
    p["test_acc"] = [0.80, 0.64]
    results.append("pruning", p, tmp_path)
    row = why.table(tmp_path).set_index("cause").loc["training length (26 epochs instead of 230)"]
    # 26 epochs: 0.74 and 0.74 - 0.3 * 0.3 = 0.65 (87.8 % kept); 52 epochs: 0.80 and 0.64 (80.0 % kept)
    assert row["status"] == "running: 1 of 6 runs in"
    assert row["evidence"] == ("Batch Bridgeout (q = 1.5) (1 run at 52 epochs): unpruned 80.0 against 74.0 at 26; "
                               "one shot at 30 % 64.0 against 65.0, so 80.0 % of its unpruned accuracy kept against "
                               "87.8 % (+6.0 points unpruned, -7.8 points of share kept). With one run per arm at 52 "
                               "epochs, a direction, not a finding")
