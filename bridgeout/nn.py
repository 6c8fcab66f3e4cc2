"""Modules over :mod:`bridgeout.functional`: drop-in layers and activation regularizers.

Each module is a thin shell around a pure function (the pattern of ``timm.layers.drop``):
arguments are validated once at construction, the forward applies the noise only while
``self.training`` and is the plain layer in eval mode. The weight layers subclass
``nn.Conv2d`` / ``nn.Linear`` and keep their parameters and state_dict keys, so a trained
state_dict loads into the plain layer, and :func:`plain` turns a model into its
noise-free twin (for pruning and export).

Every module has a ``generator`` attribute (default ``None``: the global RNG); set it to a
``torch.Generator`` on the module's device for reproducible noise.

:func:`convert` puts the noise into any network and :func:`plain` takes it out again::

    import torchvision
    from bridgeout.nn import convert, plain

    net = convert(torchvision.models.resnet18(num_classes=10), p=0.3, q=1.5)
    # ... train net: its 3x3 convs are BridgeoutConv2d, 1x1 convs and the head stay plain
    deployable = plain(net)          # nn.Conv2d again, same weights and state_dict keys

The layers themselves live in :mod:`bridgeout.noiselayers` and are re-exported here.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from . import functional as BF
from ._validate import check_fraction, check_positive, check_probability
from .noiselayers import (  # noqa: F401 - re-exported
    BridgeoutConv2d,
    BridgeoutLinear,
    DropConnectConv2d,
    DropConnectLinear,
    PerSampleBridgeoutLinear,
    Sparseout,
    TargetedDropout,
    _BridgeoutMixin,
    _check_sizes,
)

__all__ = [
    "BridgeoutConv2d",
    "BridgeoutLinear",
    "PerSampleBridgeoutLinear",
    "DropConnectConv2d",
    "DropConnectLinear",
    "Sparseout",
    "TargetedDropout",
    "plain",
    "convert",
]


_ACTIVATION_REGULARIZERS = (Sparseout, TargetedDropout, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                            nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _plain_layer(module: nn.Module) -> nn.Module | None:
    """Plain twin of a noisy weight layer / Identity for an activation regularizer / None."""
    if isinstance(module, BridgeoutConv2d):
        new = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                        module.padding, module.dilation, module.groups, module.bias is not None,
                        module.padding_mode, device="meta")
    elif isinstance(module, BridgeoutLinear):
        new = nn.Linear(module.in_features, module.out_features, module.bias is not None, device="meta")
    elif isinstance(module, _ACTIVATION_REGULARIZERS):
        new = nn.Identity()
        new.train(module.training)
        return new
    else:
        return None
    # Built on the meta device (no allocation, no RNG use); take over the (copied) parameters.
    new.weight = module.weight
    if module.bias is not None:
        new.bias = module.bias
    new.train(module.training)
    return new


def plain(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without any training-time noise.

    Every :class:`BridgeoutConv2d` / :class:`DropConnectConv2d` becomes an ``nn.Conv2d`` and
    every Bridgeout/DropConnect linear an ``nn.Linear`` with the same (copied) weights;
    activation regularizers (:class:`Sparseout`, :class:`TargetedDropout`, ``nn.Dropout*``,
    ``nn.AlphaDropout``) become ``nn.Identity``. In eval mode the copy computes the same
    function as ``model``; each module keeps its train/eval flag. ``model`` is not changed,
    the global RNG is not used, and ``generator`` attributes are not copied.

    Args:
        model: any network (a noisy layer on its own is replaced too).

    Returns:
        the noise-free copy.
    """
    # Do not deep-copy torch.Generator objects held by the noisy layers (they are dropped).
    memo = {id(m.generator): None for m in model.modules()
            if isinstance(getattr(m, "generator", None), torch.Generator)}
    out = copy.deepcopy(model, memo)
    root = _plain_layer(out)
    if root is not None:
        return root
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            new = _plain_layer(child)
            if new is not None:
                setattr(module, child_name, new)
    return out


# ----------------------------------------------------------------------------- convert
def _paper_placement(name: str, module: nn.Module) -> bool:
    """The paper's placement: dense (ungrouped) convs with a kernel larger than 1x1."""
    return (type(module) is nn.Conv2d and module.groups == 1
            and any(k > 1 for k in module.kernel_size))


def _types_in(spec) -> list[type]:
    """The module types named in an include/exclude spec (nested lists and tuples walked)."""
    if isinstance(spec, type):
        return [spec]
    if isinstance(spec, (list, tuple)):
        return [t for s in spec for t in _types_in(s)]
    return []


def _selector(spec, what: str):
    """A predicate ``(name, module) -> bool`` from a type, a tuple of types, a glob pattern
    on the qualified name, a callable, or a list of these (any may match)."""
    import fnmatch
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)) and not all(isinstance(s, type) for s in spec):
        preds = [_selector(s, what) for s in spec]
        return lambda n, m: any(p(n, m) for p in preds)
    if isinstance(spec, type) or (isinstance(spec, tuple) and spec):
        return lambda n, m: isinstance(m, spec)
    if isinstance(spec, str):
        return lambda n, m: fnmatch.fnmatchcase(n, spec)
    if callable(spec):
        return lambda n, m: bool(spec(n, m))
    raise ValueError(f"{what} must be a module type, a glob pattern on module names, a callable "
                     f"(name, module) -> bool, or a list of these; got {spec!r}")


