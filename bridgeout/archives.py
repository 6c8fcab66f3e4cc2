"""Reading a dataset from disk: ``<root>/<name>.npz`` or torchvision's files, every array checked.

:func:`load` returns ``(x_train, y_train, x_test, y_test)`` as NumPy arrays (uint8 NHWC
images, int64 labels) and refuses a wrong file loudly (shapes, dtypes, label range, missing
keys, a corrupt archive), naming the file and how to get the right one; :func:`sizes` reads
the split sizes from the archive's headers without loading the images; :func:`default_root`
is where both look. :mod:`bridgeout.data` re-exports these names beside the on-device
loader; import them from there.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .registry import DATASETS
from ._validate import check_choice

__all__ = ["NUM_CLASSES", "IMAGE_SHAPE", "default_root", "load", "sizes"]


NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10}
#: Image shape (H, W, C) as returned by :func:`load`.
IMAGE_SHAPE = {"cifar10": (32, 32, 3), "cifar100": (32, 32, 3), "mnist": (28, 28, 1)}

_KEYS = ("x_train", "y_train", "x_test", "y_test")
_TORCHVISION = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "mnist": "MNIST"}


# --------------------------------------------------------------------------- loading
def default_root() -> Path:
    """``$BRIDGEOUT_DATA`` when set, else ``<repo>/data/datasets`` (repo = parent of the package)."""
    env = os.environ.get("BRIDGEOUT_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data" / "datasets"


def _how_to_get(name: str, root: Path) -> str:
    return (
        f"Either set BRIDGEOUT_DATA to a folder containing {name}.npz (keys x_train, y_train, "
        f"x_test, y_test; e.g. BRIDGEOUT_DATA=../shared/data), or call "
        f"bridgeout.data.load({name!r}, root={str(root)!r}, download=True) on a machine with "
        f"internet access to fetch it with torchvision."
    )


def _check_arrays(name: str, arrays: dict, source: str) -> tuple[np.ndarray, ...]:
    """Validate and normalise the four arrays: images uint8 NHWC, labels int64 in range."""
    h, w, c = IMAGE_SHAPE[name]
    k = NUM_CLASSES[name]
    out = {}
    for split in ("train", "test"):
        x = np.asarray(arrays[f"x_{split}"])
        y = np.asarray(arrays[f"y_{split}"])
        if x.dtype != np.uint8:
            raise ValueError(f"{source}: x_{split} must have dtype uint8 (pixel values 0..255), "
                             f"got {x.dtype}")
        if x.ndim == 3 and c == 1:
            x = x[..., None]
        if x.ndim != 4 or x.shape[1:] != (h, w, c):
            raise ValueError(f"{source}: x_{split} must have shape (N, {h}, {w}, {c}) for {name}"
                             f"{' (or (N, 28, 28))' if c == 1 else ''}, got {x.shape}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{source}: y_{split} must have shape ({x.shape[0]},) to match "
                             f"x_{split}, got {y.shape}")
        if not (np.issubdtype(y.dtype, np.integer)):
            raise ValueError(f"{source}: y_{split} must hold integer class labels, got dtype {y.dtype}")
        if x.shape[0] == 0:
            raise ValueError(f"{source}: x_{split} is empty")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"{source}: y_{split} labels must be in [0, {k - 1}] for {name}, "
                             f"got values in [{lo}, {hi}]")
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = y.astype(np.int64)
    return tuple(out[key] for key in _KEYS)


def _load_npz(name: str, path: Path) -> tuple[np.ndarray, ...]:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an .npz archive (it holds a single array); "
                             f"need keys {list(_KEYS)}")
        with archive:
            missing = [key for key in _KEYS if key not in archive.files]
            if missing:
                raise ValueError(f"{path}: not a {name} archive; missing key(s) {missing} "
                                 f"(found {sorted(archive.files)}; need {list(_KEYS)})")
            arrays = {key: archive[key] for key in _KEYS}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err}); "
                         f"delete or replace it. {_how_to_get(name, path.parent)}") from err
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: corrupt .npz archive ({err}); delete or replace it.") from err
    return _check_arrays(name, arrays, str(path))


def _load_torchvision(name: str, root: Path, download: bool) -> tuple[np.ndarray, ...]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION[name])
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise FileNotFoundError(
                f"{name} not found: looked for {root / (name + '.npz')} and for torchvision's "
                f"{_TORCHVISION[name]} files in {root} ({err}). {_how_to_get(name, root)}"
            ) from err
        x = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        y = ds.targets.numpy() if isinstance(ds.targets, torch.Tensor) else np.asarray(ds.targets)
        splits += [x, y]
    return _check_arrays(name, dict(zip(_KEYS, splits)), f"torchvision {_TORCHVISION[name]} in {root}")


def load(name: str, root=None, download: bool = False) -> tuple[np.ndarray, ...]:
    """Load a dataset as ``(x_train, y_train, x_test, y_test)`` NumPy arrays.

    Images are uint8 NHWC (CIFAR: ``(N, 32, 32, 3)``, MNIST: ``(N, 28, 28, 1)``), labels
    int64 in ``[0, NUM_CLASSES[name])``.

    Lookup order: ``<root>/<name>.npz`` (keys ``x_train, y_train, x_test, y_test``; MNIST
    images may be stored without the channel axis), else torchvision's dataset class
    reading its own files in ``root`` (downloading them only when ``download=True``).
    ``root`` defaults to :func:`default_root` (``$BRIDGEOUT_DATA`` or ``<repo>/data/datasets``).

    Args:
        name: one of :data:`DATASETS`.
        root: the data folder (``~`` expanded); default :func:`default_root`.
        download: let torchvision download the files into ``root`` (created if needed) when
            there is no ``.npz``.

    Returns:
        ``(x_train, y_train, x_test, y_test)``.

    Raises:
        ValueError: unknown ``name``; an archive that is not a zip, lacks keys, or has wrong
            shapes, dtypes or labels out of range (the message names the file and the problem).
        FileNotFoundError: nothing found; the message says where it looked and how to get it.
    """
    check_choice("name", name, DATASETS)
    root = default_root() if root is None else Path(root).expanduser()
    npz = root / f"{name}.npz"
    if npz.is_file():
        return _load_npz(name, npz)
    if not download and not root.is_dir():
        raise FileNotFoundError(f"{name} not found: the data folder {root} does not exist "
                                f"(looked for {npz}). {_how_to_get(name, root)}")
    if download:
        root.mkdir(parents=True, exist_ok=True)
    return _load_torchvision(name, root, download)


def sizes(name: str, root=None) -> tuple[int, int]:
    """``(n_train, n_test)`` of a dataset without loading its images: read from the array
    headers of ``<root>/<name>.npz`` (a fraction of a second for CIFAR-10), else by
    :func:`load`. Raises like :func:`load` when the dataset is missing or unreadable.

    Args:
        name: one of :data:`DATASETS`.
        root: the data folder (``~`` expanded); default :func:`default_root`.

    Returns:
        ``(n_train, n_test)``.

    Raises:
        ValueError: unknown ``name``, or an unreadable dataset (as :func:`load`).
        FileNotFoundError: the dataset is missing (as :func:`load`).
    """
    check_choice("name", name, DATASETS)
    root = default_root() if root is None else Path(root).expanduser()
    npz = root / f"{name}.npz"
    if npz.is_file():
        try:
            with zipfile.ZipFile(npz) as zf:
                counts = []
                for key in ("x_train", "x_test"):
                    with zf.open(f"{key}.npy") as fh:
                        version = np.lib.format.read_magic(fh)
                        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                else np.lib.format.read_array_header_2_0)
                        shape, _, _ = read(fh)
                        counts.append(int(shape[0]))
            return counts[0], counts[1]
        except (zipfile.BadZipFile, KeyError, OSError, ValueError, IndexError):
            pass   # let load() report what is wrong with the archive
    x_train, _, x_test, _ = load(name, root)
    return len(x_train), len(x_test)
