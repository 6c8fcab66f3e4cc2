"""The ``bridgeout`` command: ``grid``, ``again`` and ``verify``.

::

    bridgeout grid SPEC [--executor local --workers 2 ...]   # = python -m bridgeout.grid
    bridgeout again PASS_SPEC [--shard 1/2]                   # a later pass (notebooks/prune_again.ipynb)
    bridgeout verify RUN_ID [--from-weights] [--scratch DIR]  # re-derive a recorded run, give a verdict

``verify`` exits 0 for ``identical`` or ``within tolerance``, 1 for ``differs`` and 2 for bad
input (a run id that is not recorded, a missing notebook or weights file).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from . import results, verify
from .experiment import REPO_ROOT
from .grid import main as grid_main

__all__ = ["main"]


def _again(args) -> int:
    import papermill as pm

    spec = Path(args.spec)
    if not spec.is_file():
        print(f"error: pass spec {spec} not found (the passes are in notebooks/passes/)", file=sys.stderr)
        return 2
    k, _, n = args.shard.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        print(f"error: --shard must be k/n with 1 <= k <= n, got {args.shard!r}", file=sys.stderr)
        return 2
    out = Path(args.out or f"data/runs/prune-again/{spec.stem}-{k}of{n}.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    import yaml
    params = {**yaml.safe_load(spec.read_text()), "shard": args.shard, "notebook_path": str(out)}
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "prune_again.ipynb"), str(out), parameters=params,
                        kernel_name="python3", cwd=str(REPO_ROOT), progress_bar=False, log_output=True)
    print(f"pass {spec.stem} shard {args.shard}: notebook {out}")
    return 0


def _verify(args) -> int:
    import pandas as pd

    try:
        tol = verify.Tolerance(**{k: v for k, v in (("unpruned", args.tol_unpruned),
                                                    ("pruning_median", args.tol_pruning_median),
                                                    ("pruning_max", args.tol_pruning_max)) if v is not None})
        rec = verify.recorded(args.run_id, args.results_dir)
        if args.from_weights:
            new, how = verify.from_weights(rec), "from weights"
        else:
            scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="bridgeout-verify-"))
            print(f"re-executing {args.run_id} into {scratch} (the committed tables are not touched)")
            new, how = verify.rerun(rec, scratch, log_output=args.log_output), "re-executed"
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    c = verify.compare(rec, new, tol)
    print(verify.report(c, show_history=not args.from_weights))
    if args.record:
        path = Path(args.record)
        row = pd.DataFrame([verify.summary_row(args.run_id, how, c)])
        old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else row.iloc[0:0]
        key = ["run_id", "how", "rederived_commit", "rederived_cpu"]
        old = old[~old[key].astype(str).apply(tuple, axis=1).isin(row[key].astype(str).apply(tuple, axis=1))]
        results.atomic_write_csv(path, pd.concat([old, row.astype(str)], ignore_index=True))
        print(f"recorded in {path}")
    return 1 if c.verdict == "differs" else 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bridgeout", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grid", help="run a grid of experiment notebooks (python -m bridgeout.grid)", add_help=False)
    g.add_argument("rest", nargs=argparse.REMAINDER)
    a = sub.add_parser("again", help="a later pass over recorded runs (notebooks/passes/*.yaml)")
    a.add_argument("spec", help="pass spec YAML, e.g. notebooks/passes/criteria.yaml")
    a.add_argument("--shard", default="1/1", help="k/n: every n-th run from the k-th (default 1/1)")
    a.add_argument("--out", help="executed notebook (default data/runs/prune-again/<spec>-<k>of<n>.ipynb)")
    v = sub.add_parser("verify", help="re-derive a recorded run and compare (identical / within tolerance / differs)")
    v.add_argument("run_id")
    v.add_argument("--from-weights", action="store_true",
                   help="re-derive the pruning rows from the run's kept weights (seconds; no training)")
    v.add_argument("--scratch", help="folder for the re-executed run's tables and notebook (default: a new temp folder)")
    v.add_argument("--results-dir", default="data/results", help="the recorded tables (default data/results)")
    v.add_argument("--record", metavar="CSV", help="append the verdict and largest differences to this CSV")
    v.add_argument("--log-output", action="store_true", help="echo the re-executed notebook's output")
    for name, what in (("unpruned", "unpruned accuracy"), ("pruning-median", "median pruning-row"),
                       ("pruning-max", "largest pruning-row")):
        v.add_argument(f"--tol-{name}", type=float, default=None, metavar="ACC",
                       help=f"tolerance on the {what} difference, as an accuracy in [0, 1]")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bridgeout`` console script.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``); everything after
            ``grid`` goes to :func:`bridgeout.grid.main` unparsed.

    Returns:
        the exit status: ``grid``'s own, ``again``'s (0, or 2 for a missing spec or a bad
        ``--shard``), or ``verify``'s (0 for ``identical`` or ``within tolerance``, 1 for
        ``differs``, 2 for bad input).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["grid"]:                 # everything after 'grid' is the runner's own
        return grid_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "again":
        return _again(args)
    return _verify(args)


if __name__ == "__main__":
    sys.exit(main())
