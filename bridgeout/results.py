"""Result tables: schema, validation, atomic idempotent appends and provenance.

Every experiment run writes rows into tidy CSV tables in ``data/results/`` (one
observation per row), joined by ``run_id``:

* ``runs.csv`` -- one row per *finished* run: its parameters, summary accuracies and the
  provenance of the code and machine that produced it (:data:`RUNS_SCHEMA`);
* ``pruning.csv`` -- one row per (run, criterion, scope, mode, pruned fraction): what
  :func:`bridgeout.prune.sweep` measured (:data:`PRUNING_SCHEMA`);
* ``history.csv`` -- one row per (run, epoch): the training curve from
  :func:`bridgeout.train.fit` (:data:`HISTORY_SCHEMA`);
* ``filters.csv.gz`` -- one row per (run, conv layer, output filter) of the trained network:
  filter norm and the following BatchNorm's scale and shift (:data:`FILTERS_SCHEMA`). It is
  the one table stored gzip-compressed (:data:`COMPRESSED`): it holds about a thousand rows
  per run, and a plain CSV of them passes several MiB. The gzip stream is written with
  mtime 0 and no file name, so equal tables give equal bytes; a plain ``filters.csv`` left
  by an older version is read in its place and replaced by the compressed table at the next
  append;
* ``latency.csv`` -- one row per (run, criterion, fraction removed, runtime, batch size,
  threads): the latency of the physically pruned network measured by a later pass on a quiet
  machine, in PyTorch and in ONNX Runtime (:data:`LATENCY_SCHEMA`).

A later pruning pass (``notebooks/prune_again.ipynb``) adds ``pruning`` rows to runs already
in the tables (another criterion, fine-tuning) with ``append(..., keyed=True)``; its rows
name the executed notebook in ``pruning.notebook``.

The schemas are dicts ``column -> (dtype, description)`` with dtype one of ``"str"``,
``"int"``, ``"float"`` or ``"bool"``; ``data/results/README.md`` documents them (and a test
checks that the README and the dicts agree).

:func:`load` validates a table and refuses it with a :class:`ValueError` naming the file,
the CSV line and the column when a column is missing or unexpected, a value has the
wrong type or is out of range (accuracies and fractions outside [0, 1], unknown model /
regularizer / dataset names) or a key is duplicated (``runs``: ``run_id``; ``pruning``:
``run_id, criterion, scope, mode, fraction, recalibrate_bn, finetune_epochs``; ``history``: ``run_id, epoch``; ``filters``: ``run_id, layer, filter``; ``latency``:
``run_id, criterion, fraction, runtime, batch_size, threads``).

:func:`append` is *atomic*: the new table is written to a temporary file in the same
directory, flushed and ``fsync``-ed, then moved over the old one with :func:`os.replace`
(atomic on POSIX), under an exclusive lock file so that concurrent appenders do not lose
each other's rows. A crash at any point leaves either the old or the new table, never a
half-written one. It is *idempotent*: rows whose ``run_id`` is already in the table are
not added again.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import gzip
import hashlib
import io
import json
import math
import os
import platform
import re
import subprocess
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ._validate import check_choice

__all__ = [
    "PRUNERS", "RUNS_SCHEMA", "PRUNING_SCHEMA", "HISTORY_SCHEMA", "FILTERS_SCHEMA", "LATENCY_SCHEMA", "SCHEMAS", "KEYS", "TABLES", "COMPRESSED",
    "REPO_ROOT", "default_root", "path", "empty", "validate", "load", "append",
    "provenance", "make_run_id", "load_joined", "atomic_write_csv", "merge",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

RUNS_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("str", "Unique, readable id of the run (`make_run_id`); joins the four tables."),
    "grid": ("str", "Name of the grid spec that launched the run (empty when run by hand)."),
    "model": ("str", "Architecture name (`bridgeout.models.MODELS`)."),
    "regularizer": ("str", "Regularizer (`bridgeout.models.REGULARIZERS`)."),
    "p": ("float", "Drop probability p in [0, 1) (used by bridgeout / dropout / sparseout / dropconnect)."),
    "q": ("float", "Bridge exponent q > 0 (bridgeout / sparseout)."),
    "target_fraction": ("float", "Targeted fraction in (0, 1] of kernels (bridgeout) or channels (dropout)."),
    "signed": ("bool", "Whether the bridgeout noise carries the sign(W) factor."),
    "lam": ("float", "Strength of the slimming / group_lasso penalty in the training loss (empty for other regularizers)."),
    "dataset": ("str", "Dataset name (`bridgeout.data.DATASETS`)."),
    "protocol": ("str", "Training protocol (`paper`, `fast`, `cpu` or `smoke`, see `bridgeout.train`)."),
    "epochs": ("int", "Planned number of epochs (the protocol's, or the override)."),
    "epochs_done": ("int", "Epochs actually trained."),
    "width": ("float", "Channel-width multiplier of the model (1 = published width)."),
    "n_train": ("int", "Number of training images used."),
    "n_test": ("int", "Number of test images used (accuracies below are on these)."),
    "seed": ("int", "Seed of initialisation, data order, augmentation and noise."),
    "select": ("str", "Which weights were pruned: `final` epoch or `best_test` (best test accuracy, as published)."),
    "quirks": ("str", "Published-code quirks switched on (`bridgeout.quirks.QUIRKS`, `;`-separated; empty: none)."),
    "final_test_acc": ("float", "Test accuracy in [0, 1] after the last epoch."),
    "best_test_acc": ("float", "Best test accuracy in [0, 1] over the epochs."),
    "best_epoch": ("int", "Epoch (1-based) of the best test accuracy."),
    "wall_time_s": ("float", "Wall-clock training time in seconds."),
    "device": ("str", "Torch device type used (`cpu`, `cuda`, ...)."),
    "device_name": ("str", "Human-readable device name (GPU model or CPU model)."),
    "torch_version": ("str", "`torch.__version__`."),
    "cuda_version": ("str", "`torch.version.cuda` (empty for CPU-only builds)."),
    "git_commit": ("str", "Commit of the code (`git rev-parse HEAD`; empty when unknown)."),
    "git_dirty": ("bool", "Whether tracked code differed from the commit (data/ excluded)."),
    "date": ("str", "UTC time the run finished, ISO 8601 (`YYYY-MM-DDTHH:MM:SSZ`)."),
    "notebook": ("str", "Path (repo-relative where possible) of the executed notebook that produced the run."),
    "precision": ("str", "Training precision (`fp32`, or `bf16`: autocast with BatchNorm and loss in fp32; "
                         "`bridgeout.train.PRECISIONS`). Evaluation is always fp32. Rows older than the column: fp32."),
    "weights": ("str", "Repo-relative path of the run's pruned (selected) weights, fp32 safetensors "
                       "(`bridgeout.weights`); empty when not kept."),
    "weights_sha256": ("str", "SHA-256 of that file (checked when it is loaded)."),
    "weights_bytes": ("int", "Size of that file in bytes."),
}

PRUNING_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("str", "Run that was pruned (`runs.run_id`)."),
    "criterion": ("str", "Filter ranking criterion (`bridgeout.prune.CRITERIA`, e.g. `l2`)."),
    "scope": ("str", "Where the fraction applies (`layer`: in every layer; `global`: one ranking over all layers; `only:<k>`: the k-th prunable conv alone)."),
    "mode": ("str", "`mask`: filters zeroed; `remove`: filters physically removed."),
    "fraction": ("float", "Fraction of filters pruned, in [0, 1)."),
    "test_acc": ("float", "Test accuracy in [0, 1] of the pruned network."),
    "test_loss": ("float", "Mean test cross-entropy of the pruned network."),
    "params": ("int", "Parameter count of the pruned network (as stored)."),
    "params_effective": ("int", "Parameters that are not pruned (non-zero structure)."),
    "flops": ("int", "Forward FLOPs for one image (as stored, dense)."),
    "flops_effective": ("int", "Forward FLOPs that remain after pruning."),
    "latency_b1_ms": ("float", "Median forward latency, batch 1, milliseconds (NaN for `mask` or when not measured)."),
    "latency_b128_ms": ("float", "Median forward latency, batch 128, milliseconds (NaN for `mask` or when not measured)."),
    "recalibrate_bn": ("bool", "Whether BatchNorm statistics were re-estimated after pruning."),
    "finetune_epochs": ("int", "Epochs of fine-tuning after pruning (0 = one shot)."),
    "prune_s": ("float", "Wall-clock seconds spent pruning for this row."),
    "adjust_s": ("float", "Wall-clock seconds of BatchNorm re-estimation and fine-tuning (0 when none)."),
    "eval_s": ("float", "Wall-clock seconds of the test-set evaluation (shared by fraction-0 rows)."),
    "cost_s": ("float", "Wall-clock seconds measuring FLOPs, parameters and latency."),
    "notebook": ("str", "Executed notebook of a later pruning pass that produced the row "
                        "(`notebooks/prune_again.ipynb`); empty: the run's own notebook (`runs.notebook`)."),
    "pruner": ("str", "Which pruner (`PRUNERS`): `plain`, the filters alone zeroed or removed (every row "
                      "written before this column); `published`, the authors' code, which in `mask` mode also "
                      "zeroes the smallest-|gamma| fraction of the BatchNorm scales it reaches "
                      "(`bridgeout.quirks.published_bn_targets`); `mean`, mean replacement: each zeroed filter's "
                      "channel keeps its mean BatchNorm output (`bridgeout.repair.keep_channel_means_`)."),
}

#: The pruners a ``pruning`` row may name (its ``pruner`` column, part of the key).
PRUNERS = ("plain", "published", "mean")

HISTORY_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("str", "Run (`runs.run_id`)."),
    "epoch": ("int", "Epoch, 1-based."),
    "lr": ("float", "Learning rate used during the epoch."),
    "train_loss": ("float", "Mean training loss over the epoch."),
    "train_acc": ("float", "Training accuracy in [0, 1] over the epoch (with augmentation and noise)."),
    "test_loss": ("float", "Test loss after the epoch (NaN when not evaluated)."),
    "test_acc": ("float", "Test accuracy in [0, 1] after the epoch (NaN when not evaluated)."),
    "seconds": ("float", "Wall-clock seconds of the epoch."),
    "images_per_s": ("float", "Training throughput, images per second."),
}

FILTERS_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("str", "Run (`runs.run_id`) whose final (selected) weights are described."),
    "layer": ("str", "Qualified name of the Conv2d (e.g. `features.0.conv`)."),
    "filter": ("int", "Output-filter index in the layer, 0-based."),
    "norm": ("float", "L2 norm of the filter's weights (the published pruning criterion)."),
    "gamma": ("float", "Scale of the BatchNorm fed by this conv, for this channel (empty when none)."),
    "beta": ("float", "Shift of that BatchNorm for this channel (empty when none)."),
    "bn_mean": ("float", "Running mean of that BatchNorm for this channel: the statistic it normalizes "
                         "with in eval mode (empty when none, or for rows written before this column)."),
    "bn_var": ("float", "Running variance of that BatchNorm for this channel (empty likewise)."),
}

LATENCY_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("str", "Run whose trained network was pruned and timed (`runs.run_id`)."),
    "criterion": ("str", "Filter ranking criterion of the pruning (`bridgeout.prune.CRITERIA`)."),
    "fraction": ("float", "Fraction of filters removed per layer, in [0, 1) (0: the unpruned network)."),
    "runtime": ("str", "`torch` (PyTorch eager, float32) or `onnxruntime` (the network exported to ONNX, "
                       "CPU execution provider)."),
    "batch_size": ("int", "Images per forward pass."),
    "threads": ("int", "Intra-op threads (`torch.set_num_threads` / ONNX Runtime's `intra_op_num_threads`)."),
    "latency_ms": ("float", "Median wall time of one forward pass, milliseconds."),
    "repeats": ("int", "Timed passes the median is taken over (after untimed warm-up passes)."),
    "flops": ("int", "Forward FLOPs for one image of the removed (smaller, dense) network."),
    "params": ("int", "Parameters of the removed network."),
    "device_name": ("str", "CPU (or GPU) model the time was measured on."),
    "runtime_version": ("str", "`torch.__version__` or `onnxruntime.__version__`."),
    "git_commit": ("str", "Commit of the code that measured it."),
    "date": ("str", "UTC time of the measurement, ISO 8601."),
    "notebook": ("str", "Executed notebook that measured it."),
}

SCHEMAS = {"runs": RUNS_SCHEMA, "pruning": PRUNING_SCHEMA, "history": HISTORY_SCHEMA,
           "filters": FILTERS_SCHEMA, "latency": LATENCY_SCHEMA}
TABLES = tuple(SCHEMAS)
COMPRESSED = frozenset({"filters"})   # tables stored as ``<table>.csv.gz``
KEYS = {
    "runs": ("run_id",),
    "pruning": ("run_id", "criterion", "scope", "mode", "fraction", "recalibrate_bn", "finetune_epochs", "pruner"),
    "history": ("run_id", "epoch"),
    "filters": ("run_id", "layer", "filter"),
    "latency": ("run_id", "criterion", "fraction", "runtime", "batch_size", "threads"),
}

#: Nullable columns added after tables were first written: a table without them loads with
#: them empty (and is written back with them on the next append).
LATER_COLUMNS = {"runs": ("lam", "quirks", "precision", "weights", "weights_sha256", "weights_bytes"),
                 "pruning": ("notebook", "pruner"), "filters": ("bn_mean", "bn_var")}
#: The value a later column takes in rows written before it existed (default: empty).
LATER_VALUES = {"runs": {"precision": "fp32"}, "pruning": {"pruner": "plain"}}

# Columns that may be empty / NaN. Everything else is required.
_NULLABLE = {
    "runs": {"grid", "cuda_version", "git_commit", "device_name", "notebook", "best_test_acc", "quirks", "lam",
             "weights", "weights_sha256", "weights_bytes"},
    "pruning": {"test_loss", "latency_b1_ms", "latency_b128_ms", "params_effective", "flops",
                "flops_effective", "params",
                "prune_s", "adjust_s", "eval_s", "cost_s", "notebook"},
    "history": {"lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "images_per_s"},
    "filters": {"gamma", "beta", "bn_mean", "bn_var"},
    "latency": {"git_commit", "notebook"},
}
# Closed [low, high] ranges, or (low, high, "open_high").
_UNIT = (0.0, 1.0)
_RANGES = {
    "runs": {"lam": (0.0, math.inf, "open_low"), "p": (0.0, 1.0, "open_high"), "q": (0.0, math.inf, "open_low"),
             "target_fraction": (0.0, 1.0, "open_low"), "final_test_acc": _UNIT, "best_test_acc": _UNIT,
             "epochs": (0, math.inf), "epochs_done": (0, math.inf), "width": (0.0, math.inf, "open_low"),
             "n_train": (1, math.inf), "n_test": (1, math.inf), "seed": (0, math.inf),
             "best_epoch": (0, math.inf), "wall_time_s": (0.0, math.inf), "weights_bytes": (1, math.inf)},
    "pruning": {"fraction": (0.0, 1.0, "open_high"), "test_acc": _UNIT, "params": (0, math.inf),
                "params_effective": (0, math.inf), "flops": (0, math.inf), "flops_effective": (0, math.inf),
                "latency_b1_ms": (0.0, math.inf), "latency_b128_ms": (0.0, math.inf),
                "finetune_epochs": (0, math.inf), "test_loss": (0.0, math.inf),
                "prune_s": (0.0, math.inf), "adjust_s": (0.0, math.inf), "eval_s": (0.0, math.inf),
                "cost_s": (0.0, math.inf)},
    "history": {"epoch": (1, math.inf), "train_acc": _UNIT, "test_acc": _UNIT, "lr": (0.0, math.inf),
                "seconds": (0.0, math.inf), "images_per_s": (0.0, math.inf),
                "train_loss": (0.0, math.inf), "test_loss": (0.0, math.inf)},
    "filters": {"filter": (0, math.inf), "norm": (0.0, math.inf), "bn_var": (0.0, math.inf)},
    "latency": {"fraction": (0.0, 1.0, "open_high"), "batch_size": (1, math.inf), "threads": (1, math.inf),
                "latency_ms": (0.0, math.inf, "open_low"), "repeats": (1, math.inf), "flops": (0, math.inf),
                "params": (0, math.inf)},
}
#: Text columns with a fixed format: (pattern, what it must be).
_FORMATS = {
    "date": (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"), "a UTC date YYYY-MM-DDTHH:MM:SSZ"),
    "run_id": (re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"), "a run id (letters, digits, '_', '.', '-')"),
    "git_commit": (re.compile(r"^[0-9a-f]{7,40}$"), "a git commit (7-40 lowercase hex digits, or empty)"),
    "notebook": (re.compile(r"^[^\x00-\x1f\x7f]*$"), "a path (no control characters)"),
    "weights": (re.compile(r"^[^\x00-\x1f\x7f]*\.safetensors$"), "a path to a .safetensors file"),
    "weights_sha256": (re.compile(r"^[0-9a-f]{64}$"), "a SHA-256 (64 lowercase hex digits)"),
}
_PROTOCOL_NAMES = ("paper", "fast", "smoke")
_SELECT_NAMES = ("final", "best_test")
_MODE_NAMES = ("mask", "remove")
_SCOPE_NAMES = ("layer", "global")
#: Runtimes of ``latency.runtime``.
RUNTIMES = ("torch", "onnxruntime")


def _choices() -> dict[str, dict[str, tuple[str, ...]]]:
    """Known names per table/column, taken from the modules that define them."""
    from . import data, models
    try:
        from . import train
        select, protocols, precisions = tuple(train.SELECT), tuple(train.PROTOCOLS), tuple(train.PRECISIONS)
    except ImportError:  # pragma: no cover - only while train.py is missing
        select, protocols, precisions = _SELECT_NAMES, _PROTOCOL_NAMES, ("fp32", "bf16")
    out = {
        "runs": {"model": tuple(models.MODELS), "regularizer": tuple(models.REGULARIZERS),
                 "dataset": tuple(data.DATASETS), "protocol": protocols, "select": select,
                 "precision": precisions},
        "pruning": {"mode": _MODE_NAMES, "scope": _SCOPE_NAMES, "pruner": PRUNERS},
        "latency": {"runtime": RUNTIMES},
    }
    try:  # prune.py defines the authoritative lists; fall back to the contract's.
        from . import prune
        out["pruning"] = {"mode": tuple(prune.MODES), "scope": prune.SCOPE_NAMES,
                          "criterion": tuple(prune.CRITERIA), "pruner": PRUNERS}
        out["latency"]["criterion"] = tuple(prune.CRITERIA)
    except ImportError:  # pragma: no cover - only while prune.py is missing
        pass
    return out


# --------------------------------------------------------------------------- paths
def default_root() -> Path:
    """``$BRIDGEOUT_RESULTS`` when set, else ``<repo>/data/results``."""
    env = os.environ.get("BRIDGEOUT_RESULTS")
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "results"


def _check_table(table: str) -> str:
    return check_choice("table", table, TABLES)


def path(table: str, root=None) -> Path:
    """Path of ``<root>/<table>.csv`` (``<table>.csv.gz`` for the tables in
    :data:`COMPRESSED`); root defaults to :func:`default_root`."""
    _check_table(table)
    suffix = ".csv.gz" if table in COMPRESSED else ".csv"
    return Path(root if root is not None else default_root()) / f"{table}{suffix}"


def _legacy_path(table: str, root=None) -> Path | None:
    """The plain ``<table>.csv`` an older version wrote for a table now compressed."""
    return path(table, root).with_suffix("") if table in COMPRESSED else None


def _existing_path(table: str, root=None) -> Path:
    """Where ``table`` is read from: its path, else an older plain CSV of it if one exists."""
    p = path(table, root)
    legacy = _legacy_path(table, root)
    return legacy if not p.exists() and legacy is not None and legacy.exists() else p


def empty(table: str) -> pd.DataFrame:
    """An empty table with the schema's columns and dtypes."""
    schema = SCHEMAS[_check_table(table)]
    return pd.DataFrame({c: pd.Series([], dtype=_PANDAS_DTYPE[d]) for c, (d, _) in schema.items()})


