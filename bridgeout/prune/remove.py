"""Remove mode: channels physically removed with Torch-Pruning's dependency graph, traced
once per network (:class:`RemovalPlan`) and replayed on copies."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .mask import _bn_scales, _check_scores_finite, _generator
from .scores import _normalise, filter_scores, select
from ..introspect import check_input_fits, default_example_input, eval_mode, model_device, require_convs
from ..registry import CRITERIA
from .._validate import check_choice


# --------------------------------------------------------------------------- remove mode
@dataclass
class _Group:
    """One dependency group: ``channels`` root channels, the coupled convs whose output
    channels it removes, and every pruning action as (module or parameter name, handler, dim,
    idxs, root idxs, ``"module"`` or ``"parameter"``)."""
    root: str
    channels: int
    convs: list = field(default_factory=list)     # (name, idxs tensor, root idxs tensor)
    actions: list = field(default_factory=list)   # (name, handler, pruning_dim, idxs, root_idxs)


class RemovalPlan:
    """Torch-Pruning's dependency graph of a model, traced once, as replayable groups.

    Args:
        model: the (plain) model to trace; it is traced in eval mode (module flags restored)
            with autograd on, and not modified.
        example_input: a tensor of the input shape (default :func:`default_example_input`).

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
    module names and shapes (the traced one or a deep copy of it).
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor | None = None):
        import torch_pruning as tp

        convs = require_convs(model)
        if example_input is None:
            example_input = default_example_input(model)
        example_input = example_input.to(model_device(model))
        check_input_fits(model, example_input, "example_input")
        names = {m: n for n, m in model.named_modules()}
        params = {p: n for n, p in model.named_parameters()}
        with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                                          verbose=False)
            #: names of the output layers (their output channels are never removed)
            self.outputs = _output_layers(graph, names)
            out_mods = [m for m in names if names[m] in self.outputs]
            groups = list(graph.get_all_groups(ignored_layers=out_mods,
                                               root_module_types=[nn.Conv2d]))
        self.groups: list[_Group] = []
        for group in groups:
            root = group[0].dep.target.module
            g = _Group(root=names[root], channels=root.out_channels)
            for item in group:
                dep, idxs = item.dep, item.idxs
                target = dep.target.module
                if isinstance(target, nn.Parameter):
                    if target not in params or dep.target.pruning_dim is None:
                        raise ValueError(f"remove mode: conv {g.root!r} is coupled to a bare nn.Parameter "
                                         f"{params.get(target, '')!r} that Torch-Pruning cannot prune")
                    name, kind = params[target], "parameter"
                elif target in names:
                    name, kind = names[target], "module"
                else:                            # element-wise ops, reshapes: nothing to prune
                    continue
                root_idxs = list(item.root_idxs)
                g.actions.append((name, dep.handler, dep.target.pruning_dim, list(idxs), root_idxs, kind))
                if isinstance(target, nn.Conv2d) and graph.is_out_channel_pruning_fn(dep.handler):
                    g.convs.append((name, torch.tensor(list(idxs)), torch.tensor(root_idxs)))
            if g.convs:
                self.groups.append(g)
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
        from ``model``'s current weights (same names as the traced model)."""
        check_choice("criterion", criterion, CRITERIA)
        gen = _generator(seed)
        mods = dict(model.named_modules())
        scales = (_bn_scales(model, [n for g in self.groups for n, _, _ in g.convs])
                  if criterion == "bn_scale" else None)
        out = []
        for g in self.groups:
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
        _check_scores_finite([g.convs[0][0] if g.convs else f"group {i}" for i, g in enumerate(self.groups)],
                             out, criterion)
        return out

    def select(self, importances: Sequence[torch.Tensor], fraction: float, criterion: str,
               scope: str = "layer") -> list[torch.Tensor]:
        """Root-channel indices to remove per group (see :func:`select`)."""
        if scope == "global":
            importances = [_normalise(s, criterion) for s in importances]
        return select(importances, fraction, scope)

    @torch.no_grad()
    def apply(self, model: nn.Module, selection: Sequence[torch.Tensor], inplace: bool = False
              ) -> nn.Module:
        """Remove the selected root channels of every group from ``model`` (a deep copy
        unless ``inplace``) by calling the handlers Torch-Pruning's ``Group.prune`` calls."""
        if len(selection) != len(self.groups):
            raise ValueError(f"selection must have one index set per group ({len(self.groups)}), "
                             f"got {len(selection)}")
        if not inplace:
            model = copy.deepcopy(model)
        mods = dict(model.named_modules())
        for g, sel in zip(self.groups, selection):
            if len(sel) == 0:
                continue
            chosen = set(int(i) for i in sel)
            for name, handler, dim, idxs, root_idxs, kind in g.actions:
                target = [i for i, r in zip(idxs, root_idxs) if r in chosen]
                if not target:
                    continue
                handler.__self__.pruning_dim = dim
                if kind == "module":
                    handler(mods[name], sorted(set(target)))
                else:                # a bare nn.Parameter: the handler returns a new one
                    parent, _, attr = name.rpartition(".")
                    owner = mods[parent]
                    setattr(owner, attr, handler(getattr(owner, attr), sorted(set(target))))
        return model

    def group_channels(self, model: nn.Module) -> list[int]:
        """Current output channels of every group's root conv in ``model``."""
        mods = dict(model.named_modules())
        return [mods[g.root].out_channels for g in self.groups]


def _output_layers(graph, names: dict) -> list[str]:
    """Names of the ``nn.Linear`` / conv layers whose outputs are the model's outputs: walking
    backwards from every node of the traced graph that feeds nothing, through every node that
    is not a Linear or a conv (norms, pooling, flatten, element-wise ops), the first Linear or
    conv reached on each path."""
    layer = (nn.Linear, nn.modules.conv._ConvNd)
    found, seen = [], set()
    stack = [n for n in graph.module2node.values() if not n.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, layer) and node.module in names:
            if names[node.module] not in found:
                found.append(names[node.module])
            continue
        stack.extend(node.inputs)
    return sorted(found)


