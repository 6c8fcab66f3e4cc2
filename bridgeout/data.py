"""Datasets and an on-device loader with the published augmentation.

Two layers:

* :func:`load` reads a dataset as four NumPy arrays ``(x_train, y_train, x_test, y_test)``
  (uint8 images NHWC, int64 labels), from ``<root>/<name>.npz`` when present and otherwise
  from torchvision's dataset class in ``root``. Every array is checked (shapes, dtypes, label
  range) so that a wrong file fails loudly instead of training on garbage.
* :class:`DeviceData` keeps the whole dataset on the training device as uint8 (CIFAR-10 is
  150 MB) and makes mini-batches there: shuffling with :func:`torch.randperm`, the
  published augmentation (random 32x32 crop of the image zero-padded by 4 pixels, random
  horizontal flip, both per sample) and per-channel normalisation
  ``x_norm = (x / 255 - mean_c) / std_c``. All randomness comes from one
  :class:`torch.Generator` on the device, so a run is reproducible from its seed, and no
  step copies data between host and device. The same code runs on CPU and CUDA.

Example::

    from bridgeout import data
    arrays = data.load("cifar10")                  # $BRIDGEOUT_DATA/cifar10.npz
    dd = data.DeviceData(arrays, "cifar10", device="cuda")
    g = torch.Generator(device=dd.device).manual_seed(0)
    for x, y in dd.train_batches(128, g):         # x: float32 (128, 3, 32, 32), normalised
        ...

:func:`load` and the checks of the arrays are in :mod:`bridgeout.archives` (re-exported here).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .archives import (  # noqa: F401 - re-exported
    IMAGE_SHAPE,
    NUM_CLASSES,
    _KEYS,
    _TORCHVISION,
    _check_arrays,
    _how_to_get,
    _load_npz,
    _load_torchvision,
    default_root,
    load,
    sizes,
)
from .registry import DATASETS
from ._validate import check_choice

__all__ = [
    "DATASETS", "NORMALIZATION", "NUM_CLASSES", "IMAGE_SHAPE", "PADDING",
    "default_root", "load", "sizes", "subset", "DeviceData", "as_device_data", "crop_flip",
]


#: Published per-channel (mean, std) used for normalisation. CIFAR values as in the
#: authors' code (note: the CIFAR-10 "std" is the widely copied 0.2023/0.1994/0.2010, not
#: the true pixel std 0.2470/0.2435/0.2616); MNIST as in the PyTorch examples.
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "mnist": ((0.1307,), (0.3081,)),
}
#: Zero padding of the random crop (pixels per side); 0 means no crop/flip augmentation.
PADDING = {"cifar10": 4, "cifar100": 4, "mnist": 0}


def subset(arrays, n_train=None, n_test=None, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A stratified random subset of ``(x_train, y_train, x_test, y_test)``.

    ``n_train`` / ``n_test`` examples (``None``: the whole split) are drawn without
    replacement so that class proportions are kept: the examples of each class are put in a
    random order (``numpy.random.default_rng(seed)``), example ``r`` of class ``c`` gets the
    key ``(r + 1/2) / n_c``, and the ``n`` smallest keys are kept. Each class then gets
    ``n * n_c / N`` examples to within one. The kept examples stay in their original order.

    Args:
        arrays: ``(x_train, y_train, x_test, y_test)``.
        n_train: training examples to keep, an integer in [1, N] or ``None``.
        n_test: test examples to keep, an integer in [1, N] or ``None``.
        seed: the seed of the random order (one generator for both splits, training first).

    Returns:
        ``(x_train, y_train, x_test, y_test)`` of the subset.

    Raises:
        ValueError: ``n_train`` or ``n_test`` is not an integer in [1, N] (nor ``None``).
    """
    x_tr, y_tr, x_te, y_te = arrays
    rng = np.random.default_rng(seed)
    out = []
    for arg, n, x, y in (("n_train", n_train, x_tr, y_tr), ("n_test", n_test, x_te, y_te)):
        total = len(y)
        if n is None:
            out += [x, y]
            continue
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= total:
            raise ValueError(f"{arg} must be an integer in [1, {total}] (or None for all), got {n!r}")
        y_np = np.asarray(y)
        order = rng.permutation(total)
        key = np.empty(total, dtype=np.float64)
        for c in np.unique(y_np):
            members = order[y_np[order] == c]  # class-c indices in random order
            key[members] = (np.arange(len(members)) + 0.5) / len(members)
        keep = np.sort(np.argsort(key, kind="stable")[:n])
        out += [x[keep], y[keep]]
    return tuple(out)


