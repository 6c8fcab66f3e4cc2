"""The experiment's parameters: their names and defaults, and the checks that make them valid.

:data:`PARAMETERS` holds every parameter of ``notebooks/train_and_prune.ipynb`` with its default
(the notebook's ``parameters`` cell mirrors it), :data:`RUNNER_PARAMETERS` those the grid
runner sets itself, and :func:`validate_params` checks a cell's parameters and returns them
complete and normalised (a readable ``ValueError`` naming the value and what is allowed). The
steps that use them are :mod:`bridgeout.experiment`, which re-exports these names.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import registry, results
from ._validate import check_choice, check_fraction, check_int, check_positive, check_probability

__all__ = ["PARAMETERS", "RUNNER_PARAMETERS", "validate_params"]

#: The experiment notebook's parameters and their defaults (its ``parameters`` cell
#: mirrors this; a test checks that they agree).
PARAMETERS: dict = {
    "model": "lenet5",
    "regularizer": "bridgeout",
    "p": 0.3,
    "q": 1.5,
    "target_fraction": 0.75,
    "signed": False,
    "lam": None,
    "dataset": "mnist",
    "protocol": "smoke",
    "epochs": None,
    "width": 1.0,
    "n_train": None,
    "n_test": None,
    "seed": 0,
    "select": "final",
    "quirks": [],
    "device": "auto",
    "data_root": None,
    "results_dir": "data/results/scratch",
    "prune_modes": ["mask", "remove"],
    "prune_criteria": ["l2"],
    "prune_scopes": ["layer"],
    "prune_recalibrate_bn": [False],
    "fractions": list(registry.FRACTIONS),
    "latency": True,
    "grid": "",
    "run_id": None,
    "notebook_path": "",
    "checkpoint_dir": None,
    "precision": "fp32",
    "weights_dir": None,
}
#: Parameters the runner sets itself (a spec may not set them).
RUNNER_PARAMETERS = ("grid", "run_id", "notebook_path", "results_dir")


# =========================================================================== parameters

def _bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _str(name, value, *, none_ok=False, empty_ok=True):
    if value is None and none_ok:
        return None
    if not isinstance(value, str) or (not empty_ok and not value):
        allowed = "a non-empty string" if not empty_ok else "a string"
        raise ValueError(f"{name} must be {allowed}{' (or None)' if none_ok else ''}, got {value!r}")
    return value


def _names(name, value, choices):
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty list of names from {list(choices)}, got {value!r}")
    out = [check_choice(name[:-1] if name.endswith("s") else name, v, choices) for v in value]
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat names, got {value!r}")
    return out


def _known():
    """Allowed names (:mod:`bridgeout.registry`): the parameter checks load no torch."""
    return dict(models=registry.MODELS, regularizers=registry.REGULARIZERS, datasets=registry.DATASETS,
                protocols=registry.PROTOCOL_NAMES, modes=registry.MODES, criteria=registry.CRITERIA,
                scopes=registry.SCOPES, select=registry.SELECT)


def validate_params(params: Mapping) -> dict:
    """Check the experiment parameters and return them complete and normalised.

    Missing names take their :data:`PARAMETERS` default; unknown names, wrong types and
    out-of-range values raise ``ValueError`` naming the parameter, the value and what is
    allowed (e.g. ``p must be in [0, 1), got 1.5``; ``unknown model 'vgg17'; valid
    choices: ...``). The model must match the dataset's image size: ``lenet5`` takes
    MNIST (28x28x1), the others CIFAR (32x32x3). ``run_id`` None is replaced by
    :func:`bridgeout.results.make_run_id` of the parameters.

    Args:
        params: parameter names (keys of :data:`PARAMETERS`) and values.

    Returns:
        every parameter of :data:`PARAMETERS`, checked; quirks sorted, ``lam`` a float (or
        None), ``precision`` ``"auto"`` resolved for the run's device.

    Raises:
        ValueError: ``params`` is not a mapping, or as above.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping of parameter names to values, got {type(params).__name__}")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; valid parameters: {', '.join(PARAMETERS)}")
    k = _known()
    p = {**{n: (list(v) if isinstance(v, list) else v) for n, v in PARAMETERS.items()}, **dict(params)}
    out = {}
    out["model"] = check_choice("model", p["model"], k["models"])
    out["regularizer"] = check_choice("regularizer", p["regularizer"], k["regularizers"])
    out["p"] = check_probability("p", p["p"])
    out["q"] = check_positive("q", p["q"])
    out["target_fraction"] = check_fraction("target_fraction", p["target_fraction"])
    out["signed"] = _bool("signed", p["signed"])
    out["lam"] = _lam(p["lam"], out["regularizer"])
    out["dataset"] = check_choice("dataset", p["dataset"], k["datasets"])
    if (out["model"] == "lenet5") != (out["dataset"] == "mnist"):
        raise ValueError(f"model {out['model']!r} does not fit dataset {out['dataset']!r}: lenet5 takes "
                         f"mnist (28x28x1 images), the CIFAR models (vgg16, resnet, wrn, wrn28_10) take "
                         f"cifar10/cifar100 (32x32x3)")
    out["protocol"] = check_choice("protocol", p["protocol"], k["protocols"])
    out["epochs"] = check_int("epochs", p["epochs"], 1, none_ok=True)
    out["width"] = check_positive("width", p["width"])
    out["n_train"] = check_int("n_train", p["n_train"], 1, none_ok=True)
    out["n_test"] = check_int("n_test", p["n_test"], 1, none_ok=True)
    out["seed"] = check_int("seed", p["seed"], 0)
    out["select"] = check_choice("select", p["select"], k["select"])
    from .quirks import check_quirks  # deferred: loads torch
    out["quirks"] = check_quirks(p["quirks"], out["model"])
    out["device"] = device = _device(p["device"])
    out["data_root"] = _str("data_root", p["data_root"], none_ok=True, empty_ok=False)
    out["results_dir"] = _str("results_dir", p["results_dir"], empty_ok=False)
    out["prune_modes"] = _names("prune_modes", p["prune_modes"], k["modes"])
    out["prune_criteria"] = _names("prune_criteria", p["prune_criteria"], k["criteria"])
    out["prune_scopes"] = _names("prune_scopes", p["prune_scopes"], k["scopes"])
    out["prune_recalibrate_bn"] = _recalibrate_list(p["prune_recalibrate_bn"])
    out["fractions"] = _fractions(p["fractions"])
    out["latency"] = _bool("latency", p["latency"])
    out["grid"] = _str("grid", p["grid"])
    out["notebook_path"] = _str("notebook_path", p["notebook_path"])
    out["checkpoint_dir"] = _str("checkpoint_dir", p["checkpoint_dir"], none_ok=True, empty_ok=False)
    out["weights_dir"] = _str("weights_dir", p["weights_dir"], none_ok=True, empty_ok=False)
    out["precision"] = _precision(p["precision"], device)
    run_id = _str("run_id", p["run_id"], none_ok=True, empty_ok=False)
    if run_id is not None and not results.RUN_ID.match(run_id):
        raise ValueError(f"run_id must be letters, digits, '_', '.', '-' (starting with a letter or digit), "
                         f"got {run_id!r}")
    out["run_id"] = run_id if run_id is not None else results.make_run_id(out)
    return out


