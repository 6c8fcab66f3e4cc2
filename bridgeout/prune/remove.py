"""Remove mode: channels physically removed with Torch-Pruning's dependency graph, traced
once per network (:class:`RemovalPlan`) and replayed on copies."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .graph import Group, apply_groups, trace_groups
from .mask import _bn_scales, _check_scores_finite, _generator
from .scores import _normalise, filter_scores, select
from ..introspect import check_input_fits, default_example_input, eval_mode, model_device, require_convs
from ..registry import CRITERIA
from .._validate import check_choice


class RemovalPlan:
    """Torch-Pruning's dependency graph of a model, traced once, as replayable groups.

    What is pruned: the groups rooted at an ``nn.Conv2d`` (its output channels), with every
    layer coupled to them: BatchNorm/LayerNorm channels, the next layers' input channels,
    convs and ``nn.Linear`` outputs joined by a residual addition (a ConvNeXt block's second
    pointwise Linear), and bare ``nn.Parameter`` tensors multiplied into the channels (a
    ConvNeXt block's ``layer_scale``, pruned along the dimension Torch-Pruning detects: the
    last one larger than 1). Groups rooted at a Linear (the hidden units of an MLP or of a
    ConvNeXt block's 4x expansion) are not pruned. The model's **output layers** -- every
    ``nn.Linear`` or conv reached backwards from the model's output through layers that are
    neither (normalisation, pooling, flatten, element-wise ops) -- keep their outputs: a group
    that would remove one of their output channels is not pruned (the classifier keeps its
    classes), and its convs are listed in :attr:`fixed`.

    The plan is checked once when it is built: one channel of every group is removed from a
    copy, which must still run on ``example_input`` and give the same output shape; where it
    does not (a layer or tensor Torch-Pruning does not know how to shrink), a ``ValueError``
    names the group's root conv.

    :meth:`importances` gives each group's per-channel importance, :meth:`select` the
    indices to prune, and :meth:`apply` removes them from a copy of a model with the same
    module names and shapes (the traced one or a deep copy of it). ``len(plan)`` is the
    number of groups.

    Args:
        model: the (plain) model to trace; it is traced in eval mode (module flags restored)
            with autograd on, and not modified.
        example_input: a tensor of the input shape (default :func:`default_example_input`);
            moved to the model's device.

    Attributes:
        groups: the dependency groups rooted at a conv (:class:`~bridgeout.prune.graph.Group`).
        outputs: the names of the model's output layers.
        fixed: convs whose output channels no group may prune (they reach an output layer).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: a model without a conv, an ``example_input`` the model cannot take, every
            conv coupled to an output layer, a conv coupled to a bare parameter Torch-Pruning
            cannot prune, or a group whose removal breaks the model (named by its root conv).
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor | None = None):
        convs = require_convs(model)
        if example_input is None:
            example_input = default_example_input(model)
        example_input = example_input.to(model_device(model))
        check_input_fits(model, example_input, "example_input")
        #: the dependency groups rooted at a conv (:class:`~bridgeout.prune.graph.Group`)
        self.groups: list[Group]
        self.groups, self.outputs = trace_groups(model, example_input)
        covered = {name for g in self.groups for name, _, _ in g.convs}
        #: convs whose output channels no group may prune (they reach an output layer)
        self.fixed = [n for n, _ in convs if n not in covered]
        if not self.groups:
            raise ValueError(f"model has nothing prunable in remove mode: every conv is coupled to the "
                             f"output of the model's output layer(s) {self.outputs}")
        self._check(model, example_input)

    def _check(self, model: nn.Module, example_input: torch.Tensor) -> None:
        """Remove one channel of every group from a copy and run it (see the class docstring);
        on failure find the first group that fails on its own and name its root conv."""
        with eval_mode(model), torch.no_grad():
            shape = model(example_input).shape

        def fails(which):
            sel = [torch.tensor([0] if i in which and g.channels > 1 else [], dtype=torch.long)
                   for i, g in enumerate(self.groups)]
            try:
                trial = self.apply(model, sel)
                with eval_mode(trial), torch.no_grad():
                    got = trial(example_input).shape
            except Exception as e:               # noqa: BLE001 - reported with the layer's name
                return f"{type(e).__name__}: {e}"
            return None if got == shape else f"the output shape changes from {tuple(shape)} to {tuple(got)}"

        if fails(set(range(len(self.groups)))) is None:
            return
        for i, g in enumerate(self.groups):
            why = fails({i})
            if why is not None:
                raise ValueError(f"remove mode cannot prune the channels of conv {g.root!r}: after "
                                 f"removing one with Torch-Pruning, {why} (a coupled layer or tensor "
                                 "Torch-Pruning does not shrink); use mode='mask' for this model")
        raise ValueError("remove mode: removing one channel of every dependency group breaks the model, "
                         "though no group alone does; use mode='mask' for this model")

    def __len__(self) -> int:
        return len(self.groups)

    def importances(self, model: nn.Module, criterion: str, seed: int = 0) -> list[torch.Tensor]:
        """Per-group, per-root-channel importance (aggregated as in the module docstring)
        from ``model``'s current weights (same names as the traced model).

        Args:
            model: the traced model or a copy with the same module names.
            criterion: one of :data:`bridgeout.registry.CRITERIA`.
            seed: seed of the ``random`` criterion.

        Returns:
            one 1-d CPU tensor per group (:func:`group_importances`).

        Raises:
            ValueError: an unknown criterion, ``bn_scale`` on a conv without an affine BatchNorm,
                or non-finite scores.
        """
        return group_importances(self.groups, model, criterion, seed)

    def select(self, importances: Sequence[torch.Tensor], fraction: float, criterion: str,
               scope: str = "layer") -> list[torch.Tensor]:
        """Root-channel indices to remove per group (see :func:`select`).

        With ``scope="global"`` the ``l2``/``l1`` importances are first divided by each group's
        maximum.

        Args:
            importances: one importance tensor per group (:meth:`importances`).
            fraction: the fraction in [0, 1).
            criterion: the criterion the importances come from.
            scope: ``"layer"``, ``"global"`` or ``"only:<k>"``.

        Returns:
            one sorted int64 CPU index tensor per group.

        Raises:
            ValueError: as :func:`bridgeout.prune.scores.select`.
        """
        if scope == "global":
            importances = [_normalise(s, criterion) for s in importances]
        return select(importances, fraction, scope)

    def apply(self, model: nn.Module, selection: Sequence[torch.Tensor], inplace: bool = False
              ) -> nn.Module:
        """Remove the selected root channels of every group from ``model`` (a deep copy
        unless ``inplace``) by calling the handlers Torch-Pruning's ``Group.prune`` calls.

        Args:
            model: a model with the traced model's module names and shapes.
            selection: one index tensor of root channels per group (:meth:`select`).
            inplace: prune ``model`` itself instead of a deep copy.

        Returns:
            the pruned model.
        """
        return apply_groups(self.groups, model, selection, inplace)

    def group_channels(self, model: nn.Module) -> list[int]:
        """Current output channels of every group's root conv in ``model``.

        Args:
            model: a model with the traced model's module names.

        Returns:
            one channel count per group.
        """
        mods = dict(model.named_modules())
        return [mods[g.root].out_channels for g in self.groups]


