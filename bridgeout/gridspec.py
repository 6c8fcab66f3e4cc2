"""Grid specs: a YAML file that names a notebook, where its tables and executed notebooks go,
default parameters and axes; :func:`load_spec` reads and checks one, :func:`expand` gives its
cells (every parameter validated against the notebook's ``parameters`` cell and
:func:`bridgeout.experiment.validate_params`). A spec is a YAML file::

    name: mnist-teaching                    # also the runs' `grid` column
    notebook: notebooks/train_and_prune.ipynb
    results_dir: data/results               # where the tables live
    runs_dir: data/runs/mnist-teaching      # executed notebooks + failures.csv
    defaults: {model: lenet5, dataset: mnist, protocol: fast, epochs: 3}
    axes:                                   # expanded as a Cartesian product
      regularizer: [bridgeout, dropout, weight_decay]
      seed: [0, 1, 2]
      arch:                                 # an axis that is not a parameter name:
        - {model: vgg16, width: 0.25}       # each value is a mapping of parameters
        - {model: resnet, width: 0.5}       # set together
    exclude:                                # cells matching all given values are dropped
      - {model: resnet, regularizer: dropout}
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import results
from .experiment import _repo_path, NOTEBOOK, PARAMETERS, REPO_ROOT, RUNNER_PARAMETERS, validate_params

__all__ = ["SpecError", "GridSpec", "load_spec", "expand"]


class SpecError(ValueError):
    """A grid spec that cannot be run (reported before anything runs)."""


_SPEC_KEYS = {"name", "description", "notebook", "results_dir", "runs_dir", "defaults", "axes", "exclude"}


@dataclass
class GridSpec:
    """A parsed grid spec (see the module docstring for the YAML format).

    Attributes:
        name: the grid's name (also the runs' ``grid`` column).
        notebook: the notebook each cell executes.
        results_dir: where the tables live.
        runs_dir: where the executed notebooks and ``failures.csv`` go.
        defaults: parameter values of every cell.
        axes: the axes, expanded as a Cartesian product.
        exclude: mappings of parameter values; cells matching one are dropped.
        description: free text.
        source: the spec file's path (empty for a spec given as a mapping).
    """

    name: str
    notebook: Path
    results_dir: Path
    runs_dir: Path
    defaults: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)
    exclude: list = field(default_factory=list)
    description: str = ""
    source: str = ""


def _rel(p: Path) -> str:
    """Repo-relative path when inside the repository, else absolute."""
    p = Path(p).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(p)


def load_spec(spec) -> GridSpec:
    """Read a YAML grid spec (path or mapping); raises :class:`SpecError` when malformed.

    Args:
        spec: the path of a YAML file, or the spec itself as a mapping. ``notebook``,
            ``results_dir`` and ``runs_dir`` default to the experiment notebook,
            ``data/results`` and ``data/runs/<name>``.

    Returns:
        the parsed :class:`GridSpec` (cells not yet expanded: :func:`expand`).

    Raises:
        SpecError: no such file, invalid YAML, not a mapping, an unknown key, a ``name`` that is
            not a simple name, ``defaults`` or ``axes`` not mappings, an axis that is not a
            non-empty list (or, for an axis that is not a parameter name, whose values are not
            all mappings), or an ``exclude`` that is not a list of non-empty mappings.
    """
    import yaml
    source = ""
    if isinstance(spec, (str, Path)):
        source = str(spec)
        sp = Path(spec)
        if not sp.is_file():
            raise SpecError(f"grid spec {source}: no such file")
        try:
            spec = yaml.safe_load(sp.read_text())
        except yaml.YAMLError as err:
            raise SpecError(f"grid spec {source}: not valid YAML ({err})") from None
    where = f"grid spec {source}" if source else "grid spec"
    if not isinstance(spec, Mapping):
        raise SpecError(f"{where}: expected a mapping with keys {sorted(_SPEC_KEYS)}, got {type(spec).__name__}")
    extra = sorted(set(spec) - _SPEC_KEYS)
    if extra:
        raise SpecError(f"{where}: unknown key(s) {extra}; allowed: {sorted(_SPEC_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not results.RUN_ID.match(name):
        raise SpecError(f"{where}: 'name' must be a simple name (letters, digits, '_', '.', '-'), got {name!r}")
    defaults = spec.get("defaults") or {}
    axes = spec.get("axes") or {}
    exclude = spec.get("exclude") or []
    if not isinstance(defaults, Mapping):
        raise SpecError(f"{where}: 'defaults' must be a mapping of parameter values, got {defaults!r}")
    if not isinstance(axes, Mapping):
        raise SpecError(f"{where}: 'axes' must be a mapping name -> list of values, got {axes!r}")
    for axis, values in axes.items():
        if isinstance(values, (str, Mapping)) or not isinstance(values, Sequence) or len(values) == 0:
            raise SpecError(f"{where}: axis {axis!r} must be a non-empty list of values, got {values!r}")
        if axis not in PARAMETERS and not all(isinstance(v, Mapping) for v in values):
            raise SpecError(f"{where}: axis {axis!r} is not a notebook parameter, so each of its values must be "
                            f"a mapping of parameters (e.g. {{model: vgg16, width: 0.25}}); got {values!r}")
    if not isinstance(exclude, list) or not all(isinstance(e, Mapping) and e for e in exclude):
        raise SpecError(f"{where}: 'exclude' must be a list of non-empty mappings parameter -> value")
    return GridSpec(
        name=name,
        notebook=_repo_path(spec.get("notebook") or NOTEBOOK),
        results_dir=_repo_path(spec.get("results_dir") or "data/results"),
        runs_dir=_repo_path(spec.get("runs_dir") or f"data/runs/{name}"),
        defaults=dict(defaults), axes=dict(axes), exclude=list(exclude),
        description=str(spec.get("description") or ""), source=source,
    )


def _notebook_parameters(notebook: Path) -> set[str]:
    import papermill as pm
    return set(pm.inspect_notebook(str(notebook)))


def expand(spec: GridSpec) -> list[dict]:
    """The spec's cells as complete, validated parameter dicts (``run_id`` etc. filled in).

    Raises :class:`SpecError` naming the cell for unknown parameter names (checked against
    the notebook's ``parameters`` cell), runner-owned names in the spec, bad values and
    duplicated run ids.

    Args:
        spec: a spec from :func:`load_spec`.

    Returns:
        one dict per cell of the axes' Cartesian product that no ``exclude`` entry matches, with
        ``grid``, ``results_dir`` and ``notebook_path`` set (paths repository-relative when
        inside the repository).

    Raises:
        SpecError: as above, and also when the notebook is missing or unreadable or no cell is
            left.
    """
    where = f"grid spec {spec.source or spec.name}"
    if not spec.notebook.is_file():
        raise SpecError(f"{where}: notebook {spec.notebook} not found")
    try:
        nb_params = _notebook_parameters(spec.notebook)
    except Exception as err:  # noqa: BLE001 - any failure to read the notebook is a spec error
        raise SpecError(f"{where}: cannot read the parameters of {spec.notebook} ({err})") from None
    names = list(spec.axes)
    combos = itertools.product(*(spec.axes[a] for a in names)) if names else [()]
    cells, seen = [], {}
    for combo in combos:
        cell = dict(spec.defaults)
        for axis, value in zip(names, combo):
            if axis in PARAMETERS:
                cell[axis] = value
            else:
                cell.update(value)
        if any(all(cell.get(k, PARAMETERS.get(k)) == v for k, v in ex.items()) for ex in spec.exclude):
            continue
        label = ", ".join(f"{a}={cell.get(a) if a in PARAMETERS else combo[i]}" for i, a in enumerate(names))
        label = f"cell ({label})" if label else "the cell"
        owned = sorted(set(cell) & set(RUNNER_PARAMETERS))
        if owned:
            raise SpecError(f"{where}, {label}: {owned} are set by the runner (grid name, run id, notebook path, "
                            f"results_dir from the spec's top level); remove them from defaults/axes")
        unknown = sorted(set(cell) - nb_params)
        if unknown:
            raise SpecError(f"{where}, {label}: unknown parameter(s) {unknown}; the notebook "
                            f"{_rel(spec.notebook)} takes {sorted(nb_params)}")
        cell["grid"] = spec.name
        cell["results_dir"] = _rel(spec.results_dir)
        try:
            params = validate_params(cell)
        except ValueError as err:
            raise SpecError(f"{where}, {label}: {err}") from None
        rid = params["run_id"]
        if rid in seen:
            raise SpecError(f"{where}: {label} and {seen[rid]} have the same run id {rid!r}")
        seen[rid] = label
        params["notebook_path"] = _rel(spec.runs_dir / f"{rid}.ipynb")
        cells.append(params)
    if not cells:
        raise SpecError(f"{where}: no cells left (axes empty or everything excluded)")
    return cells


