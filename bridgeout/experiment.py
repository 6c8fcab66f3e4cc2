"""One cell of the grid: the steps of ``notebooks/train_and_prune.ipynb``.

The notebook stays thin by calling these, in order, and they are tested here rather than in
the notebook: :func:`validate_params` (every parameter checked, a readable ``ValueError``
naming the value and what is allowed), :func:`load_data`, :func:`build_model`,
:func:`train_model`, :func:`save_weights`, :func:`sweep_model`, :func:`filter_rows`, :func:`result_tables` and
:func:`save_tables` (appends to ``runs.csv`` / ``pruning.csv`` / ``history.csv`` /
``filters.csv.gz``, see :mod:`bridgeout.results`); :func:`run_experiment` chains them.

Running many cells (specs, expansion, papermill, claims, failures, executors, the command
line) is :mod:`bridgeout.grid`'s concern; it re-exports these names.

The parameters, their defaults and their checks are :mod:`bridgeout.parameters` (re-exported
here).

Example::

    from bridgeout.experiment import run_experiment
    out = run_experiment({"model": "lenet5", "dataset": "mnist", "protocol": "smoke"}, save=False)
    out["runs"][["run_id", "final_test_acc"]]
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pandas as pd

from . import results
from .parameters import PARAMETERS, RUNNER_PARAMETERS, validate_params  # noqa: F401 - re-exported
from .protocols import get_protocol

__all__ = [
    "PARAMETERS", "RUNNER_PARAMETERS", "NOTEBOOK", "validate_params", "load_data", "build_model",
    "train_model", "save_weights", "weights_dir", "sweep_model", "filter_rows", "result_tables", "save_tables",
    "run_experiment",
]

REPO_ROOT = results.REPO_ROOT
NOTEBOOK = "notebooks/train_and_prune.ipynb"


def _repo_path(p) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


# =========================================================================== experiment steps
def load_data(params: Mapping):
    """Load (and subset) the dataset onto the run's device; returns a ``DeviceData``.

    Args:
        params: validated parameters (:func:`validate_params`); uses ``dataset``,
            ``data_root``, ``n_train``, ``n_test``, ``seed`` and ``device``.

    Returns:
        the :class:`bridgeout.data.DeviceData`.

    Raises:
        FileNotFoundError: the dataset is not there (:func:`bridgeout.data.load`).
        ValueError: an unreadable dataset, a subset larger than the split, or an unusable device.
    """
    from . import data  # deferred: loads torch
    from . import train  # deferred: loads torch
    arrays = data.load(params["dataset"], root=params["data_root"])
    arrays = data.subset(arrays, params["n_train"], params["n_test"], seed=params["seed"])
    return data.DeviceData(arrays, params["dataset"], device=train.resolve_device(params["device"]))


def build_model(params: Mapping, num_classes: int):
    """Seed the global RNG with ``params['seed']`` and build the initialised model (then, with
    the ``legacy_bn_init`` quirk, BatchNorm weights U(0, 1) from the same RNG).

    Args:
        params: validated parameters (:func:`validate_params`).
        num_classes: the dataset's number of classes.

    Returns:
        the model (:func:`bridgeout.models.build`).
    """
    from . import models  # deferred: loads torch
    import torch

    from .quirks import legacy_bn_init_  # deferred: loads torch
    torch.manual_seed(params["seed"])
    model = models.build(params["model"], num_classes, params["regularizer"], width=params["width"],
                         p=params["p"], q=params["q"], target_fraction=params["target_fraction"],
                         signed=params["signed"], lam=params.get("lam"))
    if "legacy_bn_init" in params.get("quirks", ()):
        legacy_bn_init_(model)
    return model


def train_model(params: Mapping, model, dd, *, progress: bool = True):
    """Train with :func:`bridgeout.train.fit`; returns its ``FitResult``.

    The protocol is ``params['protocol']`` with ``epochs`` applied (and the optimizer reset each
    epoch with the ``momentum_reset`` quirk); with ``checkpoint_dir`` the checkpoints go to
    ``<checkpoint_dir>/<run_id>``, owned by the run's id and settings.

    Args:
        params: validated parameters (:func:`validate_params`).
        model: the network from :func:`build_model` (trained in place).
        dd: the data from :func:`load_data`.
        progress: keyword-only; show the progress bars.

    Returns:
        the :class:`bridgeout.train.FitResult`.
    """
    from . import train  # deferred: loads torch
    ckpt = params["checkpoint_dir"]
    if ckpt is not None:
        ckpt = str(_repo_path(ckpt) / params["run_id"])
    proto = get_protocol(params["protocol"], epochs=params["epochs"])
    if "momentum_reset" in params.get("quirks", ()):
        proto = replace(proto, reset_optimizer_each_epoch=True)
    owner = {k: params.get(k) for k in ("run_id", "model", "width", "regularizer", "p", "q", "target_fraction",
                                        "signed", "lam", "seed", "n_train", "quirks", "precision")}
    return train.fit(model, dd, proto, select=params["select"], precision=params.get("precision", "fp32"),
                     device=params["device"], seed=params["seed"], dataset=params["dataset"],
                     checkpoint_dir=ckpt, progress=progress, checkpoint_owner=owner)


def sweep_model(params: Mapping, model, dd, *, progress: bool = True) -> pd.DataFrame:
    """Prune the trained model at every fraction with :func:`bridgeout.prune.sweep`, once
    per value of ``prune_recalibrate_bn`` (False: the published one-shot sweep; True: the
    same sweep with BatchNorm statistics re-estimated after pruning); rows concatenated.

    The pruner is ``"published"`` with the ``bn_scale_pruning`` quirk, else ``"plain"``; latency
    is measured (when ``params['latency']``) in the sweep without recalibration only.

    Args:
        params: validated parameters (:func:`validate_params`).
        model: the trained network.
        dd: the data.
        progress: keyword-only; show the progress bars.

    Returns:
        the sweep's rows.
    """
    from . import prune  # deferred: loads torch
    parts = [prune.sweep(model, dd, fractions=tuple(params["fractions"]),
                         criteria=tuple(params["prune_criteria"]), scopes=tuple(params["prune_scopes"]),
                         modes=tuple(params["prune_modes"]), recalibrate_bn=recal, device=dd.device,
                         pruner="published" if "bn_scale_pruning" in params.get("quirks", ()) else "plain",
                         latency=params["latency"] and not recal, dataset=params["dataset"],
                         seed=params["seed"], progress=progress)
             for recal in params.get("prune_recalibrate_bn", [False])]
    return pd.concat(parts, ignore_index=True)


def filter_rows(model) -> pd.DataFrame:
    """The trained model's per-filter norms and BatchNorm scales
    (:func:`bridgeout.filters.filter_table` of its noise-free twin).

    Args:
        model: the trained network (not modified).

    Returns:
        the table of :data:`bridgeout.filters.FILTER_COLUMNS`.
    """
    from . import filters  # deferred: loads torch
    from .nn import plain  # deferred: loads torch
    return filters.filter_table(plain(model))


def weights_dir(params: Mapping) -> Path:
    """Where the run's weights go: ``params['weights_dir']`` when set; else ``data/weights``
    beside a ``results_dir`` named ``results`` (``data/results`` -> ``data/weights``), or a
    ``weights`` folder inside any other ``results_dir`` (a scratch table keeps its own).

    Args:
        params: parameters with ``results_dir`` (and optionally ``weights_dir``); relative
            paths are taken from the repository root.

    Returns:
        the folder.
    """
    if params.get("weights_dir"):
        return _repo_path(params["weights_dir"])
    root = _repo_path(params["results_dir"])
    return root.parent / "weights" if root.name == "results" else root / "weights"


def save_weights(params: Mapping, fit) -> dict:
    """Keep the trained network: ``fit.model``'s weights (the selected ones, which the sweep
    prunes) as fp32 safetensors ``<weights_dir>/<run_id>.safetensors``, and with
    ``select="best_test"`` the final epoch's beside them (``<run_id>.final.safetensors``).
    Returns the ``runs`` columns ``weights`` (repo-relative where possible),
    ``weights_sha256`` and ``weights_bytes`` of the selected weights' file.

    Args:
        params: validated parameters (:func:`validate_params`); the files' metadata records
            the run's identity and settings.
        fit: the :class:`bridgeout.train.FitResult`.

    Returns:
        ``{"weights", "weights_sha256", "weights_bytes"}``.
    """
    from . import weights  # deferred: loads torch
    folder = weights_dir(params)
    meta = {k: params.get(k) for k in ("run_id", "model", "width", "regularizer", "p", "q", "target_fraction",
                                       "signed", "lam", "dataset", "protocol", "epochs", "seed", "select",
                                       "quirks", "precision")}
    path = weights.path_for(folder, params["run_id"])
    digest, size = weights.save(fit.model.state_dict(), path, {**meta, "weights": "selected"})
    if getattr(fit, "final_state", None) is not None:
        weights.save(fit.final_state, weights.path_for(folder, params["run_id"], final=True),
                     {**meta, "weights": "final"})
    return {"weights": _rel(path), "weights_sha256": digest, "weights_bytes": int(size)}


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _planned_epochs(params: Mapping) -> int:
    return int(get_protocol(params["protocol"], epochs=params["epochs"]).epochs)


def result_tables(params: Mapping, fit, sweep: pd.DataFrame, dd, provenance: Mapping | None = None,
                  *, weights: Mapping | None = None) -> dict[str, pd.DataFrame]:
    """The run's rows for ``runs``, ``pruning``, ``history`` and ``filters`` (of
    ``fit.model``), validated against the schemas. ``weights``: what :func:`save_weights`
    returned (the ``runs`` row's weights columns; empty when None).

    Args:
        params: validated parameters (:func:`validate_params`).
        fit: the :class:`bridgeout.train.FitResult`.
        sweep: the rows of :func:`sweep_model` (pruning columns it lacks are NaN).
        dd: the data (its sizes go into the ``runs`` row).
        provenance: the provenance columns (default :func:`bridgeout.results.provenance` of the
            data's device).
        weights: keyword-only; the weights columns.

    Returns:
        ``{"runs", "pruning", "history", "filters"}`` tables.

    Raises:
        ValueError: a row does not fit its schema.
    """
    prov = dict(provenance) if provenance is not None else results.provenance(dd.device)
    run_id = params["run_id"]
    row = {
        "run_id": run_id, "grid": params["grid"], "model": params["model"],
        "regularizer": params["regularizer"], "p": params["p"], "q": params["q"],
        "target_fraction": params["target_fraction"], "signed": params["signed"],
        "lam": getattr(fit.model, "sparsity_lambda", None),
        "dataset": params["dataset"], "protocol": params["protocol"],
        "epochs": _planned_epochs(params), "epochs_done": int(fit.epochs_done),
        "width": params["width"], "n_train": int(len(dd.y_train)), "n_test": int(len(dd.y_test)),
        "seed": params["seed"], "select": params["select"], "quirks": ";".join(params.get("quirks", [])),
        "final_test_acc": float(fit.final_test_acc), "best_test_acc": float(fit.best_test_acc),
        "best_epoch": int(fit.best_epoch), "wall_time_s": float(fit.wall_time_s),
        "device": prov["device"], "device_name": prov["device_name"],
        "torch_version": prov["torch_version"], "cuda_version": prov["cuda_version"],
        "git_commit": prov["git_commit"], "git_dirty": prov["git_dirty"], "date": prov["date"],
        "notebook": params["notebook_path"], "precision": params.get("precision", "fp32"),
        "weights": None, "weights_sha256": None, "weights_bytes": None, **dict(weights or {}),
    }
    runs = pd.DataFrame([row], columns=list(results.RUNS_SCHEMA))
    hist = fit.history.copy()
    hist.insert(0, "run_id", run_id)
    hist = hist[[c for c in results.HISTORY_SCHEMA]]
    pr = sweep.copy()
    pr.insert(0, "run_id", run_id)
    for col in results.PRUNING_SCHEMA:  # columns an older prune.sweep may not report
        if col not in pr.columns:
            pr[col] = math.nan
    pr = pr[[c for c in results.PRUNING_SCHEMA]]
    filt = filter_rows(fit.model)
    filt.insert(0, "run_id", run_id)
    return {name: results.validate(name, df, source=f"{name} rows of run {run_id}")
            for name, df in (("runs", runs), ("pruning", pr), ("history", hist), ("filters", filt))}


def save_tables(tables: Mapping[str, pd.DataFrame], results_dir) -> dict[str, int]:
    """Append a run's rows; returns rows added per table.

    ``history``, ``pruning`` and ``filters`` first (replacing rows a crashed earlier attempt
    of the same run may have left), ``runs`` last: a run is finished once its ``runs.csv`` row exists,
    which is what the grid runner checks. Each append is atomic and idempotent.

    Args:
        tables: the tables of :func:`result_tables` (``runs`` required, the others optional);
            when every run in ``runs`` is already finished, the other tables are not written.
        results_dir: the folder of the tables (relative: from the repository root).

    Returns:
        rows added per table.

    Raises:
        ValueError: a malformed table (nothing of that table is written).
    """
    root = _repo_path(results_dir)
    run_ids = set(tables["runs"]["run_id"])
    done = set(results.load("runs", root)["run_id"])
    counts = {}
    for name in ("history", "pruning", "filters"):
        if name in tables:
            counts[name] = 0 if run_ids <= done else results.append(name, tables[name], root, replace=True)
    counts["runs"] = results.append("runs", tables["runs"], root)
    return counts


def run_experiment(params: Mapping, *, save: bool = True, progress: bool = True) -> dict:
    """Validate, load, build, train, sweep and (``save=True``) append; returns the pieces.

    Keys: ``params`` (validated), ``data``, ``fit``, ``sweep`` and the tables
    ``runs``, ``pruning``, ``history`` and ``filters``; ``added`` (rows appended per table)
    when saved. With ``save=True`` the weights are kept too (:func:`save_weights`).

    Args:
        params: the parameters (:func:`validate_params`).
        save: keyword-only; keep the weights and append the rows to ``results_dir``.
        progress: keyword-only; show the progress bars.

    Returns:
        the dict described above.

    Raises:
        ValueError: invalid parameters (:func:`validate_params`), or as the steps raise.
    """
    params = validate_params(params)
    dd = load_data(params)
    model = build_model(params, dd.num_classes)
    fit = train_model(params, model, dd, progress=progress)
    kept = save_weights(params, fit) if save else None
    sweep = sweep_model(params, fit.model, dd, progress=progress)
    out = {"params": params, "data": dd, "fit": fit, "sweep": sweep,
           **result_tables(params, fit, sweep, dd, weights=kept)}
    if save:
        out["added"] = save_tables(out, params["results_dir"])
    return out
