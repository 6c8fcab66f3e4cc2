"""Result tables: files, atomic idempotent appends, provenance, run ids and joins (what a
table is -- schemas, keys, ranges, :func:`validate` -- lives in :mod:`bridgeout.schema`,
re-exported here).

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
import io
import math
import os
import platform
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path

import pandas as pd

from ._validate import check_choice
from .runid import LATER_DEFAULTS, NON_IDENTITY, make_run_id  # noqa: F401 - re-exported
from .schema import (  # noqa: F401 - what a table is, re-exported (results.RUNS_SCHEMA, results.validate, ...)
    COMPRESSED, FILTERS_SCHEMA, HISTORY_SCHEMA, KEYS, LATENCY_SCHEMA, LATER_COLUMNS, LATER_VALUES, PRUNERS,
    PRUNING_SCHEMA, RUN_ID, RUNS_SCHEMA, RUNTIMES, SCHEMAS, TABLES, _check_table, empty, validate,
)

__all__ = [
    "PRUNERS", "RUNS_SCHEMA", "PRUNING_SCHEMA", "HISTORY_SCHEMA", "FILTERS_SCHEMA", "LATENCY_SCHEMA", "SCHEMAS", "KEYS", "TABLES", "COMPRESSED",
    "REPO_ROOT", "default_root", "path", "empty", "validate", "load", "append",
    "provenance", "make_run_id", "load_joined", "atomic_write_csv", "merge",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- paths
def default_root() -> Path:
    """``$BRIDGEOUT_RESULTS`` when set, else ``<repo>/data/results``."""
    env = os.environ.get("BRIDGEOUT_RESULTS")
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "results"


def path(table: str, root=None) -> Path:
    """Path of ``<root>/<table>.csv`` (``<table>.csv.gz`` for the tables in
    :data:`COMPRESSED`); root defaults to :func:`default_root`.

    Args:
        table: one of :data:`TABLES`.
        root: the folder of the tables.

    Returns:
        the path (the file need not exist).

    Raises:
        ValueError: an unknown table.
    """
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


def load(table: str, root=None) -> pd.DataFrame:
    """Read and validate a table (the file :func:`path` names); an absent file is an empty table.

    ``table`` is one of :data:`TABLES`; ``root`` defaults to
    :func:`default_root`. Raises ``ValueError`` (file, line, column) on malformed content.

    A plain ``<table>.csv`` left by an older version of a compressed table is read when the
    compressed file does not exist; columns added later are filled in (:func:`validate`).

    Args:
        table: one of :data:`TABLES`.
        root: the folder of the tables.

    Returns:
        the validated table.

    Raises:
        ValueError: an unknown table; a file that is not a readable CSV (or complete gzip),
            whose last line is cut, or whose content fails validation.
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
        # index_col=False: a row with an extra field is an error, not a shifted row whose first
        # value pandas would take for an index (then every column reads its neighbour's value)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""], index_col=False)
    except pd.errors.ParserWarning:
        raise ValueError(f"{p}: not a readable CSV table (a row has more fields than the header "
                         "names: a stray comma, or a value that needed quoting)") from None
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
    the header): the same table gives the same bytes.

    Args:
        target: the file (its folder is created); an existing file's permissions are kept,
            a new file gets mode 0o644.
        df: the table, written without its index and with ``\\n`` line endings.
    """
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
    docstring). Rows of a run id that ``runs`` does not list yet are accepted: a run appends
    its ``runs`` row last, so that row marks it finished, and :func:`load_joined` leaves out
    the rows of unfinished runs.

    Args:
        table: one of :data:`TABLES` (the file is :func:`path`'s).
        df: the new rows.
        root: the folder of the tables (default :func:`default_root`).
        replace: keyword-only; replace the table's rows of the new rows' run ids.
        keyed: keyword-only; skip only rows whose whole key is already there.

    Returns:
        the number of rows added.

    Raises:
        ValueError: ``replace`` and ``keyed`` together, an unknown table, malformed new rows,
            or a malformed existing table.
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

    Args:
        device: the device whose name is reported (see above).

    Returns:
        the dict above; ``date`` is the current UTC time, ``YYYY-MM-DDTHH:MM:SSZ``.
    """
    import torch   # here, not at the top: reading and validating the tables never loads torch
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


# --------------------------------------------------------------------------- joins
def load_joined(root=None, table: str = "pruning", *, pruner: str | None = "plain") -> pd.DataFrame:
    """Rows of ``table`` (default ``pruning``) with the parameters of their run merged in.

    Columns: the table's own, then the run columns that are not already present (model,
    regularizer, dataset, protocol, width, epochs, seed, ...). Rows whose run is not (yet)
    in ``runs.csv`` are dropped: only finished runs are shown. ``pruning`` rows are those of
    ``pruner`` (default ``"plain"``, so that a mean over a run's rows never mixes pruners;
    ``None``: every pruner's).

    Args:
        root: the folder of the tables (default :func:`default_root`).
        table: ``"pruning"``, ``"history"``, ``"filters"`` or ``"latency"``.
        pruner: keyword-only; one of :data:`PRUNERS`, or ``None``.

    Returns:
        the joined table.

    Raises:
        ValueError: another table, an unknown pruner, or a malformed table.
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

    Args:
        src: the folder to take runs from.
        dst: the folder to add them to.

    Returns:
        rows added per table (``history``, ``pruning``, ``filters``, ``runs``, ``latency``).

    Raises:
        ValueError: a malformed table in either folder.
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

