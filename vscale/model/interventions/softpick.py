"""Softpick (Zuhri et al. 2025, arXiv 2504.20966): a rectified softmax whose rows need not sum to 1,

    a_tj = ReLU(e^{x_tj} - 1) / (sum_j' |e^{x_tj'} - 1| + eps)        x_tj = <q_t, k_j> * scaling

so a query can put (almost) no weight anywhere and no token has to serve as a sink. Computed,
as the paper's reference does, with the row maximum m factored out,
ReLU(e^{x-m} - e^{-m}) / (sum |e^{x-m} - e^{-m}| + eps), masked keys excluded from both sums,
eps = 1e-8. The weights are formed explicitly (no fused kernel computes them): O(T^2) memory.
The mass a row leaves on no token, 1 - sum_j a_tj, is reported as its extra mass.
"""

import torch
import torch.nn.functional as F

from vscale.model.interventions.arm import Arm
from vscale.model.interventions.masking import allowed_keys

EPS = 1e-8
MAX_SCORES = 2**25  # scores per chunk when the diagnostics recompute rows


def softpick(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Softpick over the last dim; -inf entries are masked out, and a row with no key left
    (a padding query) gets no weight rather than NaN."""
    m = x.amax(-1, keepdim=True)
    m = torch.where(m.isfinite(), m, 0)
    shifted = (x - m).exp() - (-m).exp()
    return F.relu(shifted) / (torch.where(x.isfinite(), shifted.abs(), 0).sum(-1, keepdim=True) + eps)


def _scores(query, key, scaling):
    """In float32 at least: e^x - 1 near x = 0 needs the precision."""
    dtype = torch.promote_types(query.dtype, torch.float32)
    key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    return (query.to(dtype) @ key.to(dtype).transpose(-1, -2)) * scaling


class Softpick(Arm):
    name = "softpick"
    kernels = ("sdpa", "eager")

    @classmethod
    def build(cls, config, layer_index: int) -> "Softpick":
        return cls()

    def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
        scaling = kwargs.get("scaling") or module.scaling
        T, S = query.shape[2], key.shape[2]
        scores = _scores(query, key, scaling).masked_fill(
            ~allowed_keys(attention_mask, T, S, query.device), float("-inf")
        )
        weights = F.dropout(softpick(scores).to(query.dtype), p=kwargs.get("dropout", 0.0), training=module.training)
        out = weights @ value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
        return out.transpose(1, 2).contiguous(), weights

    @torch.no_grad()
    def token0(self, query, key, scaling):
        """a_t0 and 1 - sum_j a_tj, recomputed in query chunks (no T x T matrix at once)."""
        B, H, T, _ = query.shape
        causal = allowed_keys(None, T, T, query.device)
        chunk = max(1, MAX_SCORES // (B * H * T))
        a0, rest = [], []
        for start in range(0, T, chunk):
            scores = _scores(query[:, :, start : start + chunk], key, scaling)
            weights = softpick(scores.masked_fill(~causal[..., start : start + chunk, :], float("-inf")))
            a0.append(weights[..., 0])
            rest.append(1 - weights.sum(-1))
        return torch.cat(a0, dim=-1), torch.cat(rest, dim=-1)
