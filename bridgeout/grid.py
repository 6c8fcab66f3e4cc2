"""Experiments as parameterised notebooks, and the grid runner that executes them.

Two halves:

* The **experiment steps** that ``notebooks/train_and_prune.ipynb`` calls, so that the
  notebook stays thin and the logic is tested: :func:`validate_params` (every parameter
  checked, a readable ``ValueError`` otherwise), :func:`load_data`, :func:`build_model`,
  :func:`train_model`, :func:`sweep_model`, :func:`result_tables` and :func:`save_tables`
  (appends to ``runs.csv`` / ``pruning.csv`` / ``history.csv``, see
  :mod:`bridgeout.results`); :func:`run_experiment` chains them.
* The **grid runner**, ``python -m bridgeout.grid SPEC [--dry-run] [--only PATTERN]
  [--retry-failed] [--log-output]``. A spec is a YAML file::

      name: mnist-teaching                    # also the runs' `grid` column
      notebook: notebooks/train_and_prune.ipynb
      results_dir: data/results               # where the three tables live
      runs_dir: data/runs/mnist-teaching      # executed notebooks + failures.csv
      defaults: {model: lenet5, dataset: mnist, protocol: fast, epochs: 3}
      axes:                                   # expanded as a Cartesian product
        regularizer: [bridgeout, dropout, weight_decay]
        seed: [0, 1, 2]
        arch:                                 # an axis that is not a parameter name:
          - {model: vgg16, width: 0.25}       # each value is a mapping of parameters
          - {model: resnet, width: 0.5}       # set together
      exclude:                                # cells matching all given values are dropped
        - {model: resnet, regularizer: dropout}

  Every cell is validated (unknown parameter names -- checked against the notebook's
  ``parameters`` cell -- and bad values) before anything runs. Each cell is executed with
  papermill (kernel ``python3``, working directory = the repository root) with
  ``run_id``, ``grid`` and ``notebook_path`` injected; the executed notebook is kept at
  ``runs_dir/<run_id>.ipynb`` with its outputs trimmed (progress bars collapsed, long
  streams cut, only PNG/text kept). Cells whose ``run_id`` is already in ``runs.csv`` are
  skipped, so a grid can be stopped and restarted. A failing cell is recorded in
  ``runs_dir/failures.csv`` with its error and the others still run; previously failed
  cells are skipped unless ``--retry-failed``. The exit status is 1 when any selected cell
  failed (now or before), 2 for a bad spec, an unreadable table or an ``--only`` pattern
  that matches no cell, 130 when interrupted (Ctrl-C or SIGTERM; rerun to resume), 0
  otherwise.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import itertools
import math
import numbers
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from . import results
from ._validate import check_choice, check_fraction, check_positive, check_probability

__all__ = [
    "PARAMETERS", "RUNNER_PARAMETERS", "NOTEBOOK", "validate_params", "load_data", "build_model",
    "train_model", "sweep_model", "result_tables", "save_tables", "run_experiment",
    "GridSpec", "SpecError", "load_spec", "expand", "strip_outputs", "run_grid", "main",
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
    "fractions": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "latency": True,
    "grid": "",
    "run_id": None,
    "notebook_path": "",
    "checkpoint_dir": None,
}
#: Parameters the runner sets itself (a spec may not set them).
RUNNER_PARAMETERS = ("grid", "run_id", "notebook_path", "results_dir")
_FALLBACK_PROTOCOLS = ("paper", "fast", "smoke")
_FALLBACK_MODES = ("mask", "remove")
_FALLBACK_CRITERIA = ("l2",)
_FALLBACK_SCOPES = ("layer", "global")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


# =========================================================================== parameters
def _int(name, value, minimum, *, none_ok=False):
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " (or None)" if none_ok else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")
    return int(value)


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
    """Allowed names, from the modules that define them (fallbacks while a module is missing)."""
    from . import data, models
    try:
        from . import train
        protocols, select = tuple(train.PROTOCOLS), tuple(train.SELECT)
    except ImportError:  # pragma: no cover
        protocols, select = _FALLBACK_PROTOCOLS, ("final", "best_test")
    try:
        from . import prune
        modes, criteria, scopes = tuple(prune.MODES), tuple(prune.CRITERIA), tuple(prune.SCOPES)
    except ImportError:  # pragma: no cover
        modes, criteria, scopes = _FALLBACK_MODES, _FALLBACK_CRITERIA, _FALLBACK_SCOPES
    return dict(models=tuple(models.MODELS), regularizers=tuple(models.REGULARIZERS),
                datasets=tuple(data.DATASETS), protocols=protocols, modes=modes,
                criteria=criteria, scopes=scopes, select=select)


def validate_params(params: Mapping) -> dict:
    """Check the experiment parameters and return them complete and normalised.

    Missing names take their :data:`PARAMETERS` default; unknown names, wrong types and
    out-of-range values raise ``ValueError`` naming the parameter, the value and what is
    allowed (e.g. ``p must be in [0, 1), got 1.5``; ``unknown model 'vgg17'; valid
    choices: ...``). The model must match the dataset's image size: ``lenet5`` takes
    MNIST (28x28x1), the others CIFAR (32x32x3). ``run_id`` None is replaced by
    :func:`bridgeout.results.make_run_id` of the parameters.
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
    lam = p["lam"]
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0):
        raise ValueError(f"lam must be None or a number > 0 (the slimming / group_lasso strength), got {lam!r}")
    if lam is not None and out["regularizer"] not in ("slimming", "group_lasso"):
        raise ValueError(f"lam is the strength of the slimming / group_lasso penalties; regularizer "
                         f"{out['regularizer']!r} takes none, got lam={lam!r}")
    out["lam"] = None if lam is None else float(lam)
    out["dataset"] = check_choice("dataset", p["dataset"], k["datasets"])
    if (out["model"] == "lenet5") != (out["dataset"] == "mnist"):
        raise ValueError(f"model {out['model']!r} does not fit dataset {out['dataset']!r}: lenet5 takes "
                         f"mnist (28x28x1 images), the CIFAR models (vgg16, resnet, wrn, wrn28_10) take "
                         f"cifar10/cifar100 (32x32x3)")
    out["protocol"] = check_choice("protocol", p["protocol"], k["protocols"])
    out["epochs"] = _int("epochs", p["epochs"], 1, none_ok=True)
    out["width"] = check_positive("width", p["width"])
    out["n_train"] = _int("n_train", p["n_train"], 1, none_ok=True)
    out["n_test"] = _int("n_test", p["n_test"], 1, none_ok=True)
    out["seed"] = _int("seed", p["seed"], 0)
    out["select"] = check_choice("select", p["select"], k["select"])
    from .quirks import check_quirks
    out["quirks"] = check_quirks(p["quirks"], out["model"])
    device = _str("device", p["device"], empty_ok=False)
    if device != "auto":
        import torch
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:1', "
                             f"got {device!r}") from None
    out["device"] = device
    out["data_root"] = _str("data_root", p["data_root"], none_ok=True, empty_ok=False)
    out["results_dir"] = _str("results_dir", p["results_dir"], empty_ok=False)
    out["prune_modes"] = _names("prune_modes", p["prune_modes"], k["modes"])
    out["prune_criteria"] = _names("prune_criteria", p["prune_criteria"], k["criteria"])
    out["prune_scopes"] = _names("prune_scopes", p["prune_scopes"], k["scopes"])
    rb = p["prune_recalibrate_bn"]
    if (isinstance(rb, str) or not isinstance(rb, Sequence) or len(rb) == 0
            or not all(isinstance(v, bool) for v in rb) or len(set(rb)) != len(rb)):
        raise ValueError(f"prune_recalibrate_bn must be a non-empty list of distinct booleans "
                         f"([False], [True] or [False, True]), got {rb!r}")
    out["prune_recalibrate_bn"] = list(rb)
    fr = p["fractions"]
    if isinstance(fr, str) or not isinstance(fr, Sequence) or len(fr) == 0:
        raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1), got {fr!r}")
    out["fractions"] = [check_fraction("fractions", f, low_open=False) for f in fr]
    if len(set(out["fractions"])) != len(out["fractions"]):
        raise ValueError(f"fractions must not repeat values, got {fr!r}")
    out["latency"] = _bool("latency", p["latency"])
    out["grid"] = _str("grid", p["grid"])
    out["notebook_path"] = _str("notebook_path", p["notebook_path"])
    out["checkpoint_dir"] = _str("checkpoint_dir", p["checkpoint_dir"], none_ok=True, empty_ok=False)
    run_id = _str("run_id", p["run_id"], none_ok=True, empty_ok=False)
    if run_id is not None and not _RUN_ID.match(run_id):
        raise ValueError(f"run_id must be letters, digits, '_', '.', '-' (starting with a letter or digit), "
                         f"got {run_id!r}")
    out["run_id"] = run_id if run_id is not None else results.make_run_id(out)
    return out


