"""The paper's published curves (bridgeout.paper): loading, units, derived constants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bridgeout import paper


@pytest.fixture(scope="module")
def curves():
    return paper.load_curves()


def test_loads_every_row_with_our_columns(curves):
    raw = pd.read_csv(paper.CSV_PATH)
    assert len(raw) == 124 and len(curves) == 124
    assert list(curves.columns) == ["model", "dataset", "regularizer", "fraction", "accuracy",
                                    "errbar_low", "errbar_high"]
    assert curves.notna().all().all()


def test_regularizer_names_are_mapped(curves):
    assert set(curves["regularizer"]) == {"bridgeout", "dropout", "weight_decay"}
    raw = pd.read_csv(paper.CSV_PATH)
    assert (raw["regularizer"] == "batch_bridgeout").sum() == (curves["regularizer"] == "bridgeout").sum() > 0


def test_units_are_fractions(curves):
    raw = pd.read_csv(paper.CSV_PATH).sort_values(
        ["model", "dataset", "regularizer", "filters_pruned_pct"], ignore_index=True)
    # percent -> fraction, exactly (the file has two decimals)
    np.testing.assert_allclose(curves["accuracy"], raw["accuracy_pct"] / 100, atol=1e-12)
    np.testing.assert_allclose(curves["fraction"], raw["filters_pruned_pct"] / 100, atol=1e-12)
    assert curves["fraction"].between(0, 0.9).all()
    # fractions are on the 10 % grid
    np.testing.assert_allclose(curves["fraction"] * 10, np.round(curves["fraction"] * 10), atol=1e-9)
    for col in ("accuracy", "errbar_low", "errbar_high"):
        assert curves[col].between(0, 1).all(), col
    # the error bar brackets the mean (to the reading precision of 0.05 points)
    assert (curves["errbar_low"] <= curves["accuracy"] + 5e-4).all()
    assert (curves["errbar_high"] >= curves["accuracy"] - 5e-4).all()


def test_panels_are_the_papers_six(curves):
    assert paper.PANELS == tuple((m, d) for m in ("vgg16", "resnet", "wrn28_10")
                                 for d in ("cifar10", "cifar100"))
    for model, dataset in paper.PANELS:
        assert set(paper.curve(model, dataset)["regularizer"]) == {"bridgeout", "dropout", "weight_decay"}


def test_unpruned_equals_the_fraction_zero_rows(curves):
    unpruned = paper.UNPRUNED
    zero = curves[curves["fraction"] == 0]
    assert len(unpruned) == len(zero) == 18
    for row in zero.itertuples():
        assert unpruned[(row.model, row.dataset, row.regularizer)] == row.accuracy
    # the alias of the API contract is the same mapping
    assert paper.UNPRUNED_ACCURACY == unpruned
    # unpruned accuracy is the top of every curve (to the reading precision)
    for (m, d, r), acc in unpruned.items():
        assert paper.curve(m, d, r)["accuracy"].max() <= acc + 0.02


def test_load_curves_returns_a_copy(curves):
    a = paper.load_curves()
    a.loc[0, "accuracy"] = -1.0
    assert paper.load_curves().loc[0, "accuracy"] == curves.loc[0, "accuracy"]


def test_deltas_are_ours_minus_paper():
    ref = paper.curve("vgg16", "cifar10", "bridgeout")
    ours = ref[["model", "dataset", "regularizer", "fraction"]].copy()
    ours["accuracy"] = ref["accuracy"] + 0.01
    d = paper.deltas(ours, (0.0, 0.2, 0.4))
    assert list(d["fraction"]) == [0.0, 0.2, 0.4]
    np.testing.assert_allclose(d["delta"], 0.01, atol=1e-12)
    np.testing.assert_allclose(d["ours"] - d["paper"], d["delta"])
    assert paper.deltas(pd.DataFrame(), (0.0,)).empty


def test_settings_and_masks_select_the_published_configuration():
    s = paper.published_settings()
    assert (s["p"], s["q"], s["target_fraction"], s["signed"]) == (0.3, 1.5, 0.75, False)
    assert s["protocol"] == "paper" and s["epochs"] == 230 and s["criterion"] == "l2"
    base = dict(model="vgg16", dataset="cifar10", regularizer="bridgeout", p=0.3, q=1.5, target_fraction=0.75,
                signed=False, criterion="l2", scope="layer", mode="mask", recalibrate_bn=False, finetune_epochs=0,
                protocol="paper", epochs=230, width=1.0, n_train=50000)
    rows = pd.DataFrame([base, {**base, "q": 1.0}, {**base, "mode": "remove"},
                         {**base, "regularizer": "weight_decay", "q": 7.0},  # q means nothing without noise
                         {**base, "width": 0.25}, {**base, "epochs": 30, "protocol": "fast"}])
    assert paper.method_mask(rows).tolist() == [True, False, False, True, True, True]
    assert paper.scale_mask(rows).tolist() == [True, True, True, True, False, False]


@pytest.mark.parametrize("kwargs, word", [
    (dict(model="alexnet", dataset="cifar10"), "model"),
    (dict(model="vgg16", dataset="mnist"), "dataset"),
    (dict(model="vgg16", dataset="cifar10", regularizer="l0"), "regularizer"),
])
def test_curve_rejects_unknown_names(kwargs, word):
    with pytest.raises(ValueError, match=word):
        paper.curve(**kwargs)


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="path"):
        paper.load_curves(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("model,dataset\nvgg16,cifar10\n")
    with pytest.raises(ValueError, match="missing columns"):
        paper.load_curves(bad)
    with pytest.raises(ValueError, match="fractions"):
        paper.deltas(pd.DataFrame({"model": ["vgg16"]}), (1.5,))
