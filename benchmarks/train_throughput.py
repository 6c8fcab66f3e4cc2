"""Training throughput of the bridgeout engine vs a reference-style loop.

For each model x regularizer this prints

* ours: images/s of :func:`bridgeout.train.train_step` on :class:`bridgeout.data.DeviceData`
  batches (data and augmentation on the device; channels_last weights and inputs unless
  ``--nchw``; bf16 autocast on CUDA;
  ``--compile`` adds torch.compile), timed over ``--steps`` steps after ``--warmup`` steps,
  with one device synchronisation at each end of the timed window;
* eval images/s of :func:`bridgeout.train.evaluate`-style test batches (batch 100);
* seconds per training epoch (50,000 images; MNIST: 60,000) and the projected minutes of a
  paper-protocol run: ``230 * (n_train / train_ips + 10,000 / eval_ips) / 60``;
* reference: the same model trained the way the published code does it: fp32, eager,
  ``torchvision.transforms`` (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
  Normalize; MNIST: ToTensor, Normalize) on PIL images in a ``torch.utils.data.DataLoader``
  (shuffle, batch 128, ``--workers`` worker processes), a host->device copy per step and
  ``loss.item()`` per step; and the ratio ours / reference;
* the Bridgeout (and other regularizers') slowdown relative to ``weight_decay``;
* once per dataset, the input pipelines alone (no model): images/s of DeviceData batches vs
  the DataLoader (plus the host->device copy).

Usage::

    python benchmarks/train_throughput.py --device cpu --models lenet5,vgg16 --width 0.25 --steps 10
    python benchmarks/train_throughput.py --device cuda --compile          # the H100 figures

Data: the real arrays from ``$BRIDGEOUT_DATA`` when present, else random uint8 images of the
same shape (speed does not depend on pixel values). Timings on a shared CPU vary with load.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bridgeout import data as bdata  # noqa: E402
from bridgeout import train as btrain  # noqa: E402
from bridgeout.models import build, count_parameters  # noqa: E402

PAPER = btrain.PROTOCOLS["paper"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _arrays(dataset: str, n_train: int, n_test: int):
    try:
        arrays = bdata.load(dataset)
        source = f"{dataset} from {bdata.default_root()}"
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        n_train = n_train or 50000
        h, w, c = bdata.IMAGE_SHAPE[dataset]
        arrays = (rng.integers(0, 256, (n_train, h, w, c), dtype=np.uint8),
                  rng.integers(0, 10, n_train), rng.integers(0, 256, (n_test, h, w, c), dtype=np.uint8),
                  rng.integers(0, 10, n_test))
        source = f"random uint8 images shaped like {dataset} ({dataset} not found)"
    n_train = len(arrays[1]) if n_train is None else min(n_train, len(arrays[1]))
    n_test = min(n_test, len(arrays[3]))
    return bdata.subset(arrays, n_train, n_test, seed=0), source


def _model(name, regularizer, width, num_classes):
    torch.manual_seed(0)
    return build(name, num_classes=num_classes, regularizer=regularizer, width=width)


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=PAPER.lr, momentum=PAPER.momentum,
                           nesterov=PAPER.nesterov, weight_decay=PAPER.weight_decay)


def bench_ours(name, regularizer, dd, device, steps, warmup, width, compile_, repeats=1,
               channels_last=True, precision="fp32"):
    model = _model(name, regularizer, width, dd.num_classes)
    net = btrain.prepare_model(model, device, compile=compile_, channels_last=channels_last)
    opt = _sgd(model)
    gen = torch.Generator(device=device).manual_seed(0)
    model.train()

    def batches():
        while True:
            yield from dd.train_batches(PAPER.batch_size, gen, drop_last=True)

    it = batches()
    loss_sum = torch.zeros((), device=device)
    for _ in range(warmup):
        x, y = next(it)
        loss, _ = btrain.train_step(net, opt, x, y, device, channels_last, precision=precision)
    windows = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)
            loss, _ = btrain.train_step(net, opt, x, y, device, channels_last, precision=precision)
            loss_sum += loss
        _sync(device)
        windows.append(steps * PAPER.batch_size / (time.perf_counter() - t0))
    train_ips = float(np.median(windows))
    if not math.isfinite(float(loss_sum)):
        raise FloatingPointError(f"{name}/{regularizer}: non-finite loss in the benchmark")

    # evaluation speed over a few test batches (same code path as evaluate)
    model.eval()
    eval_batches = max(2, min(dd.num_test_batches(PAPER.test_batch_size), steps))
    tb = dd.test_batches(PAPER.test_batch_size)
    with torch.no_grad():
        x, y = next(tb)
        net(btrain._prepare_input(x, channels_last))   # evaluation is fp32 (as train.evaluate)
        _sync(device)
        t0, n = time.perf_counter(), 0
        for _ in range(eval_batches - 1):
            x, y = next(tb)
            net(btrain._prepare_input(x, channels_last))
            n += y.shape[0]
        _sync(device)
    eval_ips = n / (time.perf_counter() - t0)
    return train_ips, eval_ips, count_parameters(model)


class _PILDataset(torch.utils.data.Dataset):
    """uint8 HWC arrays served as PIL images through torchvision transforms (reference style)."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        img = self.x[i]
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(img), int(self.y[i])


