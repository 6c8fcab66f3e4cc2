"""Tests of bridgeout.again: a later pass reloads a recorded run's trained network from its
checkpoint (refusing one that is not the run's), adds pruning and latency rows once, and
resumes where it stopped."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from bridgeout import again, experiment, results, weights
from tests.synthetic import write_synthetic_mnist


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One finished LeNet-5 run on synthetic MNIST, with its checkpoint and tables."""
    tmp = tmp_path_factory.mktemp("again")
    data = write_synthetic_mnist(tmp / "data", n_train=256, n_test=200)
    params = {"model": "lenet5", "dataset": "mnist", "regularizer": "bridgeout", "protocol": "smoke",
              "data_root": str(data), "results_dir": str(tmp / "results"), "device": "cpu",
              "checkpoint_dir": str(tmp / "ckpt"), "fractions": [0.0, 0.5], "latency": False,
              "prune_modes": ["mask"], "grid": "g"}
    out = experiment.run_experiment(params, progress=False)
    return {"tmp": tmp, "params": params, "run_id": out["params"]["run_id"], "data": data, "runs": out["runs"]}


def _load(rec, **kw):
    kw = {"checkpoint_dir": rec["params"]["checkpoint_dir"], **kw}
    return again.load_trained(rec["run_id"], results_dir=rec["params"]["results_dir"],
                              data_root=rec["data"], **kw)


def test_reloaded_network_is_the_runs(recorded):
    t = _load(recorded)
    runs = results.load("runs", recorded["params"]["results_dir"])
    assert t.test_acc == pytest.approx(float(runs["final_test_acc"][0]), abs=again.ACC_TOLERANCE)
    assert t.params["regularizer"] == "bridgeout" and not t.model.training


def test_refuses_a_checkpoint_that_is_not_the_runs(recorded, tmp_path):
    with pytest.raises(ValueError, match="is not in"):
        again.load_trained("no-such-run", results_dir=recorded["params"]["results_dir"])
    # weights of another network under the run's name: the recorded accuracy is not reproduced
    src = torch.load(f"{recorded['params']['checkpoint_dir']}/{recorded['run_id']}/checkpoint.pt",
                     weights_only=True)
    src["model"] = {k: (torch.zeros_like(v) if v.is_floating_point() and "running_var" not in k else v)
                    for k, v in src["model"].items()}
    (tmp_path / recorded["run_id"]).mkdir()
    torch.save(src, tmp_path / recorded["run_id"] / "checkpoint.pt")
    with pytest.raises(ValueError, match="recorded"):
        _load(recorded, checkpoint_dir=str(tmp_path))


def test_without_a_checkpoint_the_kept_weights_are_loaded_and_checked(recorded, tmp_path):
    run = recorded["runs"].iloc[0]
    wfile = results.REPO_ROOT / run["weights"] if not Path(run["weights"]).is_absolute() else Path(run["weights"])
    assert wfile.is_file() and run["weights_sha256"] == weights.sha256(wfile)
    t = _load(recorded, checkpoint_dir=str(tmp_path))          # no checkpoint there: the weights file
    assert t.test_acc == pytest.approx(run["final_test_acc"], abs=again.ACC_TOLERANCE)
    saved = wfile.read_bytes()
    try:
        wfile.write_bytes(saved[:-4] + b"\0\0\0\0")              # one tensor's last bytes changed
        with pytest.raises(ValueError, match="differs from the recorded"):
            _load(recorded, checkpoint_dir=str(tmp_path))
        wfile.unlink()
        with pytest.raises(ValueError, match="no weights file"):
            _load(recorded, checkpoint_dir=str(tmp_path))
    finally:
        wfile.write_bytes(saved)


def test_run_pass_adds_rows_once_and_names_its_notebook(recorded):
    rd = recorded["params"]["results_dir"]
    before = results.load("pruning", rd)
    kw = dict(criteria=["l1", "random"], fractions=[0.0, 0.5], results_dir=rd,
              checkpoint_dir=recorded["params"]["checkpoint_dir"], data_root=recorded["data"],
              notebook="nb/pass.ipynb", progress=False)
    s = again.run_pass([recorded["run_id"]], **kw)
    assert list(s["pruning_rows"]) == [4] and s["reloaded_acc"][0] == pytest.approx(s["recorded_acc"][0], abs=2e-4)
    after = results.load("pruning", rd)
    assert len(after) == len(before) + 4
    new = after[after["notebook"].fillna("") == "nb/pass.ipynb"]
    assert sorted(set(new["criterion"])) == ["l1", "random"]
    # the unpruned rows of the new criteria equal the run's own unpruned row
    base = before[(before["fraction"] == 0) & (before["criterion"] == "l2")]["test_acc"].iloc[0]
    assert set(new[new["fraction"] == 0]["test_acc"]) == {base}
    s2 = again.run_pass([recorded["run_id"]], **kw)      # resumed: nothing left to do
    assert list(s2["pruning_rows"]) == [0] and s2["reloaded_acc"].isna().all()
    assert len(results.load("pruning", rd)) == len(after)


def test_latency_rows_time_the_removed_network(recorded):
    t = _load(recorded)
    rows = again.latency_rows(t, fractions=[0.0, 0.5], batch_sizes=[1, 32], repeats=2, warmup=1,
                              notebook="nb/lat.ipynb")
    assert len(rows) == 2 * 2 * 2 and set(rows["runtime"]) == {"torch", "onnxruntime"}
    f = rows.groupby("fraction")["flops"].first()
    assert 0.15 * f[0.0] < f[0.5] < 0.6 * f[0.0]           # half the filters of each conv removed
    assert (rows["threads"] == 1).all() and (rows["latency_ms"] > 0).all()


