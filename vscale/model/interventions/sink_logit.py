"""A learnable sink logit per query head (as in gpt-oss): one more term in every softmax
normaliser, a slot with zero value,

    a_tj = exp(x_tj) / (exp(s_h) + sum_j' exp(x_tj'))        x_tj = <q_t, k_j> * scaling

so a head can put weight on nothing instead of on a sink token. With s_h fixed at 0 it is
softmax-plus-one. s_h is initialised normal(0, initializer_range), as gpt-oss does.

The fused kernel is kept: the slot is a key prepended to every row, and each query carries its
head's s_h / scaling in an extra coordinate that only the slot key reads (head dims are padded
by 8 on CUDA, whose kernels want multiples of 8, and by 1 elsewhere), so <q'_t, k_slot> * scaling = s_h exactly; the
slot's value is zero and the padding is cut from the output (`masking.slot_attention`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from vscale.model.interventions.arm import Arm
from vscale.model.interventions.masking import slot_attention
from vscale.model.lse import token0_weights


class SinkLogit(Arm):
    name = "sink_logit"
    kernels = ("sdpa", "eager")

    def __init__(self, heads: int, std: float):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(heads) * std)

    @classmethod
    def build(cls, config, layer_index: int) -> "SinkLogit":
        return cls(config.num_attention_heads, config.initializer_range)

    def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
        B, H, T, d = query.shape
        pad = 8 if query.is_cuda else 1
        scaling = kwargs.get("scaling") or module.scaling
        column = (self.logits / scaling).to(query.dtype).view(1, H, 1, 1).expand(B, H, T, 1)
        q = torch.cat([query, column, query.new_zeros(B, H, T, pad - 1)], dim=-1)
        slot_key = key.new_zeros(*key.shape[:2], 1, d + pad)
        slot_key[..., d] = 1
        k = torch.cat([slot_key, F.pad(key, (0, pad))], dim=2)
        v = F.pad(value, (0, pad, 1, 0))  # zero slot value in front, zero padding behind
        out, weights = slot_attention(module, q, k, v, attention_mask, kernel, **kwargs)
        return out[..., :d], weights

    @torch.no_grad()
    def token0(self, query, key, scaling):
        """Weights on token 0 and on the slot, with the slot's logit in every normaliser."""
        return token0_weights(query, key, scaling, slot=self.logits.view(1, -1, 1))