# ---------------------------------------------------------------------- augmentation
def crop_flip(x: torch.Tensor, offset_y: torch.Tensor, offset_x: torch.Tensor,
              flip: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Per-sample crop of the zero-padded images, then optional horizontal flip.

    For ``x`` of shape (B, C, H, W), the image is zero-padded by ``padding`` on every side
    (size (H + 2P, W + 2P)) and sample ``b`` returns the window with top-left corner
    ``(offset_y[b], offset_x[b])`` (offsets in ``[0, 2P]``), mirrored left-right where
    ``flip[b]``::

        out[b, c, i, j] = xpad[b, c, oy_b + i, ox_b + (W - 1 - j if flip_b else j)]

    Implemented as one gather with per-sample index grids (no Python loop over samples).
    Works for any dtype (uint8 included) and device.

    Args:
        x: images (B, C, H, W).
        offset_y: (B,) integer row offsets in ``[0, 2P]``.
        offset_x: (B,) integer column offsets in ``[0, 2P]``.
        flip: (B,) bool, where to mirror.
        padding: ``P``, the zero padding per side (0: no padding).

    Returns:
        the crops, shape (B, C, H, W), dtype of ``x``.
    """
    b, c, h, w = x.shape
    dev = x.device
    xpad = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = offset_y.view(b, 1) + torch.arange(h, device=dev).view(1, h)          # (B, H)
    j = torch.arange(w, device=dev).view(1, w)
    cols = offset_x.view(b, 1) + torch.where(flip.view(b, 1), w - 1 - j, j)        # (B, W)
    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    ci = torch.arange(c, device=dev).view(1, c, 1, 1)
    return xpad[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def draw_crop_flip(batch: int, padding: int, generator: torch.Generator, device):
    """Random parameters for :func:`crop_flip`: offsets uniform on ``{0, ..., 2P}`` and a
    flip with probability 1/2, drawn in this order from ``generator``.

    Args:
        batch: the number of samples.
        padding: ``P``.
        generator: the generator to draw from.
        device: where the tensors are made (the generator's device).

    Returns:
        ``(offset_y, offset_x, flip)``, each of shape (batch,).
    """
    oy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    ox = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    flip = torch.rand(batch, generator=generator, device=device) < 0.5
    return oy, ox, flip


class DeviceData:
    """A whole dataset on one device, batched and augmented there.

    Args:
        arrays: ``(x_train, y_train, x_test, y_test)`` as returned by :func:`load`
            (uint8 NHWC images, integer labels; NumPy arrays or tensors).
        name: dataset name (one of :data:`DATASETS`); picks the normalisation constants,
            the number of classes and whether crop/flip augmentation applies (CIFAR only).
        device: where the data live (``"cpu"``, ``"cuda"``, a :class:`torch.device`).

    Attributes:
        x_train: training images, uint8 NCHW.
        x_test: test images, uint8 NCHW.
        y_train: training labels, int64.
        y_test: test labels, int64.
        num_classes: the number of classes.
        name: the dataset name.
        device: the device.
        mean: per-channel means (tuple).
        std: per-channel standard deviations (tuple).
        padding: the crop's zero padding (0: no augmentation).

    Raises:
        ValueError: an unknown ``name``, not four arrays, or arrays that fail the checks of
            :func:`load`.
    """

    def __init__(self, arrays, name: str, device="cpu"):
        check_choice("name", name, DATASETS)
        if len(arrays) != 4:
            raise ValueError(f"arrays must be (x_train, y_train, x_test, y_test), got {len(arrays)} items")
        arrs = [a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a) for a in arrays]
        x_tr, y_tr, x_te, y_te = _check_arrays(name, dict(zip(_KEYS, arrs)), "arrays")
        self.name = name
        self.device = torch.device(device)
        self.num_classes = NUM_CLASSES[name]
        self.padding = PADDING[name]
        self.mean, self.std = NORMALIZATION[name]
        to = dict(device=self.device)
        self.x_train = torch.from_numpy(x_tr).permute(0, 3, 1, 2).contiguous().to(**to)
        self.x_test = torch.from_numpy(x_te).permute(0, 3, 1, 2).contiguous().to(**to)
        self.y_train = torch.from_numpy(y_tr).to(**to)
        self.y_test = torch.from_numpy(y_te).to(**to)
        # x_norm = x * scale + shift with scale = 1 / (255 std), shift = -mean / std
        std = torch.tensor(self.std, dtype=torch.float32, **to).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, **to).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    # ------------------------------------------------------------------ helpers
    def __repr__(self) -> str:
        return (f"DeviceData({self.name!r}, train={self.train_size}, test={self.test_size}, "
                f"device={str(self.device)!r})")

    @property
    def train_size(self) -> int:
        """The number of training examples."""
        return int(self.y_train.shape[0])

    @property
    def test_size(self) -> int:
        """The number of test examples."""
        return int(self.y_test.shape[0])

    @property
    def augments(self) -> bool:
        """True when crop/flip augmentation applies to this dataset (CIFAR)."""
        return self.padding > 0

    def to(self, device) -> "DeviceData":
        """This dataset on another device (self when already there).

        Args:
            device: the target device.

        Returns:
            ``self``, or a new :class:`DeviceData` on ``device``.
        """
        device = torch.device(device)
        if device == self.device:
            return self
        arrays = (self.x_train.permute(0, 2, 3, 1).cpu(), self.y_train.cpu(),
                  self.x_test.permute(0, 2, 3, 1).cpu(), self.y_test.cpu())
        return DeviceData(arrays, self.name, device)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float32 ``(x / 255 - mean_c) / std_c``.

        Args:
            x: uint8 images (B, C, H, W) on :attr:`device`.

        Returns:
            the normalised float32 images.
        """
        return x.to(torch.float32).mul_(self._scale).add_(self._shift)

    def num_train_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """The number of training batches per epoch.

        Args:
            batch_size: the batch size.
            drop_last: whether a last, incomplete batch is dropped.

        Returns:
            ``ceil(train_size / batch_size)``, or ``floor`` with ``drop_last``.
        """
        n = self.train_size
        return n // batch_size if drop_last else -(-n // batch_size)

    def num_test_batches(self, batch_size: int) -> int:
        """The number of test batches.

        Args:
            batch_size: the batch size.

        Returns:
            ``ceil(test_size / batch_size)``.
        """
        return -(-self.test_size // batch_size)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop (zero padding :attr:`padding`) + horizontal flip, per sample, uint8 in/out.

        Args:
            x: uint8 images (B, C, H, W).
            generator: the generator the crop offsets and flips are drawn from.

        Returns:
            the augmented images; ``x`` itself for a dataset without augmentation (MNIST).
        """
        if not self.augments:
            return x
        oy, ox, flip = draw_crop_flip(x.shape[0], self.padding, generator, x.device)
        return crop_flip(x, oy, ox, flip, self.padding)

    # ------------------------------------------------------------------ batches
    def train_batches(self, batch_size: int, generator: torch.Generator, augment: bool = True,
                      drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented, normalised training batches.

        Draws, from ``generator`` (which must live on :attr:`device`): one permutation of the
        training set (:func:`torch.randperm`), then per batch the crop offsets and flips
        (:func:`draw_crop_flip`). Augmentation applies only when ``augment`` and the dataset
        is CIFAR. Yields ``(x, y)``: float32 (B, C, H, W) and int64 (B,), on :attr:`device`.

        Args:
            batch_size: the batch size, a positive integer.
            generator: the random generator, on the data's device type.
            augment: apply crop/flip augmentation (CIFAR only).
            drop_last: drop the last, incomplete batch.

        Yields:
            ``(x, y)`` per batch.

        Raises:
            ValueError: a bad ``batch_size`` or a generator on another device type (raised when
                iteration starts).
        """
        _check_batch_size(batch_size)
        if torch.device(generator.device).type != self.device.type:
            raise ValueError(f"generator must be on the data's device {self.device}, "
                             f"got a generator on {generator.device}")
        n = self.train_size
        perm = torch.randperm(n, generator=generator, device=self.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = perm[start:start + batch_size]
            x = self.x_train[idx]
            if augment:
                x = self.augment(x, generator)
            yield self.normalize(x), self.y_train[idx]

    def test_batches(self, batch_size: int = 100) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test set in order, normalised, un-augmented: ``(x float32 NCHW, y int64)``.

        Args:
            batch_size: the batch size, a positive integer.

        Yields:
            ``(x, y)`` per batch.

        Raises:
            ValueError: a bad ``batch_size`` (raised when iteration starts).
        """
        _check_batch_size(batch_size)
        for start in range(0, self.test_size, batch_size):
            yield (self.normalize(self.x_test[start:start + batch_size]),
                   self.y_test[start:start + batch_size])


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def as_device_data(data, name: str | None = None, device="cpu") -> DeviceData:
    """A :class:`DeviceData` on ``device`` from either a DeviceData (moved if needed) or the
    4-tuple of arrays (then ``name`` is required for the normalisation constants).

    Args:
        data: a :class:`DeviceData` or ``(x_train, y_train, x_test, y_test)``.
        name: the dataset name; for a :class:`DeviceData` it must match its own (or be ``None``).
        device: the target device.

    Returns:
        the :class:`DeviceData`.

    Raises:
        ValueError: ``name`` does not match the DeviceData's dataset, or is missing for arrays.
    """
    if isinstance(data, DeviceData):
        if name is not None and name != data.name:
            raise ValueError(f"name {name!r} does not match the DeviceData's dataset {data.name!r}")
        return data.to(device)
    if name is None:
        raise ValueError("name is required when data is a tuple of arrays; "
                         f"valid choices: {', '.join(map(repr, DATASETS))}")
    return DeviceData(data, name, device)
