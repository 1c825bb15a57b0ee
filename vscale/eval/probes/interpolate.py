"""`eval.py interpolate`: where do plateaus and cliffs along a path in the residual stream come from,
attention or MLP?

Two residual vectors are taken at the input of decoder layer l: h_A at position p_A of prompt A and
h_B at position p_B of prompt B (two tokens: the same prompt with another token at p). Prompt A then
runs once per step of alpha = 0..1 with its residual entering layer l at p_A replaced by
h(alpha) = (1 - alpha) h_A + alpha h_B, everything else (the context, the other positions) as in A.
At that layer and position the probe records each query head's attention output o_h = W_O[:, h] y_h
(the head's slice of o_proj; a bias of o_proj belongs to no head and is left out), its attention to
token 0 and to each chosen target position (the attention row a plateau between two target tokens
shows in), the MLP output r_mlp, the output h_out of this layer and of every later one, and the logits.

For each component f, progress(alpha) = <f(alpha) - f(0), f(1) - f(0)> / ||f(1) - f(0)||^2 is 0 at
A and 1 at B and equals alpha for a linear map: a plateau is a flat stretch, a cliff a jump. The
steepest step, max |d progress / d alpha| over the grid, summarises it (1 for a linear map).
"""

import torch
from torch import nn

from vscale.errors import ConfigError
from vscale.eval.probes.attention import attention_weights, materialised_attention
from vscale.model.pipeline import TAP, decoder_layers, is_routed, route_through_pipeline, unroute


def check_path(n_layers: int, layer: int, steps: int, positions: dict[str, tuple[int, int]]) -> None:
    """The layer exists, the path has both ends, and each position lies inside its prompt
    (`positions`: field -> (position, prompt length)); before any compute."""
    if not 0 <= layer < n_layers:
        raise ConfigError(f"--layer {layer}: the model has {n_layers} decoder layers; give 0..{n_layers - 1}.")
    if steps < 2:
        raise ConfigError(f"--steps {steps}: the path needs at least 2 points (alpha = 0 and 1).")
    for field, (position, length) in positions.items():
        if not -length <= position < length:
            raise ConfigError(
                f"--position {position}: {field} has {length} tokens; "
                f"give a position in {-length}..{length - 1} (negative counts from the end)."
            )


@torch.no_grad()
def residual_at(model: nn.Module, input_ids: list[int], layer: int, position: int) -> torch.Tensor:
    """The residual stream entering decoder layer `layer` at `position`, (d_model,)."""
    captured = []
    hook = decoder_layers(model)[layer].register_forward_pre_hook(
        lambda m, args: captured.append(args[0][0, position].clone())
    )
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


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


@torch.no_grad()
def aligned_residual(
    model: nn.Module, input_ids: list[int], layer: int, position: int, key_position: int
) -> torch.Tensor:
    """A residual entering `layer` at `position` whose query points, in every head, along the key (after RoPE) of
    `key_position`, as long as the residual there: the endpoint of a path on which the query turns from one key to
    another. Solved through RMSNorm, W_Q (least squares; exact when W_Q is square), a q_norm if the model has one,
    and RoPE at `position`; a q_proj bias (Qwen2) is not accounted for, so there it aligns only roughly."""
    attn, norm = decoder_layers(model)[layer].self_attn, decoder_layers(model)[layer].input_layernorm
    seen: dict = {}
    hook = attn.register_forward_pre_hook(
        lambda m, args, kwargs: seen.__setitem__("rope", kwargs["position_embeddings"]), with_kwargs=True
    )
    setattr(
        attn, TAP, lambda arm, q, k, v, scaling: seen.__setitem__("k", k[0, :, key_position % len(input_ids)].double())
    )
    routed = is_routed(model)
    route_through_pipeline(model)
    try:
        residual = residual_at(model, input_ids, layer, position)
    finally:
        hook.remove()
        delattr(attn, TAP)
        if not routed:
            unroute(model)
    cos, sin = (x[0, position % len(input_ids)].double() for x in seen["rope"])
    target = seen["k"].repeat_interleave(
        model.config.num_attention_heads // seen["k"].shape[0], dim=0
    )  # (heads, head_dim)
    query = target * cos - _rotate_half(target) * sin  # RoPE undone at the query's position
    if getattr(attn, "q_norm", None) is not None:
        query = query / attn.q_norm.weight.double()
    normed = torch.linalg.lstsq(attn.q_proj.weight.double(), query.reshape(-1, 1)).solution.squeeze(-1)
    h = normed / norm.weight.double()
    return (h * residual.double().norm() / h.norm()).to(residual.dtype)


