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
