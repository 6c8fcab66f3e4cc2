"""Wall time of the paper's pruning sweep: 10 fractions x both modes on one model.

Runs :func:`bridgeout.prune.sweep` with fractions 0, 0.1, ..., 0.9, criterion ``l2``, scope
``layer`` and modes ``mask`` and ``remove`` (latency at batch 1 and 128 measured for every
``remove`` model and for the unpruned one) over the CIFAR-10 test set, and prints the total
seconds and the per-row breakdown (prune, eval, cost = FLOPs/params/latency).

The model is randomly initialised unless ``--checkpoint`` gives a state_dict (or a whole
pickled module); the timing does not depend on the weights.  The one-time import of
``torch._dynamo`` that the first :class:`torch.utils.flop_counter.FlopCounterMode` use
triggers (seconds on a CPU) is timed separately, before the sweep.

Goal: <= 15 s for WRN-28-10 on one H100 (the default on CUDA).  On a CPU the default is the
paper's CIFAR ResNet at width 1 on 2000 test images.

Usage::

    python benchmarks/prune_sweep.py                       # wrn28_10 on CUDA, else resnet on CPU
    python benchmarks/prune_sweep.py --model resnet --width 1 --n-test 2000 --device cpu
    python benchmarks/prune_sweep.py --model wrn28_10 --device cuda --modes mask remove
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import pandas as pd
import torch

from bridgeout import data as D
from bridgeout import prune as P
from bridgeout.models import MODELS, build


def machine_info(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return (f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
            f"torch threads, torch {torch.__version__}")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default=None,
                        help="default: wrn28_10 on CUDA, resnet on CPU")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-test", type=int, default=None,
                        help="test images (default: all 10000 on CUDA, 2000 on CPU)")
    parser.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    parser.add_argument("--modes", nargs="+", default=list(P.MODES), choices=P.MODES)
    parser.add_argument("--criteria", nargs="+", default=["l2"], choices=P.CRITERIA)
    parser.add_argument("--scopes", nargs="+", default=["layer"], choices=P.SCOPES)
    parser.add_argument("--no-latency", action="store_true", help="skip latency timing")
    parser.add_argument("--checkpoint", default=None, help="state_dict or pickled module")
    parser.add_argument("--data-root", default=None, help="folder with cifar10.npz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    model_name = args.model or ("wrn28_10" if device.type == "cuda" else "resnet")
    n_test = args.n_test if args.n_test is not None else (None if device.type == "cuda" else 2000)

    t_start = time.perf_counter()
    torch.manual_seed(args.seed)
    model = build(model_name, width=args.width)
    if args.checkpoint:
        obj = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        if isinstance(obj, torch.nn.Module):
            model = obj
        else:
            model.load_state_dict(obj.get("model", obj) if isinstance(obj, dict) else obj)
    model.eval()
    arrays = D.load("cifar10", root=args.data_root)
    arrays = D.subset(arrays, n_train=1000, n_test=n_test, seed=args.seed)
    data = D.DeviceData(arrays, "cifar10", device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_setup = time.perf_counter() - t_start

    # one-time import cost of FlopCounterMode (torch._dynamo), paid once per process
    t0 = time.perf_counter()
    P.count_flops(torch.nn.Conv2d(1, 1, 1), torch.zeros(1, 1, 2, 2))
    t_import = time.perf_counter() - t0

    fractions = P.DEFAULT_FRACTIONS
    t0 = time.perf_counter()
    df = P.sweep(model, data, fractions=fractions, criteria=args.criteria, scopes=args.scopes,
                 modes=args.modes, latency=not args.no_latency, device=device,
                 seed=args.seed, progress=False, batch_size=args.batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_sweep = time.perf_counter() - t0

    print(f"prune sweep benchmark: {model_name} (width {args.width}, "
          f"{P.count_parameters(model):,} params), CIFAR-10 test images: {data.test_size}, "
          f"{len(df)} rows ({len(fractions)} fractions x {args.modes} x {args.criteria} x "
          f"{args.scopes}), latency {'off' if args.no_latency else 'on'}")
    print(f"machine: {machine_info(device)}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.3f}".format):
        cols = ["mode", "fraction", "test_acc", "params", "params_effective", "flops",
                "flops_effective", "latency_b1_ms", "latency_b128_ms",
                "prune_s", "eval_s", "cost_s"]
        print(df[cols].to_string(index=False))
    per_phase = df[["prune_s", "adjust_s", "eval_s", "cost_s"]].sum()
    overhead = t_sweep - per_phase.sum()
    print(f"\nsetup (build model, load data to {device.type}): {t_setup:.2f} s")
    print(f"one-time torch._dynamo import (first FlopCounterMode): {t_import:.2f} s")
    print(f"sweep total: {t_sweep:.2f} s = prune {per_phase.prune_s:.2f} + eval "
          f"{per_phase.eval_s:.2f} + cost {per_phase.cost_s:.2f} + adjust "
          f"{per_phase.adjust_s:.2f} + other {overhead:.2f} (copy, dense costs, graph trace)")
    for mode, g in df.groupby("mode", sort=False):
        secs = g[["prune_s", "eval_s", "cost_s"]].sum().sum()
        print(f"  {mode}: {secs:.2f} s over {len(g)} rows")
    print(f"TOTAL (sweep + one-time import): {t_sweep + t_import:.2f} s")
    return df


if __name__ == "__main__":
    main()
