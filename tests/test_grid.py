"""The grid runner and the experiment steps: parameter checks, specs, one real papermill
run of a tiny grid (one cell that works, one that fails), resume, retry, output trimming,
and the wheelhouse plan (offline)."""
from __future__ import annotations

import ast
import re
import io
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from bridgeout import grid, results, runner, wheelhouse
from synthetic import write_synthetic_mnist

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "train_and_prune.ipynb"
SPECS = sorted((REPO / "notebooks" / "grids").glob("*.yaml"))


def write_spec(path: Path, **overrides) -> Path:
    spec = {"name": "t", "notebook": str(NOTEBOOK), "results_dir": str(path.parent / "results"),
            "runs_dir": str(path.parent / "runs"),
            "defaults": {"model": "lenet5", "dataset": "mnist", "protocol": "smoke", "n_train": 64, "n_test": 64,
                         "fractions": [0.0, 0.5], "prune_modes": ["mask", "remove"], "latency": False,
                         "device": "cpu"},
            "axes": {"regularizer": ["bridgeout"]}}
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec))
    return path


# --------------------------------------------------------------------------- parameters
def test_parameters_match_the_notebook_parameters_cell():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign)
        defaults[node.targets[0].id] = ast.literal_eval(node.value)
    assert defaults == grid.PARAMETERS


def test_validate_params_fills_defaults_and_run_id():
    p = grid.validate_params({"regularizer": "dropout", "seed": 2})
    assert set(p) == set(grid.PARAMETERS)
    assert p["run_id"] == results.make_run_id(p) and p["run_id"].startswith("mnist-lenet5-w1-dropout-smoke-s2-")
    assert grid.validate_params({"run_id": "my-run"})["run_id"] == "my-run"


@pytest.mark.parametrize("bad, message", [
    ({"p": 1.5}, r"p must be in \[0, 1\), got 1.5"),
    ({"model": "vgg17"}, "unknown model 'vgg17'; valid choices: 'vgg16'"),
    ({"regularizer": "l2"}, "unknown regularizer 'l2'"),
    ({"dataset": "cifar10"}, "model 'lenet5' does not fit dataset 'cifar10'"),
    ({"q": 0}, "q must be a finite number > 0"),
    ({"target_fraction": 0.0}, r"target_fraction must be in \(0, 1\]"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"n_train": 2.5}, "n_train must be an integer >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"signed": "no"}, "signed must be True or False"),
    ({"select": "best"}, "unknown select 'best'"),
    ({"fractions": [0.0, 1.0]}, r"fractions must be in \[0, 1\)"),
    ({"fractions": []}, "fractions must be a non-empty list"),
    ({"prune_modes": ["cut"]}, "unknown prune_mode 'cut'"),
    ({"device": "gpu0"}, "device must be 'auto' or a torch device"),
    ({"run_id": "a b"}, "run_id must be letters"),
    ({"lr": 0.1}, r"unknown parameter\(s\) \['lr'\]"),
])
def test_validate_params_refuses_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        grid.validate_params(bad)


