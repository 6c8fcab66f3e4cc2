"""bridgeout.onelayer: the loss of pruning one layer alone, per layer, against every layer at once."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from bridgeout import onelayer, results

from test_results import filters_df, pruning_df, run_row

CHANNELS = (16, 32, 64)          # three prunable convs


def _network(root, rid, reg, seed, unpruned, drops, drop_all):
    """A network of the parity grid with one-layer rows: pruning conv k alone at 30 % costs
    ``drops[k-1]``, every layer at once ``drop_all``."""
    results.append("runs", pd.DataFrame([run_row(rid, grid=onelayer.GRID, model="vgg16", dataset="cifar10",
                                                  regularizer=reg, protocol="cpu", epochs=26, n_train=50000,
                                                  final_test_acc=unpruned, seed=seed)]), root)
    every = pruning_df(rid, fractions=(0.0, 0.3))
    every["test_acc"] = [unpruned, unpruned - drop_all]
    one = pd.concat([pruning_df(rid, fractions=(0.3,)).assign(scope=f"only:{k}", test_acc=unpruned - d)
                     for k, d in enumerate(drops, start=1)])
    results.append("pruning", pd.concat([every, one]), root)
    f = pd.concat([filters_df(rid).head(1).assign(layer=f"features.{i}.conv") for i in range(len(CHANNELS))
                   for _ in range(1)])
    rows = []
    for i, c in enumerate(CHANNELS):
        for j in range(c):
            rows.append(f.iloc[i].to_dict() | {"filter": j})
    results.append("filters", pd.DataFrame(rows), root)


def test_loss_per_layer_and_against_every_layer_at_once(tmp_path):
    assert onelayer.table(tmp_path).empty
    assert "not run yet" in onelayer.markdown(onelayer.table(tmp_path))
    _network(tmp_path, "bo0", "bridgeout", 0, 0.80, (0.10, 0.04, 0.02), 0.50)
    _network(tmp_path, "bo1", "bridgeout", 1, 0.80, (0.14, 0.02, 0.00), 0.60)
    _network(tmp_path, "wd0", "weight_decay", 0, 0.90, (0.01, 0.30, 0.05), 0.70)
    t = onelayer.table(tmp_path)
    assert len(t) == 9 and list(t.columns) == onelayer.COLUMNS
    bo0 = t[t["run_id"] == "bo0"].set_index("unit")
    assert bo0["channels"].tolist() == list(CHANNELS) and bo0["layer"].tolist() == [
        "features.0.conv", "features.1.conv", "features.2.conv"]
    assert bo0["drop"].tolist() == pytest.approx([0.10, 0.04, 0.02])
    assert bo0["drop_all"].tolist() == pytest.approx([0.50] * 3)
    text = onelayer.markdown(t)
    # Batch Bridgeout: conv 1 costs 10 / 14 -> 12.0 ± 2.8; sums 16 / 16; every layer 50 / 60 -> 55.0 ± 7.1;
    # narrower than the widest (convs 1 and 2) share 14/16, 16/16 -> 93.75 ± 8.8 %
    assert ("Batch Bridgeout (q = 1.5) (2 networks): the costliest layer alone is conv 1 of 3 (16 filters), "
            "12.0 ± 2.8 points; the 2 layers with fewer than 64 filters carry 93.8 ± 8.8 % of the summed "
            "single-layer losses (16.0 ± 0.0 points, against 55.0 ± 7.1 for every layer at once)") in text
    assert "weight decay only (1 network): the costliest layer alone is conv 2 of 3 (32 filters), 30.0 points" in text


def test_plot_draws_a_line_per_network_and_the_mean(tmp_path):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    _network(tmp_path, "bo0", "bridgeout", 0, 0.80, (0.10, 0.04, 0.02), 0.50)
    _network(tmp_path, "wd0", "weight_decay", 0, 0.90, (0.01, 0.30, 0.05), 0.70)
    t = onelayer.table(tmp_path)
    fig, axes = plt.subplots(1, 2)
    onelayer.plot(axes, t, fractions=(0.3, 0.5))
    lines = axes[0].get_lines()
    assert len(lines) == 4                         # 2 networks + 2 means
    assert np.allclose(lines[1].get_ydata(), [10, 4, 2])
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["1\n16", "2\n32", "3\n64"]
    assert len(axes[1].get_lines()) == 0           # no 50 % rows: an empty panel that says why
    assert any("no rows at 50 % yet" in t.get_text() for leg in axes[1].artists for t in leg.get_texts())
    plt.close(fig)


def test_tick_labels_name_a_width_only_where_it_changes(tmp_path):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = pd.DataFrame({"run_id": "a", "arm": "bridgeout", "seed": 0, "unit": [1, 2, 3], "layer": ["x", "y", "z"],
                      "channels": [16, 16, 32], "fraction": 0.3, "test_acc": 0.5, "drop": 0.1, "drop_all": 0.3})
    fig, axes = plt.subplots(1, 1, squeeze=False)
    onelayer.plot(axes[0], t, fractions=(0.3,))
    assert [x.get_text() for x in axes[0][0].get_xticklabels()] == ["1\n16", "2", "3\n32"]
    plt.close(fig)