_PANDAS_DTYPE = {"str": object, "int": "Int64", "float": "float64", "bool": "boolean"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


# --------------------------------------------------------------------------- validation
def _is_missing(v) -> bool:
    if v is None or v is pd.NA:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v == ""


def _coerce_value(v, dtype: str):
    """Convert one cell to ``dtype``; raises ``ValueError`` / ``TypeError`` when it cannot."""
    if dtype == "str":
        if isinstance(v, (str, np.str_)):
            return str(v)
        if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)):
            return str(v)
        raise TypeError(f"expected text, got {type(v).__name__}")
    if dtype == "bool":
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)) and int(v) in (0, 1):
            return bool(v)
        if isinstance(v, (float, np.floating)) and float(v) in (0.0, 1.0):
            return bool(v)
        s = str(v).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError("expected a boolean (True/False)")
    if dtype == "int":
        if isinstance(v, (bool, np.bool_)):
            raise TypeError("expected an integer, got a boolean")
        if isinstance(v, (int, np.integer)):
            return int(v)
        f = float(v)
        if not math.isfinite(f) or f != int(f):
            raise ValueError("expected an integer")
        return int(f)
    if dtype == "float":
        if isinstance(v, (bool, np.bool_)):
            raise TypeError("expected a number, got a boolean")
        return float(v)
    raise AssertionError(dtype)  # pragma: no cover


