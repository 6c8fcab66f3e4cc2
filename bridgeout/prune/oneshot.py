"""One-shot pruning: :func:`prune` returns a pruned copy of a network."""
from __future__ import annotations


import torch
from torch import nn

from .mask import _apply_mask, _mask_selection
from .remove import RemovalPlan
from .scores import _check_fraction
from ..introspect import require_convs
from ..nn import plain
from ..registry import check_scope, CRITERIA, MODES, only_unit
from .._validate import check_choice


# --------------------------------------------------------------------------- prune
def _plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy without training-time noise layers (:func:`bridgeout.nn.plain`)."""
    return plain(model)


def _validate(fraction, criterion, scope, mode) -> float:
    fraction = _check_fraction(fraction)
    check_choice("criterion", criterion, CRITERIA)
    check_scope(scope)
    check_choice("mode", mode, MODES)
    _check_only_in_mask([scope], [mode])
    return fraction


def _check_only_in_mask(scopes, modes) -> None:
    only = [s for s in scopes if only_unit(s) is not None]
    if only and "remove" in modes:
        raise ValueError(f"scope {only[0]!r} (one layer alone) works in mode 'mask' only, not 'remove': "
                         "removing one layer's filters alone changes the next layer's inputs too")


def prune(model: nn.Module, fraction: float, criterion: str = "l2", scope: str = "layer",
          mode: str = "mask", *, seed: int = 0, example_input: torch.Tensor | None = None
          ) -> nn.Module:
    """A pruned copy of ``model``; ``model`` itself is never modified.

    Args:
        model: any network with ``nn.Conv2d`` layers (Bridgeout/DropConnect convs and
            activation regularizers are first made plain with :func:`bridgeout.nn.plain`).
        fraction: :math:`f \\in [0, 1)`; ``0`` returns an unpruned plain copy.
        criterion: one of :data:`CRITERIA` (module docstring: formulas).
        scope: ``"layer"`` (:math:`\\lfloor f C \\rfloor` per unit) or ``"global"``.
        mode: ``"mask"`` (zero output filters, each conv a unit) or ``"remove"``
            (physically remove channels; residual-coupled convs form one unit).
        seed: seeds the ``"random"`` criterion.
        example_input: an input tensor for tracing in ``"remove"`` mode (default a zero
            ``(1, C, 32, 32)``, 28x28 for one input channel).

    Returns:
        a new ``nn.Module`` on the model's device with the model's train/eval flags.

    Raises:
        ValueError: ``fraction`` outside [0, 1), an unknown criterion/scope/mode (the
            message lists the valid ones), a model without any conv layer, or, in remove
            mode, a model whose every conv reaches an output layer or whose channels
            Torch-Pruning cannot remove (the message names the conv).
    """
    fraction = _validate(fraction, criterion, scope, mode)
    require_convs(model)
    out = _plain_copy(model)
    if fraction == 0.0:
        return out
    if mode == "mask":
        return _apply_mask(out, _mask_selection(out, fraction, criterion, scope, seed))
    plan = RemovalPlan(out, example_input)
    sel = plan.select(plan.importances(out, criterion, seed), fraction, criterion, scope)
    return plan.apply(out, sel, inplace=True)


