"""One cell of the grid: the steps of ``notebooks/train_and_prune.ipynb``.

The notebook stays thin by calling these, in order, and they are tested here rather than in
the notebook: :func:`validate_params` (every parameter checked, a readable ``ValueError``
naming the value and what is allowed), :func:`load_data`, :func:`build_model`,
:func:`train_model`, :func:`save_weights`, :func:`sweep_model`, :func:`filter_rows`, :func:`result_tables` and
:func:`save_tables` (appends to ``runs.csv`` / ``pruning.csv`` / ``history.csv`` /
``filters.csv.gz``, see :mod:`bridgeout.results`); :func:`run_experiment` chains them.

Running many cells (specs, expansion, papermill, claims, failures, executors, the command
line) is :mod:`bridgeout.grid`'s concern; it re-exports these names.

Example::

    from bridgeout.experiment import run_experiment
    out = run_experiment({"model": "lenet5", "dataset": "mnist", "protocol": "smoke"}, save=False)
    out["runs"][["run_id", "final_test_acc"]]
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from . import registry, results
from .protocols import get_protocol
from ._validate import check_choice, check_fraction, check_int, check_positive, check_probability

__all__ = [
    "PARAMETERS", "RUNNER_PARAMETERS", "NOTEBOOK", "validate_params", "load_data", "build_model",
    "train_model", "save_weights", "weights_dir", "sweep_model", "filter_rows", "result_tables", "save_tables",
    "run_experiment",
]

REPO_ROOT = results.REPO_ROOT
NOTEBOOK = "notebooks/train_and_prune.ipynb"

#: The experiment notebook's parameters and their defaults (its ``parameters`` cell
#: mirrors this; a test checks that they agree).
PARAMETERS: dict = {
    "model": "lenet5",
    "regularizer": "bridgeout",
    "p": 0.3,
    "q": 1.5,
    "target_fraction": 0.75,
    "signed": False,
    "lam": None,
    "dataset": "mnist",
    "protocol": "smoke",
    "epochs": None,
    "width": 1.0,
    "n_train": None,
    "n_test": None,
    "seed": 0,
    "select": "final",
    "quirks": [],
    "device": "auto",
    "data_root": None,
    "results_dir": "data/results/scratch",
    "prune_modes": ["mask", "remove"],
    "prune_criteria": ["l2"],
    "prune_scopes": ["layer"],
    "prune_recalibrate_bn": [False],
    "fractions": list(registry.FRACTIONS),
    "latency": True,
    "grid": "",
    "run_id": None,
    "notebook_path": "",
    "checkpoint_dir": None,
    "precision": "fp32",
    "weights_dir": None,
}
#: Parameters the runner sets itself (a spec may not set them).
RUNNER_PARAMETERS = ("grid", "run_id", "notebook_path", "results_dir")


# =========================================================================== parameters

def _bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _str(name, value, *, none_ok=False, empty_ok=True):
    if value is None and none_ok:
        return None
    if not isinstance(value, str) or (not empty_ok and not value):
        allowed = "a non-empty string" if not empty_ok else "a string"
        raise ValueError(f"{name} must be {allowed}{' (or None)' if none_ok else ''}, got {value!r}")
    return value


def _names(name, value, choices):
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty list of names from {list(choices)}, got {value!r}")
    out = [check_choice(name[:-1] if name.endswith("s") else name, v, choices) for v in value]
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat names, got {value!r}")
    return out


def _known():
    """Allowed names (:mod:`bridgeout.registry`): the parameter checks load no torch."""
    return dict(models=registry.MODELS, regularizers=registry.REGULARIZERS, datasets=registry.DATASETS,
                protocols=registry.PROTOCOL_NAMES, modes=registry.MODES, criteria=registry.CRITERIA,
                scopes=registry.SCOPES, select=registry.SELECT)


def validate_params(params: Mapping) -> dict:
    """Check the experiment parameters and return them complete and normalised.

    Missing names take their :data:`PARAMETERS` default; unknown names, wrong types and
    out-of-range values raise ``ValueError`` naming the parameter, the value and what is
    allowed (e.g. ``p must be in [0, 1), got 1.5``; ``unknown model 'vgg17'; valid
    choices: ...``). The model must match the dataset's image size: ``lenet5`` takes
    MNIST (28x28x1), the others CIFAR (32x32x3). ``run_id`` None is replaced by
    :func:`bridgeout.results.make_run_id` of the parameters.

    Args:
        params: parameter names (keys of :data:`PARAMETERS`) and values.

    Returns:
        every parameter of :data:`PARAMETERS`, checked; quirks sorted, ``lam`` a float (or
        None), ``precision`` ``"auto"`` resolved for the run's device.

    Raises:
        ValueError: ``params`` is not a mapping, or as above.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping of parameter names to values, got {type(params).__name__}")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; valid parameters: {', '.join(PARAMETERS)}")
    k = _known()
    p = {**{n: (list(v) if isinstance(v, list) else v) for n, v in PARAMETERS.items()}, **dict(params)}
    out = {}
    out["model"] = check_choice("model", p["model"], k["models"])
    out["regularizer"] = check_choice("regularizer", p["regularizer"], k["regularizers"])
    out["p"] = check_probability("p", p["p"])
    out["q"] = check_positive("q", p["q"])
    out["target_fraction"] = check_fraction("target_fraction", p["target_fraction"])
    out["signed"] = _bool("signed", p["signed"])
    out["lam"] = _lam(p["lam"], out["regularizer"])
    out["dataset"] = check_choice("dataset", p["dataset"], k["datasets"])
    if (out["model"] == "lenet5") != (out["dataset"] == "mnist"):
        raise ValueError(f"model {out['model']!r} does not fit dataset {out['dataset']!r}: lenet5 takes "
                         f"mnist (28x28x1 images), the CIFAR models (vgg16, resnet, wrn, wrn28_10) take "
                         f"cifar10/cifar100 (32x32x3)")
    out["protocol"] = check_choice("protocol", p["protocol"], k["protocols"])
    out["epochs"] = check_int("epochs", p["epochs"], 1, none_ok=True)
    out["width"] = check_positive("width", p["width"])
    out["n_train"] = check_int("n_train", p["n_train"], 1, none_ok=True)
    out["n_test"] = check_int("n_test", p["n_test"], 1, none_ok=True)
    out["seed"] = check_int("seed", p["seed"], 0)
    out["select"] = check_choice("select", p["select"], k["select"])
    from .quirks import check_quirks  # deferred: loads torch
    out["quirks"] = check_quirks(p["quirks"], out["model"])
    out["device"] = device = _device(p["device"])
    out["data_root"] = _str("data_root", p["data_root"], none_ok=True, empty_ok=False)
    out["results_dir"] = _str("results_dir", p["results_dir"], empty_ok=False)
    out["prune_modes"] = _names("prune_modes", p["prune_modes"], k["modes"])
    out["prune_criteria"] = _names("prune_criteria", p["prune_criteria"], k["criteria"])
    out["prune_scopes"] = _names("prune_scopes", p["prune_scopes"], k["scopes"])
    out["prune_recalibrate_bn"] = _recalibrate_list(p["prune_recalibrate_bn"])
    out["fractions"] = _fractions(p["fractions"])
    out["latency"] = _bool("latency", p["latency"])
    out["grid"] = _str("grid", p["grid"])
    out["notebook_path"] = _str("notebook_path", p["notebook_path"])
    out["checkpoint_dir"] = _str("checkpoint_dir", p["checkpoint_dir"], none_ok=True, empty_ok=False)
    out["weights_dir"] = _str("weights_dir", p["weights_dir"], none_ok=True, empty_ok=False)
    out["precision"] = _precision(p["precision"], device)
    run_id = _str("run_id", p["run_id"], none_ok=True, empty_ok=False)
    if run_id is not None and not results.RUN_ID.match(run_id):
        raise ValueError(f"run_id must be letters, digits, '_', '.', '-' (starting with a letter or digit), "
                         f"got {run_id!r}")
    out["run_id"] = run_id if run_id is not None else results.make_run_id(out)
    return out


