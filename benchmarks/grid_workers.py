"""Speed-up of the grid's local executor: the same grid run with 1 worker and with N workers.

Runs a small grid of real cells (notebook, papermill kernel, training, pruning sweep,
tables) twice in temporary folders -- ``--executor local --workers 1`` and ``--workers N``
(``--threads`` threads each, default 1) -- and prints the wall time of each and the
speed-up. Defaults: LeNet-5 on MNIST (the real archive from ``$BRIDGEOUT_DATA`` when
present), ``fast`` protocol cut to 1 epoch on 8,192 images, 4 seeds; kernel start-up and the
sweep are part of every cell, as in a real grid.

Usage::

    BRIDGEOUT_DATA=../shared/data python benchmarks/grid_workers.py --workers 2 --cells 4
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _spec(folder: Path, cells: int, n_train: int) -> Path:
    import yaml
    spec = {"name": "bench", "notebook": str(ROOT / "notebooks" / "train_and_prune.ipynb"),
            "results_dir": str(folder / "results"), "runs_dir": str(folder / "runs"),
            "defaults": {"model": "lenet5", "dataset": "mnist", "protocol": "fast", "epochs": 1,
                         "n_train": n_train, "n_test": 2048, "fractions": [0.0, 0.3, 0.6],
                         "prune_modes": ["mask"], "latency": False, "device": "cpu"},
            "axes": {"regularizer": ["bridgeout"], "seed": list(range(cells))}}
    folder.mkdir(parents=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=8192)
    args = ap.parse_args()
    from bridgeout import executors
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, args.workers):
            spec = _spec(Path(tmp) / f"w{n}", args.cells, args.n_train)
            log = io.StringIO()
            t0 = time.perf_counter()
            rc = executors.run_local(spec, workers=n, threads=args.threads, out=log)
            times[n] = time.perf_counter() - t0
            if rc != 0:
                sys.exit(f"the grid with {n} worker(s) failed (exit {rc}):\n{log.getvalue()}")
            print(f"{n} worker(s) x {args.threads} thread(s): {args.cells} cells in {times[n]:.1f} s "
                  f"({times[n] / args.cells:.1f} s per cell)")
    print(f"speed-up of {args.workers} workers over 1: {times[1] / times[args.workers]:.2f}x "
          f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d', time.gmtime())})")


if __name__ == "__main__":
    main()
