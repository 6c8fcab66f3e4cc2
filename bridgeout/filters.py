"""Per-filter statistics of a trained network: the mechanism the paper invokes, recorded.

The paper explains Batch Bridgeout's robustness to pruning by the bridge penalty driving
whole filters towards small norms, so that zeroing the smallest-norm filters removes little.
Two facts can break that step, which is why the table keeps more than the norm:

* BatchNorm follows every pruned conv: the conv's output is re-standardised, so a filter's
  scale does not reach the loss; what reaches it is the BatchNorm's ``gamma`` and ``beta``.
  Zeroing a filter leaves ``beta`` (a constant channel) in place.
* Targeting spares the largest kernels of every filter, so the noise does not shrink them.

:func:`filter_table` gives one row per output filter of every ``nn.Conv2d``: its L2 norm
(the published pruning criterion) and the ``gamma`` / ``beta`` of the BatchNorm that its
output feeds directly (found by tracing one forward pass, so residual wiring is handled),
empty when none does (e.g. the WRN's pre-activation convs, LeNet-5).
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from .introspect import conv_batchnorm_pairs

__all__ = ["FILTER_COLUMNS", "conv_batchnorm_pairs", "filter_table"]

FILTER_COLUMNS = ("layer", "filter", "norm", "gamma", "beta", "bn_mean", "bn_var")


@torch.no_grad()
def filter_table(model: nn.Module, example_input: torch.Tensor | None = None) -> pd.DataFrame:
    """One row per output filter of every ``nn.Conv2d``: :data:`FILTER_COLUMNS`.

    ``norm`` is the L2 norm of the filter's weights ``||W[f]||_2``; ``gamma`` and ``beta``
    are ``weight[f]`` and ``bias[f]`` of the BatchNorm fed by the conv
    (:func:`conv_batchnorm_pairs`), ``bn_mean`` and ``bn_var`` its ``running_mean[f]`` and
    ``running_var[f]``; NaN when there is none (or it is not affine / keeps no running
    statistics). Layers are in module order. With these four, the channel's eval-mode output
    is ``gamma (x - bn_mean) / sqrt(bn_var + eps) + beta``.

    Args:
        model: the network (not modified).
        example_input: the input traced to pair convs with BatchNorms (default:
            :func:`bridgeout.introspect.default_example_input`).

    Returns:
        the table; empty, with the columns, for a model without convs.
    """
    pairs = conv_batchnorm_pairs(model, example_input)
    mods = dict(model.named_modules())
    parts = []
    for name, bn_name in pairs.items():
        w = mods[name].weight.detach().float()
        norms = w.flatten(1).norm(dim=1).cpu()
        n = norms.numel()
        gamma = beta = mean = var = [math.nan] * n
        bn = mods[bn_name] if bn_name is not None else None
        if bn is not None and bn.affine and bn.num_features == n:
            gamma = bn.weight.detach().float().cpu().tolist()
            beta = bn.bias.detach().float().cpu().tolist()
        if bn is not None and bn.track_running_stats and bn.num_features == n:
            mean = bn.running_mean.detach().float().cpu().tolist()
            var = bn.running_var.detach().float().cpu().tolist()
        parts.append(pd.DataFrame({"layer": name, "filter": range(n), "norm": norms.tolist(),
                                   "gamma": gamma, "beta": beta, "bn_mean": mean, "bn_var": var}))
    if not parts:
        return pd.DataFrame({c: [] for c in FILTER_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out["filter"] = out["filter"].astype("int64")
    return out[list(FILTER_COLUMNS)]