def test_select_runs_and_quiet_check(recorded):
    rd = recorded["params"]["results_dir"]
    assert again.select_runs(["g"], results_dir=rd) == [recorded["run_id"]]
    assert again.select_runs(["g"], results_dir=rd, shard="2/2") == []
    with pytest.raises(ValueError, match=r"grid\(s\) \['nope'\]"):
        again.select_runs(["nope"], results_dir=rd)
    with pytest.raises(ValueError, match="grids must be a non-empty list of grid names, got 'g'"):
        again.select_runs("g", results_dir=rd)
    with pytest.raises(ValueError, match="shard must be 'k/n'"):
        again.select_runs(["g"], results_dir=rd, shard="3/2")
    busy = again.cpu_busy(0.2)
    assert 0.0 <= busy <= 1.0
    with pytest.raises(RuntimeError, match="not quiet"):
        again.require_quiet(limit=-1.0, seconds=0.2)


def test_prune_again_notebook_runs_a_pass(recorded, tmp_path):
    import papermill
    out = tmp_path / "pass.ipynb"
    papermill.execute_notebook(
        "notebooks/prune_again.ipynb", str(out), kernel_name="python3", progress_bar=False,
        parameters={"grids": ["g"], "criteria": ["l1"], "fractions": [0.0, 0.5],
                    "results_dir": recorded["params"]["results_dir"],
                    "checkpoint_dir": recorded["params"]["checkpoint_dir"], "data_root": str(recorded["data"]),
                    "latency_fractions": [0.5], "batch_sizes": [1], "repeats": 1, "quiet_limit": 1.0,
                    "notebook_path": str(out)})
    assert "pruning rows and" in out.read_text()
    lat = results.load("latency", recorded["params"]["results_dir"])
    assert len(lat) == 2 and set(lat["notebook"]) == {str(out)}


def test_filter_stats_pass_rewrites_filter_rows_from_the_weights(recorded, tmp_path):
    import shutil
    rd, rid = Path(recorded["params"]["results_dir"]), recorded["run_id"]
    own = results.load("filters", rd)
    own = own[own["run_id"] == rid].reset_index(drop=True)
    assert len(own) == 6 + 16                                   # LeNet-5: two convs
    t = _load(recorded)
    pd.testing.assert_frame_equal(again.filter_rows(t).reset_index(drop=True), own)   # re-derived = recorded
    kw = dict(criteria=[], checkpoint_dir=recorded["params"]["checkpoint_dir"], data_root=recorded["data"],
              filter_stats=True, progress=False)
    s = again.run_pass([rid], results_dir=rd, **kw)
    assert list(s["filter_rows"]) == [0] and s["reloaded_acc"].isna().all()   # complete: nothing reloaded
    # a table without the run's filter rows: the pass writes them, equal to the run's own
    bare = tmp_path / "results"
    bare.mkdir()
    for name in ("runs", "history", "pruning"):
        shutil.copy2(results.path(name, rd), results.path(name, bare))
    s = again.run_pass([rid], results_dir=bare, **kw)
    assert list(s["filter_rows"]) == [len(own)] and list(s["pruning_rows"]) == [0]
    pd.testing.assert_frame_equal(results.load("filters", bare).reset_index(drop=True), own)
    assert list(again.run_pass([rid], results_dir=bare, **kw)["filter_rows"]) == [0]   # resumed: done


def test_published_pruner_rows_are_their_own_and_kept_out_of_joined_means(recorded, tmp_path):
    import shutil
    rd, rid = Path(recorded["params"]["results_dir"]), recorded["run_id"]
    root = tmp_path / "results"
    shutil.copytree(rd, root)
    kw = dict(criteria=["l2"], modes=["mask", "remove"], fractions=[0.0, 0.5], results_dir=root,
              checkpoint_dir=recorded["params"]["checkpoint_dir"], data_root=recorded["data"], progress=False)
    plain = results.load("pruning", root)
    s = again.run_pass([rid], pruner="published", **kw)
    # the run recorded mask rows only: the published pruner's mask rows and the (plain) remove rows
    # are new; the published pruner's remove rows are the plain pruner's, keyed as such
    assert list(s["pruning_rows"]) == [4]
    assert set(zip(*[results.load("pruning", root).query("mode == 'remove'")[c] for c in ("pruner",)])) == {("plain",)}
    pr = results.load("pruning", root)
    pub = pr[pr["pruner"] == "published"]
    assert len(pub) == 2 and set(pub["mode"]) == {"mask"}
    # LeNet-5 has no BatchNorm for the published pruner to reach: same accuracy as the plain rows
    base = plain[(plain["mode"] == "mask") & (plain["criterion"] == "l2")].set_index("fraction")["test_acc"]
    assert pub.set_index("fraction")["test_acc"].to_dict() == {f: base[f] for f in (0.0, 0.5)}
    assert set(results.load_joined(root)["pruner"]) == {"plain"}                    # means never mix
    assert set(results.load_joined(root, pruner=None)["pruner"]) == {"plain", "published"}
    assert set(results.load_joined(root, pruner="published")["pruner"]) == {"published"}
    with pytest.raises(ValueError, match="pruner"):
        results.load_joined(root, pruner="authors")
    assert list(again.run_pass([rid], pruner="published", **kw)["pruning_rows"]) == [0]   # resumed
