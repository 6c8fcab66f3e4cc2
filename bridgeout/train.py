"""Training: :func:`fit`, :func:`evaluate` and one :func:`train_step` (checkpoints:
:mod:`bridgeout.checkpoint`; schedules: :mod:`bridgeout.protocols`).

The schedules (``paper``, ``fast``, ``cpu``, ``fast_lr0.05``, ``smoke``) are in
:mod:`bridgeout.protocols` (re-exported here).

Engine. The data are a :class:`bridgeout.data.DeviceData` (whole dataset on the device,
augmentation there). ``precision`` (:data:`PRECISIONS`) is ``"fp32"`` or ``"bf16"``: with
``"bf16"`` the forward/backward run under ``torch.autocast(dtype=torch.bfloat16)`` on CPU or
CUDA (see :func:`autocast`): convolutions in bf16; BatchNorm's parameters, statistics and
arithmetic, the loss, the weights, the optimizer and Bridgeout's noise in fp32 (the noisy
weight is cast at the conv);
``"auto"`` (:func:`resolve_precision`) picks bf16 where the hardware computes it natively
(CUDA with bf16, a CPU with ``avx512_bf16`` or AMX) and fp32 elsewhere. Test-set evaluation is
always fp32, so a stored fp32 weights file reproduces every recorded accuracy. The model and
inputs are channels_last (on the CPU too, by default), cuDNN autotuning is on, and ``compile=True`` wraps the model with
:func:`torch.compile`. Loss and accuracy are accumulated on the device and read once per
logging point (``log_every`` steps for the progress bar, and at the end of the epoch), so
the step loop never waits for the host otherwise.

Reproducibility. ``seed`` seeds the global torch RNG (used by Bridgeout / dropout noise of
modules whose ``generator`` is ``None``) and a data generator on the device (shuffling and
augmentation). The model's initial weights are whatever is passed in (build it after
``torch.manual_seed(seed)`` to fix them). On CPU two fits with equal seeds give bit-equal
weights, and a run interrupted and resumed from its checkpoint ends bit-equal to an
uninterrupted one: checkpoints hold the model, optimizer and scheduler states, the global
CPU (and CUDA) RNG states, the data generator state, the state of every module-level
``generator``, the history and (for ``select="best_test"``) the best weights so far.

The device, native bf16, :func:`autocast` and the model's placement (:func:`prepare_model`)
are in :mod:`bridgeout.hardware` (re-exported here).
"""
from __future__ import annotations

import functools
import itertools
import math
import time
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoint
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, model_identity  # noqa: F401 - re-exported
from .data import as_device_data
from .hardware import (  # noqa: F401 - re-exported
    _prepare_input, autocast, native_bf16, prepare_model, resolve_device,
)
from .introspect import channels_last_model, check_input_fits, model_device
from .protocols import PROTOCOLS, Protocol, get_protocol  # noqa: F401 - re-exported
from .registry import PRECISIONS, SELECT
from .sparsity import penalty_fn
from ._validate import check_choice, check_int

__all__ = ["Protocol", "PROTOCOLS", "SELECT", "PRECISIONS", "resolve_precision", "native_bf16", "autocast", "HISTORY_COLUMNS", "get_protocol", "resolve_device",
           "evaluate", "fit", "prepare_model", "train_step", "FitResult", "CHECKPOINT_NAME", "load_checkpoint",
           "model_identity"]

HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                   "seconds", "images_per_s")


def resolve_precision(precision: str, device="cpu") -> str:
    """``"fp32"`` / ``"bf16"`` as given; ``"auto"`` -> ``"bf16"`` where :func:`native_bf16`,
    else ``"fp32"`` (with a printed note saying why).

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``.
        device: the training device.

    Returns:
        ``"fp32"`` or ``"bf16"``.

    Raises:
        ValueError: an unknown precision.
    """
    precision = check_choice("precision", precision, (*PRECISIONS, "auto"))
    if precision != "auto":
        return precision
    if native_bf16(device):
        return "bf16"
    print(f"precision 'auto': {torch.device(device)} has no native bf16 (avx512_bf16 / AMX / CUDA bf16); "
          f"training in fp32")
    return "fp32"


