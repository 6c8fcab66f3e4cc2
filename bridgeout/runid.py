"""Run ids: readable and deterministic, from the parameters that change what a run computes
(dataset, model, width, regularizer and its noise's form, protocol, precision, seed) plus a
short hash of all of them; parameters that only say where or how a run is stored or shown
(:data:`NON_IDENTITY`) are left out, and parameters added later count only when they differ
from what older runs did (:data:`LATER_DEFAULTS`), so every recorded id stays valid.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import numpy as np

__all__ = ["make_run_id", "NON_IDENTITY", "LATER_DEFAULTS"]

#: Parameters that do not change what a run computes (where it runs, where it writes),
#: hence are left out of the run id's hash.
NON_IDENTITY = frozenset({"device", "data_root", "results_dir", "notebook_path", "run_id", "grid",
                          "checkpoint_dir", "weights_dir"})


#: Parameters added after runs were first recorded, with the value they implicitly had
#: before: left out of the hash when they have it, so earlier run ids stay valid.
LATER_DEFAULTS = {"prune_recalibrate_bn": [False], "quirks": [], "lam": None, "precision": "fp32"}


def _canonical(v):
    if isinstance(v, Mapping):
        return {str(k): _canonical(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return int(f) if f.is_integer() else round(f, 10)
    return v if v is None or isinstance(v, str) else str(v)


def _slug(v) -> str:
    if isinstance(v, float):
        v = f"{v:g}"
    return re.sub(r"[^A-Za-z0-9_.]+", "", str(v))


def make_run_id(params: Mapping) -> str:
    """A deterministic, readable run id, e.g. ``mnist-lenet5-w1-bridgeout-fast-e3-s0-1a2b3c``.

    Readable part: dataset, model, width, regularizer (for bridgeout / sparseout followed by
    ``q<q>`` when q is not 1.5 and ``signed`` when signed; for slimming / group_lasso by
    ``lam<lam>`` when lam is given), protocol, the precision when not fp32, ``e<epochs>`` (only when
    an epochs override is given), ``n<n_train>`` (only for a training subset), ``s<seed>``.
    The last six hex digits are the SHA-256 of the canonical JSON of all parameters except
    those in :data:`NON_IDENTITY` (device, paths, grid name) and those of
    :data:`LATER_DEFAULTS` at their implicit value, so two runs that compute the
    same thing get the same id and any other difference (p, q, fractions, ...) changes it.

    Args:
        params: the run's parameters; must hold ``dataset``, ``model``, ``regularizer``,
            ``protocol`` and ``seed`` (a missing or ``None``/0 ``width`` reads as 1).

    Returns:
        the run id.

    Raises:
        ValueError: ``params`` is not a mapping or lacks one of the required keys.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping of parameter values, got {type(params).__name__}")
    for k in ("dataset", "model", "regularizer", "protocol", "seed"):
        if k not in params:
            raise ValueError(f"params must contain {k!r} to make a run id; got keys {sorted(params)}")
    ident = {k: v for k, v in params.items() if k not in NON_IDENTITY
             and not (k in LATER_DEFAULTS and _canonical(v) == LATER_DEFAULTS[k])}
    digest = hashlib.sha256(json.dumps(_canonical(ident), sort_keys=True).encode()).hexdigest()[:6]
    parts = [_slug(params["dataset"]), _slug(params["model"]), f"w{_slug(float(params.get('width', 1.0) or 1.0))}",
             _slug(params["regularizer"])]
    if params["regularizer"] in ("bridgeout", "sparseout"):   # the noise's form, when not the default
        if params.get("q") is not None and float(params["q"]) != 1.5:
            parts.append(f"q{_slug(float(params['q']))}")
        if params.get("signed"):
            parts.append("signed")
    if params.get("lam") is not None:                          # slimming / group_lasso strength
        parts.append(f"lam{_slug(float(params['lam']))}")
    parts.append(_slug(params["protocol"]))
    if params.get("precision", "fp32") != "fp32":
        parts.append(_slug(params["precision"]))
    if params.get("epochs") is not None:
        parts.append(f"e{_slug(params['epochs'])}")
    if params.get("n_train") is not None:
        parts.append(f"n{_slug(params['n_train'])}")
    parts.append(f"s{_slug(params['seed'])}")
    parts.append(digest)
    return "-".join(parts)
