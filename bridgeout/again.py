"""A later pass over trained runs: prune them again (other criteria, repair) and time them.

The grid trains each network once and records the pruning it was asked for. Questions asked
later (another ranking criterion, fine-tuning after pruning, the speed of the removed network
on a quiet machine) need the same trained weights, not a new training run. This module loads
them from the run's checkpoint or its kept weights file, checks that they are the run's (the
checkpoint names the run and has all its epochs, or the file has the recorded SHA-256, and the
network reproduces the recorded unpruned test accuracy), and produces rows for
``pruning.csv`` (:func:`prune_rows`) and ``latency.csv`` (:func:`latency_rows`) that
``notebooks/prune_again.ipynb`` appends with ``results.append(..., keyed=True)``.
Whether the CPU is quiet enough to time on is :mod:`bridgeout.cpuload` (re-exported here).

Example::

    from bridgeout import again
    t = again.load_trained("cifar10-vgg16-w0.25-bridgeout-cpu-s0-0eb700")
    rows = again.prune_rows(t, criteria=["l1", "random"])
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from . import experiment, prune, registry, results, train, weights
from .cpuload import cpu_busy, require_quiet  # noqa: F401 - re-exported
from .experiment import _repo_path, filter_rows as rows_of, validate_params
from .prune import costs
from ._validate import check_choice

__all__ = ["Trained", "load_trained", "prune_rows", "filter_rows", "latency_rows", "cpu_busy", "require_quiet",
           "select_runs", "run_pass"]

#: Difference allowed between the recorded unpruned test accuracy and the reloaded one:
#: 1.5 test images in 10,000 (evaluation order and float rounding may move one prediction).
ACC_TOLERANCE = 1.5e-4


@dataclass
class Trained:
    """A recorded run's trained network, reloaded.

    Attributes:
        run: its ``runs.csv`` row.
        params: the experiment parameters that rebuild it.
        model: the network, in eval mode, on the CPU or the data's device.
        data: its ``DeviceData``.
        test_acc: the unpruned test accuracy, re-evaluated.
    """

    run: pd.Series
    params: dict
    model: torch.nn.Module
    data: object
    test_acc: float


def _run_row(run_id: str, results_dir) -> pd.Series:
    runs = results.load("runs", results_dir)
    hit = runs[runs["run_id"] == run_id]
    if hit.empty:
        raise ValueError(f"run_id {run_id!r} is not in {results.path('runs', results_dir)}; "
                         f"pass the id of a finished run")
    return hit.iloc[0]


def _params_of(run: pd.Series, device: str, data_root=None) -> dict:
    """The experiment parameters that rebuild the run's network and data (a stratified
    subset of the whole split is the whole split in its order, so ``n_train`` / ``n_test``
    are passed as recorded)."""
    lam = run["lam"]
    return validate_params({
        "model": run["model"], "regularizer": run["regularizer"], "p": float(run["p"]), "q": float(run["q"]),
        "target_fraction": float(run["target_fraction"]), "signed": bool(run["signed"]),
        "lam": None if lam is None or (isinstance(lam, float) and math.isnan(lam)) else float(lam),
        "dataset": run["dataset"], "protocol": run["protocol"], "width": float(run["width"]),
        "n_train": int(run["n_train"]), "n_test": int(run["n_test"]),
        "seed": int(run["seed"]), "select": run["select"],
        "quirks": [q for q in (run["quirks"] or "").split(";") if q], "device": device,
        "run_id": run["run_id"], "data_root": None if data_root is None else str(data_root),
        "precision": run.get("precision") or "fp32",
    })


def _has_weights(run: pd.Series) -> bool:
    w = run.get("weights")
    return isinstance(w, str) and bool(w)


def _trained_state(run: pd.Series, ckpt_dir: Path, select: str) -> dict:
    """The run's selected weights: from its checkpoint in ``ckpt_dir`` when there is one,
    else from its recorded weights file (sha256-checked); ``ValueError`` when neither."""
    run_id = run["run_id"]
    ckpt = train.load_checkpoint(ckpt_dir)
    if ckpt is None:
        if not _has_weights(run):
            raise ValueError(f"no checkpoint for run {run_id!r} in {ckpt_dir} and no weights recorded in "
                             f"runs.csv; only runs with kept weights, or a checkpoint on this machine, can be "
                             f"pruned again")
        return weights.load(experiment._repo_path(run["weights"]), run["weights_sha256"])
    owner = (ckpt.get("config", {}).get("owner") or {}).get("run_id")
    if owner not in (None, run_id):
        raise ValueError(f"{ckpt_dir}: the checkpoint belongs to run {owner!r}, not {run_id!r}")
    if int(ckpt["epoch"]) != int(run["epochs_done"]):
        raise ValueError(f"{ckpt_dir}: the checkpoint is at epoch {int(ckpt['epoch'])}, the run recorded "
                         f"{int(run['epochs_done'])} epochs; it is not the run's final state")
    return ckpt["model"] if select == "final" else ckpt.get("best_state") or ckpt["model"]


def load_trained(run_id: str, *, results_dir="data/results", checkpoint_dir="~/.cache/bridgeout/checkpoints",
                 device: str = "cpu", data_root=None, dd=None) -> Trained:
    """Reload the trained network of a recorded run from ``<checkpoint_dir>/<run_id>``, or,
    where no checkpoint exists, from the weights file ``runs.weights`` names (its SHA-256
    checked against ``runs.weights_sha256``).

    Raises ``ValueError`` when the run is not recorded, has neither checkpoint nor weights, names
    another run, stops before the run's last epoch, or gives an unpruned test accuracy more
    than :data:`ACC_TOLERANCE` away from ``runs.final_test_acc`` (``best_test_acc`` for
    ``select="best_test"``).

    Args:
        run_id: the run id.
        results_dir: keyword-only; the folder of the tables (relative: from the repository root).
        checkpoint_dir: keyword-only; the folder of the runs' checkpoint folders (``~`` expanded).
        device: keyword-only; the device of the rebuilt data and network.
        data_root: keyword-only; the dataset folder (default ``$BRIDGEOUT_DATA``, as for the run).
        dd: keyword-only; the run's data when already loaded (same dataset, subset, seed).

    Returns:
        the :class:`Trained` run.

    Raises:
        ValueError: as above.
    """
    root = experiment._repo_path(results_dir)
    run = _run_row(run_id, root)
    params = _params_of(run, device, data_root)
    state = _trained_state(run, Path(checkpoint_dir).expanduser() / run_id, params["select"])
    dd = experiment.load_data(params) if dd is None else dd
    model = experiment.build_model(params, dd.num_classes)
    model.load_state_dict(state)
    model = model.to(dd.device).eval()
    acc = float(train.evaluate(model, dd)["acc"])
    want = float(run["final_test_acc"] if params["select"] == "final" else run["best_test_acc"])
    if abs(acc - want) > ACC_TOLERANCE:
        raise ValueError(f"run {run_id!r}: the reloaded network scores {acc:.4f} on the test set, the run "
                         f"recorded {want:.4f}; the checkpoint or the data differ from the run's")
    return Trained(run=run, params=params, model=model, data=dd, test_acc=acc)


def prune_rows(t: Trained, *, criteria: Sequence[str] = ("l2",), modes: Sequence[str] = ("mask",),
               scopes: Sequence[str] = ("layer",),
               fractions: Sequence[float] = registry.FRACTIONS,
               recalibrate_bn: bool = False, finetune_epochs: int = 0, notebook: str = "",
               pruner: str = "plain", progress: bool = False) -> pd.DataFrame:
    """``pruning.csv`` rows of the reloaded network (:func:`bridgeout.prune.sweep`, no
    latency; ``scopes``: per-layer and/or global ranking), seeded with the run's seed,
    naming ``notebook``; validated.

    Args:
        t: the reloaded run (:func:`load_trained`).
        criteria: keyword-only; the criteria.
        modes: keyword-only; the modes.
        scopes: keyword-only; the scopes.
        fractions: keyword-only; the fractions.
        recalibrate_bn: keyword-only; re-estimate BatchNorm statistics after pruning.
        finetune_epochs: keyword-only; epochs of fine-tuning after pruning.
        notebook: keyword-only; the executed notebook the rows name.
        pruner: keyword-only; ``"published"``, the authors' pruner (mask rows also zero the
            BatchNorm scales it reaches: the ``bn_scale_pruning`` quirk) on the same weights;
            ``"mean"``, mean replacement (:func:`bridgeout.prune.sweep`); or ``"plain"``.
        progress: keyword-only; show the sweep's progress bar.

    Returns:
        the rows, with the columns of :data:`bridgeout.results.PRUNING_SCHEMA`.

    Raises:
        ValueError: an unknown pruner, or a grid value :func:`bridgeout.prune.sweep` refuses.
    """
    pruner = check_choice("pruner", pruner, results.PRUNERS)
    sw = prune.sweep(t.model, t.data, fractions=tuple(fractions), criteria=tuple(criteria),
                     scopes=tuple(scopes), modes=tuple(modes), recalibrate_bn=recalibrate_bn,
                     finetune_epochs=finetune_epochs, device=t.data.device, latency=False,
                     dataset=t.params["dataset"], seed=t.params["seed"], progress=progress,
                     pruner=pruner)
    sw.insert(0, "run_id", t.params["run_id"])
    sw["notebook"] = notebook
    return results.validate("pruning", sw[list(results.PRUNING_SCHEMA)],
                            source=f"pruning rows of run {t.params['run_id']}")


def filter_rows(t: Trained) -> pd.DataFrame:
    """``filters.csv`` rows of the reloaded network (:func:`bridgeout.experiment.filter_rows`:
    norms, BatchNorm parameters and running statistics), validated.

    Args:
        t: the reloaded run (:func:`load_trained`).

    Returns:
        the rows.
    """
    rows = rows_of(t.model)
    rows.insert(0, "run_id", t.params["run_id"])
    return results.validate("filters", rows, source=f"filter rows of run {t.params['run_id']}")


def _lacks_filter_stats(run_id: str, root) -> bool:
    """True when the run has no filter rows, or rows whose BatchNorm running statistics are
    empty although their BatchNorm scales are not (rows written before those columns)."""
    f = results.load("filters", root)
    f = f[f["run_id"] == run_id]
    return f.empty or bool((f["bn_mean"].isna() & f["gamma"].notna()).any())


def latency_rows(t: Trained, *, fractions: Sequence[float], criterion: str = "l2",
                 batch_sizes: Sequence[int] = (1, 128), threads: int = 1,
                 runtimes: Sequence[str] = results.RUNTIMES, warmup: int = 3, repeats: int = 10,
                 notebook: str = "") -> pd.DataFrame:
    """``latency.csv`` rows: the network with ``fraction`` of its filters *removed* per layer
    (criterion ``criterion``), timed on the CPU with ``threads`` threads in each runtime at
    each batch size (median of ``repeats`` after ``warmup``), with its FLOPs and parameters.

    The network is moved to the CPU; torch's thread count is restored afterwards.

    Args:
        t: the reloaded run (:func:`load_trained`).
        fractions: keyword-only; the fractions removed (0: the unpruned network).
        criterion: keyword-only; the ranking criterion.
        batch_sizes: keyword-only; the batch sizes timed.
        threads: keyword-only; CPU threads.
        runtimes: keyword-only; names from :data:`bridgeout.results.RUNTIMES`.
        warmup: keyword-only; untimed passes.
        repeats: keyword-only; timed passes.
        notebook: keyword-only; the executed notebook the rows name.

    Returns:
        the rows, with the columns of :data:`bridgeout.results.LATENCY_SCHEMA`.

    Raises:
        ValueError: an unknown runtime, or a network remove mode cannot prune.
    """
    for rt in runtimes:
        check_choice("runtime", rt, results.RUNTIMES)
    prov = results.provenance("cpu")
    base = prune.prune(t.model.to("cpu"), 0.0, criterion)
    example = t.data.normalize(t.data.x_test[:1]).cpu()
    shape = tuple(example.shape[1:])
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    rows = []
    try:
        for f in fractions:
            net = base if f == 0 else prune.prune(base, float(f), criterion, mode="remove",
                                                  seed=t.params["seed"], example_input=example)
            net = net.cpu().eval()
            flops, params = costs.count_flops(net, example), costs.count_parameters(net)
            for rt in runtimes:
                for b in batch_sizes:
                    if rt == "torch":
                        ms = costs.measure_latency(net, shape, int(b), "cpu", warmup=warmup, repeats=repeats)
                        version = torch.__version__
                    else:
                        import onnxruntime as ort
                        ms = costs.measure_onnx_latency(net, shape, int(b), threads=int(threads),
                                                        warmup=warmup, repeats=repeats)
                        version = ort.__version__
                    rows.append({"run_id": t.params["run_id"], "criterion": criterion, "fraction": float(f),
                                 "runtime": rt, "batch_size": int(b), "threads": int(threads),
                                 "latency_ms": ms, "repeats": int(repeats), "flops": int(flops),
                                 "params": int(params), "device_name": prov["device_name"],
                                 "runtime_version": version, "git_commit": prov["git_commit"],
                                 "date": prov["date"], "notebook": notebook})
    finally:
        torch.set_num_threads(old_threads)
    return results.validate("latency", pd.DataFrame(rows, columns=list(results.LATENCY_SCHEMA)),
                            source=f"latency rows of run {t.params['run_id']}")


def select_runs(grids: Sequence[str], *, results_dir="data/results", shard: str = "1/1",
                only: str = "") -> list[str]:
    """Finished runs of the named grids (in ``runs.csv`` order), those whose id contains
    ``only``, then every n-th from the k-th for ``shard="k/n"`` (two shards = two workers).

    Args:
        grids: a non-empty list of grid names.
        results_dir: keyword-only; the folder of the tables.
        shard: keyword-only; ``"k/n"`` with 1 <= k <= n.
        only: keyword-only; a substring the run ids must contain.

    Returns:
        the run ids.

    Raises:
        ValueError: ``grids`` not a non-empty list, a grid with no finished run, or a bad
            ``shard``.
    """
    if isinstance(grids, str) or not isinstance(grids, Sequence) or not grids:
        raise ValueError(f"grids must be a non-empty list of grid names, got {grids!r}")
    runs = results.load("runs", _repo_path(results_dir))
    unknown = sorted(set(grids) - set(runs["grid"].dropna()))
    if unknown:
        raise ValueError(f"grid(s) {unknown} have no finished run in runs.csv; known grids: "
                         f"{sorted(set(runs['grid'].dropna()) - {''})}")
    ids = [r for r in runs[runs["grid"].isin(list(grids))]["run_id"] if only in r]
    try:
        k, n = (int(v) for v in str(shard).split("/"))
        if not 1 <= k <= n:
            raise ValueError
    except ValueError:
        raise ValueError(f"shard must be 'k/n' with 1 <= k <= n (e.g. '1/2'), got {shard!r}") from None
    return ids[k - 1::n]


def _missing(table: str, frame: pd.DataFrame, root) -> pd.DataFrame:
    """Rows of ``frame`` (key columns only) not yet in ``table``."""
    keys = list(results.KEYS[table])
    have = results.load(table, root)[keys].astype(str)
    merged = frame[keys].astype(str).merge(have.drop_duplicates(), how="left", indicator=True)
    return frame[(merged["_merge"] == "left_only").to_numpy()]


def run_pass(run_ids: Sequence[str], *, criteria: Sequence[str] = ("l2",), modes: Sequence[str] = ("mask",),
             scopes: Sequence[str] = ("layer",), fractions: Sequence[float] = registry.FRACTIONS,
             recalibrate_bn: Sequence[bool] = (False,), finetune_epochs: int = 0,
             latency_fractions: Sequence[float] = (), latency_criterion: str = "l2", threads: int = 1,
             batch_sizes: Sequence[int] = (1, 128), repeats: int = 10, quiet_limit: float = 0.15,
             results_dir="data/results", checkpoint_dir="~/.cache/bridgeout/checkpoints",
             data_root=None, notebook: str = "", filter_stats: bool = False, pruner: str = "plain",
             progress: bool = True) -> pd.DataFrame:
    """Prune (and time) each run again and append the rows; returns one summary row per run.

    A run whose requested rows are all in the tables already is skipped, so a pass that was
    stopped resumes where it was. Each run's rows are appended as soon as they are measured
    (``keyed=True``). ``latency_fractions`` non-empty times the removed networks; before each
    run's timing the CPU must be quiet (:func:`require_quiet` with ``quiet_limit``).

    Args:
        run_ids: the runs.
        criteria: keyword-only; pruning criteria (:func:`prune_rows`).
        modes: keyword-only; pruning modes.
        scopes: keyword-only; ``"layer"`` (the paper's ranking within each layer) and/or
            ``"global"``.
        fractions: keyword-only; pruned fractions.
        recalibrate_bn: keyword-only; the values of ``recalibrate_bn`` to sweep (one sweep each).
        finetune_epochs: keyword-only; epochs of fine-tuning after pruning.
        latency_fractions: keyword-only; fractions removed for the latency rows (empty: none).
        latency_criterion: keyword-only; their ranking criterion.
        threads: keyword-only; CPU threads for the timing.
        batch_sizes: keyword-only; batch sizes timed.
        repeats: keyword-only; timed passes.
        quiet_limit: keyword-only; the busy fraction allowed before timing.
        results_dir: keyword-only; the folder of the tables.
        checkpoint_dir: keyword-only; the folder of the runs' checkpoints (:func:`load_trained`).
        data_root: keyword-only; the dataset folder.
        notebook: keyword-only; the executed notebook the rows name.
        filter_stats: keyword-only; rewrite the run's ``filters.csv`` rows from its weights where
            they lack the BatchNorm running statistics (:func:`filter_rows`; the other columns
            come out equal).
        pruner: keyword-only; whose pruner (:data:`bridgeout.results.PRUNERS`;
            :func:`prune_rows`); it applies to mask rows, remove rows are the plain pruner's.
        progress: keyword-only; progress bars and a line per run.

    Returns:
        one row per run: ``run_id``, ``recorded_acc``, ``reloaded_acc``, ``pruning_rows``,
        ``latency_rows``, ``filter_rows``, ``cpu_busy``, ``seconds`` (accuracies and
        ``cpu_busy`` NaN for a skipped run).

    Raises:
        ValueError: a run that cannot be reloaded (:func:`load_trained`) or rows that fail
            validation.
        RuntimeError: the machine is not quiet before a timing.
    """
    root = _repo_path(results_dir)
    # the published pruner differs in mask mode only; its remove rows are the plain pruner's
    want_p = pd.DataFrame([{"run_id": r, "criterion": c, "scope": sc, "mode": m, "fraction": float(f),
                            "recalibrate_bn": bool(rb), "finetune_epochs": int(finetune_epochs),
                            "pruner": pruner if m == "mask" else "plain"}
                           for r in run_ids for c in criteria for sc in scopes for m in modes
                           for f in fractions for rb in recalibrate_bn])
    want_l = pd.DataFrame([{"run_id": r, "criterion": latency_criterion, "fraction": float(f), "runtime": rt,
                            "batch_size": int(b), "threads": int(threads)}
                           for r in run_ids for f in latency_fractions for rt in results.RUNTIMES
                           for b in batch_sizes], columns=list(results.KEYS["latency"]))
    summary = []
    for run_id in run_ids:
        t0 = time.perf_counter()
        todo_p = _missing("pruning", want_p[want_p["run_id"] == run_id], root) if len(want_p) else want_p
        todo_l = _missing("latency", want_l[want_l["run_id"] == run_id], root) if len(want_l) else want_l
        todo_f = filter_stats and _lacks_filter_stats(run_id, root)
        row = {"run_id": run_id, "recorded_acc": math.nan, "reloaded_acc": math.nan,
               "pruning_rows": 0, "latency_rows": 0, "filter_rows": 0, "cpu_busy": math.nan, "seconds": 0.0}
        if len(todo_p) or len(todo_l) or todo_f:
            t = load_trained(run_id, results_dir=root, checkpoint_dir=checkpoint_dir, data_root=data_root)
            row["recorded_acc"], row["reloaded_acc"] = float(t.run["final_test_acc"]), t.test_acc
            for rb in recalibrate_bn:
                if len(todo_p) and (todo_p["recalibrate_bn"].astype(str) == str(bool(rb))).any():
                    rows = prune_rows(t, criteria=criteria, modes=modes, scopes=scopes, fractions=fractions,
                                      recalibrate_bn=rb,
                                      finetune_epochs=finetune_epochs, notebook=notebook, pruner=pruner,
                                      progress=progress)
                    row["pruning_rows"] += results.append("pruning", rows, root, keyed=True)
            if todo_f:
                row["filter_rows"] = results.append("filters", filter_rows(t), root, replace=True)
            if len(todo_l):
                row["cpu_busy"] = require_quiet(quiet_limit)
                rows = latency_rows(t, fractions=latency_fractions, criterion=latency_criterion,
                                    batch_sizes=batch_sizes, threads=threads, repeats=repeats, notebook=notebook)
                row["latency_rows"] = results.append("latency", rows, root, keyed=True)
        row["seconds"] = time.perf_counter() - t0
        summary.append(row)
        if progress:
            print(f"{run_id}: +{row['pruning_rows']} pruning, +{row['latency_rows']} latency, "
                  f"{row['filter_rows']} filter rows rewritten in {row['seconds']:.0f} s", flush=True)
    return pd.DataFrame(summary)
