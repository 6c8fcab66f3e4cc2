"""Executors: local workers through submitit give the sequential runner's tables; SLURM
through submitit against a real single-node SLURM where one can be started."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bridgeout import executors, grid, results
from synthetic import write_synthetic_mnist

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "train_and_prune.ipynb"
#: columns that measure time or name the folder, not the computation
# Columns that say when, how fast or where (a path under tmp_path) a cell ran: they differ
# between the two folders by design; the weights' sha256 still compares their contents.
TIMING = {"runs": ["wall_time_s", "date", "notebook", "weights"], "history": ["seconds", "images_per_s"],
          "pruning": ["latency_b1_ms", "latency_b128_ms", "prune_s", "adjust_s", "eval_s", "cost_s"],
          "filters": [], "latency": ["latency_ms", "date"]}


def _spec(folder: Path, seeds=(0, 1)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": "t", "notebook": str(NOTEBOOK), "results_dir": str(folder / "results"),
            "runs_dir": str(folder / "runs"),
            "defaults": {"model": "lenet5", "dataset": "mnist", "protocol": "smoke", "n_train": 64, "n_test": 64,
                         "fractions": [0.0, 0.5], "prune_modes": ["mask", "remove"], "latency": False,
                         "device": "cpu"},
            "axes": {"regularizer": ["bridgeout"], "seed": list(seeds)}}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _tables(folder: Path) -> dict:
    out = {}
    for name in results.TABLES:
        df = results.load(name, folder / "results").drop(columns=TIMING[name])
        out[name] = df.sort_values(list(df.columns[:3])).reset_index(drop=True)
    return out


# --------------------------------------------------------------------------- resources
def test_worker_resources_split_threads_and_gpus():
    assert executors.worker_resources(2, cpus=2, gpus=0) == [{"threads": 1, "gpu": None}] * 2
    assert executors.worker_resources(3, cpus=16, gpus=0) == [{"threads": 5, "gpu": None}] * 3
    assert executors.worker_resources(4, cpus=2, gpus=0)[0]["threads"] == 1      # never 0 threads
    assert [w["gpu"] for w in executors.worker_resources(4, cpus=32, gpus=8)] == [0, 1, 2, 3]
    assert [w["gpu"] for w in executors.worker_resources(3, cpus=32, gpus=1)] == [0, 0, 0]   # one GPU shared
    assert executors.worker_resources(2, cpus=8, gpus=0, threads=3)[1]["threads"] == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"workers must be an integer >= 1, got {bad!r}"):
            executors.worker_resources(bad, cpus=2, gpus=0)
    with pytest.raises(ValueError, match="threads per worker must be an integer >= 1"):
        executors.worker_resources(2, cpus=2, gpus=0, threads=0)


def test_bad_executor_options_exit_2_naming_the_value(tmp_path, capsys):
    spec = _spec(tmp_path)
    assert grid.main([str(spec), "--executor", "local", "--workers", "0"]) == 2
    assert "workers must be an integer >= 1, got 0" in capsys.readouterr().err
    assert grid.main([str(spec), "--executor", "slurm", "--array-parallelism", "0"]) == 2
    assert "array_parallelism must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- local workers
@pytest.mark.slow
def test_two_local_workers_give_the_sequential_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGEOUT_DATA", str(write_synthetic_mnist(tmp_path / "data")))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    seq, par = _spec(tmp_path / "seq"), _spec(tmp_path / "par")
    assert grid.run_grid(seq, out=io.StringIO()) == 0
    log = io.StringIO()
    t0 = time.perf_counter()
    assert executors.run_local(par, workers=2, threads=1, out=log) == 0, log.getvalue()
    wall = time.perf_counter() - t0
    text = log.getvalue()
    assert "worker 1/2" in text and "worker 2/2" in text and "2 of 2 cells done, 0 failed" in text, text
    a, b = _tables(tmp_path / "seq"), _tables(tmp_path / "par")
    assert len(a["runs"]) == 2 and len(a["pruning"]) == 8
    for name in results.TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=1e-6, obj=name)
    # each worker ran a cell of its own: both logs name a different run id
    logs = sorted((tmp_path / "par" / "runs" / ".submitit").glob("*_log.out"))
    ran = [line for f in logs for line in f.read_text().splitlines() if "] running " in line]
    assert len(ran) == 2 and len({line.split()[-1] for line in ran}) == 2, (ran, wall)
    # the notebooks are in place, none left half-written
    assert sorted(p.name for p in (tmp_path / "par" / "runs").glob("*.ipynb")) == \
        sorted(f"{r}.ipynb" for r in b["runs"]["run_id"])
    assert not list((tmp_path / "par" / "runs" / ".partial").iterdir())
    # a second run has nothing to do
    assert executors.run_local(par, workers=2, threads=1, out=io.StringIO()) == 0


# --------------------------------------------------------------------------- SLURM
_MARK = "# written by bridgeout's tests/test_executors.py"


def _start_slurm(tmp: Path, started: list) -> str | None:
    """Start munge + a one-node slurmctld/slurmd from Debian's packages (installing them when
    root and apt are there); returns None when running, else why it cannot. A SLURM that
    was configured by someone else is not touched: the test skips. Daemons this function
    starts are appended to ``started`` (stopped by the caller)."""
    if shutil.which("sbatch") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None or os.environ.get("BRIDGEOUT_NO_APT"):
            return "SLURM is not installed (Debian: apt-get install slurm-wlm munge) and cannot be installed here"
        r = subprocess.run("apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || "
                           "(apt-get update -qq && apt-get install -y -qq slurm-wlm munge) >/dev/null 2>&1",
                           shell=True, timeout=900)
        if r.returncode != 0 or shutil.which("sbatch") is None:
            return "SLURM could not be installed with apt-get (slurm-wlm munge)"
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip() or "localhost"
    cpus = os.cpu_count() or 1
    mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and _MARK not in conf.read_text():
        return f"{conf} exists and was not written by this test: not touching a configured SLURM"
    if os.geteuid() != 0:
        return "starting a test SLURM needs root"
    conf.parent.mkdir(parents=True, exist_ok=True)
    state = tmp / "slurm-state"
    (state / "spool").mkdir(parents=True)
    conf.write_text(f"""{_MARK}