def group_importances(groups: Sequence[Group], model: nn.Module, criterion: str,
                      seed: int = 0) -> list[torch.Tensor]:
    """Per-group, per-root-channel importance from ``model``'s current weights.

    A group's channel aggregates the scores of the coupled convs' filters that follow it: the
    L2 norm over all of them (their squared norms summed), the L1 norm summed, orthogonality
    and |gamma| averaged; ``random`` draws one uniform score per channel.

    Args:
        groups: traced groups (:func:`~bridgeout.prune.graph.trace_groups`).
        model: a model with the traced model's module names.
        criterion: one of :data:`bridgeout.registry.CRITERIA`.
        seed: seed of the ``random`` criterion.

    Returns:
        One 1-d CPU tensor per group, of its root channels' importance.

    Raises:
        ValueError: an unknown criterion, ``bn_scale`` on a conv that feeds no affine
            BatchNorm, or non-finite scores.
    """
    check_choice("criterion", criterion, CRITERIA)
    gen = _generator(seed)
    mods = dict(model.named_modules())
    scales = (_bn_scales(model, [n for g in groups for n, _, _ in g.convs])
              if criterion == "bn_scale" else None)
    out = []
    for g in groups:
        if criterion == "random":
            out.append(torch.rand(g.channels, generator=gen))
            continue
        total = torch.zeros(g.channels)
        count = torch.zeros(g.channels)
        for name, idxs, root_idxs in g.convs:
            s = (scales[name] if scales is not None else filter_scores(mods[name].weight, criterion).cpu())[idxs]
            if criterion == "l2":
                s = s.square()
            total.index_add_(0, root_idxs, s)
            count.index_add_(0, root_idxs, torch.ones_like(s))
        if criterion == "l2":
            total = total.sqrt()
        elif criterion in ("orthogonality", "bn_scale"):
            total = total / count.clamp_min(1)
        out.append(total)
    _check_scores_finite([g.convs[0][0] if g.convs else f"group {i}" for i, g in enumerate(groups)],
                         out, criterion)
    return out