# -------------------------------------------------------------------------- evaluate
@torch.no_grad()
def evaluate(model: nn.Module, data, device=None, batch_size: int = 100, *, dataset=None) -> dict:
    """Mean cross-entropy and accuracy (in [0, 1]) of ``model`` on the test split.

    ``data`` is a :class:`~bridgeout.data.DeviceData` or the 4-tuple of arrays (then pass
    ``dataset``). ``device`` defaults to the model's device. The model is put in eval mode
    for the pass and its previous mode restored. Always fp32, whatever the training precision.
    Sums are kept on the device and read once.

    Args:
        model: the network.
        data: the dataset.
        device: where to evaluate (default: the model's device).
        batch_size: the test batch size.
        dataset: keyword-only; the dataset name, needed when ``data`` is a tuple of arrays.

    Returns:
        ``{"loss": mean cross-entropy, "acc": accuracy}``.

    Raises:
        ValueError: a bad device, a missing or mismatched ``dataset``, or a bad ``batch_size``.
    """
    dev = model_device(model) if device is None else resolve_device(device)
    dd = as_device_data(data, dataset, dev)
    cl = channels_last_model(model)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    try:
        for x, y in dd.test_batches(batch_size):
            out = model(_prepare_input(x, cl))
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
    finally:
        model.train(was_training)
    n = dd.test_size
    return {"loss": float(loss_sum) / n, "acc": int(correct) / n}


