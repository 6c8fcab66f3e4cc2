"""Tests for bridgeout.train: protocols, fit (reproducibility, checkpoint/resume,
model selection), evaluate, resolve_device. Small models on small synthetic data (CPU)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from bridgeout import checkpoint, data, train
from bridgeout.models import build


def _blobs(name="mnist", n_train=256, n_test=100, seed=0):
    """Learnable synthetic images: noise plus a bright square whose position encodes the class."""
    rng = np.random.default_rng(seed)
    h, w, c = data.IMAGE_SHAPE[name]

    def split(n):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, h, w, c)).astype(np.uint8)
        for i, k in enumerate(y):
            r, col = 2 + 8 * (k // 4), 2 + 7 * (k % 4)
            x[i, r:r + 6, col:col + 6, :] = 250
        return x, y.astype(np.int64)

    return (*split(n_train), *split(n_test))


def _lenet(seed=0, regularizer="bridgeout"):
    torch.manual_seed(seed)
    return build("lenet5", regularizer=regularizer)


def _vgg(seed=0, regularizer="bridgeout"):
    torch.manual_seed(seed)
    return build("vgg16", regularizer=regularizer, width=1 / 16)


TINY = train.Protocol(epochs=3, batch_size=32, milestones=(2,), max_steps_per_epoch=4)


def _params_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -------------------------------------------------------------------------- protocols
def test_paper_protocol_is_published():
    p = train.PROTOCOLS["paper"]
    assert (p.epochs, p.batch_size, p.test_batch_size) == (230, 128, 100)
    assert (p.lr, p.momentum, p.nesterov, p.weight_decay, p.gamma) == (0.1, 0.9, True, 5e-4, 0.2)
    assert p.milestones == (60, 120, 160, 200) and p.max_steps_per_epoch is None
    assert p.lr_at(0) == 0.1 and p.lr_at(59) == 0.1
    assert math.isclose(p.lr_at(60), 0.02) and math.isclose(p.lr_at(229), 0.1 * 0.2 ** 4)


def test_fast_and_smoke():
    f = train.PROTOCOLS["fast"]
    assert f.epochs == 30 and f.milestones == (8, 16, 21, 26)
    assert f.batch_size == 128 and f.weight_decay == 5e-4 and f.lr == 0.1
    s = train.PROTOCOLS["smoke"]
    assert s.epochs == 1 and s.max_steps_per_epoch == 3
    h = train.PROTOCOLS["fast_lr0.05"]
    assert h == dataclasses.replace(f, lr=0.05)
    assert h.lr_at(0) == 0.05 and math.isclose(train.get_protocol("fast_lr0.05", epochs=3).lr_at(1), 0.01)


@pytest.mark.parametrize("epochs, milestones", [
    (230, (60, 120, 160, 200)), (30, (8, 16, 21, 26)), (10, (3, 5, 7, 9)),
    (2, (1,)), (1, ()), (460, (120, 240, 320, 400)),
])
def test_epochs_override_rescales(epochs, milestones):
    p = train.get_protocol("paper", epochs=epochs)
    assert p.epochs == epochs and p.milestones == milestones
    assert all(b > a for a, b in zip(p.milestones, p.milestones[1:]))


def test_get_protocol_errors():
    with pytest.raises(ValueError, match="protocol.*'slow'.*'paper'"):
        train.get_protocol("slow")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        train.get_protocol("paper", epochs=0)
    with pytest.raises(ValueError, match="milestones must be strictly increasing"):
        train.Protocol(epochs=5, milestones=(3, 2))
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train.Protocol(epochs=5, lr=0)
    assert train.get_protocol(TINY) is TINY


def test_resolve_device():
    assert train.resolve_device("cpu") == torch.device("cpu")
    expect = "cuda" if torch.cuda.is_available() else "cpu"
    assert train.resolve_device("auto").type == expect
    with pytest.raises(ValueError, match="device"):
        train.resolve_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train.resolve_device("cuda")


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_matches_manual():
    arrays = _blobs(n_test=57)
    dd = data.DeviceData(arrays, "mnist")
    model = _lenet(regularizer="weight_decay")
    model.train()
    res = train.evaluate(model, dd, batch_size=10)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        out = model(dd.normalize(dd.x_test))
    assert res["acc"] == int((out.argmax(1) == dd.y_test).sum()) / 57
    assert res["loss"] == pytest.approx(nn.functional.cross_entropy(out, dd.y_test).item(), rel=1e-5)
    assert 0.0 <= res["acc"] <= 1.0
    assert train.evaluate(model, arrays, dataset="mnist")["acc"] == res["acc"]
    with pytest.raises(ValueError, match="name is required"):
        train.evaluate(model, arrays)


# --------------------------------------------------------------------------------- fit
def test_fit_learns_and_history():
    arrays = _blobs(n_train=512)
    proto = train.Protocol(epochs=3, batch_size=32, lr=0.05, milestones=(2,))
    res = train.fit(_lenet(regularizer="weight_decay"), arrays, proto, dataset="mnist",
                    progress=False, seed=1)
    h = res.history
    assert isinstance(h, pd.DataFrame) and list(h.columns) == list(train.HISTORY_COLUMNS)
    assert h["epoch"].tolist() == [1, 2, 3]
    assert h["lr"].tolist() == pytest.approx([0.05, 0.05, 0.01])
    assert (h["images_per_s"] > 0).all() and (h["seconds"] > 0).all()
    assert res.epochs_done == 3 and res.select == "final"
    # 100 test images, chance 0.1 (sd 0.03): a learnt task is far above it
    assert res.final_test_acc > 0.6
    assert res.final_test_acc == h["test_acc"].iloc[-1]
    assert res.best_test_acc == h["test_acc"].max() and res.best_epoch == int(h["test_acc"].idxmax()) + 1
    assert not res.model.training
    assert train.evaluate(res.model, arrays, dataset="mnist")["acc"] == res.final_test_acc


def test_smoke_protocol_steps(monkeypatch):
    calls = []
    dd = data.DeviceData(_blobs(n_train=1000), "mnist")
    model = _lenet()
    orig = model.forward
    monkeypatch.setattr(model, "forward", lambda x: (calls.append(x.shape[0]), orig(x))[1])
    res = train.fit(model, dd, "smoke", progress=False)
    assert calls[0] == 1   # one image first: can the network take this dataset's images?
    train_calls = calls[1:4]
    assert train_calls == [128, 128, 128] and res.epochs_done == 1
    assert sum(calls[4:]) == 100  # then the whole test set once, batch 100


def test_eval_every():
    res = train.fit(_lenet(), _blobs(), TINY, dataset="mnist", progress=False, eval_every=2)
    acc = res.history["test_acc"]
    assert math.isnan(acc[0]) and not math.isnan(acc[1]) and not math.isnan(acc[2])


@pytest.mark.parametrize("make, name", [(_lenet, "mnist"), (_vgg, "cifar10")])
def test_seeded_runs_are_bit_identical(make, name):
    arrays = _blobs(name, n_train=128, n_test=20)
    a = train.fit(make(0), arrays, TINY, dataset=name, seed=5, progress=False).model
    b = train.fit(make(0), arrays, TINY, dataset=name, seed=5, progress=False).model
    c = train.fit(make(0), arrays, TINY, dataset=name, seed=6, progress=False).model
    assert _params_equal(a, b)
    assert not _params_equal(a, c)


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("make, name, select", [
    (_lenet, "mnist", "final"), (_vgg, "cifar10", "best_test"),
])
def test_resume_after_crash_is_exact(tmp_path, monkeypatch, make, name, select):
    arrays = _blobs(name, n_train=128, n_test=20)
    kw = dict(dataset=name, seed=3, progress=False, select=select)
    full = train.fit(make(0), arrays, TINY, **kw)

    # crash during epoch 3 (after its training, at its evaluation): checkpoint holds epoch 2
    real_eval = train.evaluate
    count = {"n": 0}

    def crashing_eval(*a, **k):
        count["n"] += 1
        if count["n"] == 3:
            raise _Crash("simulated crash")
        return real_eval(*a, **k)

    monkeypatch.setattr(train, "evaluate", crashing_eval)
    with pytest.raises(_Crash):
        train.fit(make(0), arrays, TINY, checkpoint_dir=tmp_path, **kw)
    monkeypatch.setattr(train, "evaluate", real_eval)
    assert train.load_checkpoint(tmp_path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [train.CHECKPOINT_NAME]  # no temp files left

    # resume in a "new process": a differently initialised model, the global RNG disturbed
    torch.manual_seed(12345)
    torch.rand(100)
    resumed = train.fit(make(99), arrays, TINY, checkpoint_dir=tmp_path, **kw)
    assert _params_equal(full.model, resumed.model)
    assert resumed.epochs_done == 3
    cols = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(full.history[cols], resumed.history[cols])
    assert resumed.best_epoch == full.best_epoch

    # a finished run found in the checkpoint is returned as is, without training
    again = train.fit(make(7), arrays, TINY, checkpoint_dir=tmp_path, **kw)
    assert _params_equal(full.model, again.model) and again.epochs_done == 3


def test_checkpoint_of_other_run_is_refused(tmp_path):
    arrays = _blobs(n_train=64, n_test=20)
    train.fit(_lenet(), arrays, TINY, dataset="mnist", seed=1, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different run"):
        train.fit(_lenet(), arrays, TINY, dataset="mnist", seed=2, progress=False, checkpoint_dir=tmp_path)
    (tmp_path / train.CHECKPOINT_NAME).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        train.fit(_lenet(), arrays, TINY, dataset="mnist", seed=1, progress=False, checkpoint_dir=tmp_path)


def test_checkpoint_every(tmp_path):
    arrays = _blobs(n_train=64, n_test=20)
    proto = train.Protocol(epochs=5, batch_size=32, milestones=(), max_steps_per_epoch=1)
    saved = []
    orig = checkpoint.save
    checkpoint.save = lambda obj, path: (saved.append(obj["epoch"]), orig(obj, path))
    try:
        train.fit(_lenet(), arrays, proto, dataset="mnist", progress=False,
                  checkpoint_dir=tmp_path, checkpoint_every=2)
    finally:
        checkpoint.save = orig
    assert saved == [2, 4, 5]


def test_select_best_test_loads_best_weights(monkeypatch):
    """Scripted test accuracies 0.5, 0.9, 0.6: best_test returns the epoch-2 weights."""
    arrays = _blobs(n_train=64, n_test=20)
    snapshots, accs = [], iter([0.5, 0.9, 0.6])

    def scripted(model, *a, **k):
        snapshots.append({k2: v.clone() for k2, v in model.state_dict().items()})
        return {"loss": 1.0, "acc": next(accs)}

    monkeypatch.setattr(train, "evaluate", scripted)
    res = train.fit(_lenet(), arrays, TINY, dataset="mnist", progress=False, select="best_test")
    assert res.best_epoch == 2 and res.best_test_acc == 0.9 and res.final_test_acc == 0.6
    state = res.model.state_dict()
    assert all(torch.equal(state[k], snapshots[1][k]) for k in state)
    assert not all(torch.equal(state[k], snapshots[2][k]) for k in state)
    assert res.history["test_acc"].tolist() == [0.5, 0.9, 0.6]

    accs = iter([0.5, 0.9, 0.6])
    snapshots.clear()
    res = train.fit(_lenet(), arrays, TINY, dataset="mnist", progress=False, select="final")
    state = res.model.state_dict()
    assert all(torch.equal(state[k], snapshots[2][k]) for k in state)


def test_weight_decay_on_all_parameters():
    """One SGD step with zero gradient: every parameter (biases too) shrinks by lr*wd."""
    model = _lenet(regularizer="weight_decay")
    proto = train.Protocol(epochs=1, batch_size=8, max_steps_per_epoch=1, momentum=0.0,
                           nesterov=False, lr=0.1, weight_decay=0.5, milestones=())
    before = {k: v.clone() for k, v in model.named_parameters()}
    # a model whose loss does not depend on parameters: scale output by 0
    wrapped = nn.Sequential(model)
    wrapped.register_forward_hook(lambda m, i, o: o * 0.0)
    train.fit(wrapped, _blobs(n_train=8, n_test=10), proto, dataset="mnist", progress=False)
    for k, v in model.named_parameters():
        torch.testing.assert_close(v, before[k] * (1 - 0.1 * 0.5))


def test_fit_argument_errors():
    arrays = _blobs(n_train=32, n_test=10)
    with pytest.raises(ValueError, match="select.*'last'"):
        train.fit(_lenet(), arrays, TINY, dataset="mnist", select="last", progress=False)
    with pytest.raises(ValueError, match="name is required"):
        train.fit(_lenet(), arrays, TINY, progress=False)
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1"):
        train.fit(_lenet(), arrays, TINY, dataset="mnist", eval_every=0, progress=False)


def test_nonfinite_loss_raises():
    model = _lenet(regularizer="weight_decay")
    with torch.no_grad():
        model.linear.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="epoch 1"):
        train.fit(model, _blobs(n_train=32, n_test=10), TINY, dataset="mnist", progress=False)


def test_progress_output(capsys):
    train.fit(_lenet(), _blobs(n_train=64, n_test=10), "smoke", dataset="mnist", progress=True)
    err = capsys.readouterr()
    text = err.out + err.err
    assert "epoch 1/1" in text and "img/s" in text and "test_acc" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_fit_on_cuda_bf16_channels_last():
    res = train.fit(_vgg(), _blobs("cifar10", n_train=256, n_test=50), TINY, dataset="cifar10",
                    device="cuda", precision="bf16", progress=False)
    assert res.precision == "bf16"
    p = next(res.model.parameters())
    assert p.is_cuda and p.dtype == torch.float32
    convs = [m for m in res.model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert np.isfinite(res.history["train_loss"]).all()


def test_throughput_benchmark_runs(tmp_path, monkeypatch):
    """The benchmark script runs end to end (1 step; figures are not asserted, only sanity)."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("BRIDGEOUT_DATA", str(tmp_path))  # no data here: random images
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    table = mod.main(["--device", "cpu", "--models", "lenet5", "--regularizers", "weight_decay,bridgeout",
                      "--steps", "1", "--warmup", "0", "--repeats", "1", "--n-train", "256",
                      "--csv", str(tmp_path / "t.csv")])
    assert table["regularizer"].tolist() == ["weight_decay", "bridgeout"]
    assert (table["images_per_s"] > 0).all() and (table["ref_images_per_s"] > 0).all()
    assert table["slowdown_vs_weight_decay_pct"].iloc[0] == 0.0
    # projected paper run: 230 epochs of 60,000 MNIST images plus 10,000 test images each
    r = table.iloc[0]
    expect = 230 * (60000 / r.images_per_s + 10000 / r.eval_images_per_s) / 60
    assert r.paper_run_min == pytest.approx(expect)
    assert (tmp_path / "t.csv").is_file()


