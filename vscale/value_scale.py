"""The math of V-scale (SPEC §2), and nothing else.

    r = ||v||^2,   phi(r) = r / (r + C),   v^ = phi(r) v,   C = d_model * d_head * sigma^2 * lambda

Values arrive as (batch, kv_heads, tokens, head_dim); `C` broadcasts per key/value head.
Norms are taken in float32 so that bf16 values do not lose the contraction to rounding.
"""

import torch

MODES = ("off", "fixed", "learned", "backward")
SIGMA = 0.02


def vscale_constant(d_model: int, d_head: int, sigma: float = SIGMA) -> float:
    """C / lambda: the norm^2 a value with i.i.d. N(0, sigma^2) weights would have (SPEC §2)."""
    return d_model * d_head * sigma**2


def phi(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """phi(||v||^2) per token, in float32, keeping the last dim for broadcasting."""
    r = v.float().pow(2).sum(-1, keepdim=True)
    return r / (r + c)


def scale_values(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """v^ = phi(||v||^2) v, differentiable in both v and c (modes `fixed` and `learned`)."""
    return v * phi(v, c).to(v.dtype)


def vscale_jacobian_vjp(v: torch.Tensor, g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """J^T g with J = phi I + (2C/(r+C)^2) v v^T (symmetric, so J^T = J)."""
    v32, g32 = v.float(), g.float()
    r = v32.pow(2).sum(-1, keepdim=True)
    vg = (v32 * g32).sum(-1, keepdim=True)
    out = (r / (r + c)) * g32 + (2 * c / (r + c).pow(2)) * vg * v32
    return out.to(g.dtype)


class _BackwardOnly(torch.autograd.Function):
    """Forward: v unchanged. Backward: the V-scale Jacobian applied to the value gradient.

    Equal to the SPEC's surrogate sg(v) + (phi v - sg(phi v)) but with a forward that is
    bit-identical to `off` by construction (no `x + (y - y)` round trip).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v, c)
        return v.view_as(v)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        v, c = ctx.saved_tensors
        return vscale_jacobian_vjp(v, g, c), None


def scale_values_backward_only(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mode `backward`: forward is v, value gradient is J^T g; no gradient reaches C."""
    return _BackwardOnly.apply(v, c.detach())
