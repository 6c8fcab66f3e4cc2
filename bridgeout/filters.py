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

__all__ = ["FILTER_COLUMNS", "conv_batchnorm_pairs", "filter_table"]

FILTER_COLUMNS = ("layer", "filter", "norm", "gamma", "beta", "bn_mean", "bn_var")


def _example_input(model: nn.Module) -> torch.Tensor:
    from .prune import default_example_input
    return default_example_input(model)


@torch.no_grad()
def conv_batchnorm_pairs(model: nn.Module, example_input: torch.Tensor | None = None) -> dict[str, str | None]:
    """``{conv name: name of the BatchNorm2d whose input is that conv's output, or None}``
    for every ``nn.Conv2d`` of ``model``, found by one eval-mode forward of
    ``example_input`` (default: one image of the model's input shape) with hooks."""
    x = _example_input(model) if example_input is None else example_input
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}
    pairs: dict[str, str | None] = {n: None for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}

    def conv_hook(mod, args, out):
        produced[id(out)] = names[mod]

    def bn_hook(mod, args):
        conv = produced.get(id(args[0]))
        if conv is not None and pairs.get(conv) is None:
            pairs[conv] = names[mod]

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            handles.append(m.register_forward_pre_hook(bn_hook))
    was_training = model.training
    model.eval()
    try:
        model(x.to(next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return pairs


@torch.no_grad()
def filter_table(model: nn.Module, example_input: torch.Tensor | None = None) -> pd.DataFrame:
    """One row per output filter of every ``nn.Conv2d``: :data:`FILTER_COLUMNS`.

    ``norm`` is the L2 norm of the filter's weights ``||W[f]||_2``; ``gamma`` and ``beta``
    are ``weight[f]`` and ``bias[f]`` of the BatchNorm fed by the conv
    (:func:`conv_batchnorm_pairs`), ``bn_mean`` and ``bn_var`` its ``running_mean[f]`` and
    ``running_var[f]``; NaN when there is none (or it is not affine / keeps no running
    statistics). Layers are in module order. With these four, the channel's eval-mode output
    is ``gamma (x - bn_mean) / sqrt(bn_var + eps) + beta``.
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
