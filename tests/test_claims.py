"""Tests for bridgeout.claims: the claims table and the book's three verdict lines follow the tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bridgeout import claims, results

from test_results import history_df, pruning_df, run_row


def _acc(values: dict[str, list[list[float]]], fractions=claims.FRACTIONS) -> pd.DataFrame:
    """``values[arm][seed][i]`` is the accuracy at ``fractions[i]``."""
    rows = [{"run_id": f"{arm}{s}", "arm": arm, "seed": s, "fraction": f, "test_acc": v}
            for arm, seeds in values.items() for s, accs in enumerate(seeds) for f, v in zip(fractions, accs)]
    return pd.DataFrame(rows)


def test_robustness_compares_against_the_better_baseline_with_a_welch_interval():
    acc = _acc({"bridgeout": [[0.60, 0.30, 0.11, 0.10], [0.62, 0.32, 0.12, 0.10], [0.64, 0.34, 0.10, 0.10]],
                "weight_decay": [[0.30, 0.20, 0.10, 0.10], [0.50, 0.10, 0.10, 0.10], [0.40, 0.15, 0.10, 0.10]],
                "dropout": [[0.20, 0.21, 0.10, 0.10], [0.21, 0.23, 0.10, 0.10], [0.22, 0.22, 0.10, 0.10]]})
    r = claims.robustness(acc).set_index("fraction")
    assert r.loc[0.2, "baseline"] == "weight_decay" and r.loc[0.3, "baseline"] == "dropout"
    assert r.loc[0.2, "diff"] == pytest.approx(0.22) and r.loc[0.3, "diff"] == pytest.approx(0.10)
    # at 20 %: sd 0.02 against 0.10 -> Welch df ~2.2, interval ~0.22 +- 0.25: not clear
    assert not r.loc[0.2, "clear"] and r.loc[0.2, "low"] < 0 < r.loc[0.2, "high"]
    assert r.loc[0.3, "clear"] and r.loc[0.3, "low"] > 0
    assert list(r["informative"]) == [True, True, False, False]      # 40, 50 %: every arm within 5 points of 10 %
    assert claims._robust_verdict(claims.robustness(acc)) == "holds partly"
    assert set(r["n"]) == {3}


def test_one_seed_is_never_a_clear_lead_and_a_missing_arm_gives_no_row():
    acc = _acc({"bridgeout": [[0.9, 0.9, 0.9, 0.9]], "weight_decay": [[0.1] * 4], "dropout": [[0.1] * 4]})
    r = claims.robustness(acc)
    assert len(r) == 4 and not r["clear"].any() and np.isnan(r["low"]).all()
    assert claims._robust_verdict(r) == "not observed"
    assert claims.robustness(acc[acc["arm"] != "dropout"]).empty


def test_holds_needs_a_clear_lead_at_every_fraction():
    lead = [[0.80, 0.70, 0.60, 0.50], [0.82, 0.72, 0.62, 0.52], [0.81, 0.71, 0.61, 0.51]]
    base = [[0.20, 0.20, 0.20, 0.20], [0.22, 0.21, 0.22, 0.21], [0.21, 0.22, 0.21, 0.22]]
    assert claims._robust_verdict(claims.robustness(_acc({"bridgeout": lead, "weight_decay": base,
                                                           "dropout": base}))) == "holds"
    behind = claims.robustness(_acc({"bridgeout": base, "weight_decay": lead, "dropout": base}))
    assert claims._robust_verdict(behind) == "not observed" and (behind["diff"] < 0).all()


def _write_cpu(root, accs):
    """Four arms x 3 seeds of the CPU comparison; ``accs[arm]`` = (unpruned, drop per unit fraction)."""
    arms = {"weight_decay": ("weight_decay", 1.5, False), "dropout": ("dropout", 1.5, False),
            "bridgeout": ("bridgeout", 1.5, False), "targeted_dropconnect": ("bridgeout", 2.0, True)}
    runs, pr, hist = [], [], []
    for arm, (base, slope) in accs.items():
        reg, q, signed = arms[arm]
        for seed in range(3):
            rid = f"{arm}-{seed}"
            a0 = base + 0.01 * seed
            runs.append(run_row(rid, grid="cpu-cifar10-vgg", model="vgg16", dataset="cifar10", regularizer=reg,
                                q=q, signed=signed, protocol="cpu", epochs=26, n_train=50000, final_test_acc=a0,
                                seed=seed))
            p = pruning_df(rid, fractions=(0.0, 0.2, 0.3, 0.4, 0.5))
            p["test_acc"] = [max(0.1, a0 - slope * f) for f in p["fraction"]]
            pr.append(p)
            hist.append(history_df(rid, epochs=2))
    results.append("runs", pd.DataFrame(runs), root)
    results.append("pruning", pd.concat(pr), root)
    results.append("history", pd.concat(hist), root)


def test_table_on_empty_tables_says_pending_or_not_tested(tmp_path):
    t = claims.table(tmp_path)
    assert len(t) == 6 and set(t["verdict"]) <= {"pending", "not tested"}
    md = claims.markdown(t)
    assert md.splitlines()[0] == "| verdict | claim | the paper | our runs |"
    assert md.count("\n| **") == 6
    v = claims.verdict(tmp_path)
    assert "0 of 12 runs" in v["tested"] and "not known yet" in v["held"] and "GPU" in v["untested"]


def test_table_and_verdict_follow_synthetic_runs(tmp_path):
    # Bridgeout loses 0.6 per unit fraction, the baselines 2.0: at 20 %: 0.62 vs 0.46 (+0.16), at 30 %:
    # 0.56 vs 0.26, ...; seed s adds 0.01 s to every arm, so the means are 0.01 higher.
    _write_cpu(tmp_path, {"weight_decay": (0.86, 2.0), "dropout": (0.80, 2.0), "bridgeout": (0.74, 0.6),
                          "targeted_dropconnect": (0.83, 2.0)})
    t = claims.table(tmp_path).set_index("verdict", append=True).reset_index("verdict")
    vgg = t.iloc[0]
    assert vgg["verdict"] == "holds", vgg["ours"]
    assert "30 %: 57.0 against 27.0 (weight decay only), +30.0" in vgg["ours"]
    assert "targeted Dropout 3, targeted DropConnect (signed, q = 2) 3 seeds)" in vgg["ours"]   # every arm counted
    assert "+61.8 at 30 %" in vgg["paper"]                 # the published VGG-16 lead, from the paper's curves
    assert t.iloc[1]["verdict"] == "pending"               # no ResNet runs
    cost = t[t["claim"].str.startswith("Batch Bridgeout costs")].iloc[0]
    assert cost["verdict"] == "not observed" and "VGG-16 ×0.25 -12.0" in cost["ours"]
    q = t[t["claim"].str.startswith("The bridge exponent")].iloc[0]
    assert q["verdict"] == "pending" and "at matched noise (p = 0.79): not run yet" in q["ours"]
    # retention beside the absolute numbers: 0.57 / 0.75 and 0.24 / 0.84 of the unpruned means
    assert "q = 2 24.0 (unpruned 75.0 and 84.0), so 76 % and 29 % of it kept, +47.4 [" in q["ours"]
    v = claims.verdict(tmp_path)
    assert "**The claim held there.**" in v["held"]
    # means, the difference and its Welch interval (sd 0.01 per arm, 3 seeds: df 4, t 2.776, half-width 2.3)
    assert ("Batch Bridgeout keeps 57.0 % against 27.0 % (weight decay only; +30.0 points ± 2.3 (95 %), "
            "3 seeds; chance 10 %)") in v["held"]
    assert "the paper's VGG-16 90.8 % against 29.0 %" in v["held"]
    assert "Unpruned cost against weight decay: 12.0 points (paper 1.1)" in v["held"]
    assert "12 of 12 runs" in v["tested"]


def test_mechanism_conclusion_reads_the_share_of_near_zero_filters():
    def rows(arm, norms):
        return [{"run_id": arm, "arm": arm, "layer": "c", "filter": i, "norm": n, "gamma": 1.0}
                for i, n in enumerate(norms)]
    ordinary = [0.5 + i / 100 for i in range(50)] + [1.0]
    f = pd.DataFrame(rows("bridgeout", ordinary) + rows("weight_decay", ordinary))
    assert claims.mechanism_conclusion(f).startswith("**Conclusion: the paper's mechanism is not seen here.**")
    assert "at most 0.0 %" in claims.mechanism_conclusion(f)
    sparse = [0.01] * 20 + ordinary[20:]                      # 20 of 51 filters near zero
    f = pd.DataFrame(rows("bridgeout", sparse) + rows("weight_decay", ordinary))
    assert claims.mechanism_conclusion(f).startswith("**Conclusion: the paper's mechanism is seen.** 39.2 %")
    f = pd.DataFrame(rows("bridgeout", sparse) + rows("weight_decay", sparse))
    assert "not specific to Bridgeout" in claims.mechanism_conclusion(f)
    assert claims.mechanism_conclusion(pd.DataFrame()) == "No filter table yet, so no conclusion."