def _repo_path(p) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


# =========================================================================== experiment steps
def load_data(params: Mapping):
    """Load (and subset) the dataset onto the run's device; returns a ``DeviceData``."""
    from . import data, train
    arrays = data.load(params["dataset"], root=params["data_root"])
    arrays = data.subset(arrays, params["n_train"], params["n_test"], seed=params["seed"])
    return data.DeviceData(arrays, params["dataset"], device=train.resolve_device(params["device"]))


def build_model(params: Mapping, num_classes: int):
    """Seed the global RNG with ``params['seed']`` and build the initialised model (then, with
    the ``legacy_bn_init`` quirk, BatchNorm weights U(0, 1) from the same RNG)."""
    import torch

    from . import models
    from .quirks import legacy_bn_init_
    torch.manual_seed(params["seed"])
    model = models.build(params["model"], num_classes, params["regularizer"], width=params["width"],
                         p=params["p"], q=params["q"], target_fraction=params["target_fraction"],
                         signed=params["signed"], lam=params.get("lam"))
    if "legacy_bn_init" in params.get("quirks", ()):
        legacy_bn_init_(model)
    return model


def train_model(params: Mapping, model, dd, *, progress: bool = True):
    """Train with :func:`bridgeout.train.fit`; returns its ``FitResult``."""
    from . import train
    ckpt = params["checkpoint_dir"]
    if ckpt is not None:
        ckpt = str(_repo_path(ckpt) / params["run_id"])
    proto = train.get_protocol(params["protocol"], epochs=params["epochs"])
    if "momentum_reset" in params.get("quirks", ()):
        proto = replace(proto, reset_optimizer_each_epoch=True)
    owner = {k: params.get(k) for k in ("run_id", "model", "width", "regularizer", "p", "q", "target_fraction",
                                        "signed", "lam", "seed", "n_train", "quirks")}
    return train.fit(model, dd, proto, select=params["select"],
                     device=params["device"], seed=params["seed"], dataset=params["dataset"],
                     checkpoint_dir=ckpt, progress=progress, checkpoint_owner=owner)