def validate(table: str, df: pd.DataFrame, *, source: str | None = None, first_line: int = 2) -> pd.DataFrame:
    """Check ``df`` against the schema of ``table`` and return a typed copy.

    Columns of :data:`LATER_COLUMNS` that ``df`` lacks (rows written before they existed)
    take their :data:`LATER_VALUES` value (default empty), and so do empty cells of such a
    column that has a value (a table padded with empty cells). Raises ``ValueError`` naming
    ``source`` (a file name or description), the row (as the
    CSV line number, ``first_line`` for the first data row) and the column for: missing or
    unexpected columns, values of the wrong type, missing required values, values out of
    range or not among the known names, and duplicated keys.
    """
    _check_table(table)
    schema = SCHEMAS[table]
    where = source or f"{table} table"
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    later = [c for c in LATER_COLUMNS.get(table, ()) if c not in df.columns]
    if later:                # rows written before these columns existed: their implicit values
        df = df.copy()
        for col in later:
            df[col] = LATER_VALUES.get(table, {}).get(col)
        df = df[[c for c in schema if c in df.columns] + [c for c in df.columns if c not in schema]]
    implicit = {c: v for c, v in LATER_VALUES.get(table, {}).items() if c in df.columns and c not in later}
    if implicit and any(df[c].map(_is_missing).any() for c in implicit):
        df = df.copy()
        for col, v in implicit.items():
            df[col] = [v if _is_missing(x) else x for x in df[col].tolist()]
    cols = list(df.columns)
    missing = [c for c in schema if c not in cols]
    extra = [c for c in cols if c not in schema]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise ValueError(f"{where}: {'; '.join(parts)}; the {table} schema has columns {list(schema)}")
    dup_cols = sorted({c for c in cols if cols.count(c) > 1})
    if dup_cols:
        raise ValueError(f"{where}: duplicated column(s) {dup_cols}")

    nullable = _NULLABLE[table]
    ranges = _RANGES[table]
    choices = _choices().get(table, {})
    out = {}
    for col, (dtype, _) in schema.items():
        values = []
        for i, v in enumerate(df[col].tolist()):
            line = first_line + i
            if _is_missing(v):
                if col not in nullable:
                    raise ValueError(f"{where}, line {line}, column {col!r}: value is missing (required)")
                values.append("" if dtype == "str" else None)
                continue
            try:
                x = _coerce_value(v, dtype)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}, line {line}, column {col!r}: bad value {v!r} "
                                 f"({err}; the column's dtype is {dtype})") from None
            if dtype == "float" and math.isnan(x):
                if col not in nullable:
                    raise ValueError(f"{where}, line {line}, column {col!r}: value is NaN (required)")
            elif col in ranges:
                lo, hi, *kind = ranges[col]
                kind = kind[0] if kind else "closed"
                ok = (lo < x if kind == "open_low" else lo <= x) and (x < hi if kind == "open_high" else x <= hi)
                if not ok:
                    lb = "(" if kind == "open_low" else "["
                    rb = ")" if kind == "open_high" or math.isinf(hi) else "]"
                    raise ValueError(f"{where}, line {line}, column {col!r}: value {v!r} out of range; "
                                     f"allowed {lb}{lo}, {hi}{rb}")
            if col in choices and x not in choices[col]:
                raise ValueError(f"{where}, line {line}, column {col!r}: unknown name {v!r}; "
                                 f"known: {', '.join(map(repr, choices[col]))}")
            if col in _FORMATS and not _FORMATS[col][0].match(x):
                raise ValueError(f"{where}, line {line}, column {col!r}: {v!r} is not {_FORMATS[col][1]}")
            values.append(x)
        out[col] = pd.Series(values, dtype=_PANDAS_DTYPE[dtype], index=df.index)
    typed = pd.DataFrame(out, index=df.index).reset_index(drop=True)

    key = list(KEYS[table])
    dup = typed.duplicated(subset=key, keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((typed[key] == typed.loc[i, key]).all(axis=1).to_numpy())[0])
        shown = ", ".join(f"{k}={typed.loc[i, k]!r}" for k in key)
        raise ValueError(f"{where}, line {first_line + i}, column {key[-1]!r}: duplicated key ({shown}); "
                         f"first seen on line {first_line + first}")
    return typed


