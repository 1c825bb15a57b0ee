"""`eval.py interpolate`: where do plateaus and cliffs along a path in the residual stream come from,
attention or MLP?

Two residual vectors are taken at the input of decoder layer l: h_A at position p_A of prompt A and
h_B at position p_B of prompt B (two tokens: the same prompt with another token at p). Prompt A then
runs once per step of alpha = 0..1 with its residual entering layer l at p_A replaced by
h(alpha) = (1 - alpha) h_A + alpha h_B, everything else (the context, the other positions) as in A.
At that layer and position the probe records each query head's attention output o_h = W_O[:, h] y_h
(the head's slice of o_proj; a bias of o_proj belongs to no head and is left out), its attention to
token 0, the MLP output r_mlp and the layer output h_out.

For each component f, progress(alpha) = <f(alpha) - f(0), f(1) - f(0)> / ||f(1) - f(0)||^2 is 0 at
A and 1 at B and equals alpha for a linear map: a plateau is a flat stretch, a cliff a jump. The
steepest step, max |d progress / d alpha| over the grid, summarises it (1 for a linear map).
"""

import torch
from torch import nn

from vscale.model.pipeline import decoder_layers
from vscale.eval.probes.attention import attention_weights, materialised_attention
from vscale.errors import ConfigError


def check_path(n_layers: int, layer: int, steps: int, positions: dict[str, tuple[int, int]]) -> None:
    """The layer exists, the path has both ends, and each position lies inside its prompt
    (`positions`: field -> (position, prompt length)); before any compute."""
    if not 0 <= layer < n_layers:
        raise ConfigError(f"--layer {layer}: the model has {n_layers} decoder layers; give 0..{n_layers - 1}.")
    if steps < 2:
        raise ConfigError(f"--steps {steps}: the path needs at least 2 points (alpha = 0 and 1).")
    for field, (position, length) in positions.items():
        if not -length <= position < length:
            raise ConfigError(f"--position {position}: {field} has {length} tokens; give a position in {-length}..{length - 1} (negative counts from the end).")


@torch.no_grad()
def residual_at(model: nn.Module, input_ids: list[int], layer: int, position: int) -> torch.Tensor:
    """The residual stream entering decoder layer `layer` at `position`, (d_model,)."""
    captured = []
    hook = decoder_layers(model)[layer].register_forward_pre_hook(lambda m, args: captured.append(args[0][0, position].clone()))
    try:
        model(input_ids=torch.tensor([input_ids], device=model.device), use_cache=False, logits_to_keep=1)
    finally:
        hook.remove()
    return captured[0]


def progress(path: torch.Tensor) -> list[float | None]:
    """<f(alpha) - f(0), f(1) - f(0)> / ||f(1) - f(0)||^2 along (steps, dim); None where both ends agree."""
    span = path[-1] - path[0]
    denominator = span.dot(span)
    if denominator == 0:
        return [None] * len(path)
    return (((path - path[0]) @ span) / denominator).tolist()


def steepest(values: list[float | None], alphas: torch.Tensor) -> float | None:
    """max |d progress / d alpha| between neighbouring grid points (1 for a linear map)."""
    if values[0] is None:
        return None
    return (torch.tensor(values, dtype=torch.float64).diff().abs() / alphas.diff()).max().item()


def summary(path: torch.Tensor, alphas: torch.Tensor) -> dict:
    """Norm, progress and steepest step of one component's output along the path."""
    moved = progress(path)
    return {"norm": path.norm(dim=-1).tolist(), "progress": moved, "steepest": steepest(moved, alphas)}


@torch.no_grad()
def interpolate(model: nn.Module, prompt_a: list[int], prompt_b: list[int], layer: int, position: int, steps: int) -> dict:
    """The path from prompt_a's to prompt_b's residual entering `layer` at `position` (each
    prompt's own position when negative), run in prompt_a's context; see the module docstring."""
    layers = decoder_layers(model)
    check_path(len(layers), layer, steps, {"prompt A": (position, len(prompt_a)), "prompt B": (position, len(prompt_b))})
    p_a, p_b = position % len(prompt_a), position % len(prompt_b)
    h_a, h_b = residual_at(model, prompt_a, layer, p_a), residual_at(model, prompt_b, layer, p_b)
    alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
    path = ((1 - alphas[:, None]) * h_a.double() + alphas[:, None] * h_b.double()).to(h_a.dtype)

    block, attn = layers[layer], layers[layer].self_attn
    heads, head_dim = model.config.num_attention_heads, attn.head_dim
    seen: dict[str, torch.Tensor] = {}

    def replace(module, args):
        hidden = args[0].clone()
        hidden[:, p_a] = path
        return (hidden, *args[1:])

    hooks = [block.register_forward_pre_hook(replace),
             attn.o_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("y", args[0][:, p_a].double())),
             attn.register_forward_hook(lambda m, args, out: seen.__setitem__("weights", attention_weights(out, layer)[:, :, p_a, 0].double())),
             block.mlp.register_forward_hook(lambda m, args, out: seen.__setitem__("mlp", out[:, p_a].double())),
             block.register_forward_hook(lambda m, args, out: seen.__setitem__("residual", (out[0] if isinstance(out, tuple) else out)[:, p_a].double()))]
    try:
        with materialised_attention(model):
            model(input_ids=torch.tensor([prompt_a] * steps, device=model.device), use_cache=False, logits_to_keep=1)
    finally:
        for hook in hooks:
            hook.remove()
    w_o = attn.o_proj.weight.double()
    y = seen["y"].view(steps, heads, head_dim)
    outputs = [y[:, h] @ w_o[:, h * head_dim : (h + 1) * head_dim].T for h in range(heads)]  # (steps, d_model) per head
    return {"layer": layer, "position": p_a, "position_b": p_b, "alphas": alphas.tolist(),
            "heads": [summary(o, alphas) | {"attention_to_token0": seen["weights"][:, h].tolist()} for h, o in enumerate(outputs)],
            "mlp": summary(seen["mlp"], alphas), "residual": summary(seen["residual"], alphas)}
