"""The grid runner: many cells of ``notebooks/train_and_prune.ipynb``, resumable; the engine
under ``python -m bridgeout.grid`` (:mod:`bridgeout.grid`, the command line) and the executors
(:mod:`bridgeout.executors`). Specs and their cells: :mod:`bridgeout.gridspec` (re-exported
here).

Every cell is validated (unknown parameter names -- checked against the notebook's
``parameters`` cell -- and bad values) and the environment is checked (:func:`preflight`:
tables and ``failures.csv`` valid, output folders writable, datasets present with enough
images, devices available) before any kernel starts. Each cell is executed with papermill
(kernel ``python3``, working directory = the repository root) with ``run_id``, ``grid`` and
``notebook_path`` injected; the executed notebook is kept at ``runs_dir/<run_id>.ipynb`` with
its outputs trimmed (progress bars collapsed, long streams cut, only PNG/text kept) and
written atomically (:mod:`bridgeout.notebookrun`, re-exported here). One cell's steps live in
:mod:`bridgeout.experiment`.

Cells whose ``run_id`` is already in ``runs.csv`` are skipped, so a grid can be stopped and
restarted. A cell is *claimed* before it runs (an exclusive ``flock`` on
``runs_dir/.claims/<run_id>.lock``, released by the kernel when its process dies), so any
number of runners -- several shells, ``--executor local`` workers, SLURM array tasks -- share
one grid without computing a cell twice. A failing cell is recorded in
``runs_dir/failures.csv`` and the others still run; previously failed cells are skipped
unless ``--retry-failed``. The exit status is 1 when any selected cell failed (now or
before), 2 for a bad spec, table or environment or an ``--only`` pattern that matches no
cell, 130 when interrupted (Ctrl-C or SIGTERM; rerun to resume), 0 otherwise.

Executors (:mod:`bridgeout.executors`, dispatching through submitit): ``sequential`` (the
default: this process), ``local`` (``--workers N`` processes on this machine; CPU threads
split between them, one GPU each when there are at least N, else sharing) and ``slurm``
(one array job per grid, one task per cell).
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from . import results
from .experiment import REPO_ROOT  # noqa: F401 - re-exported
from .gridspec import _rel, expand, GridSpec, load_spec, SpecError  # noqa: F401 - re-exported
from .notebookrun import (  # noqa: F401 - executing a notebook, re-exported
    _KEEP_MIME, _MAX_HTML, _MAX_STREAM, _collapse_cr, _cut, _execute, _merge_streams, strip_outputs,
)

__all__ = ["GridSpec", "SpecError", "PreflightError", "load_spec", "expand", "strip_outputs", "preflight",
           "todo_cells", "run_grid"]


# =========================================================================== execution
_FAILURE_COLUMNS = ["run_id", "date", "error", "notebook"]


def _failures_path(spec: GridSpec) -> Path:
    return spec.runs_dir / "failures.csv"


def _load_failures(spec: GridSpec) -> pd.DataFrame:
    """``failures.csv`` as a table; raises ``ValueError`` naming the file (and the line) when
    it is not the runner's own format."""
    p = _failures_path(spec)
    if not p.exists():
        return pd.DataFrame(columns=_FAILURE_COLUMNS, dtype=object)
    try:
        results._check_complete(p)
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{_rel(p)}: not a readable failures table ({' '.join(str(err).split())}); "
                         f"it is written by the grid runner with columns {_FAILURE_COLUMNS}: fix or "
                         f"delete it (deleting forgets which cells failed)") from None
    missing = [c for c in _FAILURE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{_rel(p)}: missing column(s) {missing}; the grid runner writes "
                         f"{_FAILURE_COLUMNS}: fix or delete it (deleting forgets which cells failed)")
    bad = df.index[~df["run_id"].map(lambda r: bool(results.RUN_ID.match(r)))]
    if len(bad):
        raise ValueError(f"{_rel(p)}, line {int(bad[0]) + 2}: run_id {df['run_id'].iloc[bad[0]]!r} is not a "
                         f"run id (letters, digits, '_', '.', '-')")
    return df[_FAILURE_COLUMNS]