# --------------------------------------------------------------------------- specs
@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_shipped_specs_expand_and_validate(spec):
    cells = grid.expand(grid.load_spec(spec))
    assert len({c["run_id"] for c in cells}) == len(cells)
    assert all(c["grid"] == spec.stem and c["notebook_path"].endswith(f"{c['run_id']}.ipynb") for c in cells)
    expected = {"paper-cifar10": 9, "paper-cifar100": 9, "cpu-cifar10": 6, "cpu-cifar10-e12": 3, "cpu-cifar10-vgg": 12,
                "mnist-teaching": 9, "mnist-teaching-5seed": 15, "smoke": 1, "pilot-lambda": 5,
                "pilot-lambda-e8": 7, "cpu-cifar10-sparsity": 6, "mnist-noise-ablation": 24,
                "cpu-cifar10-bf16-parity": 6, "cpu-cifar10-resnet": 12, "cpu-cifar10-vgg-e52": 6,
                "cpu-cifar10-dropconnect-matched": 3}
    assert len(cells) == expected[spec.stem]
    if spec.stem.startswith("paper-"):
        assert {(c["model"], c["regularizer"]) for c in cells} == {
            (m, r) for m in ("vgg16", "resnet", "wrn28_10") for r in ("bridgeout", "dropout", "weight_decay")}
        assert all(c["protocol"] == "paper" and c["select"] == "final" and c["device"] == "auto"
                   and c["prune_modes"] == ["mask", "remove"] for c in cells)
    if spec.stem == "cpu-cifar10-sparsity":   # row for row with cpu-cifar10-vgg, lam from the pilot
        vgg = grid.expand(grid.load_spec(spec.with_name("cpu-cifar10-vgg.yaml")))[0]
        for k in ("model", "width", "protocol", "dataset", "epochs", "n_train", "fractions", "prune_modes",
                  "prune_recalibrate_bn", "select"):
            assert all(c[k] == vgg[k] for c in cells), k
        assert {(c["regularizer"], c["lam"]) for c in cells} == {("slimming", 1e-3), ("group_lasso", 1e-3)}
    if spec.stem == "cpu-cifar10-bf16-parity":   # each cell is a cpu-cifar10-vgg cell but for precision
        vgg = {(c["regularizer"], c["q"], c["signed"], c["seed"]): c
               for c in grid.expand(grid.load_spec(spec.with_name("cpu-cifar10-vgg.yaml")))}
        ignore = {"run_id", "notebook_path", "grid", "precision"}
        for c in cells:
            twin = vgg[(c["regularizer"], c["q"], c["signed"], c["seed"])]
            assert c["precision"] == "bf16" and twin["precision"] == "fp32"
            assert {k: v for k, v in c.items() if k not in ignore} == \
                   {k: v for k, v in twin.items() if k not in ignore}
    if spec.stem == "cpu-cifar10-resnet":   # the VGG comparison's arms and protocol, the paper's ResNet at width 1
        vgg = {(c["regularizer"], c["q"], c["signed"], c["seed"]): c
               for c in grid.expand(grid.load_spec(spec.with_name("cpu-cifar10-vgg.yaml")))}
        assert set(vgg) == {(c["regularizer"], c["q"], c["signed"], c["seed"]) for c in cells}
        same = ("protocol", "dataset", "epochs", "n_train", "fractions", "prune_modes", "prune_recalibrate_bn",
                "select", "p", "target_fraction", "device")
        for c in cells:
            twin = vgg[(c["regularizer"], c["q"], c["signed"], c["seed"])]
            assert {k: c[k] for k in same} == {k: twin[k] for k in same}
            assert (c["model"], c["width"], c["precision"]) == ("resnet", 1.0, "bf16")
        # two workers start with weight decay and Batch Bridgeout of seed 0
        assert [(c["regularizer"], c["q"], c["seed"]) for c in cells[:2]] == [("weight_decay", 1.5, 0),
                                                                             ("bridgeout", 1.5, 0)]
    if spec.stem in ("cpu-cifar10-vgg-e52", "cpu-cifar10-dropconnect-matched"):
        # each cell is a cell of the 26-epoch comparison but for the one setting varied
        twins = {(c["regularizer"], c["q"], c["signed"], c["seed"]): c
                 for name in ("cpu-cifar10-vgg", "cpu-cifar10-bf16-parity")   # bf16 twins win
                 for c in grid.expand(grid.load_spec(spec.with_name(f"{name}.yaml")))}
        varied = {"epochs"} if spec.stem.endswith("e52") else {"p", "precision"}
        ignore = {"run_id", "notebook_path", "grid"} | varied
        for c in cells:
            twin = twins[(c["regularizer"], c["q"], c["signed"], c["seed"])]
            assert {k: v for k, v in c.items() if k not in ignore} == \
                   {k: v for k, v in twin.items() if k not in ignore}
            assert c["precision"] == "bf16"
            if spec.stem.endswith("e52"):
                assert c["epochs"] == 52 and twin["epochs"] in (None, 26)
            else:
                assert (c["q"], c["signed"], c["p"]) == (2.0, True, 0.79)
    if spec.stem == "mnist-noise-ablation":    # one setting off the published noise at a time
        pub = {"p": 0.3, "q": 1.5, "target_fraction": 0.75, "signed": False}
        off = [tuple(k for k in pub if c[k] != pub[k]) for c in cells]
        assert all(len(o) <= 1 for o in off) and {o for o in off} == {(), ("p",), ("q",), ("target_fraction",),
                                                                         ("signed",)}
    if spec.stem == "cpu-cifar10":
        assert {(c["model"], c["width"]) for c in cells} == {("vgg16", 0.25), ("resnet", 0.5)}
    if spec.stem == "mnist-teaching":
        assert {(c["regularizer"], c["seed"]) for c in cells} == {
            (r, s) for r in ("bridgeout", "dropout", "weight_decay") for s in (0, 1, 2)}
    if spec.stem == "mnist-teaching-5seed":
        assert {(c["regularizer"], c["seed"]) for c in cells} == {
            (r, s) for r in ("bridgeout", "dropout", "weight_decay") for s in range(5)}
        assert all(c["protocol"] == "fast_lr0.05" and c["epochs"] == 3 for c in cells)


