"""The published numbers of "Pruning Convolutional Filters using Batch Bridgeout"
(Khan & Stavness, IEEE Access 2020), as one tidy table.

The source is ``data/reference/paper_unit_pruning.csv`` (provenance in
``data/reference/README.md``): the accuracy-vs-pruning curves of the paper's six figures
(VGG-16, ResNet and WRN-28-10 on CIFAR-10 and CIFAR-100), read from the figures' vector
data to about +-0.05 accuracy points. Each row is one point of one curve: the mean test
accuracy after zeroing the fraction ``f`` of output filters with the smallest L2 norm in
every layer (one shot, no fine-tuning), and the two ends of the error bar drawn at it.

Units used here, so that the paper's table lines up with ours (``bridgeout.results``):

* ``fraction`` is the fraction of filters pruned in each layer, in [0, 1) (the file
  stores percent);
* ``accuracy``, ``errbar_low`` and ``errbar_high`` are fractions in [0, 1] (the file
  stores percent);
* ``regularizer`` uses this package's names (:data:`bridgeout.models.REGULARIZERS`): the
  paper's ``batch_bridgeout`` is ``bridgeout`` here.

Nothing in this module is typed in by hand: :data:`UNPRUNED` and :data:`PANELS` are derived
from the file when first used.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ._validate import check_choice

__all__ = [
    "CSV_PATH", "MODELS", "DATASETS", "PANELS", "UNPRUNED", "UNPRUNED_ACCURACY",
    "REGULARIZER_NAMES", "FULL_TRAIN_SIZE", "load_curves", "unpruned", "curve", "deltas",
    "published_settings", "method_mask", "scale_mask",
]

#: Where the repository keeps the published curves.
CSV_PATH = Path(__file__).resolve().parents[1] / "data" / "reference" / "paper_unit_pruning.csv"

#: The paper's regularizer names -> this package's names.
REGULARIZER_NAMES = {"batch_bridgeout": "bridgeout", "dropout": "dropout", "weight_decay": "weight_decay"}

#: Models and datasets of the paper's figures, in the paper's order.
MODELS = ("vgg16", "resnet", "wrn28_10")
DATASETS = ("cifar10", "cifar100")

#: Training-set sizes of the paper's datasets (all of CIFAR-10 / CIFAR-100's training images).
FULL_TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000}

_COLUMNS = ("model", "dataset", "regularizer", "fraction", "accuracy", "errbar_low", "errbar_high")
_FILE_COLUMNS = ("model", "dataset", "regularizer", "filters_pruned_pct", "accuracy_pct",
                 "errbar_low_pct", "errbar_high_pct")


@lru_cache(maxsize=4)
def _read(path: str) -> pd.DataFrame:
    raw = pd.read_csv(path)
    missing = [c for c in _FILE_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"path {path!r} is missing columns {missing}; expected {list(_FILE_COLUMNS)}")
    unknown = sorted(set(raw["regularizer"]) - set(REGULARIZER_NAMES))
    if unknown:
        raise ValueError(f"path {path!r} has unknown regularizer names {unknown}; "
                         f"known: {sorted(REGULARIZER_NAMES)}")
    out = pd.DataFrame({
        "model": raw["model"].astype(str),
        "dataset": raw["dataset"].astype(str),
        "regularizer": raw["regularizer"].map(REGULARIZER_NAMES).astype(str),
        "fraction": raw["filters_pruned_pct"].astype(float) / 100.0,
        "accuracy": raw["accuracy_pct"].astype(float) / 100.0,
        "errbar_low": raw["errbar_low_pct"].astype(float) / 100.0,
        "errbar_high": raw["errbar_high_pct"].astype(float) / 100.0,
    })
    # Percent steps of 10 read as floats: snap to the grid so that equality joins work.
    out["fraction"] = out["fraction"].round(6)
    return out.sort_values(["model", "dataset", "regularizer", "fraction"], ignore_index=True)


def load_curves(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's accuracy-vs-pruning curves.

    Args:
        path: A CSV with the columns of ``data/reference/paper_unit_pruning.csv``; default
            :data:`CSV_PATH`.

    Returns:
        DataFrame with columns ``model, dataset, regularizer, fraction, accuracy, errbar_low,
        errbar_high``; fractions and accuracies in [0, 1] (see the module docstring). A fresh
        copy on every call, so callers may modify it.

    Raises:
        ValueError: ``path`` is not a file, lacks a column, or names an unknown regularizer.
    """
    p = Path(path) if path is not None else CSV_PATH
    if not p.is_file():
        raise ValueError(f"path {str(p)!r} is not a file; expected the paper's curves "
                         f"(default {str(CSV_PATH)!r})")
    return _read(str(p)).copy()