def sweep_model(params: Mapping, model, dd, *, progress: bool = True) -> pd.DataFrame:
    """Prune the trained model at every fraction with :func:`bridgeout.prune.sweep`, once
    per value of ``prune_recalibrate_bn`` (False: the published one-shot sweep; True: the
    same sweep with BatchNorm statistics re-estimated after pruning); rows concatenated."""
    from . import prune
    parts = [prune.sweep(model, dd, fractions=tuple(params["fractions"]),
                         criteria=tuple(params["prune_criteria"]), scopes=tuple(params["prune_scopes"]),
                         modes=tuple(params["prune_modes"]), recalibrate_bn=recal, device=dd.device,
                         bn_scales="bn_scale_pruning" in params.get("quirks", ()),
                         latency=params["latency"] and not recal, dataset=params["dataset"],
                         seed=params["seed"], progress=progress)
             for recal in params.get("prune_recalibrate_bn", [False])]
    return pd.concat(parts, ignore_index=True)


def filter_rows(model) -> pd.DataFrame:
    """The trained model's per-filter norms and BatchNorm scales
    (:func:`bridgeout.filters.filter_table` of its noise-free twin)."""
    from . import filters
    from .nn import plain
    return filters.filter_table(plain(model))


def _planned_epochs(params: Mapping) -> int:
    from . import train
    return int(train.get_protocol(params["protocol"], epochs=params["epochs"]).epochs)


