"""Explicit attention bias (Sun et al. 2024, arXiv 2402.17762, "Massive activations in large
language models", §6): a learnable key k' and value v' per head that every query attends to,

    Attention(Q, K, V; k', v') = softmax(Q [k'; K]^T * scaling) [v'; V]

taking over the role a sink token plays. Here there is one (k', v') per key/value head (GQA
query heads share it, as they share K and V), initialised normal(0, 0.02) as in the paper's
code. k' is not rotated: the model's RoPE acts on the queries only, so <q_t, k'> depends on the
query's position (the paper's GPT-2 had learned absolute positions). V-scale, when on, scales
the tokens' values, not v'. The fused kernel is kept: the slot is prepended to K and V and every
query reads it (`masking.slot_attention`).
"""

import torch
from torch import nn

from vscale.model.interventions.arm import Arm, head_dim
from vscale.model.interventions.masking import slot_attention
from vscale.model.lse import token0_weights

INIT_STD = 0.02


class KVBias(Arm):
    name = "kv_bias"
    kernels = ("sdpa", "eager")

    def __init__(self, kv_heads: int, head_dim: int):
        super().__init__()
        self.key = nn.Parameter(torch.randn(kv_heads, head_dim) * INIT_STD)
        self.value = nn.Parameter(torch.randn(kv_heads, head_dim) * INIT_STD)

    @classmethod
    def build(cls, config, layer_index: int) -> "KVBias":
        return cls(config.num_key_value_heads, head_dim(config))

    def _slot(self, key: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return param.to(key.dtype).view(1, *param.shape[:1], 1, -1).expand(key.shape[0], -1, 1, -1)

    def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
        k = torch.cat([self._slot(key, self.key), key], dim=2)
        v = torch.cat([self._slot(value, self.value), value], dim=2)
        return slot_attention(module, query, k, v, attention_mask, kernel, **kwargs)

    @torch.no_grad()
    def token0(self, query, key, scaling):
        """Weights on token 0 and on the bias key, whose logit <q_t, k'> * scaling joins every normaliser."""
        bias_key = self.key.float().repeat_interleave(query.shape[1] // key.shape[1], dim=0)  # (heads, head_dim)
        slot = torch.einsum("bhtd,hd->bht", query.float(), bias_key) * scaling
        return token0_weights(query, key, scaling, slot=slot)