def load(table: str, root=None) -> pd.DataFrame:
    """Read and validate a table (the file :func:`path` names); an absent file is an empty table.

    ``table`` is one of :data:`TABLES`; ``root`` defaults to
    :func:`default_root`. Raises ``ValueError`` (file, line, column) on malformed content.
    """
    p = _existing_path(table, root)
    if not p.exists():
        return empty(table)
    if p.suffix == ".gz":              # decompressed once, checked, then parsed from memory
        source = io.BytesIO(_checked_gzip_text(p))
    else:
        _check_complete(p)
        source = p
    try:
        raw = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{p}: not a readable CSV table ({err})") from None
    raw = raw.astype(object).where(raw.notna(), None)
    return validate(table, raw, source=str(p))   # fills columns added later (LATER_COLUMNS)


def _check_complete(p: Path) -> None:
    """Refuse a table whose last line is cut: every table this module writes ends with a
    newline, so a file that does not was truncated by something else (a full disk, a copy
    interrupted); reading it would silently drop or mangle the last row, and the next append
    would make that permanent."""
    if p.stat().st_size == 0:
        return
    with open(p, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        if last != b"\n":
            fh.seek(0)
            n = fh.read().count(b"\n") + 1
            raise ValueError(f"{p}, line {n}: the last line is incomplete (the file does not end with a "
                             f"newline): it was cut while being written. Restore the file (e.g. "
                             f"`git checkout -- {p.name}` in its folder) or delete that line; nothing "
                             f"was changed")


def _checked_gzip_text(p: Path) -> bytes:
    """The text of a gzip table, refused as :func:`_check_complete` refuses a plain one: the
    stream must end with its trailer and the text with a newline."""
    try:
        with gzip.open(p, "rb") as fh:
            text = fh.read()
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{p}: not a complete gzip file ({err}): it was cut while being written or is "
                         f"not gzip. Restore the file (e.g. `git checkout -- {p.name}` in its folder); "
                         f"nothing was changed") from None
    if text and not text.endswith(b"\n"):
        n = text.count(b"\n") + 1
        raise ValueError(f"{p}, line {n}: the last line is incomplete (the table "
                         f"does not end with a newline). Restore the file (e.g. `git checkout -- "
                         f"{p.name}` in its folder); nothing was changed")
    return text