# ------------------------------------------------------------------ the CPU fast path
def _one_step_grads(model, x, y, dtype, channels_last, seed=5):
    """Loss and flattened parameter gradients of one training-mode forward/backward."""
    import torch.nn.functional as F
    model = model.to(dtype)
    net = train.prepare_model(model, torch.device("cpu"), channels_last=channels_last)
    model.train()
    torch.manual_seed(seed)  # the noise draws (Bridgeout, dropout) are layout-independent
    out = net(train._prepare_input(x.to(dtype), channels_last))
    loss = F.cross_entropy(out, y)
    loss.backward()
    return float(loss.detach()), torch.cat([p.grad.double().flatten() for p in model.parameters()])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_channels_last_step_matches_float64_reference(regularizer="weight_decay"):
    """The default channels_last layout is a layout change only. Against a float64 NCHW
    reference on one batch of VGG-16 (x1/4): the loss agrees to 1e-5 (measured ~4e-6) and the
    gradient to 5e-2 in relative norm. Measured on the 2-core CPU (torch 2.14.1): NCHW
    float32 ~6e-6, channels_last float32 ~1e-2: PyTorch's CPU channels-last BatchNorm
    accumulates in float32, which the chain of 13 BatchNorms amplifies. That is 100x below
    the gradient noise of a 32-image batch, but it is not bit-level agreement; pass
    ``channels_last=False`` to :func:`bridgeout.train.fit` for the exact-rounding path."""
    dd = data.DeviceData(_blobs("cifar10", n_train=64, n_test=10), "cifar10")
    x, y = next(dd.train_batches(32, torch.Generator().manual_seed(3)))
    res = {}
    for key, dtype, cl in (("ref", torch.float64, False), ("nchw", torch.float32, False),
                           ("cl", torch.float32, True)):
        torch.manual_seed(0)
        res[key] = _one_step_grads(build("vgg16", regularizer=regularizer, width=0.25), x, y, dtype, cl)
    (l_ref, g_ref), (l_nchw, g_nchw), (l_cl, g_cl) = res["ref"], res["nchw"], res["cl"]
    assert abs(l_cl - l_ref) <= 1e-5 * l_ref and abs(l_nchw - l_ref) <= 1e-5 * l_ref
    assert _rel(g_nchw, g_ref) < 1e-4
    assert _rel(g_cl, g_ref) < 5e-2
    # a wrong layout (e.g. inputs permuted) is far outside these tolerances
    torch.manual_seed(0)
    _, g_bad = _one_step_grads(build("vgg16", regularizer=regularizer, width=0.25), x.transpose(2, 3),
                               y, torch.float32, True)
    assert _rel(g_bad, g_ref) > 0.2


