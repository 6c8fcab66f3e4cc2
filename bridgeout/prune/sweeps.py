"""The sweep: every (criterion, scope, mode, fraction) on one trained network, as a tidy table
with accuracy, costs and timings."""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from .costs import _conv_filter_costs, count_flops, measure_latency
from .mask import _apply_mask, _conv_scores, _mask_selection_from_scores
from .oneshot import _check_only_in_mask, _plain_copy
from .published import prune_bn_scales_
from .remove import RemovalPlan
from .repair import _check_recal, _finetune, keep_channel_means_, recalibrate_batchnorm
from .scores import _check_fraction, _check_seq
from ..data import as_device_data
from ..introspect import check_input_fits, conv_layers as prunable_convs, count_parameters, require_convs
from ..registry import check_scope, CRITERIA, FRACTIONS, MODES, PRUNERS
from ..train import evaluate
from .._validate import check_choice


DEFAULT_FRACTIONS = FRACTIONS

#: columns of the :func:`sweep` table, in order.
SWEEP_COLUMNS = (
    "criterion", "scope", "mode", "fraction", "test_acc", "test_loss",
    "params", "params_effective", "flops", "flops_effective",
    "latency_b1_ms", "latency_b128_ms", "recalibrate_bn", "finetune_epochs",
    "prune_s", "adjust_s", "eval_s", "cost_s", "pruner",
)

_EPS = 1e-12
# (warm-up runs, timed runs) for latency, per device type


# --------------------------------------------------------------------------- costs
# --------------------------------------------------------------------------- evaluation
def _evaluate(model: nn.Module, data, batch_size: int) -> dict:
    """Test loss and accuracy with :func:`bridgeout.train.evaluate` (the project's single
    evaluation loop: device-resident batches, no grad, sums read once; bf16 autocast on
    CUDA, float32 on the CPU; channels-last inputs for channels-last weights)."""
    return evaluate(model, data, data.device, batch_size)


def _for_device(model: nn.Module, device: torch.device) -> nn.Module:
    """Channels-last weights (the layout of training, on CPU and CUDA alike; the evaluation
    then feeds channels-last inputs)."""
    return model.to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- sweep
