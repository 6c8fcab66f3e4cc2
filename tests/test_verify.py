"""Tests of the kept weights (bridgeout.weights), `bridgeout verify` (bridgeout.verify) and the
`bridgeout` console script (bridgeout.cli): a smoke cell executed by papermill is re-executed
and re-derived from its weights (identical on the same machine), and a doctored table is
reported as differing, with exit code 1; bad input exits 2 and writes nothing."""
from __future__ import annotations

import shutil

import papermill as pm
import pandas as pd
import pytest
import torch

from bridgeout import cli, experiment, results, verify, weights
from tests.synthetic import write_synthetic_mnist


# ------------------------------------------------------------------------------ weights
def test_weights_round_trip_is_exact_fp32_and_hash_checked(tmp_path):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    bn(torch.randn(4, 3, 2, 2))
    state = {**{f"bn.{k}": v for k, v in bn.state_dict().items()},
             "conv.weight": torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last),
             "half": torch.randn(5).to(torch.bfloat16)}
    digest, size = weights.save(state, tmp_path / "w" / "r.safetensors", {"run_id": "r", "q": 1.5})
    path = tmp_path / "w" / "r.safetensors"
    assert size == path.stat().st_size and digest == weights.sha256(path)
    back = weights.load(path, digest)
    assert back["half"].dtype == torch.float32 and back["bn.num_batches_tracked"].dtype == torch.int64
    for k, v in state.items():
        assert torch.equal(back[k], v.float() if v.is_floating_point() else v), k
    assert weights.metadata(path) == {"run_id": "r", "q": 1.5}
    # equal weights, equal bytes
    assert weights.save(state, tmp_path / "again.safetensors", {"run_id": "r", "q": 1.5})[0] == digest
    with pytest.raises(ValueError, match="differs from the recorded"):
        weights.load(path, "0" * 64)
    with pytest.raises(ValueError, match="no weights file"):
        weights.load(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        weights.load(tmp_path / "bad.safetensors")
    assert not list(tmp_path.glob("**/*.tmp*"))


def test_tolerance_is_checked():
    with pytest.raises(ValueError, match="tolerance unpruned"):
        verify.Tolerance(unpruned=5)
    with pytest.raises(ValueError, match="pruning_max"):
        verify.Tolerance(pruning_max=-0.1)


# --------------------------------------------------------------------- a recorded cell
@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """One smoke cell executed through the experiment notebook, as the grid runner does."""
    tmp = tmp_path_factory.mktemp("verify")
    data = write_synthetic_mnist(tmp / "data", n_train=256, n_test=200)
    nb = tmp / "runs" / "cell.ipynb"
    nb.parent.mkdir()
    params = {"model": "lenet5", "dataset": "mnist", "regularizer": "bridgeout", "protocol": "smoke",
              "data_root": str(data), "results_dir": str(tmp / "results"), "device": "cpu", "grid": "g",
              "fractions": [0.0, 0.3, 0.6], "latency": False, "prune_modes": ["mask", "remove"],
              "prune_recalibrate_bn": [False, True], "notebook_path": str(nb), "precision": "bf16"}
    pm.execute_notebook(str(results.REPO_ROOT / experiment.NOTEBOOK), str(nb), parameters=params,
                        kernel_name="python3", cwd=str(results.REPO_ROOT), progress_bar=False)
    run = results.load("runs", tmp / "results").iloc[0]
    return {"tmp": tmp, "run_id": run["run_id"], "results": tmp / "results", "run": run}


def test_the_cell_kept_its_weights_and_precision(cell):
    run = cell["run"]
    assert run["precision"] == "bf16" and "-bf16-" in run["run_id"]
    assert run["weights"] == str(cell["tmp"] / "weights" / f"{cell['run_id']}.safetensors")
    assert weights.sha256(run["weights"]) == run["weights_sha256"]
    assert weights.metadata(run["weights"])["run_id"] == cell["run_id"]


def test_rerun_and_from_weights_are_identical_on_the_same_machine(cell, tmp_path):
    rec = verify.recorded(cell["run_id"], cell["results"])
    assert rec.params["precision"] == "bf16" and len(rec.pruning) == 12
    new = verify.rerun(rec, tmp_path / "scratch")
    c = verify.compare(rec, new)
    assert c.verdict == "identical", verify.report(c)
    assert (tmp_path / "scratch" / "results" / "runs.csv").is_file()
    c = verify.compare(rec, verify.from_weights(rec))
    assert c.verdict == "identical", verify.report(c)
    text = verify.report(c)
    assert "verdict: IDENTICAL" in text and "recorded  : commit" in text and "re-derived: commit" in text


def test_a_doctored_table_differs_and_small_changes_are_within_tolerance(cell, tmp_path):
    doctored = tmp_path / "results"
    shutil.copytree(cell["results"], doctored)
    pr = results.load("pruning", doctored)
    i = pr.index[(pr["fraction"] == 0.3) & (pr["mode"] == "mask") & ~pr["recalibrate_bn"]][0]
    pr.loc[i, "test_acc"] = min(1.0, pr.loc[i, "test_acc"] + 0.005)       # half a point: within tolerance
    results.atomic_write_csv(results.path("pruning", doctored), pr)
    out = tmp_path / "verify.csv"
    assert cli.main(["verify", cell["run_id"], "--results-dir", str(doctored), "--from-weights",
                     "--record", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["verdict"] == "within tolerance" and row["pruning_max_abs_diff"] == pytest.approx(0.005)
    pr.loc[i, "test_acc"] = (pr.loc[i, "test_acc"] + 0.5) % 1.0           # 50 points off: differs
    results.atomic_write_csv(results.path("pruning", doctored), pr)
    assert cli.main(["verify", cell["run_id"], "--results-dir", str(doctored), "--from-weights",
                     "--record", str(out)]) == 1
    rows = pd.read_csv(out)
    assert len(rows) == 1 and rows.iloc[0]["verdict"] == "differs"        # one row per run, how and machine
    rec = verify.recorded(cell["run_id"], doctored)
    c = verify.compare(rec, verify.from_weights(rec))
    assert c.verdict == "differs" and any("largest pruning-row" in r for r in c.summary["reasons"])


def test_bad_input_exits_2_and_touches_nothing(cell, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in cell["results"].iterdir() if p.is_file()}
    assert cli.main(["verify", "no-such-run", "--results-dir", str(cell["results"])]) == 2
    assert "is not in" in capsys.readouterr().err
    assert cli.main(["verify", cell["run_id"], "--results-dir", str(cell["results"]),
                     "--tol-unpruned", "3"]) == 2
    assert "tolerance unpruned" in capsys.readouterr().err
    rec = verify.recorded(cell["run_id"], cell["results"])
    with pytest.raises(ValueError, match="inside"):
        verify.rerun(rec, cell["results"] / "scratch")
    runs = results.load("runs", cell["results"])
    runs["weights"] = ""
    nowts = tmp_path / "results"
    shutil.copytree(cell["results"], nowts)
    results.atomic_write_csv(results.path("runs", nowts), runs)
    assert cli.main(["verify", cell["run_id"], "--results-dir", str(nowts), "--from-weights"]) == 2
    assert "no kept weights" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in cell["results"].iterdir() if p.is_file()} == before


def test_cli_grid_is_the_runner_and_again_checks_its_arguments(capsys):
    assert cli.main(["grid", "notebooks/grids/smoke.yaml", "--dry-run"]) == 0
    assert "smoke" in capsys.readouterr().out
    assert cli.main(["again", "notebooks/passes/nope.yaml"]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["again", "notebooks/passes/criteria.yaml", "--shard", "3/2"]) == 2
    assert "--shard" in capsys.readouterr().err


def test_agreement_sentences():
    rows = [dict(run_id="mnist-a", verdict="identical", unpruned_diff=0.0, pruning_median_abs_diff=0.0,
                 pruning_max_abs_diff=0.0, recorded_cpu="Intel(R) Xeon(R) Processor", rederived_cpu="Intel(R) Xeon(R) Processor"),
            dict(run_id="cifar10-b", verdict="identical", unpruned_diff=0.0, pruning_median_abs_diff=0.0,
                 pruning_max_abs_diff=0.0, recorded_cpu="Intel(R) Xeon(R) Processor", rederived_cpu="Intel(R) Xeon(R) Processor"),
            dict(run_id="mnist-c", verdict="within tolerance", unpruned_diff=-0.0002, pruning_median_abs_diff=0.006,
                 pruning_max_abs_diff=0.105, recorded_cpu="AMD EPYC", rederived_cpu="Intel(R) Xeon(R) Processor")]
    a = verify.agreement(pd.DataFrame(rows))
    assert a["same_cpu"].startswith("2 runs (1 MNIST, 1 CIFAR-10; Intel Xeon → Intel Xeon): every one")
    assert "AMD EPYC → Intel Xeon" in a["other_cpu"] and "0.02 points" in a["other_cpu"]
    assert "at most 10.5 points" in a["other_cpu"] and "within tolerance 1" in a["other_cpu"]
    assert "0.5 points" in a["expect"]
    assert verify.agreement(pd.DataFrame(columns=list(verify.RECORD_COLUMNS)))["same_cpu"].startswith("No recorded")
