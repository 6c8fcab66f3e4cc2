"""The executable chapters of the book run from top to bottom without an error.

* ``notebooks/theory.ipynb`` (CPU, well under a minute): executed as it is; besides "no
  error", every exact check it prints (Monte Carlo vs formula, equal mean gradients,
  targeting mask) must say ``True``. The empirical lines (sparsity of a small trained
  model) are reported, not asserted: they are results, not invariants.
* ``notebooks/teach.ipynb`` (real MNIST, minutes): executed with its ``parameters`` cell
  overridden by papermill for speed (2 000 training images, 1 000 test images, 1 epoch);
  marked ``slow``. Skipped when MNIST is not available (``$BRIDGEOUT_DATA`` or
  ``../shared/data`` relative to the repository root).

Both are run with papermill (nbclient underneath) in a temporary copy, so the notebooks in
the repository are never rewritten. ``pytest --nbval-lax notebooks/theory.ipynb`` works too.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

papermill = pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")


def _execute(name: str, tmp_path: Path, parameters: dict | None = None, env: dict | None = None):
    """Execute ``notebooks/<name>`` into ``tmp_path`` with papermill; return the executed notebook."""
    out = tmp_path / name
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        papermill.execute_notebook(
            str(NOTEBOOKS / name), str(out), parameters=parameters or {},
            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False, log_output=False,
            execution_timeout=600,
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nbformat.read(str(out), as_version=4)


def _stdout(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.get("output_type") == "stream"
                     and o.get("name") == "stdout")


def _n_figures(nb) -> int:
    """Figures shown or glued (PNG or SVG)."""
    n = 0
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            data = {k.split("papermill.record/")[-1]: v for k, v in o.get("data", {}).items()}
            n += "image/png" in data or "image/svg+xml" in data
    return n


def _glued(nb) -> dict[str, str]:
    """The Markdown and text that the notebook glued (myst_nb.glue), by key."""
    out = {}
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            key = o.get("metadata", {}).get("scrapbook", {}).get("name")
            data = o.get("data", {})
            text = data.get("application/papermill.record/text/markdown") or data.get(
                "application/papermill.record/text/plain")
            if key and text is not None:
                out[key] = text
    return out


def _errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _mnist_root() -> Path:
    env = os.environ.get("BRIDGEOUT_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


THEORY_CHECKS = (
    "Var[eps] = p/(1-p)",                                    # noise moments
    "every Monte Carlo estimate within 4 s.e. of the formula",  # the bridge penalty, 20 cases
    "same mean gradient",                                    # batch vs per-sample: equal means
    "batch-shared noise has the larger variance at every batch size",
    "each targeted kernel's norm <= each spared kernel's norm",
    "mask constant within each kernel",
    "Monte Carlo within 4 s.e. of the targeted formula",
)


@pytest.mark.slow
def test_theory_notebook_runs_and_its_exact_checks_hold(tmp_path):
    nb = _execute("theory.ipynb", tmp_path)
    assert _errors(nb) == []
    text = _stdout(nb)
    for check in THEORY_CHECKS:
        lines = [ln for ln in text.splitlines() if check in ln]
        assert len(lines) == 1, f"expected one printed line containing {check!r}, got {lines}"
        assert lines[0].rstrip().endswith("True"), lines[0]
    assert "targeted kernels per filter: [12, 12, 12, 12, 12, 12, 12, 12]" in text
    assert _n_figures(nb) >= 5


@pytest.mark.slow
def test_teach_notebook_runs_with_reduced_parameters(tmp_path):
    root = _mnist_root()
    if not (root / "mnist.npz").is_file():
        pytest.skip(f"MNIST not found at {root / 'mnist.npz'} (set BRIDGEOUT_DATA)")
    nb = _execute("teach.ipynb", tmp_path,
                  parameters={"n_train": 2000, "n_test": 1000, "epochs": 1, "seed": 0},
                  env={"BRIDGEOUT_DATA": str(root)})
    assert _errors(nb) == []
    # the injected parameters were used
    glued = _glued(nb)
    assert glued["teach_scale"] == "2,000 training images, 1,000 test images, 1 epoch, seed 0"
    assert "Best before pruning:" in glued["teach_crossing"]
    assert glued["teach_crossing"].count("Against ") == 2
    # Exercise 1 reads this run as one seed, then points at the 3-seed ablation (or says it is absent)
    assert glued["teach_q1"].startswith("In this run (one seed): unpruned, q = 1 reaches ")
    assert "One seed decides nothing." in glued["teach_q1"]
    # the random-ranking solution interprets each network from its own counts
    assert glued["teach_random"].count("fractions that prune at least one filter per layer") == 3
    assert "For the paper's explanation to hold" in glued["teach_random"]
    assert "never left chance" in glued["teach_stuck"] or "none ended at chance" in glued["teach_stuck"]
    # curves, norms, the grids' seeds, exercises 1 and 2: all glued for numbered figures
    figures = {"teach_curves_fig", "teach_norms_fig", "teach_seeds_fig", "teach_q1_fig", "teach_random_fig"}
    assert figures <= set(glued) or _n_figures(nb) >= len(figures)


def test_teach_notebook_has_a_parameters_cell():
    nb = nbformat.read(str(NOTEBOOKS / "teach.ipynb"), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    names = {line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line}
    assert {"n_train", "n_test", "epochs", "seed", "p", "q"} <= names
