"""Re-derive a recorded run: read it back from the tables, then re-execute it or reload its weights.

:func:`recorded` reads a run as the committed tables hold it (its ``runs`` row, its own
``pruning`` rows, its ``history``) with the parameters papermill injected into its executed
notebook (:func:`cell_parameters`); :func:`rerun` re-executes that notebook into a scratch
folder, training included, and :func:`from_weights` reloads the run's kept weights (SHA-256
checked) and prunes them again with the recorded sweep settings. Both return a
:class:`Recorded` run; comparing it with the recorded one and giving a verdict is
:mod:`bridgeout.verify`, which re-exports these names.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import experiment, results
from .experiment import _repo_path, NOTEBOOK, REPO_ROOT

__all__ = ["Recorded", "recorded", "cell_parameters", "rerun", "from_weights"]


@dataclass
class Recorded:
    """A run as the committed tables hold it: its ``runs`` row, its own ``pruning`` rows (not
    those of later passes), its ``history`` and the notebook parameters that produced it.

    Attributes:
        run: the ``runs`` row.
        pruning: the run's own ``pruning`` rows (those without a ``notebook`` of a later pass).
        history: the ``history`` rows.
        params: the parameters injected into the executed notebook (empty without one).
        results_dir: the folder of the tables.
    """

    run: pd.Series
    pruning: pd.DataFrame
    history: pd.DataFrame
    params: dict
    results_dir: Path


# ----------------------------------------------------------------------------- recorded
def cell_parameters(notebook) -> dict:
    """The parameters papermill injected into an executed notebook (its cell tagged
    ``injected-parameters``), as Python values.

    Args:
        notebook: the executed notebook's path.

    Returns:
        ``{name: value}`` of the cell's simple assignments.

    Raises:
        ValueError: the notebook is missing or has no cell tagged ``injected-parameters``.
    """
    import nbformat
    path = Path(notebook)
    if not path.is_file():
        raise ValueError(f"{path}: the run's executed notebook is not there; its parameters cannot be read back")
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    out[node.targets[0].id] = ast.literal_eval(node.value)
            return out
    raise ValueError(f"{path}: no cell tagged 'injected-parameters'; it was not executed by papermill")


def recorded(run_id: str, results_dir="data/results") -> Recorded:
    """The recorded run ``run_id`` from the tables in ``results_dir`` (``ValueError`` when
    it is not there or its notebook cannot be read).

    Args:
        run_id: the run id.
        results_dir: the folder of the tables (relative: from the repository root).

    Returns:
        the :class:`Recorded` run.

    Raises:
        ValueError: as above, or a malformed table.
    """
    root = _repo_path(results_dir)
    runs = results.load("runs", root)
    hit = runs[runs["run_id"] == run_id]
    if hit.empty:
        raise ValueError(f"run_id {run_id!r} is not in {results.path('runs', root)}; pass the id of a recorded run")
    run = hit.iloc[0]
    pr = results.load("pruning", root)
    pr = pr[(pr["run_id"] == run_id) & (pr["notebook"].fillna("") == "")].reset_index(drop=True)
    hist = results.load("history", root)
    hist = hist[hist["run_id"] == run_id].reset_index(drop=True)
    params = cell_parameters(_repo_path(run["notebook"])) if run["notebook"] else {}
    return Recorded(run=run, pruning=pr, history=hist, params=params, results_dir=root)


# ---------------------------------------------------------------------------- re-derive
def rerun(rec: Recorded, scratch, *, log_output: bool = False) -> Recorded:
    """Re-execute the run's notebook with its recorded parameters into ``scratch`` (tables in
    ``scratch/results``, weights in ``scratch/weights``, the notebook as
    ``scratch/<run_id>.ipynb``; no checkpoint, so it trains from the start). Returns the
    re-derived run read from ``scratch/results``.

    Args:
        rec: the recorded run (:func:`recorded`).
        scratch: the folder to write into; not the recorded tables' folder or inside it.
        log_output: keyword-only; echo the notebook's output.

    Returns:
        the re-derived :class:`Recorded` run.

    Raises:
        ValueError: the run has no executed notebook to take its parameters from, or
            ``scratch`` is (inside) the recorded tables' folder.
    """
    import papermill as pm

    if not rec.params:
        raise ValueError(f"run {rec.run['run_id']!r} has no executed notebook to take its parameters from")
    scratch = Path(scratch).expanduser().resolve()
    if scratch == rec.results_dir.resolve() or rec.results_dir.resolve() in (scratch, *scratch.parents):
        raise ValueError(f"scratch {scratch} is (inside) the recorded tables' folder {rec.results_dir}; "
                         f"pass a separate folder")
    scratch.mkdir(parents=True, exist_ok=True)
    run_id = rec.run["run_id"]
    out_nb = scratch / f"{run_id}.ipynb"
    params = {**rec.params, "results_dir": str(scratch / "results"), "weights_dir": str(scratch / "weights"),
              "notebook_path": str(out_nb), "checkpoint_dir": None, "run_id": run_id}
    pm.execute_notebook(str(REPO_ROOT / NOTEBOOK), str(out_nb), parameters=params, kernel_name="python3",
                        cwd=str(REPO_ROOT), progress_bar=False, log_output=log_output)
    return recorded(run_id, scratch / "results")


def from_weights(rec: Recorded, *, data_root=None, progress: bool = False) -> Recorded:
    """Re-derive the run's pruning rows from its kept weights, without training: load them
    (SHA-256 checked against ``runs.weights_sha256``), evaluate them unpruned and sweep with
    the recorded settings (latency not measured). The unpruned accuracy is compared, not
    required to match (that is :func:`compare`'s job). The history is the recorded one
    (nothing to re-derive without training).

    Args:
        rec: the recorded run (:func:`recorded`).
        data_root: keyword-only; the data folder (default: the recorded ``data_root``).
        progress: keyword-only; show the sweep's progress bar.

    Returns:
        the re-derived :class:`Recorded` run: its ``final_test_acc`` (or, with
        ``select="best_test"``, ``best_test_acc``) replaced by the new evaluation, its
        ``pruning`` the new sweep.

    Raises:
        ValueError: the run kept no weights, the weights' hash differs, or its parameters or
            data are not valid here.
    """
    from . import again  # deferred: loads torch
    from . import train  # deferred: loads torch
    from . import weights  # deferred: loads torch
    run = rec.run
    if not (isinstance(run.get("weights"), str) and run["weights"]):
        raise ValueError(f"run {run['run_id']!r} has no kept weights (runs.weights is empty); "
                         f"use a full re-execution instead (bridgeout verify RUN_ID without --from-weights)")
    base = again._params_of(run, "cpu", data_root if data_root is not None else rec.params.get("data_root"))
    sweep_keys = ("prune_modes", "prune_criteria", "prune_scopes", "prune_recalibrate_bn", "fractions", "quirks")
    params = experiment.validate_params({**base, **{k: rec.params[k] for k in sweep_keys if k in rec.params},
                                         "latency": False})
    dd = experiment.load_data(params)
    model = experiment.build_model(params, dd.num_classes)
    model.load_state_dict(weights.load(experiment._repo_path(run["weights"]), run["weights_sha256"]))
    model.eval()
    acc = float(train.evaluate(model, dd)["acc"])
    sweep = experiment.sweep_model(params, model, dd, progress=progress)
    sweep.insert(0, "run_id", run["run_id"])
    new_run = run.copy()
    new_run[("final_test_acc" if params["select"] == "final" else "best_test_acc")] = acc
    return Recorded(run=new_run, pruning=sweep, history=rec.history.copy(), params=rec.params,
                    results_dir=rec.results_dir)