def _error_text(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:2000]


def _matches(run_id: str, pattern: str | None, exact: bool = False) -> bool:
    if not pattern:
        return True
    if exact:
        return run_id == pattern
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(run_id, pattern)
    return pattern in run_id


# =========================================================================== pre-flight
class PreflightError(ValueError):
    """The environment cannot run the grid (reported before any kernel starts)."""


def _check_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PreflightError(f"{what} {_rel(folder)} is not writable ({err.strerror or err})") from None


def _check_device(device: str) -> None:
    if device in ("auto", "cpu"):
        return
    import torch
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, ValueError) as err:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise PreflightError(f"device {device!r} is not available here ({' '.join(str(err).split())[:200]}); "
                             f"this machine has {n} CUDA device(s); use device: auto or cpu in the spec, "
                             f"or run where the device exists") from None


def preflight(spec: GridSpec, cells: Sequence[Mapping], *, check_devices: bool = True) -> None:
    """Check, before any kernel starts, that the grid can run here: every result table and
    ``failures.csv`` readable and valid, the results and runs folders writable, each
    dataset present with enough images for ``n_train`` / ``n_test``, each device available.
    Raises :class:`PreflightError` (or the table's ``ValueError``) naming the file, value or
    cell; writes nothing but a removed probe file. Failures here are the environment's, so
    no cell is marked failed.

    Args:
        spec: the grid spec.
        cells: the cells to run (expanded parameter dicts).
        check_devices: check that each cell's device exists (``"auto"`` and ``"cpu"`` always do).

    Raises:
        PreflightError: a folder is not writable, a dataset is missing or too small, or a device
            is not available.
        ValueError: a result table or ``failures.csv`` is not valid.
    """
    from . import data  # deferred: loads torch
    for table in results.TABLES:
        results.load(table, spec.results_dir)
    _load_failures(spec)
    _check_writable(spec.results_dir, "results_dir")
    _check_writable(spec.runs_dir, "runs_dir")
    by_data: dict = {}
    for c in cells:
        by_data.setdefault((c["dataset"], c["data_root"]), []).append(c)
    for (name, root), group in by_data.items():
        try:
            n_train, n_test = data.sizes(name, root)
        except (FileNotFoundError, ValueError) as err:
            raise PreflightError(f"dataset {name} for {len(group)} cell(s) (e.g. {group[0]['run_id']}): {err}") from None
        for key, have in (("n_train", n_train), ("n_test", n_test)):
            big = [c for c in group if c[key] is not None and c[key] > have]
            if big:
                raise PreflightError(f"cell {big[0]['run_id']}: {key}={big[0][key]} but {name} has only {have} "
                                     f"{'training' if key == 'n_train' else 'test'} images (allowed: 1..{have}, "
                                     f"or null for all)")
    if check_devices:
        for device in sorted({c["device"] for c in cells}):
            _check_device(device)


# =========================================================================== the runner
def todo_cells(spec: GridSpec, *, only: str | None = None, retry_failed: bool = False,
               exact: bool = False) -> list[dict]:
    """The selected cells that still have to run (no ``runs.csv`` row; not failed before,
    unless ``retry_failed``).

    Args:
        spec: the grid spec.
        only: keep only cells whose run id contains this pattern (or matches it as a glob when
            it has ``*``, ``?`` or ``[``).
        retry_failed: include cells recorded in ``failures.csv``.
        exact: ``only`` is a whole run id.

    Returns:
        the cells, in the spec's order.

    Raises:
        SpecError: a malformed spec (:func:`expand`).
        ValueError: a corrupt ``runs.csv`` or ``failures.csv``.
    """
    done = set(results.load("runs", spec.results_dir)["run_id"])
    failed = set(_load_failures(spec)["run_id"])
    return [c for c in expand(spec) if _matches(c["run_id"], only, exact) and c["run_id"] not in done
            and (retry_failed or c["run_id"] not in failed)]


