"""LSE_t, the log-sum-exp of each causal attention row, and the weights on token 0 it gives,
a_t0 = exp(<q_t,k_0> * scaling - LSE_t) (method §3), without the T x T matrix.

Fused attention kernels compute it anyway and PyTorch's return it: the CPU flash kernel, and on
CUDA the flash (fp16/bf16) and memory-efficient (fp32) kernels. Elsewhere, or where a kernel
refuses the inputs, it is recomputed in query chunks of bounded size.
"""

import torch


def _expand_kv(k: torch.Tensor, heads: int) -> torch.Tensor:
    """GQA: each key head repeated for the query heads that read it."""
    return k.repeat_interleave(heads // k.shape[1], dim=1)


def _cuda_lse(q: torch.Tensor, k: torch.Tensor, scaling: float) -> torch.Tensor:
    k = _expand_kv(k, q.shape[1])
    if q.dtype in (torch.float16, torch.bfloat16):
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, k, 0.0, True, False, scale=scaling)
    else:
        out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, k, None, True, 0.0, True, scale=scaling)
    return out[1][..., : q.shape[2]]  # the efficient kernel pads the query dimension


def fused_lse(q: torch.Tensor, k: torch.Tensor, scaling: float) -> torch.Tensor | None:
    """LSE_t (batch, heads, tokens) from PyTorch's fused causal attention where it returns it,
    None where no fused kernel applies (other devices or dtypes, or a kernel that refuses)."""
    if q.device.type == "cpu" and q.dtype in (torch.float32, torch.bfloat16, torch.float16):
        k = _expand_kv(k, q.shape[1])
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, k, 0.0, True, scale=scaling)[1]
    if q.device.type == "cuda" and q.dtype in (torch.float32, torch.bfloat16, torch.float16):
        return unless_unavailable(_cuda_lse, q.contiguous(), k.contiguous(), scaling)
    return None


def unless_unavailable(kernel, *args):
    """`kernel(*args)`, or None where no kernel applies (head size, architecture, layout). Running out of
    memory is raised, not taken for that: the recomputed fallback would need more memory still."""
    try:
        return kernel(*args)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        return None


def recomputed_lse(q: torch.Tensor, k: torch.Tensor, scaling: float, max_elements: int = 2**25) -> torch.Tensor:
    """LSE_t of the causal rows in query chunks of at most `max_elements` scores, so the T x T
    matrix is never materialised. GQA query heads are grouped under their key head."""
    B, H, T, d = q.shape
    groups = k.shape[1]
    q = q.float().view(B, groups, H // groups, T, d)
    k = k.float().unsqueeze(2)
    lse = q.new_empty(B, groups, H // groups, T)
    chunk = max(1, max_elements // (B * H * T))
    pos = torch.arange(T, device=q.device)
    for start in range(0, T, chunk):
        stop = min(T, start + chunk)
        causal = torch.zeros(stop - start, stop, device=q.device).masked_fill_(
            pos[:stop] > pos[start:stop, None], float("-inf")
        )
        scores = (q[..., start:stop, :] @ k[..., :stop, :].transpose(-1, -2)).mul_(scaling).add_(causal)
        lse[..., start:stop] = scores.logsumexp(-1)
    return lse.view(B, H, T)


def causal_lse(q: torch.Tensor, k: torch.Tensor, scaling: float, fused: bool = True) -> torch.Tensor:
    """LSE_t in float32: from a fused kernel when `fused` and one applies, else recomputed."""
    lse = fused_lse(q, k, scaling) if fused else None
    return (recomputed_lse(q, k, scaling) if lse is None else lse).float()


@torch.no_grad()
def token0_weights(
    q: torch.Tensor, k: torch.Tensor, scaling: float, slot: torch.Tensor | None = None, fused: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """a_t0 = exp(<q_t,k_0> * scaling - LSE_t), (batch, heads, tokens), in float32; keys may have
    fewer (GQA) heads than queries. With `slot`, the logits (broadcastable to (batch, heads,
    tokens)) of a key that is not a token but joins every normaliser (a sink logit, a bias key),
    LSE_t includes it and the slot's own weight exp(slot_t - LSE_t) is returned too."""
    B, H, T, d = q.shape
    k0 = k[:, :, :1].float().repeat_interleave(H // k.shape[1], dim=1)
    s0 = (q.float() @ k0.transpose(-1, -2)).squeeze(-1) * scaling
    lse = causal_lse(q, k, scaling, fused)
    if slot is None:
        return (s0 - lse).exp(), None
    lse = torch.logaddexp(lse, slot.float())
    return (s0 - lse).exp(), (slot.float() - lse).exp()


def attention_to_token0(q: torch.Tensor, k: torch.Tensor, scaling: float, fused: bool = True) -> torch.Tensor:
    """a_t0 of plain softmax attention (no slot)."""
    return token0_weights(q, k, scaling, fused=fused)[0]
