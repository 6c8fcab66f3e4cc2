"""tools/gpu_visit.py: the projection that decides what a GPU visit starts, the split and
reassembly of the staged archive, the stand-in device's limits, and the whole visit rehearsed
on the CPU (plan, stage in two parts, run, collect, merge into a scratch table)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from bridgeout import results

REPO = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_visit", REPO / "tools" / "gpu_visit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gv = _tool()


# --------------------------------------------------------------------------- projection
def test_projection_starts_only_runs_that_finish_in_order():
    # paper protocol: 230 epochs x 60,000 images; at 23,000 img/s a run takes 10 + 1 min
    ips = {(m, a): 23_000.0 for m, a in gv.RUN_ORDER}
    rows = gv.projection(ips, 25.0, protocol="paper")
    assert [round(r["minutes"], 6) for r in rows] == [11.0] * len(gv.RUN_ORDER)
    assert [r["starts"] for r in rows] == [True, True] + [False] * (len(gv.RUN_ORDER) - 2)
    assert [(r["model"], r["arm"]) for r in rows][:2] == [("resnet", "weight_decay"), ("resnet", "dropout")]
    # two runs sharing the GPU: each at half the aggregate speed, 21 min, both fit in 22
    two = gv.projection(ips, 22.0, protocol="paper", concurrent=2)
    assert [r["starts"] for r in two][:3] == [True, True, False]
    assert round(two[0]["minutes"], 6) == 21.0
    # nothing fits: nothing starts; a missing arm falls back to the model's weight decay speed
    assert not any(r["starts"] for r in gv.projection(ips, 10.0, protocol="paper"))
    only_wd = {("resnet", "weight_decay"): 23_000.0}
    got = gv.projection(only_wd, 100.0, protocol="paper")
    assert {r["model"] for r in got} == {"resnet"} and all(r["starts"] for r in got)


def test_split_parts_reassemble_to_the_archive(tmp_path):
    src = tmp_path / "a.npz"
    src.write_bytes(os.urandom(10_000))
    parts = gv.split(src, tmp_path / "stage", 3_000)
    assert len(parts) == 4
    assert [p.name for p in parts] == [f"a.npz.{k:02d}" for k in (1, 2, 3, 4)]
    assert [p.parent.name for p in parts] == ["part-01", "part-02", "part-03", "part-04"]
    assert [p.stat().st_size for p in parts] == [3_000, 3_000, 3_000, 1_000]
    blob = b"".join(p.read_bytes() for p in parts)
    assert hashlib.sha256(blob).hexdigest() == gv.sha256(src)


def test_fake_device_refuses_more_than_the_out_limits(tmp_path):
    dev = gv.FakeDevice(tmp_path / "dev")
    with pytest.raises(SystemExit, match=r"\$OUT holds 9 files"):
        dev.call("for i in 1 2 3 4 5 6 7 8 9; do echo $i > $OUT/f$i; done", [])


# --------------------------------------------------------------------------- rehearsal
@pytest.mark.slow
def test_the_visit_rehearsed_on_the_cpu_lands_every_run(tmp_path):
    """The whole visit against the stand-in device: every call exits 0, what comes back fits
    the tool's limits, every started run is merged with its executed notebook and weights
    (sha256 as recorded), a .stage/ already there is put back, and no run is left going."""
    stage = REPO / gv.STAGE
    had_stage = stage.exists()
    if not had_stage:
        stage.mkdir()
        (stage / "mine.txt").write_text("a real plan's file")
    try:
        res = gv.rehearse(tmp_path / "rh")
        assert res["exit"] == {"stage 1": 0, "stage 2": 0, "run": 0, "collect": 0}, res["exit"]
        assert 2 <= len(res["back"]) <= gv.OUT_FILES and "visit.sha256" in res["back"]
        started = json.loads((tmp_path / "rh" / "device" / "visit" / "started.json").read_text())
        # the projection started what fits the minutes left at the measured (CPU) speed, in order
        proj = pd.read_csv(res["data"] / "device" / "projection.csv")
        assert len(proj) == len(gv.RUN_ORDER) and set(proj["protocol"]) == {"smoke"}
        assert 1 <= len(started["run_ids"]) == int(proj["starts"].sum())
        runs = results.load("runs", res["data"] / "results")
        assert sorted(runs["run_id"]) == sorted(started["run_ids"])
        assert set(runs["precision"]) == {"bf16"} and set(runs["grid"]) == {"gpu-cifar10-smoke"}
        for r in runs.itertuples():
            nb, w = Path(r.notebook), Path(r.weights)
            nb = nb if nb.is_absolute() else REPO / nb
            w = w if w.is_absolute() else REPO / w
            assert nb.is_file() and nb.parent == res["data"] / "runs" / "gpu-cifar10-smoke", r.notebook
            assert w.is_file() and gv.sha256(w) == r.weights_sha256, r.weights
        assert len(results.load("pruning", res["data"] / "results")) > 0
        assert (res["data"] / "device" / "smoke.csv").is_file()
        # merged twice: nothing added the second time
        again = gv.merge(tmp_path / "rh" / "files_at", res["data"])
        assert all(v == 0 for v in again.values()), again
        # nothing left running: every runner's process group is gone (rehearse ends stragglers)
        deadline = time.time() + 30
        while any(gv._alive(pid) for pid in started["pids"]) and time.time() < deadline:
            time.sleep(0.5)
        assert not any(gv._alive(pid) for pid in started["pids"]), started["pids"]
    finally:
        if not had_stage:
            assert (stage / "mine.txt").read_text() == "a real plan's file"
            import shutil
            shutil.rmtree(stage)


def test_device_lacks_is_the_closure_of_the_run_needs_minus_the_image():
    have = gv.device_packages()
    assert {"torch", "torchvision", "safetensors", "pandas", "pyyaml", "requests"} <= have
    lacks = gv.device_lacks()
    # papermill's and nbformat's own needs come along (nbformat imports jsonschema at once)
    assert {"papermill", "nbformat", "nbclient", "ipykernel", "torch-pruning", "submitit",
            "jsonschema", "referencing", "rpds-py", "traitlets", "pyzmq"} <= set(lacks)
    assert not set(lacks) & have and "safetensors" not in lacks   # the image has it
    from bridgeout import wheelhouse
    pins = {wheelhouse.normalize(n) for n, _, _ in wheelhouse.read_lock(REPO / "requirements.lock")}
    assert set(lacks) <= pins                                    # every wheel has a pinned version
    # an image with nothing: the needs themselves and torch's own needs are carried
    bare = gv.device_lacks(("torch-pruning",), have=set())
    assert {"torch-pruning", "torch", "numpy"} <= set(bare)
    with pytest.raises(SystemExit, match="no-such-package-xyz"):
        gv.device_lacks(("no-such-package-xyz",), have=set())


def test_slim_hides_the_kept_files_and_unslim_brings_them_back(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--local", "--no-hardlinks", str(REPO), str(clone)], check=True)
    weights = sorted(p.relative_to(clone) for p in (clone / "data" / "weights").glob("*.safetensors"))
    assert weights, "the clone has kept weights to hide"
    before = gv.tree_bytes(clone)
    after = gv.slim(clone)
    assert not (clone / "data" / "weights").exists() and not (clone / "data" / "runs").exists()
    assert (clone / "data" / "results" / "runs.csv").is_file() and (clone / "bridgeout").is_dir()
    assert after < before - 10 * gv.MiB and after == gv.tree_bytes(clone)
    assert gv._git(clone, "status", "--porcelain").strip() == ""          # nothing looks deleted
    gv.unslim(clone)
    gv.unslim(clone)                                                       # twice: a no-op
    assert all((clone / w).is_file() for w in weights) and gv.tree_bytes(clone) == before
    # uncommitted work under a hidden folder: refused, nothing changed
    (clone / "data" / "runs" / "new.ipynb").write_text("{}")
    with pytest.raises(SystemExit, match="uncommitted changes under data/weights/, data/runs/"):
        gv.slim(clone)
    assert (clone / "data" / "weights").is_dir()


def test_split_gives_the_first_part_less_room(tmp_path):
    src = tmp_path / "b.npz"
    src.write_bytes(os.urandom(10_000))
    parts = gv.split(src, tmp_path / "stage", 4_000, first_bytes=1_000)
    assert [p.stat().st_size for p in parts] == [1_000, 4_000, 4_000, 1_000]
    assert hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest() == gv.sha256(src)


def test_a_rehearsal_counts_the_tree_as_the_visit_slims_it():
    """The visit hides data/weights/ and data/runs/ (slim); a rehearsal leaves the working tree
    as it is but must count, and carry, what the slimmed visit would."""
    full = {p.relative_to(gv.REPO).as_posix() for p in gv.travelling_files(gv.REPO)}
    slim = {p.relative_to(gv.REPO).as_posix() for p in gv.travelling_files(gv.REPO, slimmed=True)}
    hidden = full - slim
    assert hidden and all(p.startswith(gv.SLIM_OUT) for p in hidden)
    assert not any(p.startswith(gv.SLIM_OUT) for p in slim) and "bridgeout/train.py" in slim
    assert gv.tree_bytes(slimmed=True) < gv.tree_bytes()
