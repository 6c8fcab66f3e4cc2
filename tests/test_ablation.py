"""bridgeout.ablation: panels found, means ± sd and Welch intervals, the did-not-train rule,
the sentence and the figure."""
import math

import numpy as np
import pandas as pd
import pytest

from bridgeout import ablation, plots

FRACTIONS = (0.0, 0.3, 0.7)


def _rows(grid="g", *, q=1.5, p=0.3, target=0.75, signed=False, seed=0, acc=(0.98, 0.9, 0.6), **extra):
    run = f"{grid}-q{q}-p{p}-t{target}-s{signed}-{seed}"
    return [dict(regularizer="bridgeout", mode="mask", criterion="l2", finetune_epochs=0, recalibrate_bn=False,
                 pruner="plain", scope="layer", grid=grid, run_id=run, seed=seed, q=q, p=p,
                 target_fraction=target, signed=signed, fraction=f, test_acc=a, **extra)
            for f, a in zip(FRACTIONS, acc)]


def _q_ablation():
    rows = []
    for seed, (a1, a15, a2) in enumerate([(0.80, 0.60, 0.40), (0.82, 0.62, 0.44), (0.84, 0.58, 0.42)]):
        rows += _rows(q=1.0, seed=seed, acc=(0.98, 0.95, a1))
        rows += _rows(q=1.5, seed=seed, acc=(0.98, 0.9, a15))
        rows += _rows(q=2.0, seed=seed, acc=(0.98, 0.85, a2))
    return rows


def test_a_panel_per_setting_varied_with_the_others_published():
    rows = _q_ablation()
    rows += _rows(p=0.5, seed=0)                                      # p varied: a second panel
    rows += _rows(q=1.0, p=0.5, seed=0)                               # two varied at once: in no panel
    rows += [dict(r, pruner="published") for r in _rows(q=3.0)]       # another pruner: left out
    rows += [dict(r, regularizer="dropout") for r in _rows(q=1.0)]    # another arm: left out
    found = ablation.panels(pd.DataFrame(rows))
    assert [(p.param, p.grid) for p in found] == [("q", "g"), ("p", "g")]
    assert sorted(found[0].rows["q"].unique()) == [1.0, 1.5, 2.0]
    assert sorted(found[1].rows["p"].unique()) == [0.3, 0.5]
    assert ablation.panels(pd.DataFrame()) == []
    with pytest.raises(ValueError, match="lack columns.*'q'"):
        ablation.panels(pd.DataFrame(rows).drop(columns="q"))


def test_means_sd_and_welch_against_the_published_value():
    (q,) = ablation.panels(pd.DataFrame(_q_ablation()))
    t = ablation.at_fraction(q, 0.7).set_index("value")
    assert t.loc[1.0, "mean"] == pytest.approx(0.82) and t.loc[1.0, "sd"] == pytest.approx(0.02)
    assert t.loc[1.5, "published"] and math.isnan(t.loc[1.5, "diff"])
    # q = 1 minus q = 1.5: 0.82 - 0.60 = 0.22; Welch with sd 0.02 on both sides, n = 3: df 4, t 2.776
    half = 2.7764451 * math.sqrt(2 * 0.02 ** 2 / 3)
    assert t.loc[1.0, "diff"] == pytest.approx(0.22)
    assert (t.loc[1.0, "low"], t.loc[1.0, "high"]) == pytest.approx((0.22 - half, 0.22 + half), rel=1e-4)  # stats.t975 is tabulated
    assert t.loc[2.0, "seeds"] == pytest.approx({0: 0.40, 1: 0.44, 2: 0.42})
    text = ablation.markdown([q])
    assert "`q`: 1 → 82.0 ± 2.0 % (+22.0 [" in text and "1.5 → 60.0 ± 2.0 %," in text
    assert "Only `q` = 1, `q` = 2 differ from the published value by more than the interval." in text
    assert "3 seeds per value at least" in text and "1 setting varied so far" in text
    assert ablation.summary([q]) == ("accuracy (%) at 70 % zeroed, mean ± sd: q 1 / 1.5 / 2: "
                                     "82.0 ± 2.0 / 60.0 ± 2.0 / 42.0 ± 2.0")


def test_a_seed_that_did_not_train_is_left_out_of_the_mean_and_named():
    rows = _q_ablation() + _rows(q=2.0, seed=3, acc=(0.12, 0.11, 0.10))   # at chance unpruned
    (q,) = ablation.panels(pd.DataFrame(rows))
    assert list(ablation.did_not_train(q).index) == ["g-q2.0-p0.3-t0.75-sFalse-3"]
    t = ablation.at_fraction(q, 0.7).set_index("value")
    assert t.loc[2.0, "n"] == 3 and t.loc[2.0, "n_runs"] == 4 and t.loc[2.0, "mean"] == pytest.approx(0.42)
    text = ablation.markdown([q])
    assert "2 → 42.0 ± 2.0 % (3 of 4 seeds; -18.0 [" in text
    assert "run `g-q2.0-p0.3-t0.75-sFalse-3` at 12.0 %" in text
    assert ablation.summary([q]).endswith("(1 run that did not train left out)")


def test_no_difference_beyond_the_interval_is_said_so():
    rows = []
    for seed, (a1, a15) in enumerate([(0.9, 0.5), (0.3, 0.7), (0.6, 0.6)]):
        rows += _rows(q=1.0, seed=seed, acc=(0.98, 0.9, a1)) + _rows(q=1.5, seed=seed, acc=(0.98, 0.9, a15))
    text = ablation.markdown(ablation.panels(pd.DataFrame(rows)))
    assert "No value differs from the published one by more than the interval." in text
    assert "not a finding" in text
    assert ablation.markdown([]).startswith("**No ablation has been run yet.**")


def test_the_figure_draws_every_value_it_lists_in_readable_type():
    rows = _q_ablation() + _rows(q=2.0, seed=3, acc=(0.12, 0.11, 0.10)) + _rows(p=0.5, seed=0)
    found = ablation.panels(pd.DataFrame(rows))
    plots.set_theme()
    fig = ablation.plot(found)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["q = 1, 3 seeds", "q = 1.5 (published), 3 seeds", "q = 2, 3 of 4 seeds trained", "did not train"]
    # the published value has the same colour in every panel, the others differ from it
    colours = [[h.get_color() for h in ax.get_legend().legend_handles] for ax in axes]
    assert colours[0][1] == colours[1][0] == ablation.PUBLISHED_COLOUR   # q = 1.5; p = 0.3 (published)
    assert len(set(colours[0][:3])) == 3
    assert plots.undrawn_legend_entries(fig) == []
    assert plots.small_text(fig) == []
    # the legend sits below its axes, not over the curves
    fig.canvas.draw()
    leg, ax = axes[0].get_legend().get_window_extent(), axes[0].get_window_extent()
    assert leg.y1 <= ax.y0
    import matplotlib.pyplot as plt
    plt.close(fig)