def unpruned(path: str | Path | None = None) -> dict[tuple[str, str, str], float]:
    """Unpruned test accuracy (fraction 0) per ``(model, dataset, regularizer)``, in [0, 1].

    Args:
        path: the CSV of the curves (default :data:`CSV_PATH`; :func:`load_curves`).

    Returns:
        ``{(model, dataset, regularizer): accuracy}``.

    Raises:
        ValueError: as :func:`load_curves`.
    """
    df = load_curves(path)
    zero = df[df["fraction"] == 0.0]
    return {(r.model, r.dataset, r.regularizer): float(r.accuracy) for r in zero.itertuples()}


def curve(model: str, dataset: str, regularizer: str | None = None,
          path: str | Path | None = None) -> pd.DataFrame:
    """The rows of one panel (``model`` x ``dataset``), optionally of one regularizer.

    Args:
        model: one of :data:`MODELS`.
        dataset: one of :data:`DATASETS`.
        regularizer: a regularizer of the file (this package's names), or None for all.
        path: the CSV of the curves (default :data:`CSV_PATH`).

    Returns:
        the rows of :func:`load_curves`, with a fresh index.

    Raises:
        ValueError: an unknown model, dataset or regularizer, or as :func:`load_curves`.
    """
    check_choice("model", model, MODELS)
    check_choice("dataset", dataset, DATASETS)
    df = load_curves(path)
    out = df[(df["model"] == model) & (df["dataset"] == dataset)]
    if regularizer is not None:
        check_choice("regularizer", regularizer, sorted(set(df["regularizer"])))
        out = out[out["regularizer"] == regularizer]
    return out.reset_index(drop=True)


def deltas(ours: pd.DataFrame, fractions=(0.0, 0.2, 0.4, 0.6), *, value: str = "accuracy",
           path: str | Path | None = None) -> pd.DataFrame:
    """Our mean accuracy minus the paper's, at the given pruning fractions.

    Args:
        ours: One row per ``(model, dataset, regularizer, fraction)`` with our mean accuracy in
            the column named by ``value`` (in [0, 1]), e.g. the output of
            :func:`bridgeout.plots.summarize`. Extra columns (``n``, spreads) are carried over.
        fractions: Pruning fractions in [0, 1) at which to compare.
        value: keyword-only; the column of ``ours`` holding our mean accuracy.
        path: keyword-only; the CSV of the curves (default :data:`CSV_PATH`).

    Returns:
        DataFrame with ``model, dataset, regularizer, fraction, ours, paper, delta`` (all
        accuracies in [0, 1]; ``delta = ours - paper``), for every fraction where both exist.
        Empty (with these columns) when ``ours`` is empty.

    Raises:
        ValueError: a fraction outside [0, 1), or ``ours`` lacks a needed column.
    """
    fr = np.round(np.asarray(list(fractions), dtype=float), 6)
    if fr.size and (np.any(fr < 0) or np.any(fr >= 1)):
        raise ValueError(f"fractions must lie in [0, 1), got {list(fractions)!r}")
    cols = ["model", "dataset", "regularizer", "fraction", "ours", "paper", "delta"]
    if ours is None or len(ours) == 0:
        return pd.DataFrame(columns=cols)
    need = {"model", "dataset", "regularizer", "fraction", value}
    missing = sorted(need - set(ours.columns))
    if missing:
        raise ValueError(f"ours is missing columns {missing}; it needs {sorted(need)}")
    o = ours.copy()
    o["fraction"] = o["fraction"].astype(float).round(6)
    o = o[o["fraction"].isin(fr)].rename(columns={value: "ours"})
    p = load_curves(path).rename(columns={"accuracy": "paper"})
    p = p[["model", "dataset", "regularizer", "fraction", "paper"]]
    out = o.merge(p, on=["model", "dataset", "regularizer", "fraction"], how="inner")
    out["delta"] = out["ours"] - out["paper"]
    extra = [c for c in out.columns if c not in cols]
    return out[cols + extra].sort_values(cols[:4], ignore_index=True)


