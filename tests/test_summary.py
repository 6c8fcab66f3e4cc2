"""Tests for bridgeout.summary: the book's at-a-glance sentences come from the tables."""
from __future__ import annotations

import pandas as pd

from bridgeout import results, summary

from test_results import history_df, pruning_df, run_row


def _write(root, arms_acc):
    runs, pr, hist = [], [], []
    for i, (reg, q, signed, acc) in enumerate(arms_acc):
        rid = f"r{i}"
        runs.append(run_row(rid, grid=summary.CPU_GRID, model="vgg16", dataset="cifar10", regularizer=reg,
                            q=q, signed=signed, protocol="cpu", epochs=26, n_train=50000,
                            final_test_acc=acc, seed=0))
        p = pruning_df(rid, fractions=(0.0, 0.2, 0.3, 0.4, 0.5))
        p["test_acc"] = [max(0.0, acc - f * (0.3 if reg == "bridgeout" and not signed else 1.2)) for f in p["fraction"]]
        pr.append(p)
        h = history_df(rid, epochs=4)
        h["lr"] = [0.1, 0.1, 0.1, 0.02]
        h["train_acc"] = [0.5, 0.7, 0.7, 0.8]
        hist.append(h)
    results.append("runs", pd.DataFrame(runs), root)
    results.append("pruning", pd.concat(pr), root)
    results.append("history", pd.concat(hist), root)


def test_at_a_glance_without_runs(tmp_path):
    g = summary.at_a_glance(tmp_path)
    assert "nothing" in g["paper_scale"] and "0 of 12 runs" in g["cpu"]
    assert "no CPU-scale result yet" in g["outcome"] and "no run yet" in g["teaching"]
    assert g["beyond"] == "**Beyond the paper:** no run yet."


def test_beyond_line_puts_the_sparsity_baselines_beside_bridgeout(tmp_path):
    _write(tmp_path, [("bridgeout", 1.5, False, 0.84)])
    rows, pr = [], []
    for i, (reg, acc) in enumerate([("slimming", 0.80), ("slimming", 0.82), ("group_lasso", 0.70)]):
        rid = f"s{i}"
        rows.append(run_row(rid, grid=summary.SPARSITY_GRID, model="vgg16", dataset="cifar10", regularizer=reg,
                            lam=1e-3, protocol="cpu", epochs=26, n_train=50000, final_test_acc=acc, seed=i))
        p = pruning_df(rid, fractions=(0.0, 0.3)).assign(recalibrate_bn=True)
        p["test_acc"] = [acc, acc - 0.1]
        pr.append(p)
    results.append("runs", pd.DataFrame(rows), tmp_path)
    results.append("pruning", pd.concat(pr), tmp_path)
    line = summary.at_a_glance(tmp_path)["beyond"]
    # BatchNorm re-estimated, 30 %: slimming (0.70, 0.72) -> 71.0 ± 1.4 over 2 seeds; group lasso 60.0
    assert "Network Slimming (L1 on γ) 71.0 ± 1.4 % (2 seeds)" in line
    assert "group lasso (SSL) 60.0 % (1 seed)" in line
    assert "noise ablation" not in line          # no ablation run in these tables
    assert "fine-tuning" not in line             # no fine-tuning pass in these tables either
    # a fine-tuning pass: Bridgeout (r0) beside the best of the other arms at 30 %
    ft = [pruning_df(rid, fractions=(0.3,)).assign(finetune_epochs=1, test_acc=acc)
          for rid, acc in (("r0", 0.75), ("s0", 0.78), ("s1", 0.70), ("s2", 0.79))]
    results.append("pruning", pd.concat(ft), tmp_path, keyed=True)
    line = summary.at_a_glance(tmp_path)["beyond"]
    assert ("after one epoch of fine-tuning instead, Batch Bridgeout (q = 1.5) 75.0 %; group lasso (SSL) "
            "79.0 % (the best of 2 other arms)") in line


