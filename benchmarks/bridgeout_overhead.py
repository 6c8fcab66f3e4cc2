"""Overhead of Batch Bridgeout: forward+backward of a VGG-16 conv stack, BridgeoutConv2d vs nn.Conv2d.

The stack is the 13 3x3 convolutions of VGG-16 (64,64,M,128,128,M,256x3,M,512x3,M,512x3,M),
each followed by BatchNorm and ReLU, at CIFAR resolution (32x32), plus a Linear(512, 10)
head and cross-entropy loss. Both variants run in one process with identical weights and
inputs; the timed step is zero_grad + forward + backward (no optimizer step). Steps of the
two variants are interleaved (ABAB...) so that load changes on a shared machine affect
both alike; the median over the timed steps is reported.

Usage::

    python benchmarks/bridgeout_overhead.py [--device auto|cpu|cuda] [--batch N] [--iters N]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn

from bridgeout.nn import BridgeoutConv2d

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def conv_stack(bridgeout: bool, p: float, q: float, target_fraction: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        if bridgeout:
            conv = BridgeoutConv2d(c_in, v, 3, padding=1, p=p, q=q, target_fraction=target_fraction)
        else:
            conv = nn.Conv2d(c_in, v, 3, padding=1)
        layers += [conv, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
        c_in = v
    layers += [nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


def machine_info(device: torch.device) -> str:
    if device.type == "cuda":
        what = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        what = f"CPU {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    return f"{what}; torch {torch.__version__}; python {platform.python_version()}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--batch", type=int, default=None, help="default 128 on CUDA, 32 on CPU")
    ap.add_argument("--iters", type=int, default=10, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    ap.add_argument("--p", type=float, default=0.3)
    ap.add_argument("--q", type=float, default=1.5)
    ap.add_argument("--target-fraction", type=float, default=0.75)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 32)
    torch.manual_seed(args.seed)

    plain_net = conv_stack(False, args.p, args.q, args.target_fraction).to(device)
    bo_net = conv_stack(True, args.p, args.q, args.target_fraction).to(device)
    bo_net.load_state_dict(plain_net.state_dict())  # identical keys and weights
    plain_net.train()
    bo_net.train()
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(net: nn.Module) -> tuple[float, float]:
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        net.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        sync()
        return time.perf_counter() - t0, time.process_time() - c0

    for _ in range(args.warmup):
        step(plain_net)
        step(bo_net)
    times = {"nn.Conv2d": [], "BridgeoutConv2d": []}
    cpu = {"nn.Conv2d": [], "BridgeoutConv2d": []}
    for _ in range(args.iters):
        for name, net in (("nn.Conv2d", plain_net), ("BridgeoutConv2d", bo_net)):
            wall, proc = step(net)
            times[name].append(wall)
            cpu[name].append(proc)

    print(f"machine: {machine_info(device)}")
    print(f"VGG-16 conv stack (13 convs + BN/ReLU/maxpool), 32x32 input, batch {batch}, "
          f"p={args.p} q={args.q} target_fraction={args.target_fraction}, "
          f"{args.warmup} warm-up + {args.iters} timed steps each (interleaved), median forward+backward")
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        lo, hi = 1e3 * min(times[k]), 1e3 * max(times[k])
        print(f"  {k:16s} {v:9.2f} ms/step  (min {lo:.2f}, max {hi:.2f})")
    ratio = med["BridgeoutConv2d"] / med["nn.Conv2d"]
    print(f"  overhead ratio   {ratio:.3f}  ({100 * (ratio - 1):+.1f}%)  wall clock")
    if device.type == "cpu":
        # Process CPU time (all threads) is less sensitive to other jobs on a shared machine.
        cmed = {k: 1e3 * statistics.median(v) for k, v in cpu.items()}
        cratio = cmed["BridgeoutConv2d"] / cmed["nn.Conv2d"]
        print(f"  CPU time/step    nn.Conv2d {cmed['nn.Conv2d']:.2f} ms, BridgeoutConv2d "
              f"{cmed['BridgeoutConv2d']:.2f} ms; ratio {cratio:.3f}  ({100 * (cratio - 1):+.1f}%)")
    if os.cpu_count() and device.type == "cpu":
        try:
            load1 = os.getloadavg()[0]
            print(f"  load average (1 min) at end: {load1:.2f} on {os.cpu_count()} cores")
        except OSError:
            pass


if __name__ == "__main__":
    main()
