"""V-scale (docs/method.md §2): the value-path intervention, its math, modes and module; torch only.

    r = ||v||^2,   phi(r) = r / (r + C),   v^ = phi(r) v,   C = d_model * d_head * sigma^2 * lambda

Values arrive as (batch, kv_heads, tokens, head_dim); `C` broadcasts per key/value head.
Norms are taken in at least float32 so that bf16 values do not lose the contraction to rounding.
"""

import math
from typing import Literal, get_args

import torch
from torch import nn

from vscale.errors import ConfigError

Mode = Literal["off", "fixed", "learned", "backward"]
MODES: tuple[str, ...] = get_args(Mode)
SIGMA = 0.02


def vscale_constant(d_model: int, d_head: int, sigma: float = SIGMA) -> float:
    """C / lambda: the norm^2 a value with i.i.d. N(0, sigma^2) weights would have (docs/method.md §2)."""
    return d_model * d_head * sigma**2


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32: bf16/fp16 are widened, float64 is kept."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def phi(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """phi(||v||^2) per token, keeping the last dim for broadcasting."""
    r = _wide(v).pow(2).sum(-1, keepdim=True)
    return r / (r + c)


def scale_values(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """v^ = phi(||v||^2) v, differentiable in both v and c (modes `fixed` and `learned`)."""
    return v * phi(v, c).to(v.dtype)


def vscale_jacobian_vjp(v: torch.Tensor, g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """J^T g with J = phi I + (2C/(r+C)^2) v v^T (symmetric, so J^T = J)."""
    v, g32 = _wide(v), _wide(g)
    r = v.pow(2).sum(-1, keepdim=True)
    vg = (v * g32).sum(-1, keepdim=True)
    return ((r / (r + c)) * g32 + (2 * c / (r + c).pow(2)) * vg * v).to(g.dtype)


class _BackwardOnly(torch.autograd.Function):
    """Forward: v unchanged. Backward: the V-scale Jacobian applied to the value gradient.

    Equal to the surrogate of docs/method.md §2, sg(v) + (phi v - sg(phi v)) but with a forward that is
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


def check_mode(mode: str, lam: float = 1.0) -> None:
    """Fail before any compute on a mode or lambda that docs/method.md §2 does not define."""
    if mode not in MODES:
        raise ConfigError(
            f"unknown V-scale mode {mode!r} (model.vscale, "
            f"or apply_vscale(mode=...)); choose one of {', '.join(MODES)}."
        )
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise ConfigError(
            f"V-scale lambda={lam!r} (model.vscale_lambda, or apply_vscale(lam=...)) must be a finite number > 0, "
            "since C = d_model*d_head*sigma^2*lambda; 1.0 is the default of docs/method.md §2."
        )


class VScale(nn.Module):
    """Per-layer V-scale on values of shape (batch, kv_heads, tokens, head_dim); `mode` and `lam`
    are checked where they enter (`check_mode`, called by `vscale.model.checks`).

    theta (one per key/value head, lambda = exp(theta)) is a trained parameter only in mode
    `learned`; elsewhere it is a non-persistent buffer, so no other mode adds parameters or
    state-dict keys.
    """

    def __init__(self, mode: str, num_kv_heads: int, d_model: int, d_head: int, lam: float = 1.0, sigma: float = SIGMA):
        super().__init__()
        self.mode = mode
        self.sigma = sigma
        self.c0 = vscale_constant(d_model, d_head, sigma)
        theta = torch.full((num_kv_heads,), math.log(lam))
        if mode == "learned":
            self.theta = nn.Parameter(theta)
        else:
            self.register_buffer("theta", theta, persistent=False)

    def constant(self) -> torch.Tensor:
        """C_{l,h} shaped to broadcast over (batch, kv_heads, tokens, 1)."""
        return (self.c0 * self.theta.exp()).view(1, -1, 1, 1)

    def lambdas(self) -> torch.Tensor:
        return self.theta.detach().float().exp()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.mode == "off":
            return v
        if self.mode == "backward":
            return scale_values_backward_only(v, self.constant())
        return scale_values(v, self.constant())

    def extra_repr(self) -> str:
        return f"mode={self.mode}, kv_heads={self.theta.numel()}, c0={self.c0:g}"
