"""Structured (filter) pruning: the paper's one-shot sweep, real slimming and cost figures.

:func:`prune` returns a pruned *copy* of a model; :func:`sweep` evaluates every
``(criterion, scope, mode, fraction)`` combination on one trained model and returns a tidy
:class:`pandas.DataFrame`.

Filter scores
-------------
For a conv weight :math:`W \\in \\mathbb{R}^{C_\\text{out} \\times C_\\text{in}/g \\times k_h
\\times k_w}`, let :math:`w_f` be output filter :math:`f` flattened.  Every criterion gives
an *importance* :math:`s_f`; the filters with the **smallest** importance are pruned.

* ``"l2"`` (the paper): :math:`s_f = \\lVert w_f \\rVert_2`.
* ``"l1"``: :math:`s_f = \\lVert w_f \\rVert_1`.
* ``"random"``: :math:`s_f \\sim U[0, 1)` i.i.d. from a generator seeded with ``seed``
  (the baseline every pruning study needs).
* ``"orthogonality"`` (RePr, Prakash et al. 2019): with unit filters
  :math:`\\hat w_f = w_f / \\lVert w_f \\rVert_2` stacked as the rows of :math:`\\hat W`,
  :math:`O = \\hat W \\hat W^\\top - I` and the overlap of filter :math:`f` is
  :math:`o_f = \\frac{1}{C_\\text{out}} \\sum_j |O_{fj}|` (the mean absolute cosine similarity
  to the other filters of the layer, the zero diagonal included in the mean).  The
  importance is :math:`s_f = 1 - o_f`, so the **most overlapping** filters are pruned first.
  An all-zero filter has overlap 0 (it is normalised with a small epsilon).
* ``"bn_scale"`` (Network Slimming): :math:`s_f = |\\gamma_f|`, the scale of the BatchNorm
  channel the filter feeds (found by tracing one forward,
  :func:`bridgeout.filters.conv_batchnorm_pairs`); a conv that feeds no BatchNorm is
  refused, naming it. Needs the model, so :func:`filter_scores` refuses it.

Scope
-----
* ``"layer"`` (the paper): in every pruning unit with :math:`C` channels, the
  :math:`k = \\lfloor f C \\rfloor` channels of smallest importance are pruned (ties: the lower
  index first, a stable sort).  The first conv is pruned too.  ``floor`` is taken after adding
  ``1e-9`` so that e.g. ``0.29 * 100`` gives 29, not 28.
* ``"global"``: one threshold across the network.  Importances are first normalised per
  unit so units are comparable: ``"l2"`` and ``"l1"`` are divided by the unit's largest score
  (the strongest filter of every unit gets 1; dividing by the max, unlike an L2
  normalisation, does not depend on the number of filters), ``"orthogonality"`` (already a
  scale-free cosine measure in [0, 1]) and ``"random"`` are used as they are.  The
  :math:`\\lfloor f N \\rfloor` channels (:math:`N` = all channels of all units) with the
  smallest normalised importance are pruned, except that a unit is never pruned to zero
  channels: once a unit has a single channel left, its remaining channel is skipped and the
  next-smallest channel elsewhere is taken (so at most :math:`N - U` channels go for
  :math:`U` units, fewer than :math:`\\lfloor f N \\rfloor` when :math:`f` is close to 1).

Modes and pruning units
-----------------------
* ``"mask"`` (the paper): the selected output filters' weights are set to zero; conv biases
  and BatchNorm are left as they are, so a zeroed channel still emits a constant (its bias
  mapped by BatchNorm).  The pruning unit is **every** ``nn.Conv2d``, each on its own: the
  first conv and the 1x1 shortcut convs included (the published code prunes every
  non-linear, non-BN ``weight``, which includes the shortcut convs; unlike that code we do
  not "prune" BatchNorm scales).  Linear layers are never pruned.
* ``"remove"``: channels are physically removed with Torch-Pruning's dependency graph
  (:class:`torch_pruning.DependencyGraph`): a conv's output channels, the matching
  BatchNorm channels and the next layers' input channels (Linear ``in_features`` after a
  flatten included).  Here the pruning unit is a **dependency group**: channels joined by a
  residual addition (a stage's stem/shortcut/second convs) must be removed together, so
  they form one unit with one index set.  A group's importance per channel aggregates the
  coupled convs' filter scores :math:`s_{c,f}`: ``"l2"`` :math:`\\sqrt{\\sum_c s_{c,f}^2}`
  (the L2 norm of all coupled filters concatenated), ``"l1"`` :math:`\\sum_c s_{c,f}`,
  ``"orthogonality"`` the mean over the coupled convs, ``"random"`` one fresh draw per
  group channel.  For a network without residual additions every group holds one conv and
  ``remove`` prunes exactly the filters ``mask`` zeroes.  Only groups rooted at a conv are
  pruned, so the scores rank conv filters as in ``mask`` mode; whatever the graph couples
  to their channels is pruned along: LayerNorms, ``nn.Linear`` outputs joined by a residual
  addition and bare ``nn.Parameter`` scales (a ConvNeXt block's second pointwise Linear and
  ``layer_scale``; their filters do not enter the score).  Groups rooted at a Linear (hidden
  units, a ConvNeXt block's 4x expansion) are not pruned, and neither is any group that
  would remove an output channel of the model's output layers (the classifier keeps its
  classes; :class:`RemovalPlan` says how they are found).  Where Torch-Pruning cannot
  shrink a coupled layer or tensor, a ``ValueError`` names the conv whose channels cannot be
  removed (the plan is test-run once).  The result is a plain, smaller ``nn.Module``
  (``torch.save(model)`` pickles it whole).

Why both: zeroing a filter keeps its BatchNorm shift (the channel emits
:math:`\\beta - \\gamma \\mu / \\sqrt{\\sigma^2 + \\epsilon}` for a bias-free conv), removing
it drops that constant too, so the two modes compute different functions unless BN's shift
of the pruned channels is zero.

The graph is traced once per model (:class:`RemovalPlan`) and re-applied to copies for every
fraction, so a sweep does not re-trace the network; the plan replays exactly the handlers
``Group.prune()`` would call (a test checks it against Torch-Pruning's own ``prune``).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._validate import check_choice
from .costs import _EvalMode, _conv_filter_costs, _model_device, count_flops, count_parameters, measure_latency
from .repair import _check_recal, _finetune, recalibrate_batchnorm

__all__ = [
    "CRITERIA",
    "SCOPES",
    "SCOPE_NAMES",
    "check_scope",
    "only_unit",
    "MODES",
    "DEFAULT_FRACTIONS",
    "SWEEP_COLUMNS",
    "prune",
    "sweep",
    "filter_scores",
    "prunable_convs",
    "n_pruned",
    "select",
    "zeroed_filters",
    "RemovalPlan",
    "count_flops",
    "count_parameters",
    "measure_latency",
    "recalibrate_batchnorm",
    "default_example_input",
]

CRITERIA = ("l2", "l1", "random", "orthogonality", "bn_scale")
SCOPES = ("layer", "global")
#: Prefix of the one-layer scope ``"only:<k>"``: the per-layer ranking applied to the k-th
#: prunable conv (counting from 1, in :func:`prunable_convs` order) alone, every other layer
#: left intact (mask mode only): where does the collapse happen?
ONLY = "only:"


def only_unit(scope: str) -> int | None:
    """The 0-based unit of an ``"only:<k>"`` scope, None for :data:`SCOPES`."""
    return int(scope[len(ONLY):]) - 1 if scope.startswith(ONLY) else None


def check_scope(scope) -> str:
    """``scope`` if it is one of :data:`SCOPES` or ``"only:<k>"`` with an integer k >= 1, else a
    ValueError naming it and what is allowed."""
    if isinstance(scope, str) and (scope in SCOPES or (
            scope.startswith(ONLY) and scope[len(ONLY):].isdigit() and int(scope[len(ONLY):]) >= 1)):
        return scope
    raise ValueError(f"scope must be one of {', '.join(map(repr, SCOPES))} or 'only:<k>' (the k-th prunable "
                     f"conv alone, k >= 1), got {scope!r}")


class _ScopeNames(tuple):
    """The scope names as the result tables list them; ``in`` accepts every ``only:<k>``."""

    def __contains__(self, value) -> bool:
        try:
            return bool(check_scope(value))
        except ValueError:
            return False


#: What a ``scope`` cell of ``pruning.csv`` may hold.
SCOPE_NAMES = _ScopeNames((*SCOPES, ONLY + "<k>"))
MODES = ("mask", "remove")
DEFAULT_FRACTIONS = tuple(i / 10 for i in range(10))

#: columns of the :func:`sweep` table, in order.
SWEEP_COLUMNS = (
    "criterion", "scope", "mode", "fraction", "test_acc", "test_loss",
    "params", "params_effective", "flops", "flops_effective",
    "latency_b1_ms", "latency_b128_ms", "recalibrate_bn", "finetune_epochs",
    "prune_s", "adjust_s", "eval_s", "cost_s", "pruner",
)

_EPS = 1e-12
# (warm-up runs, timed runs) for latency, per device type


# --------------------------------------------------------------------------- validation
def _check_fraction(value) -> float:
    """A pruning fraction in [0, 1)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fraction must be a real number in [0, 1), got {value!r}") from None
    if not (0.0 <= v < 1.0):  # also rejects NaN
        raise ValueError(f"fraction must be in [0, 1), got {value!r}")
    return v


