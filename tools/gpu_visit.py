"""A GPU visit in three device calls, prepared and rehearsed on the CPU.

A lent GPU machine gives 15 minutes of device time in all (start, transfers and every call
counted), 10 minutes per command, 64 MiB of working tree carried per call, at most 8 files of
16 MiB back from ``$OUT``, and it is gone after 30 s idle. This script plans the visit so that
none of those minutes go to debugging:

``plan`` (here)
    Hides the kept weights and executed notebooks from the working tree for the visit (``slim``:
    a sparse checkout; they stay committed), measures what travels (the working tree, the
    wheels the device lacks: :func:`device_lacks`, the CIFAR-10 archive), splits the archive
    into parts that fit beside the tree, writes them to ``.stage/`` (git-ignored) and prints
    every device call (command and ``carry``) with its minute budget.
``device-stage --part K --of N`` (device, one call per part)
    Keeps part K in the visit folder outside the repository (``/tmp/bridgeout-visit``); after
    the last part, reassembles the archive, checks its SHA-256 and installs the wheels into
    the visit folder (``PYTHONPATH``).
``device-run --minutes-left M`` (device)
    The CUDA tests; a CUDA smoke of every model x regularizer (forward, backward, bf16,
    channels_last, one ``torch.compile``); the throughput and Bridgeout-overhead benchmarks;
    then a projection, printed before anything starts, of the largest set of complete runs
    (:data:`RUN_ORDER`) that fits the minutes left, started in the background (``setsid``,
    one grid runner per run; checkpoints, tables and weights in the visit folder).
``device-collect [--wait S]`` (device)
    Polls for the runs to finish (at most ``S`` seconds), then packs their tables, executed
    notebooks, weights, logs and the benchmark figures into at most 8 files in ``$OUT``.
``merge FOLDER`` (here)
    Brings the hidden folders back (``unslim``), unpacks what came back and merges it into
    ``data/`` with the idempotent appends of :func:`bridgeout.results.merge` (runs already
    there are skipped).
``rehearse``
    Plays plan, stage, run, collect and merge against a local folder standing in for the
    device (a copy of the working tree as the tool sends it, a fake ``$OUT`` with the same
    limits), with tiny synthetic data, the ``smoke`` protocol and the CPU instead of CUDA, and
    merges into a scratch table: every path but CUDA itself runs.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
#: The device tool's limits (its README).
CARRY_LIMIT = 64 * MiB
OUT_FILES, OUT_FILE_BYTES = 8, 16 * MiB
DEVICE_MINUTES, COMMAND_MINUTES = 15.0, 10.0
#: Minutes kept back: the machine's start, transfers of each call, and the collect call.
START_MIN, CALL_OVERHEAD_MIN, COLLECT_MIN = 2.0, 0.4, 1.5
MARGIN = 2 * MiB
STAGE = Path(".stage")
VISIT = Path(os.environ.get("BRIDGEOUT_VISIT_ROOT", "/tmp/bridgeout-visit"))
REHEARSE = os.environ.get("BRIDGEOUT_VISIT_REHEARSE") == "1"
CIFAR_SHA256 = "a44cc18e4ad961b5158c7da062a6232fb65938b615bf013046199b823b75c43d"
#: The device image's Python packages (the device tool's KINDS.md, copied with its date).
DEVICE_PACKAGES = REPO / "tools" / "device_packages.txt"
#: What a run on the device imports beyond torch and the scientific stack the image has.
RUN_NEEDS = ("papermill", "nbclient", "nbformat", "ipykernel", "torch-pruning", "submitit", "safetensors")
#: The device's Python, for the environment markers of the requirements.
DEVICE_PYTHON = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
                 "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
                 "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
#: The runs a visit may start, in order: the paper's ResNet, then VGG-16, at the published
#: protocol, each arm of the CPU comparison (grid notebooks/grids/gpu-cifar10.yaml).
ARMS = ("weight_decay", "dropout", "bridgeout", "targeted_dropconnect")
RUN_ORDER = tuple((m, a) for m in ("resnet", "vgg16") for a in ARMS)
PROTOCOL_EPOCHS = {"paper": 230, "fast": 30, "smoke": 1}


# ----------------------------------------------------------------------------- helpers
def _norm(name: str) -> str:
    from bridgeout.wheelhouse import normalize   # PEP 503, one definition
    return normalize(name)


def device_packages(path: Path = DEVICE_PACKAGES) -> set[str]:
    """The normalized names of :data:`DEVICE_PACKAGES` (comments and blank lines skipped)."""
    return {_norm(n) for n in path.read_text().splitlines() if n.strip() and not n.startswith("#")}


def device_lacks(needs=RUN_NEEDS, have: set[str] | None = None) -> list[str]:
    """The packages to carry: the dependency closure of ``needs`` (as installed here, with the
    device's Python for the markers) minus what the device image has. Raises when a needed
    package is not installed here (its requirements cannot be read)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    have = device_packages() if have is None else have
    seen, todo = set(), list(needs)
    while todo:
        name = _norm(todo.pop())
        if name in seen or name in have:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            raise SystemExit(f"error: {name} (needed on the device) is not installed here; run make install") from None
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate(DEVICE_PYTHON):
                todo.append(r.name)
    return sorted(seen)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def travelling_files(root: Path = REPO, slimmed: bool = False) -> list[Path]:
    """What a device call carries without ``carry``: tracked files and untracked files git
    does not ignore (as the device tool sends the working tree); with ``slimmed``, without
    :data:`SLIM_OUT`, as after :func:`slim` (what a rehearsal counts, since it leaves the
    working tree as it is)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    keep = [p for p in out.split("\0") if p and not (slimmed and p.startswith(SLIM_OUT))]
    return [root / p for p in keep if (root / p).is_file()]


def tree_bytes(root: Path = REPO, slimmed: bool = False) -> int:
    return sum(p.stat().st_size for p in travelling_files(root, slimmed))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("$", " ".join(map(str, cmd)), flush=True)
    return subprocess.run(cmd, **kw)


# -------------------------------------------------------------------------------- plan
def wheels(dest: Path) -> list[Path]:
    """Wheels of :func:`device_lacks` at the lock's versions for the device (CPython 3.12,
    manylinux x86-64), downloaded here into ``dest`` (skipped when present)."""
    from bridgeout import wheelhouse
    pins = {wheelhouse.normalize(n): v for n, v, _ in wheelhouse.read_lock(REPO / "requirements.lock")}
    dest.mkdir(parents=True, exist_ok=True)
    lacks = device_lacks()
    unpinned = [n for n in lacks if wheelhouse.normalize(n) not in pins]
    if unpinned:
        raise SystemExit(f"error: {unpinned} (needed on the device) are not pinned in requirements.lock")
    want = [f"{n}=={pins[wheelhouse.normalize(n)]}" for n in lacks]
    have = {wheelhouse.normalize(p.name.split("-")[0]) for p in dest.glob("*.whl")}
    todo = [w for w in want if wheelhouse.normalize(w.split("==")[0]) not in have]
    if todo:
        plats = [a for t in wheelhouse.platform_tags("manylinux_2_28_x86_64") for a in ("--platform", t)]
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--python-version", "3.12", "--implementation", "cp", *plats, "-d", str(dest), *todo], check=True)
    return sorted(dest.glob("*.whl"))


def split(archive: Path, dest: Path, part_bytes: int, first_bytes: int | None = None) -> list[Path]:
    """``archive`` cut into parts of at most ``part_bytes`` (the first of at most ``first_bytes``,
    default the same: it travels with the wheels), ``dest/part-KK/<name>.KK``."""
    parts = []
    with open(archive, "rb") as f:
        k = 0
        while chunk := f.read(part_bytes if k or first_bytes is None else first_bytes):
            k += 1
            d = dest / f"part-{k:02d}"
            d.mkdir(parents=True, exist_ok=True)
            p = d / f"{archive.name}.{k:02d}"
            p.write_bytes(chunk)
            parts.append(p)
    return parts


#: What the device does not need and every call would carry: the kept weights and the executed
#: notebooks (tens of MiB, growing with every grid). ``slim`` hides them with a sparse checkout
#: for the visit (they stay committed, ``git status`` stays clean); ``merge`` and ``unslim``
#: bring them back.
SLIM_OUT = ("data/weights/", "data/runs/")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def slim(root: Path = REPO) -> int:
    """Hide :data:`SLIM_OUT` from the working tree; returns the bytes a call now carries.
    Refuses (nothing changed) while those folders hold uncommitted changes."""
    dirty = _git(root, "status", "--porcelain", "--", *SLIM_OUT).strip()
    if dirty:
        raise SystemExit(f"error: uncommitted changes under {', '.join(SLIM_OUT)} (commit them first, the "
                         f"visit hides these folders):\n{dirty}")
    _git(root, "sparse-checkout", "set", "--no-cone", "/*", *[f"!/{p}" for p in SLIM_OUT])
    return tree_bytes(root)


def unslim(root: Path = REPO) -> None:
    """Bring :data:`SLIM_OUT` back (no-op when the checkout is not sparse)."""
    if _git(root, "config", "--bool", "--default", "false", "core.sparseCheckout").strip() == "true":
        _git(root, "sparse-checkout", "disable")


def plan(archive: Path, *, rehearse: bool = False, wheel_dir: Path | None = None) -> dict:
    """Write ``.stage/`` and return (and print) the visit's calls and minute budget; unless
    rehearsing, first :func:`slim` the working tree (print what that saved)."""
    if not rehearse:
        before = tree_bytes()
        after = slim()
        print(f"slim: {', '.join(SLIM_OUT)} hidden for the visit (sparse checkout; `merge` or `unslim` "
              f"brings them back): {before / MiB:.1f} -> {after / MiB:.1f} MiB per call")
    stage = REPO / STAGE
    shutil.rmtree(stage, ignore_errors=True)
    whl = wheels(wheel_dir or stage / "whl") if not rehearse else []
    if wheel_dir and whl:
        shutil.copytree(wheel_dir, stage / "whl", dirs_exist_ok=True)
    tree = tree_bytes(slimmed=rehearse)      # a rehearsal counts the tree as a visit would slim it
    wheel_bytes = sum(p.stat().st_size for p in whl)
    room = CARRY_LIMIT - tree - MARGIN
    first_room = room - wheel_bytes
    if first_room <= MiB:
        raise SystemExit(f"the working tree ({tree / MiB:.1f} MiB) and wheels ({wheel_bytes / MiB:.1f} MiB) leave "
                         f"no room for data in a {CARRY_LIMIT / MiB:.0f} MiB call")
    part_bytes = room
    parts = split(archive, stage, part_bytes, first_room)
    if whl:
        shutil.move(str(stage / "whl"), str(stage / "part-01" / "whl"))
    manifest = {"archive": archive.name, "sha256": sha256(archive), "parts": len(parts),
                "bytes": archive.stat().st_size}
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=1))
    n = len(parts)
    calls = [{"step": f"stage {k}/{n}", "carry": [str(STAGE / f"part-{k:02d}"), str(STAGE / "manifest.json")],
              "command": f"python3 tools/gpu_visit.py device-stage --part {k} --of {n}", "minutes": CALL_OVERHEAD_MIN}
             for k in range(1, n + 1)]
    left = DEVICE_MINUTES - START_MIN - n * CALL_OVERHEAD_MIN - COLLECT_MIN
    calls.append({"step": "run", "carry": [], "minutes": min(COMMAND_MINUTES, left),
                  "command": f"python3 tools/gpu_visit.py device-run --minutes-left {left:.1f}"})
    calls.append({"step": "collect", "carry": [], "minutes": COLLECT_MIN,
                  "command": "python3 tools/gpu_visit.py device-collect --wait 480"})
    info = {"tree_bytes": tree, "wheel_bytes": wheel_bytes, "archive_bytes": manifest["bytes"],
            "part_bytes": [p.stat().st_size for p in parts], "parts": n, "calls": calls, "start_minutes": START_MIN,
            "minutes_for_runs": left}
    print(f"working tree {tree / MiB:.1f} MiB, wheels {wheel_bytes / MiB:.1f} MiB ({len(whl)}), "
          f"{archive.name} {manifest['bytes'] / MiB:.1f} MiB in {n} part(s): "
          + ", ".join(f"{p.stat().st_size / MiB:.1f}" for p in parts) + " MiB")
    print(f"minutes: start {START_MIN}, " + ", ".join(f"{c['step']} {c['minutes']:.1f}" for c in calls))
    for c in calls:
        print(f"  {c['step']:10s} carry={c['carry']}  command: {c['command']}")
    (stage / "plan.json").write_text(json.dumps(info, indent=1))
    return info


# ------------------------------------------------------------------------ device: stage
def _env() -> dict:
    env = dict(os.environ)
    site = str(VISIT / "site")
    env["PYTHONPATH"] = os.pathsep.join([site, str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["BRIDGEOUT_DATA"] = str(VISIT / "data")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def device_stage(part: int, of: int) -> int:
    VISIT.mkdir(parents=True, exist_ok=True)
    src = REPO / STAGE / f"part-{part:02d}"
    for p in src.iterdir():
        shutil.move(str(p), str(VISIT / p.name))
    print(f"part {part}/{of} kept in {VISIT}")
    if part < of:
        return 0
    manifest = json.loads((REPO / STAGE / "manifest.json").read_text())
    data = VISIT / "data"
    data.mkdir(exist_ok=True)
    target = data / manifest["archive"]
    with open(target, "wb") as out:
        for k in range(1, manifest["parts"] + 1):
            with open(VISIT / f"{manifest['archive']}.{k:02d}", "rb") as f:
                shutil.copyfileobj(f, out)
    got = sha256(target)
    if got != manifest["sha256"]:
        print(f"error: {target} sha256 {got} != {manifest['sha256']}", file=sys.stderr)
        return 1
    print(f"{target.name}: {target.stat().st_size} bytes, sha256 checked")
    whl = sorted((VISIT / "whl").glob("*.whl")) if (VISIT / "whl").is_dir() else []
    if whl:
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
              "--target", str(VISIT / "site"), *map(str, whl)], check=True)
    r = subprocess.run([sys.executable, "-c", "import papermill, torch_pruning, bridgeout, safetensors; "
                        "import torch; print('ready: torch', torch.__version__, 'cuda', torch.cuda.is_available())"],
                       env=_env(), cwd=REPO)
    return r.returncode


# -------------------------------------------------------------------------- device: run
def smoke(device: str) -> list[dict]:
    """Forward + backward + SGD step of every model x regularizer in bf16 channels_last, and
    one ``torch.compile``d step (VGG-16, CUDA only); one row per check."""
    import torch

    from bridgeout import models, train
    dev = torch.device(device)
    rows = []
    cases = [(m, r) for m in ("vgg16", "resnet", "wrn28_10", "lenet5") for r in models.REGULARIZERS]
    for name, reg in cases:
        t0 = time.perf_counter()
        try:
            torch.manual_seed(0)
            width = 0.125 if dev.type == "cpu" else 1.0
            net = models.build(name, 10, reg, width=1.0 if name == "lenet5" else width)
            net = train.prepare_model(net, dev)
            opt = torch.optim.SGD(net.parameters(), lr=0.01)
            shape = (8, 1, 28, 28) if name == "lenet5" else (8, 3, 32, 32)
            x, y = torch.randn(shape, device=dev), torch.randint(0, 10, (8,), device=dev)
            loss, _ = train.train_step(net, opt, x, y, dev, precision="bf16")
            ok, err = bool(torch.isfinite(loss)), ""
        except Exception as e:  # noqa: BLE001 - the visit reports every failure, then goes on
            ok, err = False, f"{type(e).__name__}: {e}"[:300]
        rows.append({"model": name, "regularizer": reg, "check": "bf16 channels_last step", "ok": ok, "error": err,
                     "seconds": time.perf_counter() - t0})
    if dev.type == "cuda":
        t0 = time.perf_counter()
        try:
            net = train.prepare_model(models.build("vgg16", 10, "bridgeout"), dev, compile=True)
            opt = torch.optim.SGD(net.parameters(), lr=0.01)
            x, y = torch.randn(128, 3, 32, 32, device=dev), torch.randint(0, 10, (128,), device=dev)
            loss, _ = train.train_step(net, opt, x, y, dev, precision="bf16")
            ok, err = bool(torch.isfinite(loss)), ""
        except Exception as e:  # noqa: BLE001
            ok, err = False, f"{type(e).__name__}: {e}"[:300]
        rows.append({"model": "vgg16", "regularizer": "bridgeout", "check": "torch.compile", "ok": ok, "error": err,
                     "seconds": time.perf_counter() - t0})
    return rows


def projection(throughput: dict, minutes: float, *, protocol: str, concurrent: int = 1) -> list[dict]:
    """Which runs of :data:`RUN_ORDER` fit: each run takes ``epochs * 60,000 images /
    images_per_s`` (training plus a test pass per epoch, as 50,000 + 10,000 images) plus one
    minute of pruning sweep; ``concurrent`` runs share the GPU at the measured aggregate
    speed. A run that cannot finish is never started. ``throughput[(model, arm)]`` in img/s."""
    epochs = PROTOCOL_EPOCHS[protocol]
    rows, slots = [], [0.0] * max(1, concurrent)
    for model, arm in RUN_ORDER:
        ips = throughput.get((model, arm), throughput.get((model, "weight_decay")))
        if not ips:
            continue
        minutes_run = epochs * 60_000 / (ips / max(1, concurrent)) / 60 + 1.0
        k = min(range(len(slots)), key=slots.__getitem__)
        fits = slots[k] + minutes_run <= minutes
        if fits:
            slots[k] += minutes_run
        rows.append({"model": model, "arm": arm, "protocol": protocol, "minutes": minutes_run, "starts": fits})
    return rows


def _bench(device: str, out: Path) -> dict:
    """Images/s per (model, arm) from benchmarks/train_throughput.py (bf16), and the
    Bridgeout overhead benchmark's output, both kept in ``out``."""
    import pandas as pd
    steps = ["--steps", "3", "--warmup", "1", "--repeats", "1"] if REHEARSE else ["--steps", "30", "--warmup", "5",
                                                                               "--repeats", "2"]
    width = ["--width", "0.125", "--n-train", "512"] if REHEARSE else []
    csv = out / "throughput.csv"
    _run([sys.executable, "benchmarks/train_throughput.py", "--device", device, "--models", "resnet,vgg16",
          "--regularizers", "weight_decay,dropout,bridgeout", "--precision", "bf16", "--no-reference",
          "--csv", str(csv), *steps, *width], env=_env(), cwd=REPO, check=True)
    with open(out / "bridgeout_overhead.txt", "w") as f:
        _run([sys.executable, "benchmarks/bridgeout_overhead.py", "--device", device,
              *(["--iters", "2", "--warmup", "1", "--batch", "2"] if REHEARSE else ["--iters", "20"])],
             env=_env(), cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    t = pd.read_csv(csv)
    ips = {(r.model, r.regularizer): float(r.images_per_s) for r in t.itertuples()}
    for m in ("resnet", "vgg16"):            # the signed q = 2 arm costs what Bridgeout costs
        if (m, "bridgeout") in ips:
            ips[(m, "targeted_dropconnect")] = ips[(m, "bridgeout")]
    return ips


def _cell(model: str, arm: str, protocol: str) -> dict:
    reg = {"targeted_dropconnect": {"regularizer": "bridgeout", "q": 2.0, "signed": True},
           "bridgeout": {"regularizer": "bridgeout", "q": 1.5, "signed": False}}.get(arm, {"regularizer": arm})
    cell = {"model": model, "dataset": "cifar10", "protocol": protocol, "precision": "bf16", "seed": 0,
            "device": "cpu" if REHEARSE else "cuda", "prune_recalibrate_bn": [False, True], **reg}
    if REHEARSE:
        cell.update({"width": 0.125, "n_train": 256, "n_test": 100, "fractions": [0.0, 0.5], "latency": False})
    return cell


def _start(cells: list[dict], protocol: str, deadline: float | None = None) -> list[str]:
    """Write the visit's spec and start one grid runner per cell (``setsid``, own log)."""
    import yaml
    spec = {"name": f"gpu-cifar10-{protocol}", "description": f"GPU visit: CIFAR-10, {protocol} protocol, bf16.",
            "notebook": "notebooks/train_and_prune.ipynb", "results_dir": str(VISIT / "results"),
            "runs_dir": str(VISIT / "runs" / f"gpu-cifar10-{protocol}"),
            "defaults": {"checkpoint_dir": str(VISIT / "ckpt")}, "axes": {"cell": cells}}
    path = VISIT / f"gpu-cifar10-{protocol}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    from bridgeout import grid
    ids = [c["run_id"] for c in grid.expand(grid.load_spec(path))]
    (VISIT / "logs").mkdir(exist_ok=True)
    pids = []
    for rid in ids:
        log = open(VISIT / "logs" / f"{rid}.log", "w")
        pids.append(subprocess.Popen([sys.executable, "-m", "bridgeout.grid", str(path), "--only", rid, "--log-output"],
                                     cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True).pid)
    (VISIT / "started.json").write_text(json.dumps({"spec": str(path), "run_ids": ids, "pids": pids,
                                                    "time": time.time(), "deadline": deadline}))
    return ids


def device_run(minutes_left: float) -> int:
    import pandas as pd
    import torch
    t0 = time.time()
    device = "cuda" if torch.cuda.is_available() and not REHEARSE else "cpu"
    out = VISIT / "report"
    out.mkdir(parents=True, exist_ok=True)
    print(f"device {device}: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'} | torch {torch.__version__}")
    r = _run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests/test_train.py", "tests/test_costs.py"],
             env=_env(), cwd=REPO)
    print(f"CUDA tests: exit {r.returncode}")
    sm = pd.DataFrame(smoke(device))
    sm.to_csv(out / "smoke.csv", index=False)
    print(f"smoke: {int(sm['ok'].sum())} of {len(sm)} checks passed")
    print(sm[~sm["ok"]].to_string(index=False) if (~sm["ok"]).any() else "")
    ips = _bench(device, out)
    left = minutes_left - (time.time() - t0) / 60
    protocol = "smoke" if REHEARSE else "paper"
    proj = projection(ips, left, protocol=protocol)
    if not REHEARSE and not any(p["starts"] for p in proj):
        protocol = "fast"
        proj = projection(ips, left, protocol=protocol)
    pd.DataFrame(proj).to_csv(out / "projection.csv", index=False)
    print(f"projection ({left:.1f} minutes left, protocol {protocol}):")
    for p in proj:
        print(f"  {p['model']:7s} {p['arm']:22s} {p['minutes']:7.1f} min  {'START' if p['starts'] else 'does not fit'}")
    chosen = [_cell(p["model"], p["arm"], protocol) for p in proj if p["starts"]]
    ids = _start(chosen, protocol, deadline=t0 + 60 * minutes_left) if chosen else []
    print(f"started {len(ids)} run(s) in the background: {ids}")
    return 0 if bool(sm["ok"].all()) else 1