@torch.no_grad()
def interpolate(
    model: nn.Module,
    prompt_a: list[int],
    prompt_b: list[int],
    layer: int,
    position: int,
    steps: int,
    targets: list[int] = (0,),
    align_keys: tuple[int, int] | None = None,
) -> dict:
    """The path from prompt_a's to prompt_b's residual entering `layer` at `position` (each prompt's own
    position when negative), run in prompt_a's context; see the module docstring. Recorded along it: each
    head's output and its attention to each of `targets` (positions of prompt A), the MLP output, the
    output of this layer and every later one, and the logits at the position. With `align_keys` (two positions of
    prompt A) the ends are instead residuals whose query points at each of those keys (`aligned_residual`), both in
    prompt A's context."""
    layers = decoder_layers(model)
    check_path(
        len(layers), layer, steps, {"prompt A": (position, len(prompt_a)), "prompt B": (position, len(prompt_b))}
    )
    check_targets(targets, len(prompt_a))
    p_a, p_b = position % len(prompt_a), position % len(prompt_b)
    if align_keys is None:
        h_a, h_b = residual_at(model, prompt_a, layer, p_a), residual_at(model, prompt_b, layer, p_b)
    else:
        h_a, h_b = (aligned_residual(model, prompt_a, layer, p_a, j) for j in align_keys)
    alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
    seen = _run_path(
        model,
        prompt_a,
        layer,
        p_a,
        ((1 - alphas[:, None]) * h_a.double() + alphas[:, None] * h_b.double()).to(h_a.dtype),
    )
    attn = layers[layer].self_attn
    heads, head_dim = model.config.num_attention_heads, attn.head_dim
    w_o = attn.o_proj.weight.double()
    y = seen["y"].view(steps, heads, head_dim)
    outputs = [y[:, h] @ w_o[:, h * head_dim : (h + 1) * head_dim].T for h in range(heads)]  # (steps, d_model) per head
    rows = {t % len(prompt_a): seen["weights"][:, :, t % len(prompt_a)] for t in targets}
    later = [{"layer": l, **summary(seen[f"h_out/{l}"], alphas)} for l in range(layer, len(layers))]
    return {
        "layer": layer,
        "position": p_a,
        "position_b": p_b,
        "alphas": alphas.tolist(),
        "targets": sorted(rows),
        "heads": [
            summary(o, alphas)
            | {
                "attention_to_token0": seen["weights"][:, h, 0].tolist(),
                "attention": {str(t): row[:, h].tolist() for t, row in rows.items()},
            }
            for h, o in enumerate(outputs)
        ],
        "mlp": summary(seen["mlp"], alphas),
        "residual": later[0],
        "layers": later,
        "logits": summary(seen["logits"], alphas) | {"top_token": seen["logits"].argmax(-1).tolist()},
    }


def check_targets(targets: list[int], length: int, field: str = "--targets") -> None:
    if not targets or any(not -length <= t < length for t in targets):
        raise ConfigError(
            f"{field} {list(targets)}: give positions of prompt A ({length} "
            f"tokens) in {-length}..{length - 1}, e.g. [0] for token 0."
        )


def _run_path(
    model: nn.Module, prompt_a: list[int], layer: int, p_a: int, path: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Prompt A once per point of `path`, the residual entering `layer` at `p_a` replaced by the point; what
    the layer's heads, attention row and MLP, every layer from it on, and the logits give at `p_a`."""
    layers = decoder_layers(model)
    block, attn = layers[layer], layers[layer].self_attn
    seen: dict[str, torch.Tensor] = {}

    def replace(module, args):
        hidden = args[0].clone()
        hidden[:, p_a] = path
        return (hidden, *args[1:])

    def keep(key: str):
        return lambda m, args, out: seen.__setitem__(key, (out[0] if isinstance(out, tuple) else out)[:, p_a].double())

    hooks = [
        block.register_forward_pre_hook(replace),
        attn.o_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("y", args[0][:, p_a].double())),
        attn.register_forward_hook(
            lambda m, args, out: seen.__setitem__("weights", attention_weights(out, layer)[:, :, p_a].double())
        ),
        block.mlp.register_forward_hook(keep("mlp")),
        *(layers[l].register_forward_hook(keep(f"h_out/{l}")) for l in range(layer, len(layers))),
    ]
    try:
        with materialised_attention(model):
            logits = model(input_ids=torch.tensor([prompt_a] * len(path), device=model.device), use_cache=False).logits
    finally:
        for hook in hooks:
            hook.remove()
    seen["logits"] = logits[:, p_a].double()
    return seen