def _lam(lam, regularizer: str):
    """The penalty strength: None, or a number > 0 for a regularizer with a penalty."""
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0):
        raise ValueError(f"lam must be None or a number > 0 (the slimming / group_lasso strength), got {lam!r}")
    if lam is not None and regularizer not in registry.PENALTIES:
        raise ValueError(f"lam is the strength of the slimming / group_lasso penalties; regularizer "
                         f"{regularizer!r} takes none, got lam={lam!r}")
    return None if lam is None else float(lam)


def _device(value) -> str:
    """``"auto"`` or a string torch accepts as a device."""
    device = _str("device", value, empty_ok=False)
    if device != "auto":
        import torch   # deferred: loads torch
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:1', "
                             f"got {device!r}") from None
    return device


def _recalibrate_list(rb) -> list:
    """A non-empty list of distinct booleans."""
    if (isinstance(rb, str) or not isinstance(rb, Sequence) or len(rb) == 0
            or not all(isinstance(v, bool) for v in rb) or len(set(rb)) != len(rb)):
        raise ValueError(f"prune_recalibrate_bn must be a non-empty list of distinct booleans "
                         f"([False], [True] or [False, True]), got {rb!r}")
    return list(rb)


def _fractions(fr) -> list:
    """A non-empty list of distinct fractions in [0, 1)."""
    if isinstance(fr, str) or not isinstance(fr, Sequence) or len(fr) == 0:
        raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1), got {fr!r}")
    out = [check_fraction("fractions", f, low_open=False) for f in fr]
    if len(set(out)) != len(out):
        raise ValueError(f"fractions must not repeat values, got {fr!r}")
    return out


def _precision(value, device: str) -> str:
    """``fp32`` / ``bf16``, or ``auto`` resolved for the run's device (bf16 where native)."""
    from . import train  # deferred: loads torch
    value = check_choice("precision", value, (*train.PRECISIONS, "auto"))
    if value != "auto":
        return value
    return train.resolve_precision("auto", train.resolve_device(device))