def result_tables(params: Mapping, fit, sweep: pd.DataFrame, dd, provenance: Mapping | None = None
                  ) -> dict[str, pd.DataFrame]:
    """The run's rows for ``runs``, ``pruning``, ``history`` and ``filters`` (of
    ``fit.model``), validated against the schemas."""
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
        "notebook": params["notebook_path"],
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

    Keys: ``params`` (validated), ``data``, ``fit``, ``sweep`` and the three tables
    ``runs``, ``pruning``, ``history``; ``added`` (rows appended per table) when saved.
    """
    params = validate_params(params)
    dd = load_data(params)
    model = build_model(params, dd.num_classes)
    fit = train_model(params, model, dd, progress=progress)
    sweep = sweep_model(params, fit.model, dd, progress=progress)
    out = {"params": params, "data": dd, "fit": fit, "sweep": sweep, **result_tables(params, fit, sweep, dd)}
    if save:
        out["added"] = save_tables(out, params["results_dir"])
    return out


# =========================================================================== grid specs
class SpecError(ValueError):
    """A grid spec that cannot be run (reported before anything runs)."""


_SPEC_KEYS = {"name", "description", "notebook", "results_dir", "runs_dir", "defaults", "axes", "exclude"}


@dataclass
class GridSpec:
    """A parsed grid spec (see the module docstring for the YAML format)."""

    name: str
    notebook: Path
    results_dir: Path
    runs_dir: Path
    defaults: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)
    exclude: list = field(default_factory=list)
    description: str = ""
    source: str = ""


def _rel(p: Path) -> str:
    """Repo-relative path when inside the repository, else absolute."""
    p = Path(p).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(p)


def load_spec(spec) -> GridSpec:
    """Read a YAML grid spec (path or mapping); raises :class:`SpecError` when malformed."""
    import yaml
    source = ""
    if isinstance(spec, (str, Path)):
        source = str(spec)
        sp = Path(spec)
        if not sp.is_file():
            raise SpecError(f"grid spec {source}: no such file")
        try:
            spec = yaml.safe_load(sp.read_text())
        except yaml.YAMLError as err:
            raise SpecError(f"grid spec {source}: not valid YAML ({err})") from None
    where = f"grid spec {source}" if source else "grid spec"
    if not isinstance(spec, Mapping):
        raise SpecError(f"{where}: expected a mapping with keys {sorted(_SPEC_KEYS)}, got {type(spec).__name__}")
    extra = sorted(set(spec) - _SPEC_KEYS)
    if extra:
        raise SpecError(f"{where}: unknown key(s) {extra}; allowed: {sorted(_SPEC_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not _RUN_ID.match(name):
        raise SpecError(f"{where}: 'name' must be a simple name (letters, digits, '_', '.', '-'), got {name!r}")
    defaults = spec.get("defaults") or {}
    axes = spec.get("axes") or {}
    exclude = spec.get("exclude") or []
    if not isinstance(defaults, Mapping):
        raise SpecError(f"{where}: 'defaults' must be a mapping of parameter values, got {defaults!r}")
    if not isinstance(axes, Mapping):
        raise SpecError(f"{where}: 'axes' must be a mapping name -> list of values, got {axes!r}")
    for axis, values in axes.items():
        if isinstance(values, (str, Mapping)) or not isinstance(values, Sequence) or len(values) == 0:
            raise SpecError(f"{where}: axis {axis!r} must be a non-empty list of values, got {values!r}")
        if axis not in PARAMETERS and not all(isinstance(v, Mapping) for v in values):
            raise SpecError(f"{where}: axis {axis!r} is not a notebook parameter, so each of its values must be "
                            f"a mapping of parameters (e.g. {{model: vgg16, width: 0.25}}); got {values!r}")
    if not isinstance(exclude, list) or not all(isinstance(e, Mapping) and e for e in exclude):
        raise SpecError(f"{where}: 'exclude' must be a list of non-empty mappings parameter -> value")
    return GridSpec(
        name=name,
        notebook=_repo_path(spec.get("notebook") or NOTEBOOK),
        results_dir=_repo_path(spec.get("results_dir") or "data/results"),
        runs_dir=_repo_path(spec.get("runs_dir") or f"data/runs/{name}"),
        defaults=dict(defaults), axes=dict(axes), exclude=list(exclude),
        description=str(spec.get("description") or ""), source=source,
    )


def _notebook_parameters(notebook: Path) -> set[str]:
    import papermill as pm
    return set(pm.inspect_notebook(str(notebook)))


def expand(spec: GridSpec) -> list[dict]:
    """The spec's cells as complete, validated parameter dicts (``run_id`` etc. filled in).

    Raises :class:`SpecError` naming the cell for unknown parameter names (checked against
    the notebook's ``parameters`` cell), runner-owned names in the spec, bad values and
    duplicated run ids.
    """
    where = f"grid spec {spec.source or spec.name}"
    if not spec.notebook.is_file():
        raise SpecError(f"{where}: notebook {spec.notebook} not found")
    try:
        nb_params = _notebook_parameters(spec.notebook)
    except Exception as err:  # noqa: BLE001 - any failure to read the notebook is a spec error
        raise SpecError(f"{where}: cannot read the parameters of {spec.notebook} ({err})") from None
    names = list(spec.axes)
    combos = itertools.product(*(spec.axes[a] for a in names)) if names else [()]
    cells, seen = [], {}
    for combo in combos:
        cell = dict(spec.defaults)
        for axis, value in zip(names, combo):
            if axis in PARAMETERS:
                cell[axis] = value
            else:
                cell.update(value)
        if any(all(cell.get(k, PARAMETERS.get(k)) == v for k, v in ex.items()) for ex in spec.exclude):
            continue
        label = ", ".join(f"{a}={cell.get(a) if a in PARAMETERS else combo[i]}" for i, a in enumerate(names))
        label = f"cell ({label})" if label else "the cell"
        owned = sorted(set(cell) & set(RUNNER_PARAMETERS))
        if owned:
            raise SpecError(f"{where}, {label}: {owned} are set by the runner (grid name, run id, notebook path, "
                            f"results_dir from the spec's top level); remove them from defaults/axes")
        unknown = sorted(set(cell) - nb_params)
        if unknown:
            raise SpecError(f"{where}, {label}: unknown parameter(s) {unknown}; the notebook "
                            f"{_rel(spec.notebook)} takes {sorted(nb_params)}")
        cell["grid"] = spec.name
        cell["results_dir"] = _rel(spec.results_dir)
        try:
            params = validate_params(cell)
        except ValueError as err:
            raise SpecError(f"{where}, {label}: {err}") from None
        rid = params["run_id"]
        if rid in seen:
            raise SpecError(f"{where}: {label} and {seen[rid]} have the same run id {rid!r}")
        seen[rid] = label
        params["notebook_path"] = _rel(spec.runs_dir / f"{rid}.ipynb")
        cells.append(params)
    if not cells:
        raise SpecError(f"{where}: no cells left (axes empty or everything excluded)")
    return cells


# =========================================================================== execution
_KEEP_MIME = ("image/png", "text/plain", "text/markdown", "text/latex")
_MAX_STREAM = 20_000
_MAX_HTML = 50_000


def _collapse_cr(text: str) -> str:
    """What a terminal would show: for each line, the text after its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def strip_outputs(nb):
    """Keep an executed notebook small: collapse progress bars, cut long streams, keep only
    PNG / plain text / small HTML outputs, drop widget state. Modifies and returns ``nb``."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"] = _merge_streams(cell.get("outputs", []))
        for out in cell["outputs"]:
            if out.get("output_type") == "stream":
                lines = _collapse_cr(out.get("text", "")).split("\n")
                text = "\n".join(line for line in lines[:-1] if line.strip())
                text = text + "\n" if text else ""
                if lines[-1].strip():
                    text += lines[-1]
                out["text"] = _cut(text, _MAX_STREAM)
            elif out.get("output_type") in ("display_data", "execute_result"):
                data = out.get("data", {})
                for mime in list(data):
                    keep = mime in _KEEP_MIME or (mime == "text/html" and len(str(data[mime])) <= _MAX_HTML)
                    if not keep:
                        del data[mime]
                if "text/plain" in data:
                    data["text/plain"] = _cut(str(data["text/plain"]) if not isinstance(data["text/plain"], list)
                                              else "".join(data["text/plain"]), _MAX_STREAM)
        cell["outputs"] = [o for o in cell["outputs"] if o.get("output_type") != "stream" or o.get("text")]
    return nb


def _merge_streams(outputs: list) -> list:
    """Join consecutive outputs of one stream. On stderr, a piece that follows an unfinished
    line overwrites it, as the carriage return tqdm starts each refresh with would."""
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            text = prev.get("text", "")
            if out.get("name") == "stderr" and text and not text.endswith("\n"):
                text = text[: text.rfind("\n") + 1]
            prev["text"] = text + out.get("text", "")
        else:
            merged.append(out)
    return merged


def _execute(notebook: Path, output: Path, params: Mapping, *, log_output: bool = False) -> None:
    """Run one cell with papermill (kernel python3, cwd = repo root); trim the output.
    ``log_output`` echoes the notebook's output (e.g. the epoch lines) to the terminal."""
    import nbformat
    import papermill as pm
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=dict(params), kernel_name="python3",
                            cwd=str(REPO_ROOT), progress_bar=False, log_output=log_output)
    finally:
        if output.exists():
            nb = nbformat.read(str(output), as_version=4)
            nbformat.write(strip_outputs(nb), str(output))


