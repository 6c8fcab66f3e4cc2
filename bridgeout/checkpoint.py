"""Checkpoints of :func:`bridgeout.train.fit`: one ``checkpoint.pt`` per run folder, written
atomically, holding the model, optimizer and scheduler states, every random generator's state,
the history so far and what the run is (its protocol, seed, selection, dataset, precision,
owner and the network's identity), so that a resumed run ends bit-equal to an uninterrupted
one and a checkpoint is never resumed into another run.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["CHECKPOINT_NAME", "load_checkpoint", "model_identity", "canonical_owner", "check_same_run", "save", "rng_state",
           "set_rng_state"]

CHECKPOINT_NAME = "checkpoint.pt"


def _generator_modules(model: nn.Module) -> dict:
    return {name: m.generator for name, m in model.named_modules()
            if isinstance(getattr(m, "generator", None), torch.Generator)}


def rng_state(model, data_gen) -> dict:
    """Every random generator's state, for a checkpoint.

    Args:
        model: the network; the ``torch.Generator`` of each module that has one as its
            ``generator`` attribute is saved, by qualified module name.
        data_gen: the ``torch.Generator`` that draws the data order and augmentation.

    Returns:
        ``{"torch_cpu", "data", "modules"}`` states, plus ``"torch_cuda"`` (every CUDA device's
        state) when CUDA is available and initialised.
    """
    state = {"torch_cpu": torch.get_rng_state(), "data": data_gen.get_state(),
             "modules": {k: g.get_state() for k, g in _generator_modules(model).items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(model, data_gen, state) -> None:
    """Restore the generator states :func:`rng_state` saved.

    Args:
        model: the network; a module generator is restored when its name is in ``state``
            (saved names the model lacks are skipped).
        data_gen: the data generator.
        state: a dict from :func:`rng_state`; its ``"torch_cuda"`` entry is restored only when
            CUDA is available.
    """
    torch.set_rng_state(state["torch_cpu"])
    data_gen.set_state(state["data"])
    gens = _generator_modules(model)
    for k, s in state.get("modules", {}).items():
        if k in gens:
            gens[k].set_state(s)
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then :func:`os.replace` (atomic).

    Args:
        obj: what to save.
        path: the file to write.
    """
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(checkpoint_dir) -> dict | None:
    """The checkpoint dict in ``checkpoint_dir`` (None when there is none).

    Args:
        checkpoint_dir: the run folder holding :data:`CHECKPOINT_NAME`.

    Returns:
        the checkpoint, loaded onto the CPU with ``weights_only=True``, or ``None`` when the file
        does not exist.

    Raises:
        ValueError: the file exists but cannot be loaded (the message names it).
    """
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report which file is bad
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); "
                         f"delete it to start over") from err


def canonical_owner(owner) -> dict | None:
    """The checkpoint owner as plain, comparable values (lists, not tuples).

    Args:
        owner: a mapping (or ``None``).

    Returns:
        a dict with string keys and list and tuple values as lists, or ``None`` for ``None``.
    """
    if owner is None:
        return None
    out = {}
    for k, v in dict(owner).items():
        out[str(k)] = list(v) if isinstance(v, (list, tuple)) else v
    return out


def model_identity(model: nn.Module) -> dict:
    """What a checkpoint records about the network it was trained on: the class, a digest of
    its printed structure (every layer with its arguments: width, Bridgeout's p, q, signed and
    target fraction, Dropout's rate), the parameter count and the training penalty (slimming /
    group lasso and lambda). :func:`fit` refuses to resume a checkpoint whose identity differs.

    Args:
        model: the network.

    Returns:
        ``{"class", "structure", "parameters", "penalty"}``; ``structure`` is the first 16 hex
        digits of the SHA-256 of ``repr(model)``, ``penalty`` ``None`` without a ``sparsity``
        attribute.
    """
    structure = hashlib.sha256(repr(model).encode()).hexdigest()[:16]
    penalty = getattr(model, "sparsity", None)
    return {"class": type(model).__name__, "structure": structure,
            "parameters": sum(p.numel() for p in model.parameters()),
            "penalty": None if penalty is None else f"{penalty}(lambda={model.sparsity_lambda:g})"}


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """``key: saved -> wanted`` for every leaf that differs (nested dicts walked)."""
    out = []
    for k in sorted(set(saved) | set(wanted), key=str):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint {a!r}, this run {b!r}")
    return out




def check_same_run(saved_config: dict, config: dict, path: Path, protocol_defaults: dict) -> None:
    """Refuse, naming every field that differs, a checkpoint written by another run. Keys a
    checkpoint predates (the owner, the network's identity) are taken as matching, a missing
    precision as ``fp32``, and protocol fields added later take their default.

    Args:
        saved_config: the run description stored in the checkpoint.
        config: this run's description (its keys are the ones compared).
        path: the checkpoint file, for the message.
        protocol_defaults: the protocol fields' defaults.

    Raises:
        ValueError: the two descriptions differ (the message lists each differing field).
    """
    saved = {k: saved_config.get(k, "fp32" if k == "precision" else config[k]) for k in config}
    saved["protocol"] = {**protocol_defaults, **saved["protocol"],
                         "milestones": tuple(saved["protocol"]["milestones"])}
    if saved != config:
        raise ValueError(f"{path} was written by a different run; " + "; ".join(_differences(saved, config))
                         + ". Use another checkpoint_dir or delete the file (it is left as it is).")