@pytest.mark.parametrize("regularizer, target_fraction", [("bridgeout", 0.75), ("dropout", 1.0)])
def test_channels_last_noisy_step_uses_the_same_noise(regularizer, target_fraction):
    """Bridgeout's and Dropout's noise is drawn in the tensor's logical shape, so both layouts
    perturb identically: one step's loss agrees to 1e-5 and the gradients to 5e-2 (as
    above; a float64 reference would draw other noise), with another noise seed far outside.
    Dropout is checked untargeted: its targeting ranks activation maps by norm, and after a
    ReLU many maps are (near) zero, so 1e-5 rounding differences between the layouts can flip
    near-ties in the ranking (measured: 42 % gradient difference in one step with targeting)."""
    dd = data.DeviceData(_blobs("cifar10", n_train=64, n_test=10), "cifar10")
    x, y = next(dd.train_batches(32, torch.Generator().manual_seed(3)))
    out = {}
    for cl, seed in ((True, 5), (False, 5), (False, 6)):
        torch.manual_seed(0)
        model = build("vgg16", regularizer=regularizer, width=0.25, target_fraction=target_fraction)
        out[cl, seed] = _one_step_grads(model, x, y, torch.float32, cl, seed=seed)
    (l_cl, g_cl), (l_nchw, g_nchw), (_, g_other) = out[True, 5], out[False, 5], out[False, 6]
    assert abs(l_cl - l_nchw) <= 1e-5 * l_nchw
    assert _rel(g_cl, g_nchw) < 5e-2
    assert _rel(g_other, g_nchw) > 0.2