def test_at_a_glance_states_what_the_tables_hold(tmp_path):
    _write(tmp_path, [("weight_decay", 1.5, False, 0.88), ("dropout", 1.5, False, 0.86),
                      ("bridgeout", 1.5, False, 0.84), ("bridgeout", 2.0, True, 0.87)])
    g = summary.at_a_glance(tmp_path)
    assert "4 of 12 runs finished" in g["cpu"] and "26 epochs" in g["cpu"]
    assert "weight decay only 88.0 %" in g["outcome"] and "Batch Bridgeout (q = 1.5) 84.0 %" in g["outcome"]
    # at 30 %: WD 0.88 - 0.36 = 52.0, BB 0.84 - 0.09 = 75.0
    assert "weight decay only 52.0 %" in g["outcome"] and "Batch Bridgeout (q = 1.5) 75.0 %" in g["outcome"]
    assert "ahead of both weight decay and Dropout at 4 of 4" in g["outcome"]
    assert "while starting 4.0 points below weight decay only unpruned" in g["outcome"]
    assert "10,166 steps" in g["hard"] and "26 instead of 230 epochs" in g["differs"]


def test_at_a_glance_refuses_to_compare_runs_at_chance(tmp_path):
    _write(tmp_path, [("weight_decay", 1.5, False, 0.88), ("dropout", 1.5, False, 0.10),
                      ("bridgeout", 1.5, False, 0.11), ("bridgeout", 2.0, True, 0.87)])
    out = summary.at_a_glance(tmp_path)["outcome"]
    assert "2 of 4 runs ended near chance" in out and "ahead" not in out


def test_teaching_line_counts_the_five_seed_grid_and_the_runs_at_chance(tmp_path):
    runs = [run_row(f"t{reg}{s}", grid=summary.TEACH_GRID, model="lenet5", dataset="mnist", regularizer=reg,
                    protocol="fast_lr0.05", epochs=3, n_train=60000, final_test_acc=0.98, seed=s)
            for reg in ("bridgeout", "dropout", "weight_decay") for s in range(5)]
    runs += [run_row(f"o{reg}{s}", grid=summary.TEACH_GRID_LR01, model="lenet5", dataset="mnist",
                     regularizer=reg, protocol="fast", epochs=3, n_train=60000, seed=s,
                     final_test_acc=0.1135 if (reg, s) == ("bridgeout", 2) else 0.98)
             for reg in ("bridgeout", "dropout", "weight_decay") for s in range(3)]
    results.append("runs", pd.DataFrame(runs), tmp_path)
    line = summary.at_a_glance(tmp_path)["teaching"]
    assert "15 runs, 5 seeds per regularizer, 0 of them did not train" in line
    assert "peak learning rate of 0.1, 1 of 9 runs did not)" in line


def test_short_runs_line_gives_each_regularizer_its_range(tmp_path):
    assert summary.short_runs_line(tmp_path) == "No such run is in the tables."
    rows = [run_row(f"s{i}", grid=g, model=m, regularizer=r, dataset="cifar10", final_test_acc=a)
            for i, (g, m, r, a) in enumerate([("cpu-cifar10", "vgg16", "bridgeout", 0.10),
                                               ("cpu-cifar10-e12", "vgg16", "bridgeout", 0.203),
                                               ("cpu-cifar10", "vgg16", "weight_decay", 0.331),
                                               ("cpu-cifar10", "resnet", "dropout", 0.397),
                                               ("cpu-cifar10", "resnet", "weight_decay", 0.518)])]
    results.append("runs", pd.DataFrame(rows), tmp_path)
    line = summary.short_runs_line(tmp_path)
    assert "Bridgeout 10.0-20.3 % (VGG-16 ×0.25)" in line and "Dropout 39.7 % (ResNet ×0.5)" in line
    assert line.endswith("Every Bridgeout and Dropout run ended below every weight-decay run of the same network.")
    results.append("runs", pd.DataFrame([run_row("s9", grid="cpu-cifar10", model="resnet", regularizer="bridgeout",
                                                 dataset="cifar10", final_test_acc=0.6)]), tmp_path)
    assert "Every Bridgeout" not in summary.short_runs_line(tmp_path)