def run_grid(spec, *, only: str | None = None, retry_failed: bool = False, dry_run: bool = False,
             log_output: bool = False, out=None, exact: bool = False, check_environment: bool = True,
             list_cells: bool = True, check_devices: bool = True) -> int:
    """Run (or list, ``dry_run``) a grid in this process; returns the exit status (see the
    module docstring). ``exact``: ``only`` is a whole run id. ``check_environment``: run
    :func:`preflight` on the cells to run first (dry runs included, unless
    ``list_cells``, the plain listing).

    Each cell still to run is claimed, executed, and its failure recorded in (or cleared from)
    ``failures.csv``; a cell another runner holds or has finished is skipped.

    Args:
        spec: a :class:`GridSpec` or what :func:`load_spec` reads (a path or a mapping).
        only: run only cells whose run id contains this pattern (or matches it as a glob when
            it has ``*``, ``?`` or ``[``).
        retry_failed: rerun the cells recorded in ``failures.csv``.
        dry_run: list (or, without ``list_cells``, only check) the cells; run nothing.
        log_output: echo each notebook's output to the terminal.
        out: where the progress lines go (default ``sys.stdout``).
        exact: ``only`` is a whole run id.
        check_environment: run :func:`preflight` on the cells to run first.
        list_cells: with ``dry_run``, list every cell with its status and return 0 (no checks).
        check_devices: passed to :func:`preflight`.

    Returns:
        1 when any selected cell failed (now or before), 2 when no cell matches ``only`` or
        :func:`preflight` fails, 0 otherwise.

    Raises:
        SpecError: a malformed spec.
        ValueError: a corrupt result table or ``failures.csv``.
    """
    from tqdm.auto import tqdm
    out = out if out is not None else sys.stdout
    spec = spec if isinstance(spec, GridSpec) else load_spec(spec)
    cells = [c for c in expand(spec) if _matches(c["run_id"], only, exact)]
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
    if dry_run and list_cells:
        for c in cells:
            print(f"  [{status[c['run_id']]:>6}] {c['run_id']}", file=out)
        return 0
    if check_environment and todo:
        try:
            preflight(spec, todo, check_devices=check_devices)
        except PreflightError as err:
            print(f"{spec.name}: cannot run here, nothing was started: {err}", file=out)
            return 2
    if dry_run:
        return 0

    failed_now, skipped = [], []
    bar = tqdm(todo, desc=spec.name, unit="cell", file=out, dynamic_ncols=True, disable=not todo)
    for i, cell in enumerate(bar, 1):
        rid = cell["run_id"]
        bar.set_postfix_str(rid)
        outcome = _run_claimed(spec, cell, i, len(todo), log_output, out)
        if outcome == "skipped":
            skipped.append(rid)
        elif outcome == "failed":
            failed_now.append(rid)
    bar.close()
    n_bad = len(failed_now) + n_failed_before
    print(f"{spec.name}: {len(todo) - len(failed_now) - len(skipped)} ran, {len(failed_now)} failed now"
          f"{f', {len(skipped)} left to other runners' if skipped else ''}"
          f"{f', {n_failed_before} failed before (skipped)' if n_failed_before else ''}"
          f"{f'; see {_rel(_failures_path(spec))}' if n_bad else ''}", file=out)
    return 1 if n_bad else 0


def _run_claimed(spec: GridSpec, cell: Mapping, i: int, n: int, log_output: bool, out) -> str:
    """Claim, run and release one cell: ``"ran"``, ``"failed"`` or ``"skipped"`` (another
    runner holds it or has finished it)."""
    from tqdm.auto import tqdm
    rid = cell["run_id"]
    claim = _claim(spec, rid)
    if claim is None:
        tqdm.write(f"[{i}/{n}] skipped {rid}: another runner holds it", file=out)
        return "skipped"
    try:
        if rid in set(results.load("runs", spec.results_dir)["run_id"]):
            tqdm.write(f"[{i}/{n}] skipped {rid}: finished by another runner", file=out)
            return "skipped"
        return "failed" if _run_cell(spec, cell, i, n, log_output, out) else "ran"
    finally:
        _release(claim)


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
