"""Notebooks with their smoke parameters, executed end to end.

nbval (``pytest --nbval-lax``, in a subprocess) runs a copy of each parameterised
notebook into which its smoke parameters have been injected the way papermill does
(a cell tagged ``injected-parameters`` after the ``parameters`` cell): every cell must
run without error. A notebook that gets a bad parameter value must stop with a readable
``ValueError`` in its output and write nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from bridgeout import results
from synthetic import write_synthetic_mnist

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


def train_and_prune_smoke(tmp: Path) -> dict:
    return {"model": "lenet5", "regularizer": "bridgeout", "dataset": "mnist", "protocol": "smoke",
            "n_train": 64, "n_test": 64, "fractions": [0.0, 0.3], "prune_modes": ["mask"], "latency": False,
            "device": "cpu", "data_root": str(write_synthetic_mnist(tmp / "data")),
            "results_dir": str(tmp / "results"), "grid": "nbval", "notebook_path": "nbval"}


def teach_smoke(tmp: Path) -> dict:
    write_synthetic_mnist(tmp / "data", n_train=256, n_test=256)
    return {"n_train": 256, "n_test": 256, "epochs": 1, "seed": 0}


def prune_again_smoke(tmp: Path) -> dict:
    """A finished smoke run with a checkpoint, then a pass over it by another criterion."""
    from bridgeout import experiment
    params = {**train_and_prune_smoke(tmp), "checkpoint_dir": str(tmp / "ckpt")}
    params.pop("notebook_path")
    experiment.run_experiment(params, progress=False)
    return {"grids": ["nbval"], "criteria": ["l1"], "fractions": [0.0, 0.3], "results_dir": params["results_dir"],
            "checkpoint_dir": params["checkpoint_dir"], "data_root": params["data_root"], "notebook_path": "nbval"}


#: notebook (relative to notebooks/) -> smoke parameters for a temporary folder (the test
#: points BRIDGEOUT_DATA at tmp/data). Every notebook with a `parameters` cell must be
#: listed here; SLOW ones run only without `-m "not slow"`.
SMOKE = {"train_and_prune.ipynb": train_and_prune_smoke, "teach.ipynb": teach_smoke,
         "prune_again.ipynb": prune_again_smoke}
SLOW = {"teach.ipynb"}


def _parameterised_notebooks() -> list[str]:
    found = []
    for path in sorted(NOTEBOOKS.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = nbformat.read(str(path), as_version=4)
        if any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
            found.append(path.relative_to(NOTEBOOKS).as_posix())
    return found


def test_every_parameterised_notebook_has_smoke_parameters():
    missing = sorted(set(_parameterised_notebooks()) - set(SMOKE))
    assert not missing, f"add smoke parameters for {missing} to tests/test_notebooks.py::SMOKE"


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else [])
                                  for n in sorted(SMOKE)])
def test_nbval_with_smoke_parameters(name, tmp_path):
    params = SMOKE[name](tmp_path)
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOKS / name)), params)
    copy = tmp_path / Path(name).name
    nbformat.write(nb, str(copy))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BRIDGEOUT_DATA": str(tmp_path / "data")}
    res = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), str(copy)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    if name == "train_and_prune.ipynb":
        runs = results.load("runs", params["results_dir"])
        assert len(runs) == 1 and runs["notebook"][0] == "nbval" and runs["n_train"][0] == 64
        assert len(results.load("pruning", params["results_dir"])) == 2
        assert list(results.load("history", params["results_dir"])["epoch"]) == [1]
    if name == "prune_again.ipynb":   # the pass added its l1 rows to the run's l2 rows, naming itself
        pr = results.load("pruning", params["results_dir"])
        assert sorted(pr["criterion"]) == ["l1", "l1", "l2", "l2"]
        assert list(pr[pr["criterion"] == "l1"]["notebook"]) == ["nbval", "nbval"]


@pytest.mark.parametrize("bad, message", [({"p": 1.5}, "ValueError: p must be in [0, 1), got 1.5")])
def test_bad_parameter_shows_readable_error_and_writes_nothing(tmp_path, bad, message):
    root = tmp_path / "results"
    # a table that already has a run: it must survive the failing notebook untouched
    results.append("history", pd.DataFrame([{
        "run_id": "earlier", "epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0,
        "test_acc": 0.5, "seconds": 1.0, "images_per_s": 10.0}]), root)
    before = results.path("history", root).read_bytes()
    params = {**train_and_prune_smoke(tmp_path), **bad}
    out = tmp_path / "executed.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(NOTEBOOKS / "train_and_prune.ipynb"), str(out), parameters=params,
                            kernel_name="python3", cwd=str(REPO), progress_bar=False)
    assert message in f"{err.value.ename}: {err.value.evalue}"
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1 and f"{errors[0].ename}: {errors[0].evalue}" == message
    assert results.path("history", root).read_bytes() == before
    assert not results.path("runs", root).exists() and not results.path("pruning", root).exists()
