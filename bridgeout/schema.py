"""What a result table is: the five schemas (column -> dtype, description), their keys, the
columns added later and their defaults, the ranges, formats and known names each column
allows, and :func:`validate`, which coerces a frame to its schema or refuses it naming the
line, the column and what is allowed.

Plain pandas, no torch and no files: :mod:`bridgeout.results` reads and writes the tables
on top of it (and re-exports these names); ``data/results/README.md`` documents the
schemas (a test checks that the README and the dicts agree).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from . import registry
from ._validate import check_choice

__all__ = ["RUNS_SCHEMA", "PRUNING_SCHEMA", "HISTORY_SCHEMA", "FILTERS_SCHEMA", "LATENCY_SCHEMA", "SCHEMAS",
           "TABLES", "COMPRESSED", "KEYS", "LATER_COLUMNS", "LATER_VALUES", "PRUNERS", "RUNTIMES", "RUN_ID",
           "empty", "validate"]

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
                      "channel keeps its mean BatchNorm output (`bridgeout.prune.repair.keep_channel_means_`)."),
}

#: The pruners a ``pruning`` row may name (its ``pruner`` column, part of the key).
PRUNERS = registry.PRUNERS
RUNTIMES = registry.RUNTIMES

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
#: What a run id (and a grid name) may be: letters, digits, '_', '.', '-', not starting with a sign.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: Text columns with a fixed format: (pattern, what it must be).
_FORMATS = {
    "date": (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"), "a UTC date YYYY-MM-DDTHH:MM:SSZ"),
    "run_id": (RUN_ID, "a run id (letters, digits, '_', '.', '-')"),
    "git_commit": (re.compile(r"^[0-9a-f]{7,40}$"), "a git commit (7-40 lowercase hex digits, or empty)"),
    "notebook": (re.compile(r"^[^\x00-\x1f\x7f]*$"), "a path (no control characters)"),
    "weights": (re.compile(r"^[^\x00-\x1f\x7f]*\.safetensors$"), "a path to a .safetensors file"),
    "weights_sha256": (re.compile(r"^[0-9a-f]{64}$"), "a SHA-256 (64 lowercase hex digits)"),
}


def _choices() -> dict[str, dict[str, tuple[str, ...]]]:
    """Known names per table/column (:mod:`bridgeout.registry`)."""
    return {
        "runs": {"model": registry.MODELS, "regularizer": registry.REGULARIZERS, "dataset": registry.DATASETS,
                 "protocol": registry.PROTOCOL_NAMES, "select": registry.SELECT, "precision": registry.PRECISIONS},
        "pruning": {"mode": registry.MODES, "scope": registry.SCOPE_NAMES, "criterion": registry.CRITERIA,
                    "pruner": registry.PRUNERS},
        "latency": {"runtime": registry.RUNTIMES, "criterion": registry.CRITERIA},
    }


def empty(table: str) -> pd.DataFrame:
    """An empty table with the schema's columns and dtypes.

    Args:
        table: one of :data:`TABLES`.

    Returns:
        the empty table (``str`` columns object, ``int`` nullable ``Int64``, ``float``
        ``float64``, ``bool`` nullable ``boolean``).

    Raises:
        ValueError: an unknown table.
    """
    schema = SCHEMAS[_check_table(table)]
    return pd.DataFrame({c: pd.Series([], dtype=_PANDAS_DTYPE[d]) for c, (d, _) in schema.items()})


_PANDAS_DTYPE = {"str": object, "int": "Int64", "float": "float64", "bool": "boolean"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _check_table(table: str) -> str:
    return check_choice("table", table, TABLES)


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
    column that has a value (a table padded with empty cells).

    Args:
        table: one of :data:`SCHEMAS`.
        df: the rows, as read (strings) or as built (typed).
        source: a file name or description for the messages (default ``"<table> table"``).
        first_line: the CSV line number of the first data row, for the messages.

    Returns:
        A typed copy with a fresh index.

    Raises:
        ValueError: naming ``source``, the row (as its CSV line number) and the column, for
            missing or unexpected columns, values of the wrong type, missing required values,
            values out of range or not among the known names, and duplicated keys.
    """
    _check_table(table)
    schema = SCHEMAS[table]
    where = source or f"{table} table"
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    df = _fill_later_columns(table, df)
    _check_columns(table, list(df.columns), where)
    out = {col: pd.Series(_typed_column(table, col, df[col].tolist(), where, first_line),
                          dtype=_PANDAS_DTYPE[dtype], index=df.index)
           for col, (dtype, _) in schema.items()}
    typed = pd.DataFrame(out, index=df.index).reset_index(drop=True)
    _check_keys(table, typed, where, first_line)
    return typed


