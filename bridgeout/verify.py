"""Re-derive a recorded run and say whether it agrees: ``bridgeout verify RUN_ID``.

Two ways to re-derive a cell of the result tables:

* :func:`rerun` re-executes the run's experiment notebook with the parameters papermill
  injected when it was recorded (read back from the executed notebook ``runs.notebook``)
  into a scratch folder (its own tables, weights and notebook; the committed tables are never
  written), training included;
* :func:`from_weights` reloads the run's kept weights (``runs.weights``, SHA-256 checked) and
  prunes them again with the recorded sweep settings: seconds instead of a training run.

:func:`compare` puts the recorded and the re-derived values side by side (unpruned accuracy,
every pruning row of the run's own sweep, every epoch of the history) and gives a verdict
against a stated :class:`Tolerance`: ``identical`` (every compared value equal), ``within
tolerance`` or ``differs``. :func:`report` writes it as text, naming the commit, CPU and
torch version of both sides. Latency columns are timings, not results, and are not compared.

Reading a run back and re-deriving it is :mod:`bridgeout.rederive` (re-exported here).

Example::

    from bridgeout import verify
    rec = verify.recorded("mnist-lenet5-w1-bridgeout-fast_lr0.05-e3-s1-ade8bd")
    new = verify.from_weights(rec)           # or verify.rerun(rec, scratch="/tmp/verify")
    print(verify.report(verify.compare(rec, new)))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from . import results
from .experiment import _repo_path, NOTEBOOK, REPO_ROOT  # noqa: F401 - re-exported
from .rederive import Recorded, cell_parameters, from_weights, recorded, rerun  # noqa: F401 - re-exported

__all__ = ["Tolerance", "Recorded", "Comparison", "VERDICTS", "recorded", "cell_parameters", "rerun",
           "from_weights", "compare", "report", "summary_row", "agreement", "RECORD_COLUMNS"]

VERDICTS = ("identical", "within tolerance", "differs")
_PRUNING_KEY = ["criterion", "scope", "mode", "fraction", "recalibrate_bn", "finetune_epochs"]
_HISTORY_VALUES = ["train_loss", "train_acc", "test_loss", "test_acc"]


@dataclass(frozen=True)
class Tolerance:
    """Agreement a re-derived run must reach to be ``within tolerance`` (accuracies in [0, 1]).

    The steep part of a pruning curve amplifies tiny weight differences, so one row may move far
    while the curve as a whole agrees: hence a median and a largest bound for the pruning rows.
    The defaults are set from re-derivations measured on two CPU types (the book's
    *Reproduce it* page shows them).

    Attributes:
        unpruned: largest |difference| of the unpruned test accuracy.
        pruning_median: median |difference| of the pruning rows' test accuracy.
        pruning_max: largest |difference| of the pruning rows' test accuracy.
        history: largest |difference| of a per-epoch test accuracy.

    Raises:
        ValueError: a bound that is not a number in [0, 1] (or is a bool).
    """

    unpruned: float = 0.005
    pruning_median: float = 0.02
    pruning_max: float = 0.15
    history: float = 0.02

    def __post_init__(self):
        for name in ("unpruned", "pruning_median", "pruning_max", "history"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v <= 1):
                raise ValueError(f"tolerance {name} must be a number in [0, 1] (an accuracy difference), got {v!r}")


@dataclass
class Comparison:
    """What :func:`compare` found: one table per kind of value (``recorded``, ``rederived``,
    ``diff`` columns), the largest differences, the verdict and both sides' provenance.

    Attributes:
        unpruned: ``final_test_acc`` and ``best_test_acc`` side by side.
        pruning: the pruning rows' test accuracy side by side (keyed by criterion, scope, mode,
            fraction, recalibrate_bn, finetune_epochs).
        history: every epoch's train/test loss and accuracy side by side.
        summary: the largest differences, missing rows and ``reasons`` for a ``differs``.
        verdict: one of :data:`VERDICTS`.
        tolerance: the :class:`Tolerance` applied.
        provenance: ``{"recorded": ..., "rederived": ...}``: commit, CPU, torch version, date.
    """

    unpruned: pd.DataFrame
    pruning: pd.DataFrame
    history: pd.DataFrame
    summary: dict
    verdict: str
    tolerance: Tolerance
    provenance: dict = field(default_factory=dict)



# ------------------------------------------------------------------------------ compare
def _side_by_side(a: pd.DataFrame, b: pd.DataFrame, key: list[str], value: str) -> pd.DataFrame:
    m = a[key + [value]].merge(b[key + [value]], on=key, how="outer", suffixes=("_recorded", "_rederived"))
    m = m.rename(columns={f"{value}_recorded": "recorded", f"{value}_rederived": "rederived"})
    m.insert(len(key), "value", value)
    m["diff"] = m["rederived"] - m["recorded"]
    return m


def _same(df: pd.DataFrame) -> bool:
    """Every row present on both sides and exactly equal (NaN equal to NaN)."""
    r, d = df["recorded"].astype(float), df["rederived"].astype(float)
    return bool((((r == d) | (r.isna() & d.isna())).all()))


def _max_abs(s: pd.Series) -> float:
    s = s.astype(float).abs().dropna()
    return float(s.max()) if len(s) else 0.0


def compare(rec: Recorded, new: Recorded, tolerance: Tolerance | None = None) -> Comparison:
    """Recorded against re-derived values, and the verdict (:data:`VERDICTS`).

    ``identical``: every unpruned, pruning and history value compared is equal and no row is
    missing on either side. ``within tolerance``: no row missing and every difference within
    ``tolerance`` (:class:`Tolerance`). ``differs`` otherwise; ``summary['reasons']`` says
    which bound failed (or which rows are missing).

    Args:
        rec: the recorded run.
        new: the re-derived run.
        tolerance: the bounds (default ``Tolerance()``).

    Returns:
        the :class:`Comparison`; the re-derived side's provenance is this machine's.
    """
    tol = tolerance or Tolerance()
    unpruned = pd.DataFrame([{"value": c, "recorded": float(rec.run[c]), "rederived": float(new.run[c])}
                             for c in ("final_test_acc", "best_test_acc")])
    unpruned["diff"] = unpruned["rederived"] - unpruned["recorded"]
    pruning = _side_by_side(rec.pruning, new.pruning, _PRUNING_KEY, "test_acc")
    history = pd.concat([_side_by_side(rec.history, new.history, ["epoch"], v) for v in _HISTORY_VALUES],
                        ignore_index=True)
    missing = int(pruning[["recorded", "rederived"]].isna().any(axis=1).sum())
    summary = {
        "unpruned_diff": float(unpruned.loc[0, "diff"]),
        "pruning_rows": int(len(pruning)), "pruning_missing": missing,
        "pruning_median_abs_diff": float(pruning["diff"].abs().median()) if len(pruning) else 0.0,
        "pruning_max_abs_diff": _max_abs(pruning["diff"]),
        "history_max_abs_test_acc_diff": _max_abs(history.loc[history["value"] == "test_acc", "diff"]),
    }
    reasons = []
    if missing:
        reasons.append(f"{missing} pruning row(s) on one side only")
    checks = (("unpruned accuracy", abs(summary["unpruned_diff"]), tol.unpruned),
              ("median pruning-row difference", summary["pruning_median_abs_diff"], tol.pruning_median),
              ("largest pruning-row difference", summary["pruning_max_abs_diff"], tol.pruning_max),
              ("largest history test-accuracy difference", summary["history_max_abs_test_acc_diff"], tol.history))
    for what, got, bound in checks:
        if not (got <= bound):
            reasons.append(f"{what} {100 * got:.2f} points > {100 * bound:.2f}")
    if not reasons and _same(unpruned) and _same(pruning) and _same(history):
        verdict = "identical"
    else:
        verdict = "differs" if reasons else "within tolerance"
    summary["reasons"] = reasons
    prov = {"recorded": {k: rec.run.get(k) for k in ("git_commit", "device_name", "torch_version", "precision", "date")},
            "rederived": results.provenance("cpu")}
    return Comparison(unpruned=unpruned, pruning=pruning, history=history, summary=summary, verdict=verdict,
                      tolerance=tol, provenance=prov)


def _pts(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.2f}"


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _num(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _table(df: pd.DataFrame, key: list[str]) -> str:
    """Accuracies as percentages with differences in points; losses as they are."""
    out = df[key].astype(str).copy()
    acc = df["value"].astype(str).str.endswith("acc") if "value" in df else pd.Series(True, index=df.index)
    for col, name in (("recorded", "recorded"), ("rederived", "re-derived")):
        out[name] = [(_pct(v) + " %") if a else _num(v) for v, a in zip(df[col], acc)]
    out["diff"] = [(_pts(v) + " pt") if a else _num(v) for v, a in zip(df["diff"], acc)]
    return out.to_string(index=False)


def report(c: Comparison, *, show_history: bool = True) -> str:
    """The comparison as text: provenance of both sides, the three tables, the verdict.

    Args:
        c: the :class:`Comparison`.
        show_history: keyword-only; include the history table.

    Returns:
        the text (accuracies in %, differences in points).
    """
    rec, new = c.provenance.get("recorded", {}), c.provenance.get("rederived", {})
    lines = ["recorded  : commit {} | {} | torch {} | {} | {}".format(
                 str(rec.get("git_commit") or "?")[:10], rec.get("device_name"), rec.get("torch_version"),
                 rec.get("precision"), rec.get("date")),
             "re-derived: commit {} | {} | torch {} | {}".format(
                 str(new.get("git_commit") or "?")[:10], new.get("device_name"), new.get("torch_version"),
                 new.get("date")),
             "", "unpruned test accuracy", _table(c.unpruned, ["value"]),
             "", "pruning rows (test accuracy)", _table(c.pruning, _PRUNING_KEY)]
    if show_history:
        lines += ["", "history", _table(c.history, ["epoch", "value"])]
    s, t = c.summary, c.tolerance
    lines += ["",
              f"unpruned: {_pts(s['unpruned_diff'])} points; pruning rows: median |diff| "
              f"{100 * s['pruning_median_abs_diff']:.2f}, largest {100 * s['pruning_max_abs_diff']:.2f} points over "
              f"{s['pruning_rows']} rows; history test accuracy: largest {100 * s['history_max_abs_test_acc_diff']:.2f}",
              f"tolerance: unpruned {100 * t.unpruned:.2f}, pruning median {100 * t.pruning_median:.2f} / largest "
              f"{100 * t.pruning_max:.2f}, history {100 * t.history:.2f} points",
              f"verdict: {c.verdict.upper()}" + (f" ({'; '.join(s['reasons'])})" if s["reasons"] else "")]
    return "\n".join(lines)


def summary_row(run_id: str, how: str, c: Comparison) -> dict:
    """One row describing a verification (for the book's table of measured agreement).

    Args:
        run_id: the run id.
        how: how it was re-derived (e.g. ``"from weights"``, ``"re-executed"``).
        c: the :class:`Comparison`.

    Returns:
        the row, keyed by :data:`RECORD_COLUMNS`.
    """
    rec, new = c.provenance.get("recorded", {}), c.provenance.get("rederived", {})
    return {"run_id": run_id, "how": how, "verdict": c.verdict,
            **{k: v for k, v in c.summary.items() if k != "reasons"},
            "recorded_commit": rec.get("git_commit"), "recorded_cpu": rec.get("device_name"),
            "recorded_torch": rec.get("torch_version"), "rederived_commit": new.get("git_commit"),
            "rederived_cpu": new.get("device_name"), "rederived_torch": new.get("torch_version"),
            "date": new.get("date")}



#: Columns of the verification table (``bridgeout verify --record``), ``data/results/verify.csv``.
RECORD_COLUMNS = ("run_id", "how", "verdict", "unpruned_diff", "pruning_rows", "pruning_missing",
                  "pruning_median_abs_diff", "pruning_max_abs_diff", "history_max_abs_test_acc_diff",
                  "recorded_commit", "recorded_cpu", "recorded_torch", "rederived_commit", "rederived_cpu",
                  "rederived_torch", "date")


def _cpu_kind(name: str) -> str:
    name = str(name)
    return "AMD EPYC" if "AMD" in name else "Intel Xeon" if "Intel" in name else name


def agreement(frame: pd.DataFrame) -> dict[str, str]:
    """What re-derivations agreed to, from the recorded verification table: per group (same
    CPU type / another CPU type) the number of runs, how many were identical, and the largest
    unpruned and pruning-row differences. Returns sentences keyed ``same_cpu``, ``other_cpu``
    and ``expect`` (what a reader should expect).

    Args:
        frame: the verification table (:data:`RECORD_COLUMNS`); CPU types are compared by
            vendor (AMD EPYC, Intel Xeon).

    Returns:
        the sentences (``other_cpu`` and ``expect`` empty when ``frame`` is empty).
    """
    if not len(frame):
        return {"same_cpu": "No recorded run has been verified yet.", "other_cpu": "", "expect": ""}
    f = frame.copy()
    for c in ("unpruned_diff", "pruning_median_abs_diff", "pruning_max_abs_diff"):
        f[c] = f[c].astype(float)
    f["same"] = [_cpu_kind(a) == _cpu_kind(b) for a, b in zip(f["recorded_cpu"], f["rederived_cpu"])]
    out = {}
    for key, same in (("same_cpu", True), ("other_cpu", False)):
        g = f[f["same"] == same]
        if not len(g):
            out[key] = ("No run has been verified on the CPU type it was recorded on yet." if same else
                        "No run has been verified on another CPU type than the one it was recorded on yet.")
            continue
        n_ident = int((g["verdict"] == "identical").sum())
        kinds = ", ".join(sorted({f"{_cpu_kind(a)} → {_cpu_kind(b)}" for a, b in zip(g["recorded_cpu"], g["rederived_cpu"])}))
        mnist = int(g["run_id"].str.startswith("mnist").sum())
        what = f"{len(g)} run{'s' if len(g) != 1 else ''} ({mnist} MNIST, {len(g) - mnist} CIFAR-10; {kinds})"
        if n_ident == len(g):
            out[key] = f"{what}: every one re-derived identically, every unpruned accuracy, pruning row and epoch."
        else:
            out[key] = (f"{what}: {n_ident} identical; unpruned accuracy moved by up to "
                        f"{100 * g['unpruned_diff'].abs().max():.2f} points, pruning rows by a median of up to "
                        f"{100 * g['pruning_median_abs_diff'].max():.2f} and at most "
                        f"{100 * g['pruning_max_abs_diff'].max():.1f} points; verdicts: "
                        + ", ".join(f"{v} {n}" for v, n in g["verdict"].value_counts().items()) + ".")
    t = Tolerance()
    out["expect"] = (f"`bridgeout verify` calls a re-derivation within tolerance when the unpruned accuracy moves by at "
                     f"most {100 * t.unpruned:.1f} points and the pruning rows by a median of at most "
                     f"{100 * t.pruning_median:.0f} and never more than {100 * t.pruning_max:.0f} points.")
    return out
