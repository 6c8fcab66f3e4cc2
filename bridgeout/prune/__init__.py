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

The package, one job per file (Torch-Pruning's split): :mod:`~bridgeout.prune.scores`
(importance and selection), :mod:`~bridgeout.prune.mask`, :mod:`~bridgeout.prune.remove`,
:mod:`~bridgeout.prune.oneshot` (:func:`prune`), :mod:`~bridgeout.prune.sweeps`,
:mod:`~bridgeout.prune.costs` (FLOPs, parameters, latency, ONNX),
:mod:`~bridgeout.prune.repair` (BatchNorm re-estimation, mean replacement, fine-tuning) and
:mod:`~bridgeout.prune.published` (the authors' BatchNorm-scale pruning). The names below are
re-exported here, so ``bridgeout.prune.sweep(...)`` and ``from bridgeout.prune import select``
work as before the split.
"""
from __future__ import annotations

from . import costs, published, repair
from .costs import count_flops, measure_latency
from .mask import zeroed_filters
from .oneshot import prune
from .remove import RemovalPlan
from .repair import recalibrate_batchnorm
from .scores import filter_scores, n_pruned, select
from .sweeps import DEFAULT_FRACTIONS, sweep, SWEEP_COLUMNS
from ..introspect import conv_layers as prunable_convs, count_parameters, default_example_input
from ..registry import check_scope, CRITERIA, MODES, ONLY, only_unit, PRUNERS, SCOPE_NAMES, SCOPES

__all__ = [
    "CRITERIA", "SCOPES", "SCOPE_NAMES", "ONLY", "PRUNERS", "check_scope", "only_unit", "MODES",
    "DEFAULT_FRACTIONS", "SWEEP_COLUMNS", "prune", "sweep", "filter_scores", "prunable_convs", "n_pruned",
    "select", "zeroed_filters", "RemovalPlan", "count_flops", "count_parameters", "measure_latency",
    "recalibrate_batchnorm", "default_example_input", "costs", "repair", "published",
]