def _lam(lam, regularizer: str):
    """The penalty strength: None, or a number > 0 for a regularizer with a penalty."""
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0):
        raise ValueError(f"lam must be None or a number > 0 (the slimming / group_lasso strength), got {lam!r}")
    if lam is not None and regularizer not in registry.PENALTIES:
        raise ValueError(f"lam is the strength of the slimming / group_lasso penalties; regularizer "
                         f"{regularizer!r} takes none, got lam={lam!r}")
    return None if lam is None else float(lam)


def _device(value) -> str:
    """``"auto"`` or a string torch accepts as a device."""
    device = _str("device", value, empty_ok=False)
    if device != "auto":
        import torch   # deferred: loads torch
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:1', "
                             f"got {device!r}") from None
    return device


def _recalibrate_list(rb) -> list:
    """A non-empty list of distinct booleans."""
    if (isinstance(rb, str) or not isinstance(rb, Sequence) or len(rb) == 0
            or not all(isinstance(v, bool) for v in rb) or len(set(rb)) != len(rb)):
        raise ValueError(f"prune_recalibrate_bn must be a non-empty list of distinct booleans "
                         f"([False], [True] or [False, True]), got {rb!r}")
    return list(rb)


def _fractions(fr) -> list:
    """A non-empty list of distinct fractions in [0, 1)."""
    if isinstance(fr, str) or not isinstance(fr, Sequence) or len(fr) == 0:
        raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1), got {fr!r}")
    out = [check_fraction("fractions", f, low_open=False) for f in fr]
    if len(set(out)) != len(out):
        raise ValueError(f"fractions must not repeat values, got {fr!r}")
    return out


def _precision(value, device: str) -> str:
    """``fp32`` / ``bf16``, or ``auto`` resolved for the run's device (bf16 where native)."""
    from . import train  # deferred: loads torch
    value = check_choice("precision", value, (*train.PRECISIONS, "auto"))
    if value != "auto":
        return value
    return train.resolve_precision("auto", train.resolve_device(device))


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