def published_settings() -> dict:
    """The published configuration, taken from the code that implements it.

    Returns:
        a dict with the noise defaults of :func:`bridgeout.models.build` (``p``, ``q``,
        ``target_fraction``, ``signed``), the training scale of the ``paper`` protocol
        (``protocol``, ``epochs`` from :data:`bridgeout.protocols.PROTOCOLS`, ``width`` 1,
        ``n_train`` :data:`FULL_TRAIN_SIZE`) and the pruning procedure (``criterion="l2"``,
        ``scope="layer"``, ``mode="mask"``, ``recalibrate_bn=False``, ``finetune_epochs=0``).
    """
    from . import models  # deferred: loads torch
    from . import train  # deferred: loads torch
    import inspect


    defaults = {k: v.default for k, v in inspect.signature(models.build).parameters.items()
                if v.default is not inspect.Parameter.empty}
    return {
        "p": float(defaults["p"]), "q": float(defaults["q"]),
        "target_fraction": float(defaults["target_fraction"]), "signed": bool(defaults["signed"]),
        "protocol": "paper", "epochs": int(train.PROTOCOLS["paper"].epochs), "width": 1.0,
        "n_train": dict(FULL_TRAIN_SIZE),
        "criterion": "l2", "scope": "layer", "mode": "mask",
        "recalibrate_bn": False, "finetune_epochs": 0,
    }


# Which noise hyper-parameters mean something for which regularizer (others are ignored).
_USES = {"p": ("bridgeout", "dropout", "sparseout", "dropconnect"),
         "q": ("bridgeout", "sparseout"),
         "target_fraction": ("bridgeout", "dropout"),
         "signed": ("bridgeout", "sparseout")}


def _close(a: pd.Series, b: float) -> pd.Series:
    return pd.Series(np.isclose(pd.to_numeric(a, errors="coerce").astype(float), float(b)), index=a.index)


def method_mask(df: pd.DataFrame, settings: dict | None = None) -> pd.Series:
    """Rows trained and pruned with the published *method*: default noise settings for their
    regularizer and the published pruning procedure (at any training scale).

    ``df`` is a joined pruning table (:func:`bridgeout.results.load_joined`). Columns that
    ``df`` lacks are not checked. Returns a boolean Series aligned with ``df``.

    A noise setting is checked only for the regularizers it means something for (``p``:
    Bridgeout, Dropout, Sparseout, DropConnect; ``q`` and ``signed``: Bridgeout, Sparseout;
    ``target_fraction``: Bridgeout, Dropout).

    Args:
        df: the rows.
        settings: the published settings (default :func:`published_settings`).

    Returns:
        the boolean Series (all True for an empty ``df``).
    """
    s = settings or published_settings()
    ok = pd.Series(True, index=df.index)
    if len(df) == 0:
        return ok
    reg = df["regularizer"].astype(str) if "regularizer" in df else pd.Series("", index=df.index)
    for col, users in _USES.items():
        if col not in df:
            continue
        applies = reg.isin(users)
        if col == "signed":
            same = df[col].astype("boolean").fillna(False).astype(bool) == bool(s[col])
        else:
            same = _close(df[col], s[col])
        ok &= ~applies | same
    for col in ("criterion", "scope", "mode"):
        if col in df:
            ok &= df[col].astype(str) == s[col]
    if "recalibrate_bn" in df:
        ok &= df["recalibrate_bn"].astype("boolean").fillna(False).astype(bool) == s["recalibrate_bn"]
    if "finetune_epochs" in df:
        ok &= pd.to_numeric(df["finetune_epochs"], errors="coerce").fillna(0).astype(int) == s["finetune_epochs"]
    return ok


def scale_mask(df: pd.DataFrame, settings: dict | None = None) -> pd.Series:
    """Rows of runs trained at the published *scale*: the ``paper`` protocol for its full
    number of epochs, full width, all training images of a paper dataset, a paper model.

    Args:
        df: joined rows with ``model``, ``dataset``, ``protocol``, ``epochs``, ``width`` and
            ``n_train`` columns.
        settings: the published settings (default :func:`published_settings`).

    Returns:
        a boolean Series aligned with ``df`` (all True for an empty ``df``).
    """
    s = settings or published_settings()
    if len(df) == 0:
        return pd.Series(True, index=df.index)
    full = df["dataset"].astype(str).map(s["n_train"])
    ok = df["model"].astype(str).isin(MODELS) & df["dataset"].astype(str).isin(DATASETS)
    ok &= df["protocol"].astype(str) == s["protocol"]
    ok &= pd.to_numeric(df["epochs"], errors="coerce") == s["epochs"]
    ok &= _close(df["width"], s["width"])
    ok &= pd.to_numeric(df["n_train"], errors="coerce").astype(float) == full.astype(float)
    return ok.fillna(False).astype(bool)


def __getattr__(name: str):
    # Derived lazily from the CSV, so that importing the module never reads a file.
    if name in ("UNPRUNED", "UNPRUNED_ACCURACY"):
        return unpruned()
    if name == "PANELS":
        df = load_curves()
        present = set(zip(df["model"], df["dataset"]))
        return tuple((m, d) for m in MODELS for d in DATASETS if (m, d) in present)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
