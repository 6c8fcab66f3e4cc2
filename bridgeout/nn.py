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
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from . import functional as BF
from ._validate import check_fraction, check_positive, check_probability

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


def _check_sizes(layer: str, **sizes) -> None:
    """Channel / feature counts of a noise layer: integers >= 1 (checked before torch allocates)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{layer}: {name} must be an integer >= 1, got {value!r}")


class _BridgeoutMixin:
    """Shared parameter handling of the Bridgeout weight layers."""

    def _set_noise(self, p, q, target_fraction, signed) -> None:
        if not isinstance(signed, (bool, int)) or signed not in (0, 1):
            raise ValueError(f"{type(self).__name__}: signed must be a bool (True / False), got {signed!r}")
        self.p = check_probability("p", p)
        self.q = check_positive("q", q)
        self.target_fraction = check_fraction("target_fraction", target_fraction)
        self.signed = bool(signed)
        self.generator: torch.Generator | None = None

    def _noisy_weight(self) -> Tensor:
        if self.training and self.p > 0.0:
            return BF._bridgeout(self.weight, self.p, self.q, self.target_fraction, self.signed,
                                 self.generator)
        return self.weight

    def _noise_repr(self) -> str:
        return f"p={self.p}, q={self.q}, target_fraction={self.target_fraction}, signed={self.signed}"


class BridgeoutConv2d(_BridgeoutMixin, nn.Conv2d):
    r"""``nn.Conv2d`` whose weight gets Batch Bridgeout noise once per forward in training mode.

    ``W~ = W + s(W)|W|^(q/2) eps T`` (:func:`bridgeout.functional.bridgeout`): one draw per
    forward shared by the whole batch; the lowest-norm ``target_fraction`` of the kernels of
    every output filter are perturbed. Eval mode: exactly ``nn.Conv2d``. Unlike the functional
    form, the layer does not check its weights for NaN or infinity on every forward (that
    costs a device synchronisation per layer and step): a diverged weight shows up in the
    loss, which :func:`bridgeout.train.fit` refuses by epoch.

    Args:
        in_channels: as in ``nn.Conv2d`` (an integer >= 1).
        out_channels: as in ``nn.Conv2d`` (an integer >= 1).
        kernel_size: as in ``nn.Conv2d``.
        stride: as in ``nn.Conv2d``.
        padding: as in ``nn.Conv2d``.
        dilation: as in ``nn.Conv2d``.
        groups: as in ``nn.Conv2d``.
        bias: as in ``nn.Conv2d``.
        padding_mode: as in ``nn.Conv2d``.
        device: as in ``nn.Conv2d``.
        dtype: as in ``nn.Conv2d``.
        p: keyword-only; drop probability, [0, 1).
        q: keyword-only; bridge exponent, > 0.
        target_fraction: keyword-only; fraction of kernels per output filter perturbed, (0, 1].
        signed: keyword-only; multiply the noise by ``sign(W)`` (a bool).

    Raises:
        ValueError: a channel count that is not an integer >= 1, or ``p``, ``q``,
            ``target_fraction`` or ``signed`` out of range.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, p: float = 0.3, q: float = 1.5,
                 target_fraction: float = 0.75, signed: bool = False) -> None:
        _check_sizes(type(self).__name__, in_channels=in_channels, out_channels=out_channels)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self._set_noise(p, q, target_fraction, signed)

    def forward(self, input: Tensor) -> Tensor:
        """The convolution with the noisy weight (training mode, ``p > 0``) or the plain one.

        Args:
            input: the input batch.

        Returns:
            the convolution's output.
        """
        return self._conv_forward(input, self._noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        """``nn.Conv2d``'s description followed by ``p``, ``q``, ``target_fraction`` and ``signed``.

        Returns:
            the text.
        """
        return f"{super().extra_repr()}, {self._noise_repr()}"


class BridgeoutLinear(_BridgeoutMixin, nn.Linear):
    r"""``nn.Linear`` with Batch Bridgeout noise on its weight (see :class:`BridgeoutConv2d`).

    The (out, in) weight is ranked entry by entry within each row by ``|w|``.

    Args:
        in_features: as in ``nn.Linear`` (an integer >= 1).
        out_features: as in ``nn.Linear`` (an integer >= 1).
        bias: as in ``nn.Linear``.
        device: as in ``nn.Linear``.
        dtype: as in ``nn.Linear``.
        p: keyword-only; drop probability, [0, 1).
        q: keyword-only; bridge exponent, > 0.
        target_fraction: keyword-only; fraction of the entries of each row perturbed, (0, 1].
        signed: keyword-only; multiply the noise by ``sign(W)`` (a bool).

    Raises:
        ValueError: a feature count that is not an integer >= 1, or ``p``, ``q``,
            ``target_fraction`` or ``signed`` out of range.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 *, p: float = 0.3, q: float = 1.5, target_fraction: float = 0.75,
                 signed: bool = False) -> None:
        _check_sizes(type(self).__name__, in_features=in_features, out_features=out_features)
        super().__init__(in_features, out_features, bias, device, dtype)
        self._set_noise(p, q, target_fraction, signed)

    def forward(self, input: Tensor) -> Tensor:
        """The linear map with the noisy weight (training mode, ``p > 0``) or the plain one.

        Args:
            input: the input (..., in_features).

        Returns:
            the output (..., out_features).
        """
        return nn.functional.linear(input, self._noisy_weight(), self.bias)

    def extra_repr(self) -> str:
        """``nn.Linear``'s description followed by the noise settings.

        Returns:
            the text.
        """
        return f"{super().extra_repr()}, {self._noise_repr()}"


class PerSampleBridgeoutLinear(BridgeoutLinear):
    r"""``nn.Linear`` with per-sample Bridgeout: every example (row of the flattened input)
    gets its own weight perturbation (:func:`bridgeout.functional.bridgeout_linear_per_sample`).

    Same expected penalty as :class:`BridgeoutLinear`; used by the theory chapter to compare
    batch-shared and per-sample noise. Memory O(batch * out * in) in training mode.

    Args:
        in_features: as in :class:`BridgeoutLinear`.
        out_features: as in :class:`BridgeoutLinear`.
        bias: as in :class:`BridgeoutLinear`.
        device: as in :class:`BridgeoutLinear`.
        dtype: as in :class:`BridgeoutLinear`.
        p: as in :class:`BridgeoutLinear`.
        q: as in :class:`BridgeoutLinear`.
        target_fraction: as in :class:`BridgeoutLinear`.
        signed: as in :class:`BridgeoutLinear`.
    """

    def forward(self, input: Tensor) -> Tensor:
        """The linear map with one weight perturbation per row of the flattened input (training
        mode, ``p > 0``), else the plain one.

        Args:
            input: the input (..., in_features); every leading index is one example.

        Returns:
            the output (..., out_features).
        """
        if not (self.training and self.p > 0.0):
            return nn.functional.linear(input, self.weight, self.bias)
        lead = input.shape[:-1]
        y = BF._bridgeout_linear_per_sample(input.reshape(-1, input.shape[-1]), self.weight, self.bias,
                                            self.p, self.q, self.target_fraction, self.signed,
                                            self.generator)
        return y.reshape(*lead, y.shape[-1])


class DropConnectConv2d(BridgeoutConv2d):
    r"""``nn.Conv2d`` with DropConnect on its weight: ``W~ = W m/(1-p)``, one mask per forward.

    Equal to ``BridgeoutConv2d(..., p=p, q=2, target_fraction=1.0, signed=True)`` (same draw).

    Args:
        in_channels: as in ``nn.Conv2d`` (an integer >= 1).
        out_channels: as in ``nn.Conv2d`` (an integer >= 1).
        kernel_size: as in ``nn.Conv2d``.
        stride: as in ``nn.Conv2d``.
        padding: as in ``nn.Conv2d``.
        dilation: as in ``nn.Conv2d``.
        groups: as in ``nn.Conv2d``.
        bias: as in ``nn.Conv2d``.
        padding_mode: as in ``nn.Conv2d``.
        device: as in ``nn.Conv2d``.
        dtype: as in ``nn.Conv2d``.
        p: keyword-only; drop probability, [0, 1).

    Raises:
        ValueError: a channel count that is not an integer >= 1, or ``p`` outside [0, 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, p: float = 0.3) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype, p=p, q=2.0, target_fraction=1.0, signed=True)

    def _noisy_weight(self) -> Tensor:
        if self.training and self.p > 0.0:
            return BF._dropconnect(self.weight, self.p, self.generator)
        return self.weight

    def _noise_repr(self) -> str:
        return f"p={self.p}"