# ---------------------------------------------------------------------- device: collect
def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _finished(started: dict) -> list[str]:
    """Runs whose ``runs`` row is written and whose runner has exited (its executed notebook
    is moved into place after the row, so a row alone is not the end of a run)."""
    from bridgeout import results
    runs = results.load("runs", VISIT / "results") if (VISIT / "results").is_dir() else None
    rows = set() if runs is None else set(runs["run_id"])
    pids = dict(zip(started["run_ids"], started.get("pids", [])))
    return sorted(r for r in started["run_ids"] if r in rows and not (r in pids and _alive(pids[r])))


def device_collect(wait: float, out: Path) -> int:
    started = json.loads((VISIT / "started.json").read_text()) if (VISIT / "started.json").is_file() else {"run_ids": []}
    ids, t0 = started["run_ids"], time.time()
    if started.get("deadline"):      # never past the end of the minutes device-run was given
        wait = max(0.0, min(wait, started["deadline"] - t0))
    print(f"waiting at most {wait:.0f} s for {len(ids)} run(s)")
    while ids and len(_finished(started)) < len(ids) and time.time() - t0 < wait:
        time.sleep(2 if REHEARSE else 15)
    done = _finished(started)
    print(f"{len(done)} of {len(ids)} run(s) finished: {done}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for sub in ("results", "runs", "weights", "report", "logs"):
            if (VISIT / sub).exists():
                tar.add(VISIT / sub, arcname=sub, filter=lambda ti: None if "/.partial" in ti.name or
                        ti.name.endswith(".lock") else ti)
    data = buf.getvalue()
    n = math.ceil(len(data) / OUT_FILE_BYTES)
    if n > OUT_FILES:
        print(f"error: {len(data) / MiB:.1f} MiB packed does not fit {OUT_FILES} files of 16 MiB", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        (out / f"visit.tgz.{k + 1:02d}").write_bytes(data[k * OUT_FILE_BYTES:(k + 1) * OUT_FILE_BYTES])
    (out / "visit.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    print(f"packed {len(data) / MiB:.2f} MiB into {n} file(s) + visit.sha256 in {out}")
    return 0


# ------------------------------------------------------------------------------ merge
def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def merge(folder: Path, data_dir: Path = REPO / "data") -> dict:
    """Reassemble ``visit.tgz.*`` from ``folder``, check it, and merge its tables, notebooks
    and weights into ``data_dir`` (``results/``, ``runs/<grid>/``, ``weights/``)."""
    from bridgeout import results
    if data_dir == REPO / "data":
        unslim()                 # the kept weights and notebooks come back before new ones land
    parts = sorted(folder.glob("visit.tgz.*"))
    blob = b"".join(p.read_bytes() for p in parts)
    want = (folder / "visit.sha256").read_text().split()[0]
    if hashlib.sha256(blob).hexdigest() != want:
        raise SystemExit(f"error: the {len(parts)} part(s) in {folder} do not reassemble to sha256 {want}")
    tmp = folder / "unpacked"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(tmp, filter="data")
    added = {}
    if (tmp / "results").is_dir():
        runs = results.load("runs", tmp / "results")
        for i, (rid, grid) in enumerate(zip(runs["run_id"], runs["grid"])):
            w = tmp / "weights" / f"{rid}.safetensors"
            nb = tmp / "runs" / grid / f"{rid}.ipynb"
            if w.is_file():   # weights and notebooks first: a merged row never points at nothing
                (data_dir / "weights").mkdir(parents=True, exist_ok=True)
                shutil.copy2(w, data_dir / "weights" / w.name)
                runs.loc[i, "weights"] = _rel(data_dir / "weights" / w.name)
            if nb.is_file():
                (data_dir / "runs" / grid).mkdir(parents=True, exist_ok=True)
                shutil.copy2(nb, data_dir / "runs" / grid / nb.name)
                runs.loc[i, "notebook"] = _rel(data_dir / "runs" / grid / nb.name)
        results.atomic_write_csv(results.path("runs", tmp / "results"), runs)
        added = results.merge(tmp / "results", data_dir / "results")
    if (tmp / "report").is_dir():
        dest = data_dir / "device"
        dest.mkdir(parents=True, exist_ok=True)
        for f in (tmp / "report").iterdir():
            shutil.copy2(f, dest / f.name)
    print(f"merged into {data_dir}: {added}")
    return added


# ---------------------------------------------------------------------------- rehearse
def _tiny_cifar(folder: Path, n_train: int = 256, n_test: int = 200) -> Path:
    """A CIFAR-10-shaped archive of learnable synthetic images (class = a bright square's place)."""
    import numpy as np
    rng = np.random.default_rng(0)

    def part(n):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 + 8 * (k // 4):8 + 8 * (k // 4), 2 + 7 * (k % 4):8 + 7 * (k % 4)] = 250
        return x, y.astype(np.uint8)

    folder.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = part(n_train), part(n_test)
    path = folder / "cifar10.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


class FakeDevice:
    """A local stand-in for the device tool: each call lays the working tree anew in
    ``root/repo`` (tracked and untracked-not-ignored files without :data:`SLIM_OUT`, as a slimmed
    visit carries them, plus ``carry``; at most
    :data:`CARRY_LIMIT`), keeps ignored files and the visit folder between calls, empties
    ``$OUT`` and checks what comes back against the tool's limits."""

    def __init__(self, root: Path):
        self.root, self.repo, self.out = root, root / "repo", root / "OUT"
        self.visit = root / "visit"

    def call(self, command: str, carry: list[str]) -> tuple[int, list[Path]]:
        files = travelling_files(REPO, slimmed=True) + [p for c in carry for p in
                                           ([REPO / c] if (REPO / c).is_file() else (REPO / c).rglob("*")) if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        if size > CARRY_LIMIT:
            raise SystemExit(f"rehearsal: the call would carry {size / MiB:.1f} MiB > {CARRY_LIMIT / MiB:.0f} MiB")
        for c in carry:                      # carried paths replace those there
            shutil.rmtree(self.repo / c, ignore_errors=True)
        for p in files:
            dest = self.repo / p.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir(parents=True)
        env = {**os.environ, "OUT": str(self.out), "BRIDGEOUT_VISIT_ROOT": str(self.visit),
               "BRIDGEOUT_VISIT_REHEARSE": "1", "PYTHONPATH": str(self.repo), "OMP_NUM_THREADS": "1"}
        print(f"--- fake device call ({size / MiB:.1f} MiB carried): {command}", flush=True)
        rc = subprocess.run(["bash", "-c", command.replace("python3 ", f"{sys.executable} ")], cwd=self.repo,
                            env=env).returncode
        back = sorted(p for p in self.out.rglob("*") if p.is_file())
        if len(back) > OUT_FILES or any(p.stat().st_size > OUT_FILE_BYTES for p in back):
            raise SystemExit(f"rehearsal: $OUT holds {len(back)} files, limits {OUT_FILES} x {OUT_FILE_BYTES // MiB} MiB")
        return rc, back


def _stop_started(visit: Path) -> list[int]:
    """End the process groups of runs the (fake) device started that are still alive; returns
    their pids. On a real device the machine goes away instead; a rehearsal must leave nothing."""
    import signal
    info = visit / "started.json"
    alive = []
    for pid in json.loads(info.read_text()).get("pids", []) if info.is_file() else []:
        try:
            os.killpg(pid, signal.SIGTERM)    # the runner was started with its own session
            alive.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return alive


def rehearse(root: Path, *, merge_into: Path | None = None) -> dict:
    """Plan, stage, run, collect and merge against :class:`FakeDevice` in ``root`` (CPU,
    smoke protocol, tiny synthetic CIFAR-10 cut into two parts); the merge goes to
    ``merge_into`` (default ``root/data``), never to the committed tables. A ``.stage/`` of a
    real plan is set aside and put back; any run still going at the end is stopped."""
    root = Path(root).resolve()
    shutil.rmtree(root, ignore_errors=True)
    kept = REPO / STAGE
    aside = root.parent / f".{root.name}-stage-aside"
    if kept.exists():
        shutil.rmtree(aside, ignore_errors=True)
        shutil.move(str(kept), str(aside))
    dev = FakeDevice(root / "device")
    try:
        return _rehearse(root, dev, merge_into)
    finally:
        stopped = _stop_started(dev.visit)
        if stopped:
            print(f"rehearsal: ended {len(stopped)} runner process group(s) still alive: {stopped}", file=sys.stderr)
        shutil.rmtree(REPO / STAGE, ignore_errors=True)
        if aside.exists():
            shutil.move(str(aside), str(kept))


def _rehearse(root: Path, dev: "FakeDevice", merge_into: Path | None) -> dict:
    archive = _tiny_cifar(root / "src")
    info = plan(archive, rehearse=True)
    # the real archive needs several parts: cut the tiny one in two so reassembly is exercised
    shutil.rmtree(REPO / STAGE, ignore_errors=True)
    half = archive.stat().st_size // 2 + 1
    parts = split(archive, REPO / STAGE, half)
    (REPO / STAGE / "manifest.json").write_text(json.dumps({"archive": archive.name, "sha256": sha256(archive),
                                                           "parts": len(parts), "bytes": archive.stat().st_size}))
    rcs = {}
    for k in range(1, len(parts) + 1):
        rcs[f"stage {k}"], _ = dev.call(f"python3 tools/gpu_visit.py device-stage --part {k} --of {len(parts)}",
                                        [str(STAGE / f"part-{k:02d}"), str(STAGE / "manifest.json")])
    rcs["run"], _ = dev.call("python3 tools/gpu_visit.py device-run --minutes-left 5", [])
    rcs["collect"], back = dev.call("python3 tools/gpu_visit.py device-collect --wait 150", [])
    got = root / "files_at"
    got.mkdir()
    for p in back:
        shutil.copy2(p, got / p.name)
    data = merge_into or root / "data"
    added = merge(got, data)
    return {"plan": info, "exit": rcs, "back": [p.name for p in back], "added": added, "data": data}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/gpu_visit.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("plan", help="here: measure, split, write .stage/, print the device calls")
    p.add_argument("--archive", default=os.path.join(os.environ.get("BRIDGEOUT_DATA", "../shared/data"), "cifar10.npz"))
    s = sub.add_parser("device-stage", help="device: keep part K; after the last, reassemble, check, install")
    s.add_argument("--part", type=int, required=True)
    s.add_argument("--of", type=int, required=True)
    r = sub.add_parser("device-run", help="device: tests, smoke, benchmarks, projection, start runs")
    r.add_argument("--minutes-left", type=float, required=True)
    c = sub.add_parser("device-collect", help="device: wait for the runs, pack results into $OUT")
    c.add_argument("--wait", type=float, default=480)
    m = sub.add_parser("merge", help="here: merge what came back (the files_at folder) into data/")
    m.add_argument("folder")
    sub.add_parser("slim", help="here: hide data/weights and data/runs for the visit (sparse checkout)")
    sub.add_parser("unslim", help="here: bring them back (merge does it too)")
    h = sub.add_parser("rehearse", help="here: the whole visit against a local stand-in for the device")
    h.add_argument("--root", default="/tmp/bridgeout-rehearsal")
    a = ap.parse_args(argv)
    if a.step == "plan":
        if not Path(a.archive).is_file():
            ap.error(f"--archive {a.archive}: no such file")
        plan(Path(a.archive))
        return 0
    if a.step == "device-stage":
        if not 1 <= a.part <= a.of:
            ap.error(f"--part must be in 1..--of ({a.of}), got {a.part}")
        return device_stage(a.part, a.of)
    if a.step == "device-run":
        return device_run(a.minutes_left)
    if a.step == "device-collect":
        return device_collect(a.wait, Path(os.environ.get("OUT", "out")))
    if a.step == "slim":
        print(f"{slim() / MiB:.1f} MiB per call now")
        return 0
    if a.step == "unslim":
        unslim()
        return 0
    if a.step == "merge":
        merge(Path(a.folder))
        return 0
    res = rehearse(Path(a.root))
    print(json.dumps({k: v for k, v in res.items() if k != "plan"}, indent=1, default=str))
    return 0 if all(v == 0 for v in res["exit"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
