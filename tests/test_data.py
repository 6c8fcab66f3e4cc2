"""Tests for bridgeout.data: loading/validation, subsets, on-device augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bridgeout import data


def _synthetic(name="cifar100", n_train=60, n_test=30, seed=0, classes=None):
    rng = np.random.default_rng(seed)
    h, w, c = data.IMAGE_SHAPE[name]
    k = data.NUM_CLASSES[name] if classes is None else classes
    return {
        "x_train": rng.integers(0, 256, (n_train, h, w, c), dtype=np.uint8),
        "y_train": (np.arange(n_train) % k).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, h, w, c), dtype=np.uint8),
        "y_test": (np.arange(n_test) % k).astype(np.uint8),
    }


def _write(tmp_path, name, arrays):
    np.savez(tmp_path / f"{name}.npz", **arrays)
    return tmp_path / f"{name}.npz"


# ------------------------------------------------------------------------- load
def test_load_cifar100_synthetic_npz(tmp_path):
    arrays = _synthetic("cifar100", n_train=250)
    _write(tmp_path, "cifar100", arrays)
    x_tr, y_tr, x_te, y_te = data.load("cifar100", root=tmp_path)
    assert x_tr.shape == (250, 32, 32, 3) and x_tr.dtype == np.uint8
    assert x_te.shape == (30, 32, 32, 3)
    assert y_tr.dtype == np.int64 and y_te.dtype == np.int64
    assert y_tr.max() == 99 and y_tr.min() == 0
    np.testing.assert_array_equal(x_tr, arrays["x_train"])
    np.testing.assert_array_equal(y_te, arrays["y_test"].astype(np.int64))


def test_load_mnist_adds_channel_axis(tmp_path):
    arrays = _synthetic("mnist")
    arrays["x_train"] = arrays["x_train"][..., 0]
    arrays["x_test"] = arrays["x_test"][..., 0]
    _write(tmp_path, "mnist", arrays)
    x_tr, _, x_te, _ = data.load("mnist", root=tmp_path)
    assert x_tr.shape == (60, 28, 28, 1) and x_te.shape == (30, 28, 28, 1)


def test_default_root_from_env(tmp_path, monkeypatch):
    _write(tmp_path, "cifar10", _synthetic("cifar10"))
    monkeypatch.setenv("BRIDGEOUT_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    assert data.load("cifar10")[0].shape == (60, 32, 32, 3)
    monkeypatch.delenv("BRIDGEOUT_DATA")
    assert data.default_root().parts[-2:] == ("data", "datasets")


def test_missing_data_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        data.load("cifar10", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere" in msg and "cifar10.npz" in msg
    assert "BRIDGEOUT_DATA" in msg and "download=True" in msg
    # existing folder without the archive: torchvision path also fails with the same advice
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist", root=tmp_path)
    assert "BRIDGEOUT_DATA" in str(err.value) and "download=True" in str(err.value)


def test_unknown_name():
    with pytest.raises(ValueError, match="svhn"):
        data.load("svhn")


def test_corrupt_archive(tmp_path):
    (tmp_path / "cifar10.npz").write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="cifar10.npz"):
        data.load("cifar10", root=tmp_path)


def test_missing_keys(tmp_path):
    arrays = _synthetic("cifar10")
    del arrays["y_test"]
    _write(tmp_path, "cifar10", arrays)
    with pytest.raises(ValueError, match=r"cifar10\.npz.*y_test"):
        data.load("cifar10", root=tmp_path)


@pytest.mark.parametrize("mutation, pattern", [
    (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "x_train must have dtype uint8"),
    (lambda a: a.update(x_test=a["x_test"][:, :28, :28]), r"x_test must have shape \(N, 32, 32, 3\)"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), "y_train must have shape"),
    (lambda a: a.update(y_test=a["y_test"].astype(np.float64)), "integer class labels"),
    (lambda a: a.update(y_train=a["y_train"] + 5), r"labels must be in \[0, 9\]"),
])
def test_bad_arrays(tmp_path, mutation, pattern):
    arrays = _synthetic("cifar10")
    mutation(arrays)
    _write(tmp_path, "cifar10", arrays)
    with pytest.raises(ValueError, match=pattern) as err:
        data.load("cifar10", root=tmp_path)
    assert "cifar10.npz" in str(err.value)


def test_cifar100_labels_out_of_range(tmp_path):
    arrays = _synthetic("cifar100")
    arrays["y_test"][3] = 100
    _write(tmp_path, "cifar100", arrays)
    with pytest.raises(ValueError, match=r"\[0, 99\].*\[0, 100\]"):
        data.load("cifar100", root=tmp_path)


# ------------------------------------------------------------------------ subset
def test_subset_stratified_and_seeded():
    arrays = tuple(_synthetic("cifar10", n_train=1000, n_test=500).values())
    a = data.subset(arrays, 100, 50, seed=3)
    b = data.subset(arrays, 100, 50, seed=3)
    c = data.subset(arrays, 100, 50, seed=4)
    assert len(a[0]) == 100 and len(a[1]) == 100 and len(a[2]) == 50
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    # 1000 examples, 100 per class -> exactly 10 per class (within one by construction)
    counts = np.bincount(a[1], minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11 and counts.sum() == 100
    # the kept images are rows of the original (original order kept)
    rows = {r.tobytes(): i for i, r in enumerate(arrays[0])}
    idx = [rows[r.tobytes()] for r in a[0]]
    assert idx == sorted(idx)
    np.testing.assert_array_equal(a[1], arrays[1][idx])
    # None keeps a split whole
    full = data.subset(arrays, None, 20)
    assert full[0] is arrays[0] and len(full[2]) == 20


@pytest.mark.parametrize("n", [0, 1001, 2.5, True])
def test_subset_bad_size(n):
    arrays = tuple(_synthetic("cifar10", n_train=1000).values())
    with pytest.raises(ValueError, match=r"n_train must be an integer in \[1, 1000\]"):
        data.subset(arrays, n_train=n)


# ------------------------------------------------------------------ augmentation
def _reference_crop_flip(img, oy, ox, flip, pad=4):
    """Straightforward per-image reference (NumPy): pad, slice, flip."""
    c, h, w = img.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=img.dtype)
    padded[:, pad:pad + h, pad:pad + w] = img
    out = padded[:, oy:oy + h, ox:ox + w]
    return out[:, :, ::-1] if flip else out


def test_crop_flip_matches_reference():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(1, 256, (9, 3, 32, 32), dtype=np.uint8))
    # include the extreme offsets and both flip states
    oy = torch.tensor([0, 8, 4, 0, 8, 3, 7, 1, 5])
    ox = torch.tensor([0, 8, 4, 8, 0, 6, 2, 5, 1])
    flip = torch.tensor([False, True, False, True, False, True, True, False, True])
    out = data.crop_flip(x, oy, ox, flip, padding=4)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for b in range(9):
        ref = _reference_crop_flip(x[b].numpy(), int(oy[b]), int(ox[b]), bool(flip[b]))
        np.testing.assert_array_equal(out[b].numpy(), ref)
    # centre crop without flip is the identity; zero padding shows up as zeros at the border
    assert torch.equal(out[2], x[2])
    assert (out[0, :, :4, :] == 0).all() and (out[0, :, 4:, 4:] > 0).all()


def test_draw_crop_flip_distribution():
    g = torch.Generator().manual_seed(0)
    n = 20000
    oy, ox, flip = data.draw_crop_flip(n, 4, g, "cpu")
    assert oy.min() == 0 and oy.max() == 8 and ox.min() == 0 and ox.max() == 8
    # each of 9 offsets has prob 1/9: sd of a count ~ sqrt(n/9 * 8/9) ~ 44; allow 5 sd
    counts = torch.bincount(oy, minlength=9).float()
    assert (counts - n / 9).abs().max() < 5 * (n / 9 * 8 / 9) ** 0.5
    # flip rate 1/2: sd = sqrt(0.25/n) = 0.0035; allow 5 sd
    assert abs(flip.float().mean().item() - 0.5) < 5 * (0.25 / n) ** 0.5


def _dd(name="cifar10", n_train=50, n_test=20, device="cpu"):
    return data.DeviceData(tuple(_synthetic(name, n_train, n_test).values()), name, device)


def test_device_data_layout():
    dd = _dd()
    assert dd.x_train.shape == (50, 3, 32, 32) and dd.x_train.dtype == torch.uint8
    assert dd.y_train.dtype == torch.int64 and dd.num_classes == 10
    assert dd.train_size == 50 and dd.test_size == 20
    assert dd.num_train_batches(16) == 4 and dd.num_train_batches(16, drop_last=True) == 3
    m = _dd("mnist")
    assert m.x_train.shape == (50, 1, 28, 28) and not m.augments


@pytest.mark.parametrize("name", data.DATASETS)
def test_normalisation_constants(name):
    mean, std = data.NORMALIZATION[name]
    dd = _dd(name)
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, len(mean), 1, 3)
    got = dd.normalize(x)
    for c in range(len(mean)):
        want = (torch.tensor([0, 51, 255]) / 255.0 - mean[c]) / std[c]
        torch.testing.assert_close(got[0, c, 0], want.float(), rtol=1e-6, atol=1e-6)
    published = {
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
        "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
        "mnist": ((0.1307,), (0.3081,)),
    }
    assert data.NORMALIZATION[name] == published[name]


def test_test_batches_are_normalised_and_ordered():
    dd = _dd()
    xs, ys = zip(*dd.test_batches(7))
    assert [len(y) for y in ys] == [7, 7, 6]
    assert torch.equal(torch.cat(ys), dd.y_test)
    torch.testing.assert_close(torch.cat(xs), dd.normalize(dd.x_test))


def test_train_batches_seeded_and_augmented():
    dd = _dd()

    def epoch(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return [(x.clone(), y.clone()) for x, y in dd.train_batches(16, g, **kw)]

    a, b, c = epoch(1), epoch(1), epoch(2)
    assert [len(y) for _, y in a] == [16, 16, 16, 2]
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    # each epoch is a permutation of the training set
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(dd.y_train.tolist())
    assert len(epoch(1, drop_last=True)) == 3

    # replay the same draws: permutation, then per batch (oy, ox, flip) -> reference crops
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(dd.train_size, generator=g)
    xs_ref = []
    for start in range(0, 50, 16):
        idx = perm[start:start + 16]
        oy, ox, flip = data.draw_crop_flip(len(idx), 4, g, "cpu")
        for k, i in enumerate(idx.tolist()):
            ref = _reference_crop_flip(dd.x_train[i].numpy(), int(oy[k]), int(ox[k]), bool(flip[k]))
            xs_ref.append(torch.from_numpy(ref.copy()))
    ref = dd.normalize(torch.stack(xs_ref))
    torch.testing.assert_close(torch.cat([x for x, _ in a]), ref, rtol=0, atol=0)
    assert torch.equal(torch.cat([y for _, y in a]), dd.y_train[perm])

    # augment=False: pure shuffle + normalise
    g = torch.Generator().manual_seed(1)
    x0, y0 = next(dd.train_batches(16, g, augment=False))
    assert torch.equal(x0, dd.normalize(dd.x_train[perm[:16]]))


def test_mnist_not_augmented():
    dd = _dd("mnist")
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    x, _ = next(dd.train_batches(10, g))
    assert torch.equal(x, dd.normalize(dd.x_train[perm[:10]]))


def test_train_batches_bad_args():
    dd = _dd()
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        next(dd.train_batches(0, torch.Generator()))
    with pytest.raises(ValueError, match="batch_size"):
        next(dd.test_batches(-3))


def test_device_data_rejects_bad_arrays():
    arrays = list(_synthetic("cifar10").values())
    arrays[1] = arrays[1] + 20
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\]"):
        data.DeviceData(arrays, "cifar10")
    with pytest.raises(ValueError, match="name"):
        data.DeviceData(arrays, "imagenet")


def test_as_device_data():
    arrays = tuple(_synthetic("cifar10").values())
    dd = data.as_device_data(arrays, "cifar10")
    assert isinstance(dd, data.DeviceData) and dd.name == "cifar10"
    assert data.as_device_data(dd) is dd
    with pytest.raises(ValueError, match="name is required"):
        data.as_device_data(arrays)
    with pytest.raises(ValueError, match="does not match"):
        data.as_device_data(dd, "mnist")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_cuda_matches_cpu_given_same_draws():
    dd_cpu = _dd()
    dd_gpu = dd_cpu.to("cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    x, y = next(dd_gpu.train_batches(16, g))
    assert x.is_cuda and y.is_cuda
    oy, ox, flip = data.draw_crop_flip(5, 4, g, "cuda")
    xb = dd_cpu.x_train[:5]
    got = data.crop_flip(xb.cuda(), oy, ox, flip).cpu()
    want = data.crop_flip(xb, oy.cpu(), ox.cpu(), flip.cpu())
    assert torch.equal(got, want)


def _write_idx(path, array):
    """An IDX (MNIST) file: zero bytes, dtype code 0x08 (ubyte), ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_load_falls_back_to_torchvision_files(tmp_path):
    """Without mnist.npz, torchvision's own MNIST files in root are read (no download)."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x_tr = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    x_te = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y_tr, y_te = np.arange(12) % 10, np.arange(5)
    _write_idx(raw / "train-images-idx3-ubyte", x_tr)
    _write_idx(raw / "train-labels-idx1-ubyte", y_tr)
    _write_idx(raw / "t10k-images-idx3-ubyte", x_te)
    _write_idx(raw / "t10k-labels-idx1-ubyte", y_te)
    a, b, c, d = data.load("mnist", root=tmp_path)
    assert a.shape == (12, 28, 28, 1) and c.shape == (5, 28, 28, 1) and b.dtype == np.int64
    np.testing.assert_array_equal(a[..., 0], x_tr)
    np.testing.assert_array_equal(b, y_tr)
    np.testing.assert_array_equal(d, y_te)
