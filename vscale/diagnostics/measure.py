"""Diagnosing a model outside training: every method §3 metric from probed forward and backward
passes of the LM loss, for any model `apply_interventions` accepts, patched or not."""

import torch
from torch import nn

from vscale.diagnostics import metrics
from vscale.diagnostics.pooling import Pooled, flatten
from vscale.diagnostics.probe import Probe
from vscale.errors import ConfigError
from vscale.model.pipeline import is_routed, route_through_pipeline, unroute


def check_seq_len(seq_len: int, field: str = "input_ids") -> None:
    if seq_len < metrics.WINDOW:
        raise ConfigError(
            f"{field}: diagnostics need rows of at least {metrics.WINDOW} tokens "
            f"(token 0 plus the early window 1..{metrics.T_E}); got {seq_len}."
        )


def _probe_step(model: nn.Module, input_ids: torch.Tensor, all_token_norms: bool = False) -> Probe:
    """One probed forward and backward of the LM loss; parameter gradients are left untouched and an
    unpatched model is routed through the attention pipeline (identical forward and backward) for
    the measurement only."""
    check_seq_len(input_ids.shape[1])
    unpatched = not is_routed(model)
    if unpatched:
        route_through_pipeline(model)
    try:
        embeds = model.get_input_embeddings()(input_ids).detach().requires_grad_()
        with Probe(model, all_token_norms) as probe:
            loss = model(inputs_embeds=embeds, labels=input_ids, use_cache=False).loss
            torch.autograd.grad(loss, embeds)
        return probe
    finally:
        if unpatched:
            unroute(model)


def diagnose(model: nn.Module, input_ids: torch.Tensor) -> dict[str, float]:
    """Every method §3 metric from one forward and backward of the LM loss on `input_ids`
    (unpadded packed rows), for any model `apply_vscale` accepts, patched or not."""
    pooled = Pooled(sync=False)
    pooled.update(_probe_step(model, input_ids).sums())
    return flatten(pooled.compute())


HEAD_METRICS = ("sink/alpha", "sink/m0", "sink/s0")
"""The sink statistics also kept per query head (method §3: alpha_h, M_0, S_0 of each head)."""


def diagnose_batches(model: nn.Module, batches) -> tuple[dict[str, float], torch.Tensor, dict[str, list[list[float]]]]:
    """Every method §3 metric pooled over all rows of `batches` (not an average of per-batch
    ratios), ||G_t|| = ||dL/dh~_t|| of every layer, row and token ((layers, rows, tokens), on
    the CPU), and the `HEAD_METRICS` per layer and query head (layers x heads lists, row means:
    the per-layer metrics average them over heads), from the same forward and backward passes."""
    pooled, norms = Pooled(sync=False), []
    for batch in batches:
        probe = _probe_step(model, batch, all_token_norms=True)
        pooled.update(probe.sums())
        norms.append(torch.stack([rec["g_norms"] for rec in probe.records]).cpu())
    means = pooled.means()
    heads = {name: means[name].tolist() for name in HEAD_METRICS}
    return flatten(metrics.per_layer(means)), torch.cat(norms, dim=1), heads