# --------------------------------------------------------------------------- writing
@contextlib.contextmanager
def _locked(target: Path):
    """Exclusive advisory lock on ``<target>.lock`` (held while reading + replacing)."""
    lock = target.with_name(f".{target.name}.lock")
    with open(lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _format_for_csv(table: str, df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col, (dtype, _) in SCHEMAS[table].items():
        if dtype == "float":
            out[col] = [("" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v)))
                        for v in out[col].astype(object).where(out[col].notna(), None)]
        elif dtype in ("int", "bool"):
            out[col] = ["" if v is None or v is pd.NA else str(v)
                        for v in out[col].astype(object).where(out[col].notna(), None)]
    return out


def atomic_write_csv(target, df: pd.DataFrame) -> None:
    """Write ``df`` to ``target`` atomically: temp file in the same directory, fsync, os.replace.

    A target named ``*.gz`` is written gzip-compressed, reproducibly (mtime 0, no file name in
    the header): the same table gives the same bytes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            if target.suffix == ".gz":
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
                    gz.write(df.to_csv(index=False, lineterminator="\n").encode("utf-8"))
            else:
                raw.write(df.to_csv(index=False, lineterminator="\n").encode("utf-8"))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def append(table: str, df: pd.DataFrame, root=None, *, replace: bool = False, keyed: bool = False) -> int:
    """Append the rows of ``df`` to ``<root>/<table>.csv``; return how many were added.

    The new rows are validated first (nothing is written if they are malformed). Rows
    whose ``run_id`` is already in the table are skipped (idempotent), unless
    ``replace=True``, in which case the table's rows of those run ids are replaced by the
    new ones (used to overwrite rows left by a run that crashed before finishing), or
    ``keyed=True``, in which case only rows whose whole key (:data:`KEYS`) is already there
    are skipped (a later pass adding rows to runs already in the table, e.g. another
    pruning criterion). The write is atomic and serialised by a lock file (see the module
    docstring).
    """
    if replace and keyed:
        raise ValueError("append: replace=True and keyed=True exclude each other (replace drops a run's "
                         "rows, keyed adds to them); pass one")
    _check_table(table)
    new = validate(table, df, source=f"new {table} rows")
    target = path(table, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        old = load(table, root)
        ids = set(new["run_id"])
        if replace:
            old = old[~old["run_id"].isin(ids)]
            add = new
        elif keyed:
            have = set(map(tuple, old[list(KEYS[table])].astype(str).itertuples(index=False, name=None)))
            fresh = [tuple(r) not in have for r in new[list(KEYS[table])].astype(str).itertuples(index=False)]
            add = new[fresh]
        else:
            add = new[~new["run_id"].isin(set(old["run_id"]))]
        if len(add) == 0 and not replace:
            return 0
        parts = [d for d in (old, add) if len(d)]
        combined = pd.concat(parts, ignore_index=True) if parts else empty(table)
        combined = validate(table, combined, source=str(target))
        atomic_write_csv(target, _format_for_csv(table, combined))
        legacy = _legacy_path(table, root)
        if legacy is not None and legacy.exists():   # its rows are in the compressed table now
            legacy.unlink()
    return int(len(add))


# --------------------------------------------------------------------------- provenance
def _git(*args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def provenance(device=None) -> dict:
    """Where and with what a result was produced (no host name, no user name).

    Returns ``dict(git_commit, git_dirty, torch_version, cuda_version, device, device_name,
    python_version, date)``. ``git_dirty`` ignores changes under ``data/`` (the result
    tables and executed notebooks themselves); ``git_commit`` is ``""`` outside a git
    checkout or before the first commit. ``device`` (e.g. ``"cuda"``, default: the one
    :func:`bridgeout.train.resolve_device` picks for ``"auto"``) names the device whose
    name is reported.
    """
    import torch
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    else:
        name = _cpu_name()
    commit = _git("rev-parse", "HEAD") or ""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)data")
    return {
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else False,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "device": dev.type,
        "device_name": name,
        "python_version": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# --------------------------------------------------------------------------- run ids
#: Parameters that do not change what a run computes (where it runs, where it writes),
#: hence are left out of the run id's hash.
NON_IDENTITY = frozenset({"device", "data_root", "results_dir", "notebook_path", "run_id", "grid",
                          "checkpoint_dir", "weights_dir"})


#: Parameters added after runs were first recorded, with the value they implicitly had
#: before: left out of the hash when they have it, so earlier run ids stay valid.
LATER_DEFAULTS = {"prune_recalibrate_bn": [False], "quirks": [], "lam": None, "precision": "fp32"}


def _canonical(v):
    if isinstance(v, Mapping):
        return {str(k): _canonical(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return int(f) if f.is_integer() else round(f, 10)
    return v if v is None or isinstance(v, str) else str(v)


def _slug(v) -> str:
    if isinstance(v, float):
        v = f"{v:g}"
    return re.sub(r"[^A-Za-z0-9_.]+", "", str(v))


def make_run_id(params: Mapping) -> str:
    """A deterministic, readable run id, e.g. ``mnist-lenet5-w1-bridgeout-fast-e3-s0-1a2b3c``.

    Readable part: dataset, model, width, regularizer (for bridgeout / sparseout followed by
    ``q<q>`` when q is not 1.5 and ``signed`` when signed; for slimming / group_lasso by
    ``lam<lam>`` when lam is given), protocol, the precision when not fp32, ``e<epochs>`` (only when
    an epochs override is given), ``n<n_train>`` (only for a training subset), ``s<seed>``.
    The last six hex digits are the SHA-256 of the canonical JSON of all parameters except
    those in :data:`NON_IDENTITY` (device, paths, grid name) and those of
    :data:`LATER_DEFAULTS` at their implicit value, so two runs that compute the
    same thing get the same id and any other difference (p, q, fractions, ...) changes it.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping of parameter values, got {type(params).__name__}")
    for k in ("dataset", "model", "regularizer", "protocol", "seed"):
        if k not in params:
            raise ValueError(f"params must contain {k!r} to make a run id; got keys {sorted(params)}")
    ident = {k: v for k, v in params.items() if k not in NON_IDENTITY
             and not (k in LATER_DEFAULTS and _canonical(v) == LATER_DEFAULTS[k])}
    digest = hashlib.sha256(json.dumps(_canonical(ident), sort_keys=True).encode()).hexdigest()[:6]
    parts = [_slug(params["dataset"]), _slug(params["model"]), f"w{_slug(float(params.get('width', 1.0) or 1.0))}",
             _slug(params["regularizer"])]
    if params["regularizer"] in ("bridgeout", "sparseout"):   # the noise's form, when not the default
        if params.get("q") is not None and float(params["q"]) != 1.5:
            parts.append(f"q{_slug(float(params['q']))}")
        if params.get("signed"):
            parts.append("signed")
    if params.get("lam") is not None:                          # slimming / group_lasso strength
        parts.append(f"lam{_slug(float(params['lam']))}")
    parts.append(_slug(params["protocol"]))
    if params.get("precision", "fp32") != "fp32":
        parts.append(_slug(params["precision"]))
    if params.get("epochs") is not None:
        parts.append(f"e{_slug(params['epochs'])}")
    if params.get("n_train") is not None:
        parts.append(f"n{_slug(params['n_train'])}")
    parts.append(f"s{_slug(params['seed'])}")
    parts.append(digest)
    return "-".join(parts)


