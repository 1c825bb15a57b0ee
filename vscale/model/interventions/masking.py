"""The attention mask an arm applies itself (or hands the kernel with a key slot prepended),
read from whatever the model's mask function produced: nothing (causal rows, SDPA's
`is_causal`), a boolean mask, or an additive float mask (eager); and `slot_attention`, which
keeps the fused kernel's causal path for a slot every query reads."""

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward


def allowed_keys(attention_mask: torch.Tensor | None, q_len: int, k_len: int, device) -> torch.Tensor:
    """Which keys each query may read, boolean, broadcastable to (batch, heads, q_len, k_len).
    Without a mask the rows are causal, aligned at the last key (as in decoding with a cache)."""
    if attention_mask is None:
        query_pos = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
        return (torch.arange(k_len, device=device)[None, :] <= query_pos)[None, None]
    mask = attention_mask[..., :k_len]
    return mask if mask.dtype == torch.bool else mask == 0


def with_slot(allowed: torch.Tensor) -> torch.Tensor:
    """`allowed` with a key slot in front that every query reads."""
    slot = torch.ones(*allowed.shape[:-1], 1, dtype=torch.bool, device=allowed.device)
    return torch.cat([slot, allowed], dim=-1)


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The boolean mask as the additive float mask both the SDPA and the eager kernel accept."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def slot_attention(module, query, key, value, attention_mask, kernel, **kwargs):
    """The kernel on keys and values whose first position is a slot every query reads.

    Causal rows with no mask on SDPA (its `is_causal` path) stay on that path: a dummy query is put in
    front, so the causal rule "query i reads keys 0..i" lets real query t read the slot and tokens
    0..t, and the dummy's output is dropped. The kernel keeps its causal block skipping, where an
    explicit mask would make it score every block. Other masks get the slot column added."""
    B, H, T, d = query.shape
    if kernel is sdpa_attention_forward and attention_mask is None and T == key.shape[2] - 1 and T > 1:
        q = torch.cat([query.new_zeros(B, H, 1, d), query], dim=2)
        out, weights = kernel(module, q, key, value, None, **kwargs)
        return out[:, 1:], weights  # the kernel returns (batch, tokens, heads, head_dim)
    mask = additive(with_slot(allowed_keys(attention_mask, T, key.shape[2] - 1, query.device)), query.dtype)
    return kernel(module, query, key, value, mask, **kwargs)