def test_axes_of_mappings_and_exclude(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", axes={
        "arch": [{"model": "vgg16", "width": 0.25}, {"model": "resnet", "width": 0.5}],
        "regularizer": ["bridgeout", "dropout"]},
        exclude=[{"model": "resnet", "regularizer": "dropout"}])
    s = yaml.safe_load(spec.read_text())
    s["defaults"].update(dataset="cifar10")
    del s["defaults"]["model"]
    spec.write_text(yaml.safe_dump(s))
    cells = grid.expand(grid.load_spec(spec))
    assert [(c["model"], c["width"], c["regularizer"]) for c in cells] == [
        ("vgg16", 0.25, "bridgeout"), ("vgg16", 0.25, "dropout"), ("resnet", 0.5, "bridgeout")]


@pytest.mark.parametrize("change, message", [
    ({"defaults": {"p": 1.5}}, r"p must be in \[0, 1\), got 1.5"),
    ({"axes": {"model": ["lenet5", "vgg17"]}}, r"cell \(model=vgg17\): unknown model 'vgg17'"),
    ({"defaults": {"learning_rate": 0.1}}, r"unknown parameter\(s\) \['learning_rate'\]; the notebook"),
    ({"defaults": {"run_id": "x"}}, r"\['run_id'\] are set by the runner"),
    ({"axes": {"regularizer": []}}, "axis 'regularizer' must be a non-empty list"),
    ({"axes": {"arch": ["vgg16"]}}, "axis 'arch' is not a notebook parameter"),
    ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    ({"axes": {"seed": [0, 0]}}, "have the same run id"),
])
def test_bad_spec_fails_before_anything_runs(tmp_path, change, message, capsys):
    spec = write_spec(tmp_path / "s.yaml")
    s = yaml.safe_load(spec.read_text())
    for key, value in change.items():
        if isinstance(value, dict) and key == "defaults":
            s[key].update(value)
        else:
            s[key] = value
    spec.write_text(yaml.safe_dump(s))
    assert grid.main([str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: grid spec {spec}") and re.search(message, err), err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_strip_outputs_keeps_notebooks_small():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    bar = [nbformat.v4.new_output("stream", name="stderr", text=f"\repoch 1: {i}%|") for i in range(0, 101, 10)]
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="a warning\n"), *bar,
        nbformat.v4.new_output("stream", name="stderr", text="\r" + " " * 40),
        nbformat.v4.new_output("stream", name="stdout", text="x" * 100_000),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "image/svg+xml": "<svg/>" * 10,
                                                     "application/vnd.jupyter.widget-view+json": {},
                                                     "text/plain": "<Figure>"}),
    ]
    nb.cells = [cell]
    nb.metadata["widgets"] = {"state": {}}
    out = grid.strip_outputs(nb)
    kinds = [(o.output_type, o.get("name")) for o in out.cells[0].outputs]
    assert kinds == [("stream", "stderr"), ("stream", "stdout"), ("display_data", None)]
    assert out.cells[0].outputs[0].text == "a warning\n"
    assert len(out.cells[0].outputs[1].text) < 20_100 and "characters cut" in out.cells[0].outputs[1].text
    assert set(out.cells[0].outputs[2].data) == {"image/png", "text/plain"}
    assert "widgets" not in out.metadata