def bench_reference(name, regularizer, arrays, dataset, device, steps, warmup, width, workers,
                    repeats=1):
    import torchvision.transforms as T

    mean, std = bdata.NORMALIZATION[dataset]
    tf = [T.ToTensor(), T.Normalize(mean, std)]
    if bdata.PADDING[dataset]:
        tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] + tf
    ds = _PILDataset(arrays[0], arrays[1], T.Compose(tf))
    loader = torch.utils.data.DataLoader(ds, batch_size=PAPER.batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)
    model = _model(name, regularizer, width, bdata.NUM_CLASSES[dataset]).to(device)
    opt = _sgd(model)
    model.train()

    def batches():
        while True:
            yield from loader

    it = batches()

    def step():
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()  # per-step host sync, as the published loop does

    for _ in range(warmup):
        step()
    windows = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        windows.append(steps * PAPER.batch_size / (time.perf_counter() - t0))
    return float(np.median(windows))


def bench_pipeline(dataset, arrays, dd, device, steps, workers, repeats=1):
    """Images/s of the input pipelines alone (no model): DeviceData batches (augmentation on
    the device) vs the torchvision-transforms DataLoader plus the host->device copy."""
    gen = torch.Generator(device=device).manual_seed(0)

    def ours():
        while True:
            yield from dd.train_batches(PAPER.batch_size, gen, drop_last=True)

    import torchvision.transforms as T

    mean, std = bdata.NORMALIZATION[dataset]
    tf = [T.ToTensor(), T.Normalize(mean, std)]
    if bdata.PADDING[dataset]:
        tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] + tf
    loader = torch.utils.data.DataLoader(_PILDataset(arrays[0], arrays[1], T.Compose(tf)),
                                         batch_size=PAPER.batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         pin_memory=device.type == "cuda")

    def ref():
        while True:
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    out = []
    for it in (ours(), ref()):
        next(it)
        windows = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                x, _ = next(it)
            _sync(device)
            windows.append(steps * PAPER.batch_size / (time.perf_counter() - t0))
        out.append(float(np.median(windows)))
    return tuple(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vgg16,resnet,wrn28_10", help="comma-separated model names")
    ap.add_argument("--regularizers", default="weight_decay,bridgeout,dropout")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=50, help="timed training steps (batch 128)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed windows of --steps steps each; the median images/s is reported")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (lenet5 keeps 1.0)")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference-style loop")
    ap.add_argument("--nchw", action="store_true", help="NCHW weights and inputs (the engine's CPU "
                    "layout before channels_last became the default; the 'before' figure)")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers of the reference loop (default: 0 on CPU, 8 on CUDA)")
    ap.add_argument("--n-train", type=int, default=None, help="training images held (default: all)")
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated training precisions: fp32, bf16 (autocast, BatchNorm and loss in fp32)")
    ap.add_argument("--csv", default=None, help="also write the table to this CSV")
    args = ap.parse_args(argv)
    precisions = [x for x in args.precision.split(",") if x]
    for x in precisions:
        if x not in btrain.PRECISIONS:
            ap.error(f"--precision: {x!r} is not one of {', '.join(btrain.PRECISIONS)}")
    for opt_name in ("steps", "repeats"):
        if getattr(args, opt_name) < 1:
            ap.error(f"--{opt_name} must be >= 1, got {getattr(args, opt_name)}")
    if args.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {args.warmup}")

    device = btrain.resolve_device(args.device)
    workers = args.workers if args.workers is not None else (8 if device.type == "cuda" else 0)
    models = [m for m in args.models.split(",") if m]
    regs = [r for r in args.regularizers.split(",") if r]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {dev_name} | torch {torch.__version__} | {args.repeats} x {args.steps} steps "
          f"(+{args.warmup} warm-up), "
          f"batch {PAPER.batch_size} | width {args.width} | compile {args.compile} | "
          f"layout {'NCHW' if args.nchw else 'channels_last'} | "
          f"reference workers {workers}")

    cache, rows = {}, []
    for name in models:
        dataset = "mnist" if name == "lenet5" else "cifar10"
        if dataset not in cache:
            arrays, source = _arrays(dataset, args.n_train, 10000)
            cache[dataset] = (arrays, bdata.DeviceData(arrays, dataset, device))
            print(f"data: {source}: {len(arrays[1])} train / {len(arrays[3])} test images")
            p_ours, p_ref = bench_pipeline(dataset, arrays, cache[dataset][1], device,
                                           max(args.steps, 20), workers, args.repeats)
            print(f"  input pipeline only ({dataset}): ours {p_ours:10.0f} img/s | reference "
                  f"{p_ref:8.0f} img/s | ratio {p_ours / p_ref:.1f}x")
        arrays, dd = cache[dataset]
        width = 1.0 if name == "lenet5" else args.width
        n_epoch = 60000 if dataset == "mnist" else 50000
        for reg, prec in itertools.product(regs, precisions):
            ips, eval_ips, n_params = bench_ours(name, reg, dd, device, args.steps, args.warmup,
                                                 width, args.compile, args.repeats,
                                                 channels_last=not args.nchw, precision=prec)
            ref = math.nan
            if not args.no_reference:
                ref = bench_reference(name, reg, arrays, dataset, device, args.steps, args.warmup,
                                      width, workers, args.repeats)
            epoch_s = n_epoch / ips
            run_min = PAPER.epochs * (epoch_s + 10000 / eval_ips) / 60
            rows.append({"model": name, "regularizer": reg, "precision": prec, "width": width, "params": n_params,
                         "images_per_s": ips, "eval_images_per_s": eval_ips,
                         "s_per_epoch": epoch_s, "paper_run_min": run_min,
                         "ref_images_per_s": ref, "ours_over_ref": ips / ref,
                         "ref_paper_run_min": PAPER.epochs * n_epoch / ref / 60})
            r = rows[-1]
            print(f"  {name:9s} {reg:13s} {prec:4s} ours {ips:9.1f} img/s  {epoch_s:8.1f} s/epoch  "
                  f"paper run {run_min:8.1f} min | reference {ref:8.1f} img/s  ratio {r['ours_over_ref']:.2f}x",
                  flush=True)

    table = pd.DataFrame(rows)
    base = table[table.regularizer == "weight_decay"].set_index(["model", "precision"])["images_per_s"]
    table["slowdown_vs_weight_decay_pct"] = [
        100.0 * (base[(m, pr)] / ips - 1.0) if (m, pr) in base.index else math.nan
        for m, pr, ips in zip(table.model, table.precision, table.images_per_s)]
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.2f}".format):
        print()
        print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return table


if __name__ == "__main__":
    main()