def _fill_later_columns(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the :data:`LATER_COLUMNS` it lacks added, and their empty cells filled,
    with their :data:`LATER_VALUES` value (a copy when anything changes)."""
    schema = SCHEMAS[table]
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
    return df


def _check_columns(table: str, cols: list, where: str) -> None:
    """The columns are exactly the schema's, each once."""
    schema = SCHEMAS[table]
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


def _typed_column(table: str, col: str, raw: list, where: str, first_line: int) -> list:
    """One column's values coerced to its dtype and checked (required, range, known names,
    format); the first bad value raises a ``ValueError`` naming its line."""
    dtype = SCHEMAS[table][col][0]
    nullable = col in _NULLABLE[table]
    choices = _choices().get(table, {}).get(col)
    values = []
    for i, v in enumerate(raw):
        at = f"{where}, line {first_line + i}, column {col!r}"
        if _is_missing(v):
            if not nullable:
                raise ValueError(f"{at}: value is missing (required)")
            values.append("" if dtype == "str" else None)
            continue
        try:
            x = _coerce_value(v, dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{at}: bad value {v!r} ({err}; the column's dtype is {dtype})") from None
        if dtype == "float" and math.isnan(x):
            if not nullable:
                raise ValueError(f"{at}: value is NaN (required)")
        elif col in _RANGES[table]:
            _check_range(x, v, _RANGES[table][col], at)
        if choices is not None and x not in choices:
            raise ValueError(f"{at}: unknown name {v!r}; known: {', '.join(map(repr, choices))}")
        if col in _FORMATS and not _FORMATS[col][0].match(x):
            raise ValueError(f"{at}: {v!r} is not {_FORMATS[col][1]}")
        values.append(x)
    return values


def _check_range(x, v, bounds: tuple, at: str) -> None:
    """``x`` (read from ``v``) within ``bounds`` = ``(lo, hi[, "closed" | "open_low" |
    "open_high"])``; an infinite bound is never reached: [0, inf) excludes inf."""
    lo, hi, *kind = bounds
    kind = kind[0] if kind else "closed"
    ok = ((lo < x if kind == "open_low" or math.isinf(lo) else lo <= x)
          and (x < hi if kind == "open_high" or math.isinf(hi) else x <= hi))
    if not ok:
        lb = "(" if kind == "open_low" else "["
        rb = ")" if kind == "open_high" or math.isinf(hi) else "]"
        raise ValueError(f"{at}: value {v!r} out of range; allowed {lb}{lo}, {hi}{rb}")


def _check_keys(table: str, typed: pd.DataFrame, where: str, first_line: int) -> None:
    """No two rows share the table's key; the second is named with the line of the first."""
    key = list(KEYS[table])
    dup = typed.duplicated(subset=key, keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((typed[key] == typed.loc[i, key]).all(axis=1).to_numpy())[0])
        shown = ", ".join(f"{k}={typed.loc[i, k]!r}" for k in key)
        raise ValueError(f"{where}, line {first_line + i}, column {key[-1]!r}: duplicated key ({shown}); "
                         f"first seen on line {first_line + first}")