# --------------------------------------------------------------------------- joins
def load_joined(root=None, table: str = "pruning", *, pruner: str | None = "plain") -> pd.DataFrame:
    """Rows of ``table`` (default ``pruning``) with the parameters of their run merged in.

    Columns: the table's own, then the run columns that are not already present (model,
    regularizer, dataset, protocol, width, epochs, seed, ...). Rows whose run is not (yet)
    in ``runs.csv`` are dropped: only finished runs are shown. ``pruning`` rows are those of
    ``pruner`` (default ``"plain"``, so that a mean over a run's rows never mixes pruners;
    ``None``: every pruner's).
    """
    if table not in ("pruning", "history", "filters", "latency"):
        raise ValueError(f"table must be 'pruning', 'history', 'filters' or 'latency' to join with runs, "
                         f"got {table!r}")
    if pruner is not None:
        check_choice("pruner", pruner, PRUNERS)
    rows = load(table, root)
    if table == "pruning" and pruner is not None:
        rows = rows[rows["pruner"] == pruner]
    runs = load("runs", root)
    run_cols = ["run_id"] + [c for c in runs.columns if c not in rows.columns]
    return rows.merge(runs[run_cols], on="run_id", how="inner", validate="many_to_one")


def merge(src, dst=None) -> dict[str, int]:
    """Add the finished runs of the tables in folder ``src`` (another worktree, a copy
    brought back from a GPU node) to the tables in ``dst`` (default :func:`default_root`).

    Only runs with a ``runs.csv`` row in ``src`` are taken; for each, its rows of every
    other table come along (replacing any rows of that run already in ``dst``, as a
    re-run would), then its ``runs`` row. Runs already finished in ``dst`` are skipped,
    except for rows a later pass added to them (``pruning`` and ``latency`` rows whose key
    ``dst`` lacks, appended with ``keyed=True``). Every row is validated first; returns
    the rows added per table.
    """
    src_runs = load("runs", src)
    done = set(load("runs", dst)["run_id"])
    new = src_runs[~src_runs["run_id"].isin(done)]
    ids = set(new["run_id"])
    added = {}
    for table in ("history", "pruning", "filters"):
        rows = load(table, src)
        rows = rows[rows["run_id"].isin(ids)]
        added[table] = append(table, rows, dst, replace=True) if len(rows) else 0
    added["runs"] = append("runs", new, dst) if len(new) else 0
    finished = set(load("runs", dst)["run_id"])
    for table in ("pruning", "latency"):                 # rows of later passes over known runs
        rows = load(table, src)
        rows = rows[rows["run_id"].isin(finished)]
        added[table] = added.get(table, 0) + (append(table, rows, dst, keyed=True) if len(rows) else 0)
    return added

