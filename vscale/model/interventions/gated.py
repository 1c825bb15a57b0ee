"""Gated attention (Qiu et al. 2025, arXiv 2505.06708, the G1 position): an elementwise,
head-specific sigmoid gate on each head's SDPA output, computed from the layer's normed input,
before o_proj:

    y_t = SDPA(q, k, v)_t * sigmoid(W_g h~_t)        W_g: d_model -> heads * head_dim, no bias

W_g is initialised like the model's projections (normal, std `initializer_range`), as the
paper's released architecture (Qwen3-Next) initialises the gate half of its query projection.
The paper reports no attention sink and no massive activations with it. The kernel stays fused.
A model retrofitted with it starts with its attention outputs halved (sigmoid(0) = 1/2).
"""

import torch
from torch import nn

from vscale.model.interventions.arm import Arm, head_dim
from vscale.model.lse import token0_weights


class Gated(Arm):
    name = "gated"

    def __init__(self, d_model: int, heads: int, head_dim: int, std: float):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, heads * head_dim, bias=False)
        nn.init.normal_(self.gate_proj.weight, std=std)
        self._input: torch.Tensor | None = None
        self._handle = None

    @classmethod
    def build(cls, config, layer_index: int) -> "Gated":
        return cls(config.hidden_size, config.num_attention_heads, head_dim(config), config.initializer_range)

    def install(self, attn: nn.Module) -> None:
        """The gate reads the attention module's input h~, which the attention function is not given."""
        self._handle = attn.register_forward_pre_hook(self._keep_input, with_kwargs=True)

    def uninstall(self, attn: nn.Module) -> None:
        self._handle.remove()

    def _keep_input(self, module, args, kwargs) -> None:
        self._input = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
        out, weights = kernel(module, query, key, value, attention_mask, **kwargs)  # (batch, tokens, heads, head_dim)
        h, self._input = self._input, None
        return out * torch.sigmoid(self.gate_proj(h)).view(out.shape), weights

    @torch.no_grad()
    def token0(self, query, key, scaling):
        """The softmax's own weights: the gate scales what the head reads, not where it looks."""
        return token0_weights(query, key, scaling)
