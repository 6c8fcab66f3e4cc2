"""``python -m bridgeout.grid SPEC [--dry-run] [--only PATTERN] [--retry-failed] [--log-output]
[--executor {sequential,local,slurm}] [--workers N] ...``: the command line over the grid
runner (:mod:`bridgeout.runner`: specs, pre-flight checks, claimed cells, the failures table)
and its executors (:mod:`bridgeout.executors`, dispatching through submitit): ``sequential``
(the default: this process), ``local`` (``--workers N`` processes on this machine; CPU threads
split between them, one GPU each when there are at least N, else sharing) and ``slurm`` (one
array job per grid, one task per cell).

The exit status is 1 when any selected cell failed (now or before), 2 for a bad spec, table or
environment or an ``--only`` pattern that matches no cell, 130 when interrupted (Ctrl-C or
SIGTERM; rerun to resume), 0 otherwise. The runner's and one cell's names are re-exported here
(``grid.load_spec``, ``grid.run_grid``, ``grid.validate_params``, ...), as before the split.
"""
from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .executors import run_local, submit_slurm
from .experiment import (  # noqa: F401 - one cell's steps, re-exported
    NOTEBOOK, PARAMETERS, REPO_ROOT, RUNNER_PARAMETERS, build_model, load_data, result_tables, run_experiment,
    save_tables, sweep_model, train_model, validate_params,
)
from .runner import (  # noqa: F401 - the runner, re-exported
    GridSpec, PreflightError, SpecError, expand, load_spec, preflight, run_grid, strip_outputs, todo_cells,
)

__all__ = [
    "PARAMETERS", "RUNNER_PARAMETERS", "NOTEBOOK", "validate_params", "load_data", "build_model",
    "train_model", "sweep_model", "result_tables", "save_tables", "run_experiment",
    "GridSpec", "SpecError", "PreflightError", "load_spec", "expand", "strip_outputs", "preflight",
    "todo_cells", "run_grid", "main",
]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bridgeout.grid", description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="grid spec YAML (e.g. notebooks/grids/mnist-teaching.yaml)")
    ap.add_argument("--dry-run", action="store_true", help="list the cells and their status, run nothing")
    ap.add_argument("--only", metavar="PATTERN", help="run only cells whose run id contains PATTERN "
                    "(or matches it as a glob when it has * ? [)")
    ap.add_argument("--retry-failed", action="store_true", help="rerun cells recorded in failures.csv")
    ap.add_argument("--log-output", action="store_true", help="echo each notebook's output (training "
                    "progress) to the terminal while it runs")
    ex = ap.add_argument_group("executors (dispatched with submitit)")
    ex.add_argument("--executor", choices=("sequential", "local", "slurm"), default="sequential",
                    help="sequential: this process (default); local: --workers processes here; "
                    "slurm: one array job, one task per cell")
    ex.add_argument("--workers", type=int, default=2, metavar="N", help="local: cells run at once (default 2)")
    ex.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                    help="local: CPU threads per worker (default: CPU cores // workers)")
    ex.add_argument("--partition", help="slurm: partition")
    ex.add_argument("--time", type=int, default=24 * 60, metavar="MIN", help="slurm: minutes per task (default 1440)")
    ex.add_argument("--gpus-per-task", type=int, default=1, help="slurm: GPUs per task (default 1; 0 for CPU)")
    ex.add_argument("--cpus-per-task", type=int, default=4, help="slurm: CPUs per task (default 4)")
    ex.add_argument("--array-parallelism", type=int, default=8, help="slurm: tasks running at once (default 8)")
    ex.add_argument("--wait", action="store_true", help="slurm: wait for the tasks and report the grid's status")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m bridgeout.grid --help``).

    Args:
        argv: the arguments (default: the process's own).

    Returns:
        the exit status: 1 when a selected cell failed, 2 for a bad spec, table, executor option
        or ``--dry-run`` with another executor than ``sequential``, 130 when interrupted (Ctrl-C
        or SIGTERM), 0 otherwise.
    """
    args = _parser().parse_args(argv)

    def _terminate(signum, frame):  # SIGTERM ends the runner like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.executor != "sequential" and args.dry_run:
            print("error: --dry-run lists the cells with the sequential executor; drop --executor", file=sys.stderr)
            return 2
        if args.executor == "local":
            return run_local(args.spec, workers=args.workers, threads=args.threads_per_worker, only=args.only,
                             retry_failed=args.retry_failed, log_output=args.log_output)
        if args.executor == "slurm":
            return submit_slurm(args.spec, partition=args.partition, time_min=args.time,
                                gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
                                array_parallelism=args.array_parallelism, only=args.only,
                                retry_failed=args.retry_failed, log_output=args.log_output, wait=args.wait)
        return run_grid(args.spec, only=args.only, retry_failed=args.retry_failed, dry_run=args.dry_run,
                        log_output=args.log_output)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume (finished cells are kept, the "
              "interrupted one starts again from its last checkpoint)", file=sys.stderr)
        return 130
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # a corrupt result or failures table, a bad executor option
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
