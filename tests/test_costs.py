"""Tests of bridgeout.prune.costs: the ONNX export computes the PyTorch network's function, and the
ONNX Runtime / PyTorch timers check their arguments and time what they are given."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bridgeout.prune as P
from bridgeout.prune import costs
from bridgeout.models import build

pytest.importorskip("onnxruntime", reason="the `deploy` extra (onnx, onnxruntime) is not installed")


@pytest.mark.parametrize("name,width,fraction", [("vgg16", 0.125, 0.0), ("vgg16", 0.125, 0.5),
                                                 ("resnet", 0.25, 0.3)])
def test_onnx_export_computes_the_same_function(name, width, fraction):
    torch.manual_seed(0)
    model = build(name, width=width, regularizer="bridgeout").eval()
    pruned = P.prune(model, fraction, mode="remove") if fraction else model
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = pruned.eval()(x).numpy()
    sess = costs.onnx_session(costs.export_onnx(pruned, (3, 32, 32), 4))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_removed_network_exports_fewer_channels():
    torch.manual_seed(0)
    model = build("vgg16", width=0.125).eval()
    full = len(costs.export_onnx(model, (3, 32, 32), 1))
    half = len(costs.export_onnx(P.prune(model, 0.5, mode="remove"), (3, 32, 32), 1))
    # the weights dominate the file: about a quarter of the conv weights remain
    assert half < 0.45 * full


def test_onnx_latency_grows_with_the_batch():
    torch.manual_seed(0)
    model = build("vgg16", width=0.125).eval()
    b1 = costs.measure_onnx_latency(model, (3, 32, 32), 1, warmup=1, repeats=3)
    b64 = costs.measure_onnx_latency(model, (3, 32, 32), 64, warmup=1, repeats=3)
    assert 0 < b1 < b64 and b64 > 5 * b1


@pytest.mark.parametrize("kwargs,match", [({"threads": 0}, "threads must be an integer >= 1, got 0"),
                                          ({"repeats": 0}, "repeats must be an integer >= 1"),
                                          ({"warmup": -1}, "warmup must be an integer >= 0"),
                                          ({"threads": 1.5}, "threads must be an integer")])
def test_onnx_latency_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        costs.measure_onnx_latency(build("lenet5"), (1, 28, 28), 1, **kwargs)
