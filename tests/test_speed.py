"""Tests of bridgeout.speed: speed-ups against the unpruned network of the same setting and
the FLOP-ideal ratio."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bridgeout import speed  # noqa: E402


def frame():
    rows = []
    for run, slow in (("a", 1.0), ("b", 2.0)):
        for rt, k in (("torch", 2.0), ("onnxruntime", 1.0)):
            for f, flops, ms in ((0.0, 400, 100.0), (0.5, 100, 40.0)):
                rows.append({"run_id": run, "criterion": "l2", "runtime": rt, "batch_size": 128, "threads": 1,
                             "fraction": f, "latency_ms": ms * k * slow, "flops": flops})
    rows.append({"run_id": "c", "criterion": "l2", "runtime": "torch", "batch_size": 128, "threads": 1,
                 "fraction": 0.5, "latency_ms": 1.0, "flops": 100})   # no unpruned twin: dropped
    return pd.DataFrame(rows)


def test_speedups_against_the_same_runs_unpruned_network():
    t = speed.speedups(frame())
    assert set(t["run_id"]) == {"a", "b"}
    half = t[t["fraction"] == 0.5]
    assert half["speedup"].tolist() == pytest.approx([2.5] * 4)
    assert half["flop_speedup"].tolist() == pytest.approx([4.0] * 4)
    assert half["share"].tolist() == pytest.approx([0.625] * 4)
    assert (t[t["fraction"] == 0]["speedup"] == 1).all()


def test_at_fraction_and_plot():
    t = speed.speedups(frame())
    s = speed.at_fraction(t, 0.5)
    assert list(s["runtime"]) == ["onnxruntime", "torch"] and (s["n"] == 2).all()
    assert s["speedup"].tolist() == pytest.approx([2.5, 2.5])
    fig, ax = plt.subplots()
    speed.plot_speedups(ax, t)
    labels = [line.get_label() for line in ax.get_lines()]
    assert "FLOP ratio (ideal)" in labels and "ONNX Runtime, batch 128" in labels
    plt.close(fig)