# ------------------------------------------------------------------------------- fit
def train_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               device: torch.device, channels_last: bool | None = None,
               penalty=None, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a batch: forward (in ``precision``, see :func:`autocast`;
    channels_last inputs when the model's weights are, see :func:`prepare_model`), mean
    cross-entropy in fp32, backward, ``opt.step()``. Returns the detached float32 loss and the
    number of correct predictions as 0-d tensors on the device (no host sync).
    ``channels_last`` None looks at the model's weights (pass it to skip the look).
    ``penalty``, a callable returning a 0-d tensor (:func:`bridgeout.sparsity.penalty_fn`),
    is added to the loss that is minimised (in fp32); the returned loss is the cross-entropy
    alone.

    Args:
        net: the network (or its compiled wrapper), in training mode.
        opt: the optimizer over its parameters.
        x: the input batch.
        y: the labels.
        device: the device (for :func:`autocast`).
        channels_last: whether to feed NHWC inputs; ``None`` looks at the model's weights.
        penalty: the loss term, or ``None``.
        precision: ``"fp32"`` or ``"bf16"``.

    Returns:
        ``(loss, n_correct)``: 0-d tensors on the device.
    """
    cl = channels_last_model(net) if channels_last is None else channels_last
    with autocast(device, precision):
        out = net(_prepare_input(x, cl))
    ce = F.cross_entropy(out.float(), y)
    loss = ce if penalty is None else ce + penalty()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return ce.detach().float(), (out.detach().argmax(1) == y).sum()


@dataclass
class FitResult:
    """What :func:`fit` returns. ``model`` has the selected weights loaded, is on the
    training device and in eval mode; ``precision`` is the resolved training precision;
    ``history`` has one row per epoch
    (:data:`HISTORY_COLUMNS`; test columns are NaN on epochs that were not evaluated).

    Attributes:
        model: the trained network.
        history: the per-epoch table.
        epochs_done: the number of rows of ``history``.
        wall_time_s: seconds from the start (a resumed run includes the time before the resume).
        final_test_acc: the last epoch's test accuracy.
        best_test_acc: the highest test accuracy of an evaluated epoch (NaN when none).
        best_epoch: the (1-based) epoch of ``best_test_acc``, earliest on ties (0 when none).
        select: ``"final"`` or ``"best_test"``.
        protocol: the :class:`Protocol` trained with.
        device: the training device, as text.
        precision: the resolved training precision.
        final_state: with ``select="best_test"``: the final epoch's weights (CPU tensors),
            which ``model`` no longer holds; None otherwise.
    """

    model: nn.Module = field(repr=False)
    history: pd.DataFrame = field(repr=False)
    epochs_done: int
    wall_time_s: float
    final_test_acc: float
    best_test_acc: float
    best_epoch: int
    select: str
    protocol: Protocol = field(default=None)
    device: str = "cpu"
    precision: str = "fp32"
    #: With ``select="best_test"``: the final epoch's weights (CPU tensors), which ``model``
    #: no longer holds; None otherwise.
    final_state: dict | None = field(default=None, repr=False)


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def fit(model: nn.Module, data, protocol="paper", *, epochs: int | None = None, select: str = "final",
        device="auto", seed: int = 0, dataset: str | None = None, compile: bool = False,
        channels_last: bool = True, precision: str = "fp32", checkpoint_dir=None,
        checkpoint_owner: dict | None = None, checkpoint_every: int | None = None, progress: bool = True,
        eval_every: int = 1, log_every: int = 50) -> FitResult:
    """Train ``model`` on ``data`` with a protocol; return a :class:`FitResult`.

    Args:
        model: the network (trained in place; moved to ``device``).
        data: a :class:`~bridgeout.data.DeviceData` or the 4-tuple from
            :func:`bridgeout.data.load` (then ``dataset`` names it).
        protocol: a name of :data:`PROTOCOLS` (``"paper"``, ``"fast"``, ``"cpu"``, ``"fast_lr0.05"``, ``"smoke"``) or a
            :class:`Protocol`.
        epochs: overrides the protocol's epochs, rescaling its milestones.
        select: ``"final"`` (weights after the last epoch; no test-set information used) or
            ``"best_test"`` (weights of the epoch with the highest test accuracy, earliest
            on ties, as the published code did; this selects on the test set).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        seed: seeds the global torch RNG and the data generator (see module docstring).
        dataset: the dataset name, when ``data`` is a tuple of arrays.
        compile: wrap the model with :func:`torch.compile` (CUDA; works on CPU too).
        channels_last: NHWC weights and inputs (the fast path on CPU and CUDA; the same
            arithmetic up to float rounding, pinned by a test).
        precision: ``"fp32"``, ``"bf16"`` (autocast, BatchNorm and loss in fp32; see the
            module docstring) or ``"auto"`` (:func:`resolve_precision`); recorded in the
            checkpoint, so a run of one precision never resumes the other's.
        checkpoint_dir: when given, a checkpoint ``checkpoint.pt`` is written there every
            ``checkpoint_every`` epochs (default 1) and after the last epoch, atomically
            (temporary file + :func:`os.replace`), and a run finding one resumes from it. A
            checkpoint of a different protocol, seed or select raises ``ValueError``.
        checkpoint_owner: what the checkpoint belongs to (e.g. the run id, model, width,
            regularizer and noise settings), stored in it and compared on resume: a
            checkpoint written for anything else is refused with a ``ValueError`` naming the
            file (a checkpoint written before owners were recorded is accepted).
        checkpoint_every: epochs between checkpoints (an integer >= 1 or ``None``: 1).
        progress: a tqdm bar per epoch showing loss, accuracy and images/s.
        eval_every: evaluate on the test set every this many epochs (and after the last).
        log_every: steps between progress-bar updates (each one reads the sums: one sync).

    Returns:
        the :class:`FitResult`.

    Raises:
        ValueError: an unknown protocol, select or precision, an integer argument out of range,
            a bad device or dataset, data the model cannot take, or a checkpoint of another run
            (or an unreadable one).
        FloatingPointError: the training loss of an epoch is not finite.
    """
    from tqdm import tqdm  # the text bar: tqdm.auto warns in notebooks without ipywidgets

    proto = get_protocol(protocol, epochs)
    check_choice("select", select, SELECT)
    check_int("seed", seed, 0)
    check_int("eval_every", eval_every, 1)
    check_int("log_every", log_every, 1)
    every = check_int("checkpoint_every", checkpoint_every, 1, none_ok=True) or 1
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    dd = as_device_data(data, dataset, dev)
    check_input_fits(model, torch.zeros(1, *dd.x_test.shape[1:]), f"{dd.name} images")
    t_start = time.perf_counter()

    torch.manual_seed(seed)
    data_gen = torch.Generator(device=dev).manual_seed(seed)
    net = prepare_model(model, dev, compile=compile, channels_last=channels_last)
    penalty = penalty_fn(model)       # slimming / group lasso: a term of the training loss
    opt, sched = _optimizer(model, proto)
    config = {"protocol": asdict(proto), "seed": seed, "select": select, "dataset": dd.name,
              "precision": precision, "owner": checkpoint.canonical_owner(checkpoint_owner),
              "model": checkpoint.model_identity(model)}
    run = _Run(t_start=t_start)
    ckpt_path = None
    if checkpoint_dir is not None:
        ckpt_path = Path(checkpoint_dir) / checkpoint.CHECKPOINT_NAME
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        _resume(run, checkpoint.load_checkpoint(ckpt_path.parent), config, ckpt_path, model, opt, sched, data_gen)

    steps_per_epoch = dd.num_train_batches(proto.batch_size)
    if proto.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, proto.max_steps_per_epoch)
    step = functools.partial(train_step, net, opt, device=dev, channels_last=channels_last, penalty=penalty,
                             precision=precision)
    for epoch in range(run.start_epoch, proto.epochs):
        t0 = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{proto.epochs}", unit="step",
                   disable=not progress, leave=False, dynamic_ncols=True)
        model.train()
        if proto.reset_optimizer_each_epoch and epoch > 0:
            opt.state.clear()          # a fresh optimizer: no momentum carried over
        lr = opt.param_groups[0]["lr"]
        batches = itertools.islice(dd.train_batches(proto.batch_size, data_gen), steps_per_epoch)
        loss, acc, seen, train_s = _train_epoch(step, batches, dev, bar, progress and log_every)
        sched.step()
        if not math.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"training loss became {loss} in epoch {epoch + 1}")
        test = {"loss": math.nan, "acc": math.nan}
        if (epoch + 1) % eval_every == 0 or epoch + 1 == proto.epochs:
            test = evaluate(net, dd, dev, proto.test_batch_size)
            run.record_test(model, epoch, test["acc"], keep_best=select == "best_test")
        run.history.append({"epoch": epoch + 1, "lr": float(lr), "train_loss": loss, "train_acc": acc,
                            "test_loss": float(test["loss"]), "test_acc": float(test["acc"]),
                            "seconds": time.perf_counter() - t0,
                            "images_per_s": seen / train_s if train_s > 0 else math.nan})
        _log_epoch(bar, run.history[-1], proto.epochs, progress, tqdm.write)
        if ckpt_path is not None and ((epoch + 1) % every == 0 or epoch + 1 == proto.epochs):
            _save(ckpt_path, run, config, epoch, model, opt, sched, data_gen)
    return _finish(run, model, select, proto, dev, precision)


def _optimizer(model: nn.Module, proto: Protocol):
    """The protocol's SGD (momentum, Nesterov, weight decay) and its step schedule."""
    opt = torch.optim.SGD(model.parameters(), lr=proto.lr, momentum=proto.momentum,
                          nesterov=proto.nesterov, weight_decay=proto.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(proto.milestones), gamma=proto.gamma)
    return opt, sched


def _save(path: Path, run: "_Run", config: dict, epoch: int, model: nn.Module, opt, sched, data_gen) -> None:
    """The checkpoint after ``epoch`` (0-based): everything a resume needs to continue bit-exactly."""
    checkpoint.save({"config": config, "epoch": epoch + 1, "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": checkpoint.rng_state(model, data_gen), "history": run.history,
                     "best_acc": run.best_acc, "best_epoch": run.best_epoch, "best_state": run.best_state,
                     "wall_time_s": time.perf_counter() - run.t_start}, path)


@dataclass
class _Run:
    """What a run carries from epoch to epoch (and through a checkpoint)."""

    t_start: float
    history: list = field(default_factory=list)
    start_epoch: int = 0
    best_acc: float = -math.inf
    best_epoch: int = 0
    best_state: dict | None = None

    def record_test(self, model: nn.Module, epoch: int, acc: float, *, keep_best: bool) -> None:
        if keep_best and acc > self.best_acc:
            self.best_state = _cpu_state(model)
        if acc > self.best_acc:
            self.best_acc, self.best_epoch = acc, epoch + 1


def _resume(run: _Run, ckpt: dict | None, config: dict, path: Path, model, opt, sched, data_gen) -> None:
    """Load a checkpoint of this very run into the model, optimizer, scheduler, generators and
    ``run``; a checkpoint of another run is refused (:func:`bridgeout.checkpoint.check_same_run`)."""
    if ckpt is None:
        return
    defaults = {f.name: f.default for f in fields(Protocol) if f.default is not MISSING}
    checkpoint.check_same_run(ckpt["config"], config, path, defaults)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    checkpoint.set_rng_state(model, data_gen, ckpt["rng"])
    run.history = list(ckpt["history"])
    run.start_epoch = int(ckpt["epoch"])
    run.best_acc, run.best_epoch = float(ckpt["best_acc"]), int(ckpt["best_epoch"])
    run.best_state = ckpt.get("best_state")
    run.t_start -= float(ckpt.get("wall_time_s", 0.0))


def _train_epoch(step, batches, dev, bar, log_every) -> tuple[float, float, int, float]:
    """One pass over ``batches`` with ``step(x, y) -> (loss, n_correct)``; the sums stay on the
    device and are read once at the end (and at every ``log_every``-th step for the bar).
    Returns the mean loss, the accuracy, the images seen and the seconds spent."""
    loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    seen, t0 = 0, time.perf_counter()
    for i, (x, y) in enumerate(batches):
        loss, n_correct = step(x, y)
        b = y.shape[0]
        loss_sum += loss * b
        correct += n_correct
        seen += b
        bar.update(1)
        if log_every and (i + 1) % log_every == 0:  # logging point: one host sync
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}",
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}")
    return float(loss_sum) / seen, int(correct) / seen, seen, time.perf_counter() - t0   # syncs once


