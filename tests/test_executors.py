"""Executors: local workers through submitit give the sequential runner's tables; SLURM
through submitit against a real single-node SLURM, started only with ``BRIDGEOUT_TEST_SLURM=1``
(or ``CI=true``) on a machine without its own SLURM or munge, and stopped again."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
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
#: The one switch that lets this test install SLURM and munge with apt, write their configuration
#: under /etc and start their daemons (CI sets it in .ci/run; ``CI=true`` counts too).
OPT_IN = "BRIDGEOUT_TEST_SLURM"
_MUNGE_MARK = Path("/etc/munge/written-by-bridgeout-tests")


def _opted_in() -> bool:
    return os.environ.get(OPT_IN) == "1" or os.environ.get("CI", "").lower() == "true"


def _ours(conf: Path) -> bool:
    return conf.exists() and _MARK in conf.read_text(errors="replace")


def _pids(name: str) -> set[int]:
    r = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return {int(x) for x in r.stdout.split()}


def _refuse_reason() -> str | None:
    """Why this machine must not be touched (None: it may, with the opt-in)."""
    if not _opted_in():
        return (f"installs and starts SLURM and munge system-wide: runs only with {OPT_IN}=1 "
                "(or CI=true), as root, on a machine without its own SLURM or munge")
    if os.geteuid() != 0:
        return "starting a test SLURM needs root"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and not _ours(conf):
        return f"{conf} exists and was not written by this test: not touching a configured SLURM"
    key = Path("/etc/munge/munge.key")
    if key.exists() and not (_MUNGE_MARK.exists() or _ours(conf)):
        return f"{key} exists and was not made by this test: not touching a configured munge"
    for daemon in ("munged", "slurmctld", "slurmd"):
        if _pids(daemon):
            return f"a {daemon} is already running (pid {sorted(_pids(daemon))}): not ours to use or stop"
    return None


def _install() -> str | None:
    if shutil.which("sbatch") and shutil.which("munged"):
        return None
    if shutil.which("apt-get") is None or os.environ.get("BRIDGEOUT_NO_APT"):
        return "SLURM is not installed (Debian: apt-get install slurm-wlm munge) and cannot be installed here"
    r = subprocess.run("apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || "
                       "(apt-get update -qq && apt-get install -y -qq slurm-wlm munge) >/dev/null 2>&1",
                       shell=True, timeout=900)
    if r.returncode != 0 or shutil.which("sbatch") is None:
        return "SLURM could not be installed with apt-get (slurm-wlm munge)"
    return None


def _write_config(tmp: Path, written: list) -> None:
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip() or "localhost"
    cpus = os.cpu_count() or 1
    mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    state = tmp / "slurm-state"
    (state / "spool").mkdir(parents=True)
    conf = Path("/etc/slurm/slurm.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((conf, f"""{_MARK}
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
"""), (conf.parent / "cgroup.conf", f"{_MARK}\nCgroupPlugin=autodetect\nIgnoreSystemd=yes\n")):
        if not path.exists():
            written.append(path)
        path.write_text(text)
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(1024))
        written.append(key)
        _MUNGE_MARK.write_text(_MARK + "\n")
        written.append(_MUNGE_MARK)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    subprocess.run("chown -R munge:munge /etc/munge /run/munge; chmod 400 /etc/munge/munge.key",
                   shell=True, capture_output=True)


def _start_slurm(tmp: Path, started: list, written: list) -> str | None:
    """Start munge and a one-node slurmctld/slurmd in the foreground (``-F``/``-D``, so this test
    holds their processes); returns None when the node is idle, else why it cannot. Processes it
    starts go to ``started``, files it creates to ``written``: the caller stops and removes them."""
    reason = _refuse_reason() or _install()
    if reason:
        return reason
    _write_config(tmp, written)
    for argv in (["munged", "-F", "--force"], ["slurmctld", "-D"], ["slurmd", "-D"]):
        log = tmp / f"{argv[0]}.log"
        with log.open("wb") as sink:   # a file, not a pipe: nobody reads a pipe, and a full one blocks
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        time.sleep(1)
        if proc.poll() is not None:
            return f"could not start {argv[0]} ({log.read_text(errors='replace').strip()[-200:]})"
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip() or "localhost"
    for _ in range(60):
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() in ("idle", "mix", "alloc"):
            return None
        subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], capture_output=True)
        time.sleep(1)
    return f"SLURM started but the node never became idle (sinfo: {r.stdout.strip() or r.stderr.strip()})"


def _procs_under(tmp: Path) -> set[int]:
    """Processes whose command line names ``tmp`` (this test's own folder): the job scripts and
    ``srun`` calls of its array job."""
    mine = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(tmp).encode() in (proc / "cmdline").read_bytes():
                    mine.add(int(proc.name))
    return mine


def _stop(started: list, steps_before: set[int], tmp: Path) -> None:
    """Stop what :func:`_start_slurm` started, newest first, by process (never by name), then the
    job steps that appeared while it ran (a step whose slurmd is gone would wait forever) and the
    job scripts under this test's folder."""
    if started:   # our one-node cluster: its jobs are this test's
        subprocess.run(["scancel", "--full", "--partition", "debug"], capture_output=True, timeout=30)
    for proc in reversed(started):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    for pid in _pids("slurmstepd") - steps_before:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)   # the step and the job script under it
    for pid in _procs_under(tmp):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not (_pids("slurmstepd") - steps_before or _procs_under(tmp)):
            break
        time.sleep(0.1)


