"""Tests of bridgeout.parity (the bf16 parity pilot): the t quantile against a numerical
integral of Student's t, Welch's interval, and the table, verdicts, sentence and figure on
synthetic result tables."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from bridgeout import parity, results

matplotlib.use("Agg")


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 7, 12, 29, 60])
def test_t975_is_the_97_5_percent_quantile(df):
    """P(T <= t975(df)) = 0.975, by integrating Student's t density (trapezoid, fine grid)."""
    q = parity.t975(df)
    x = np.linspace(0, q, 200_001)
    logc = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(logc - (df + 1) / 2 * np.log1p(x ** 2 / df))
    cdf = 0.5 + float(np.sum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x)))
    assert cdf == pytest.approx(0.975, abs=6e-4 if df != int(df) else 2e-4)
    with pytest.raises(ValueError, match="degrees of freedom"):
        parity.t975(0)


def test_welch_interval():
    diff, lo, hi, df = parity.welch([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert diff == 1.0 and df == pytest.approx(4.0)
    half = parity.t975(4.0) * math.sqrt(2 * 1.0 / 3)
    assert (lo, hi) == pytest.approx((1 - half, 1 + half))
    d, lo, hi, df = parity.welch([0.5], [0.7, 0.8])
    assert d == pytest.approx(0.25) and math.isnan(lo) and math.isnan(df)


def _tables(root, bf16_seeds=(0, 1, 2), shift=0.0):
    """fp32 twins (3 seeds) in cpu-cifar10-vgg and bf16 runs in the parity grid; bf16 Bridgeout
    one-shot accuracy at 30 % moved by ``shift``."""
    from tests.test_results import run_row
    runs, rows = [], []
    for grid, prec, seeds in ((parity.TWIN_GRID, "fp32", (0, 1, 2)), (parity.GRID, "bf16", bf16_seeds)):
        for reg in ("weight_decay", "bridgeout"):
            for s in seeds:
                rid = f"{grid}-{reg}-{s}"
                runs.append(run_row(rid, grid=grid, model="vgg16", dataset="cifar10", protocol="cpu", regularizer=reg,
                                    seed=s, precision=prec, width=0.25, final_test_acc=0.8 + 0.002 * s))
                for recal in (False, True):
                    for f in (0.0, 0.2, 0.3, 0.5):
                        acc = 0.8 + 0.002 * s - (0.5 if not recal else 0.2) * f
                        if prec == "bf16" and reg == "bridgeout" and f == 0.3 and not recal:
                            acc += shift
                        rows.append({"run_id": rid, "criterion": "l2", "scope": "layer", "mode": "mask",
                                     "fraction": f, "test_acc": acc, "recalibrate_bn": recal, "finetune_epochs": 0,
                                     "notebook": ""})
    pr = pd.DataFrame(rows)
    for col in results.PRUNING_SCHEMA:
        if col not in pr:
            pr[col] = np.nan
    results.append("pruning", pr[list(results.PRUNING_SCHEMA)], root)
    results.append("runs", pd.DataFrame(runs), root)


def test_table_verdicts_and_sentence(tmp_path):
    _tables(tmp_path, shift=0.05)
    t = parity.table(tmp_path)
    assert set(t["arm"]) == {"weight_decay", "bridgeout"} and (t["fp32_n"] == 3).all() and (t["bf16_n"] == 3).all()
    moved = t[(t["arm"] == "bridgeout") & (t["measure"] == "one-shot") & (t["fraction"] == 0.3)].iloc[0]
    assert moved["diff"] == pytest.approx(0.05) and moved["verdict"] == "out"
    rest = t.drop(moved.name)
    assert (rest["verdict"] == "in").all() and rest["diff"].abs().max() < 1e-12
    s = parity.sentence(tmp_path)
    assert "not complete" not in s and "outside the seed spread: one-shot at 30 %" in s
    assert "every pruned measure within the seed spread" in s       # weight decay


def test_partial_pilot_says_so_and_draws(tmp_path):
    import matplotlib.pyplot as plt
    _tables(tmp_path, bf16_seeds=(0,))
    t = parity.table(tmp_path)
    assert (t["bf16_n"] == 1).all() and t["low"].isna().all()
    assert "not complete yet" in parity.sentence(tmp_path)
    fig, axes = plt.subplots(1, 2)
    arms = parity.plot(axes, tmp_path)
    assert set(arms) == {"weight_decay", "bridgeout"}
    # per arm: 3 fp32 seeds + mean, 1 bf16 seed + mean, per panel; plus the chance line
    assert all(len(ax.lines) == 2 * (3 + 1 + 1 + 1) + 1 for ax in axes)
    assert len(parity.handles(arms)) == 2 + 4
    plt.close(fig)
    empty = tmp_path / "none"
    assert parity.sentence(empty).startswith("No bf16 run")


def test_markdown_table(tmp_path):
    _tables(tmp_path, shift=0.05)
    md = parity.markdown_table(tmp_path).splitlines()
    assert md[0].startswith("| arm | measure | fp32 | bf16 |") and len(md) == 2 + 14
    row = next(line for line in md if "Batch Bridgeout" in line and "one-shot, 30 %" in line)
    assert "| +5.0 (" in row and row.endswith("| missed |")
    _tables(tmp_path / "partial", bf16_seeds=())
    assert all(line.endswith("| – |") for line in parity.markdown_table(tmp_path / "partial").splitlines()[2:])