# --------------------------------------------------------------------------- one real grid
@pytest.fixture(scope="module")
def ran_grid(tmp_path_factory):
    """Run a two-cell grid with papermill: a smoke LeNet-5 on synthetic MNIST (works) and a
    VGG on a CIFAR-10 archive whose labels are out of range (it passes the pre-flight, which
    reads only the array headers, and fails inside the notebook)."""
    tmp = tmp_path_factory.mktemp("grid")
    mp = pytest.MonkeyPatch()
    mp.setenv("BRIDGEOUT_DATA", str(write_synthetic_mnist(tmp / "data")))
    x = np.zeros((64, 32, 32, 3), np.uint8)
    np.savez(tmp / "data" / "cifar10.npz", x_train=x, y_train=np.full(64, 99), x_test=x, y_test=np.full(64, 99))
    mp.setenv("OMP_NUM_THREADS", "1")
    spec = write_spec(tmp / "spec.yaml", axes={
        "arch": [{"model": "lenet5", "dataset": "mnist"}, {"model": "vgg16", "dataset": "cifar10", "width": 0.0625}],
    })
    log = io.StringIO()
    rc = grid.run_grid(spec, out=log)
    yield {"tmp": tmp, "spec": spec, "rc": rc, "log": log.getvalue(), "cells": grid.expand(grid.load_spec(spec))}
    mp.undo()


def test_grid_writes_valid_linked_tables_and_records_failure(ran_grid):
    tmp, cells = ran_grid["tmp"], ran_grid["cells"]
    good, bad = cells[0]["run_id"], cells[1]["run_id"]
    assert ran_grid["rc"] == 1, ran_grid["log"]
    assert f"running {good}" in ran_grid["log"] and f"FAILED {bad}" in ran_grid["log"]
    runs = results.load("runs", tmp / "results")
    pruning = results.load("pruning", tmp / "results")
    history = results.load("history", tmp / "results")
    assert list(runs["run_id"]) == [good]
    row = runs.iloc[0]
    assert (row["grid"], row["model"], row["protocol"], row["n_train"], row["n_test"]) == ("t", "lenet5", "smoke", 64, 64)
    assert 0 <= row["final_test_acc"] <= 1 and row["epochs_done"] == row["epochs"] == 1
    assert sorted(zip(pruning["mode"], pruning["fraction"])) == [("mask", 0.0), ("mask", 0.5),
                                                                 ("remove", 0.0), ("remove", 0.5)]
    assert set(pruning["run_id"]) == set(history["run_id"]) == {good} and list(history["epoch"]) == [1]
    # the row links to the executed notebook, which carries the injected run id and a figure
    nb = nbformat.read(row["notebook"], as_version=4)
    assert Path(row["notebook"]) == tmp / "runs" / f"{good}.ipynb"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f'run_id = "{good}"' in injected[0].source
    pngs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 2
    assert Path(row["notebook"]).stat().st_size < 500_000
    # the failing cell: recorded with its error; its notebook shows the readable error
    failures = pd.read_csv(tmp / "runs" / "failures.csv")
    assert list(failures["run_id"]) == [bad]
    assert failures["error"][0].startswith("ValueError: ") and "labels must be in [0, 9]" in failures["error"][0]
    text = (tmp / "runs" / f"{bad}.ipynb").read_text()
    assert "ValueError" in text and "labels must be in [0, 9]" in text
    assert not list((tmp / "runs" / ".partial").iterdir())   # notebooks moved into place whole


def test_rerun_skips_finished_and_failed_cells(ran_grid, monkeypatch):
    tmp = ran_grid["tmp"]
    written = [t for t in results.TABLES if results.path(t, tmp / "results").exists()]
    assert {"runs", "pruning", "history", "filters"} <= set(written)
    before = {t: results.path(t, tmp / "results").read_bytes() for t in written}
    calls = []
    monkeypatch.setattr(runner, "_execute", lambda nb, out, params: calls.append(params["run_id"]))
    log = io.StringIO()
    assert grid.run_grid(ran_grid["spec"], out=log) == 1  # the failure is still outstanding
    assert calls == [] and "1 done, 1 failed before" in log.getvalue()
    good = ran_grid["cells"][0]["run_id"]
    assert grid.run_grid(ran_grid["spec"], only=good, out=io.StringIO()) == 0 and calls == []
    assert {t: results.path(t, tmp / "results").read_bytes() for t in written} == before
    # --dry-run lists the status of every cell
    log = io.StringIO()
    assert grid.run_grid(ran_grid["spec"], dry_run=True, out=log) == 0
    assert f"[  done] {good}" in log.getvalue() and "[failed]" in log.getvalue()


