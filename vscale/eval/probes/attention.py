"""What the probes need from a model's attention, for every kernel and intervention the registered
pipeline (`vscale.model.pipeline`) wraps: the weights materialised, and the decoder layers' outputs."""

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from vscale.model.pipeline import PREFIX, decoder_layers, route_through_pipeline


@contextlib.contextmanager
def materialised_attention(model: nn.Module) -> Iterator[None]:
    """Inside the block the model attends with the `eager` kernel (inside its registered pipeline
    when it has one, so V-scale and the attention arm stay), whose second output is the weights
    a_tj; on exit the model's own kernel is restored. Fused kernels never form the weights."""
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    if original.startswith(PREFIX):
        route_through_pipeline(model)
    try:
        yield
    finally:
        model.set_attn_implementation(original)


def attention_weights(output, layer: int) -> torch.Tensor:
    """The (batch, heads, queries, tokens) weights an attention module returned under
    `materialised_attention`. Arms with keys that are not tokens (`sink_logit`'s slot, `kv_bias`'s
    key) prepend them (vscale.model.interventions); their columns are dropped, so column j is token j (the
    slots' share is `sink/extra_mass`)."""
    weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
    if weights is None:
        raise RuntimeError(
            f"layer {layer}'s attention returned no weights under the eager kernel; "
            "its attention arm does not form them."
        )
    return weights[..., -weights.shape[-2] :]


@torch.no_grad()
def layer_outputs(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, start: int = 0
) -> torch.Tensor:
    """h_out of every decoder layer at positions `start`.., (layers, batch, tokens, d_model), in
    float64 (1 - cos of nearly equal vectors needs the digits)."""
    captured: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_hook(
            lambda m, args, out: captured.append((out[0] if isinstance(out, tuple) else out)[:, start:].double())
        )
        for layer in decoder_layers(model)
    ]
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(captured)
