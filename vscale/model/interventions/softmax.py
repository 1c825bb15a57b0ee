"""The model's own attention (`model.attention: softmax`): softmax(q k^T * scaling + mask) v through
the model's kernel, as an arm like any other (`arm.Arm`)."""

import torch

from vscale.model.interventions.arm import Arm
from vscale.model.lse import token0_weights


class Softmax(Arm):
    """No parameters and nothing to install: a layer without an arm runs this one."""

    name = "softmax"

    @classmethod
    def build(cls, config, layer_index: int) -> None:
        return None

    def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
        return kernel(module, query, key, value, attention_mask, **kwargs)

    @torch.no_grad()
    def token0(self, query: torch.Tensor, key: torch.Tensor, scaling: float) -> tuple[torch.Tensor, None]:
        return token0_weights(query, key, scaling)
