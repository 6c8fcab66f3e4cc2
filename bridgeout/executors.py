"""Where a grid's cells run: this process, N worker processes here, or a SLURM array job.

The dispatching is submitit's (https://github.com/facebookincubator/submitit), not ours;
this module only decides what each job does and with which resources:

* ``local`` -- :func:`run_local` starts ``workers`` processes on this machine with
  :class:`submitit.LocalExecutor`. Each runs the ordinary grid loop
  (:func:`bridgeout.runner.run_grid`): cells are *claimed* before they run, so the workers
  split the grid between them without a scheduler of ours, and a worker that dies
  releases its claim with its process. :func:`worker_resources` splits the CPU threads
  between the workers (``OMP_NUM_THREADS``) and gives each its own GPU when there are at
  least as many GPUs as workers; with fewer GPUs the workers share GPU 0.
* ``slurm`` -- :func:`submit_slurm` submits one SLURM array job per grid with
  :class:`submitit.AutoExecutor`: one array task per cell still to run, at most
  ``array_parallelism`` at once. Each task claims its cell too, so a resubmitted grid, or a
  runner started by hand, never computes a cell twice.

Safety on a shared filesystem: the claims and the table locks are ``flock`` locks, which
Linux maps to POSIX record locks on NFS (v3 with lockd, v4 natively) and Lustre/GPFS with
locking enabled, so they hold across the nodes of a cluster; on a filesystem mounted without
locks (``nolock``, ``local_lock=all``) they are local to each node, and then only SLURM's
one-task-per-cell split keeps cells apart. Tables are replaced atomically (write a
temporary file, ``os.replace``) under the lock, so a reader never sees half a file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import results, runner
from ._validate import check_int

__all__ = ["EXECUTORS", "worker_resources", "run_local", "submit_slurm"]

EXECUTORS = ("sequential", "local", "slurm")
#: submitit's local jobs are killed after ``timeout_min`` (default 2 min): a grid runs for days.
_LOCAL_TIMEOUT_MIN = 60 * 24 * 30


def worker_resources(workers: int, cpus: int, gpus: int, threads: int | None = None) -> list[dict]:
    """Each local worker's share of the machine, as ``{"threads": T, "gpu": index or None}``.

    ``threads`` defaults to ``cpus // workers`` (at least 1). With ``gpus >= workers`` worker
    ``i`` gets GPU ``i`` alone; with ``0 < gpus < workers`` every worker shares GPU 0; with no
    GPU, ``gpu`` is None.

    Args:
        workers: the number of workers, an integer >= 1.
        cpus: the machine's CPU count.
        gpus: the machine's GPU count.
        threads: CPU threads per worker, an integer >= 1, or ``None`` for the default above.

    Returns:
        one dict per worker.

    Raises:
        ValueError: ``workers`` or ``threads`` is not an integer >= 1.
    """
    check_int("workers", workers, 1)
    check_int("threads per worker", threads, 1, none_ok=True)   # None: cpus // workers
    t = threads if threads is not None else max(1, cpus // workers)
    if gpus >= workers:
        return [{"threads": t, "gpu": i} for i in range(workers)]
    return [{"threads": t, "gpu": 0 if gpus > 0 else None} for _ in range(workers)]


def _set_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _worker(spec_source: str, only: str | None, retry_failed: bool, log_output: bool, threads: int) -> int:
    """One local worker: the grid loop with this worker's thread count (inherited by the
    notebook kernels it starts)."""
    _set_threads(threads)
    try:
        return runner.run_grid(spec_source, only=only, retry_failed=retry_failed, log_output=log_output,
                               out=sys.stdout, check_environment=False)
    except KeyboardInterrupt:   # submitit cancels a local job with SIGINT: a line, not a traceback
        print("worker interrupted; its cell resumes from its last checkpoint on the next run", file=sys.stderr)
        return 130


def _local_executor(folder: Path, gpu: int | None):
    import submitit
    ex = submitit.LocalExecutor(folder=str(folder))
    params = {"timeout_min": _LOCAL_TIMEOUT_MIN}
    if gpu is None:
        params["gpus_per_node"] = 0
    else:
        params.update(gpus_per_node=1, visible_gpus=[gpu])
    ex.update_parameters(**params)
    return ex


def _gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable torch.cuda means no GPU
        return 0


def run_local(spec, *, workers: int, threads: int | None = None, only: str | None = None,
              retry_failed: bool = False, log_output: bool = False, out=None) -> int:
    """Run a grid with ``workers`` local processes; waits for them and returns the grid's exit
    status (as :func:`bridgeout.runner.run_grid`). Each worker's output is in
    ``runs_dir/.submitit/<job id>_0_log.out``. Ctrl-C cancels the workers (their cells
    resume from their checkpoints on the next run), waits up to 30 s for them to stop and
    re-raises the ``KeyboardInterrupt`` (the command line then exits 130).

    The grid is first checked in this process (a dry run with :func:`bridgeout.runner.preflight`);
    a non-zero status there is returned without starting any worker.

    Args:
        spec: a :class:`bridgeout.runner.GridSpec` read from a file, or the path of its YAML file.
        workers: the number of worker processes.
        threads: CPU threads per worker (default: CPU cores // workers; :func:`worker_resources`).
        only: run only cells whose run id contains this pattern (or matches it as a glob).
        retry_failed: rerun the cells recorded in ``failures.csv``.
        log_output: echo each notebook's output to the worker's log.
        out: where the progress lines go (default ``sys.stdout``).

    Returns:
        the exit status: 0 when every selected cell has its row, 1 when any failed (a worker that
        ended with an error counts as failed) or was left unfinished, 130 when a worker was
        interrupted, 2 when the checks before the start failed.

    Raises:
        ValueError: a spec not read from a file, bad ``workers``/``threads``, or a corrupt table.
        SpecError: a malformed spec.
    """
    out = out if out is not None else sys.stdout
    spec = spec if isinstance(spec, runner.GridSpec) else runner.load_spec(spec)
    if not spec.source:
        raise ValueError("run_local needs a spec read from a file (its path is passed to the workers)")
    plan = worker_resources(workers, os.cpu_count() or 1, _gpu_count(), threads)
    status = runner.run_grid(spec, only=only, retry_failed=retry_failed, dry_run=True, out=out,
                           check_environment=True, list_cells=False)
    if status != 0:
        return status
    folder = spec.runs_dir / ".submitit"
    jobs = []
    try:
        for i, res in enumerate(plan):
            ex = _local_executor(folder, res["gpu"])
            jobs.append(ex.submit(_worker, spec.source, only, retry_failed, log_output, res["threads"]))
            where = "CPU" if res["gpu"] is None else f"GPU {res['gpu']}"
            print(f"worker {i + 1}/{workers}: job {jobs[-1].job_id}, {res['threads']} thread(s), {where}; "
                  f"log {runner._rel(folder)}/{jobs[-1].job_id}_0_log.out", file=out)
        codes = []
        for job in jobs:
            try:
                codes.append(job.result())
            except Exception as err:  # noqa: BLE001 - a worker that died is reported, the rest kept
                print(f"worker job {job.job_id} ended with an error: {str(err).splitlines()[-1] if str(err) else err}",
                      file=out)
                codes.append(1)
    except KeyboardInterrupt:
        _stop_workers(jobs, out)
        raise
    return _final_status(spec, only, retry_failed, out, codes)


def _stop_workers(jobs, out, timeout_s: float = 30.0) -> None:
    """Cancel the workers (SIGINT: each ends its notebook kernel and exits 130) and wait until
    they have exited, so the command returns with no worker of its own left running."""
    for job in jobs:
        job.cancel()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(job.done() for job in jobs):
        time.sleep(0.2)
    alive = [job.job_id for job in jobs if not job.done()]
    if alive:
        print(f"worker job(s) {', '.join(alive)} still stopping after {timeout_s:.0f} s", file=out)


def _final_status(spec, only, retry_failed, out, codes: Sequence[int]) -> int:
    """The grid's status once every worker has stopped: 0 when every selected cell has its
    row, 1 when any failed or was left unfinished, 130 when a worker was interrupted."""
    cells = [c for c in runner.expand(spec) if runner._matches(c["run_id"], only)]
    done = set(results.load("runs", spec.results_dir)["run_id"])
    failed = set(runner._load_failures(spec)["run_id"])
    missing = [c["run_id"] for c in cells if c["run_id"] not in done]
    bad = [r for r in missing if r in failed]
    print(f"{spec.name}: {len(cells) - len(missing)} of {len(cells)} cells done, {len(bad)} failed"
          f"{f', {len(missing) - len(bad)} unfinished' if len(missing) > len(bad) else ''}"
          f"{f'; see {runner._rel(runner._failures_path(spec))}' if bad else ''}", file=out)
    if 130 in codes:
        return 130
    return 0 if not missing else 1


def _slurm_task(spec_source: str, run_id: str, retry_failed: bool, log_output: bool) -> int:
    """One SLURM array task: claim and run one cell (threads = the task's CPUs)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        _set_threads(int(cpus))
    return runner.run_grid(spec_source, only=run_id, exact=True, retry_failed=retry_failed,
                           log_output=log_output, out=sys.stdout, check_environment=False)


def _sbatch_reason(err: BaseException) -> str:
    """sbatch's own words from a failed submission (its stderr), else the error's first line."""
    text = getattr(err, "stderr", None) or getattr(err, "output", None) or str(err)
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


def submit_slurm(spec, *, partition: str | None = None, time_min: int = 24 * 60, gpus_per_task: int = 1,
                 cpus_per_task: int = 4, array_parallelism: int = 8, only: str | None = None,
                 retry_failed: bool = False, log_output: bool = False, wait: bool = False,
                 extra: Mapping | None = None, out=None) -> int:
    """Submit the grid's remaining cells as one SLURM array job (one task per cell, at most
    ``array_parallelism`` running); returns 0 once submitted, or with ``wait=True`` the grid's
    status when the tasks are done. ``extra`` passes further ``slurm_*`` parameters to
    submitit (e.g. ``{"slurm_account": "abc"}``). Logs: ``runs_dir/.submitit/``.

    Args:
        spec: a :class:`bridgeout.runner.GridSpec` read from a file, or the path of its YAML file.
        partition: the SLURM partition (default: the cluster's).
        time_min: minutes per task, >= 1.
        gpus_per_task: GPUs per task, >= 0 (0 for CPU only).
        cpus_per_task: CPUs per task, >= 1 (each task runs that many threads).
        array_parallelism: tasks running at once, >= 1.
        only: submit only cells whose run id contains this pattern (or matches it as a glob).
        retry_failed: resubmit the cells recorded in ``failures.csv``.
        log_output: echo each notebook's output to the task's log.
        wait: wait for the tasks and return the grid's status.
        extra: further submitit parameters, applied last.
        out: where the progress lines go (default ``sys.stdout``).

    Returns:
        0 once submitted (or when nothing is left to submit); with ``wait=True`` 0 when every
        selected cell has its row, 1 when any failed or was left unfinished, 130 when a task was
        interrupted; the non-zero status of the checks before submitting (2) as is.

    Raises:
        ValueError: a spec not read from a file, a resource count below its minimum, no
            ``sbatch``/``srun`` on the PATH, or SLURM refusing the array job (nothing was run).
        SpecError: a malformed spec.
    """
    import submitit

    out = out if out is not None else sys.stdout
    spec = spec if isinstance(spec, runner.GridSpec) else runner.load_spec(spec)
    if not spec.source:
        raise ValueError("submit_slurm needs a spec read from a file (its path is passed to the tasks)")
    for name, value, low in (("time_min", time_min, 1), ("gpus_per_task", gpus_per_task, 0),
                             ("cpus_per_task", cpus_per_task, 1), ("array_parallelism", array_parallelism, 1)):
        check_int(name, value, low)
    status = runner.run_grid(spec, only=only, retry_failed=retry_failed, dry_run=True, out=out,
                           check_environment=True, list_cells=False, check_devices=False)
    if status != 0:
        return status
    todo = runner.todo_cells(spec, only=only, retry_failed=retry_failed)
    if not todo:
        print(f"{spec.name}: nothing to submit", file=out)
        return 0
    missing = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
    if missing:
        raise ValueError(f"--executor slurm needs SLURM's {' and '.join(missing)} on the PATH, and there is none "
                         "here; run on a SLURM login node, or use --executor local (workers on this machine)")
    ex = submitit.AutoExecutor(folder=str(spec.runs_dir / ".submitit"), cluster="slurm")
    params = {"timeout_min": time_min, "slurm_array_parallelism": array_parallelism,
              "cpus_per_task": cpus_per_task, "slurm_job_name": f"bridgeout-{spec.name}"}
    if gpus_per_task:
        params["slurm_gpus_per_task"] = gpus_per_task
    if partition:
        params["slurm_partition"] = partition
    params.update(dict(extra or {}))
    ex.update_parameters(**params)
    n = len(todo)
    try:
        jobs = ex.map_array(_slurm_task, [spec.source] * n, [c["run_id"] for c in todo], [retry_failed] * n,
                            [log_output] * n)
    except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
        raise ValueError(f"SLURM refused the array job of {n} task(s): {_sbatch_reason(err)} (submitted with "
                         f"{', '.join(f'{k}={v}' for k, v in sorted(params.items()))}); nothing was run") from None
    array_id = str(jobs[0].job_id).split("_")[0]
    print(f"{spec.name}: submitted SLURM array job {array_id} ({n} tasks, at most {array_parallelism} at "
          f"once); logs in {runner._rel(spec.runs_dir / '.submitit')}; `squeue -j {array_id}` to follow, "
          f"rerun the same command to resubmit what is left", file=out)
    if not wait:
        return 0
    codes = []
    for job in jobs:
        try:
            codes.append(job.result())
        except Exception as err:  # noqa: BLE001
            print(f"task {job.job_id} ended with an error: {str(err).splitlines()[-1] if str(err) else err}",
                  file=out)
            codes.append(1)
    return _final_status(spec, only, retry_failed, out, codes)
