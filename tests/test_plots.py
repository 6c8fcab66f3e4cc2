"""Figure helpers (bridgeout.plots): palette, summaries, pruning curves, the not-run marker."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bridgeout import models, paper, plots  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_palette_covers_every_regularizer_with_distinct_colours():
    assert set(plots.PALETTE) == set(models.REGULARIZERS)
    assert set(plots.LABELS) == set(models.REGULARIZERS) == set(plots.MARKERS)
    rgb = np.array([mcolors.to_rgb(c) for c in plots.PALETTE.values()])
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert dist[np.triu_indices(len(rgb), 1)].min() > 0.2  # clearly different colours
    assert len(set(plots.MARKERS.values())) == len(plots.MARKERS)


def _ours(seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    rows = []
    for s in seeds:
        for f in np.arange(10) / 10:
            rows.append({"regularizer": "bridgeout", "fraction": f, "seed": s,
                         "test_acc": 0.9 - 0.5 * f + 0.01 * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_summarize_mean_and_range():
    df = _ours()
    s = plots.summarize(df)
    assert len(s) == 10 and (s["n"] == 3).all()
    g = df.groupby("fraction")["test_acc"]
    np.testing.assert_allclose(s["mean"], g.mean().to_numpy())
    np.testing.assert_allclose(s["min"], g.min().to_numpy())
    assert (s["min"] <= s["mean"]).all() and (s["mean"] <= s["max"]).all()
    assert plots.summarize(pd.DataFrame()).empty
    with pytest.raises(ValueError, match="test_acc"):
        plots.summarize(df.drop(columns="test_acc"))


def test_empty_ours_draws_the_paper_line_and_the_not_run_text(ax):
    pr = paper.curve("vgg16", "cifar10")
    drawn = plots.pruning_curve(ax, pd.DataFrame(), pr, legend=False)
    box = plots.not_run(ax, "not run yet")
    assert drawn == {"ours": 0, "paper": 3}
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() != "None"]  # not the error-bar caps
    assert len(lines) == 3 and all(ln.get_linestyle() == "--" for ln in lines)
    # the paper's bridgeout curve in percent, in the bridgeout colour
    bo = pr[pr["regularizer"] == "bridgeout"].sort_values("fraction")
    line = [ln for ln in lines if mcolors.same_color(ln.get_color(), plots.PALETTE["bridgeout"])]
    assert len(line) == 1
    np.testing.assert_allclose(line[0].get_ydata(), 100 * bo["accuracy"].to_numpy())
    np.testing.assert_allclose(line[0].get_xdata(), 100 * bo["fraction"].to_numpy())
    assert [t.get_text() for t in box.get_texts()] == ["not run yet"]
    assert box in ax.artists or box in ax.get_children()
    ax.legend()  # a later legend does not remove the box
    assert box in ax.get_children()


def test_ours_is_solid_mean_with_a_band(ax):
    df = _ours()
    drawn = plots.pruning_curve(ax, df, None)
    assert drawn == {"ours": 1, "paper": 0}
    (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() != "None"]
    assert line.get_linestyle() == "-"
    np.testing.assert_allclose(line.get_ydata(), 100 * df.groupby("fraction")["test_acc"].mean().to_numpy())
    assert len(ax.collections) == 1  # the min..max band over seeds
    assert "n=3" in ax.get_legend().get_texts()[0].get_text()


def test_single_seed_draws_no_band(ax):
    plots.pruning_curve(ax, _ours(seeds=(0,)), None)
    assert len(ax.collections) == 0


def test_regularizers_filter_and_bad_spread(ax):
    pr = paper.curve("resnet", "cifar100")
    assert plots.pruning_curve(ax, None, pr, regularizers=["dropout"])["paper"] == 1
    with pytest.raises(ValueError, match="spread"):
        plots.pruning_curve(ax, None, pr, spread="iqr")
    with pytest.raises(ValueError, match="loc"):
        plots.not_run(ax, loc="somewhere")


def test_legend_handles_and_titles():
    h = plots.legend_handles(["dropout", "bridgeout"], paper=False)
    assert [x.get_label() for x in h][:2] == ["Batch Bridgeout", "Dropout"]  # palette order
    assert len(h) == 3
    assert plots.panel_title("wrn28_10", "cifar100") == "WRN-28-10 / CIFAR-100"


def test_pruning_curve_draws_each_run_thin_behind_the_mean():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = pd.DataFrame([{"run_id": f"r{s}", "regularizer": "bridgeout", "seed": s, "fraction": f,
                          "test_acc": 0.9 - f * (0.5 + 0.1 * s)} for s in range(3) for f in (0.0, 0.5)])
    for per_run, expected in ((True, 3 + 1), (False, 1)):
        fig, ax = plt.subplots()
        plots.pruning_curve(ax, rows, per_run=per_run)
        assert len(ax.lines) == expected
        thin = [ln for ln in ax.lines if ln.get_linewidth() < 1]
        assert len(thin) == expected - 1
        plt.close(fig)


# --------------------------------------------------------------------------- book figure checks
def test_small_text_measures_points_as_displayed_in_the_column():
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("title", fontsize=12)
    ax.tick_params(labelsize=10)
    ax.legend(fontsize=10)
    ax.set_xlabel("x", fontsize=10)
    ax.set_ylabel("y", fontsize=10)
    assert plots.small_text(fig) == []                   # narrower than the column: shown as is
    ax.legend(fontsize=8)
    assert plots.small_text(fig) == ["'a line' shown at 8.0 pt"]
    ax.legend(fontsize=10)
    fig.set_figwidth(2 * plots.COLUMN_IN)                 # shown at half size: 10 pt -> 5 pt
    small = plots.small_text(fig)
    assert "'a line' shown at 5.0 pt" in small and "'title' shown at 6.0 pt" in small
    plt.close(fig)


def test_undrawn_legend_entries_flags_an_entry_with_no_line():
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], color=plots.PALETTE["bridgeout"], label="Batch Bridgeout")
    ax.plot([], [], color=plots.PALETTE["dropout"], label="Dropout")   # an empty line: a lie
    ax.legend()
    assert plots.undrawn_legend_entries(fig) == ["Dropout"]
    ax.get_legend().remove()
    # proxies: a colour per regularizer must match a drawn line; grey style keys match any line
    # of their style (solid = ours; dashed = published, not drawn here)
    fig.legend(handles=plots.legend_handles(["bridgeout", "weight_decay"]))
    assert plots.undrawn_legend_entries(fig) == [
        "Weight decay only", "published (Khan & Stavness 2020)"]
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], color=plots.PALETTE["bridgeout"], ls="--")
    ax.legend(handles=[Line2D([], [], color=plots.PALETTE["bridgeout"], ls="-", label="blue"),
                       Line2D([], [], color="0.3", ls="-", label="solid = ours"),
                       Line2D([], [], color="0.3", ls="--", label="dashed = published")])
    assert plots.undrawn_legend_entries(fig) == ["solid = ours"]   # no solid line is drawn
    plt.close(fig)
    # area entries (bands, histograms) match a drawn patch or collection; a grey one any area
    from matplotlib.patches import Patch
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], color=plots.PALETTE["bridgeout"])
    handles = [Patch(color="0.4", alpha=0.25, label="band"), Patch(color=plots.PALETTE["dropout"], label="orange")]
    ax.legend(handles=handles)
    assert plots.undrawn_legend_entries(fig) == ["band", "orange"]
    ax.fill_between([0, 1], [0, 0], [1, 1], color=plots.PALETTE["bridgeout"], alpha=0.25)
    assert plots.undrawn_legend_entries(fig) == ["orange"]
    ax.hist([0.2, 0.5], histtype="step", color=plots.PALETTE["dropout"])
    assert plots.undrawn_legend_entries(fig) == []
    plt.close(fig)
    fig, ax = plt.subplots()                                     # error bars: a drawn entry
    ax.errorbar([0, 1], [1, 2], yerr=[0.1, 0.2], fmt="o", color=plots.PALETTE["dropout"], label="MC")
    fig.legend()
    assert plots.undrawn_legend_entries(fig) == []
    plt.close(fig)


def test_pruning_curve_and_legend_handles_draw_every_legend_entry():
    rows = pd.DataFrame([{"run_id": f"{r}{s}", "regularizer": r, "seed": s, "fraction": f,
                          "test_acc": 0.9 - f * (0.5 + 0.1 * s)}
                         for r in ("bridgeout", "dropout") for s in range(2) for f in (0.0, 0.5)])
    pr = paper.curve("vgg16", "cifar10")
    fig, ax = plt.subplots()
    plots.pruning_curve(ax, rows, pr)                           # its own legend
    box = plots.not_run(ax, "a note")                           # a hidden handle: not an entry
    assert box is not None and plots.undrawn_legend_entries(fig) == []
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.pruning_curve(ax, rows, pr, legend=False)
    fig.legend(handles=plots.legend_handles(set(rows["regularizer"]) | set(pr["regularizer"])))
    assert plots.undrawn_legend_entries(fig) == []
    plt.close(fig)


def test_glue_figure_refuses_an_unreadable_figure():
    fig, ax = plt.subplots(figsize=(14, 3))
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="text below 9 pt"):
        plots.glue_figure("fig-too-wide", fig)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([], [], label="nothing")
    ax.tick_params(labelsize=10)
    ax.legend(fontsize=10)
    with pytest.raises(ValueError, match=r"legend entries with nothing drawn: \['nothing'\]"):
        plots.glue_figure("fig-empty-legend", fig)


def test_seed_curves_name_a_seed_at_chance_and_keep_it_out_of_the_mean():
    rows = pd.DataFrame([{"run_id": f"{r}-{s}", "regularizer": r, "seed": s, "fraction": f,
                          "test_acc": (0.11 if (r, s) == ("bridgeout", 2) else 0.98 - 0.4 * f - 0.01 * s)}
                         for r in ("bridgeout", "weight_decay") for s in range(3) for f in (0.0, 0.5)])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    drawn = plots.seed_curves(ax, rows, chance=0.1)
    assert drawn["stuck"] == [("bridgeout", 2, 0.11)] and drawn["n"] == {"bridgeout": 2, "weight_decay": 3}
    dotted = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    assert len(dotted) == 1 and np.allclose(dotted[0].get_ydata(), [11, 11])
    thick = [ln for ln in ax.lines if ln.get_linewidth() > 2]
    bo = [ln for ln in thick if mcolors.same_color(ln.get_color(), plots.PALETTE["bridgeout"])][0]
    np.testing.assert_allclose(bo.get_ydata(), [97.5, 77.5])        # mean of seeds 0 and 1 only
    assert any("seed 2" in t.get_text() and "chance" in t.get_text() for t in ax.texts)
    fig.legend(handles=plots.seed_handles(drawn))
    assert plots.undrawn_legend_entries(fig) == []
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-1].startswith("a seed stuck at chance")
    plt.close(fig)
    # nobody stuck: no at-chance entry in the legend
    fig, ax = plt.subplots()
    drawn = plots.seed_curves(ax, rows[rows["regularizer"] == "weight_decay"], chance=0.1)
    assert [h.get_label() for h in plots.seed_handles(drawn)] == ["Weight decay only (mean)", "one seed"]
    plt.close(fig)