def _noisy_layer(name: str, module: nn.Module, p, q, target_fraction, signed) -> nn.Module:
    if type(module) is nn.Conv2d:
        per_filter = module.in_channels // module.groups
        if BF.num_targeted(per_filter, target_fraction) == 0:
            raise ValueError(
                f"conv {name!r} has {per_filter} input kernel(s) per filter (groups={module.groups}), so "
                f"targeting {target_fraction} of them perturbs nothing; exclude it or use target_fraction=1.0")
        new = BridgeoutConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                              module.padding, module.dilation, module.groups, module.bias is not None,
                              module.padding_mode, device="meta", p=p, q=q,
                              target_fraction=target_fraction, signed=signed)
    elif type(module) is nn.Linear:
        new = BridgeoutLinear(module.in_features, module.out_features, module.bias is not None,
                              device="meta", p=p, q=q, target_fraction=target_fraction, signed=signed)
    else:
        raise ValueError(f"module {name!r} ({type(module).__name__}) cannot be converted: only plain "
                         f"nn.Conv2d and nn.Linear layers can carry Batch Bridgeout")
    new.weight = module.weight
    if module.bias is not None:
        new.bias = module.bias
    new.train(module.training)
    return new


def convert(model: nn.Module, p: float = 0.3, q: float = 1.5, target_fraction: float = 0.75,
            signed: bool = False, *, include=None, exclude=None) -> nn.Module:
    """A deep copy of ``model`` with Batch Bridgeout on its convolutions (the inverse of
    :func:`plain`).

    Selected ``nn.Conv2d`` layers become :class:`BridgeoutConv2d` (selected ``nn.Linear``
    layers :class:`BridgeoutLinear`) with the same (copied) parameters, so the state_dict keys
    and values are unchanged, eval mode computes exactly what ``model`` computes, and
    ``plain(convert(model))`` is ``model`` again. ``model`` itself is not changed; layers that
    already carry Bridgeout are left as they are (a converted model converts to an unchanged
    copy). A TorchScript module or anything but an ``nn.Module`` is refused.

    Which layers: by default the paper's placement, every dense conv with a kernel larger
    than 1x1 (3x3 convs noisy; 1x1 convs such as shortcuts and pointwise projections, grouped
    and depthwise convs, and every Linear, the head included, stay plain). ``include``
    replaces that default and ``exclude`` removes layers from the selection; each is a module
    type (``nn.Linear``), a glob pattern on the qualified name (``"layer4.*"``), a callable
    ``(name, module) -> bool``, or a list of these. Only plain ``nn.Conv2d`` / ``nn.Linear``
    can be selected (anything else is refused naming the layer), and a conv with fewer input
    kernels per filter than targeting needs (a depthwise conv at ``target_fraction < 1``) is
    refused rather than given no noise.

    Args:
        model: any ``nn.Module``.
        p: the noise's drop probability (:func:`bridgeout.functional.bridgeout`).
        q: the bridge exponent (:func:`bridgeout.functional.bridgeout`).
        target_fraction: the targeted fraction (:func:`bridgeout.functional.bridgeout`).
        signed: the noise's sign convention, a bool (:func:`bridgeout.functional.bridgeout`).
        include: layer selection, see above.
        exclude: layer selection, see above.

    Returns:
        the converted copy (its ``generator`` attributes are ``None``: the global RNG).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: a TorchScript module; ``p``, ``q``, ``target_fraction`` or ``signed`` out of
            range; an ``include``/``exclude`` of another kind; an ``include`` type other than
            ``nn.Conv2d``/``nn.Linear``; a selected layer that cannot carry Bridgeout or whose
            targeting would perturb nothing; or no layer selected.

    Example::

        net = convert(torchvision.models.resnet18(num_classes=10))          # 3x3 convs
        net = convert(model, include=[nn.Conv2d, nn.Linear], exclude="fc")  # all but the head
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(f"convert needs an eager nn.Module, got a TorchScript {type(model).__name__}: its "
                         "layers cannot be replaced; convert the model before scripting it")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    p = check_probability("p", p)
    q = check_positive("q", q)
    target_fraction = check_fraction("target_fraction", target_fraction)
    if not isinstance(signed, bool):
        raise ValueError(f"signed must be True or False, got {signed!r}")
    inc = _selector(include, "include") or _paper_placement
    exc = _selector(exclude, "exclude")
    out = copy.deepcopy(model)
    wrong = [t.__name__ for t in _types_in(include) if not issubclass(t, (nn.Conv2d, nn.Linear))]
    if wrong:   # a glob or a callable may match other modules too; a type says what is meant
        raise ValueError(f"convert can put Bridgeout only on nn.Conv2d and nn.Linear layers; include names "
                         f"{', '.join(wrong)}")
    noisy = (BridgeoutConv2d, BridgeoutLinear)
    chosen = [(n, m) for n, m in out.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, noisy)
              and inc(n, m) and not (exc and exc(n, m))]
    if not chosen and any(isinstance(m, noisy) for m in out.modules()):
        return out   # every selected layer already carries Bridgeout: left as it is (documented above)
    if not chosen:
        raise ValueError("convert selected no layer: the model has no nn.Conv2d with a kernel larger than "
                         "1x1 (the default placement), or include/exclude left none")
    if any(n == "" for n, _ in chosen):
        return _noisy_layer("<root>", out, p, q, target_fraction, signed)
    modules = dict(out.named_modules())
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name], child, _noisy_layer(name, module, p, q, target_fraction, signed))
    return out