def test_fit_layout_follows_channels_last():
    arrays = _blobs("cifar10", n_train=64, n_test=20)
    for cl in (True, False):
        res = train.fit(_vgg(0, "weight_decay"), arrays, train.Protocol(epochs=1, batch_size=32, milestones=()),
                        dataset="cifar10", device="cpu", channels_last=cl, progress=False)
        conv = next(m for m in res.model.modules() if isinstance(m, nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == cl
        assert train.channels_last_model(res.model) == cl


def test_checkpoint_of_another_owner_is_refused(tmp_path):
    arrays = _blobs("mnist", n_train=64, n_test=20)
    proto = train.Protocol(epochs=1, batch_size=32, milestones=())
    owner = {"run_id": "a", "regularizer": "bridgeout", "q": 1.5}
    train.fit(_lenet(0), arrays, proto, dataset="mnist", device="cpu", progress=False,
              checkpoint_dir=tmp_path, checkpoint_owner=owner)
    before = (tmp_path / train.CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match=r"checkpoint.pt was written by a different run"):
        train.fit(_lenet(0), arrays, proto, dataset="mnist", device="cpu", progress=False,
                  checkpoint_dir=tmp_path, checkpoint_owner={**owner, "regularizer": "dropout"})
    assert (tmp_path / train.CHECKPOINT_NAME).read_bytes() == before
    # the same owner resumes (here: the run is already complete)
    res = train.fit(_lenet(0), arrays, proto, dataset="mnist", device="cpu", progress=False,
                    checkpoint_dir=tmp_path, checkpoint_owner=dict(owner))
    assert res.epochs_done == 1


@pytest.mark.parametrize("other, named", [
    (lambda: _lenet(0, "weight_decay"), "model.structure"),                       # another regularizer
    (lambda: build("lenet5", regularizer="bridgeout", q=2.0), "model.structure"),  # another q
    (lambda: build("vgg16", regularizer="bridgeout", width=1 / 8), "model.class"),  # another network
])
def test_checkpoint_of_another_network_is_refused_without_an_owner(tmp_path, other, named):
    """Without ``checkpoint_owner`` (a direct API call), the network itself is the identity: a
    LeNet-5 Bridgeout checkpoint is not resumed into a weight-decay LeNet-5, another q, or a VGG."""
    arrays = _blobs("mnist", n_train=64, n_test=20)
    proto = train.Protocol(epochs=1, batch_size=32, milestones=())
    train.fit(_lenet(0), arrays, proto, dataset="mnist", device="cpu", progress=False, checkpoint_dir=tmp_path)
    before = (tmp_path / train.CHECKPOINT_NAME).read_bytes()
    model = other()
    if named == "model.class":
        arrays = _blobs("cifar10", n_train=64, n_test=20)
    with pytest.raises(ValueError, match=rf"different run; .*{named}: checkpoint .*this run"):
        train.fit(model, arrays, proto, dataset="mnist" if named != "model.class" else "cifar10", device="cpu",
                  progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / train.CHECKPOINT_NAME).read_bytes() == before


def test_model_identity_names_what_was_trained():
    a, b = train.model_identity(_lenet(0)), train.model_identity(_lenet(1))
    assert a == b and a["class"] == "LeNet5" and a["penalty"] is None   # the seed is not the network
    assert a["parameters"] == sum(p.numel() for p in _lenet(0).parameters())
    slim = train.model_identity(build("vgg16", regularizer="slimming", width=1 / 16))
    assert slim["penalty"].startswith("slimming(lambda=")


# --------------------------------------------------------------------------- precision
def test_bf16_fit_learns_keeps_fp32_weights_and_is_reproducible():
    arrays = _blobs(n_train=512)
    proto = train.Protocol(epochs=3, batch_size=32, lr=0.05, milestones=(2,))
    runs = [train.fit(_lenet(regularizer=r), arrays, proto, dataset="mnist", progress=False, seed=1,
                      precision="bf16") for r in ("weight_decay", "bridgeout", "bridgeout")]
    wd, bo, bo2 = runs
    assert wd.precision == bo.precision == "bf16"
    assert all(p.dtype == torch.float32 for r in runs for p in r.model.state_dict().values() if p.is_floating_point())
    assert wd.final_test_acc > 0.6 and bo.final_test_acc > 0.6      # chance is 0.1 on these 100 images
    # bit-equal on the same machine, like fp32
    assert all(torch.equal(a, b) for a, b in zip(bo.model.state_dict().values(), bo2.model.state_dict().values()))
    fp32 = train.fit(_lenet(regularizer="weight_decay"), arrays, proto, dataset="mnist", progress=False, seed=1)
    assert fp32.precision == "fp32"
    assert not all(torch.equal(a, b) for a, b in zip(fp32.model.state_dict().values(),
                                                     wd.model.state_dict().values()))   # bf16 did compute in bf16


def test_bf16_batchnorm_statistics_are_fp32():
    """Under CPU autocast a BatchNorm receives bf16 activations; its running statistics are
    those of fp32 arithmetic on the same values (PyTorch's mixed-type kernel)."""
    torch.manual_seed(0)
    x = (torch.randn(64, 8, 16, 16) * 3 + 1).to(torch.bfloat16)
    a, b = nn.BatchNorm2d(8), nn.BatchNorm2d(8)
    with train.autocast(torch.device("cpu"), "bf16"):
        y = a(x)
    b(x.float())
    assert a.running_mean.dtype == torch.float32 and y.dtype == torch.bfloat16
    torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-6, atol=1e-7)


def test_precision_choices_and_auto(monkeypatch, capsys):
    with pytest.raises(ValueError, match="precision"):
        train.resolve_precision("fp16")
    assert train.resolve_precision("fp32") == "fp32" and train.resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(train, "native_bf16", lambda device="cpu": False)
    assert train.resolve_precision("auto") == "fp32"
    assert "no native bf16" in capsys.readouterr().out
    monkeypatch.setattr(train, "native_bf16", lambda device="cpu": True)
    assert train.resolve_precision("auto") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        train.fit(_lenet(), _blobs(n_train=64, n_test=20), TINY, dataset="mnist", progress=False, precision="half")


def test_checkpoint_of_other_precision_is_refused(tmp_path):
    arrays = _blobs(n_train=64, n_test=20)
    train.fit(_lenet(), arrays, TINY, dataset="mnist", seed=1, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different run"):
        train.fit(_lenet(), arrays, TINY, dataset="mnist", seed=1, progress=False, checkpoint_dir=tmp_path,
                  precision="bf16")


def test_best_test_keeps_the_final_weights_too(monkeypatch):
    arrays = _blobs(n_train=128, n_test=40)
    proto = train.Protocol(epochs=2, batch_size=32, lr=0.05, milestones=())
    res = train.fit(_lenet(), arrays, proto, dataset="mnist", progress=False, select="best_test")
    assert res.final_state is not None and set(res.final_state) == set(res.model.state_dict())
    plain = train.fit(_lenet(), arrays, proto, dataset="mnist", progress=False)
    assert plain.final_state is None
    assert all(torch.equal(a, b) for a, b in zip(res.final_state.values(), plain.model.state_dict().values()))


def test_fit_names_a_network_built_for_another_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"VGG16 cannot take mnist images of shape \(1, 1, 28, 28\).*another dataset"):
        train.fit(_vgg(0), _blobs("mnist", n_train=64, n_test=20), TINY, dataset="mnist", device="cpu",
                  progress=False, checkpoint_dir=tmp_path)
    assert not list(tmp_path.iterdir())   # nothing written
