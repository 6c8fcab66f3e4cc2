"""Whether the machine is quiet enough to time a network: the CPU's busy fraction, measured.

:func:`cpu_busy` reads the fraction of CPU time spent busy over a few seconds from
``/proc/stat``; :func:`require_quiet` refuses (``RuntimeError``) when it is above a limit, so
latencies measured afterwards are the network's, not the machine's load. The pass that times
removed networks is :mod:`bridgeout.again`, which re-exports these names.
"""
from __future__ import annotations

import math
import time

__all__ = ["cpu_busy", "require_quiet"]


def cpu_busy(seconds: float = 2.0) -> float:
    """Fraction of all CPU time spent busy over ``seconds`` (from ``/proc/stat``; NaN where
    there is none).

    Args:
        seconds: how long to measure.

    Returns:
        the busy fraction (idle and iowait count as not busy).
    """
    def snap():
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except OSError:
        return math.nan
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def require_quiet(limit: float = 0.15, seconds: float = 2.0) -> float:
    """Raise ``RuntimeError`` when more than ``limit`` of the CPU is busy (something else is
    running, so latencies would be the machine's load, not the network's); returns the busy
    fraction measured.

    Args:
        limit: the largest busy fraction allowed.
        seconds: how long to measure (:func:`cpu_busy`).

    Returns:
        the busy fraction.

    Raises:
        RuntimeError: the machine is busier than ``limit``.
    """
    busy = cpu_busy(seconds)
    if busy > limit:
        raise RuntimeError(f"the machine is not quiet: {busy:.0%} of the CPU was busy over {seconds:g} s "
                           f"(limit {limit:.0%}); stop other work before timing")
    return busy