def _log_epoch(bar, row: dict, epochs: int, progress: bool, write) -> None:
    speed = row["images_per_s"] if math.isfinite(row["images_per_s"]) else 0.0
    bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_acc']:.3f}",
                    test_acc=f"{row['test_acc']:.3f}", img_s=f"{speed:.0f}")
    bar.close()
    if progress:
        write(f"epoch {row['epoch']}/{epochs}: lr {row['lr']:.4g}  loss {row['train_loss']:.4f}  "
              f"acc {row['train_acc']:.4f}  test_acc {row['test_acc']:.4f}  {speed:.0f} img/s  "
              f"{row['seconds']:.1f} s")


def _finish(run: _Run, model: nn.Module, select: str, proto: Protocol, dev, precision: str) -> FitResult:
    """The selected weights loaded, the model in eval mode, the history as a frame."""
    final_state = None
    if select == "best_test":
        final_state = _cpu_state(model)
        if run.best_state is None:
            warnings.warn("select='best_test' but no epoch was evaluated; keeping the final weights",
                          stacklevel=3)
        else:
            model.load_state_dict(run.best_state)
    model.eval()
    hist = pd.DataFrame(run.history, columns=list(HISTORY_COLUMNS))
    hist["epoch"] = hist["epoch"].astype("int64")
    final = float(hist["test_acc"].iloc[-1]) if len(hist) else math.nan
    return FitResult(model=model, history=hist, epochs_done=len(hist),
                     wall_time_s=time.perf_counter() - run.t_start, final_test_acc=final,
                     best_test_acc=run.best_acc if run.best_epoch else math.nan, best_epoch=run.best_epoch,
                     select=select, protocol=proto, device=str(dev), precision=precision,
                     final_state=final_state)