def test_slurm_test_refuses_without_opt_in(monkeypatch):
    """Without the opt-in nothing is installed, written or started, whoever runs the suite."""
    monkeypatch.delenv(OPT_IN, raising=False)
    monkeypatch.delenv("CI", raising=False)
    started, written = [], []
    reason = _start_slurm(Path("/nonexistent"), started, written)
    assert reason and OPT_IN in reason and started == [] and written == []


@pytest.mark.slow
@pytest.mark.integration
def test_slurm_array_job_runs_the_grid(tmp_path, monkeypatch):
    started: list = []
    written: list = []
    steps_before = _pids("slurmstepd")
    try:
        _slurm_grid(tmp_path, monkeypatch, started, written)
    finally:
        _stop(started, steps_before, tmp_path)
        for path in reversed(written):
            path.unlink(missing_ok=True)
        left = [p.args[0] for p in started if p.poll() is None]
        assert not left, f"daemons this test started are still running: {left}"
        assert not (_pids("slurmstepd") - steps_before), "job steps this test started are still running"
        assert not _procs_under(tmp_path), "job scripts this test started are still running"


def _slurm_grid(tmp_path, monkeypatch, started, written):
    reason = _start_slurm(tmp_path, started, written)
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


def test_an_interrupted_worker_says_so_in_a_line_and_exits_130(monkeypatch, capsys):
    """submitit cancels a local job with SIGINT: the worker reports it, no traceback."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(executors.runner, "run_grid", interrupted)
    assert executors._worker("spec.yaml", None, False, False, 1) == 130
    err = capsys.readouterr().err
    assert "worker interrupted; its cell resumes" in err and "Traceback" not in err


def test_stopping_the_workers_waits_until_they_have_exited():
    class Job:
        def __init__(self, job_id, polls):
            self.job_id, self.polls, self.cancelled = job_id, polls, False

        def cancel(self):
            self.cancelled = True

        def done(self):
            self.polls -= 1
            return self.cancelled and self.polls <= 0

    jobs, log = [Job("1", 3), Job("2", 5)], io.StringIO()
    executors._stop_workers(jobs, log, timeout_s=5)
    assert all(j.cancelled and j.done() for j in jobs) and log.getvalue() == ""
    stuck = Job("3", 10**9)
    executors._stop_workers([stuck], log, timeout_s=0.3)
    assert "worker job(s) 3 still stopping" in log.getvalue()


def test_slurm_without_sbatch_or_refused_by_sbatch_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """No SLURM here, or an sbatch that refuses the job (no such partition, no GPU resource):
    exit 2 with one line saying so, nothing run, no submitit traceback."""
    monkeypatch.setenv("BRIDGEOUT_DATA", str(write_synthetic_mnist(tmp_path / "data")))
    spec = _spec(tmp_path / "grid")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))          # a machine without SLURM
    assert grid.main([str(spec), "--executor", "slurm"]) == 2
    assert "needs SLURM's sbatch and srun on the PATH, and there is none here" in capsys.readouterr().err
    (empty / "srun").write_text("#!/bin/sh\nexit 0\n")
    (empty / "srun").chmod(0o755)
    fake = empty / "sbatch"
    fake.write_text(f"#!{shutil.which('sh', path='/bin:/usr/bin')}\n"
                    "echo 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n")
    fake.chmod(0o755)
    assert grid.main([str(spec), "--executor", "slurm", "--partition", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "SLURM refused the array job of 2 task(s): sbatch: error: invalid partition specified: gpu" in err
    assert "Traceback" not in err and not (tmp_path / "grid" / "results" / "runs.csv").exists()
