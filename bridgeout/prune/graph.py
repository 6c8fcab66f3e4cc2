"""The dependency graph of remove mode: Torch-Pruning's groups, traced once per network and
kept as plain, replayable records (:class:`Group`), and the replay that removes channels from a
copy (:func:`apply_groups`).

A group is rooted at an ``nn.Conv2d`` (its output channels) and lists every layer coupled to
them, as Torch-Pruning's :class:`torch_pruning.DependencyGraph` finds them: BatchNorm /
LayerNorm channels, the next layers' input channels, convs and ``nn.Linear`` outputs joined by
a residual addition, bare ``nn.Parameter`` tensors multiplied into the channels. The model's
output layers keep their outputs (:func:`output_layers`).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..introspect import eval_mode

__all__ = ["Group", "trace_groups", "output_layers", "apply_groups"]


@dataclass
class Group:
    """One dependency group.

    Attributes:
        root: name of the conv whose output channels root the group.
        channels: its number of output channels when traced.
        convs: the coupled convs whose *output* channels the group removes, as
            ``(name, idxs, root_idxs)`` tensors (which of the conv's channels follow which root
            channel).
        actions: every pruning action Torch-Pruning's ``Group.prune`` would call, as
            ``(name, handler, pruning_dim, idxs, root_idxs, kind)`` with ``kind`` ``"module"``
            or ``"parameter"``.
    """
    root: str
    channels: int
    convs: list = field(default_factory=list)
    actions: list = field(default_factory=list)


def trace_groups(model: nn.Module, example_input: torch.Tensor) -> tuple[list[Group], list[str]]:
    """Trace ``model`` with Torch-Pruning and keep the groups rooted at a conv.

    Args:
        model: a plain (noise-free) model; traced in eval mode with autograd on, not modified.
        example_input: a tensor of the input shape, on the model's device.

    Returns:
        ``(groups, outputs)``: the groups that remove at least one conv's output channels, and
        the names of the output layers (never pruned; groups that would prune them are left
        out).

    Raises:
        ValueError: a conv is coupled to a bare ``nn.Parameter`` Torch-Pruning cannot prune.
    """
    import torch_pruning as tp   # deferred: the graph library is needed by remove mode only

    names = {m: n for n, m in model.named_modules()}
    params = {p: n for n, p in model.named_parameters()}
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
        outputs = output_layers(graph, names)
        out_mods = [m for m in names if names[m] in outputs]
        traced = list(graph.get_all_groups(ignored_layers=out_mods, root_module_types=[nn.Conv2d]))
    groups = [_record(graph, group, names, params) for group in traced]
    return [g for g in groups if g.convs], outputs


def _record(graph, group, names: dict, params: dict) -> Group:
    """One Torch-Pruning group as a :class:`Group` (module and parameter names, not objects)."""
    root = group[0].dep.target.module
    g = Group(root=names[root], channels=root.out_channels)
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
    return g


@torch.no_grad()
def apply_groups(groups: Sequence[Group], model: nn.Module, selection: Sequence[torch.Tensor],
                 inplace: bool = False) -> nn.Module:
    """Remove the selected root channels of every group from ``model``.

    Calls, for each action of a group, the handler Torch-Pruning's ``Group.prune`` calls, on
    the module (or parameter) of the same name in ``model``, so one trace serves every copy.

    Args:
        groups: the traced groups (:func:`trace_groups`).
        model: a model with the traced model's module names and shapes.
        selection: one tensor of root-channel indices per group.
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        The pruned model (a copy unless ``inplace``).

    Raises:
        ValueError: ``selection`` does not have one index set per group.
    """
    if len(selection) != len(groups):
        raise ValueError(f"selection must have one index set per group ({len(groups)}), "
                         f"got {len(selection)}")
    if not inplace:
        model = copy.deepcopy(model)
    mods = dict(model.named_modules())
    for g, sel in zip(groups, selection):
        if len(sel) == 0:
            continue
        chosen = set(int(i) for i in sel)
        for name, handler, dim, idxs, root_idxs, kind in g.actions:
            target = sorted({i for i, r in zip(idxs, root_idxs) if r in chosen})
            if not target:
                continue
            # what torch_pruning's Dependency.__call__ does before calling its handler
            handler.__self__.pruning_dim = dim
            if kind == "module":
                handler(mods[name], target)
            else:                # a bare nn.Parameter: the handler returns a new one
                parent, _, attr = name.rpartition(".")
                owner = mods[parent]
                setattr(owner, attr, handler(getattr(owner, attr), target))
    return model


def output_layers(graph, names: dict) -> list[str]:
    """Names of the ``nn.Linear`` / conv layers whose outputs are the model's outputs.

    Walks backwards from every node of the traced graph that feeds nothing, through every node
    that is not a Linear or a conv (norms, pooling, flatten, element-wise ops); the first
    Linear or conv reached on each path is an output layer.

    Args:
        graph: a built :class:`torch_pruning.DependencyGraph`.
        names: module -> name of the traced model.

    Returns:
        The output layers' names, sorted.
    """
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