def _resolve_device(device, data):
    if device is not None:
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)
    dev = getattr(data, "device", None)
    if dev is not None:
        return torch.device(dev)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sweep(model: nn.Module, data, fractions: Iterable[float] = DEFAULT_FRACTIONS,
          criteria: Iterable[str] = ("l2",), scopes: Iterable[str] = ("layer",),
          modes: Iterable[str] = ("mask",), recalibrate_bn: bool | int = False,
          finetune_epochs: int = 0, device=None, latency: bool = True,
          dataset: str | None = None, seed: int = 0, progress: bool = True,
          batch_size: int = 1000, pruner: str = "plain"):
    """Prune ``model`` at every ``(criterion, scope, mode, fraction)`` and evaluate it.

    One shot, no retraining unless asked: every pruned model starts from ``model``'s
    weights.  ``model`` is not modified (its state_dict is untouched).

    Speed: the network is copied to the device once; mask rows reuse one working copy
    (weights restored, filters zeroed); the dependency graph is traced once
    (:class:`RemovalPlan`) and every remove row applies it to a fresh copy; scores are
    computed once per criterion; the unpruned model is evaluated (and timed) once.

    Args:
        model: trained network (made plain with :func:`bridgeout.nn.plain`).
        data: a :class:`bridgeout.data.DeviceData` or the 4-tuple of arrays (then
            ``dataset`` names it); the whole test set is evaluated.
        fractions: the grid's fractions (a non-empty sequence without duplicates, each in
            [0, 1)).
        criteria: the grid's criteria (a non-empty sequence without duplicates, choices
            :data:`CRITERIA`).
        scopes: the grid's scopes (a non-empty sequence without duplicates, choices
            :data:`SCOPES`).
        modes: the grid's modes (a non-empty sequence without duplicates, choices
            :data:`MODES`).
        recalibrate_bn: ``True`` re-estimates BatchNorm statistics after pruning from
            50 training batches of 128 (:func:`recalibrate_batchnorm`); an int gives the
            number of batches.
        finetune_epochs: epochs of fine-tuning after pruning (:func:`bridgeout.train.fit`,
            the ``"fast"`` protocol rescaled to these epochs with lr 0.01; masked filters
            stay zero), 0 = none (the paper).
        device: where to evaluate (default: the data's device, else CUDA when available).
        latency: measure forward latency (batch 1 and 128) for ``remove`` rows and for the
            unpruned model (rows with fraction 0); NaN elsewhere.
        dataset: the dataset name, when ``data`` is a tuple of arrays.
        seed: seeds the ``"random"`` criterion, BN re-estimation and fine-tuning.
        progress: show a tqdm bar.
        pruner: what a mask row does besides zeroing the selected filters
            (:data:`bridgeout.results.PRUNERS`, the rows' ``pruner`` column): ``"plain"``
            nothing; ``"published"`` also zeroes the smallest-``|gamma|`` fraction of the
            BatchNorm scales the authors' pruner reached (the ``bn_scale_pruning`` quirk,
            :func:`bridgeout.quirks.prune_bn_scales_`); ``"mean"`` keeps each zeroed filter's
            channel at its mean BatchNorm output (:func:`bridgeout.repair.keep_channel_means_`).
            Remove rows are always ``"plain"`` (both variants act on masked channels).
        batch_size: evaluation batch size.  Evaluation is
            :func:`bridgeout.train.evaluate` on the device-resident test set (bf16 autocast
            and channels-last on CUDA, float32 on the CPU).

    Returns:
        DataFrame with :data:`SWEEP_COLUMNS`: one row per combination (criterion, scope,
        mode, fraction order).  ``test_acc`` in [0, 1]; ``params``/``flops`` are the dense
        counts of the evaluated module (FLOPs for one input image, forward,
        :func:`count_flops`); ``params_effective``/``flops_effective`` exclude zeroed
        filters' weights and multiply-adds in mask mode (equal to the dense counts in remove
        mode); ``prune_s``, ``adjust_s`` (BN re-estimation + fine-tuning), ``eval_s`` and
        ``cost_s`` (FLOPs, parameters, latency) are the row's wall times (the unpruned
        model is evaluated once and shared by every fraction-0 row).

    Raises:
        ValueError: a grid value out of range, unknown or repeated (the message names it and
            what is allowed); an ``only:<k>`` scope with mode ``remove``; a bad
            ``recalibrate_bn``, ``pruner`` or ``finetune_epochs``; a model without a conv, or
            one that cannot take the data's images; a missing or mismatched ``dataset``.
        TypeError: ``model`` is not an ``nn.Module``.
    """
    import pandas as pd

    fractions, criteria, scopes, modes, recal_batches, pruner = _check_grid(
        fractions, criteria, scopes, modes, recalibrate_bn, pruner, finetune_epochs)
    require_convs(model)
    device = _resolve_device(device, data)
    data = as_device_data(data, dataset, device)
    check_input_fits(model, torch.zeros(1, *data.x_test.shape[1:]), f"{data.name} images")
    run = _Sweep(model, data, device, recal_batches=recal_batches, finetune_epochs=int(finetune_epochs),
                 latency=latency, seed=seed, batch_size=batch_size, pruner=pruner)
    bar = None
    if progress:
        from tqdm import tqdm  # the text bar: tqdm.auto warns in notebooks without ipywidgets
        bar = tqdm(total=len(criteria) * len(scopes) * len(modes) * len(fractions), desc="prune sweep",
                   leave=False)
    rows = []
    for criterion in criteria:
        conv_scores = _conv_scores(run.convs, criterion, seed, run.base) if "mask" in modes else None
        for scope in scopes:
            for mode in modes:
                group_scores = (run.plan().importances(run.base, criterion, seed)
                                if mode == "remove" and any(f > 0 for f in fractions) else None)
                for fraction in fractions:
                    rows.append(run.row(criterion, scope, mode, fraction, conv_scores, group_scores))
                    if bar is not None:
                        bar.update()
    if bar is not None:
        bar.close()
    df = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    int_cols = ["params", "params_effective", "flops", "flops_effective", "finetune_epochs"]
    df[int_cols] = df[int_cols].astype("int64")
    df["fraction"] = df["fraction"].astype("float64")
    return df


