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


def test_every_fraction_marks_the_slower_ones_and_the_drops():
    rows = []
    # ONNX Runtime: slower than unpruned at 10 %, 3.0x at 50 %, falls to 2.0x at 60 %; torch always faster
    for rt, ms in (("onnxruntime", {0.0: 100.0, 0.1: 125.0, 0.5: 100 / 3, 0.6: 50.0}),
                   ("torch", {0.0: 100.0, 0.1: 90.0, 0.5: 50.0, 0.6: 40.0})):
        for f, m in ms.items():
            rows.append({"run_id": "a", "criterion": "l2", "runtime": rt, "batch_size": 1, "threads": 1,
                         "fraction": f, "latency_ms": m, "flops": int(400 * (1 - f) ** 2)})
    t = speed.speedups(pd.DataFrame(rows))
    w = speed.every_fraction(t)
    assert list(w.index) == [0.1, 0.5, 0.6] and list(w.columns) == ["flop", "onnxruntime b1", "torch b1"]
    assert w.loc[0.1, "onnxruntime b1"] == pytest.approx(0.8) and w.loc[0.5, "flop"] == pytest.approx(4.0)
    md = speed.every_fraction_markdown(t)
    assert "| 10 % | 1.23× | **0.80×** | 1.11× |" in md and "| 50 % | 4.00× | 3.00× | 2.00× |" in md
    s = speed.slower_sentence(t)
    assert "**slower than the unpruned one** with ONNX Runtime at batch 1 at 10 % removed (0.80-0.80×)" in s
    assert "fell as more was removed with ONNX Runtime at batch 1 from 50 to 60 % (3.00× → 2.00×)" in s
    assert "PyTorch" not in s.split("Per-layer")[0]
    assert "keeps 15 at 10 %, 8 at 50 %" in s
    fast = speed.speedups(pd.DataFrame([r for r in rows if r["runtime"] == "torch"]))
    assert speed.slower_sentence(fast) == "No removed network ran slower than the unpruned one."