ClusterName=test
SlurmctldHost={host}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SlurmUser=root
SlurmdUser=root
StateSaveLocation={state}
SlurmdSpoolDir={state}/spool
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    Path("/etc/slurm/cgroup.conf").write_text(f"{_MARK}\nCgroupPlugin=autodetect\nIgnoreSystemd=yes\n")
    cmds = ["mkdir -p /run/munge /etc/munge && (test -s /etc/munge/munge.key || "
            "dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null) && "
            "chown -R munge:munge /etc/munge /run/munge 2>/dev/null; chmod 400 /etc/munge/munge.key; "
            "(pgrep -x munged >/dev/null || munged --force)"]
    for cmd in cmds:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            return f"could not start munge ({r.stderr.strip()[:200]})"
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run(["pkill", "-x", daemon], capture_output=True)   # ours, from an earlier run
        r = subprocess.run([daemon], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            return f"could not start {daemon} ({r.stderr.strip()[:200] or 'see its log'})"
        started.append(daemon)
    for _ in range(60):
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() in ("idle", "mix", "alloc"):
            return None
        subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], capture_output=True)
        time.sleep(1)
    return f"SLURM started but the node never became idle (sinfo: {r.stdout.strip() or r.stderr.strip()})"


@pytest.mark.slow
def test_slurm_array_job_runs_the_grid(tmp_path, monkeypatch):
    started: list = []
    try:
        _slurm_grid(tmp_path, monkeypatch, started)
    finally:
        for daemon in started:
            subprocess.run(["pkill", "-x", daemon], capture_output=True)
        if started:   # job steps whose slurmd is gone wait for it forever
            time.sleep(1)
            subprocess.run(["pkill", "-9", "-f", "^slurmstepd"], capture_output=True)


def _slurm_grid(tmp_path, monkeypatch, started):
    reason = _start_slurm(tmp_path, started)
    if reason:
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    monkeypatch.setenv("BRIDGEOUT_DATA", str(write_synthetic_mnist(tmp_path / "data")))
    spec = _spec(tmp_path / "slurm")
    log = io.StringIO()
    rc = executors.submit_slurm(spec, gpus_per_task=0, cpus_per_task=1, array_parallelism=2, time_min=20,
                                wait=True, out=log)
    assert rc == 0, log.getvalue()
    assert "submitted SLURM array job" in log.getvalue() and "2 of 2 cells done" in log.getvalue()
    runs = results.load("runs", tmp_path / "slurm" / "results")
    assert sorted(runs["seed"]) == [0, 1]
