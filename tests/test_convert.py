"""bridgeout.nn.convert on networks nobody here wrote: torchvision's classification models
with random weights and small inputs (CPU)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from bridgeout import prune
from bridgeout.nn import BridgeoutConv2d, BridgeoutLinear, convert, plain

MODELS = ["resnet18", "mobilenet_v2", "vgg11_bn", "efficientnet_b0", "convnext_tiny", "densenet121"]
#: The four large torchvision networks take 5-45 s each here: full suite only (``slow``).
_LARGE = {"vgg11_bn", "efficientnet_b0", "convnext_tiny", "densenet121"}
CASES = [pytest.param(n, marks=pytest.mark.slow) if n in _LARGE else n for n in MODELS]
# dense convs larger than 1x1 in each (the default placement)
EXPECTED_NOISY = {"resnet18": 17, "mobilenet_v2": 1, "vgg11_bn": 8, "efficientnet_b0": 1,
                  "convnext_tiny": 0, "densenet121": 59}


def _model(name):
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(num_classes=10).eval()


def _x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _has_dropout(m):
    return any(isinstance(x, (nn.Dropout, torchvision.ops.StochasticDepth)) for x in m.modules())


@pytest.mark.parametrize("name", CASES)
def test_convert_round_trip_and_training(name):
    m = _model(name)
    x = _x()
    include = None if EXPECTED_NOISY[name] else nn.Conv2d       # ConvNeXt: 7x7 depthwise only
    exclude = None if EXPECTED_NOISY[name] else (lambda n, mod: mod.groups > 1)
    c = convert(m, include=include, exclude=exclude)
    noisy = [mod for mod in c.modules() if isinstance(mod, BridgeoutConv2d)]
    assert len(noisy) == (EXPECTED_NOISY[name] or
                          sum(1 for mod in m.modules() if type(mod) is nn.Conv2d and mod.groups == 1))
    assert not any(isinstance(mod, BridgeoutLinear) for mod in c.modules())     # the head stays plain
    sa, sb = m.state_dict(), c.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        y = m(x)
        assert torch.equal(c.eval()(x), y)                          # eval: exactly the model
        assert torch.equal(plain(c).eval()(x), y)                   # and back again
    # training mode: noise on, gradients flow to every converted weight
    c.train()
    torch.manual_seed(2)
    loss = F.cross_entropy(c(x), torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(loss) and all(mod.weight.grad is not None for mod in noisy)
    with torch.no_grad():
        torch.manual_seed(3)
        y_noisy = c(x)
        torch.manual_seed(3)
        y_zero = convert(m, p=0.0, include=include, exclude=exclude).train()(x)
        torch.manual_seed(3)
        y_ref = m.train()(x)
    assert torch.equal(y_zero, y_ref)                               # p = 0: the model itself, in train mode
    if not _has_dropout(m):
        assert not torch.allclose(y_noisy, y_ref)                   # the noise changes the output


@pytest.mark.parametrize("name", CASES)
def test_converted_models_prune(name):
    m = _model(name)
    c = convert(m, include=None if EXPECTED_NOISY[name] else nn.Conv2d,
                exclude=None if EXPECTED_NOISY[name] else (lambda n, mod: mod.groups > 1))
    x = _x()
    base = prune.count_flops(plain(c).eval(), x[:1])
    masked = prune.prune(c, 0.5, mode="mask").eval()
    assert masked(x).shape == (2, 10)
    assert any(len(i) for i in prune.zeroed_filters(masked).values())
    removed = prune.prune(c, 0.5, mode="remove").eval()
    assert removed(x).shape == (2, 10)
    assert prune.count_flops(removed, x[:1]) < 0.6 * base
    assert prune.count_parameters(removed) < prune.count_parameters(c)
    if name == "convnext_tiny":
        # the residual stream's channels are removed everywhere they appear: the 7x7 depthwise
        # convs, LayerNorms, the block's second pointwise Linear (outputs) and first (inputs) and
        # layer_scale; the hidden 4x expansion and the classifier's outputs are kept.  (The
        # masked model is not the removed one: a zeroed filter keeps its bias, LayerNorm's
        # statistics include the zeroed channels, and mask mode does not zero the Linear outputs
        # added into them.)
        block = removed.features[1][0]
        width = block.block[0].out_channels
        assert width == 48 and block.layer_scale.shape == (width, 1, 1)
        assert block.block[3].in_features == block.block[5].out_features == width
        assert block.block[3].out_features == 4 * 96
        assert removed.classifier[2].out_features == 10


def test_convert_selection_and_refusals():
    m = _model("mobilenet_v2")
    with pytest.raises(ValueError, match=r"conv 'features.1.conv.0.0' has 1 input kernel\(s\) per filter"):
        convert(m, include=nn.Conv2d)                 # depthwise at target_fraction 0.75
    c = convert(m, include=nn.Conv2d, target_fraction=1.0)
    assert all(isinstance(mod, BridgeoutConv2d) for mod in c.modules() if isinstance(mod, nn.Conv2d))
    c = convert(m, include=[nn.Linear, "features.0.*"])
    assert isinstance(c.classifier[1], BridgeoutLinear) and isinstance(c.features[0][0], BridgeoutConv2d)
    assert sum(isinstance(mod, BridgeoutConv2d) for mod in c.modules()) == 1
    assert convert(c, include=nn.Conv2d, exclude=lambda n, mod: mod.groups > 1) is not c   # idempotent on noisy layers
    with pytest.raises(ValueError, match="include must be a module type"):
        convert(m, include=3)
    with pytest.raises(ValueError, match="selected no layer"):
        convert(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="p must be"):
        convert(m, p=1.5)
    assert isinstance(m.features[0][0], nn.Conv2d) and not isinstance(m.features[0][0], BridgeoutConv2d)
