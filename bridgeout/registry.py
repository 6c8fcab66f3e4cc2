"""The names the project knows, defined once: datasets, models, regularizers (with how each is
drawn), protocols, precisions, and the pruning criteria, scopes, modes and pruners.

The bottom floor, plain Python: the result tables validate their columns against these names
without importing torch or the training stack, and the modules that give the names their
behaviour (``data``, ``models``, ``train``, ``prune``, ``plots``) take them from here.

Adding a regularizer: one :class:`Regularizer` entry below, its layer in
:mod:`bridgeout.regularizers` (``CONV_LAYERS`` or ``ACTIVATION_LAYERS``) or its penalty in
:mod:`bridgeout.sparsity`, and its tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from .protocols import PROTOCOLS

__all__ = ["DATASETS", "MODELS", "Regularizer", "REGULARIZER_TABLE", "REGULARIZERS", "WEIGHT_REGULARIZERS",
           "ACTIVATION_REGULARIZERS", "PENALTIES", "PROTOCOL_NAMES", "SELECT", "PRECISIONS", "CRITERIA",
           "SCOPES", "ONLY", "only_unit", "check_scope", "SCOPE_NAMES", "MODES", "FRACTIONS", "PRUNERS", "RUNTIMES"]

DATASETS = ("cifar10", "cifar100", "mnist")
MODELS = ("vgg16", "resnet", "wrn28_10", "wrn", "lenet5")


@dataclass(frozen=True)
class Regularizer:
    """One regularizer: its ``name`` (the ``regularizer`` column), where it acts (``kind``:
    ``"weights"`` -- noise on a conv's weights, ``"activations"`` -- noise after a conv,
    ``"penalty"`` -- a term of the loss, ``"none"``), its legend ``label``, and its ``colour``
    (Okabe & Ito 2008, distinguishable with the common colour-vision deficiencies) and
    ``marker`` (for grey-scale print).

    Attributes:
        name: the name (the ``regularizer`` column).
        kind: ``"weights"``, ``"activations"``, ``"penalty"`` or ``"none"``.
        label: the legend label.
        colour: the colour (hex).
        marker: the matplotlib marker.
    """

    name: str
    kind: str
    label: str
    colour: str
    marker: str


REGULARIZER_TABLE = (
    Regularizer("bridgeout", "weights", "Batch Bridgeout", "#0072B2", "o"),          # blue
    Regularizer("dropout", "activations", "Dropout", "#E69F00", "s"),                # orange
    Regularizer("weight_decay", "none", "Weight decay only", "#009E73", "^"),        # bluish green
    Regularizer("sparseout", "activations", "Sparseout", "#CC79A7", "D"),            # reddish purple
    Regularizer("dropconnect", "weights", "DropConnect", "#D55E00", "v"),            # vermillion
    Regularizer("slimming", "penalty", "Network Slimming", "#56B4E9", "P"),          # sky blue
    Regularizer("group_lasso", "penalty", "Group lasso", "#000000", "X"),            # black
)
REGULARIZERS = tuple(r.name for r in REGULARIZER_TABLE)
WEIGHT_REGULARIZERS = tuple(r.name for r in REGULARIZER_TABLE if r.kind == "weights")
ACTIVATION_REGULARIZERS = tuple(r.name for r in REGULARIZER_TABLE if r.kind == "activations")
PENALTIES = tuple(r.name for r in REGULARIZER_TABLE if r.kind == "penalty")

#: Training protocols (their schedules: :data:`bridgeout.protocols.PROTOCOLS`).
PROTOCOL_NAMES = tuple(PROTOCOLS)
#: Which weights a run reports: those after the last epoch, or the best on the test set.
SELECT = ("final", "best_test")
#: Training precisions: ``fp32`` throughout, or ``bf16`` autocast with BatchNorm and loss in fp32.
PRECISIONS = ("fp32", "bf16")

CRITERIA = ("l2", "l1", "random", "orthogonality", "bn_scale")
SCOPES = ("layer", "global")
#: Prefix of the one-layer scope ``"only:<k>"``: the per-layer ranking applied to the k-th
#: prunable conv (counting from 1, in conv order) alone, every other layer left intact (mask
#: mode only): where does the collapse happen?
ONLY = "only:"
MODES = ("mask", "remove")
#: The fractions of filters a sweep prunes by default (the paper's 0 %, 10 %, ..., 90 %).
FRACTIONS = tuple(i / 10 for i in range(10))
#: Which pruner (the pruning rows' ``pruner`` column): the filters alone, the authors' (which
#: also zeroes the BatchNorm scales), or zeroing with each channel's mean output kept.
PRUNERS = ("plain", "published", "mean")
#: Runtimes of the ``latency`` table.
RUNTIMES = ("torch", "onnxruntime")


def only_unit(scope: str) -> int | None:
    """The 0-based unit of an ``"only:<k>"`` scope, None for :data:`SCOPES`.

    Args:
        scope: a scope name (not validated; see :func:`check_scope`).

    Returns:
        ``k - 1`` for ``"only:<k>"``, else ``None``.
    """
    return int(scope[len(ONLY):]) - 1 if scope.startswith(ONLY) else None


def check_scope(scope) -> str:
    """``scope`` if it is one of :data:`SCOPES` or ``"only:<k>"`` with an integer k >= 1, else a
    ValueError naming it and what is allowed.

    Args:
        scope: the scope to check.

    Returns:
        ``scope`` unchanged.

    Raises:
        ValueError: ``scope`` is neither one of :data:`SCOPES` nor ``"only:<k>"`` with k >= 1.
    """
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