def test_retry_failed_reruns_only_the_failed_cell(ran_grid, monkeypatch, tmp_path):
    # on a copy of the runs folder, so that the other tests see the original
    import shutil
    spec = yaml.safe_load(ran_grid["spec"].read_text())
    for sub in ("runs", "results"):
        shutil.copytree(ran_grid["tmp"] / sub, tmp_path / sub)
        spec[f"{sub}_dir"] = str(tmp_path / sub)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    calls = []
    # a stand-in for the notebook that, the first time, finishes without writing its row
    monkeypatch.setattr(runner, "_execute", lambda nb, out, params: calls.append(params["run_id"]))
    log = io.StringIO()
    assert grid.run_grid(spec_path, retry_failed=True, out=log) == 1
    bad = ran_grid["cells"][1]["run_id"]
    assert calls == [bad] and "ran to the end but wrote no row" in log.getvalue()

    def fake_execute(nb, out, params):  # now it writes its row, as the real notebook does
        calls.append(params["run_id"])
        row = results.load("runs", tmp_path / "results").assign(run_id=params["run_id"], model="vgg16",
                                                                 dataset="cifar10")
        results.append("runs", row, tmp_path / "results")

    monkeypatch.setattr(runner, "_execute", fake_execute)
    assert grid.run_grid(spec_path, retry_failed=True, out=io.StringIO()) == 0
    assert calls == [bad, bad]
    assert not (tmp_path / "runs" / "failures.csv").exists()  # cleared once it succeeded
    assert grid.run_grid(spec_path, out=io.StringIO()) == 0 and calls == [bad, bad]  # all done now


# --------------------------------------------------------------------------- wheelhouse (offline)
def test_wheelhouse_plan_selects_non_torch_pins():
    p = wheelhouse.plan(python_version="3.12", platform="manylinux_2_28_x86_64")
    names = {wheelhouse.normalize(r.split("==")[0]) for r in p.requirements}
    assert {"papermill", "ipykernel", "nbformat", "torch-pruning", "tqdm", "pyyaml", "seaborn", "pandas",
            "jupyter-client", "pyzmq"} <= names
    assert not names & {"torch", "torchvision", "triton"}
    assert not any(n.startswith(("nvidia-", "cuda-")) for n in names)
    excluded = {wheelhouse.normalize(r.split("==")[0]) for r in p.excluded}
    assert {"torch", "torchvision", "triton"} <= excluded
    lock = wheelhouse.read_lock(REPO / "requirements.lock")
    assert len(p.requirements) + len(p.excluded) == len(lock)
    assert all("==" in r for r in p.requirements)
    p2 = wheelhouse.plan(python_version="3.11", platform="manylinux_2_28_x86_64", extra_exclude=["jupyter-*"])
    kept = {wheelhouse.normalize(r.split("==")[0]) for r in p2.requirements}
    assert not any(n.startswith("jupyter-") for n in kept)  # the pattern excludes jupyter-*, e.g. jupyter-book
    assert "jupyterlab-pygments" in kept  # ...but not names that merely start with "jupyter"


def test_wheelhouse_platform_tags_and_errors(tmp_path):
    tags = wheelhouse.platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-1] == "manylinux1_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64"} <= set(tags)
    assert "manylinux_2_29_x86_64" not in tags and len(tags) == 24 + 3
    assert wheelhouse.platform_tags("manylinux2014_aarch64")[0] == "manylinux_2_17_aarch64"
    assert wheelhouse.platform_tags("win_amd64") == ["win_amd64"]
    with pytest.raises(ValueError, match="python_version must look like '3.12'"):
        wheelhouse.plan(python_version="312")
    with pytest.raises(ValueError, match="platform must be a wheel platform tag"):
        wheelhouse.plan(platform="linux x86")
    bad = tmp_path / "req.txt"
    bad.write_text("# comment\nnumpy==2.0\ntorch>=2\n")
    with pytest.raises(ValueError, match=r"req.txt, line 3: expected 'name==version'"):
        wheelhouse.read_lock(bad)


def test_only_matching_nothing_is_an_error(ran_grid):
    log = io.StringIO()
    assert grid.run_grid(ran_grid["spec"], only="no-such-run", out=log) == 2
    assert "no cell matches --only 'no-such-run'" in log.getvalue()