class DropConnectLinear(BridgeoutLinear):
    r"""``nn.Linear`` with DropConnect on its weight (see :class:`DropConnectConv2d`).

    Args:
        in_features: as in ``nn.Linear`` (an integer >= 1).
        out_features: as in ``nn.Linear`` (an integer >= 1).
        bias: as in ``nn.Linear``.
        device: as in ``nn.Linear``.
        dtype: as in ``nn.Linear``.
        p: keyword-only; drop probability, [0, 1).

    Raises:
        ValueError: a feature count that is not an integer >= 1, or ``p`` outside [0, 1).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 *, p: float = 0.3) -> None:
        super().__init__(in_features, out_features, bias, device, dtype, p=p, q=2.0,
                         target_fraction=1.0, signed=True)

    _noisy_weight = DropConnectConv2d._noisy_weight
    _noise_repr = DropConnectConv2d._noise_repr


class Sparseout(nn.Module):
    r"""Sparseout on activations: ``x + s(x)|x|^(q/2) eps``, a fresh draw per element
    (:func:`bridgeout.functional.sparseout`). ``q=2, signed=True`` is inverted dropout.
    Identity in eval mode.

    Args:
        p: drop probability, [0, 1).
        q: bridge exponent, > 0.
        signed: multiply the noise by ``sign(x)``.

    Raises:
        ValueError: ``p`` or ``q`` out of range.
    """

    def __init__(self, p: float = 0.3, q: float = 1.5, signed: bool = True) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.q = check_positive("q", q)
        self.signed = bool(signed)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Sparseout noise in training mode (``p > 0``), else ``x`` unchanged.

        Args:
            x: the activations.

        Returns:
            the activations, same shape.
        """
        if self.training and self.p > 0.0:
            return BF._sparseout(x, self.p, self.q, self.signed, self.generator)
        return x

    def extra_repr(self) -> str:
        """``p``, ``q`` and ``signed``.

        Returns:
            the text.
        """
        return f"p={self.p}, q={self.q}, signed={self.signed}"


class TargetedDropout(nn.Module):
    r"""Targeted activation dropout (:func:`bridgeout.functional.targeted_dropout`): per sample,
    the ``target_fraction`` lowest-norm channels are dropped element-wise with probability
    ``p``. Identity in eval mode.

    Args:
        p: drop probability, [0, 1).
        target_fraction: fraction of channels per sample eligible for dropping, (0, 1].

    Raises:
        ValueError: ``p`` or ``target_fraction`` out of range.
    """

    def __init__(self, p: float = 0.3, target_fraction: float = 0.75) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.target_fraction = check_fraction("target_fraction", target_fraction)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Targeted dropout in training mode (``p > 0``), else ``x`` unchanged.

        Args:
            x: the activations (N, C, *).

        Returns:
            the activations, same shape.
        """
        if self.training and self.p > 0.0:
            return BF._targeted_dropout(x, self.p, self.target_fraction, self.generator)
        return x

    def extra_repr(self) -> str:
        """``p`` and ``target_fraction``.

        Returns:
            the text.
        """
        return f"p={self.p}, target_fraction={self.target_fraction}"


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

