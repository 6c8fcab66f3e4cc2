"""How to use a multi-core CPU for a grid: one run with N threads, or N single-threaded runs?

Measures the aggregate training throughput (images/s summed over processes) of
:func:`bridgeout.train.train_step` for one model, in two set-ups:

* ``1 x N``: one process with ``torch.set_num_threads(N)``;
* ``N x 1``: N processes at once, one thread each (what ``python -m bridgeout.grid`` runners
  started side by side do; they share the grid through per-cell claims).

Each process times ``--steps`` steps after ``--warmup`` steps on device-resident CIFAR-10
batches (random images when the dataset is absent), channels_last (the engine's default).

Usage::

    python benchmarks/cpu_workers.py --model vgg16 --width 0.25 --regularizer bridgeout --n 2
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _worker(args, threads, barrier, out):
    import numpy as np
    import torch

    from bridgeout import data as bdata
    from bridgeout import train as btrain
    from bridgeout.models import build

    torch.set_num_threads(threads)
    try:
        arrays = bdata.load("cifar10")
        arrays = (arrays[0][:5000], arrays[1][:5000], arrays[2][:100], arrays[3][:100])
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        arrays = (rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 5000),
                  rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 100))
    dd = bdata.DeviceData(arrays, "cifar10")
    torch.manual_seed(0)
    model = build(args.model, regularizer=args.regularizer, width=args.width)
    dev = torch.device("cpu")
    net = btrain.prepare_model(model, dev, channels_last=not args.nchw)
    p = btrain.PROTOCOLS["paper"]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=p.momentum, nesterov=True,
                          weight_decay=p.weight_decay)
    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield from dd.train_batches(128, gen, drop_last=True)

    it = batches()
    for _ in range(args.warmup):
        btrain.train_step(net, opt, *next(it), dev)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        btrain.train_step(net, opt, *next(it), dev)
    out.put(args.steps * 128 / (time.perf_counter() - t0))


def measure(args, processes, threads):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(args, threads, barrier, out)) for _ in range(processes)]
    for pr in procs:
        pr.start()
    rates = [out.get() for _ in procs]
    for pr in procs:
        pr.join()
    return sum(rates), rates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--regularizer", default="bridgeout")
    ap.add_argument("--n", type=int, default=os.cpu_count() or 2, help="cores to use")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--nchw", action="store_true", help="NCHW instead of channels_last")
    args = ap.parse_args(argv)
    if args.n < 1 or args.steps < 1 or args.warmup < 0:
        ap.error(f"--n and --steps must be >= 1 and --warmup >= 0, got {args.n}, {args.steps}, {args.warmup}")
    print(f"{args.model} x{args.width:g} {args.regularizer}, batch 128, {args.steps} steps, "
          f"{'NCHW' if args.nchw else 'channels_last'}, {os.cpu_count()} CPUs")
    one, _ = measure(args, 1, args.n)
    many, rates = measure(args, args.n, 1)
    print(f"  1 x {args.n} threads: {one:8.1f} img/s")
    print(f"  {args.n} x 1 thread : {many:8.1f} img/s in all ({', '.join(f'{r:.0f}' for r in rates)} per process)")
    print(f"  ratio (N x 1) / (1 x N): {many / one:.2f}")


if __name__ == "__main__":
    main()