def test_notebook_default_results_dir_is_not_the_committed_tables():
    assert grid.PARAMETERS["results_dir"] == "data/results/scratch"
    ignored = (grid.REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "data/results/scratch/" in ignored


def test_sigterm_interrupts_with_130(monkeypatch, capsys):
    import os
    import signal

    def fake_run_grid(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached")

    monkeypatch.setattr(grid, "run_grid", fake_run_grid)
    assert grid.main([str(NOTEBOOK)]) == 130
    assert "interrupted; rerun the same command to resume" in capsys.readouterr().err


# --------------------------------------------------------------------------- pre-flight
def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _preflight_case(tmp_path, monkeypatch, **defaults):
    monkeypatch.setenv("BRIDGEOUT_DATA", str(write_synthetic_mnist(tmp_path / "data")))
    spec = write_spec(tmp_path / "spec.yaml")
    s = yaml.safe_load(spec.read_text())
    s["defaults"].update(defaults)
    spec.write_text(yaml.safe_dump(s))
    # earlier results that must survive untouched
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.csv").write_text(",".join(results.RUNS_SCHEMA) + "\n")
    return spec


@pytest.mark.parametrize("defaults, message", [
    ({"data_root": "/nonexistent/data"}, r"dataset mnist for 1 cell\(s\) .*mnist not found: the data folder "
                                         r"/nonexistent/data does not exist"),
    ({"n_train": 1000}, r"n_train=1000 but mnist has only 64 training images \(allowed: 1\.\.64"),
    ({"n_test": 65}, r"n_test=65 but mnist has only 64 test images"),
    ({"device": "cuda:7"}, r"device 'cuda:7' is not available here .* CUDA device\(s\)"),
])
def test_preflight_refuses_before_any_kernel_and_marks_no_cell(tmp_path, monkeypatch, defaults, message):
    spec = _preflight_case(tmp_path, monkeypatch, **defaults)
    calls = []
    monkeypatch.setattr(runner, "_execute", lambda nb, out, params: calls.append(params["run_id"]))
    before = _snapshot(tmp_path)
    log = io.StringIO()
    assert grid.run_grid(spec, out=log) == 2
    assert calls == [] and "cannot run here, nothing was started" in log.getvalue()
    assert re.search(message, log.getvalue()), log.getvalue()
    assert _snapshot(tmp_path) == before              # byte-identical; no failures.csv, no notebook
    assert not (tmp_path / "runs" / "failures.csv").exists()


@pytest.mark.parametrize("content, message", [
    ("run_id,date,error,notebook\nr1,2026-01-01T00:00:00Z,boom,x.ipynb", r"failures.csv, line 2: the last line is incomplete"),
    ("id,when\nr1,now\n", r"failures.csv: missing column\(s\) \['run_id', 'date', 'error', 'notebook'\]"),
    ("run_id,date,error,notebook\nbad id!,2026-01-01T00:00:00Z,boom,x.ipynb\n", r"failures.csv, line 2: run_id 'bad id!'"),
])
def test_a_damaged_failures_table_is_named_and_left_alone(tmp_path, monkeypatch, capsys, content, message):
    spec = _preflight_case(tmp_path, monkeypatch)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "failures.csv").write_text(content)
    monkeypatch.setattr(runner, "_execute", lambda nb, out, params: pytest.fail("a kernel started"))
    before = _snapshot(tmp_path)
    assert grid.main([str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err) and "Traceback" not in err, err
    assert _snapshot(tmp_path) == before


def test_an_unwritable_results_folder_is_refused_before_running(tmp_path, monkeypatch):
    import os
    if os.geteuid() == 0:
        spec = _preflight_case(tmp_path, monkeypatch)
        # root can write anywhere: stand in a file where the runs folder should be
        s = yaml.safe_load(spec.read_text())
        s["runs_dir"] = str(tmp_path / "results" / "runs.csv" / "runs")
        spec.write_text(yaml.safe_dump(s))
        expected = r"runs_dir .*runs.csv/runs is not writable"
    else:
        spec = _preflight_case(tmp_path, monkeypatch)
        (tmp_path / "results").chmod(0o500)
        expected = r"results_dir .*results is not writable"
    monkeypatch.setattr(runner, "_execute", lambda nb, out, params: pytest.fail("a kernel started"))
    log = io.StringIO()
    try:
        assert grid.run_grid(spec, out=log) == 2
    finally:
        (tmp_path / "results").chmod(0o700)
    assert re.search(expected, log.getvalue()), log.getvalue()
