"""Trained weights kept with every run: fp32 ``safetensors`` files named by run id.

A run's weights are its model's ``state_dict`` (parameters and BatchNorm buffers) stored as
contiguous fp32 tensors (integer buffers such as ``num_batches_tracked`` keep their dtype)
in ``<weights_dir>/<run_id>.safetensors``; with ``select="best_test"`` the final epoch's
weights go beside them as ``<run_id>.final.safetensors``. The file's SHA-256 and size are
recorded in ``runs.csv`` (``weights``, ``weights_sha256``, ``weights_bytes``), and
:func:`load` refuses a file whose hash differs from the recorded one. The file's metadata
names the run and the parameters that rebuild its network.

Example::

    from bridgeout import weights
    state = weights.load("data/weights/cifar10-vgg16-w0.25-bridgeout-cpu-bf16-s0-1a2b3c.safetensors")
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["SUFFIX", "path_for", "save", "load", "sha256", "metadata"]

SUFFIX = ".safetensors"


def path_for(weights_dir, run_id: str, *, final: bool = False) -> Path:
    """``<weights_dir>/<run_id>.safetensors`` (``.final.safetensors`` for ``final=True``).

    Args:
        weights_dir: the folder.
        run_id: the run id.
        final: the final epoch's weights of a ``select="best_test"`` run.

    Returns:
        the path.
    """
    return Path(weights_dir) / f"{run_id}{'.final' if final else ''}{SUFFIX}"


def sha256(path) -> str:
    """SHA-256 hex digest of a file's bytes.

    Args:
        path: the file.

    Returns:
        the hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fp32_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"state entry {k!r} is a {type(v).__name__}, not a tensor")
        v = v.detach().to("cpu")
        out[k] = (v.float() if v.is_floating_point() else v).contiguous().clone()
    return out


def save(state: Mapping[str, torch.Tensor], path, meta: Mapping | None = None) -> tuple[str, int]:
    """Write ``state`` (a ``state_dict``) to ``path`` as fp32 safetensors, atomically
    (temporary file, then :func:`os.replace`); returns ``(sha256, bytes)``.

    ``meta`` (JSON-serialisable values) is stored as the file's metadata under ``"bridgeout"``.
    The bytes depend only on the tensors and the metadata, so equal weights give equal files.

    Args:
        state: the tensors; floating ones are stored as contiguous fp32 CPU copies, others keep
            their dtype.
        path: the file to write (its folder is created; the file is made readable, mode 0o644).
        meta: the metadata (values that are not JSON-serialisable are written with ``str``).

    Returns:
        ``(sha256, bytes)`` of the written file.

    Raises:
        ValueError: an entry of ``state`` is not a tensor.
    """
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    md = {"bridgeout": json.dumps(dict(meta or {}), sort_keys=True, default=str)}
    try:
        save_file(_fp32_state(state), str(tmp), metadata=md)
        os.chmod(tmp, 0o644)              # readable like any other result file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256(path), path.stat().st_size


def metadata(path) -> dict:
    """The ``"bridgeout"`` metadata stored by :func:`save` (empty dict when none).

    Args:
        path: the safetensors file.

    Returns:
        the decoded metadata.
    """
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
    return json.loads(md.get("bridgeout", "{}"))


def load(path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict in ``path``; with ``expected_sha256``, the file's hash is checked first
    and a mismatch raises ``ValueError`` naming the file and both hashes.

    Args:
        path: the safetensors file.
        expected_sha256: the recorded hash (falsy: not checked).

    Returns:
        the tensors by name.

    Raises:
        ValueError: no file at ``path``, a hash mismatch, or a file safetensors cannot read.
    """
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no weights file there")
    if expected_sha256:
        got = sha256(path)
        if got != expected_sha256:
            raise ValueError(f"{path}: sha256 {got} differs from the recorded {expected_sha256}; "
                             f"the file is not the run's weights")
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - name the file
        raise ValueError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err})") from err