_FAILURE_COLUMNS = ["run_id", "date", "error", "notebook"]


def _failures_path(spec: GridSpec) -> Path:
    return spec.runs_dir / "failures.csv"


def _load_failures(spec: GridSpec) -> pd.DataFrame:
    p = _failures_path(spec)
    if not p.exists():
        return pd.DataFrame(columns=_FAILURE_COLUMNS, dtype=object)
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    return df[_FAILURE_COLUMNS]


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:2000]


def _matches(run_id: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(run_id, pattern)
    return pattern in run_id


def run_grid(spec, *, only: str | None = None, retry_failed: bool = False, dry_run: bool = False,
             log_output: bool = False, out=None) -> int:
    """Run (or list, ``dry_run``) a grid; returns the exit status (see module docstring)."""
    from tqdm.auto import tqdm
    out = out if out is not None else sys.stdout
    spec = spec if isinstance(spec, GridSpec) else load_spec(spec)
    cells = [c for c in expand(spec) if _matches(c["run_id"], only)]
    if not cells:
        print(f"{spec.name}: no cell matches --only {only!r}; its run ids are "
              f"{', '.join(c['run_id'] for c in expand(spec)[:3])}, ...", file=out)
        return 2
    done = set(results.load("runs", spec.results_dir)["run_id"])
    failures = _load_failures(spec)
    failed_before = set(failures["run_id"])

    status = {}
    for c in cells:
        rid = c["run_id"]
        status[rid] = "done" if rid in done else ("failed" if rid in failed_before and not retry_failed else "todo")
    todo = [c for c in cells if status[c["run_id"]] == "todo"]
    n_done = sum(s == "done" for s in status.values())
    n_failed_before = sum(s == "failed" for s in status.values())
    print(f"{spec.name}: {len(cells)} cells: {n_done} done, {n_failed_before} failed before"
          f"{' (use --retry-failed to rerun)' if n_failed_before else ''}, {len(todo)} to run; "
          f"results in {_rel(spec.results_dir)}, notebooks in {_rel(spec.runs_dir)}", file=out)
    if dry_run:
        for c in cells:
            print(f"  [{status[c['run_id']]:>6}] {c['run_id']}", file=out)
        return 0

    failed_now, skipped = [], []
    bar = tqdm(todo, desc=spec.name, unit="cell", file=out, dynamic_ncols=True, disable=not todo)
    for i, cell in enumerate(bar, 1):
        rid = cell["run_id"]
        bar.set_postfix_str(rid)
        claim = _claim(spec, rid)
        if claim is None:
            skipped.append(rid)
            tqdm.write(f"[{i}/{len(todo)}] skipped {rid}: another runner holds it", file=out)
            continue
        try:
            if rid in set(results.load("runs", spec.results_dir)["run_id"]):
                skipped.append(rid)
                tqdm.write(f"[{i}/{len(todo)}] skipped {rid}: finished by another runner", file=out)
                continue
            failed = _run_cell(spec, cell, i, len(todo), log_output, out)
        finally:
            _release(claim)
        if failed:
            failed_now.append(rid)
    bar.close()
    n_bad = len(failed_now) + n_failed_before
    print(f"{spec.name}: {len(todo) - len(failed_now) - len(skipped)} ran, {len(failed_now)} failed now"
          f"{f', {len(skipped)} left to other runners' if skipped else ''}"
          f"{f', {n_failed_before} failed before (skipped)' if n_failed_before else ''}"
          f"{f'; see {_rel(_failures_path(spec))}' if n_bad else ''}", file=out)
    return 1 if n_bad else 0


def _claim(spec: GridSpec, run_id: str):
    """Claim a cell for this process: an exclusive, non-blocking ``flock`` on
    ``runs_dir/.claims/<run_id>.lock`` (returns the open file, or None when another runner
    holds it). The kernel releases the lock when the process dies, so a crashed runner's
    claim never outlives it; ``flock`` is local to one machine (on a shared filesystem
    use one runner per machine and disjoint ``--only`` patterns)."""
    import fcntl
    d = spec.runs_dir / ".claims"
    d.mkdir(parents=True, exist_ok=True)
    fh = open(d / f"{run_id}.lock", "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def _release(fh) -> None:
    import fcntl
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def _run_cell(spec: GridSpec, cell: Mapping, i: int, n: int, log_output: bool, out) -> bool:
    """Execute one claimed cell; record or clear its failure in ``failures.csv`` (read and
    rewritten under the table lock, so concurrent runners keep each other's rows).
    Returns True when the cell failed."""
    from tqdm.auto import tqdm
    rid = cell["run_id"]
    tqdm.write(f"[{i}/{n}] running {rid}", file=out)
    t0 = time.perf_counter()
    output = spec.runs_dir / f"{rid}.ipynb"
    error = None
    try:
        if log_output:
            _execute(spec.notebook, output, cell, log_output=True)
        else:
            _execute(spec.notebook, output, cell)
        if rid not in set(results.load("runs", spec.results_dir)["run_id"]):
            raise RuntimeError(f"the notebook ran to the end but wrote no row for {rid} to "
                               f"{_rel(results.path('runs', spec.results_dir))}")
    except Exception as err:  # noqa: BLE001 - a failing cell must not stop the grid
        error = _error_text(err)
        tqdm.write(f"[{i}/{n}] FAILED {rid} after {time.perf_counter() - t0:.0f} s: {error}", file=out)
    else:
        tqdm.write(f"[{i}/{n}] done {rid} in {time.perf_counter() - t0:.0f} s", file=out)
    path = _failures_path(spec)
    with results._locked(path):
        failures = _load_failures(spec)
        known = rid in set(failures["run_id"])
        failures = failures[failures["run_id"] != rid]
        if error is not None:
            row = {"run_id": rid, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "error": error, "notebook": cell["notebook_path"]}
            failures = pd.concat([failures, pd.DataFrame([row], columns=_FAILURE_COLUMNS)], ignore_index=True)
            results.atomic_write_csv(path, failures)
        elif known:
            if len(failures):
                results.atomic_write_csv(path, failures)
            else:
                path.unlink()
    return error is not None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m bridgeout.grid SPEC [--dry-run] [--only PATTERN] [--retry-failed] [--log-output]``."""
    ap = argparse.ArgumentParser(prog="python -m bridgeout.grid", description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="grid spec YAML (e.g. notebooks/grids/mnist-teaching.yaml)")
    ap.add_argument("--dry-run", action="store_true", help="list the cells and their status, run nothing")
    ap.add_argument("--only", metavar="PATTERN", help="run only cells whose run id contains PATTERN "
                    "(or matches it as a glob when it has * ? [)")
    ap.add_argument("--retry-failed", action="store_true", help="rerun cells recorded in failures.csv")
    ap.add_argument("--log-output", action="store_true", help="echo each notebook's output (training "
                    "progress) to the terminal while it runs")
    args = ap.parse_args(argv)
    import signal

    def _terminate(signum, frame):  # SIGTERM ends the runner like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_grid(args.spec, only=args.only, retry_failed=args.retry_failed, dry_run=args.dry_run,
                        log_output=args.log_output)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume (finished cells are kept, the "
              "interrupted one starts again from its last checkpoint)", file=sys.stderr)
        return 130
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # a corrupt result table
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