def _check_seq(name: str, values, check) -> tuple:
    if isinstance(values, (str, int, float)):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence, got {values!r}") from None
    if not values:
        raise ValueError(f"{name} must not be empty")
    out = tuple(check(v) for v in values)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not contain duplicates, got {values!r}")
    return out


def n_pruned(channels: int, fraction: float) -> int:
    """:math:`k = \\lfloor f C \\rfloor` channels to prune from ``channels``, at most ``C - 1``
    (``1e-9`` is added before the floor to undo binary rounding, e.g. ``0.29 * 100``)."""
    return max(0, min(channels - 1, math.floor(fraction * channels + 1e-9)))


# --------------------------------------------------------------------------- scores
def filter_scores(weight: torch.Tensor, criterion: str = "l2", *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance of every output filter of ``weight`` (shape ``(C_out, ...)``); the
    filters with the smallest values are pruned first.  See the module docstring for the
    formulas.  ``generator`` (CPU) is used by ``"random"`` only.  Returns float32, on the
    weight's device, shape ``(C_out,)``."""
    check_choice("criterion", criterion, CRITERIA)
    if criterion == "bn_scale":
        raise ValueError("criterion 'bn_scale' scores a filter by the BatchNorm it feeds, so it needs the "
                         "model: use prune() or sweep(), not filter_scores()")
    w = weight.detach().reshape(weight.shape[0], -1).float()
    if criterion == "l2":
        return torch.linalg.vector_norm(w, ord=2, dim=1)
    if criterion == "l1":
        return torch.linalg.vector_norm(w, ord=1, dim=1)
    if criterion == "random":
        return torch.rand(w.shape[0], generator=generator).to(w.device)
    unit = w / torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min(_EPS)
    overlap = unit @ unit.T
    overlap.diagonal().zero_()            # O = W W^T - I with unit rows: zero diagonal
    return 1.0 - overlap.abs().mean(dim=1)


def _normalise(scores: torch.Tensor, criterion: str) -> torch.Tensor:
    """Per-unit normalisation for ``scope="global"`` (norms divided by the unit's max)."""
    if criterion in ("l2", "l1"):
        return scores / scores.max().clamp_min(_EPS)
    return scores


def select(importances: Sequence[torch.Tensor], fraction: float, scope: str = "layer"
           ) -> list[torch.Tensor]:
    """Indices to prune in every unit, given each unit's importance vector.

    ``scope="layer"``: the :func:`n_pruned` smallest of each unit (stable sort).
    ``scope="global"``: the ``n_pruned(N, f)`` smallest over all units together (the values
    must already be comparable across units), never emptying a unit (so at most
    ``N - len(importances)`` in all, fewer than ``floor(f N)`` when ``f`` is close to 1).
    ``scope="only:<k>"``: the :func:`n_pruned` smallest of the k-th unit, none elsewhere.
    Returns sorted int64
    CPU tensors, one per unit.
    """
    fraction = _check_fraction(fraction)
    check_scope(scope)
    imps = [s.detach().float().cpu() for s in importances]
    only = only_unit(scope)
    if only is not None:
        if only >= len(imps):
            raise ValueError(f"scope {scope!r}: the model has {len(imps)} prunable units "
                             f"('only:1' to 'only:{len(imps)}')")
        (chosen,) = select([imps[only]], fraction, "layer")
        return [chosen if i == only else torch.empty(0, dtype=torch.int64) for i in range(len(imps))]
    if scope == "layer":
        out = []
        for s in imps:
            k = n_pruned(s.numel(), fraction)
            order = torch.sort(s, stable=True).indices
            out.append(torch.sort(order[:k]).values)
        return out
    sizes = [s.numel() for s in imps]
    total = sum(sizes)
    k = math.floor(fraction * total + 1e-9)
    chosen: list[list[int]] = [[] for _ in imps]
    if k > 0:
        values = torch.cat(imps)
        unit_of = torch.repeat_interleave(torch.arange(len(imps)), torch.tensor(sizes))
        offset = torch.tensor([0, *np.cumsum(sizes)[:-1].tolist()])
        order = torch.sort(values, stable=True).indices.tolist()
        left = list(sizes)
        unit_list = unit_of.tolist()
        off = offset.tolist()
        taken = 0
        for i in order:
            u = unit_list[i]
            if left[u] > 1:
                chosen[u].append(i - off[u])
                left[u] -= 1
                taken += 1
                if taken == k:
                    break
    return [torch.tensor(sorted(c), dtype=torch.long) for c in chosen]


# --------------------------------------------------------------------------- helpers
def _plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy without training-time noise layers (:func:`bridgeout.nn.plain`)."""
    from .nn import plain

    return plain(model)


def prunable_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """``(name, module)`` of every ``nn.Conv2d`` (subclasses included), in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _require_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    convs = prunable_convs(model)
    if not convs:
        raise ValueError(f"model has nothing prunable: no nn.Conv2d layer in "
                         f"{type(model).__name__} (prunable layers: nn.Conv2d and subclasses; "
                         "Linear layers are never pruned on their own)")
    return convs


def default_example_input(model: nn.Module) -> torch.Tensor:
    """A ``(1, C, H, W)`` zero tensor for tracing: ``C`` = the first conv's input channels,
    ``H = W = 28`` when ``C == 1`` (MNIST/LeNet-5) else 32 (CIFAR)."""
    convs = _require_convs(model)
    c = convs[0][1].in_channels
    size = 28 if c == 1 else 32
    return torch.zeros(1, c, size, size, device=_model_device(model))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# --------------------------------------------------------------------------- mask mode
def _mask_selection(model: nn.Module, fraction: float, criterion: str, scope: str, seed: int
                    ) -> dict[str, torch.Tensor]:
    convs = _require_convs(model)
    scores = _conv_scores(convs, criterion, seed, model)
    return _mask_selection_from_scores(convs, scores, fraction, criterion, scope)


def _bn_scales(model: nn.Module, names) -> dict[str, torch.Tensor]:
    """``{conv name: |gamma| of the BatchNorm channel each of its filters feeds}``."""
    from .filters import conv_batchnorm_pairs
    pairs = conv_batchnorm_pairs(model)
    mods = dict(model.named_modules())
    out = {}
    for name in names:
        bn = pairs.get(name)
        if bn is None or mods[bn].weight is None:
            raise ValueError(f"criterion 'bn_scale': conv {name!r} feeds no affine BatchNorm, so its filters "
                             f"have no scale to rank by; use another criterion for this model")
        out[name] = mods[bn].weight.detach().abs().float().cpu()
    return out


def _conv_scores(convs, criterion: str, seed: int, model: nn.Module | None = None) -> list[torch.Tensor]:
    if criterion == "bn_scale":
        scales = _bn_scales(model, [n for n, _ in convs])
        scores = [scales[n] for n, _ in convs]
        _check_scores_finite([n for n, _ in convs], scores, criterion)
        return scores
    gen = _generator(seed)
    scores = [filter_scores(m.weight, criterion, generator=gen).cpu() for _, m in convs]
    _check_scores_finite([n for n, _ in convs], scores, criterion)
    return scores


def _check_scores_finite(names, scores, criterion: str) -> None:
    """Refuse non-finite pruning scores (a NaN weight would otherwise make its filter
    silently never pruned)."""
    for name, s in zip(names, scores):
        bad = torch.nonzero(~torch.isfinite(s)).flatten()
        if len(bad):
            raise ValueError(f"layer {name!r}: the {criterion} scores of filters {bad.tolist()[:10]} are not "
                             f"finite (NaN or inf weights); a network with such weights cannot be ranked")


def _mask_selection_from_scores(convs, scores, fraction, criterion, scope):
    if scope == "global":
        scores = [_normalise(s, criterion) for s in scores]
    idxs = select(scores, fraction, scope)
    return {name: i for (name, _), i in zip(convs, idxs)}


@torch.no_grad()
def _apply_mask(model: nn.Module, selection: dict[str, torch.Tensor]) -> nn.Module:
    mods = dict(model.named_modules())
    for name, idxs in selection.items():
        if len(idxs):
            w = mods[name].weight
            w[idxs.to(w.device)] = 0
    return model


def zeroed_filters(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{conv name: indices of all-zero output filters}`` for every conv of ``model``."""
    out = {}
    for name, m in prunable_convs(model):
        w = m.weight.detach().reshape(m.weight.shape[0], -1)
        out[name] = torch.nonzero(~w.ne(0).any(dim=1)).flatten().cpu()
    return out


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

        convs = _require_convs(model)
        if example_input is None:
            example_input = default_example_input(model)
        example_input = example_input.to(_model_device(model))
        names = {m: n for n, m in model.named_modules()}
        params = {p: n for n, p in model.named_parameters()}
        with _EvalMode(model), torch.inference_mode(False), torch.enable_grad():
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
        with _EvalMode(model), torch.no_grad():
            shape = model(example_input).shape

        def fails(which):
            sel = [torch.tensor([0] if i in which and g.channels > 1 else [], dtype=torch.long)
                   for i, g in enumerate(self.groups)]
            try:
                trial = self.apply(model, sel)
                with _EvalMode(trial), torch.no_grad():
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


# --------------------------------------------------------------------------- prune
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
    _require_convs(model)
    out = _plain_copy(model)
    if fraction == 0.0:
        return out
    if mode == "mask":
        return _apply_mask(out, _mask_selection(out, fraction, criterion, scope, seed))
    plan = RemovalPlan(out, example_input)
    sel = plan.select(plan.importances(out, criterion, seed), fraction, criterion, scope)
    return plan.apply(out, sel, inplace=True)


# --------------------------------------------------------------------------- costs
# --------------------------------------------------------------------------- evaluation
def _evaluate(model: nn.Module, data, batch_size: int) -> dict:
    """Test loss and accuracy with :func:`bridgeout.train.evaluate` (the project's single
    evaluation loop: device-resident batches, no grad, sums read once; bf16 autocast on
    CUDA, float32 on the CPU; channels-last inputs for channels-last weights)."""
    from .train import evaluate

    return evaluate(model, data, data.device, batch_size)


def _for_device(model: nn.Module, device: torch.device) -> nn.Module:
    """Channels-last weights (the layout of training, on CPU and CUDA alike; the evaluation
    then feeds channels-last inputs)."""
    return model.to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- sweep
def _resolve_device(device, data):
    if device is not None:
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)
    dev = getattr(data, "device", None)
    if dev is not None:
        return torch.device(dev)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sweep(model: nn.Module, data, fractions: Iterable[float] = DEFAULT_FRACTIONS,
          criteria: Iterable[str] = ("l2",), scopes: Iterable[str] = ("layer",),
          modes: Iterable[str] = ("mask",), recalibrate_bn: bool | int = False,
          finetune_epochs: int = 0, device=None, latency: bool = True,
          dataset: str | None = None, seed: int = 0, progress: bool = True,
          batch_size: int = 1000, pruner: str = "plain"):
    """Prune ``model`` at every ``(criterion, scope, mode, fraction)`` and evaluate it.

    One shot, no retraining unless asked: every pruned model starts from ``model``'s
    weights.  ``model`` is not modified (its state_dict is untouched).

    Args:
        model: trained network (made plain with :func:`bridgeout.nn.plain`).
        data: a :class:`bridgeout.data.DeviceData` or the 4-tuple of arrays (then
            ``dataset`` names it); the whole test set is evaluated.
        fractions, criteria, scopes, modes: the grid (each a non-empty sequence without
            duplicates; fractions in [0, 1), choices :data:`CRITERIA`, :data:`SCOPES`,
            :data:`MODES`).
        recalibrate_bn: ``True`` re-estimates BatchNorm statistics after pruning from
            50 training batches of 128 (:func:`recalibrate_batchnorm`); an int gives the
            number of batches.
        finetune_epochs: epochs of fine-tuning after pruning (:func:`bridgeout.train.fit`,
            the ``"fast"`` protocol rescaled to these epochs with lr 0.01; masked filters
            stay zero), 0 = none (the paper).
        device: where to evaluate (default: the data's device, else CUDA when available).
        latency: measure forward latency (batch 1 and 128) for ``remove`` rows and for the
            unpruned model (rows with fraction 0); NaN elsewhere.
        seed: seeds the ``"random"`` criterion, BN re-estimation and fine-tuning.
        progress: show a tqdm bar.
        pruner: what a mask row does besides zeroing the selected filters
            (:data:`bridgeout.results.PRUNERS`, the rows' ``pruner`` column): ``"plain"``
            nothing; ``"published"`` also zeroes the smallest-``|gamma|`` fraction of the
            BatchNorm scales the authors' pruner reached (the ``bn_scale_pruning`` quirk,
            :func:`bridgeout.quirks.prune_bn_scales_`); ``"mean"`` keeps each zeroed filter's
            channel at its mean BatchNorm output (:func:`bridgeout.repair.keep_channel_means_`).
            Remove rows are always ``"plain"`` (both variants act on masked channels).
        batch_size: evaluation batch size.  Evaluation is
            :func:`bridgeout.train.evaluate` on the device-resident test set (bf16 autocast
            and channels-last on CUDA, float32 on the CPU).

    Speed: the network is copied to the device once; mask rows reuse one working copy
    (weights restored, filters zeroed); the dependency graph is traced once
    (:class:`RemovalPlan`) and every remove row applies it to a fresh copy; scores are
    computed once per criterion; the unpruned model is evaluated (and timed) once.

    Returns:
        DataFrame with :data:`SWEEP_COLUMNS`: one row per combination (criterion, scope,
        mode, fraction order).  ``test_acc`` in [0, 1]; ``params``/``flops`` are the dense
        counts of the evaluated module (FLOPs for one input image, forward,
        :func:`count_flops`); ``params_effective``/``flops_effective`` exclude zeroed
        filters' weights and multiply-adds in mask mode (equal to the dense counts in remove
        mode); ``prune_s``, ``adjust_s`` (BN re-estimation + fine-tuning), ``eval_s`` and
        ``cost_s`` (FLOPs, parameters, latency) are the row's wall times (the unpruned
        model is evaluated once and shared by every fraction-0 row).
    """
    import pandas as pd

    from .data import as_device_data

    fractions = _check_seq("fractions", fractions, _check_fraction)
    criteria = _check_seq("criteria", criteria, lambda v: check_choice("criterion", v, CRITERIA))
    scopes = _check_seq("scopes", scopes, check_scope)
    modes = _check_seq("modes", modes, lambda v: check_choice("mode", v, MODES))
    _check_only_in_mask(scopes, modes)
    recal_batches = _check_recal(recalibrate_bn)
    from .results import PRUNERS
    pruner = check_choice("pruner", pruner, PRUNERS)
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, (int, np.integer)) \
            or finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be an integer >= 0, got {finetune_epochs!r}")
    _require_convs(model)
    device = _resolve_device(device, data)
    data = as_device_data(data, dataset, device)
    run = _Sweep(model, data, device, recal_batches=recal_batches, finetune_epochs=int(finetune_epochs),
                 latency=latency, seed=seed, batch_size=batch_size, pruner=pruner)

    bar = None
    if progress:
        from tqdm import tqdm  # the text bar: tqdm.auto warns in notebooks without ipywidgets
        bar = tqdm(total=len(criteria) * len(scopes) * len(modes) * len(fractions), desc="prune sweep",
                   leave=False)
    rows = []
    for criterion in criteria:
        conv_scores = _conv_scores(run.convs, criterion, seed, run.base) if "mask" in modes else None
        for scope in scopes:
            for mode in modes:
                group_scores = (run.plan().importances(run.base, criterion, seed)
                                if mode == "remove" and any(f > 0 for f in fractions) else None)
                for fraction in fractions:
                    row = dict(criterion=criterion, scope=scope, mode=mode, fraction=fraction,
                               recalibrate_bn=bool(recal_batches), finetune_epochs=int(finetune_epochs),
                               pruner=pruner if mode == "mask" else "plain")
                    if fraction == 0.0:
                        row.update(run.unpruned())
                    elif mode == "mask":
                        row.update(run.mask_row(conv_scores, fraction, criterion, scope))
                    else:
                        row.update(run.remove_row(group_scores, fraction, criterion, scope))
                    rows.append(row)
                    if bar is not None:
                        bar.update()
    if bar is not None:
        bar.close()
    df = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    int_cols = ["params", "params_effective", "flops", "flops_effective", "finetune_epochs"]
    df[int_cols] = df[int_cols].astype("int64")
    df["fraction"] = df["fraction"].astype("float64")
    return df


class _Sweep:
    """The state one :func:`sweep` shares between its rows: the plain base model on the
    device (and its weights, restored before every mask row), the dense costs, the
    per-filter costs, the removal plan (traced on first use) and the unpruned row (evaluated
    once). Each ``*_row`` method returns the measured columns of one row."""

    def __init__(self, model, data, device, *, recal_batches, finetune_epochs, latency, seed, batch_size,
                 pruner):
        self.data, self.device, self.seed, self.batch_size = data, device, seed, batch_size
        self.recal_batches, self.finetune_epochs = recal_batches, finetune_epochs
        self.latency, self.pruner = latency, pruner
        self.base = _for_device(_plain_copy(model).to(device).eval(), device)
        self.example = data.normalize(data.x_test[:1])
        self.input_shape = tuple(self.example.shape[1:])
        self.base_state = {k: v.clone() for k, v in self.base.state_dict().items()}
        self.dense_params = count_parameters(self.base)
        self.dense_flops = count_flops(self.base, self.example)
        self.filter_costs = _conv_filter_costs(self.base, self.example)
        self.convs = prunable_convs(self.base)
        self._plan = None
        self._work = None
        self._unpruned = None

    def plan(self) -> "RemovalPlan":
        if self._plan is None:
            self._plan = RemovalPlan(self.base, self.example)
        return self._plan

    def adjust(self, m, selection):
        """BatchNorm re-estimation and fine-tuning, as asked (the pruned model, possibly new)."""
        if self.recal_batches:
            recalibrate_batchnorm(m, self.data, self.recal_batches, seed=self.seed)
        if self.finetune_epochs:
            m = _finetune(m, self.data, self.finetune_epochs, selection, self.seed, self.device)
        return m

    def latencies(self, m) -> tuple[float, float]:
        if not self.latency:
            return math.nan, math.nan
        return (measure_latency(m, self.input_shape, 1, self.device),
                measure_latency(m, self.input_shape, 128, self.device))

    def unpruned(self) -> dict:
        """Evaluation (and latency) of the unpruned model, computed once; later fraction-0
        rows share it with zero times."""
        if self._unpruned is not None:
            return {**self._unpruned, "adjust_s": 0.0, "eval_s": 0.0, "cost_s": 0.0}
        t0 = time.perf_counter()
        m = (self.adjust(copy.deepcopy(self.base), None) if (self.recal_batches or self.finetune_epochs)
             else self.base)
        t1 = time.perf_counter()
        ev = _evaluate(m, self.data, self.batch_size)
        t2 = time.perf_counter()
        lat = self.latencies(m)
        t3 = time.perf_counter()
        self._unpruned = dict(test_acc=ev["acc"], test_loss=ev["loss"], params=self.dense_params,
                              params_effective=self.dense_params, flops=self.dense_flops,
                              flops_effective=self.dense_flops, latency_b1_ms=lat[0], latency_b128_ms=lat[1],
                              prune_s=0.0, adjust_s=t1 - t0, eval_s=t2 - t1, cost_s=t3 - t2)
        return dict(self._unpruned)

    def mask_row(self, conv_scores, fraction, criterion, scope) -> dict:
        """Zero the selected filters of a reused working copy (weights restored first)."""
        from .quirks import prune_bn_scales_
        from .repair import keep_channel_means_
        t0 = time.perf_counter()
        if self._work is None:
            self._work = copy.deepcopy(self.base)
        self._work.load_state_dict(self.base_state)
        selection = _mask_selection_from_scores(self.convs, conv_scores, fraction, criterion, scope)
        pruned = _apply_mask(self._work, selection)
        if self.pruner == "published":
            prune_bn_scales_(pruned, fraction)
        elif self.pruner == "mean":
            keep_channel_means_(pruned, selection)
        t1 = time.perf_counter()
        pruned = self.adjust(pruned, selection)
        if pruned is not self._work:          # fine-tuning returned another module
            self._work = None
        t2 = time.perf_counter()
        ev = _evaluate(pruned, self.data, self.batch_size)
        t3 = time.perf_counter()
        zero_flops = sum(len(i) * self.filter_costs[n][0] for n, i in selection.items())
        zero_params = sum(len(i) * self.filter_costs[n][1] for n, i in selection.items())
        return dict(test_acc=ev["acc"], test_loss=ev["loss"], params=self.dense_params,
                    params_effective=self.dense_params - zero_params, flops=self.dense_flops,
                    flops_effective=self.dense_flops - zero_flops, latency_b1_ms=math.nan,
                    latency_b128_ms=math.nan, prune_s=t1 - t0, adjust_s=t2 - t1, eval_s=t3 - t2,
                    cost_s=time.perf_counter() - t3)

    def remove_row(self, group_scores, fraction, criterion, scope) -> dict:
        """Physically remove the selected channels from a fresh copy of the base model."""
        t0 = time.perf_counter()
        plan = self.plan()
        pruned = _for_device(plan.apply(self.base, plan.select(group_scores, fraction, criterion, scope)),
                             self.device)
        t1 = time.perf_counter()
        pruned = self.adjust(pruned, None)
        t2 = time.perf_counter()
        ev = _evaluate(pruned, self.data, self.batch_size)
        t3 = time.perf_counter()
        n_params = count_parameters(pruned)
        n_flops = count_flops(pruned, self.example)
        lat = self.latencies(pruned)
        return dict(test_acc=ev["acc"], test_loss=ev["loss"], params=n_params, params_effective=n_params,
                    flops=n_flops, flops_effective=n_flops, latency_b1_ms=lat[0], latency_b128_ms=lat[1],
                    prune_s=t1 - t0, adjust_s=t2 - t1, eval_s=t3 - t2, cost_s=time.perf_counter() - t3)