def _check_grid(fractions, criteria, scopes, modes, recalibrate_bn, pruner, finetune_epochs):
    """:func:`sweep`'s grid, checked: ``(fractions, criteria, scopes, modes, recal_batches,
    pruner)``, each sequence non-empty and without duplicates (``ValueError`` naming the
    value and what is allowed otherwise)."""
    fractions = _check_seq("fractions", fractions, _check_fraction)
    criteria = _check_seq("criteria", criteria, lambda v: check_choice("criterion", v, CRITERIA))
    scopes = _check_seq("scopes", scopes, check_scope)
    modes = _check_seq("modes", modes, lambda v: check_choice("mode", v, MODES))
    _check_only_in_mask(scopes, modes)
    recal_batches = _check_recal(recalibrate_bn)
    pruner = check_choice("pruner", pruner, PRUNERS)
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, (int, np.integer)) \
            or finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be an integer >= 0, got {finetune_epochs!r}")
    return fractions, criteria, scopes, modes, recal_batches, pruner


class _Sweep:
    """The state one :func:`sweep` shares between its rows: the plain base model on the
    device (and its weights, restored before every mask row), the dense costs, the
    per-filter costs, the removal plan (traced on first use) and the unpruned row (evaluated
    once). Each ``*_row`` method returns the measured columns of one row."""

    def __init__(self, model, data, device, *, recal_batches, finetune_epochs, latency, seed, batch_size,
                 pruner):
        self.data, self.device, self.seed, self.batch_size = data, device, seed, batch_size
        self.recal_batches, self.finetune_epochs = recal_batches, finetune_epochs
        self.latency, self.pruner = latency, pruner
        self.base = _for_device(_plain_copy(model).to(device).eval(), device)
        self.example = data.normalize(data.x_test[:1])
        self.input_shape = tuple(self.example.shape[1:])
        self.base_state = {k: v.clone() for k, v in self.base.state_dict().items()}
        self.dense_params = count_parameters(self.base)
        self.dense_flops = count_flops(self.base, self.example)
        self.filter_costs = _conv_filter_costs(self.base, self.example)
        self.convs = prunable_convs(self.base)
        self._plan = None
        self._work = None
        self._unpruned = None

    def plan(self) -> "RemovalPlan":
        if self._plan is None:
            self._plan = RemovalPlan(self.base, self.example)
        return self._plan

    def row(self, criterion, scope, mode, fraction, conv_scores, group_scores) -> dict:
        """One row of the sweep's table: its key and its measured columns."""
        row = dict(criterion=criterion, scope=scope, mode=mode, fraction=fraction,
                   recalibrate_bn=bool(self.recal_batches), finetune_epochs=int(self.finetune_epochs),
                   pruner=self.pruner if mode == "mask" else "plain")
        if fraction == 0.0:
            row.update(self.unpruned())
        elif mode == "mask":
            row.update(self.mask_row(conv_scores, fraction, criterion, scope))
        else:
            row.update(self.remove_row(group_scores, fraction, criterion, scope))
        return row

    def adjust(self, m, selection):
        """BatchNorm re-estimation and fine-tuning, as asked (the pruned model, possibly new)."""
        if self.recal_batches:
            recalibrate_batchnorm(m, self.data, self.recal_batches, seed=self.seed)
        if self.finetune_epochs:
            m = _finetune(m, self.data, self.finetune_epochs, selection, self.seed, self.device)
        return m

    def latencies(self, m) -> tuple[float, float]:
        if not self.latency:
            return math.nan, math.nan
        return (measure_latency(m, self.input_shape, 1, self.device),
                measure_latency(m, self.input_shape, 128, self.device))

    def unpruned(self) -> dict:
        """Evaluation (and latency) of the unpruned model, computed once; later fraction-0
        rows share it with zero times."""
        if self._unpruned is not None:
            return {**self._unpruned, "adjust_s": 0.0, "eval_s": 0.0, "cost_s": 0.0}
        t0 = time.perf_counter()
        m = (self.adjust(copy.deepcopy(self.base), None) if (self.recal_batches or self.finetune_epochs)
             else self.base)
        t1 = time.perf_counter()
        ev = _evaluate(m, self.data, self.batch_size)
        t2 = time.perf_counter()
        lat = self.latencies(m)
        t3 = time.perf_counter()
        self._unpruned = dict(test_acc=ev["acc"], test_loss=ev["loss"], params=self.dense_params,
                              params_effective=self.dense_params, flops=self.dense_flops,
                              flops_effective=self.dense_flops, latency_b1_ms=lat[0], latency_b128_ms=lat[1],
                              prune_s=0.0, adjust_s=t1 - t0, eval_s=t2 - t1, cost_s=t3 - t2)
        return dict(self._unpruned)

    def mask_row(self, conv_scores, fraction, criterion, scope) -> dict:
        """Zero the selected filters of a reused working copy (weights restored first)."""
        t0 = time.perf_counter()
        if self._work is None:
            self._work = copy.deepcopy(self.base)
        self._work.load_state_dict(self.base_state)
        selection = _mask_selection_from_scores(self.convs, conv_scores, fraction, criterion, scope)
        pruned = _apply_mask(self._work, selection)
        if self.pruner == "published":
            prune_bn_scales_(pruned, fraction)
        elif self.pruner == "mean":
            keep_channel_means_(pruned, selection)
        t1 = time.perf_counter()
        pruned = self.adjust(pruned, selection)
        if pruned is not self._work:          # fine-tuning returned another module
            self._work = None
        t2 = time.perf_counter()
        ev = _evaluate(pruned, self.data, self.batch_size)
        t3 = time.perf_counter()
        zero_flops = sum(len(i) * self.filter_costs[n][0] for n, i in selection.items())
        zero_params = sum(len(i) * self.filter_costs[n][1] for n, i in selection.items())
        return dict(test_acc=ev["acc"], test_loss=ev["loss"], params=self.dense_params,
                    params_effective=self.dense_params - zero_params, flops=self.dense_flops,
                    flops_effective=self.dense_flops - zero_flops, latency_b1_ms=math.nan,
                    latency_b128_ms=math.nan, prune_s=t1 - t0, adjust_s=t2 - t1, eval_s=t3 - t2,
                    cost_s=time.perf_counter() - t3)

    def remove_row(self, group_scores, fraction, criterion, scope) -> dict:
        """Physically remove the selected channels from a fresh copy of the base model."""
        t0 = time.perf_counter()
        plan = self.plan()
        pruned = _for_device(plan.apply(self.base, plan.select(group_scores, fraction, criterion, scope)),
                             self.device)
        t1 = time.perf_counter()
        pruned = self.adjust(pruned, None)
        t2 = time.perf_counter()
        ev = _evaluate(pruned, self.data, self.batch_size)
        t3 = time.perf_counter()
        n_params = count_parameters(pruned)
        n_flops = count_flops(pruned, self.example)
        lat = self.latencies(pruned)
        return dict(test_acc=ev["acc"], test_loss=ev["loss"], params=n_params, params_effective=n_params,
                    flops=n_flops, flops_effective=n_flops, latency_b1_ms=lat[0], latency_b128_ms=lat[1],
                    prune_s=t1 - t0, adjust_s=t2 - t1, eval_s=t3 - t2, cost_s=time.perf_counter() - t3)
