"""`eval.py truncate`: how much of each layer's residual stream comes from beyond the last k tokens.

For each window k the model runs again with attention limited by an explicit banded causal mask:
query t attends the keys j with t - k < j <= t, itself and the k - 1 tokens before it. The sliding
window therefore excludes token 0 unless it is within k (t < k): for every later query it removes
the attention sink along with the distant context. The mask is an additive 4D float mask passed as
`attention_mask`, which transformers hands to the attention function unchanged, so it applies to
every kernel that takes a mask (sdpa, eager) inside the registered pipeline, V-scale and attention
arms included.

Per layer l and window k: 1 - cos(h_out^full_{b,t}, h_out^k_{b,t}) between the layer's output with
the full context and with the window, averaged over rows and over the queries t >= k, every query whose
context the window cuts (or, with `common`, t >= max(windows) for every window, the same positions).
Dropping token 0 mixes the sink with distance; `keep_sink` keeps token 0 in every window (j = 0 or
t - k < j <= t), so the two measurements separate them.

Per layer and query head: the mean attended distance sum_j a_tj (t - j) with the full context,
averaged over rows and all queries t (weights from the eager kernel, `materialised_attention`).
"""

import torch
from torch import nn

from vscale.errors import ConfigError
from vscale.eval.probes.attention import attention_weights, layer_outputs, materialised_attention
from vscale.model.pipeline import decoder_layers, kernel_name

WINDOWS = (1, 2, 5, 10, 20, 50, 100)
MASKED_KERNELS = ("sdpa", "eager")


def check_windows(windows: list[int], seq_len: int | None = None, field: str = "--windows") -> None:
    """Windows of at least one token, each shorter than the rows (when `seq_len` is known), so
    some query loses context."""
    if not windows or min(windows) < 1:
        raise ConfigError(f"{field} {windows}: give one or more windows of at least 1 token, e.g. [1, 2, 5, 10].")
    if seq_len is not None and max(windows) >= seq_len:
        raise ConfigError(
            f"{field}: the window {max(windows)} does not cut rows of {seq_len} tokens (the queries compared are t >= "
            f"the largest window); use windows below {seq_len} or longer rows (--seq_len)."
        )


def check_kernel(model: nn.Module, who: str) -> None:
    """The kernel must take an additive 4D mask; flash-style kernels take none."""
    kernel = kernel_name(model)
    if kernel not in MASKED_KERNELS:
        raise ConfigError(
            f"{who} attends with the {kernel!r} kernel, which takes no 4D attention mask; "
            "load it with attn_implementation 'sdpa' or 'eager'."
        )


def banded_causal_mask(
    seq_len: int, window: int, dtype: torch.dtype, device=None, keep_sink: bool = False
) -> torch.Tensor:
    """(1, 1, T, T) additive mask: 0 where t - window < j <= t (and at j = 0 too with `keep_sink`), the dtype's
    minimum elsewhere (as transformers' own float masks, so exp underflows to exactly 0 and no row is empty)."""
    t = torch.arange(seq_len, device=device)
    allowed = (t[None, :] <= t[:, None]) & ((t[None, :] > t[:, None] - window) | ((t[None, :] == 0) & keep_sink))
    mask = torch.zeros(seq_len, seq_len, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


@torch.no_grad()
def attended_distance(model: nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    """Mean over rows and queries of sum_j a_tj (t - j), (layers, query heads), full context."""
    layers = decoder_layers(model)
    totals: list[torch.Tensor | None] = [None] * len(layers)
    count = 0

    def hook(index):
        def record(module, args, output):
            weights = attention_weights(output, index).double()
            T = weights.shape[-1]
            t = torch.arange(T, device=weights.device, dtype=weights.dtype)
            distance = (weights * (t[:, None] - t[None, :]).clamp_min(0)).sum(-1).sum(dim=(0, 2))  # (heads,)
            totals[index] = distance if totals[index] is None else totals[index] + distance

        return record

    hooks = [layer.self_attn.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with materialised_attention(model):
            for batch in batches:
                model(input_ids=batch, use_cache=False, logits_to_keep=1)
                count += batch.numel()
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(totals) / count


@torch.no_grad()
def truncation(
    model: nn.Module, batches: list[torch.Tensor], windows: list[int], keep_sink: bool = False, common: bool = False
) -> dict[int, list[float]]:
    """{k: [1 - cos per layer]}: each layer's output with the full context against the same with attention to
    the last k tokens (and token 0 with `keep_sink`), mean over rows and the queries t >= k, every query
    whose context the window cuts (t >= max(windows) for all windows with `common`)."""
    seq_len = batches[0].shape[1]
    check_windows(windows, seq_len)
    first = max(windows) if common else min(windows)
    dtype = next(model.parameters()).dtype
    sums, counts = {k: 0.0 for k in windows}, {k: 0 for k in windows}
    for batch in batches:
        full = layer_outputs(model, batch, start=first)
        for k in windows:
            start = first if common else k
            cut = layer_outputs(model, batch, banded_causal_mask(seq_len, k, dtype, batch.device, keep_sink), start)
            sums[k] = sums[k] + (
                1 - torch.nn.functional.cosine_similarity(full[:, :, start - first :], cut, dim=-1)
            ).sum(dim=(1, 2))
            counts[k] += batch.shape[0] * (seq_len - start)
    return {k: (sums[k] / counts[k]).tolist() for k in windows}
