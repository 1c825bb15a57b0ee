"""Differential attention (Ye et al. 2024, arXiv 2410.05258, DIFF Transformer): each head is the
difference of two softmax maps, over its two sub-heads' queries and keys, with a learnable,
re-parameterised lambda, and a per-head RMSNorm:

    A = softmax(Q1 K1^T / sqrt(d')) - lambda softmax(Q2 K2^T / sqrt(d'))        d' = head_dim / 2
    y = (1 - lambda_init) * RMSNorm(A V)
    lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init,   lambda_init = 0.8 - 0.6 exp(-0.3 l)

with l the 0-based layer index, lq/lk vectors of size d' initialised normal(0, 0.1) and the
RMSNorm (eps 1e-5) gain at 1, as in the paper's code. The model's projections keep their sizes:
a head's query and key split into two sub-heads of head_dim/2 that take alternate RoPE rotation
pairs (pairs (i, i + head_dim/2); sub-head 1 the even i, sub-head 2 the odd), so each sub-head's
scores depend on relative position only (sub-head 1 rotates exactly as a head_dim/2 RoPE would).
Values are whole heads. Two kernel calls; the weights of the map that runs are A.
"""

import math

import torch
from torch import nn

from vscale.errors import ConfigError
from vscale.model.interventions.arm import Arm, head_dim
from vscale.model.lse import token0_weights

LAMBDA_STD = 0.1
NORM_EPS = 1e-5


def lambda_init(layer_index: int) -> float:
    return 0.8 - 0.6 * math.exp(-0.3 * layer_index)


def sub_heads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (..., head_dim) into the two sub-heads of whole RoPE rotation pairs."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first[..., 0::2], second[..., 0::2]], -1), torch.cat([first[..., 1::2], second[..., 1::2]], -1)


class Diff(Arm):
    name = "diff"
    kernels = ("sdpa", "eager")

    def __init__(self, head_dim: int, layer_index: int):
        super().__init__()
        half = head_dim // 2
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.randn(half) * LAMBDA_STD) for _ in range(4)
        )
        self.norm_weight = nn.Parameter(torch.ones(head_dim))
        self.lambda_init = lambda_init(layer_index)

    @classmethod
    def check(cls, config, kernel: str) -> None:
        super().check(config, kernel)
        if head_dim(config) % 4:
            raise ConfigError(
                f"model.attention='diff' splits each head into two sub-heads of whole RoPE pairs: the model's head_dim "
                f"({head_dim(config)}) must be divisible by 4."
            )

    @classmethod
    def build(cls, config, layer_index: int) -> "Diff":
        return cls(head_dim(config), layer_index)

    def lam(self) -> torch.Tensor:
        return (
            (self.lambda_q1 * self.lambda_k1).sum().exp()
            - (self.lambda_q2 * self.lambda_k2).sum().exp()
            + self.lambda_init
        )

    def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
        kwargs = {**kwargs, "scaling": (query.shape[-1] // 2) ** -0.5}
        (q1, q2), (k1, k2) = sub_heads(query), sub_heads(key)
        out1, _ = kernel(module, q1, k1, value, attention_mask, **kwargs)
        out2, _ = kernel(module, q2, k2, value, attention_mask, **kwargs)
        out = (out1 - self.lam().to(out1.dtype) * out2).to(torch.promote_types(out1.dtype, torch.float32))
        out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + NORM_EPS) * self.norm_weight
        return (out * (1 - self.lambda_init)).to(query.dtype), None

    @torch.no_grad()
    def token0(self, query, key, scaling):
        """The differential map's weight on token 0, a1_t0 - lambda a2_t0 (it can be negative)."""
        sub_scaling = (query.shape[-1] // 2) ** -0.5
        (q1, q2), (k1, k2) = sub_heads(query), sub_heads(key)
        a1, a2 = token0_weights(q1, k1, sub_scaling)[0], token0_weights(q2, k2, sub_scaling)[0]
        return a1 - self.lam().float() * a2, None
